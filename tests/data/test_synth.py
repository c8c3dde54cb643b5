"""Tests of the synthetic HEp-2 generator (hep2tf.synth), on a few dozen cells."""

import csv
import hashlib
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from hep2tf.data import synth

NUM = 36


def _rows(folder):
  with open(pathlib.Path(folder) / synth.CSV_NAME, newline="") as f:
    return list(csv.reader(f))


def _load(folder, image_id, suffix=""):
  return np.array(Image.open(pathlib.Path(folder) / f"{int(image_id):05d}{suffix}.png"))


def _digest(folder):
  """sha256 over every file's name and bytes."""
  h = hashlib.sha256()
  for path in sorted(pathlib.Path(folder).iterdir()):
    h.update(path.name.encode())
    h.update(path.read_bytes())
  return h.hexdigest()


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
  folder = tmp_path_factory.mktemp("synth") / "set"
  synth.generate(folder, num_images=NUM, seed=3)
  return folder


def test_class_counts_keep_real_proportions():
  assert synth.class_counts(synth.DEFAULT_NUM_IMAGES) == synth.CLASS_COUNTS
  counts = synth.class_counts(100)
  assert sum(counts.values()) == 100
  assert list(counts) == list(synth.CLASS_NAMES)
  assert counts["Golgi"] == min(counts.values())
  assert counts == {"Homogeneous": 19, "Speckled": 21, "Nucleolar": 19,
                    "Centromere": 20, "NuMem": 16, "Golgi": 5}
  assert all(v >= 1 for v in synth.class_counts(6).values())


def test_default_num_specimens():
  assert synth.default_num_specimens(synth.DEFAULT_NUM_IMAGES) == 83
  assert synth.default_num_specimens(100) == 12      # two per class
  assert synth.default_num_specimens(6) == 6


def test_layout_and_csv(small_set):
  rows = _rows(small_set)
  assert tuple(rows[0]) == ("Image ID", "Image class", "Intensity", "Specimen")
  body = rows[1:]
  assert [r[0] for r in body] == [str(i) for i in range(1, NUM + 1)]
  labels = [r[1] for r in body]
  assert {c: labels.count(c) for c in synth.CLASS_NAMES} == synth.class_counts(NUM)
  assert {r[2] for r in body} == {"positive", "intermediate"}
  assert len({r[3] for r in body}) == synth.default_num_specimens(NUM)
  params = json.loads((small_set / synth.PARAMS_NAME).read_text())
  assert params["num_images"] == NUM and params["seed"] == 3
  assert params["image_size"] == 78 and params["num_specimens"] == 12
  assert "version" in params
  names = {p.name for p in small_set.iterdir()}
  assert len(names) == 2 * NUM + 2
  assert not any(p.name.startswith(".") for p in small_set.parent.iterdir())


def test_images_are_dark_grey_iif(small_set):
  for image_id in (1, 2, 3, 10):
    image = np.array(Image.open(small_set / f"{image_id:05d}.png"))
    assert Image.open(small_set / f"{image_id:05d}.png").mode == "L"
    assert image.dtype == np.uint8 and image.shape == (78, 78)
    mask = _load(small_set, image_id, "_Mask") > 0
    # Background near 0, cell clearly above it but far from saturating.
    assert np.median(image[~mask]) < 15
    assert 15 < np.percentile(image[mask], 90) < 200


def test_masks_match_images(small_set):
  for r in _rows(small_set)[1:]:
    image, mask = _load(small_set, r[0]), _load(small_set, r[0], "_Mask")
    assert mask.shape == image.shape and mask.dtype == np.uint8
    assert set(np.unique(mask)) == {0, 255}
    assert 0.1 < (mask > 0).mean() < 0.7
    # The stained cell lies under the mask.
    assert image[mask > 0].mean() > 1.5 * image[mask == 0].mean() + 1


def test_each_specimen_has_one_class_and_intensity(small_set):
  seen = {}
  for _, label, intensity, specimen in _rows(small_set)[1:]:
    assert seen.setdefault(specimen, (label, intensity)) == (label, intensity)
  per_class = {}
  for label, _ in seen.values():
    per_class[label] = per_class.get(label, 0) + 1
  assert all(per_class[c] == 2 for c in synth.CLASS_NAMES)


def test_same_seed_same_bytes_also_with_workers(tmp_path, small_set):
  again = tmp_path / "again"
  synth.generate(again, num_images=NUM, seed=3, num_workers=2)
  assert _digest(again) == _digest(small_set)
  other = tmp_path / "other"
  synth.generate(other, num_images=NUM, seed=4)
  assert _digest(other) != _digest(small_set)
  assert not np.array_equal(_load(other, 1), _load(small_set, 1))


