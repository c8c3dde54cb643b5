"""What every hep2tf command line shares: a quiet start, and one line instead of a
traceback when the user or the machine stops it.

  quiet_start()          hides TensorFlow's known C++ start-up lines (below) from
                         stderr; hep2tf/__init__.py calls it before TensorFlow loads
                         when the process is one of hep2tf's command lines
  run(main, interrupted) absl's app.run, with Ctrl-C as one line and exit 130, and a
                         full disk as one line naming the path and the free space
                         (exit 4); what was written is left whole (atomic.py)
  ignore_interrupts()    a worker pool's initializer: Ctrl-C is the parent's to
                         handle, so workers print no tracebacks of their own

The start-up lines are written by TensorFlow's C++ code straight to file descriptor 2
before any flag is read, and on a CPU machine one of them is an `E0000` ERROR line
(`failed call to cuInit`) that is no error; TF_CPP_MIN_LOG_LEVEL=2 keeps it, and 3
would hide real errors too. So fd 2 goes through a pipe whose reader drops exactly
these lines and passes everything else on: the oneDNN notice (port.cc), cudart_stub,
cpu_feature_guard and its "To enable the following instructions" line,
cuda_platform's / cuda_executor's cuInit failure, and absl's "All log messages
before absl::InitializeLog()" line that precedes them. Python's own stderr does not
go through the pipe (it is re-opened on the terminal), so its lines keep their order
with stdout. `--verbosity=1` (or higher)
on the command line, or TF_CPP_MIN_LOG_LEVEL=0 in the environment, shows them.
This module imports no TensorFlow.
"""

from __future__ import annotations

import atexit
import os
import re
import select
import signal
import sys
import threading
from typing import Callable, Sequence

# Lines TensorFlow (and absl's C++ logging) print at start-up on every machine.
STARTUP_NOISE = re.compile(
    r"port\.cc:\d+\] oneDNN custom operations are on"
    r"|cudart_stub\.cc:\d+\]"
    r"|cpu_feature_guard\.cc:\d+\]"
    r"|cuda_(platform|executor)\.cc:\d+\] failed call to cuInit"
    r"|^To enable the following instructions: .*rebuild TensorFlow with the "
    r"appropriate compiler flags\.$"
    r"|^WARNING: All log messages before absl::InitializeLog\(\) is called are "
    r"written to STDERR$")
# The modules behind `python -m hep2tf.<name>`, and the console scripts' prefix.
COMMANDS = ("create_records", "synth", "train", "evaluate", "predict",
            "beam_pipeline", "sweep")
SCRIPT_PREFIX = "hep2tf-"
_HOLD_SECONDS = 0.1   # a partial line (a progress bar) waits at most this long

_filter: "_Filter | None" = None


def is_startup_noise(line: str) -> bool:
  """Whether one line of stderr (without its newline) is a known start-up line."""
  return bool(STARTUP_NOISE.search(line.rstrip("\r\n")))


def started_as_command(orig_argv: Sequence[str] | None = None,
                       argv0: str | None = None) -> bool:
  """Whether this process is `python -m hep2tf.<command>` or a hep2tf-* script."""
  orig_argv = list(sys.orig_argv if orig_argv is None else orig_argv)
  argv0 = sys.argv[0] if argv0 is None else argv0
  if os.path.basename(argv0 or "").startswith(SCRIPT_PREFIX):
    return True
  for flag, module in zip(orig_argv, orig_argv[1:]):
    if flag == "-m":
      return module in {f"hep2tf.{c}" for c in COMMANDS}
  return False


def asks_for_startup_lines(argv: Sequence[str] | None = None,
                           environ: dict | None = None) -> bool:
  """--verbosity / -v of 1 or more, or TF_CPP_MIN_LOG_LEVEL=0: show every line."""
  argv = list(sys.argv if argv is None else argv)
  environ = os.environ if environ is None else environ
  if str(environ.get("TF_CPP_MIN_LOG_LEVEL", "")).strip() == "0":
    return True
  for i, arg in enumerate(argv):
    name, sep, value = arg.partition("=")
    if name in ("--verbosity", "-verbosity", "--v", "-v"):
      if not sep:
        value = argv[i + 1] if i + 1 < len(argv) else ""
      try:
        return int(value) >= 1
      except ValueError:
        return False
  return False


