"""A conversion stopped by a full disk or by Ctrl-C: one line, its exit code, and
nothing published or left behind. CI runs as root on a disk that never fills, so
the full disk is injected into the shard writer."""

import errno
import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from absl import flags
from PIL import Image

from hep2tf import console, create_records, errors
from hep2tf.convert import create, writer
from hep2tf.convert.plan import ConvertConfig
from tests.conftest import REPO


def _folder(root, per_class=4):
  for c, label in enumerate(("cat", "dog")):
    for i in range(per_class):
      os.makedirs(root / label, exist_ok=True)
      Image.fromarray(np.full((8, 8), c * per_class + i + 1, np.uint8)).save(
          root / label / f"{i}.png")
  return root


class _FullDisk:
  """A TFRecordWriter whose disk filled up: write raises the real OSError."""

  def __init__(self, path):
    self.path = path

  def write(self, record):
    raise OSError(errno.ENOSPC, "No space left on device", self.path)

  def close(self):
    pass


def _run_cli(argv, monkeypatch, capsys):
  if "dataset" not in flags.FLAGS:
    create_records.define_flags()
  flags.FLAGS.unparse_flags()
  monkeypatch.setattr(sys, "argv", ["create_records"] + argv)
  with pytest.raises(SystemExit) as exit_:
    console.run(create_records.main)
  return exit_.value.code, capsys.readouterr().err


def test_a_full_disk_is_one_line_and_nothing_is_published(tmp_path, monkeypatch,
                                                          capsys):
  data = _folder(tmp_path / "lab")
  out = tmp_path / "out" / "cells"
  monkeypatch.setattr(writer.tf.io, "TFRecordWriter", _FullDisk)
  code, err = _run_cli(["--dataset=folder", f"--data_dir={data}",
                        f"--output_dir={out}", "--num_workers=1"], monkeypatch,
                       capsys)
  assert code == errors.EXIT_NO_SPACE
  last = err.strip().splitlines()[-1]
  assert last.startswith(f"error: no space left on the device writing {out} (")
  assert last.endswith(" free there); nothing was published")
  assert "Traceback" not in err
  assert not out.exists() and os.listdir(out.parent) == []   # no temporary files


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_tensorflows_own_no_space_error_is_recognised(tmp_path, monkeypatch):
  real = writer.tf.io.TFRecordWriter
  monkeypatch.setattr(writer.tf.io, "TFRecordWriter",
                      lambda path: real("/dev/full"))   # ENOSPC on every write
  out = tmp_path / "cells"
  with pytest.raises(errors.NoSpaceError) as full:
    create.create_records(ConvertConfig(
        "folder", str(_folder(tmp_path / "lab", per_class=40)), output_dir=str(out),
        num_workers=1, progress=False))
  assert full.value.path == str(out)
  assert sorted(os.listdir(tmp_path)) == ["lab"]


def test_ctrl_c_mid_write_is_one_line_exit_130_and_keeps_the_old_records(tmp_path):
  from hep2tf.data import synth

  source = tmp_path / "source"
  synth.generate(source, num_images=600, seed=5)
  out = tmp_path / "records"
  create.create_records(ConvertConfig(
      "icpr2014", str(source), output_dir=str(out), num_workers=1, progress=False,
      group_split=False))
  before = sorted(os.listdir(out))
  command = [sys.executable, "-m", "hep2tf.create_records", "--dataset=icpr2014",
             f"--data_dir={source}", f"--output_dir={out}", "--overwrite",
             "--num_workers=2", "--group_split=false", "--augment_copies=7"]
  env = {**os.environ, "PYTHONPATH": REPO}
  # Its own process group, so Ctrl-C reaches the loading workers too, as in a
  # terminal.
  process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
  staging = str(tmp_path / ".records.tmp-*")
  try:
    deadline = time.time() + 300
    while (not glob.glob(os.path.join(staging, "*.tfrecord-*"))
           and process.poll() is None and time.time() < deadline):
      time.sleep(0.02)
    assert process.poll() is None, "the converter finished before Ctrl-C"
    os.killpg(process.pid, signal.SIGINT)
    _, err = process.communicate(timeout=120)
  finally:
    process.kill()
    process.wait()
  assert process.returncode == errors.EXIT_INTERRUPTED, err[-2000:]
  lines = [line for line in err.splitlines() if not line.startswith(("I", "W"))
           and "img/s]" not in line and line.strip()]
  assert lines == ["interrupted (Ctrl-C): nothing was published (the records "
                   "folder is as it was)"], err[-2000:]
  assert "Traceback" not in err
  assert sorted(os.listdir(out)) == before
  assert not glob.glob(staging), "the interrupted run's staging folder was left"