def test_intermediate_dimmer_than_positive():
  rng = np.random.default_rng(0)
  means = {"positive": [], "intermediate": []}
  for k, intensity in enumerate(["positive", "intermediate"] * 8):
    spec = synth.specimen_params(7, k + 1, intensity)
    image, mask = synth.draw_cell("Homogeneous", spec, 78, rng)
    means[intensity].append(image[mask > 0].mean())
  assert np.mean(means["intermediate"]) < 0.7 * np.mean(means["positive"])


def _rim_over_centre(label, n=6):
  """Mean over cells of (mean at the mask edge) / (mean at the mask centre)."""
  from scipy import ndimage
  rng = np.random.default_rng(1)
  ratios = []
  for k in range(n):
    spec = synth.specimen_params(11, k + 1, "positive")
    image, mask = synth.draw_cell(label, spec, 78, rng)
    depth = ndimage.distance_transform_edt(mask > 0)
    rim = (depth > 0) & (depth <= 4)
    centre = depth >= 0.6 * depth.max()
    ratios.append(image[rim].mean() / image[centre].mean())
  return np.mean(ratios)


def test_pattern_signatures():
  # NuMem: bright rim, darker inside; Homogeneous: evenly bright (edge blurred).
  assert _rim_over_centre("NuMem") > 1.3
  assert _rim_over_centre("Homogeneous") < 1.0

def _detail(label, n=6):
  """Mean over cells of fine detail (image minus its blur) relative to brightness."""
  from scipy import ndimage
  rng = np.random.default_rng(2)
  values = []
  for k in range(n):
    spec = synth.specimen_params(5, k + 1, ("positive", "intermediate")[k % 2])
    image, mask = synth.draw_cell(label, spec, 78, rng)
    smooth = ndimage.gaussian_filter(image.astype(float), 0.7)
    detail = smooth - ndimage.gaussian_filter(smooth, 3.0)
    inner = ndimage.binary_erosion(mask > 0, iterations=4)
    values.append(detail[inner].std() / smooth[inner].mean())
  return np.mean(values)


def test_texture_signatures():
  homogeneous = _detail("Homogeneous")
  # Speckled granules are coarser than Homogeneous grain (the confusable pair), and
  # Centromere's sharp dots on a dim nucleus stand out far more.
  assert _detail("Speckled") > 1.2 * homogeneous
  assert _detail("Centromere") > 2 * homogeneous


def test_golgi_patch_is_off_centre():
  rng = np.random.default_rng(4)
  offsets = {}
  for label in ("Golgi", "Homogeneous"):
    d = []
    for k in range(5):
      spec = synth.specimen_params(9, k + 1, "positive")
      image, _ = synth.draw_cell(label, spec, 78, rng)
      bright = np.argwhere(image >= np.percentile(image, 97))
      d.append(np.hypot(*(bright.mean(0) - 38.5)))
    offsets[label] = np.mean(d)
  assert offsets["Golgi"] > offsets["Homogeneous"] + 8


def test_matches_and_existing_folder(tmp_path, small_set):
  assert synth.matches(small_set, NUM, 3, 78)
  assert synth.matches(small_set, NUM, 3, 78, num_specimens=12)
  assert not synth.matches(small_set, NUM, 4, 78)
  assert not synth.matches(small_set, NUM + 1, 3, 78)
  assert not synth.matches(tmp_path / "missing", NUM, 3, 78)
  # An identical set is returned at once, untouched.
  before = (small_set / "00001.png").stat().st_mtime_ns
  assert synth.generate(small_set, NUM, 3) == small_set / "gt_training.csv"
  assert (small_set / "00001.png").stat().st_mtime_ns == before

  other = tmp_path / "other"
  other.mkdir()
  (other / "keep.txt").write_text("user data")
  with pytest.raises(FileExistsError):
    synth.generate(other, num_images=12, seed=0)
  assert (other / "keep.txt").exists()
  synth.generate(other, num_images=12, seed=0, overwrite=True)
  assert not (other / "keep.txt").exists()
  assert synth.matches(other, 12, 0, 78)
  # A set missing a file is not complete.
  (other / "00005_Mask.png").unlink()
  assert not synth.matches(other, 12, 0, 78)


def test_bad_parameters(tmp_path):
  with pytest.raises(ValueError):
    synth.generate(tmp_path / "a", num_images=12, num_specimens=3)
  with pytest.raises(ValueError):
    synth.generate(tmp_path / "b", num_images=0)
  assert not list(tmp_path.iterdir())


def test_other_sizes_and_specimen_counts(tmp_path):
  folder = tmp_path / "s"
  synth.generate(folder, num_images=12, seed=1, image_size=48, num_specimens=8)
  rows = _rows(folder)[1:]
  assert len({r[3] for r in rows}) == 8
  assert _load(folder, 1).shape == (48, 48)


