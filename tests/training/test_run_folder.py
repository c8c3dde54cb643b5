"""The trainer and its run folder: one run at a time (the lock), a wrong --weights
file named for what it is, and no run folder left by a run that never started."""

import os
import subprocess
import sys
import zipfile

import pytest

from hep2tf import models, runlock, train
from hep2tf.errors import InputError
from hep2tf.runlock import RunLock, RunLocked
from hep2tf.training import trainer
from hep2tf.config.train import TrainConfig
from tests.conftest import REPO

TINY = dict(model="cnn", epochs=1, batch_size=8, steps_per_epoch=1,
            image_summary_every=0, shuffle_buffer=64)


def test_a_second_train_on_a_held_folder_stops_before_touching_it(tiny_records,
                                                                  tmp_path):
  records_dir, _ = tiny_records
  run = tmp_path / "run"
  with RunLock.acquire(run):
    with pytest.raises(RunLocked, match=f"{run} is in use by another run"):
      trainer.train_and_evaluate(TrainConfig(records_dir=records_dir, **TINY),
                                 str(run))
    assert os.listdir(run) == [runlock.LOCK_FILE]


def _garbage(tmp_path):
  path = tmp_path / "pretrained.keras"
  path.write_text("not a model at all\n")
  return str(path)


def test_wrong_weights_files_are_named_for_what_they_are(tmp_path):
  png = tmp_path / "cell.keras"
  png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
  archive = tmp_path / "notes.keras"
  with zipfile.ZipFile(archive, "w") as z:
    z.writestr("readme.txt", "hi")
  text_h5 = tmp_path / "w.weights.h5"
  text_h5.write_text("weights=1\n")
  empty = tmp_path / "empty.keras"
  empty.write_bytes(b"")
  export = tmp_path / "export"
  export.mkdir()
  (export / "saved_model.pb").write_bytes(b"\x08\x01\x12\x00")
  cases = {
      _garbage(tmp_path): "not a Keras .keras file: it is a text file starting "
                          "'not a model at all'",
      str(png): "not a Keras .keras file: it is a PNG image",
      str(archive): "a zip archive, but not a Keras .keras file: it holds "
                    "readme.txt and no config.json",
      str(text_h5): "not a Keras .weights.h5 file: it is a text file starting",
      str(empty): "it is an empty file (0 bytes)",
      str(export): "a TensorFlow SavedModel folder",
  }
  for path, reason in cases.items():
    with pytest.raises(InputError) as wrong:
      models.resolve_weights(path)
    assert wrong.value.file == path and reason in wrong.value.reason, path
    assert "not found" not in wrong.value.reason


def test_bad_weights_leave_no_run_folder(tiny_records, tmp_path):
  records_dir, _ = tiny_records
  config = TrainConfig(records_dir=records_dir, weights=_garbage(tmp_path), **TINY)
  run = tmp_path / "runs" / "never"
  with pytest.raises(InputError, match="it is a text file"):
    train.check_paths(config, str(run))
  # Past the up-front check too (the trainer as a library): nothing is left.
  with pytest.raises(InputError, match="not a Keras .keras file"):
    trainer.train_and_evaluate(config, str(run))
  assert not run.exists()


def test_the_train_command_says_what_the_weights_file_is(tiny_records, tmp_path):
  records_dir, _ = tiny_records
  run = tmp_path / "never"
  weights = _garbage(tmp_path)
  command = [sys.executable, "-m", "hep2tf.train",
             f"--flagfile={os.path.join(REPO, 'configs', 'smoke.flags')}",
             f"--records_dir={records_dir}", f"--model_dir={run}",
             f"--weights={weights}"]
  env = {**os.environ, "PYTHONPATH": REPO}
  result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
  assert result.returncode == 2, result.stderr[-2000:]
  assert result.stderr.strip().splitlines()[-1] == (
      f"error: {weights}: not a Keras .keras file: it is a text file starting 'not "
      "a model at all' (a .keras file is a zip archive holding config.json and "
      "model.weights.h5)")
  assert "Traceback" not in result.stderr and "not found" not in result.stderr
  assert not run.exists()
