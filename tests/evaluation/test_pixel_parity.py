"""One pixel path: the reader, the predict command line and the SavedModel's
serving_default give one image the same probabilities (hep2tf.data.preprocess).

The same cells as 8-bit PNG, as 16-bit PNG (10-bit values) and as 16-bit PNG
converted with --intensity=rescale; each at the model's size (64), larger (78) and
smaller (48). One model is trained on the 8-bit records at --image_size=64; the
16-bit and rescaled runs are that run with their own records' PixelSpec in
config.json and the SavedModel re-exported with it (the weights do not matter to
the pixel path, the PixelSpec does).
"""

import dataclasses
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from hep2tf import rundir
from hep2tf.config import core
from hep2tf.config.convert import ConvertConfig
from hep2tf.config.run import read_run_config
from hep2tf.config.train import TrainConfig
from hep2tf.convert import create
from hep2tf.data import reader
from hep2tf.data.records import Records
from hep2tf.evaluation import export, predict
from hep2tf.training import trainer
from tests.conftest import REPO

MODEL_SIDE = 64
SIDES = (64, 78, 48)       # the model's size, larger, smaller
TOP = 1000                 # a dim 10-bit camera
TOLERANCE = 1e-5


def _cell(kind, side, rng):
  """A 10-bit cell (0..TOP) of `side` pixels: a bright rim or dots."""
  yy, xx = np.mgrid[:side, :side]
  cy, cx = rng.uniform(0.4, 0.6, 2) * side
  radius = rng.uniform(0.25, 0.32) * side
  distance = np.hypot(yy - cy, xx - cx)
  signal = np.zeros((side, side))
  if kind == "rim":
    signal[np.abs(distance - radius + 2) < 2] = 1.0
  else:
    for _ in range(6):
      y, x = rng.uniform(-0.6, 0.6, 2) * radius + (cy, cx)
      signal[np.hypot(yy - y, xx - x) < 0.05 * side] = 1.0
  image = 60 + 150 * (distance < radius) + rng.uniform(0.4, 0.75) * TOP * signal
  image += rng.normal(0, 25, image.shape)
  return np.clip(np.rint(image), 0, TOP).astype(np.uint16)


def _sources(root):
  """root/{deep,shallow}/<split>/<class>/NN.png: each cell as 16-bit and as 8-bit."""
  rng = np.random.default_rng(11)
  for split, per_class in (("train", 12), ("test", 2)):
    for kind in ("rim", "dots"):
      for i in range(per_class * len(SIDES)):
        cell = _cell(kind, SIDES[i % len(SIDES)], rng)
        for name, array in (("deep", cell), ("shallow", np.rint(
            cell * (255.0 / TOP)).astype(np.uint8))):
          path = root / name / split / kind / f"{i:02d}.png"
          path.parent.mkdir(parents=True, exist_ok=True)
          Image.fromarray(array).save(path)


def _convert(source, out, **kwargs):
  create.create_records(ConvertConfig(
      "folder", str(source), output_dir=str(out), layout_option=("channels=1",),
      validation_fraction=0.2, num_workers=1, progress=False, **kwargs))
  return str(out)


def _as_run_of(trained, run, records_dir):
  """`trained` copied to `run`, made the run of `records_dir`: its config.json
  names those records and their PixelSpec, its SavedModel applies that spec."""
  shutil.copytree(trained, run)
  info = Records.open(records_dir).info
  config = dataclasses.replace(read_run_config(rundir.RunDir(trained)),
                               records_dir=records_dir, pixels=info.pixels)
  rundir.RunDir(run).write_config(config.to_json())
  export.export_serving(predict.load_run_model(run), rundir.RunDir(run).export_dir,
                        class_names=config.class_names, channels=1,
                        image_size=(MODEL_SIDE, MODEL_SIDE), pixels=info.pixels)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("parity")
  _sources(root)
  records = {"8-bit": _convert(root / "shallow", root / "rec8"),
             "16-bit": _convert(root / "deep", root / "rec16"),
             "16-bit rescale": _convert(root / "deep", root / "rec_rescale",
                                        intensity="rescale")}
  trained = str(root / "run8")
  trainer.train_and_evaluate(TrainConfig(
      records_dir=records["8-bit"], image_size=MODEL_SIDE, model="cnn", epochs=1,
      steps_per_epoch=4, batch_size=8, cnn_filters="8,8,16,16,16", dense_units=16,
      shuffle_buffer=64, seed=0, mixed_precision="float32", image_summary_every=0),
      trained)
  out = {"8-bit": (trained, records["8-bit"], root / "shallow")}
  for name, folder in (("16-bit", "run16"), ("16-bit rescale", "run_rescale")):
    _as_run_of(trained, str(root / folder), records[name])
    out[name] = (str(root / folder), records[name], root / "deep")
  return out


