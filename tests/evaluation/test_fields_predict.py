"""evaluation/fields.py (predict --fields) on tiny composed fields and a hand-made run
whose model tells bright cells from dim ones."""

import json

import keras
import numpy as np
import pandas as pd
from PIL import Image

from hep2tf import rundir
from hep2tf.config.run import RunConfig
from hep2tf.config.train import TrainConfig
from hep2tf.convert import create
from hep2tf.convert.plan import ConvertConfig
from hep2tf.data import fields
from hep2tf.data.records import Records
from hep2tf.evaluation import fields as predict_fields
from hep2tf.evaluation import predict, votes
from tests.fields_helper import CELL, make_fields

# Class 1 ("Homogeneous") when a window's mean exceeds this many DN. The test makes
# one well 4x brighter than the other (windows of 38 DN and more against 24 at most),
# so the model's answer per cell is known.
THRESHOLD = 30.0


def _run(tmp_path):
  """A run directory whose model scores mean brightness (no training needed)."""
  inputs = keras.Input((CELL, CELL, 1))
  x = keras.layers.GlobalAveragePooling2D()(inputs)
  logits = keras.layers.Dense(2, name="logits")(x)
  model = keras.Model(inputs, keras.layers.Softmax(name="probs")(logits))
  model.get_layer("logits").set_weights([np.array([[0.0, 1.0]]),
                                         np.array([0.0, -THRESHOLD])])
  run = rundir.RunDir(tmp_path / "run")
  (tmp_path / "run").mkdir()
  model.save(run.model_file("best"))
  run.write_config(RunConfig(
      train=TrainConfig(model="test"), input_shape=(CELL, CELL, 1),
      class_names=("Centromere", "Homogeneous"), records_dir=str(tmp_path)).to_json())
  return str(tmp_path / "run")


def test_fields_to_specimen_answers(tmp_path):
  # Two wells of 3 fields with a dead cell each; S00_002's made 4x brighter.
  root = make_fields(tmp_path / "f", 2, fields=3, dead=1, patterns=("Homogeneous",))
  for path in (root / "S00_002").glob("field?.png"):
    bright = np.clip(np.asarray(Image.open(path)).astype(int) * 4, 0, 255)
    Image.fromarray(bright.astype(np.uint8)).save(path)
  (root / "specimens.csv").write_text("specimen,pattern\nS00_001,Centromere\n"
                                      "S00_002,Homogeneous\n")
  (root / "S00_001" / "field3.png").write_bytes(b"broken")      # unreadable
  (root / "S_EMPTY").mkdir()
  Image.fromarray(np.full((96, 96), 3, np.uint8)).save(root / "S_EMPTY" / "a.png")
  with open(root / "specimens.csv", "a", encoding="utf-8") as f:
    f.write("S_EMPTY,Homogeneous\n")
  out = tmp_path / "out"
  table, rejects, report = predict_fields.predict_fields(
      _run(tmp_path), str(root), str(out), tta=True)

  answers = dict(zip(table["specimen"], table["pattern"]))
  assert answers == {"S00_001": "Centromere", "S00_002": "Homogeneous",
                     "S_EMPTY": votes.NO_CELLS}
  assert [e.file for e in rejects.errors] == [str(root / "S00_001" / "field3.png")]
  row = table.set_index("specimen").loc["S00_001"]
  assert (row["fields"], row["fields_skipped"]) == (3, 1) and row["voted"] >= 3
  assert predict_fields.exit_code(rejects) == 3
  # specimens.csv, cells.csv, metrics, one overlay PNG per readable field.
  written = pd.read_csv(out / "specimens.csv")
  assert list(written.columns[:7]) == ["specimen", "pattern", "confidence", "cells",
                                       "voted", "fields", "fields_skipped"]
  assert {"p_Centromere", "p_Homogeneous", "true_pattern"} <= set(written.columns)
  cells = pd.read_csv(out / "cells.csv")
  assert list(cells.columns[:14]) == [
      "specimen", "field", "cell", "cy", "cx", "top", "left", "bottom", "right",
      "area", "source", "pattern", "confidence", "voted"]
  assert len(cells) == row["cells"] + table.set_index("specimen").loc[
      "S00_002", "cells"]
  overlays = sorted((out / "overlays").rglob("*.png"))
  assert [p.relative_to(out / "overlays").as_posix() for p in overlays] == [
      "S00_001/field1.png", "S00_001/field2.png", "S00_002/field1.png",
      "S00_002/field2.png", "S00_002/field3.png", "S_EMPTY/a.png"]
  for path in overlays:
    assert Image.open(path).format == "PNG"
  metrics = json.loads((out / "metrics.json").read_text())
  assert metrics["aca"] == report["aca"] == 2 / 3 and metrics["answered"] == 2
  assert (out / "confusion_matrix.png").is_file()


def test_cells_cut_at_prediction_are_the_records_cells(tmp_path):
  """The window predict cuts, mapped to the model's input, equals the converter's
  cell file read the way predict reads files: one cut, one pixel path."""
  root = make_fields(tmp_path / "f", 2, fields=1, bits=16)
  config = fields.FieldsConfig(cell_size=CELL)
  create.create_records(ConvertConfig(
      "fields", str(root), output_dir=str(tmp_path / "rec"), num_workers=1,
      progress=False, validation_fraction=0.0, test_fraction=0.0,
      cell_size=CELL))
  records = Records.open(str(tmp_path / "rec"))
  pixels = records.info.pixels
  shape = (CELL, CELL, 1)
  (_, path, mask), = fields.list_fields(str(root))["S00_001"]
  values = fields.read_field(path)
  labels, _ = fields.field_labels(values, mask, config)
  cells, _ = fields.find_cells(labels, config)
  fill = fields.background_level(values, labels)
  for cell in cells[:3]:
    window = fields.cut_window(values, cell, CELL, fill)
    crop = root / ".hep2tf_cells" / "S00_001" / f"field1_{cell.id:04d}.png"
    np.testing.assert_array_equal(
        predict.array_for_model(window, shape, pixels),
        predict.load_for_model(str(crop), shape, pixels))
  assert pixels.dtype == "uint16"