def quiet_start(force: bool = False) -> bool:
  """Filters TensorFlow's start-up lines out of fd 2 for the rest of the process,
  when this process is a hep2tf command line (or `force`) and the user did not ask
  for them. Returns whether the filter is on. Call it before TensorFlow loads."""
  global _filter
  if _filter is not None:
    return True
  if os.name != "posix":   # the pipe's reader waits with select()
    return False
  if not force and (not started_as_command() or asks_for_startup_lines()):
    return False
  try:
    _filter = _Filter()
  except OSError:
    return False
  atexit.register(_filter.close)
  return True


class _Filter:
  """fd 2 -> a pipe -> a thread that drops `STARTUP_NOISE` lines and writes the
  rest to the original stderr, partial lines (progress bars) after a moment.

  Python's own `sys.stderr` (print, logging, tracebacks, progress bars) is
  re-opened on the original stderr, so it stays in order with stdout and keeps
  telling a terminal apart; only what C++ code writes to fd 2 is filtered."""

  def __init__(self):
    sys.stderr.flush()
    self._out = os.dup(2)
    stream = sys.stderr
    sys.stderr = open(os.dup(self._out), "w", buffering=1,
                      encoding=getattr(stream, "encoding", None) or "utf-8",
                      errors="backslashreplace")
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)
    self._read = read
    self._thread = threading.Thread(target=self._pump, name="stderr-filter",
                                    daemon=True)
    self._thread.start()

  def _pump(self) -> None:
    pending = b""
    while True:
      if pending:
        ready, _, _ = select.select([self._read], [], [], _HOLD_SECONDS)
        if not ready:
          self._write(pending)
          pending = b""
          continue
      chunk = os.read(self._read, 65536)
      if not chunk:
        break
      *lines, pending = (pending + chunk).split(b"\n")
      kept = [line + b"\n" for line in lines
              if not is_startup_noise(line.decode("utf-8", "replace"))]
      self._write(b"".join(kept))
    self._write(pending)
    os.close(self._read)

  def _write(self, data: bytes) -> None:
    while data:
      try:
        data = data[os.write(self._out, data):]
      except OSError:
        return

  def close(self) -> None:
    """Gives fd 2 back and waits (briefly) for the lines still in the pipe."""
    try:
      sys.stderr.flush()
    except (OSError, ValueError):
      pass
    os.dup2(self._out, 2)
    self._thread.join(timeout=2.0)


def run(main: Callable, interrupted: str = "nothing half-written was published",
        flags_parser: Callable | None = None) -> None:
  """absl's `app.run(main)` (with its `flags_parser` when given); Ctrl-C prints
  "interrupted (Ctrl-C): <interrupted>" and exits 130; a full disk prints the one
  line of `errors.NoSpaceError` and exits 4."""
  from absl import app

  from hep2tf import errors
  try:
    if flags_parser is None:
      app.run(main)
    else:
      app.run(main, flags_parser=flags_parser)
  except KeyboardInterrupt:
    _one_line(f"interrupted (Ctrl-C): {interrupted}")
    sys.exit(errors.EXIT_INTERRUPTED)
  except Exception as e:
    if not errors.is_no_space(e):
      raise
    _one_line(f"error: {errors.no_space(e)}")
    sys.exit(errors.EXIT_NO_SPACE)


def _one_line(text: str) -> None:
  try:
    sys.stdout.flush()
  except (OSError, ValueError):
    pass
  print(text, file=sys.stderr, flush=True)


def ignore_interrupts() -> None:
  """A worker process's initializer: SIGINT is ignored, the parent stops the pool."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)
