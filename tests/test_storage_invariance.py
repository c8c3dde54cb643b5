"""How a cell was stored does not change what the model says about it.

A set that mixes sources: one class of dim cells saved as 16-bit PNG holding 0..255
(8-bit data in a 16-bit container, as some public nuclei sets ship) beside a class of
16-bit cells that use the whole range, so the records' white level is 65535 and the
dim cells reach the model at 1/257 of their 8-bit values. A run trained on it then
sees the same cells as 8-bit PNG (stored x 257 by the run's rule, so at their 8-bit
values), as 16-bit x 257, and as the 16-bit-low files, through the reader
(evaluate), the predict command and the SavedModel: the probabilities agree to 1e-4,
and the converter reports the mixed levels.
"""

import numpy as np
import pandas as pd
import tensorflow as tf
from PIL import Image

from hep2tf.convert import create
from hep2tf.convert.plan import ConvertConfig
from hep2tf.data.records import Records
from hep2tf.evaluation import evaluate, predict
from hep2tf.training import trainer
from hep2tf.config.train import TrainConfig

SIDE = 32


def _cell(rng, kind, top):
  yy, xx = np.mgrid[:SIDE, :SIDE]
  r = np.hypot(yy - SIDE / 2 + rng.uniform(-2, 2), xx - SIDE / 2 + rng.uniform(-2, 2))
  if kind == "rim":
    image = np.exp(-((r - 9) / 1.5) ** 2)
  else:
    image = (r < 10) * (0.3 + 0.7 * (rng.uniform(size=r.shape) > 0.8))
  image = image * rng.uniform(0.6, 1.0) + rng.normal(0, 0.04, image.shape)
  return np.clip(np.rint(image * top), 0, top)


def test_a_cell_gets_the_same_probabilities_however_it_was_stored(tmp_path):
  rng = np.random.default_rng(3)
  source = tmp_path / "src"
  dim_files = {}
  for split, count in (("train", 16), ("test", 6)):
    for kind in ("rim", "dots"):
      (source / split / kind).mkdir(parents=True)
      for i in range(count):
        name = f"{split}/{kind}/{i:02d}.png"
        if kind == "rim":   # the dim source: 0..255 in a 16-bit container
          cell = _cell(rng, kind, 230).astype(np.uint16)
          dim_files[name] = cell
        else:               # a source that uses the whole 16-bit range
          cell = _cell(rng, kind, 60000).astype(np.uint16)
        Image.fromarray(cell).save(source / name)
  summary, _ = create.create_records(ConvertConfig(
      "folder", str(source), output_dir=str(tmp_path / "rec"), num_workers=1,
      progress=False, validation_fraction=0.25))
  info = Records.open(tmp_path / "rec").info
  assert info.pixels.dtype == "uint16" and info.pixels.white_level == 65535
  assert any("sources of very different levels" in w and "rim" in w
             for w in summary.warnings), summary.warnings

  run = str(tmp_path / "run")
  trainer.train_and_evaluate(TrainConfig(
      records_dir=str(tmp_path / "rec"), model="cnn", epochs=2, steps_per_epoch=6,
      batch_size=8, shuffle_buffer=64, seed=0, mixed_precision="float32",
      image_summary_every=100, background_offset=0.1, read_noise=0.02), run)
  evaluate.evaluate_run(run, "test", explain_cells=0)
  frame = pd.read_csv(tmp_path / "run" / "eval" / "test" / "predictions.csv")
  frame = frame[frame["file_name"].isin(dim_files)]
  assert len(frame) == 6
  p_columns = [c for c in frame.columns if c.startswith("p_")]
  from_reader = frame[p_columns].to_numpy()

  # The same dim cells as 8-bit PNG and as 16-bit x 257 files.
  forms = {"uint16_low": [str(source / n) for n in frame["file_name"]]}
  for form, convert in (("uint8", lambda a: a.astype(np.uint8)),
                        ("uint16_x257", lambda a: a.astype(np.uint16) * 257)):
    (tmp_path / form).mkdir()
    forms[form] = []
    for n in frame["file_name"]:
      path = tmp_path / form / n.replace("/", "_")
      Image.fromarray(convert(dim_files[n])).save(path)
      forms[form].append(str(path))
  serve = tf.saved_model.load(f"{run}/export").signatures["serving_default"]
  for form, files in forms.items():
    by_predict = predict.predict_files(run, files)[p_columns].to_numpy()
    np.testing.assert_allclose(by_predict, from_reader, atol=1e-4, err_msg=form)
    by_export = serve(tf.constant([open(f, "rb").read() for f in files]))
    np.testing.assert_allclose(by_export["probabilities"].numpy(), from_reader,
                               atol=1e-4, err_msg=form)
