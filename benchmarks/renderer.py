"""A second IIF HEp-2 cell renderer, for measuring shift the recipe was not tuned to.

Written apart from `hep2tf.synth` and sharing none of its code or models: nuclei are
Fourier-perturbed outlines drawn at twice the pixel resolution and binned 2x2, the
patterns come from point processes and band-pass noise fields, and the optics are a
Gaussian PSF convolved with a defocus disc, an illumination gradient and vignetting,
a camera gamma, Poisson photons, read noise and spatially correlated (grain) noise.
Every specimen has its own optics, exposure and texture; all cells of a specimen
share its pattern, as in the ICPR 2014 set.

Nuisances come in five families (`FAMILIES`). `render_set(..., held_out=F)` draws
family F for the training and validation specimens from a narrow inner range and for
the test specimens from outside it (extrapolation), every other family from its full
range in all splits: a leave-one-nuisance-out set. `held_out=None` draws every
family from its full range everywhere: an independent set split by specimen.

The set is written in the ICPR 2014 layout (`training/`, `validation/`, `test/` and
`gt_training.csv` with intensity and specimen columns; `specimens.csv` beside it lists
what each specimen drew), 8-bit PNG, or with
`storage="uint16_low"` as 16-bit PNG holding the same 0..255 values (8-bit data in a
16-bit container, as some public sets ship).

  python -m benchmarks.renderer --output_dir=/tmp/iif --num_cells=1500 --seed=0 \
      [--held_out=focus]
"""

from __future__ import annotations

import csv
import os
import sys

import numpy as np
from PIL import Image
from scipy import ndimage, signal

CLASSES = ("Homogeneous", "Speckled", "Nucleolar", "Centromere", "NuMem", "Golgi")
# Relative share of cells per class (Golgi rarest, as in the public set).
CLASS_SHARE = (0.19, 0.21, 0.19, 0.20, 0.16, 0.05)
FAMILIES = ("focus", "scale", "exposure", "illumination", "grain")
SIZE = 78
OVERSAMPLE = 2
SPLIT_SPECIMENS = (5, 1, 2)   # per class: training, validation, test

# Per family: each parameter's full range, its inner range (training specimens of a
# held-out family) and the outer ranges (test specimens of a held-out family).
NUISANCE = {
    "focus": {"defocus": ((0.0, 2.0), (0.0, 0.7), ((1.5, 2.3),))},
    "scale": {"scale": ((0.8, 1.2), (0.9, 1.1), ((0.7, 0.78), (1.25, 1.4)))},
    "exposure": {
        "level": ((0.5, 1.5), (0.85, 1.15), ((0.3, 0.45), (1.9, 2.3))),
        "gamma": ((0.85, 1.2), (0.95, 1.05), ((0.7, 0.8), (1.3, 1.45))),
        "background": ((0.005, 0.04), (0.005, 0.015), ((0.05, 0.08),)),
    },
    "illumination": {
        "gradient": ((0.0, 0.3), (0.0, 0.08), ((0.35, 0.55),)),
        "vignette": ((0.0, 0.3), (0.0, 0.08), ((0.35, 0.55),)),
    },
    "grain": {
        "photons": ((600.0, 3000.0), (2500.0, 4000.0), ((150.0, 350.0),)),
        "read_noise": ((0.5, 2.0), (0.3, 0.8), ((2.5, 4.0),)),
        "grain": ((0.0, 0.02), (0.0, 0.003), ((0.025, 0.045),)),
    },
}


def specimen_nuisance(rng: np.random.Generator, split: str,
                      held_out: str | None) -> dict[str, float]:
  """One specimen's optics and camera, drawn by the leave-one-out rule above."""
  out = {}
  for family, params in NUISANCE.items():
    for name, (full, inner, outer) in params.items():
      if family != held_out:
        low, high = full
      elif split == "test":
        low, high = outer[rng.integers(len(outer))]
      else:
        low, high = inner
      out[name] = float(rng.uniform(low, high))
  out["psf"] = float(rng.uniform(0.55, 0.95))
  return out


