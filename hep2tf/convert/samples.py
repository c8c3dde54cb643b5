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
_MAX_CELL_PIXELS = 160     # larger cells are subsampled for display
_LABEL_SPEC = {schema.LABEL: schema.feature_spec()[schema.LABEL]}
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
  picker = CellPicker(list(summary.splits), len(summary.class_names),
                      cells_per_class)
  for split in summary.splits:
    files = sorted(tf.io.gfile.glob(f"{folder}/{summary.name}-{split}.tfrecord-*"))
    for batch in tf.data.TFRecordDataset(files).take(_MAX_RECORDS_READ).batch(256):
      # Labels a batch at a time: an eager op per record costs milliseconds.
      labels = tf.io.parse_example(batch, _LABEL_SPEC)[schema.LABEL].numpy()
      for record, label in zip(batch.numpy(), labels):
        picker.offer(split, int(label), record)
      if picker.split_complete(split):
        break
  return save_samples(folder, draw_samples(summary.name, summary.class_names,
                                           summary.pixels, picker, channels,
                                           has_mask))


def save_samples(folder: str, png: bytes) -> str:
  """Writes samples.png (PNG bytes from `draw_samples`) into `folder`."""
  path = f"{str(folder).rstrip('/')}/{SAMPLES_FILE}"
  with tf.io.gfile.GFile(path, "wb") as f:
    f.write(png)
  return path


class CellPicker:
  """The first `per_class` records of each class in each split, in the order they
  are offered (the order they were written, as `write_samples` reads them back:
  the local writer picks while it writes and draws before the shards are read)."""

  def __init__(self, splits, num_classes: int, per_class: int = CELLS_PER_CLASS):
    self.splits, self.per_class = list(splits), per_class
    self.counts = {split: [0] * num_classes for split in self.splits}
    self.seen = dict.fromkeys(self.splits, 0)
    self.records, self.keys = [], []

  def offer(self, split: str, label: int, record: bytes) -> None:
    counts = self.counts[split]
    self.seen[split] += 1
    if (self.seen[split] <= _MAX_RECORDS_READ and label < len(counts)
        and counts[label] < self.per_class):
      counts[label] += 1
      self.records.append(record)
      self.keys.append((split, label))

  def split_complete(self, split: str) -> bool:
    return min(self.counts[split]) >= self.per_class

  @property
  def complete(self) -> bool:
    """Every class of every split has its cells: offering more changes nothing."""
    return all(self.split_complete(split) for split in self.splits)


def draw_samples(name: str, class_names, pixels: intensity.PixelSpec,
                 picker: CellPicker, channels: int, has_mask: bool) -> bytes:
  """samples.png's bytes: the picked cells, decoded as the reader decodes them."""
  columns = [(split, k) for split in picker.splits for k in range(picker.per_class)]
  cells = {}
  for key, pair in zip(picker.keys, _decode_cells(picker.records, channels,
                                                  has_mask, pixels)):
    cells.setdefault(key, []).append(pair)
  grid = [[(cells.get((split, r), [])[k:k + 1] or [None])[0] for split, k in columns]
          for r in range(len(class_names))]
  rows, cols = len(class_names), len(columns)
  # Inches: 1.1 x 1.2 per cell (the image, a gap, its min..max underneath), 1.2 to
  # the left for the class names, 1.0 on top for the title and the split names.
  width, height = 1.1 * cols + 1.4, 1.2 * rows + 1.2
  fig = figures.new_figure((width, height), layout=None)
  low_p, high_p = DISPLAY_PERCENTILES
  fig.suptitle(
      f"{name}: records decoded as the reader does ({pixels.dtype} PNG; "
      f"model input = stored x 255 / {pixels.white_level}).\n"
      f"Display only: each cell stretched from its {low_p:g}th to {high_p:g}th "
      "percentile to black..white; under each, its stored min..max.", fontsize=8)
  axis = fig.add_axes((1.2 / width, 0.2 / height, 1.1 * cols / width,
                       1.2 * rows / height))
  _draw_grid(axis, grid, class_names, [split for split, _ in columns])
  return figures.figure_to_png(fig, dpi=80)


def _decode_cells(records: list[bytes], channels: int, has_mask: bool,
                  pixels: intensity.PixelSpec) -> list:
  """[(stored image, model input)] of serialised records, in one tf.data pass."""
  if not records:
    return []

  def decode(serialized):
    stored = schema.parse_example(serialized, channels, has_mask,
                                  pixels.dtype)[schema.IMAGE]
    # The reader's own mapping, so what is drawn is what the model gets.
    return stored, preprocess.to_model_input(stored, pixels)

  return list(tf.data.Dataset.from_tensor_slices(records).map(decode)
              .as_numpy_iterator())


def _draw_grid(axis, grid, class_names, splits) -> None:
  """The cells as one mosaic image on `axis` (one image draws in a fraction of the
  time of an axes per cell), with class, split and min..max written beside them."""
  present = [cell for row in grid for cell in row if cell is not None]
  size = min(_MAX_CELL_PIXELS, max([max(c[0].shape[:2]) for c in present] + [8]))
  gap, band = max(1, round(0.1 * size)), max(1, round(0.2 * size))
  step_x, step_y = size + gap, size + band
  mosaic = np.ones((len(grid) * step_y, len(grid[0]) * step_x, 3))
  for r, row in enumerate(grid):
    axis.text(-gap, r * step_y + size / 2, class_names[r], ha="right",
              va="center", fontsize=8)
    for c, cell in enumerate(row):
      if r == 0 and (c == 0 or splits[c] != splits[c - 1]):
        axis.text(c * step_x, -size * 0.05, splits[c], ha="left", va="bottom",
                  fontsize=8)
      if cell is None:
        continue
      stored, model_input = cell
      shown = _fitted(_stretched(model_input)[0], size)
      top = r * step_y + (size - shown.shape[0]) // 2
      left = c * step_x + (size - shown.shape[1]) // 2
      mosaic[top:top + shown.shape[0], left:left + shown.shape[1]] = shown
      axis.text(c * step_x + size / 2, r * step_y + size + band / 2,
                f"{int(stored.min())}..{int(stored.max())}", ha="center",
                va="center", fontsize=6)
  axis.imshow(mosaic, vmin=0.0, vmax=1.0, interpolation="nearest", aspect="auto")
  axis.set_axis_off()


def _fitted(shown: np.ndarray, size: int) -> np.ndarray:
  """A display array (H, W[, 3]) as RGB fitting size x size: subsampled when larger,
  repeated by a whole factor when at most half as large."""
  if shown.ndim == 2:
    shown = np.repeat(shown[..., None], 3, axis=2)
  longest = max(shown.shape[:2])
  if longest > size:
    stride = -(-longest // size)
    shown = shown[::stride, ::stride]
  elif 2 * longest <= size:
    factor = size // longest
    shown = np.repeat(np.repeat(shown, factor, axis=0), factor, axis=1)
  return shown


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
