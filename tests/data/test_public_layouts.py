"""The public datasets as they ship, in miniature, through the converter's CLI.

Each builder lays out a small copy of a real download (folder and file names,
separators, headers, nesting, image modes as they ship; random pixels) and the tests
run `create_records` from the top folder with the command a user types.
"""

import json
import os
import shlex

import numpy as np
import pandas as pd
import pytest
from absl import flags
from PIL import Image

from hep2tf import create_records, errors
from hep2tf.convert import plan
from hep2tf.data import folds, reader, synth
from hep2tf.data.records import CLASS_COUNTS, INFO_FILE, MANIFEST, Records
from hep2tf.training import sweep
from hep2tf.config.train import TrainConfig
from tests.conftest import REPO
from tests.fields_helper import make_fields

_RNG = np.random.default_rng(23)


def _image(path, mode="RGB", size=(12, 12), fmt=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  channels = {"RGB": 3, "L": 1}[mode]
  pixels = _RNG.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
  Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(
      path, format=fmt)
  return path


def _write(path, text, newline="\n"):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", newline="") as f:
    f.write(text.replace("\n", newline))


def _run(argv):
  """create_records' main with these flags (as `python -m` runs it): exit code."""
  if "dataset" not in flags.FLAGS:
    create_records.define_flags()
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["create_records"] + argv)
  return create_records.main(["create_records"])


def _manifest(records):
  return pd.read_csv(os.path.join(records, MANIFEST), dtype=str,
                     keep_default_na=False)


def _table(records):
  """{split: {class: count}} from the records' class_counts.json."""
  counts = json.loads(open(os.path.join(records, CLASS_COUNTS)).read())
  return {s: c for s, c in counts.items() if s in plan.SPLIT_ORDER}


# ---------------------------------------------------------------- C-NMC 2019

# Training folds: (subject token as in the file name, cell, label). h1/H1 and h3/H3
# are one subject each, spelled both ways as in the real names.
_FOLDS = {
    "fold_0": [("1", 1, "all"), ("1", 2, "all"), ("2", 1, "all"),
               ("H1", 1, "hem"), ("h1", 2, "hem")],
    "fold_1": [("3", 1, "all"), ("3", 2, "all"), ("H2", 1, "hem"), ("H4", 1, "hem")],
    "fold_2": [("4", 1, "all"), ("H3", 1, "hem"), ("h3", 2, "hem")],
}
# Preliminary test set: renamed N.bmp, labels (1 = ALL) and subjects in the CSV only.
_PRELIM = [("UID_5_1_1_all.bmp", 1), ("UID_H5_1_1_hem.bmp", 0),
           ("UID_h5_2_1_hem.bmp", 0), ("UID_6_1_1_all.bmp", 1)]
_FINAL = 6   # unlabelled final-phase images 1.bmp .. 6.bmp (names overlap the prelim)


def cnmc(root, layout="kaggle"):
  """C-NMC_Leukemia/ as Kaggle or TCIA ship it; returns the top folder."""
  top = os.path.join(root, "C-NMC_Leukemia")
  train = "training_data" if layout == "kaggle" else "C-NMC_training_data"
  for fold, cells in _FOLDS.items():
    for subject, cell, label in cells:
      _image(os.path.join(top, train, fold, label,
                          f"UID_{subject}_{cell}_1_{label}.bmp"), fmt="BMP")
  if layout == "kaggle":
    prelim_csv = os.path.join(top, "validation_data",
                              "C-NMC_test_prelim_phase_data_labels.csv")
    prelim = os.path.join(top, "validation_data", "C-NMC_test_prelim_phase_data")
    final = os.path.join(top, "testing_data", "C-NMC_test_final_phase_data")
  else:   # TCIA: the images one folder deeper than their CSV
    outer = os.path.join(top, "C-NMC_test_prelim_phase_data")
    prelim_csv = os.path.join(outer, "C-NMC_test_prelim_phase_data_labels.csv")
    prelim = os.path.join(outer, "C-NMC_test_prelim_phase_data")
    final = os.path.join(top, "C-NMC_test_final_phase_data",
                         "C-NMC_test_final_phase_data")
  _write(prelim_csv, "Patient_ID,new_names,labels\n" + "".join(
      f"{patient},{n}.bmp,{label}\n" for n, (patient, label) in
      enumerate(_PRELIM, 1)), newline="\r\n" if layout == "tcia" else "\n")
  for n in range(1, len(_PRELIM) + 1):
    _image(os.path.join(prelim, f"{n}.bmp"), fmt="BMP")
  for n in range(1, _FINAL + 1):
    _image(os.path.join(final, f"{n}.bmp"), fmt="BMP")
  return top


