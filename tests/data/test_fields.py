"""data/fields.py, data/segment.py and the fields layout (create_records
--dataset=fields), on tiny fields composed from synthetic cells
(tests/fields_helper.py)."""

import json
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage import measure

from hep2tf.convert import create
from hep2tf.convert.plan import ConvertConfig
from hep2tf.data import fields, segment, sources
from hep2tf.data.records import Records
from hep2tf.data.sources import fields as field_source
from hep2tf.errors import InputError, Rejects
from tests.fields_helper import CELL, make_fields

ALL_PATTERNS = ("Homogeneous", "Speckled", "Nucleolar", "Centromere", "NuMem", "Golgi")


def _centres(labels):
  return [r.centroid for r in measure.regionprops(labels)]


def test_segmentation_finds_the_masked_cells_of_every_pattern(tmp_path):
  """Detection without masks, against the masks: one-to-one within 12 px."""
  root = make_fields(tmp_path / "f", 12, patterns=ALL_PATTERNS, fields=1, num_cells=7)
  totals = np.zeros(3)
  for field_list in fields.list_fields(str(root)).values():
    for _, path, mask in field_list:
      grey = fields.read_field(path)
      score = segment.match_centres(_centres(segment.segment_nuclei(grey)),
                                    _centres(fields.read_labels(mask, grey.shape)))
      totals += [score["true"], score["found"], score["matched"]]
  recall, precision = totals[2] / totals[0], totals[2] / totals[1]
  assert totals[0] >= 60
  assert recall >= 0.9 and precision >= 0.8, (recall, precision)


def test_touching_nuclei_are_split_and_the_cut_follows_the_field_levels():
  yy, xx = np.mgrid[0:120, 0:160]
  grey = np.full((120, 160), 4.0)
  for cx in (58, 98):     # two discs of radius 22 that touch at x = 78
    grey[(yy - 60) ** 2 + (xx - cx) ** 2 < 22 ** 2] = 60.0
  labels = segment.segment_nuclei(grey.astype(np.uint8))
  assert labels.max() == 2
  deep = segment.segment_nuclei((grey * 16).astype(np.uint16))
  np.testing.assert_array_equal(deep, labels)
  assert segment.segment_nuclei(np.zeros((20, 20), np.uint8)).max() == 0


def test_matching_is_one_to_one_within_the_radius():
  true = [(10, 10), (50, 50)]
  score = segment.match_centres([(11, 11), (12, 9), (50, 70)], true, radius=12)
  assert (score["matched"], score["recall"], score["precision"]) == (1, 0.5, 1 / 3)
  assert segment.match_centres([], true)["recall"] == 0.0
  assert segment.match_centres([], [])["recall"] is None


def test_masks_binary_or_labelled_and_the_edge_and_size_rule(tmp_path):
  binary = np.zeros((40, 60), np.uint8)
  binary[5:20, 5:20] = 255       # a cell
  binary[25:40, 30:50] = 255     # touches the bottom edge
  binary[5:8, 40:43] = 255       # 9 pixels: debris
  Image.fromarray(binary).save(tmp_path / "b.png")
  labels = fields.read_labels(str(tmp_path / "b.png"), (40, 60))
  assert labels.max() == 3
  cells, dropped = fields.find_cells(labels, fields.FieldsConfig())
  assert len(cells) == 1 and dropped == {"edge": 1, "small": 1}
  assert cells[0].cy == pytest.approx(12.0) and cells[0].bbox == (5, 5, 20, 20)
  kept, _ = fields.find_cells(labels, fields.FieldsConfig(edge_cells="keep",
                                                         min_area=5))
  assert len(kept) == 3
  # A 16-bit label image: its ids are the cells, even where two touch.
  ids = np.zeros((40, 60), np.uint16)
  ids[5:20, 5:20], ids[5:20, 20:35] = 300, 7
  Image.fromarray(ids).save(tmp_path / "l.png")
  assert sorted(np.unique(fields.read_labels(str(tmp_path / "l.png"), (40, 60)))) == [
      0, 7, 300]
  with pytest.raises(InputError, match="but the field is"):
    fields.read_labels(str(tmp_path / "l.png"), (41, 60))


