"""The shared inputs: the synthetic set, its records and the same images as PNG folders.

Everything lives under one work folder (benchmarks/work/ by default, git-ignored):

  WORK/source_<N>/        synthetic ICPR 2014 layout, drawn once and reused
                          (synth.matches)
  WORK/records_<N>/       records made by create_records (reader, training, accuracy)
  WORK/png_<N>/<split>/<class>/NNNNN.png
                          hard links to the same source images, split as the records
                          are (from manifest.csv), for image_dataset_from_directory
"""

from __future__ import annotations

import csv
import dataclasses
import os
import shutil
import subprocess
import sys

from hep2tf.convert import create
from hep2tf.convert.plan import ConvertConfig
from hep2tf.data import synth
from hep2tf.data.records import Records

NAME = "synthetic_hep2"
IMAGE_SIZE = 78


@dataclasses.dataclass(frozen=True)
class Inputs:
  """Paths of the prepared inputs, the records opened once, and facts the sections
  need."""
  source_dir: str
  records: Records
  png_dir: str
  num_images: int
  train_split: str
  eval_split: str        # "validation" when the records have it, else "test"
  class_names: tuple[str, ...]


def draw_source(work_dir: str, num_images: int, seed: int = 0,
                num_workers: int = 2) -> str:
  """The synthetic set of `num_images` under work_dir, drawn only when missing.

  Drawn by `python -m hep2tf.synth` in a child process: with TensorFlow loaded here,
  synth's workers would be spawned and each would import this program again.
  """
  source_dir = os.path.join(work_dir, f"source_{num_images}")
  if not synth.matches(source_dir, num_images, seed, IMAGE_SIZE):
    subprocess.run([sys.executable, "-m", "hep2tf.synth", f"--output_dir={source_dir}",
                    f"--num_images={num_images}", f"--seed={seed}",
                    f"--image_size={IMAGE_SIZE}", f"--num_workers={num_workers}",
                    "--overwrite"], check=True, stdout=subprocess.DEVNULL)
  return source_dir


def subset_source(source_dir: str, out_dir: str, num_images: int) -> str:
  """A source folder holding the first `num_images` cells of `source_dir`.

  Hard links (same bytes, no copy; symlinks would point outside the folder, which the
  source readers reject), and the first rows of gt_training.csv.
  """
  if os.path.exists(out_dir):
    shutil.rmtree(out_dir)
  os.makedirs(out_dir)
  with open(os.path.join(source_dir, synth.CSV_NAME), newline="") as f:
    rows = list(csv.reader(f))
  header, body = rows[0], rows[1:num_images + 1]
  with open(os.path.join(out_dir, synth.CSV_NAME), "w", newline="") as f:
    csv.writer(f).writerows([header] + body)
  for row in body:
    stem = f"{int(row[0]):05d}"
    for name in (f"{stem}.png", f"{stem}_Mask.png"):
      src = os.path.join(source_dir, name)
      if os.path.exists(src):
        _link(src, os.path.join(out_dir, name))
  return out_dir


def _link(src: str, dst: str) -> None:
  try:
    os.link(src, dst)
  except OSError:   # another file system: copy instead
    shutil.copyfile(src, dst)


def make_records(source_dir: str, output_dir: str, num_workers: int = 1,
                 seed: int = 0) -> str:
  """Converts a synthetic source folder with hep2tf's defaults; returns output_dir."""
  convert(source_dir, output_dir, num_workers, seed)
  return output_dir


def convert(source_dir: str, output_dir: str, num_workers: int = 1, seed: int = 0):
  """`make_records`, returning the writer's WriteSummary (with its `stages`)."""
  summary, _ = create.create_records(ConvertConfig(
      "icpr2014", source_dir, output_dir=output_dir, name=NAME, overwrite=True,
      seed=seed, num_workers=num_workers, progress=False))
  return summary


def png_folders(records: Records, source_dir: str, png_dir: str) -> str:
  """Hard-links the source images into png_dir/<split>/<class>/ as the manifest
  says."""
  if os.path.exists(png_dir):
    shutil.rmtree(png_dir)
  for row in records.manifest.to_dict("records"):
    folder = os.path.join(png_dir, row["split"], row["label"])
    os.makedirs(folder, exist_ok=True)
    _link(os.path.join(source_dir, row["file_name"]),
          os.path.join(folder, os.path.basename(row["file_name"])))
  return png_dir


def prepare(work_dir: str, num_images: int, seed: int = 0,
            num_workers: int = 2) -> Inputs:
  """Draws (or reuses) the source, converts it and makes the PNG folders."""
  os.makedirs(work_dir, exist_ok=True)
  source_dir = draw_source(work_dir, num_images, seed, num_workers)
  records = Records.open(make_records(
      source_dir, os.path.join(work_dir, f"records_{num_images}"),
      num_workers=num_workers, seed=seed))
  png_dir = png_folders(records, source_dir,
                        os.path.join(work_dir, f"png_{num_images}"))
  eval_split = "validation" if "validation" in records.info.splits else "test"
  return Inputs(source_dir, records, png_dir, num_images, "train", eval_split,
                tuple(records.info.class_names))
