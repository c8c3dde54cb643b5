"""Whole microscope fields: the layout, reading one field, its cells and their windows.

The fields layout (what a lab holds; the I3A 2014 Task 2 and the original ICPR 2012
data are close to it):

  DIR/specimens.csv                specimen,pattern[,intensity] (needed to train;
                                   optional to predict)
  DIR/<specimen>/<field>.png       a field: 8- or 16-bit PNG or TIFF, or BMP; grey, or
                                   RGB mapped to grey by the converter's channel rule
  DIR/<specimen>/<field>_mask.png  optional: a label image (0 background, 1..N one id
                                   per cell, 8 or 16 bits) or a binary mask (its
                                   connected components are the cells)

The converter (`sources/fields.py`) and `predict --fields` (`evaluation/fields.py`)
both go through this module, one field in memory at a time:

  list_fields(DIR)            {specimen: [(field, image path, mask path or None)]}
  read_field(path)            the field's grey values in its own type (uint8, uint16,
                              float)
  field_labels(grey, mask, config)  the mask's cells, or `segment.segment_nuclei`'s
  find_cells(labels, config)  the cells to classify and what was dropped, by the
                              rule: a cell whose mask touches the field's edge is
                              dropped (a cut nucleus is not a whole cell) unless
                              edge_cells="keep"; one smaller than min_area pixels
                              is dropped (debris, a stray pixel of a mask)
  cut_window(values, cell)    a `cell_size` square centred on the cell's centroid, the
                              neighbours' pixels kept; where it leaves the field it is
                              filled with the field's background (the median outside
                              every cell); `cell_mask` is the cell's own mask there

`FieldsConfig` holds the options (and the segmentation's `SegmentConfig`); the flags
of both command lines are generated from its fields (`FieldsOptions` in
hep2tf/config/convert.py).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from scipy import ndimage
from skimage import measure

from hep2tf.data import decoding, images, segment
from hep2tf.errors import InputError

SPECIMENS_CSV = "specimens.csv"
MASK_SUFFIX = "_mask"
EDGE_RULES = ("drop", "keep")
MASK_RULES = ("use", "ignore")
FIELD_EXTENSIONS = (".png", ".tif", ".tiff", ".bmp")


def _option(default, help: str):
  return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class FieldsConfig:
  """How cells are found in fields and cut out; each field is a flag (of
  create_records --dataset=fields and predict --fields)."""
  cell_size: int = _option(78, "fields: side of the square window cut around each "
                           "cell's centroid, pixels (78: the ICPR 2014 crop).")
  edge_cells: str = _option("drop", "fields: cells whose mask touches the field's "
                            "edge are dropped (cut nuclei) or kept.")
  field_masks: str = _option("use", "fields: use a field's _mask file where there is"
                             " one, or ignore it and segment every field.")
  min_area: int = _option(segment.SegmentConfig.min_area, "fields: cells smaller "
                          "than this many pixels are dropped (masks and segmentation).")
  max_area: int = _option(segment.SegmentConfig.max_area, "fields: segmentation keeps"
                          " objects up to this many pixels.")
  segment_sigma: float = _option(segment.SegmentConfig.sigma, "fields: segmentation's"
                                 " Gaussian smoothing, pixels.")
  segment_threshold: str = _option(
      segment.SegmentConfig.threshold, "fields: segmentation's threshold on the "
      f"smoothed field: {', '.join(segment.THRESHOLDS)}.")
  segment_threshold_scale: float = _option(
      segment.SegmentConfig.threshold_scale, "fields: the cut lies this fraction of "
      "the way from the field's median to the threshold (below 1 keeps dim parts).")
  segment_min_distance: int = _option(
      segment.SegmentConfig.min_distance, "fields: watershed seeds (distance-"
      "transform peaks) at least this many pixels apart, to split touching nuclei.")

  def __post_init__(self):
    if self.cell_size < 8:
      raise InputError(f"--cell_size must be >= 8, got {self.cell_size}")
    if self.edge_cells not in EDGE_RULES:
      raise InputError(f"--edge_cells must be one of {EDGE_RULES}")
    if self.field_masks not in MASK_RULES:
      raise InputError(f"--field_masks must be one of {MASK_RULES}")
    try:
      self.segment_config()
    except ValueError as e:
      raise InputError(f"segmentation options: {e}") from None

  def segment_config(self) -> segment.SegmentConfig:
    return segment.SegmentConfig(
        sigma=self.segment_sigma, threshold=self.segment_threshold,
        threshold_scale=self.segment_threshold_scale,
        min_distance=self.segment_min_distance, min_area=self.min_area,
        max_area=self.max_area)


@dataclasses.dataclass(frozen=True)
class Cell:
  """One cell of a field: its id in the labels, centroid, bounding box
  (top, left, bottom, right; bottom/right exclusive) and area in pixels."""
  id: int
  cy: float
  cx: float
  bbox: tuple[int, int, int, int]
  area: int


def list_fields(data_dir: str) -> dict[str, list[tuple[str, str, str | None]]]:
  """{specimen folder: [(field name, image path, mask path or None)]}, sorted.

  Hidden folders and files are skipped; `<field>_mask.<ext>` files are masks, not
  fields. A folder with no field image is listed with no fields.
  """
  out = {}
  for entry in sorted(os.scandir(data_dir), key=lambda e: e.name):
    if entry.name.startswith(".") or not entry.is_dir():
      continue
    names = sorted(n for n in os.listdir(entry.path) if not n.startswith(".")
                   and n.lower().endswith(FIELD_EXTENSIONS))
    stems = {os.path.splitext(n)[0].lower(): n for n in names}
    fields = []
    for name in names:
      stem = os.path.splitext(name)[0]
      if stem.lower().endswith(MASK_SUFFIX):
        continue
      mask = stems.get(stem.lower() + MASK_SUFFIX)
      fields.append((stem, os.path.join(entry.path, name),
                     os.path.join(entry.path, mask) if mask else None))
    out[entry.name] = fields
  return out


def read_field(path: str, max_megapixels: float = images.DEFAULT_MAX_MEGAPIXELS
               ) -> np.ndarray:
  """A field's grey values (H, W): uint8, uint16 or float64 as the file holds them.

  RGB and other modes become grey by the converter's rule (`decoding.to_uint8` /
  `deep_values` with one channel). InputError naming the file when it cannot be read.
  """
  data = decoding.read_bytes(path)
  image = decoding.decode(data, path, max_megapixels)
  if decoding.sample_kind(image, data, path) == "uint8":
    return decoding.to_uint8(image, 1, path)[..., 0]
  return decoding.deep_values(image, data, 1, path)[..., 0]


def read_labels(path: str, shape: tuple[int, int],
                max_megapixels: float = images.DEFAULT_MAX_MEGAPIXELS) -> np.ndarray:
  """A mask file -> labels int32 (H, W): a label image as it is, a binary mask (one
  non-zero value) as its 8-connected components. InputError when unreadable or of
  another size than the field."""
  data = decoding.read_bytes(path)
  image = decoding.decode(data, path, max_megapixels)
  if image.mode not in ("L", "I", "I;16", "I;16L", "I;16B", "I;16N", "1", "P"):
    image = image.convert("L")
  values = np.asarray(image).astype(np.int64)
  if values.ndim != 2 or values.shape != tuple(shape):
    raise InputError(f"mask is {values.shape[::-1]} but the field is "
                     f"{tuple(shape)[::-1]} (width, height)", file=path)
  if values.min() < 0:
    raise InputError("mask has negative values", file=path)
  if len(np.unique(values[values > 0])) <= 1:
    labels, _ = ndimage.label(values > 0, structure=np.ones((3, 3)))
    return labels.astype(np.int32)
  return values.astype(np.int32)


def field_labels(grey: np.ndarray, mask_path: str | None,
                 config: FieldsConfig) -> tuple[np.ndarray, str]:
  """(labels, "mask" or "segmented"): the mask's cells where there is a mask and the
  config uses it, else `segment.segment_nuclei`'s."""
  if mask_path and config.field_masks == "use":
    return read_labels(mask_path, grey.shape), "mask"
  return segment.segment_nuclei(grey, config.segment_config()), "segmented"


