"""One training process at a time on a run directory: RUN/lock.json.

The trainer's chief takes the lock before it touches the folder (the other workers of
a multi-worker run write nothing there) and gives it back when the run ends, however
it ends; `train` and every `sweep` trial go through the trainer, so a second one on
the same folder stops at once, naming the holder:

  lock = RunLock.acquire(run_dir)              # RunLocked if a live holder has it
  ...
  lock.release()

lock.json holds the holder's host, pid, start time, command and a heartbeat that a
thread refreshes every HEARTBEAT_SECONDS. A lock whose holder is gone is taken over,
with a message: on this host when its pid no longer runs; from another host (a shared
filesystem) or on a gfile URL (object stores, where a pid means nothing) when its
heartbeat is older than STALE_MINUTES. `force=True` (train / sweep --force_unlock)
takes it whatever it says: for a holder known to be dead whose lock looks alive.

Local folders: the lock is written whole beside its name and hard-linked into place,
which fails if a lock exists, so two starts cannot both win. URLs have no exclusive
create: the lock is written when absent and read back, so two starts within the same
moment can both pass there (docs/CLUSTER.md).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import secrets
import socket
import sys
import threading
import time

from absl import logging

from hep2tf import atomic, storage

LOCK_FILE = "lock.json"
HEARTBEAT_SECONDS = 60.0
STALE_MINUTES = 10.0


class RunLocked(RuntimeError):
  """Another live process holds the run directory."""


@dataclasses.dataclass
class Holder:
  """Who holds a lock (one lock.json)."""
  host: str
  pid: int
  started: str        # ISO 8601, local time with its offset
  heartbeat: float    # time.time() of the last refresh
  command: str
  token: str

  @classmethod
  def me(cls) -> "Holder":
    now = time.time()
    started = datetime.datetime.fromtimestamp(now).astimezone()
    return cls(socket.gethostname(), os.getpid(),
               started.isoformat(timespec="seconds"), now,
               " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:])[:300],
               secrets.token_hex(8))

  def describe(self) -> str:
    age = max(0.0, time.time() - self.heartbeat)
    return (f"host {self.host}, pid {self.pid}, started {self.started}, last "
            f"heartbeat {_duration(age)} ago")


def _duration(seconds: float) -> str:
  if seconds < 120:
    return f"{seconds:.0f} s"
  if seconds < 7200:
    return f"{seconds / 60:.0f} min"
  return f"{seconds / 3600:.1f} h"


class RunLock:
  """A taken lock; refreshes its heartbeat until `release`."""

  def __init__(self, path: str, holder: Holder, heartbeat_seconds: float):
    self.path, self.holder = path, holder
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._beat, args=(heartbeat_seconds,),
                                    name="run-lock-heartbeat", daemon=True)
    self._thread.start()

  @classmethod
  def acquire(cls, run_dir: str | os.PathLike, *, force: bool = False,
              heartbeat_seconds: float = HEARTBEAT_SECONDS,
              stale_minutes: float = STALE_MINUTES) -> "RunLock":
    """Takes RUN/lock.json (making RUN if needed); RunLocked when a live process
    holds it. A stale lock, or any with `force`, is taken over with a warning."""
    run_dir = os.fspath(run_dir)
    path = os.path.join(run_dir, LOCK_FILE)
    storage.makedirs(run_dir)
    me = Holder.me()
    for _ in range(5):
      if _create(path, me):
        return cls(path, me, heartbeat_seconds)
      current = read_holder(path)
      if current is None:
        continue   # released between our two looks
      gone = ("--force_unlock was given" if force
              else _gone(current, path, stale_minutes))
      if not gone:
        raise RunLocked(
            f"{run_dir} is in use by another run ({current.describe()}; "
            f"{path}). Wait for it to end, choose another --model_dir, or, if that "
            "process is gone, pass --force_unlock")
      message = (f"taking over the lock of {run_dir} held by {current.describe()}: "
                 f"{gone}")
      logging.warning("%s", message)
      print(f"warning: {message}", file=sys.stderr)
      _remove_if(path, current.token)
    raise RunLocked(f"{run_dir}: could not take {path} (other runs keep taking it)")

  def release(self) -> None:
    """Stops the heartbeat and removes the lock, if it is still ours."""
    self._stop.set()
    self._thread.join(timeout=5.0)
    _remove_if(self.path, self.holder.token)

  def __enter__(self) -> "RunLock":
    return self

  def __exit__(self, *exc) -> None:
    self.release()

  def _beat(self, seconds: float) -> None:
    while not self._stop.wait(seconds):
      current = read_holder(self.path)
      if current is None or current.token != self.holder.token:
        logging.warning("the lock of %s was taken by %s; this run no longer holds it",
                        os.path.dirname(self.path),
                        current.describe() if current else "someone who removed it")
        return
      self.holder.heartbeat = time.time()
      try:
        atomic.write(self.path, _text(self.holder))
      except OSError as e:   # a full disk: the next beat tries again
        logging.warning("could not refresh %s: %s", self.path, e)


def read_holder(path: str) -> Holder | None:
  """The holder written in a lock file; None when there is none. A file that does
  not parse is a holder gone (host "?", heartbeat 0)."""
  try:
    with storage.open_file(path) as f:
      text = f.read()
  except (OSError, ValueError):
    return None
  except Exception as e:   # tf.errors.NotFoundError on URLs
    if "NotFound" in type(e).__name__:
      return None
    raise
  try:
    return Holder(**json.loads(text))
  except (TypeError, ValueError):
    return Holder("?", -1, "?", 0.0, "", f"unreadable:{text[:40]!r}")


def _text(holder: Holder) -> str:
  return json.dumps(dataclasses.asdict(holder), indent=2) + "\n"


def _create(path: str, holder: Holder) -> bool:
  """Writes the lock if there is none; False when one exists."""
  if not storage.is_local(path):
    if storage.exists(path):
      return False
    atomic.write(path, _text(holder))
    current = read_holder(path)
    return current is not None and current.token == holder.token
  local = storage.local_path(path)
  tmp = atomic.temp_sibling(local)
  with open(tmp, "w") as f:
    f.write(_text(holder))
  try:
    os.link(tmp, local)     # fails when a lock exists: exclusive and whole
    return True
  except FileExistsError:
    return False
  finally:
    os.remove(tmp)


def _gone(holder: Holder, path: str, stale_minutes: float) -> str:
  """Why `holder` is gone ("" when it may still run)."""
  if holder.token.startswith("unreadable:"):
    return "the lock file does not parse"
  if storage.is_local(path) and holder.host == socket.gethostname():
    return "" if atomic.process_alive(holder.pid) else (
        f"pid {holder.pid} no longer runs on this host")
  age = time.time() - holder.heartbeat
  if age > stale_minutes * 60:
    return f"no heartbeat for {_duration(age)} (more than {stale_minutes:g} min)"
  return ""


def _remove_if(path: str, token: str) -> None:
  """Removes the lock file when it still holds `token`."""
  current = read_holder(path)
  if current is None or current.token != token:
    return
  try:
    storage.remove(path)
  except Exception:   # gone already (FileNotFoundError, tf.errors.NotFoundError)
    if storage.exists(path):
      raise
