"""Synthetic cells in the other public layouts: ICPR 2012, C-NMC and a binary folder.

Stand-ins for sets hep2tf reads but cannot ship, so that each layout's reader and
each seed recipe (configs/seeds/) runs end to end without the real data. The cells
are this package's IIF cells (cells.py); what each layout adds:

- `icpr2012`: its six classes from the synthetic patterns (fine_speckled and
  coarse_speckled are Speckled wells with fine and with coarse granules,
  cytoplasmatic is Golgi), RGB with the stain in the green channel, sides drawn from
  48 to 112 px, masks `NNN_mask.png`, one pattern per slide (3 training and 2 test
  slides per class), training/ and test/ from different slides, and the contest's
  cells.csv naming each cell's slide.
- `cnmc`: binary, all = Speckled (the positive class), hem = Homogeneous (the pair
  that is hard to tell apart), 2 ALL cells to 1 hem as in the real set, RGB BMP;
  subjects of one class each in fold_0..2 and in the labelled preliminary test set.
- `binary`: `root/<class>/*.png`, tumour (Nucleolar) against normal (Homogeneous)
  at 1 to 4, RGB, no groups: the imbalanced binary set of the tumour recipes.

`write_layout` builds the folder in a hidden sibling and renames it into place; the
same arguments give the same bytes.
"""

from __future__ import annotations

import csv
import os
import pathlib

import numpy as np
from PIL import Image

from hep2tf import atomic
from hep2tf.data.synth.cells import draw_cell, specimen_params

LAYOUTS = ("icpr2012", "cnmc", "binary")
# ICPR 2012 class -> (synthetic pattern, granule texture range or None).
ICPR2012_PATTERNS = {
    "homogeneous": ("Homogeneous", None), "coarse_speckled": ("Speckled", (0.7, 1.0)),
    "fine_speckled": ("Speckled", (0.0, 0.3)), "nucleolar": ("Nucleolar", None),
    "centromere": ("Centromere", None), "cytoplasmatic": ("Golgi", None)}
CNMC_PATTERNS = {"all": "Speckled", "hem": "Homogeneous"}
BINARY_PATTERNS = {"normal": "Homogeneous", "tumour": "Nucleolar"}
# Green stain, a little bleed into red and blue, as in the contest's RGB cells.
_RGB = (0.12, 1.0, 0.08)


def write_layout(output_dir: str | os.PathLike, layout: str, num_images: int,
                 seed: int = 0, image_size: int = 78,
                 overwrite: bool = False) -> pathlib.Path:
  """Writes `num_images` synthetic cells in `layout` (one of LAYOUTS); returns the
  folder. `image_size` is the side of cnmc and binary cells (icpr2012 draws its own).

  Raises FileExistsError when the folder exists and holds something, unless
  `overwrite`; ValueError for an unknown layout or fewer than 60 cells.
  """
  if layout not in LAYOUTS:
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
  if num_images < 60:
    raise ValueError(f"num_images must be at least 60, got {num_images}")
  folder = pathlib.Path(output_dir)
  if folder.exists() and any(folder.iterdir()) and not overwrite:
    raise FileExistsError(f"{folder} exists; pass overwrite=True (--overwrite) to "
                          "replace it")
  rng = np.random.default_rng(np.random.SeedSequence([seed, 5]))
  writer = {"icpr2012": _icpr2012, "cnmc": _cnmc, "binary": _binary}[layout]
  with atomic.staged_dir(folder) as staging:
    writer(staging, num_images, seed, image_size, rng)
  return folder


def _cell(seed: int, specimen: int, index: int, pattern: str, size: int,
          texture: tuple[float, float] | None = None,
          intensity: str = "positive") -> tuple[np.ndarray, np.ndarray]:
  """(RGB uint8 (size, size, 3), mask uint8 (size, size)) of one cell."""
  spec = specimen_params(seed, specimen, intensity)
  rng = np.random.default_rng(np.random.SeedSequence([seed, 6, index]))
  if texture is not None:
    spec["texture"] = rng.uniform(*texture)
  grey, mask = draw_cell(pattern, spec, size, rng)
  rgb = np.rint(grey[..., None] * np.asarray(_RGB)).astype(np.uint8)
  return rgb, mask


def _write_csv(path: pathlib.Path, rows, delimiter: str = ";") -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  with open(path, "w", newline="", encoding="utf-8") as f:
    csv.writer(f, delimiter=delimiter, lineterminator="\n").writerows(rows)