def find_cells(labels: np.ndarray, config: FieldsConfig
               ) -> tuple[list[Cell], dict[str, int]]:
  """The cells to classify, and how many were dropped by the rule (module
  docstring): {"edge": n, "small": n}."""
  height, width = labels.shape
  cells, dropped = [], {"edge": 0, "small": 0}
  for region in measure.regionprops(labels):
    top, left, bottom, right = region.bbox
    if region.area < config.min_area:
      dropped["small"] += 1
      continue
    if config.edge_cells == "drop" and (top == 0 or left == 0 or bottom == height
                                        or right == width):
      dropped["edge"] += 1
      continue
    cy, cx = region.centroid
    cells.append(Cell(int(region.label), float(cy), float(cx),
                      (int(top), int(left), int(bottom), int(right)),
                      int(region.area)))
  return cells, dropped


def background_level(values: np.ndarray, labels: np.ndarray):
  """The field's background: the median of the pixels outside every cell."""
  outside = values[labels == 0]
  level = np.median(outside) if outside.size else np.median(values)
  return level.astype(values.dtype) if values.dtype.kind in "ui" else level


def window_slices(cell: Cell, size: int, shape: tuple[int, int]):
  """(field slices, window slices) of the part of a `size` window centred on the
  cell that lies inside the field."""
  top = int(np.floor(cell.cy + 0.5)) - size // 2
  left = int(np.floor(cell.cx + 0.5)) - size // 2
  y0, x0 = max(0, top), max(0, left)
  y1, x1 = min(shape[0], top + size), min(shape[1], left + size)
  return ((slice(y0, y1), slice(x0, x1)),
          (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left)))


def cut_window(values: np.ndarray, cell: Cell, size: int, fill) -> np.ndarray:
  """The `size` x `size` window of `values` centred on the cell, `fill` outside."""
  inside, window = window_slices(cell, size, values.shape[:2])
  out = np.full((size, size) + values.shape[2:], fill, values.dtype)
  out[window] = values[inside]
  return out


def cell_mask(labels: np.ndarray, cell: Cell, size: int) -> np.ndarray:
  """The cell's own mask in its window: uint8 0/255 (size, size)."""
  return cut_window((labels == cell.id).astype(np.uint8) * 255, cell, size, 0)