def specimen_texture(rng: np.random.Generator) -> dict[str, float]:
  """What a serum's pattern looks like in one well: granule size, counts, contrast."""
  return {
      "granule": float(rng.uniform(0.7, 1.7)),     # speckle scale, pixels
      "speckle_density": float(rng.uniform(0.35, 0.65)),
      "nucleoli": int(rng.integers(1, 5)),
      "dots": int(rng.integers(35, 90)),
      "rim_width": float(rng.uniform(1.2, 2.8)),
      "interior": float(rng.uniform(0.15, 0.35)),
      "radius": float(rng.uniform(19.0, 25.0)),    # nucleus radius at scale 1, pixels
      "irregularity": float(rng.uniform(0.02, 0.09)),
      "smooth": float(rng.uniform(0.04, 0.12)),    # homogeneous low-frequency ripple
  }


def _noise_field(rng, shape, sigma):
  field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
  return field / (field.std() + 1e-12)


def _outline(rng, shape, centre, radius, irregularity):
  """A nucleus: boolean mask and the distance inside its outline, in pixels."""
  yy, xx = np.indices(shape, dtype=np.float64)
  dy, dx = yy - centre[0], xx - centre[1]
  theta = np.arctan2(dy, dx)
  r = np.hypot(dy, dx)
  edge = np.ones_like(theta)
  for k in range(2, 6):
    edge += (irregularity / (k - 1)) * rng.standard_normal() * np.cos(
        k * theta + rng.uniform(0, 2 * np.pi))
  edge *= radius
  return r <= edge, edge - r, theta


def _blobs(shape, centres, sigmas, amplitudes):
  """A sum of isotropic Gaussian spots, each drawn in a small window."""
  out = np.zeros(shape)
  for (cy, cx), s, a in zip(centres, sigmas, amplitudes):
    half = int(4 * s) + 2
    y0, y1 = max(0, int(cy) - half), min(shape[0], int(cy) + half + 1)
    x0, x1 = max(0, int(cx) - half), min(shape[1], int(cx) + half + 1)
    if y0 >= y1 or x0 >= x1:
      continue
    yy, xx = np.mgrid[y0:y1, x0:x1]
    out[y0:y1, x0:x1] += a * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
  return out


def _points_inside(rng, inside, count, min_distance):
  """Up to `count` points in the mask, at least `min_distance` apart (hard core)."""
  ys, xs = np.nonzero(inside)
  chosen = []
  for index in rng.permutation(len(ys))[:count * 20]:
    p = np.array([ys[index], xs[index]], float) + rng.uniform(-0.5, 0.5, 2)
    if all(np.hypot(*(p - q)) >= min_distance for q in chosen):
      chosen.append(p)
      if len(chosen) == count:
        break
  return chosen


