"""Let people see their data: samples.png and the pixel warnings of a records folder.

`write_samples` draws a few cells per class and split into `samples.png` beside the
shards, decoded from the records exactly as the reader decodes them
(`schema.parse_example`, then `preprocess.to_model_input`), each cell
contrast-stretched for display only, with the stretch and the stored values stated.

`pixel_warnings` reads the per-image statistics the converter put in the manifest
(`levels`, `max_value`, `at_max`) and counts, per split and class, the images that
look wrong: all-constant images, splits where most images use fewer than 16 distinct
levels (a deep source scaled to 8 bits, or an exposure that is nearly black), and
saturation (more than 2% of an image's pixels at the dataset's full scale), and
sources of very different levels in one set (`mixed_levels`).
"""

from __future__ import annotations

import pathlib

import numpy as np
import pandas as pd
import tensorflow as tf

from hep2tf import figures
from hep2tf.data import intensity, preprocess, schema

SAMPLES_FILE = "samples.png"
CELLS_PER_CLASS = 4
DISPLAY_PERCENTILES = (0.5, 99.5)
_MAX_RECORDS_READ = 4096   # per split: enough to find a few cells of each class
# Source folders whose typical levels differ by more than this factor are reported.
MIXED_LEVEL_RATIO = 8.0


def pixel_warnings(manifest: pd.DataFrame, pixels: intensity.PixelSpec) -> list[str]:
  """One line per problem, counted per split and class (empty when all is well).

  Only source images are counted (offline dihedral copies and oversampled repeats
  would count the same file again).
  """
  if "levels" not in manifest.columns:
    return []
  rows = manifest[manifest["dihedral"].astype(int) == 0].drop_duplicates(
      ["split", "sha256"])
  full_scale = pixels.white_level if pixels.dtype == "uint16" else 255
  warnings = []
  for split, part in rows.groupby("split", sort=False):
    levels = part["levels"].astype(int)
    constant = part[levels == 1]
    if len(constant):
      warnings.append(f"{split}: {len(constant)} of {len(part)} images are constant "
                      f"(one grey level): {_per_class(constant)}")
    low = part[levels < intensity.LOW_LEVELS]
    if len(low) > len(part) / 2:
      warnings.append(
          f"{split}: {len(low)} of {len(part)} images use fewer than "
          f"{intensity.LOW_LEVELS} distinct levels ({_per_class(low)}); was a "
          "deeper source scaled down, or is the exposure nearly black?")
    saturated = part[(part["max_value"].astype(int) == full_scale)
                     & (part["at_max"].astype(float) >
                        intensity.SATURATION_FRACTION)]
    if len(saturated):
      warnings.append(
          f"{split}: {len(saturated)} of {len(part)} images have more than "
          f"{intensity.SATURATION_FRACTION:.0%} of their pixels at the full scale "
          f"{full_scale} (saturated): {_per_class(saturated)}")
  mixed = mixed_levels(rows)
  if mixed:
    warnings.append(mixed)
  return warnings


def source_folder(file_name: str) -> str:
  """The source folder an image came from: its first two folders (a class, or a
  split and a class), "." for a file at the top."""
  parts = pathlib.PurePosixPath(str(file_name).replace("\\", "/")).parts[:-1]
  return "/".join(parts[:2]) or "."


def mixed_levels(rows: pd.DataFrame, ratio: float = MIXED_LEVEL_RATIO) -> str | None:
  """A warning when the source folders' typical levels (the median of their images'
  99th-percentile stored values) differ by more than `ratio`, else None."""
  if "p99" not in rows.columns or rows.empty:
    return None
  level = rows.groupby(rows["file_name"].map(source_folder))["p99"].agg(
      lambda v: float(np.median(v.astype(float))))
  level = level[level > 0]
  if len(level) < 2 or level.max() <= ratio * level.min():
    return None
  low, high = level.idxmin(), level.idxmax()
  return (f"sources of very different levels: {low}/ has a typical 99th-percentile "
          f"stored value of {level[low]:g} and {high}/ {level[high]:g} "
          f"({level[high] / level[low]:.0f}x; {len(level)} folders). The models' "
          "input layers and the specimen augmentation work relative to each image's "
          "own level, so neither is tied to one source's scale; --intensity="
          "rescale_per_image would store each image by its own percentiles instead.")


