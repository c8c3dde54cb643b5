"""Writing a synthetic set in the ICPR 2014 layout: `generate` and `matches`.

The folder holds gt_training.csv, one PNG and one _Mask.png per cell (in training/,
validation/ and test/ for the stress profile) and synth.json, the generation
parameters, written last; a set is built in a hidden sibling folder and renamed into
place, so an interrupted run leaves nothing that looks complete. Cells are drawn in
worker processes (`num_workers`) from per-cell seeds, so the bytes do not depend on
the number of workers.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import pathlib
import sys
from typing import Sequence

import numpy as np
from PIL import Image

from hep2tf import atomic, console
from hep2tf.data.synth.cells import draw_cell, specimen_params, stress_specimen_params
from hep2tf.data.synth.plan import (DEFAULT_NUM_IMAGES, STRESS_SPLITS, check_profile,
                                    default_num_specimens, make_plan,
                                    stress_num_specimens)

CSV_NAME = "gt_training.csv"
CSV_HEADER = ("Image ID", "Image class", "Intensity", "Specimen")
PARAMS_NAME = "synth.json"
# Bump whenever the drawing changes, so an old folder no longer `matches`. Each
# profile has its own version, so a change to one leaves the other's folders valid.
GENERATOR_VERSION = 1
STRESS_VERSION = 1


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
  check_profile(profile)
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
  check_profile(profile)
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
  if ("tensorflow" in sys.modules
      or "fork" not in multiprocessing.get_all_start_methods()):
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

  with atomic.staged_dir(folder) as staging:
    if profile == "stress":
      for _, sub, _ in STRESS_SPLITS:
        (staging / sub).mkdir()
    jobs = [(str(staging), seed, image_size, chunk)
            for chunk in _chunks(plan, max(1, num_workers) * 8)]
    if num_workers > 1:
      # Ctrl-C is the parent's to handle: the staged folder is removed whole.
      with _pool_context().Pool(num_workers,
                                initializer=console.ignore_interrupts) as pool:
        for _ in pool.imap_unordered(_draw_and_write, jobs):
          pass
    else:
      for job in jobs:
        _draw_and_write(job)
    _write_csv(staging / CSV_NAME, plan)
    # Written last: its presence is what marks the folder as complete.
    (staging / PARAMS_NAME).write_text(json.dumps(params, indent=2) + "\n",
                                       encoding="utf-8")
  return csv_path