def _reader_probabilities(run, records_dir):
  """{file name: probabilities} of the run's model over its records' test split."""
  model = predict.load_run_model(run)
  dataset = reader.create_split(Records.open(records_dir), "test", batch_size=5,
                                training=False, image_size=(MODEL_SIDE, MODEL_SIDE),
                                with_meta=True).dataset
  _, logits, meta, _ = predict.predict_logits(model, dataset)
  probs = predict.view_probabilities(logits)
  return dict(zip(meta["file_name"], probs))


def _predict_command(run, files, out_csv):
  return subprocess.Popen(
      [sys.executable, "-m", "hep2tf.predict", f"--model_dir={run}",
       f"--output={out_csv}"] + files, stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONPATH=REPO))


def test_reader_predict_and_saved_model_give_the_same_probabilities(runs, tmp_path):
  names = {}
  commands = {}
  for case, (run, records_dir, source) in runs.items():
    files = sorted(str(p) for p in source.glob("test/*/*.png"))
    names[case] = files
    commands[case] = _predict_command(run, files, tmp_path / f"{case}.csv")
  worst = {}
  for case, (run, records_dir, source) in runs.items():
    output, _ = commands[case].communicate(timeout=600)
    assert commands[case].returncode == 0, output.decode()[-2000:]
    frame = pd.read_csv(tmp_path / f"{case}.csv")
    columns = [c for c in frame.columns if c.startswith("p_")]
    by_file = dict(zip(frame["file"], frame[columns].to_numpy()))
    from_reader = _reader_probabilities(run, records_dir)
    serve = tf.saved_model.load(os.path.join(run, "export")).signatures[
        "serving_default"]
    files = names[case]
    served = serve(tf.constant([open(f, "rb").read() for f in files]))[
        "probabilities"].numpy()
    for i, path in enumerate(files):
      relative = os.path.relpath(path, source)
      side = Image.open(path).size[0]
      ours = from_reader[relative]
      diffs = (np.abs(by_file[path] - ours).max(), np.abs(served[i] - ours).max())
      key = (case, side)
      worst[key] = max(worst.get(key, 0.0), *diffs)
  print("\nmax |probability difference| (reader vs predict CLI, vs SavedModel):")
  for (case, side), value in sorted(worst.items()):
    print(f"  {case:15s} {side:3d} px cells, {MODEL_SIDE} px model: {value:.2e}")
  assert set(side for _, side in worst) == set(SIDES)
  assert max(worst.values()) <= TOLERANCE, worst


def test_the_runs_differ_in_their_pixel_spec_only(runs):
  """The three runs are what the parity test claims: one model, three PixelSpecs."""
  specs = {case: read_run_config(rundir.RunDir(run)).pixels
           for case, (run, _, _) in runs.items()}
  assert specs["8-bit"].dtype == "uint8" and specs["8-bit"].white_level == 255
  assert specs["16-bit"].dtype == "uint16" and specs["16-bit"].white_level == 1023
  assert specs["16-bit rescale"].intensity == "rescale"
  assert specs["16-bit rescale"].rescale_range is not None
  configs = [core.to_json(read_run_config(rundir.RunDir(run)).train)
             for run, _, _ in runs.values()]
  assert configs[0] == configs[1] == configs[2]