CNMC_TABLE = {"train": {"hem": 4, "all": 5}, "validation": {"hem": 2, "all": 1},
              "test": {"hem": 2, "all": 2}}


@pytest.mark.parametrize("layout", ["kaggle", "tcia"])
def test_cnmc_from_the_top_folder(tmp_path, capsys, layout):
  top = cnmc(tmp_path / "data", layout)
  out = str(tmp_path / "records")
  assert _run(["--dataset=cnmc", f"--data_dir={top}", f"--output_dir={out}",
               "--num_workers=1"]) == errors.EXIT_OK
  printed = capsys.readouterr().out
  assert "fold_0, fold_1 -> train; fold_2 -> validation" in printed
  assert printed.count(f"skipped {_FINAL} images") == 1
  assert _table(out) == CNMC_TABLE
  manifest = _manifest(out)
  # Subjects: case-normalised, each in one split; the folds kept per row.
  assert (manifest.groupby("group")["split"].nunique() == 1).all()
  assert sorted(manifest.loc[manifest["split"] == "validation", "group"]) == [
      "4", "H3", "H3"]
  assert (manifest.set_index("id").loc["UID_h1_2_1_hem", "group"]) == "H1"
  assert set(manifest.loc[manifest["split"] == "train", "fold"]) == {"fold_0",
                                                                     "fold_1"}
  # Test labels and subjects come from the CSV (the images are only N.bmp).
  test = manifest[manifest["split"] == "test"].set_index("id")
  assert test.loc[["1", "2", "3", "4"], "label"].tolist() == [
      "all", "hem", "hem", "all"]
  assert test.loc[["1", "2", "3", "4"], "group"].tolist() == ["5", "H5", "H5", "6"]
  assert (test["fold"] == "").all()
  info = json.loads(open(os.path.join(out, INFO_FILE)).read())
  assert info["group_disjoint"] is True and info["positive_class"] == "all"
  assert any("fold_2 -> validation" in n for n in info["layout_notes"])


def test_cnmc_layout_options_from_the_command_line(tmp_path, capsys):
  top = cnmc(tmp_path / "data")
  out = str(tmp_path / "records")
  base = ["--dataset=cnmc", f"--data_dir={top}", "--num_workers=1",
          f"--output_dir={out}"]
  # Every fold in train, nothing carved: the official 3-fold protocol's records.
  assert _run(base + ["--layout_option", "fold_as_split=train",
                      "--validation_fraction=0"]) == errors.EXIT_OK
  assert _table(out) == {"train": {"hem": 6, "all": 6},
                         "test": {"hem": 2, "all": 2}}
  records = Records.open(out)
  assert records.official_folds() == ["fold_0", "fold_1", "fold_2"]
  num, config = sweep.resolve_folds("official", TrainConfig(
      records_dir=out))
  assert num == 3 and config.fold_column == "fold"
  manifest = _manifest(out)
  for k, fold in enumerate(["fold_0", "fold_1", "fold_2"]):
    spec = folds.FoldSpec(k, 3, holdout=True, column="fold")
    assert records.num_examples("train", spec) == (manifest["fold"] == fold).sum()
  read = reader.create_split(
      records, "train", batch_size=64, training=False, with_meta=True,
      fold=folds.FoldSpec(2, 3, holdout=True, column="fold")).dataset
  ids = {i.decode() for _, _, meta in read for i in meta["id"].numpy()}
  assert ids == set(manifest.loc[manifest["fold"] == "fold_2", "id"])
  # A mapping; no test set; a bad option says what it expects.
  assert _run(base + ["--overwrite", "--layout_option=include_test=false",
                      "--layout_option=fold_as_split=fold_0=test,fold_1=train,"
                      "fold_2=validation"]) == errors.EXIT_OK
  assert _table(out) == {"train": {"hem": 2, "all": 2},
                         "validation": {"hem": 2, "all": 1},
                         "test": {"hem": 2, "all": 3}}
  assert "skipped 4 images" in capsys.readouterr().out
  with pytest.raises(ValueError, match="fold_2 in validation"):
    Records.open(out).official_folds()
  assert _run(base + ["--overwrite", "--layout_option=fold_as_split=fold_9=test"]
              ) == errors.EXIT_INPUT_ERROR
  assert "folds found are fold_0, fold_1, fold_2" in capsys.readouterr().err
  assert _run(base + ["--overwrite", "--layout_option=nope"]
              ) == errors.EXIT_INPUT_ERROR
  assert "KEY=VALUE" in capsys.readouterr().err


