"""Whole synthetic fields: `draw_cell` cells composed into microscope fields.

A lab holds field images, not crops: `draw_field` places cells of one well (one
pattern, one intensity, the well's `specimen_params`) on a dark, noisy background,
without overlap but often close enough to touch, some cut by the field's edge, and
returns the field and its label image (0 background, 1..N one id per cell).
`dead` cells (small, condensed, bright nuclei: apoptotic or pyknotic cells, which no
pattern describes) can be added and are marked in the labels like any cell.
`write_fields` writes a whole set in the fields layout that
`create_records --dataset=fields` and `predict --fields` read:

  DIR/specimens.csv              specimen,pattern,intensity
  DIR/<specimen>/<field>.png     8-bit grey (or 16-bit: a 12-bit camera's counts)
  DIR/<specimen>/<field>_mask.png  its label image (omitted with masks=False)

Everything is drawn from seeds derived from (seed, specimen, field), so the bytes do
not depend on the order of drawing. No TensorFlow here.
"""

from __future__ import annotations

import csv
import os
import pathlib
from typing import Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from hep2tf import atomic
from hep2tf.data.synth.cells import (PHOTONS_PER_DN, READ_NOISE_DN, draw_cell,
                                     specimen_params)
from hep2tf.data.synth.plan import CLASS_NAMES, INTENSITIES

SPECIMENS_CSV = "specimens.csv"
# Blend a pasted cell into the background over a few pixels around its mask, so no
# square tile edge shows.
_FEATHER_PX = 4