def pattern(rng, pattern_name: str, tex: dict, scale: float):
  """The stain of one cell at twice the pixel resolution: (image ~0..1, nucleus)."""
  n = SIZE * OVERSAMPLE
  o = OVERSAMPLE * scale                     # oversampled pixels per cell pixel
  radius = tex["radius"] * o * rng.uniform(0.9, 1.1)
  centre = (n / 2 + rng.normal(0, 2 * o), n / 2 + rng.normal(0, 2 * o))
  inside, depth, theta = _outline(rng, (n, n), centre, radius, tex["irregularity"])
  soft = np.clip(depth / (0.8 * o), 0, 1)            # a soft nuclear edge
  grain = _noise_field(rng, (n, n), 0.6 * o)
  if pattern_name == "Homogeneous":
    img = soft * (0.85 + tex["smooth"] * _noise_field(rng, (n, n), 5 * o)
                  + 0.04 * grain)
  elif pattern_name == "Speckled":
    g = tex["granule"] * o
    band = _noise_field(rng, (n, n), g) - 0.6 * _noise_field(rng, (n, n), 2.5 * g)
    threshold = np.quantile(band[inside], 1 - tex["speckle_density"])
    speckles = np.log1p(np.exp(4 * (band - threshold))) / 4
    img = soft * (0.3 + 0.7 * speckles / (speckles[inside].max() + 1e-9))
    for _ in range(tex["nucleoli"]):
      c = _points_inside(rng, depth > 0.35 * radius, 1, 0)
      if c:
        hole = _blobs((n, n), c, [rng.uniform(0.1, 0.18) * radius], [1.0])
        img *= 1 - 0.85 * np.clip(hole * 1.5, 0, 1)
  elif pattern_name == "Nucleolar":
    centres, sigmas, amps = [], [], []
    for c in _points_inside(rng, depth > 0.3 * radius, int(rng.integers(1, 7)),
                            0.25 * radius):
      for _ in range(int(rng.integers(2, 5))):
        centres.append(c + rng.normal(0, 1.2 * o, 2))
        sigmas.append(rng.uniform(1.0, 2.2) * o)
        amps.append(rng.uniform(0.5, 1.0))
    img = soft * (0.15 + 0.05 * grain) + _blobs((n, n), centres, sigmas, amps)
  elif pattern_name == "Centromere":
    dots = _points_inside(rng, depth > 0.5 * o, tex["dots"], 2.6 * o)
    img = soft * (0.1 + 0.04 * grain) + _blobs(
        (n, n), dots, rng.uniform(0.55, 0.8, len(dots)) * o,
        rng.lognormal(0, 0.2, len(dots)))
  elif pattern_name == "NuMem":
    width = tex["rim_width"] * o
    beads = 1 + 0.3 * _noise_field(rng, (n, n), 2 * o)
    rim = np.exp(-((depth - width) / width) ** 2) * beads
    img = np.clip(rim, 0, None) * (depth > -width) + soft * tex["interior"]
  elif pattern_name == "Golgi":
    img = soft * (0.08 + 0.03 * grain)
    angle = rng.uniform(-np.pi, np.pi)
    spread = rng.uniform(0.5, 1.2)
    count = int(rng.integers(8, 26))
    a = angle + rng.uniform(-spread, spread, count)
    r = radius * rng.uniform(1.05, 1.5, count)
    centres = np.stack([centre[0] + r * np.sin(a), centre[1] + r * np.cos(a)], 1)
    img = img + _blobs((n, n), centres, rng.uniform(1.0, 2.5, count) * o,
                       rng.uniform(0.5, 1.0, count))
    img += 0.03 * (np.abs(depth) < 0.6 * radius) * ~inside
  else:
    raise ValueError(f"unknown pattern {pattern_name!r}")
  return img, inside


def _disc(radius):
  r = int(np.ceil(radius))
  yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
  kernel = (np.hypot(yy, xx) <= radius + 0.5).astype(float)
  return kernel / kernel.sum()


def render_cell(rng, pattern_name, tex, nz, intensity):
  """One 78x78 cell: (uint8 image, uint8 mask 0/255)."""
  img, inside = pattern(rng, pattern_name, tex, nz["scale"])
  if rng.uniform() < 0.35:   # a neighbour of the same specimen at the crop's edge
    other, _ = pattern(rng, pattern_name, tex, nz["scale"])
    shift = rng.choice([-1, 1], 2) * rng.uniform(0.75, 0.95) * SIZE * OVERSAMPLE
    img = img + ndimage.shift(other, shift, order=1, mode="constant")
  o = OVERSAMPLE
  img = ndimage.gaussian_filter(img, nz["psf"] * o)
  if nz["defocus"] > 0.05:
    img = signal.fftconvolve(img, _disc(nz["defocus"] * o), mode="same")
  binned = img.reshape(SIZE, o, SIZE, o).mean(axis=(1, 3))
  mask = inside.reshape(SIZE, o, SIZE, o).mean(axis=(1, 3)) >= 0.5
  yy, xx = (np.indices((SIZE, SIZE)) - SIZE / 2) / SIZE
  direction = rng.uniform(0, 2 * np.pi)
  illum = (1 + nz["gradient"] * (np.cos(direction) * xx + np.sin(direction) * yy)
           - nz["vignette"] * (xx ** 2 + yy ** 2) * 2)
  level = nz["level"] * (0.42 if intensity == "positive" else 0.17)
  signal_ = level * np.clip(binned, 0, None) * illum + nz["background"]
  signal_ = np.clip(signal_, 0, None) ** nz["gamma"]
  photons = rng.poisson(signal_ * nz["photons"]) / nz["photons"]
  noisy = (photons + rng.normal(0, nz["read_noise"] / 255, photons.shape)
           + nz["grain"] * _noise_field(rng, photons.shape, 1.2))
  image = np.clip(np.round(noisy * 255), 0, 255).astype(np.uint8)
  return image, (mask * 255).astype(np.uint8)


