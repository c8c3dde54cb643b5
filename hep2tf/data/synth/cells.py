"""Drawing one synthetic IIF cell: the well's parameters and the six patterns.

`specimen_params` (and `stress_specimen_params` for the stress profile) give what one
well shares: gain, background, focus, cell size and texture; `draw_cell` draws a cell
of a pattern in such a well, with the well's blur and a sensor's shot and read noise,
and returns the 8-bit image and its mask. No TensorFlow here: worker processes import
this package.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# Sensor model, in 8-bit digital numbers (DN): photons per DN sets the shot noise,
# READ_NOISE_DN the Gaussian read noise added on top.
PHOTONS_PER_DN = 1.5
READ_NOISE_DN = 1.2


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