def test_command_line(tmp_path):
  out = tmp_path / "cli"
  result = subprocess.run(
      [sys.executable, "-m", "hep2tf.synth", f"--output_dir={out}",
       "--num_images=8", "--seed=2"],
      capture_output=True, text=True, timeout=120, check=True)
  assert str(out) in result.stdout and "8" in result.stdout
  assert synth.matches(out, 8, 2, 78)


# ---------------------------------------------------------------- stress profile

# Decoded pixels and CSV of the default 36-cell set with seed 3, generator version 1:
# the stress profile must leave the default set exactly as it was.
DEFAULT_SET_PIXELS_SHA256 = (
    "1d693204681de8f3b03d062a408517ab8c6d92f2dcd902e7d0761dd0c9c42527")


def _pixel_digest(folder):
  h = hashlib.sha256()
  for path in sorted(pathlib.Path(folder).iterdir()):
    h.update(path.name.encode())
    h.update(np.asarray(Image.open(path)).tobytes() if path.suffix == ".png"
             else path.read_bytes())
  return h.hexdigest()


def test_default_set_is_unchanged(small_set):
  assert _pixel_digest(small_set) == DEFAULT_SET_PIXELS_SHA256
  params = json.loads((small_set / synth.PARAMS_NAME).read_text())
  assert "profile" not in params and params["version"] == synth.GENERATOR_VERSION


STRESS_NUM = 90


@pytest.fixture(scope="module")
def stress_set(tmp_path_factory):
  folder = tmp_path_factory.mktemp("stress") / "set"
  synth.generate(folder, num_images=STRESS_NUM, seed=1, profile="stress")
  return folder


def _stress_cells(folder):
  """{image id: (label, specimen, split folder)} from the CSV and the folders."""
  where = {p.stem: sub for sub in ("training", "validation", "test")
           for p in (folder / sub).glob("?????.png")}
  return {r[0]: (r[1], r[3], where[f"{int(r[0]):05d}"]) for r in _rows(folder)[1:]}


def test_stress_layout_splits_by_specimen_with_every_class_everywhere(stress_set):
  cells = _stress_cells(stress_set)
  assert len(cells) == STRESS_NUM
  split_of_specimen = {}
  for label, specimen, split in cells.values():
    assert split_of_specimen.setdefault(specimen, split) == split
  for split in ("training", "validation", "test"):
    assert {l for l, _, s in cells.values() if s == split} == set(synth.CLASS_NAMES)
  assert len(split_of_specimen) == synth.stress_num_specimens(STRESS_NUM) == 30
  params = json.loads((stress_set / synth.PARAMS_NAME).read_text())
  assert params["profile"] == "stress" and params["version"] == synth.STRESS_VERSION
  assert synth.matches(stress_set, STRESS_NUM, 1, 78, profile="stress")
  assert not synth.matches(stress_set, STRESS_NUM, 1, 78)


def test_stress_test_specimens_are_blurrier_and_noisier(stress_set):
  cells = _stress_cells(stress_set)
  stats = {"training": [], "test": []}
  for image_id, (_, _, split) in cells.items():
    if split not in stats:
      continue
    stem = stress_set / split / f"{int(image_id):05d}"
    image = np.asarray(Image.open(f"{stem}.png"), np.float64)
    mask = np.asarray(Image.open(f"{stem}_Mask.png")) > 0
    # Background noise, and the cell's level above the background.
    stats[split].append((image[~mask].std(),
                         np.percentile(image[mask], 90) - np.median(image[~mask])))
  train, test = np.array(stats["training"]), np.array(stats["test"])
  assert np.median(test[:, 0]) > 1.15 * np.median(train[:, 0])
  assert np.median(test[:, 1]) < 0.8 * np.median(train[:, 1])
  # The focus is drawn per well: every test well is out of focus, no other is.
  for specimen in range(1, 31):
    for split in ("train", "validation"):
      assert synth.stress_specimen_params(1, specimen, "positive", split)["blur"] < 1.5
    assert synth.stress_specimen_params(1, specimen, "positive", "test")["blur"] >= 1.5


def test_stress_same_seed_same_bytes(tmp_path, stress_set):
  again = tmp_path / "again"
  synth.generate(again, num_images=STRESS_NUM, seed=1, profile="stress",
                 num_workers=2)
  assert _pixel_digest(again / "test") == _pixel_digest(stress_set / "test")
  assert (again / synth.CSV_NAME).read_bytes() == (
      stress_set / synth.CSV_NAME).read_bytes()
  with pytest.raises(ValueError, match="profile"):
    synth.make_plan(12, 0, profile="harsh")