def _icpr2012(root: pathlib.Path, num_images: int, seed: int, _size: int,
              rng: np.random.Generator) -> None:
  # Three training slides and two test slides per class (30, the contest's 28 fields
  # give 721 + 734 cells), cells spread evenly.
  classes = list(ICPR2012_PATTERNS)
  slides = [(split, label) for split, per_class in (("training", 3), ("test", 2))
            for label in classes for _ in range(per_class)]
  per_slide = np.diff(np.linspace(0, num_images, len(slides) + 1).astype(int))
  cells = [("Cell ID", "Set", "Image ID", "Intensity", "Width", "Height", "Pattern",
            "Mask")]
  tables = {split: ([("ID", "pattern")], [("ID", "intensity", "width", "height")])
            for split in ("training", "test")}
  ids = {"training": 0, "test": 0}
  index = 0
  for slide, ((split, label), count) in enumerate(zip(slides, per_slide), start=1):
    intensity = "positive" if slide % 2 else "intermediate"
    pattern, texture = ICPR2012_PATTERNS[label]
    for _ in range(count):
      ids[split] += 1
      index += 1
      cell_id, side = f"{ids[split]:03d}", int(rng.integers(48, 113))
      image, mask = _cell(seed, slide, index, pattern, side, texture, intensity)
      (root / split).mkdir(exist_ok=True)
      Image.fromarray(image).save(root / split / f"{cell_id}.png")
      Image.fromarray(mask).save(root / split / f"{cell_id}_mask.png")
      tables[split][0].append((ids[split], label))
      tables[split][1].append((ids[split], intensity, side, side))
      cells.append((ids[split], split, slide, intensity, side, side, label,
                    f"{cell_id}_mask.png"))
  for split, (gt, sizes) in tables.items():
    _write_csv(root / split / f"gt_{split}.csv", gt)
    _write_csv(root / split / f"{split}.csv", sizes)
  _write_csv(root / "cells.csv", cells)


def _cnmc(root: pathlib.Path, num_images: int, seed: int, size: int,
          rng: np.random.Generator) -> None:
  # Per fold 3 ALL subjects and 2 healthy ones; the preliminary test set 2 and 2.
  groups = [(f"fold_{k}", label) for k in range(3)
            for label in ("all", "all", "all", "hem", "hem")]
  groups += [("test", label) for label in ("all", "all", "hem", "hem")]
  weights = np.array([2.0 if label == "all" else 1.5 for _, label in groups])
  counts = np.diff(np.rint(np.concatenate([[0], np.cumsum(weights)])
                           / weights.sum() * num_images).astype(int))
  train = root / "training_data"
  prelim = root / "validation_data" / "C-NMC_test_prelim_phase_data"
  labels = [("Patient_ID", "new_names", "labels")]
  index = 0
  for subject, ((fold, label), count) in enumerate(zip(groups, counts), start=1):
    name = str(subject) if label == "all" else f"H{subject}"
    for cell in range(1, count + 1):
      index += 1
      image, _ = _cell(seed, 1000 + subject, index, CNMC_PATTERNS[label], size)
      if fold == "test":
        prelim.mkdir(parents=True, exist_ok=True)
        path = prelim / f"{len(labels)}.bmp"
        labels.append((f"UID_{name}_{cell}_1_{label}.bmp", path.name,
                       1 if label == "all" else 0))
      else:
        path = train / fold / label / f"UID_{name}_{cell}_1_{label}.bmp"
        path.parent.mkdir(parents=True, exist_ok=True)
      Image.fromarray(image).save(path)
  _write_csv(root / "validation_data" / "C-NMC_test_prelim_phase_data_labels.csv",
             labels, delimiter=",")


def _binary(root: pathlib.Path, num_images: int, seed: int, size: int,
            rng: np.random.Generator) -> None:
  tumour = num_images // 5
  for label, count in (("normal", num_images - tumour), ("tumour", tumour)):
    (root / label).mkdir()
    for cell in range(1, count + 1):
      # Slides of 20 cells share their gain, focus and texture, as a well does.
      slide = 2000 + (cell - 1) // 20 + (0 if label == "normal" else 500)
      image, _ = _cell(seed, slide, cell + (10**6 if label == "tumour" else 0),
                       BINARY_PATTERNS[label], size)
      Image.fromarray(image).save(root / label / f"{label}_{cell:05d}.png")