def test_window_is_centred_keeps_neighbours_and_fills_outside_with_background():
  values = np.arange(100 * 100, dtype=np.uint16).reshape(100, 100)
  labels = np.zeros((100, 100), np.int32)
  labels[2:8, 2:8], labels[2:8, 9:12] = 1, 2
  cell = fields.find_cells(labels, fields.FieldsConfig(min_area=1))[0][0]
  window = fields.cut_window(values, cell, 16, fill=7)
  assert window.shape == (16, 16) and window.dtype == np.uint16
  assert window[0, 0] == 7          # outside the field
  assert window[8, 8] == values[5, 5]   # the centroid (4.5, 4.5) rounds to 5
  mask = fields.cell_mask(labels, cell, 16)
  assert mask.max() == 255 and (mask > 0).sum() == 36   # its own cell, not cell 2
  assert window[8, 13] == values[5, 10]                # the neighbour's pixels kept


def _convert(data_dir, out, **options):
  return create.create_records(ConvertConfig(
      "fields", str(data_dir), output_dir=str(out), num_workers=1, progress=False,
      validation_fraction=0.25, test_fraction=0.25, **options))


def test_fields_become_cells_of_their_specimens_grouped_split(tmp_path):
  root = make_fields(tmp_path / "f", 8, bits=16)
  # One field of one specimen without a mask: segmented instead.
  os.remove(next((root / "S00_001").glob("field1_mask.png")))
  summary, rejects = _convert(root, tmp_path / "rec", cell_size=CELL)
  records = Records.open(str(tmp_path / "rec"))
  manifest = records.manifest
  assert len(rejects) == 0 and records.info.class_names == ["Homogeneous",
                                                            "Centromere"]
  assert list(records.info.image_shape[:2]) == [CELL, CELL]
  # Every cell carries its specimen; no specimen is in two splits.
  assert (manifest.groupby("group")["split"].nunique() == 1).all()
  assert set(manifest["split"]) == {"train", "validation", "test"}
  table = pd.read_csv(root / "specimens.csv")
  expected = dict(zip(table["specimen"], table["pattern"]))
  assert (manifest["label"] == manifest["group"].map(expected)).all()
  assert set(manifest["intensity"]) == {"positive", "intermediate"}
  assert manifest["id"].str.match(r"S00_\d{3}/field\d/\d+").all()
  # 16-bit fields stay 16-bit: the levels kept (12-bit counts, white level 4095).
  assert records.info.pixels.dtype == "uint16"
  assert records.info.pixels.white_level == 4095
  info = json.loads((tmp_path / "rec" / "hep2tf.json").read_text())
  assert any("1 segmented" in note for note in info["layout_notes"])
  assert (tmp_path / "rec" / "samples.png").is_file()


def test_bad_fields_are_named_and_mitotic_spindle_is_a_pattern(tmp_path):
  root = make_fields(tmp_path / "f", 3, fields=1)
  with open(root / "specimens.csv", "a", encoding="utf-8") as f:
    f.write("S99,mitotic spindle,positive\n")
  (root / "S99").mkdir()
  (root / "S99" / "field1.png").write_bytes((root / "S00_001" / "field1.png")
                                            .read_bytes())
  (root / "S00_002" / "field2.png").write_bytes(b"\x89PNG truncated")
  with pytest.raises(InputError, match="S00_002/field2.png"):
    _convert(root, tmp_path / "rec")
  rejects = Rejects()
  source = sources.read_source("fields", root, on_error="skip", rejects=rejects)
  assert [e.file for e in rejects.errors] == [str(root / "S00_002" / "field2.png")]
  assert source.class_names == ["Homogeneous", "Centromere", "MitoticSpindle"]
  spindle = source.examples[source.examples["group"] == "S99"]
  assert len(spindle) > 0 and set(spindle["label"]) == {"MitoticSpindle"}
  # S00_002's readable field still gave its cells.
  assert (source.examples["group"] == "S00_002").sum() > 0
  assert field_source.canonical_pattern("Mitotic_Spindle") == "MitoticSpindle"
  assert field_source.canonical_pattern("nuclear membrane") == "NuMem"
  assert field_source.canonical_pattern("homogeneous") == "Homogeneous"


def test_fields_options_apply_to_the_fields_layout_only():
  from hep2tf.config import core
  assert core.parse_value(ConvertConfig, "cell_size", "64") == 64
  with pytest.raises(InputError, match="--cell_size apply to --dataset=fields"):
    ConvertConfig("icpr2014", "x", cell_size=64).source_options
  options = ConvertConfig("fields", "x", cell_size=64).source_options
  assert options["config"].cell_size == 64
  assert options["config"].edge_cells == fields.FieldsConfig().edge_cells
