"""A synthetic HEp-2 set in the ICPR 2014 layout: the embedded default dataset.

Real HEp-2 data cannot be downloaded, so this module draws indirect immunofluorescence
(IIF) cells of the six ICPR 2014 patterns and writes them as the contest released them:

  OUTPUT_DIR/gt_training.csv   Image ID,Image class,Intensity,Specimen
  OUTPUT_DIR/00001.png         8-bit grey cell image (image_size x image_size)
  OUTPUT_DIR/00001_Mask.png    8-bit grey cell mask, 0 background / 255 cell
  OUTPUT_DIR/synth.json        the generation parameters (see `matches`)

As in the real set each specimen (well) has one pattern and one intensity, and its own
gain, background, focus and texture, so a split by specimen is harder than a random one.
Cells are dark like real IIF: background near 0, a nucleus at 10-30% of full scale for
`intermediate` and brighter for `positive`, with Poisson-like shot noise plus read noise.

`profile="stress"` (`--profile=stress`) draws a harder set for specimen shift: stronger
specimen effects, and split folders (`training/`, `validation/`, `test/`, which the ICPR
2014 reader keeps) whose test specimens come from another "microscope" than the training
and validation ones: out of focus, dimmer, with a brighter background and more shot and
read noise. A recipe that learns its training specimens scores well on validation and
poorly on test there; see docs/RESULTS.md.

Everything is drawn from seeds derived from (seed, specimen, image) with
`numpy.random.SeedSequence`, so the bytes do not depend on the number of workers.
This module does not import TensorFlow, so worker processes start fast. The command
line is `python -m hep2tf.synth` (hep2tf/synth.py).
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import pathlib
import shutil
import sys
import tempfile
from typing import Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

CLASS_NAMES = ("Homogeneous", "Speckled", "Nucleolar", "Centromere", "NuMem", "Golgi")
# Cells per class in the ICPR 2014 / I3A Task 1 training set (13,596 in all).
CLASS_COUNTS = {"Homogeneous": 2494, "Speckled": 2831, "Nucleolar": 2598,
                "Centromere": 2741, "NuMem": 2208, "Golgi": 724}
DEFAULT_NUM_IMAGES = sum(CLASS_COUNTS.values())
DEFAULT_NUM_SPECIMENS = 83
INTENSITIES = ("positive", "intermediate")

CSV_NAME = "gt_training.csv"
CSV_HEADER = ("Image ID", "Image class", "Intensity", "Specimen")
PARAMS_NAME = "synth.json"
# Bump whenever the drawing changes, so an old folder no longer `matches`. Each
# profile has its own version, so a change to one leaves the other's folders valid.
GENERATOR_VERSION = 1
PROFILES = ("default", "stress")
STRESS_VERSION = 1
# The stress profile's split by specimen, as fractions of each class's specimens
# (about 44 / 36 / 20% of the cells, as in an independent 3,000-cell set), and the
# folders that carry it.
STRESS_SPLITS = (("train", "training", 0.44), ("validation", "validation", 0.36),
                 ("test", "test", 0.20))
STRESS_MIN_SPECIMENS_PER_CLASS = 5

# Sensor model, in 8-bit digital numbers (DN): photons per DN sets the shot noise,
# READ_NOISE_DN the Gaussian read noise added on top.
PHOTONS_PER_DN = 1.5
READ_NOISE_DN = 1.2


# ---------------------------------------------------------------------------
# The plan: which cell has which class, intensity and specimen.


def class_counts(num_images: int) -> dict[str, int]:
  """Cells per class for `num_images`, in the real set's proportions.

  Largest-remainder rounding of CLASS_COUNTS scaled to `num_images`; when
  num_images >= 6 every class gets at least one cell (taken from the largest).
  Returns a dict in CLASS_NAMES order summing to `num_images`.
  """
  if num_images < 1:
    raise ValueError(f"num_images must be >= 1, got {num_images}")
  real = np.array([CLASS_COUNTS[c] for c in CLASS_NAMES], dtype=np.float64)
  exact = real * num_images / real.sum()
  counts = np.floor(exact).astype(int)
  # Ties go to the class listed first, so the result is fully determined.
  order = sorted(range(len(real)), key=lambda i: (-(exact[i] - counts[i]), i))
  for i in order[:num_images - counts.sum()]:
    counts[i] += 1
  if num_images >= len(CLASS_NAMES):
    while (counts == 0).any():
      counts[int(np.argmax(counts))] -= 1
      counts[int(np.argmin(counts))] += 1
  return dict(zip(CLASS_NAMES, (int(c) for c in counts)))


def default_num_specimens(num_images: int) -> int:
  """83 specimens for the full set, scaled down for smaller ones.

  Keeps at least two specimens per class where the class has two cells, so a split
  by specimen can hold every class out, and never more specimens than cells.
  """
  counts = class_counts(num_images)
  floor = sum(min(2, n) for n in counts.values())
  scaled = round(DEFAULT_NUM_SPECIMENS * num_images / DEFAULT_NUM_IMAGES)
  return int(min(num_images, max(floor, scaled)))


def _specimens_per_class(counts: dict[str, int], num_specimens: int,
                         minimum: int = 2) -> list[int]:
  """Splits `num_specimens` over the classes, proportionally, each within [1, cells];
  `minimum` wells per class where the cells and `num_specimens` allow."""
  present = [c for c in CLASS_NAMES if counts[c] > 0]
  if not len(present) <= num_specimens <= sum(counts.values()):
    raise ValueError(
        f"num_specimens must be between {len(present)} (one per class present) and "
        f"{sum(counts.values())} (one per cell), got {num_specimens}")
  cells = np.array([counts[c] for c in CLASS_NAMES])
  # Two wells per class where possible, so a split by specimen can hold each out.
  least = np.minimum(cells, minimum if num_specimens >= np.minimum(
      cells, minimum).sum() else 1)
  wanted = cells * num_specimens / cells.sum()
  alloc = np.maximum(least, np.minimum(cells, np.floor(wanted))).astype(int)
  while alloc.sum() < num_specimens:
    room = np.where(alloc < cells, wanted - alloc, -np.inf)
    alloc[int(np.argmax(room))] += 1
  while alloc.sum() > num_specimens:
    spare = np.where(alloc > least, alloc - wanted, -np.inf)
    alloc[int(np.argmax(spare))] -= 1
  return [int(a) for a in alloc]


def _split_cells(rng: np.random.Generator, num_cells: int, parts: int) -> list[int]:
  """Unequal specimen sizes (as in real wells) that sum to `num_cells`, each >= 1."""
  weights = rng.gamma(3.0, size=parts)
  exact = (num_cells - parts) * weights / weights.sum()
  sizes = np.floor(exact).astype(int)
  order = np.argsort(-(exact - sizes), kind="stable")
  sizes[order[:num_cells - parts - sizes.sum()]] += 1
  return [int(s) + 1 for s in sizes]


def stress_num_specimens(num_images: int) -> int:
  """Specimens of a stress set: the default's, but at least 5 per class (30), so that
  each class has specimens in all three splits."""
  floor = sum(min(STRESS_MIN_SPECIMENS_PER_CLASS, n)
              for n in class_counts(num_images).values())
  return int(min(num_images, max(floor, default_num_specimens(num_images))))


def make_plan(num_images: int, seed: int, num_specimens: int | None = None,
              profile: str = "default") -> list[dict]:
  """The cells to draw, in file order.

  Returns one dict per cell with `image_id` (1-based int), `label` (class name),
  `intensity` ("positive" / "intermediate") and `specimen` (1-based int). Each
  specimen holds one class and one intensity; where a class has two or more
  specimens both intensities occur. Cell order is shuffled, so neither the image id
  nor the specimen id tells the class.

  With profile "stress" each cell also has a `split` (train / validation / test,
  whole specimens, every class in every split where it has three specimens).
  """
  _check_profile(profile)
  counts = class_counts(num_images)
  stress = profile == "stress"
  if num_specimens is None:
    num_specimens = (stress_num_specimens if stress else default_num_specimens)(
        num_images)
  per_class = _specimens_per_class(
      counts, num_specimens, STRESS_MIN_SPECIMENS_PER_CLASS if stress else 2)
  rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
  specimen_ids = rng.permutation(num_specimens) + 1
  cells = []
  next_specimen = 0
  for name, num_spec in zip(CLASS_NAMES, per_class):
    if num_spec == 0:
      continue
    first = int(rng.integers(2))
    sizes = _split_cells(rng, counts[name], num_spec)
    split_of = _stress_splits(num_spec) if stress else [""] * num_spec
    for k, size in enumerate(sizes):
      specimen = int(specimen_ids[next_specimen])
      next_specimen += 1
      intensity = INTENSITIES[(first + k) % 2]
      cells.extend([(name, intensity, specimen, split_of[k])] * size)
  order = rng.permutation(len(cells))
  plan = [{"image_id": i + 1, "label": cells[j][0], "intensity": cells[j][1],
           "specimen": cells[j][2]} for i, j in enumerate(order)]
  if stress:
    for cell, j in zip(plan, order):
      cell["split"] = cells[j][3]
  return plan


def _stress_splits(num_spec: int) -> list[str]:
  """Split of each of a class's `num_spec` specimens (in their drawing order, which
  is random): test and validation get at least one each where there are three."""
  if num_spec < 3:
    return ["train"] * num_spec
  n_test = max(1, round(STRESS_SPLITS[2][2] * num_spec))
  n_val = max(1, round(STRESS_SPLITS[1][2] * num_spec))
  n_val = min(n_val, num_spec - n_test - 1)
  n_train = num_spec - n_test - n_val
  # Intensity alternates along the list, so each split with two or more specimens
  # of a class holds both intensities.
  return ["train"] * n_train + ["validation"] * n_val + ["test"] * n_test


def _check_profile(profile: str) -> None:
  if profile not in PROFILES:
    raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")


# ---------------------------------------------------------------------------
# Drawing one cell.


def specimen_params(seed: int, specimen: int, intensity: str) -> dict[str, float]:
  """What one well shares: gain, background, focus, cell size and texture.

  The gain sets the nucleus level as a fraction of full scale: 0.22-0.40 for
  `positive`, 0.10-0.18 for `intermediate` (so intermediate also has a lower SNR).
  """
  rng = np.random.default_rng(np.random.SeedSequence([seed, 1, specimen]))
  low, high = (0.22, 0.40) if intensity == "positive" else (0.10, 0.18)
  return {
      "gain": rng.uniform(low, high),
      "background": rng.uniform(0.004, 0.025),   # fraction of full scale
      "blur": rng.uniform(0.6, 1.1),             # point spread sigma, pixels
      "radius": rng.uniform(0.27, 0.35),         # nucleus radius / image size
      "elongation": rng.uniform(0.0, 0.25),      # typical 1 - minor/major axis
      "texture": rng.uniform(0.0, 1.0),          # fine (0) to coarse (1) granules
      "contrast": rng.uniform(0.0, 1.0),         # weak (0) to strong (1) pattern
      "cytoplasm": rng.uniform(0.02, 0.08),      # cytoplasmic haze, rel. to nucleus
  }


def stress_specimen_params(seed: int, specimen: int, intensity: str,
                           split: str) -> dict[str, float]:
  """A stress-set well: `specimen_params` with stronger effects, and for `test`
  specimens those of another microscope and exposure.

  Training and validation wells (one lab): gain as in the default set but over a
  wider range, focus 0.5-1.4 px, the default sensor. Test wells: out of focus (blur
  1.5-1.9 px), 70-90% of the exposure, a background 1.5-3.5% of full scale, fewer
  photons per DN (more shot noise) and 1.5-2.2 DN of read noise. The pattern parameters
  (size, texture, contrast) come from the same ranges in every split.
  """
  rng = np.random.default_rng(np.random.SeedSequence([seed, 3, specimen]))
  low, high = (0.20, 0.45) if intensity == "positive" else (0.08, 0.20)
  spec = {
      "gain": rng.uniform(low, high),
      "background": rng.uniform(0.004, 0.03),
      "blur": rng.uniform(0.5, 1.4),
      "radius": rng.uniform(0.27, 0.35),
      "elongation": rng.uniform(0.0, 0.25),
      "texture": rng.uniform(0.0, 1.0),
      "contrast": rng.uniform(0.0, 1.0),
      "cytoplasm": rng.uniform(0.02, 0.08),
      "photons_per_dn": PHOTONS_PER_DN,
      "read_noise": READ_NOISE_DN,
  }
  if split == "test":
    spec.update(gain=spec["gain"] * rng.uniform(0.7, 0.9),
                background=rng.uniform(0.015, 0.035),
                blur=rng.uniform(1.5, 1.9),
                photons_per_dn=rng.uniform(1.0, 1.3),
                read_noise=rng.uniform(1.5, 2.2))
  return spec


def _nucleus(rng: np.random.Generator, size: int, spec: dict[str, float],
             shift: tuple[float, float] = (0.0, 0.0)) -> dict[str, np.ndarray | float]:
  """An irregular ellipse: per-pixel normalised radius `rho` (1 on the boundary).

  Also returns the geometry needed to place points inside it: centre, axes (pixels)
  and orientation.
  """
  radius = size * spec["radius"] * rng.lognormal(0.0, 0.08)
  squash = np.clip(1.0 - spec["elongation"] * rng.uniform(0.3, 1.7), 0.6, 1.0)
  major, minor = radius / np.sqrt(squash), radius * np.sqrt(squash)
  angle = rng.uniform(0.0, np.pi)
  cy = size / 2 + rng.normal(0.0, 0.04 * size) + shift[0] * radius
  cx = size / 2 + rng.normal(0.0, 0.04 * size) + shift[1] * radius
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
  dy, dx = yy + 0.5 - cy, xx + 0.5 - cx
  u = (dx * np.cos(angle) + dy * np.sin(angle)) / major
  v = (-dx * np.sin(angle) + dy * np.cos(angle)) / minor
  phi = np.arctan2(v, u)
  # Low-order wobble of the outline: real nuclei are not perfect ellipses.
  wobble = 1.0
  for order in (2, 3, 5):
    wobble = wobble + rng.normal(0.0, 0.025) * np.cos(order * phi
                                                      + rng.uniform(0, 2 * np.pi))
  rho = np.hypot(u, v) / wobble
  return {"rho": rho, "cy": cy, "cx": cx, "major": major, "minor": minor,
          "angle": angle, "radius": radius}


def _inside(nuc: dict, edge_px: float = 0.8) -> np.ndarray:
  """A soft 0..1 nucleus indicator with an edge about `edge_px` pixels wide."""
  return 1.0 / (1.0 + np.exp(-(1.0 - nuc["rho"]) * nuc["radius"] / edge_px))


def _points_in_nucleus(rng: np.random.Generator, nuc: dict, count: int,
                       max_rho: float = 0.92) -> tuple[np.ndarray, np.ndarray]:
  """`count` uniform points inside the nucleus, as (y, x) pixel coordinates."""
  r = max_rho * np.sqrt(rng.uniform(0.0, 1.0, count))
  t = rng.uniform(0.0, 2 * np.pi, count)
  return _to_pixels(nuc, r * np.cos(t), r * np.sin(t))


def _to_pixels(nuc: dict, u: np.ndarray, v: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
  """Maps normalised nucleus coordinates (u along the major axis) to pixel (y, x)."""
  a, b, c, s = nuc["major"], nuc["minor"], np.cos(nuc["angle"]), np.sin(nuc["angle"])
  x = nuc["cx"] - 0.5 + u * a * c - v * b * s
  y = nuc["cy"] - 0.5 + u * a * s + v * b * c
  return y, x


def _dots(size: int, y: np.ndarray, x: np.ndarray, sigma: float,
          amplitude: np.ndarray | float = 1.0) -> np.ndarray:
  """Gaussian dots of peak `amplitude` at sub-pixel (y, x), by splat then filter."""
  canvas = np.zeros((size, size))
  weights = np.broadcast_to(np.asarray(amplitude, dtype=np.float64), y.shape)
  y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
  fy, fx = y - y0, x - x0
  # Bilinear splat keeps sub-pixel positions, so dots are not snapped to the grid.
  for oy, ox, w in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx),
                    (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
    yi, xi = y0 + oy, x0 + ox
    ok = (yi >= 0) & (yi < size) & (xi >= 0) & (xi < size)
    np.add.at(canvas, (yi[ok], xi[ok]), (weights * w)[ok])
  return ndimage.gaussian_filter(canvas, sigma, mode="constant") * 2 * np.pi * sigma**2


def _blobs(size: int, y: np.ndarray, x: np.ndarray, sigma: np.ndarray,
           amplitude: np.ndarray) -> np.ndarray:
  """A few large Gaussian blobs, drawn exactly (too wide to splat)."""
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
  out = np.zeros((size, size))
  for cy, cx, s, a in zip(y, x, sigma, amplitude):
    out += a * np.exp(-((yy - cy)**2 + (xx - cx)**2) / (2 * s * s))
  return out


def _smooth_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
  """Zero-mean, unit-std Gaussian noise smoothed over `sigma` pixels."""
  field = ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma, mode="wrap")
  return field / (field.std() + 1e-12)


def _homogeneous(rng, size, spec, nuc):
  inside = _inside(nuc)
  # Fine, smooth texture; strong-contrast wells approach fine speckled (as in real
  # data, Homogeneous vs Speckled is the confusable pair).
  grain = _smooth_noise(rng, size, rng.uniform(1.2, 2.0))
  amp = rng.uniform(0.02, 0.04) + 0.01 * spec["contrast"]
  # Chromatin is often a little brighter towards the periphery, never a rim.
  level = 0.85 + 0.15 * np.clip(nuc["rho"], 0, 1)**2 * rng.uniform(0.0, 1.0)
  return inside * np.clip(level + amp * grain, 0, None)


def _speckled(rng, size, spec, nuc):
  inside = _inside(nuc)
  sigma = 0.85 + 0.5 * spec["texture"] * rng.uniform(0.8, 1.2)
  area = np.pi * nuc["major"] * nuc["minor"]
  # Coarser granules are fewer, so coverage stays comparable.
  count = int(area * rng.uniform(0.35, 0.55) / sigma**2)
  y, x = _points_in_nucleus(rng, nuc, count, 0.95)
  granules = _dots(size, y, x, sigma, rng.uniform(0.5, 1.0, count))
  base = 0.45 - 0.2 * spec["contrast"] + rng.uniform(-0.05, 0.05)
  field = base + (1.0 - base) * granules / max(granules.max(), 1e-6) * 1.2
  # Nucleoli are spared: 1-4 dark holes, deeper in strong-contrast wells.
  k = rng.integers(1, 5)
  hy, hx = _points_in_nucleus(rng, nuc, k, 0.55)
  holes = _blobs(size, hy, hx, nuc["radius"] * rng.uniform(0.09, 0.15, k),
                 np.ones(k))
  depth = 0.4 + 0.3 * spec["contrast"] * rng.uniform(0.7, 1.1)
  return inside * field * (1.0 - depth * np.clip(holes, 0, 1))


def _nucleolar(rng, size, spec, nuc):
  inside = _inside(nuc)
  dim = 0.12 + 0.1 * rng.uniform() + 0.06 * _smooth_noise(rng, size, 1.0)
  k = int(rng.integers(1, 7))
  cy, cx = _points_in_nucleus(rng, nuc, k, 0.6)
  # Each nucleolus is a clump of a few sub-blobs, not a perfect disc.
  sub = 4
  y = np.repeat(cy, sub) + rng.normal(0, 0.05 * nuc["radius"], k * sub)
  x = np.repeat(cx, sub) + rng.normal(0, 0.05 * nuc["radius"], k * sub)
  sigma = nuc["radius"] * rng.uniform(0.05, 0.09, k * sub) * (1 + 0.5 * spec["texture"])
  clusters = _blobs(size, y, x, sigma, rng.uniform(0.4, 0.7, k * sub))
  return inside * np.clip(dim, 0, None) + np.clip(clusters, 0, 1.2) * inside


def _centromere(rng, size, spec, nuc):
  inside = _inside(nuc)
  count = int(rng.integers(40, 81))
  y, x = _points_in_nucleus(rng, nuc, count, 0.9)
  sigma = 0.55 + 0.2 * spec["texture"]
  # Equal dots: a narrow spread of brightness.
  dots = _dots(size, y, x, sigma, rng.uniform(0.85, 1.0, count))
  dim = 0.1 + 0.1 * rng.uniform() + 0.04 * _smooth_noise(rng, size, 1.5)
  return inside * np.clip(dim, 0, None) + dots * _inside(nuc, 1.5)


def _numem(rng, size, spec, nuc):
  rho = nuc["rho"]
  width = rng.uniform(0.08, 0.14)
  rim = np.exp(-((rho - 0.93) / width)**2)
  # The rim is smooth but a little uneven along the perimeter.
  rim = rim * (1.0 + 0.12 * _smooth_noise(rng, size, 4.0))
  interior = 0.2 + 0.2 * (1 - spec["contrast"]) + 0.05 * rng.uniform()
  grain = 0.04 * _smooth_noise(rng, size, 1.0)
  return np.clip(_inside(nuc) * (interior + grain) + rim, 0, None)


def _golgi(rng, size, spec, nuc):
  inside = _inside(nuc)
  dim = 0.06 + 0.1 * rng.uniform() + 0.03 * _smooth_noise(rng, size, 1.2)
  side = nuc["side"]
  # A clustered crescent just outside the nucleus on one side.
  k = int(rng.integers(8, 20))
  t = side + rng.normal(0.0, 0.45, k)
  r = 1.0 + np.abs(rng.normal(0.12, 0.12, k))
  y, x = _to_pixels(nuc, r * np.cos(t), r * np.sin(t))
  sigma = rng.uniform(0.9, 1.8, k) * (1 + 0.4 * spec["texture"])
  patch = _blobs(size, y, x, sigma, rng.uniform(0.5, 1.0, k))
  return inside * np.clip(dim, 0, None) + np.clip(patch, 0, 1.3), patch


_PATTERNS = {"Homogeneous": _homogeneous, "Speckled": _speckled,
             "Nucleolar": _nucleolar, "Centromere": _centromere,
             "NuMem": _numem, "Golgi": _golgi}


def draw_cell(label: str, spec: dict[str, float], size: int,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """Draws one cell of pattern `label` in a well with parameters `spec`.

  Returns (image, mask): image uint8 (size, size), dark like IIF with shot and read
  noise; mask uint8 (size, size), 255 on the cell (the nucleus, plus the cytoplasmic
  patch for Golgi) and 0 elsewhere.
  """
  shift = (0.0, 0.0)
  side = rng.uniform(0.0, 2 * np.pi)
  if label == "Golgi":
    # Leave room in the crop for the patch beside the nucleus.
    shift = (-0.15 * np.sin(side), -0.15 * np.cos(side))
  nuc = _nucleus(rng, size, spec, shift)
  nuc["side"] = side
  field = _PATTERNS[label](rng, size, spec, nuc)
  mask = nuc["rho"] <= 1.0
  if label == "Golgi":
    field, patch = field
    mask |= patch > 0.25
  # Faint cytoplasm around the nucleus, then the well's focus and a little haze.
  halo = ndimage.gaussian_filter(_inside(nuc), 0.12 * size) * spec["cytoplasm"]
  field = field + halo
  blur = spec["blur"] * rng.lognormal(0.0, 0.1)
  field = ndimage.gaussian_filter(field, blur, mode="nearest")
  # Cells of one well differ in brightness (cell cycle, antigen load) a lot.
  level = 255.0 * spec["gain"] * rng.lognormal(0.0, 0.25)
  background = 255.0 * spec["background"] * rng.lognormal(0.0, 0.1)
  signal = background + level * field
  # The default set's wells use the module's sensor; stress wells carry their own.
  photons_per_dn = spec.get("photons_per_dn", PHOTONS_PER_DN)
  photons = rng.poisson(np.clip(signal, 0, None) * photons_per_dn)
  counts = photons / photons_per_dn + rng.normal(
      0.0, spec.get("read_noise", READ_NOISE_DN), signal.shape)
  image = np.clip(np.rint(counts), 0, 255).astype(np.uint8)
  return image, mask.astype(np.uint8) * 255


# ---------------------------------------------------------------------------
# Writing the folder.


def _draw_and_write(job: tuple) -> int:
  """Draws and writes the cells of one chunk; a top-level function for workers."""
  folder, seed, size, cells = job
  for cell in cells:
    if "split" in cell:
      spec = stress_specimen_params(seed, cell["specimen"], cell["intensity"],
                                    cell["split"])
      where = os.path.join(folder, _stress_folder(cell["split"]))
    else:
      spec = specimen_params(seed, cell["specimen"], cell["intensity"])
      where = folder
    rng = np.random.default_rng(np.random.SeedSequence([seed, 2, cell["image_id"]]))
    image, mask = draw_cell(cell["label"], spec, size, rng)
    stem = os.path.join(where, f"{cell['image_id']:05d}")
    Image.fromarray(image).save(stem + ".png")
    Image.fromarray(mask).save(stem + "_Mask.png")
  return len(cells)


def _stress_folder(split: str) -> str:
  return {name: folder for name, folder, _ in STRESS_SPLITS}[split]


def _params(num_images: int, seed: int, image_size: int,
            num_specimens: int | None, profile: str = "default") -> dict:
  _check_profile(profile)
  stress = profile == "stress"
  if num_specimens is None:
    num_specimens = (stress_num_specimens if stress else default_num_specimens)(
        num_images)
  params = {"generator": "hep2tf.synth",
            "version": STRESS_VERSION if stress else GENERATOR_VERSION,
            "num_images": int(num_images), "seed": int(seed),
            "image_size": int(image_size), "num_specimens": int(num_specimens)}
  if stress:
    # Only here: the default set's synth.json (and so its bytes) stay as they were.
    params["profile"] = profile
  return params


def matches(output_dir: str | os.PathLike, num_images: int, seed: int,
            image_size: int, num_specimens: int | None = None,
            profile: str = "default") -> bool:
  """Whether `output_dir` holds a complete synthetic set made with these parameters.

  Compares synth.json (including the profile's generator version) and checks that
  the CSV lists `num_images` cells whose image and mask files exist.
  """
  folder = pathlib.Path(output_dir)
  _check_profile(profile)
  try:
    stored = json.loads((folder / PARAMS_NAME).read_text(encoding="utf-8"))
    wanted = _params(num_images, seed, image_size, num_specimens, profile)
  except (OSError, ValueError):
    return False
  if stored != wanted:
    return False
  try:
    with open(folder / CSV_NAME, newline="", encoding="utf-8") as f:
      rows = list(csv.reader(f))
  except OSError:
    return False
  if not rows or tuple(rows[0]) != CSV_HEADER or len(rows) - 1 != num_images:
    return False
  names = set(os.listdir(folder))
  if profile == "stress":
    for _, sub, _ in STRESS_SPLITS:
      if (folder / sub).is_dir():
        names |= set(os.listdir(folder / sub))
  try:
    stems = [f"{int(r[0]):05d}" for r in rows[1:]]
  except (ValueError, IndexError):
    return False
  return all(f"{s}.png" in names and f"{s}_Mask.png" in names for s in stems)


def _write_csv(path: pathlib.Path, plan: Sequence[dict]) -> None:
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for cell in plan:
      writer.writerow([cell["image_id"], cell["label"], cell["intensity"],
                       cell["specimen"]])


def _chunks(plan: Sequence[dict], parts: int) -> list[list[dict]]:
  size = max(1, -(-len(plan) // parts))
  return [list(plan[i:i + size]) for i in range(0, len(plan), size)]


def _pool_context() -> multiprocessing.context.BaseContext:
  """fork where it is safe (fast, and scripts need no __main__ guard); spawn once
  TensorFlow is loaded, because forking its running thread pools can deadlock."""
  if "tensorflow" in sys.modules or "fork" not in multiprocessing.get_all_start_methods():
    return multiprocessing.get_context("spawn")
  return multiprocessing.get_context("fork")


def generate(output_dir: str | os.PathLike, num_images: int = DEFAULT_NUM_IMAGES,
             seed: int = 0, image_size: int = 78, num_specimens: int | None = None,
             num_workers: int = 1, overwrite: bool = False,
             profile: str = "default") -> pathlib.Path:
  """Writes a synthetic HEp-2 set in the ICPR 2014 layout; returns the CSV path.

  Args:
    output_dir: the folder to create. It is built in a temporary sibling folder and
      renamed into place at the end, so an interrupted run leaves nothing that looks
      complete.
    num_images: cells to draw, split over the classes in the real set's proportions.
    seed: the same seed and parameters give byte-identical files.
    image_size: side of the square images, pixels (>= 32).
    num_specimens: wells; None scales the real set's 83 to `num_images`.
    num_workers: processes drawing in parallel (does not change the bytes).
    overwrite: replace an existing `output_dir` that is not this very set.
    profile: "default", or "stress" for the specimen-shift set (split folders,
      test specimens from another microscope; see `stress_specimen_params`).

  Raises:
    FileExistsError: `output_dir` exists (and is not empty), is not a synthetic set
      with these parameters, and `overwrite` is False.
    ValueError: impossible parameters.
  """
  folder = pathlib.Path(output_dir)
  if image_size < 32:
    raise ValueError(f"image_size must be >= 32, got {image_size}")
  params = _params(num_images, seed, image_size, num_specimens, profile)
  csv_path = folder / CSV_NAME
  if matches(folder, num_images, seed, image_size, num_specimens, profile):
    return csv_path
  exists = folder.exists() and (not folder.is_dir() or any(folder.iterdir()))
  if exists and not overwrite:
    raise FileExistsError(
        f"{folder} exists and is not a synthetic set with {params}; "
        "pass overwrite=True (--overwrite) to replace it")
  plan = make_plan(num_images, seed, num_specimens, profile)

  folder.parent.mkdir(parents=True, exist_ok=True)
  staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-",
                                          dir=folder.parent))
  try:
    if profile == "stress":
      for _, sub, _ in STRESS_SPLITS:
        (staging / sub).mkdir()
    jobs = [(str(staging), seed, image_size, chunk)
            for chunk in _chunks(plan, max(1, num_workers) * 8)]
    if num_workers > 1:
      with _pool_context().Pool(num_workers) as pool:
        for _ in pool.imap_unordered(_draw_and_write, jobs):
          pass
    else:
      for job in jobs:
        _draw_and_write(job)
    _write_csv(staging / CSV_NAME, plan)
    # Written last: its presence is what marks the folder as complete.
    (staging / PARAMS_NAME).write_text(json.dumps(params, indent=2) + "\n",
                                       encoding="utf-8")
    _publish(staging, folder)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return csv_path


def _publish(staging: pathlib.Path, folder: pathlib.Path) -> None:
  """Moves `staging` to `folder`, replacing what is there (renames, then deletes)."""
  if folder.exists() or folder.is_symlink():
    trash = pathlib.Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-",
                                          dir=folder.parent))
    os.replace(folder, trash / "old")
    os.replace(staging, folder)
    shutil.rmtree(trash, ignore_errors=True)
  else:
    os.replace(staging, folder)
