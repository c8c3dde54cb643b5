"""Distributed training for real on this machine: MirroredStrategy over 2 logical CPU
devices. MultiWorkerMirroredStrategy with 2 worker processes:
tests/training/test_multi_worker.py."""

import json
import os
import subprocess
import sys

import pandas as pd

from tests.conftest import REPO

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _command(records_dir, run, *extra):
  return [sys.executable, "-m", "hep2tf.train",
          f"--flagfile={os.path.join(REPO, 'configs', 'smoke.flags')}",
          f"--records_dir={records_dir}", f"--model_dir={run}", "--epochs=1",
          "--image_summary_every=0", *extra]


def test_mirrored_on_two_cpu_devices_matches_single_device_shape(tiny_records,
                                                                  tmp_path):
  records_dir, _ = tiny_records
  runs = {}
  for name, extra in (("single", []),
                      ("mirrored", ["--distribution=mirrored", "--cpu_devices=2"])):
    run = str(tmp_path / name)
    result = subprocess.run(_command(records_dir, run, "--steps_per_epoch=4", *extra),
                            cwd=REPO, env=ENV, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    runs[name] = run
  log = result.stdout + result.stderr
  assert "MirroredStrategy with devices" in log and "CPU:1" in log
  single = pd.read_csv(os.path.join(runs["single"], "history.csv"))
  mirrored = pd.read_csv(os.path.join(runs["mirrored"], "history.csv"))
  assert list(single.columns) == list(mirrored.columns)
  assert len(single) == len(mirrored) == 1
  with open(os.path.join(runs["mirrored"], "complete.json")) as f:
    assert 0.0 <= json.load(f)["val_mca"] <= 1.0
