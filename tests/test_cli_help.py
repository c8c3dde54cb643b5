"""Every command line prints its --help without importing TensorFlow (so it is quick:
the TensorFlow import alone takes seconds), grouped by the config's sections."""

import subprocess
import sys

import pytest

COMMANDS = ("create_records", "train", "evaluate", "predict", "sweep", "synth",
            "beam_pipeline")
CHECK = """
import runpy, sys
sys.argv = ["hep2tf.{name}", "--help"]
try:
    runpy.run_module("hep2tf.{name}", run_name="__main__")
except SystemExit as e:
    code = e.code
print("exit", code, "tensorflow", "tensorflow" in sys.modules, file=sys.stderr)
"""


@pytest.mark.parametrize("name", COMMANDS)
def test_help_prints_sections_without_importing_tensorflow(name):
  done = subprocess.run([sys.executable, "-c", CHECK.format(name=name)],
                        capture_output=True, text=True, timeout=300)
  assert "exit 0 tensorflow False" in done.stderr, done.stderr[-2000:]
  assert "flags, by section (hep2tf/config/)" in done.stdout
  assert "hep2tf.config." in done.stdout
