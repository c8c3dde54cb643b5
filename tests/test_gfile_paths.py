"""Every stage on tf.io.gfile URLs: convert, train, evaluate and predict with all
their paths on TensorFlow's in-memory `ram://` filesystem (one process: ram:// is
per process). The multi-process tests use local paths through the same code."""

import json
import os

import numpy as np
import pandas as pd
import tensorflow as tf

from hep2tf import atomic, models, rundir, storage
from hep2tf.convert import create
from hep2tf.convert.plan import ConvertConfig
from hep2tf.data.records import Records
from hep2tf.evaluation import evaluate, predict
from hep2tf.training import build, trainer
from hep2tf.config.train import TrainConfig

ROOT = "ram://hep2tf-test"


def _listing(url):
  return {name.rstrip("/") for name in tf.io.gfile.listdir(url)}


def test_convert_train_evaluate_predict_on_ram_urls(tiny_records, tmp_path,
                                                     monkeypatch):
  _, source_dir = tiny_records
  # A URL mistaken for a relative path would create ./ram:/... here.
  monkeypatch.chdir(tmp_path)
  records = f"{ROOT}/records"
  summary, _ = create.create_records(ConvertConfig(
      data_dir=source_dir, output_dir=records, synth_num_images=180, synth_seed=3,
      group_split=False, num_workers=2, progress=False))
  assert summary.output_dir == records
  written = _listing(records)
  assert {"hep2tf.json", "dataset_info.json", "features.json", "manifest.csv",
          "class_counts.json"} <= written
  assert any(".tfrecord-" in name for name in written)
  assert Records.open(records).verify() == []

  run = f"{ROOT}/run"
  config = TrainConfig(records_dir=records, model="cnn", epochs=2,
                       batch_size=16, steps_per_epoch=2, shuffle_buffer=64,
                       image_summary_every=2, num_folds=0)
  report = trainer.train_and_evaluate(config, run)
  assert report["epochs_run"] == 2
  assert {"best.keras", "model.keras", "history.csv", "config.json",
          "complete.json", "export", "train", "validation",
          "learning_curves.png"} <= _listing(run)
  assert "checkpoints" not in _listing(run)  # removed once finished
  with storage.open_file(f"{run}/config.json") as f:
    assert json.load(f)["records_dir"] == records
  assert len(rundir.RunDir(run).read_history()["epoch"]) == 2
  assert tf.saved_model.load(f"{run}/export").signatures["serving_default"]

  result = evaluate.evaluate_run(run, "test")
  assert 0.0 <= result["mca"] <= 1.0
  assert {"metrics.json", "predictions.csv",
          "confusion_matrix.png"} <= _listing(f"{run}/eval/test")
  with storage.open_file(f"{run}/eval/test/predictions.csv") as f:
    predictions = pd.read_csv(f)

  # Images to classify on ram:// too; the CSV goes there through predict's writer.
  names = list(predictions["file_name"][:8])
  urls = []
  for name in names:
    url = f"{ROOT}/cells/{os.path.basename(name)}"
    tf.io.gfile.makedirs(f"{ROOT}/cells")
    tf.io.gfile.copy(os.path.join(source_dir, name), url, overwrite=True)
    urls.append(url)
  frame = predict.predict_files(run, urls)
  assert list(frame["class"]) == list(predictions["predicted"][:8])
  atomic.write(f"{ROOT}/predictions.csv", frame.to_csv(index=False))
  with storage.open_file(f"{ROOT}/predictions.csv") as f:
    assert len(pd.read_csv(f)) == 8

  # Weights from the earlier run by URL (--weights=RUN).
  fresh = models.build_model("cnn", (78, 78, 1), 6, **build.model_hparams(config))
  assert "logits" in " ".join(models.load_pretrained(fresh, run))
  assert os.listdir(tmp_path) == []
  probs = frame[[c for c in frame.columns if c.startswith("p_")]].to_numpy()
  np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)


def test_whole_file_writes_replace_on_urls_and_locally(tmp_path):
  # ram:// appends when a GFile reopens a file for writing; atomic.write replaces.
  for folder in (f"{ROOT}/atomic", str(tmp_path)):
    storage.makedirs(folder)
    path = f"{folder}/a.csv"
    atomic.write(path, "first,longer\n")
    atomic.write(path, "second\n")
    with storage.open_file(path) as f:
      assert f.read() == "second\n"
    assert storage.listdir(folder) == ["a.csv"]  # no temporary left
  assert storage.is_local(str(tmp_path)) and not storage.is_local(ROOT)
  assert storage.abspath(ROOT + "/x") == ROOT + "/x"