def draw_field(seed: int, specimen: int, pattern: str, intensity: str, field: int,
               *, height: int = 512, width: int = 512, cell_size: int = 78,
               num_cells: int = 24, dead: int = 0, gap: int = 1,
               bits: int = 8) -> tuple[np.ndarray, np.ndarray]:
  """One field of a well: (image uint8 or uint16 (H, W), labels uint16 (H, W)).

  Cells (drawn as `cell_size` crops) are placed at random where their mask, grown by
  `gap` pixels, meets no earlier cell; up to `num_cells` fit, fewer in a crowded
  field. Cells may leave the field (they are cut at its edge). `dead` more cells are
  small, bright and condensed. bits=16 multiplies the 8-bit counts by 16 (a 12-bit
  camera), as uint16.
  """
  spec = specimen_params(seed, specimen, intensity)
  rng = np.random.default_rng(np.random.SeedSequence([seed, 5, specimen, field]))
  canvas = _background(rng, (height, width), spec)
  labels = np.zeros((height, width), np.uint16)
  dead_spec = dict(spec, radius=spec["radius"] * 0.5, gain=min(0.9, spec["gain"] * 3))
  kinds = [(pattern, spec)] * num_cells + [("Homogeneous", dead_spec)] * dead
  order = rng.permutation(len(kinds))
  grow = np.ones((2 * gap + 1, 2 * gap + 1), bool)
  next_id = 1
  for index in order:
    label, cell_spec = kinds[index]
    tile, mask = draw_cell(label, cell_spec, cell_size, rng)
    for _ in range(40):   # tries to find a free place for this cell
      top = int(rng.integers(-cell_size // 4, height - 3 * cell_size // 4))
      left = int(rng.integers(-cell_size // 4, width - 3 * cell_size // 4))
      placed = _paste(canvas, labels, tile, mask > 0, top, left, next_id, grow)
      if placed:
        next_id += 1
        break
  image = np.clip(np.rint(canvas), 0, 255)
  if bits == 16:
    return (image * 16).astype(np.uint16), labels
  if bits != 8:
    raise ValueError(f"bits must be 8 or 16, got {bits}")
  return image.astype(np.uint8), labels


def _background(rng: np.random.Generator, shape: tuple[int, int],
                spec: dict) -> np.ndarray:
  """The well's dark background with the sensor's shot and read noise (DN)."""
  level = 255.0 * spec["background"]
  photons = rng.poisson(level * PHOTONS_PER_DN, shape) / PHOTONS_PER_DN
  return photons + rng.normal(0.0, READ_NOISE_DN, shape)


def _paste(canvas: np.ndarray, labels: np.ndarray, tile: np.ndarray,
           mask: np.ndarray, top: int, left: int, cell_id: int,
           grow: np.ndarray) -> bool:
  """Pastes a cell where its grown mask meets no other cell; False where it would."""
  height, width = canvas.shape
  size = tile.shape[0]
  y0, x0 = max(0, top), max(0, left)
  y1, x1 = min(height, top + size), min(width, left + size)
  if y1 - y0 < size // 2 or x1 - x0 < size // 2:
    return False
  inner = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
  cell = mask[inner]
  if cell.sum() < 0.5 * mask.sum():   # mostly outside the field
    return False
  region = labels[y0:y1, x0:x1]
  if (ndimage.binary_dilation(cell, grow) & (region > 0)).any():
    return False
  near = ndimage.binary_dilation(mask, iterations=_FEATHER_PX)
  weight = np.clip(ndimage.gaussian_filter(near.astype(float), _FEATHER_PX / 2), 0, 1)
  weight = np.maximum(weight, mask)[inner] * (region == 0)
  canvas[y0:y1, x0:x1] = (canvas[y0:y1, x0:x1] * (1 - weight)
                          + tile[inner].astype(float) * weight)
  region[cell] = cell_id
  return True


def plan_specimens(num_specimens: int, seed: int,
                   patterns: Sequence[str] = CLASS_NAMES) -> list[dict]:
  """Specimens as evenly over the patterns as the count allows, intensities
  alternating within a pattern, in a seeded order: [{specimen, pattern, intensity}]."""
  rng = np.random.default_rng(np.random.SeedSequence([seed, 6]))
  rows = []
  for k in range(num_specimens):
    pattern = patterns[k % len(patterns)]
    intensity = INTENSITIES[(k // len(patterns)) % 2]
    rows.append({"pattern": pattern, "intensity": intensity})
  rows = [rows[i] for i in rng.permutation(num_specimens)]
  return [dict(row, specimen=f"S{seed:02d}_{k + 1:03d}") for k, row in enumerate(rows)]


def write_fields(output_dir: str | os.PathLike, num_specimens: int, *, seed: int = 0,
                 fields_per_specimen: int = 4, masks: bool = True,
                 height: int = 512, width: int = 512, cell_size: int = 78,
                 num_cells: int = 24, dead: int = 0, bits: int = 8,
                 patterns: Sequence[str] = CLASS_NAMES) -> pathlib.Path:
  """Writes a fields set (see the module docstring) atomically; returns its folder.

  Specimens come from `plan_specimens`; each specimen's wells are drawn from
  (seed, its index), so two seeds give different specimens. Raises FileExistsError
  when `output_dir` exists.
  """
  folder = pathlib.Path(output_dir)
  if folder.exists():
    raise FileExistsError(f"{folder} exists; choose a new folder")
  specimens = plan_specimens(num_specimens, seed, patterns)
  with atomic.staged_dir(folder) as staging:
    for index, row in enumerate(specimens):
      where = staging / row["specimen"]
      where.mkdir()
      for field in range(fields_per_specimen):
        image, labels = draw_field(
            seed, 1000 * seed + index + 1, row["pattern"], row["intensity"], field,
            height=height, width=width, cell_size=cell_size, num_cells=num_cells,
            dead=dead, bits=bits)
        Image.fromarray(image).save(where / f"field{field + 1}.png")
        if masks:
          label_mode = labels if labels.max() > 255 else labels.astype(np.uint8)
          Image.fromarray(label_mode).save(where / f"field{field + 1}_mask.png")
    with open(staging / SPECIMENS_CSV, "w", newline="", encoding="utf-8") as f:
      writer = csv.writer(f, lineterminator="\n")
      writer.writerow(["specimen", "pattern", "intensity"])
      for row in specimens:
        writer.writerow([row["specimen"], row["pattern"], row["intensity"]])
  return folder
