"""console.py: TensorFlow's start-up lines filtered, Ctrl-C and a full disk as one
line with their exit codes. No TensorFlow is loaded by these tests' subprocesses."""

import errno
import os
import subprocess
import sys

import pytest

from hep2tf import console, errors
from tests.conftest import REPO

# As TensorFlow 2.21 prints them on a CPU machine (TF_CPP_MIN_LOG_LEVEL unset).
NOISE = [
    "WARNING: All log messages before absl::InitializeLog() is called are written "
    "to STDERR",
    "I0000 00:00:1796591066.474556   12849 port.cc:153] oneDNN custom operations "
    "are on. You may see slightly different numerical results due to floating-point "
    "round-off errors from different computation orders. To turn them off, set the "
    "environment variable `TF_ENABLE_ONEDNN_OPTS=0`.",
    "I0000 00:00:1796591066.474943   12849 cudart_stub.cc:31] Could not find cuda "
    "drivers on your machine, GPU will not be used.",
    "I0000 00:00:1796591066.538052   12849 cpu_feature_guard.cc:227] This "
    "TensorFlow binary is optimized to use available CPU instructions in "
    "performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F AVX512_VNNI AVX512_BF16 FMA, "
    "in other operations, rebuild TensorFlow with the appropriate compiler flags.",
    "E0000 00:00:1796591071.184910   12849 cuda_platform.cc:52] failed call to "
    "cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    # The older format (TensorFlow 2.16).
    "2024-05-01 10:00:00.123456: I tensorflow/core/util/port.cc:113] oneDNN custom "
    "operations are on. You may see slightly different numerical results.",
]
KEPT = [
    "E0000 00:00:1796591071.184910   12849 cuda_executor.cc:1000] could not "
    "allocate 2.00GiB of device memory: CUDA_ERROR_OUT_OF_MEMORY",
    "W0000 00:00:1796591071.1   12849 op_level_cost_estimator.cc:699] Error in "
    "PredictCost() for the op: Conv2D",
    "error: records/x: the records folder exists; pass --overwrite to replace it",
    "Traceback (most recent call last):",
]


def test_known_startup_lines_and_only_those_are_noise():
  assert all(console.is_startup_noise(line) for line in NOISE)
  assert not any(console.is_startup_noise(line) for line in KEPT)


def _filtered(code, *args, env=None):
  script = ("import os, sys\nfrom hep2tf import console\n"
            "console.quiet_start(force=True)\n" + code)
  env = {**os.environ, "PYTHONPATH": REPO, **(env or {})}
  return subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                        text=True, timeout=120, env=env, cwd=REPO)


def test_the_filter_drops_the_noise_and_passes_everything_else_in_order():
  lines = [NOISE[1], KEPT[0], NOISE[2], NOISE[3], NOISE[4], KEPT[2], NOISE[5]]
  code = ("for line in sys.argv[1:]:\n"   # as C++ writes: straight to fd 2
          "  os.write(2, (line + '\\n').encode())\n"
          "os.write(2, b'50%|#####     | partial, no newline')\n"
          "raise SystemExit(3)\n")
  result = _filtered(code, *lines)
  assert result.returncode == 3
  assert result.stderr == (f"{KEPT[0]}\n{KEPT[2]}\n"
                           "50%|#####     | partial, no newline")


def test_pythons_stderr_keeps_its_order_with_stdout():
  code = ("for i in range(50):\n"
          "  print(f'out {i}', flush=True)\n"
          "  print(f'err {i}', file=sys.stderr, flush=True)\n")
  script = ("import os, sys\nfrom hep2tf import console\n"
            "console.quiet_start(force=True)\n" + code)
  env = {**os.environ, "PYTHONPATH": REPO}
  both = subprocess.run([sys.executable, "-c", script], stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True, timeout=120, env=env)
  expected = "".join(f"out {i}\nerr {i}\n" for i in range(50))
  assert both.stdout == expected


def test_a_traceback_still_reaches_the_terminal():
  result = _filtered("raise ValueError('a real bug')\n")
  assert result.returncode == 1
  assert "Traceback" in result.stderr and "ValueError: a real bug" in result.stderr