def test_cnmc_test_csv_disagreeing_with_itself_is_named(tmp_path, capsys):
  top = cnmc(tmp_path / "data")
  csv = os.path.join(top, "validation_data",
                     "C-NMC_test_prelim_phase_data_labels.csv")
  text = open(csv).read().replace("UID_6_1_1_all.bmp,4.bmp,1",
                                  "UID_6_1_1_all.bmp,4.bmp,0")
  _write(csv, text)
  assert _run(["--dataset=cnmc", f"--data_dir={top}", "--num_workers=1",
               f"--output_dir={tmp_path / 'rec'}"]) == errors.EXIT_INPUT_ERROR
  err = capsys.readouterr().err
  assert "C-NMC_test_prelim_phase_data_labels.csv" in err and "row 4" in err
  assert "says all but labels says 0" in err


# ---------------------------------------------------------------- ICPR 2012

# Training slides -> (pattern, cells); test slides likewise. One pattern per slide.
_TRAIN_SLIDES = {1: ("homogeneous", 3), 2: ("homogeneous", 2), 3: ("homogeneous", 2),
                 4: ("centromere", 3), 5: ("centromere", 2), 6: ("centromere", 2),
                 7: ("nucleolar", 3), 8: ("nucleolar", 2), 9: ("nucleolar", 2)}
_TEST_SLIDES = {15: ("homogeneous", 2), 16: ("centromere", 2), 17: ("nucleolar", 1)}


def icpr2012(root, with_cells=True):
  """ICPR2012_Cells_Classification_Contest/ as the MIVIA download ships it."""
  top = os.path.join(root, "ICPR2012_Cells_Classification_Contest")
  cells = ["Cell ID;Set;Image ID;Intensity;Width;Height;Pattern;Mask\n"]
  for folder, slides in (("training", _TRAIN_SLIDES), ("test", _TEST_SLIDES)):
    gt, sizes, cell = ["ID;pattern\n"], ["ID;intensity;width;height\n"], 0
    for slide, (pattern, count) in slides.items():
      intensity = "positive" if slide % 2 else "intermediate"
      for _ in range(count):
        cell += 1
        size = (20 + cell, 18 + 2 * cell)
        _image(os.path.join(top, folder, f"{cell:03d}.png"), "RGB", size)
        _image(os.path.join(top, folder, f"{cell:03d}_mask.png"), "L", size)
        gt.append(f"{cell};{pattern}\n")
        sizes.append(f"{cell};{intensity};{size[0]};{size[1]}\n")
        cells.append(f"{cell};{folder};{slide};{intensity};{size[0]};{size[1]};"
                     f"{pattern};{cell:03d}_mask.png\n")
    _write(os.path.join(top, folder, f"gt_{folder}.csv"), "".join(gt))
    _write(os.path.join(top, folder, f"{folder}.csv"), "".join(sizes))
  if with_cells:
    _write(os.path.join(top, "cells.csv"), "".join(cells))
  return top


def _slide_of():
  """(split, id) -> slide, as the builder numbers the cells."""
  out = {}
  for split, slides in (("train", _TRAIN_SLIDES), ("test", _TEST_SLIDES)):
    cell = 0
    for slide, (_, count) in slides.items():
      for _ in range(count):
        cell += 1
        out[(split, f"{cell:03d}")] = str(slide)
  return out


def test_icpr2012_grouped_by_slide_from_cells_csv(tmp_path, capsys):
  top = icpr2012(tmp_path / "data")
  out = str(tmp_path / "records")
  assert _run(["--dataset=icpr2012", f"--data_dir={top}", f"--output_dir={out}",
               "--num_workers=1"]) == errors.EXIT_OK
  assert "grouped by source slide" in capsys.readouterr().out
  table = _table(out)
  assert table["test"] == {"homogeneous": 2, "coarse_speckled": 0,
                           "fine_speckled": 0, "nucleolar": 1, "centromere": 2,
                           "cytoplasmatic": 0}
  pooled = {c: table["train"][c] + table["validation"][c] for c in table["train"]}
  assert pooled == {"homogeneous": 7, "coarse_speckled": 0, "fine_speckled": 0,
                    "nucleolar": 7, "centromere": 7, "cytoplasmatic": 0}
  manifest = _manifest(out)
  # Every cell's group is its slide, and no slide is in two splits.
  slide_of = _slide_of()
  keys = zip(manifest["split"].replace("validation", "train"), manifest["id"])
  assert manifest["group"].tolist() == [slide_of[k] for k in keys]
  assert (manifest.groupby("group")["split"].nunique() == 1).all()
  assert (manifest["split"] == "validation").any()
  assert manifest.set_index(["split", "id"]).loc[("test", "001"), "intensity"] == (
      "positive")
  info = json.loads(open(os.path.join(out, INFO_FILE)).read())
  assert info["group_disjoint"] is True