def plan_specimens(num_cells: int, rng: np.random.Generator) -> list[dict]:
  """Specimens per class and split (`SPLIT_SPECIMENS`) and their cell counts."""
  specimens, number = [], 0
  for label, share in zip(CLASSES, CLASS_SHARE):
    for split, count in zip(("training", "validation", "test"), SPLIT_SPECIMENS):
      for _ in range(count):
        number += 1
        cells = max(4, int(round(num_cells * share / sum(SPLIT_SPECIMENS)
                                 * rng.uniform(0.7, 1.3))))
        specimens.append({"specimen": number, "label": label, "split": split,
                          "cells": cells,
                          "intensity": "positive" if rng.uniform() < 0.6
                          else "intermediate"})
  return specimens


def render_set(output_dir: str, num_cells: int = 1500, seed: int = 0,
               held_out: str | None = None, storage: str = "uint8") -> dict:
  """Writes a set in the ICPR 2014 layout; returns {split: cells}."""
  if held_out is not None and held_out not in FAMILIES:
    raise ValueError(f"held_out must be one of {FAMILIES} or None, got {held_out!r}")
  if storage not in ("uint8", "uint16_low"):
    raise ValueError(f"storage must be uint8 or uint16_low, got {storage!r}")
  rng = np.random.default_rng(np.random.SeedSequence([seed, 2028]))
  rows, counts, cell_id, drawn = [], {}, 0, []
  for spec in plan_specimens(num_cells, rng):
    nz = specimen_nuisance(rng, spec["split"], held_out)
    tex = specimen_texture(rng)
    drawn.append({**spec, **nz, **tex})
    folder = os.path.join(output_dir, spec["split"])
    os.makedirs(folder, exist_ok=True)
    for _ in range(spec["cells"]):
      cell_id += 1
      image, mask = render_cell(rng, spec["label"], tex, nz, spec["intensity"])
      if storage == "uint16_low":
        Image.fromarray(image.astype(np.uint16)).save(
            os.path.join(folder, f"{cell_id:05d}.png"))
      else:
        Image.fromarray(image).save(os.path.join(folder, f"{cell_id:05d}.png"))
      Image.fromarray(mask).save(os.path.join(folder, f"{cell_id:05d}_Mask.png"))
      rows.append((cell_id, spec["label"], spec["intensity"],
                   f"S{spec['specimen']:03d}"))
      counts[spec["split"]] = counts.get(spec["split"], 0) + 1
  with open(os.path.join(output_dir, "gt_training.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["Image ID", "Image class", "Intensity", "Specimen ID"])
    writer.writerows(rows)
  # What each specimen drew, to read a result against (not used by the layout).
  with open(os.path.join(output_dir, "specimens.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(drawn[0]))
    writer.writeheader()
    writer.writerows(drawn)
  return counts


def main(argv: list[str]) -> int:
  import argparse
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--output_dir", required=True)
  parser.add_argument("--num_cells", type=int, default=1500)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--held_out", choices=FAMILIES, default=None)
  parser.add_argument("--storage", choices=("uint8", "uint16_low"), default="uint8")
  args = parser.parse_args(argv)
  counts = render_set(args.output_dir, args.num_cells, args.seed, args.held_out,
                      args.storage)
  print(f"{args.output_dir}: {counts}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