def test_only_hep2tf_command_lines_are_filtered_and_users_can_ask_for_all():
  assert console.started_as_command(["python", "-m", "hep2tf.train", "--x"], "-m")
  assert console.started_as_command(["python", "/venv/bin/hep2tf-predict"],
                                    "/venv/bin/hep2tf-predict")
  assert not console.started_as_command(["python", "-m", "pytest"], "-m")
  assert not console.started_as_command(["python", "-c", "pass"], "-c")
  assert not console.asks_for_startup_lines(["train", "--epochs=2"], {})
  assert not console.asks_for_startup_lines(["train"], {"TF_CPP_MIN_LOG_LEVEL": "2"})
  assert console.asks_for_startup_lines(["train"], {"TF_CPP_MIN_LOG_LEVEL": "0"})
  assert console.asks_for_startup_lines(["train", "--verbosity=1"], {})
  assert console.asks_for_startup_lines(["train", "-v", "2"], {})
  assert not console.asks_for_startup_lines(["train", "--verbosity=0"], {})


def test_a_command_line_is_quiet_until_asked(tmp_path):
  # python -m hep2tf.synth --help: hep2tf/__init__.py installs the filter (the help
  # itself needs no TensorFlow: the noise is written by this stand-in).
  probe = tmp_path / "probe.py"
  probe.write_text("import os, sys\n"
                   f"os.write(2, ({NOISE[2]!r} + '\\n').encode())\n"
                   "print('kept', file=sys.stderr)\n")
  code = (f"import runpy, sys; sys.orig_argv = ['python', '-m', 'hep2tf.synth']\n"
          f"import hep2tf\nrunpy.run_path({str(probe)!r})\n")
  env = {**os.environ, "PYTHONPATH": REPO}
  env.pop("TF_CPP_MIN_LOG_LEVEL", None)
  quiet = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, env=env, timeout=120)
  assert quiet.stderr == "kept\n"
  loud = subprocess.run([sys.executable, "-c", code, "--verbosity=1"],
                        capture_output=True, text=True, env=env, timeout=120)
  assert "cudart_stub" in loud.stderr and "kept" in loud.stderr


# ---------------------------------------------------------------- console.run


def _run(main, monkeypatch, capsys, **kwargs):
  monkeypatch.setattr(sys, "argv", ["hep2tf-test"])
  with pytest.raises(SystemExit) as exit_:
    console.run(main, **kwargs)
  return exit_.value.code, capsys.readouterr()


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
  def main(argv):
    raise KeyboardInterrupt

  code, out = _run(main, monkeypatch, capsys, interrupted="no predictions were "
                   "written")
  assert code == errors.EXIT_INTERRUPTED == 130
  assert out.err == "interrupted (Ctrl-C): no predictions were written\n"


@pytest.mark.parametrize("error", [
    OSError(errno.ENOSPC, "No space left on device", "/data/out/x.png"),
    RuntimeError("/data/out/shard-00000; No space left on device"),  # TF's text
])
def test_a_full_disk_is_one_line_naming_the_path_and_free_space(
    error, monkeypatch, capsys):
  def main(argv):
    raise error

  code, out = _run(main, monkeypatch, capsys)
  assert code == errors.EXIT_NO_SPACE
  lines = out.err.splitlines()
  assert len(lines) == 1
  assert lines[0].startswith("error: no space left on the device writing /data/out/")
  assert " free there); nothing was published" in lines[0]


def test_other_errors_are_not_swallowed(monkeypatch):
  def main(argv):
    raise ValueError("a bug")

  monkeypatch.setattr(sys, "argv", ["hep2tf-test"])
  with pytest.raises(ValueError, match="a bug"):
    console.run(main)


def test_no_space_names_what_was_being_made(tmp_path):
  error = errors.no_space(OSError(errno.ENOSPC, "No space left on device"),
                          tmp_path / "records" / "cells")
  assert str(error).startswith(f"no space left on the device writing {tmp_path}")
  assert error.free is not None and error.free >= 0
  assert errors.is_no_space(error)
  assert not errors.is_no_space(OSError(errno.EACCES, "Permission denied"))