def _per_class(rows: pd.DataFrame) -> str:
  counts = rows["label"].value_counts()
  return ", ".join(f"{label} {n}" for label, n in counts.items())


def write_samples(folder: str, summary, channels: int, has_mask: bool,
                  cells_per_class: int = CELLS_PER_CLASS) -> str:
  """Draws `samples.png` into `folder` (a records folder, staging or published).

  Args:
    folder: holds the shards named `<summary.name>-<split>.tfrecord-*`.
    summary: the writer's WriteSummary (name, class names, splits, pixels).
    channels, has_mask: what the records hold.
  Returns the path written.
  """
  folder = str(folder).rstrip("/")
  pixels = summary.pixels
  columns = [(split, k) for split in summary.splits for k in range(cells_per_class)]
  cells = {}
  for split in summary.splits:
    for label, pair in _first_cells(folder, summary, split, channels, has_mask,
                                    cells_per_class):
      cells.setdefault((split, label), []).append(pair)
  rows, cols = len(summary.class_names), len(columns)
  fig = figures.new_figure((1.1 * cols + 1.4, 1.2 * rows + 1.2))
  low_p, high_p = DISPLAY_PERCENTILES
  fig.suptitle(
      f"{summary.name}: records decoded as the reader does ({pixels.dtype} PNG; "
      f"model input = stored x 255 / {pixels.white_level}).\n"
      f"Display only: each cell stretched from its {low_p:g}th to {high_p:g}th "
      "percentile to black..white; under each, its stored min..max.", fontsize=8)
  for r, class_name in enumerate(summary.class_names):
    for c, (split, k) in enumerate(columns):
      axis = fig.add_subplot(rows, cols, r * cols + c + 1)
      axis.set_xticks([])
      axis.set_yticks([])
      if r == 0 and k == 0:
        axis.set_title(split, fontsize=8, loc="left")
      if c == 0:
        axis.set_ylabel(class_name, fontsize=8)
      found = cells.get((split, r), [])
      if k >= len(found):
        axis.set_frame_on(False)
        continue
      stored, model_input = found[k]
      shown, cmap = _stretched(model_input)
      axis.imshow(shown, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
      axis.set_xlabel(f"{int(stored.min())}..{int(stored.max())}", fontsize=6)
  path = f"{folder}/{SAMPLES_FILE}"
  data = figures.figure_to_png(fig, dpi=80)
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(data)
  return path


def _first_cells(folder, summary, split, channels, has_mask, per_class):
  """(label, (stored image, model input)) of the first records of each class."""
  name, pixels = summary.name, summary.pixels
  num_classes = len(summary.class_names)
  files = sorted(tf.io.gfile.glob(f"{folder}/{name}-{split}.tfrecord-*"))
  if not files:
    return []
  cells, counts = [], [0] * num_classes
  for serialized in tf.data.TFRecordDataset(files).take(_MAX_RECORDS_READ):
    label = int(schema.parse_label(serialized))
    if label >= num_classes or counts[label] >= per_class:
      continue
    example = schema.parse_example(serialized, channels, has_mask, pixels.dtype)
    stored = example[schema.IMAGE]
    # The reader's own mapping, so what is drawn is what the model gets.
    shown = preprocess.to_model_input(stored, pixels).numpy()
    cells.append((label, (stored.numpy(), shown)))
    counts[label] += 1
    if min(counts) >= per_class:
      break
  return cells


def _stretched(image: np.ndarray):
  """Display array in [0, 1] and colour map: the cell's percentile range stretched."""
  values = image.astype(np.float64)
  if values.shape[-1] == 1:
    values = values[..., 0]
  low, high = np.percentile(values, DISPLAY_PERCENTILES)
  if high <= low:
    high = low + 1.0
  return np.clip((values - low) / (high - low), 0.0, 1.0), (
      "gray" if values.ndim == 2 else None)
