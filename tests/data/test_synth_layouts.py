"""hep2tf.data.synth.layouts: the synthetic cells in the ICPR 2012, C-NMC and binary
folder layouts read back by the layouts' own readers."""

import hashlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from hep2tf.data.sources import read_source
from hep2tf.data.synth import layouts


def _digest(folder):
  return hashlib.sha256(b"".join(
      p.relative_to(folder).as_posix().encode() + p.read_bytes()
      for p in sorted(folder.rglob("*")) if p.is_file())).hexdigest()


def test_icpr2012_layout_reads_as_the_contest_set(tmp_path):
  folder = layouts.write_layout(tmp_path / "icpr2012", "icpr2012", 60, seed=1)
  source = read_source("icpr2012", folder)
  table = source.examples
  assert source.channels == 3 and len(table) == 60
  assert set(table.label) == set(layouts.ICPR2012_PATTERNS)
  assert set(table.split) == {"train", "test"}
  # One pattern per slide, and no slide in both training/ and test/.
  assert (table.groupby("group").label.nunique() == 1).all()
  slides = table.groupby("split").group.apply(set)
  assert not slides["train"] & slides["test"]
  assert (len(slides["train"]), len(slides["test"])) == (18, 12)
  assert all(table.mask_path != "") and set(table.intensity) == {
      "positive", "intermediate"}
  image = np.asarray(Image.open(table.path.iloc[0]))
  assert image.ndim == 3 and 48 <= image.shape[0] <= 112
  assert image[..., 1].mean() > 4 * image[..., 0].mean()   # the stain is green


def test_cnmc_layout_reads_with_folds_subjects_and_the_test_csv(tmp_path):
  folder = layouts.write_layout(tmp_path / "cnmc", "cnmc", 90, seed=2, image_size=48)
  source = read_source("cnmc", folder)
  table = source.examples
  assert source.positive_class == "all" and len(table) == 90
  assert set(table.split) == {"train", "validation", "test"}
  assert (table.groupby("group").label.nunique() == 1).all()
  counts = table.label.value_counts()
  assert 1.1 < counts["all"] / counts["hem"] < 2.0
  assert set(table[table.split == "train"].fold) == {"fold_0", "fold_1"}
  assert set(table[table.split == "test"].group).isdisjoint(
      table[table.split != "test"].group)


def test_binary_layout_is_imbalanced_one_to_four(tmp_path):
  folder = layouts.write_layout(tmp_path / "binary", "binary", 100, seed=3,
                                image_size=40)
  source = read_source("folder", folder)
  assert source.class_names == ["normal", "tumour"] and source.channels == 3
  assert source.examples.label.value_counts().to_dict() == {"normal": 80,
                                                             "tumour": 20}


def test_same_arguments_same_bytes_and_an_existing_folder_is_kept(tmp_path):
  a = layouts.write_layout(tmp_path / "a", "binary", 60, seed=4, image_size=32)
  b = layouts.write_layout(tmp_path / "b", "binary", 60, seed=4, image_size=32)
  assert _digest(a) == _digest(b)
  before = _digest(a)
  with pytest.raises(FileExistsError, match="overwrite"):
    layouts.write_layout(a, "binary", 60, seed=5, image_size=32)
  assert _digest(a) == before
  with pytest.raises(ValueError, match="layout"):
    layouts.write_layout(tmp_path / "c", "icpr2016", 60)


def test_synth_cli_writes_a_layout_and_refuses_to_overwrite(tmp_path):
  command = [sys.executable, "-m", "hep2tf.synth", "--layout=binary",
             "--num_images=60", "--image_size=32", f"--output_dir={tmp_path / 'b'}"]
  first = subprocess.run(command, capture_output=True, text=True, timeout=300)
  assert first.returncode == 0 and "binary layout" in first.stdout
  again = subprocess.run(command, capture_output=True, text=True, timeout=300)
  assert again.returncode == 2 and "exists" in again.stderr
  assert "Traceback" not in again.stderr