def test_icpr2012_without_cells_csv_says_validation_shares_slides(tmp_path, capsys):
  top = icpr2012(tmp_path / "data", with_cells=False)
  out = str(tmp_path / "records")
  assert _run(["--dataset=icpr2012", f"--data_dir={top}", f"--output_dir={out}",
               "--num_workers=1"]) == errors.EXIT_OK
  printed = capsys.readouterr().out
  assert "validation carved from training is NOT slide-disjoint" in printed
  assert "group_disjoint: false" in printed
  info = json.loads(open(os.path.join(out, INFO_FILE)).read())
  assert info["group_disjoint"] is False
  assert sum(info["splits"].values()) == 26 and info["splits"]["test"] == 5


def test_icpr2012_bad_cells_csv_is_named(tmp_path, capsys):
  top = icpr2012(tmp_path / "data")
  path = os.path.join(top, "cells.csv")
  lines = open(path).read().splitlines()
  _write(path, "\n".join(lines[:5] + [lines[5].replace(";training;", ";train-x;")]
                         + lines[6:]) + "\n")
  base = ["--dataset=icpr2012", f"--data_dir={top}", "--num_workers=1",
          f"--output_dir={tmp_path / 'rec'}"]
  assert _run(base) == errors.EXIT_INPUT_ERROR
  err = capsys.readouterr().err
  assert "cells.csv" in err and "row 5" in err and "'train-x'" in err
  _write(path, "\n".join(lines[:5] + lines[6:]) + "\n")   # cell 005 has no row
  assert _run(base) == errors.EXIT_INPUT_ERROR
  assert "cell 005 of training/ has no row in" in capsys.readouterr().err
  _write(path, open(path).read().replace(";", ","))
  assert _run(base) == errors.EXIT_INPUT_ERROR
  assert "wrong separator" in capsys.readouterr().err


# ---------------------------------------------------------------- README


def _readme_commands():
  """The README's dataset examples: its create_records lines on /data/, as written."""
  text = open(os.path.join(REPO, "README.md")).read()
  return [line for line in text.splitlines()
          if line.startswith("python -m hep2tf.create_records --dataset=")
          and "/data/" in line]


def test_readme_dataset_examples_run_as_written(tmp_path, monkeypatch, capsys):
  """Runs every README dataset example on tiny copies at the README's paths.

  The commands are read from README.md and run unchanged except for one thing: the
  README's data root `/data/` becomes `<tmp>/data/`, where this test lays out the
  datasets under the folder names the README uses. The working directory is <tmp>,
  so the relative `records/...` outputs land there. Each runs through the same
  `main` that `python -m hep2tf.create_records` calls and must exit 0.
  """
  data = tmp_path / "data"
  synth.generate(str(data / "icpr2014"), 24, seed=1, image_size=32, num_workers=1)
  icpr2012(data / "icpr2012")
  cnmc(data)   # data/C-NMC_Leukemia
  rows = []
  for n, (label, group) in enumerate([("a", "p1"), ("a", "p2"), ("a", "p3"),
                                      ("b", "p4"), ("b", "p5"), ("b", "p6")] * 2):
    _image(str(data / "cells" / label / f"{n}.png"), "L")
    rows.append(f"cells/{label}/{n}.png,{label},{group}\n")
  _write(str(data / "labels.csv"), "file,pattern,specimen\n" + "".join(rows))
  make_fields(data / "fields_train", 6, fields=1)
  monkeypatch.chdir(tmp_path)
  commands = _readme_commands()
  assert len(commands) == 7 and any("--dataset=cnmc" in c for c in commands)
  assert any("--dataset=fields" in c for c in commands)
  for command in commands:
    argv = shlex.split(command.replace("/data/", f"{data}/"), comments=True)[3:]
    code = _run(argv)
    assert code == errors.EXIT_OK, (command, capsys.readouterr())
  capsys.readouterr()
  assert _table("records/cnmc") == CNMC_TABLE
  assert Records.open("records/cnmc_folds").official_folds() == [
      "fold_0", "fold_1", "fold_2"]
  assert json.loads(open("records/icpr2012/hep2tf.json").read())["group_disjoint"]
  for name in ("icpr2014", "icpr2012", "cnmc", "cells", "labels"):
    assert os.path.exists(f"records/{name}/{INFO_FILE}"), name
