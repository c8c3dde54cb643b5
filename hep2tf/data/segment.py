"""Finding nuclei in a field without a mask: a classical scikit-image segmentation.

`segment_nuclei(grey, config)` is the one rule, used by the converter (a fields set
without masks) and by `predict --fields`:

  1. smooth: a Gaussian of `sigma` pixels (the texture of a pattern, its dots and
     granules, must not split a nucleus);
  2. threshold: `threshold` (otsu, li or triangle; scikit-image) on the smoothed
     field, scaled by `threshold_scale`, so dim parts of a cell (a Golgi or
     nucleolar cell's dark nucleoplasm, a membrane cell's centre) are kept; holes
     are filled;
  3. split touching nuclei: a watershed of the distance transform from its peaks at
     least `min_distance` pixels apart;
  4. size filter: objects below `min_area` or above `max_area` pixels are dropped.

Everything is relative to the field's own levels (the threshold comes from its
histogram), so an 8-bit field and its 16-bit copy give the same cells.
`match_centres` scores detections against true centres (one-to-one within a radius),
as the tests and docs/RESULTS.md report it. No TensorFlow here.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage, optimize
from skimage import feature, filters, measure, segmentation

THRESHOLDS = {"otsu": filters.threshold_otsu, "li": filters.threshold_li,
              "triangle": filters.threshold_triangle}


@dataclasses.dataclass(frozen=True)
class SegmentConfig:
  """The segmentation's parameters (pixels at the field's own resolution)."""
  sigma: float = 2.0
  # Triangle: robust to a few very bright cells (dead or mitotic), which pull Otsu's
  # threshold up and lose the dim cells (docs/RESULTS.md, "Whole fields").
  threshold: str = "triangle"
  threshold_scale: float = 1.0
  min_distance: int = 12
  min_area: int = 150
  max_area: int = 6000

  def __post_init__(self):
    if self.threshold not in THRESHOLDS:
      raise ValueError(f"threshold must be one of {', '.join(THRESHOLDS)}, got "
                       f"{self.threshold!r}")
    if self.sigma < 0 or self.threshold_scale <= 0 or self.min_distance < 1:
      raise ValueError(f"sigma >= 0, threshold_scale > 0 and min_distance >= 1, "
                       f"got {self}")


def segment_nuclei(grey: np.ndarray, config: SegmentConfig = SegmentConfig()
                   ) -> np.ndarray:
  """A grey field (H, W) of any numeric type -> label image int32 (0 = background,
  1..N one id per nucleus, numbered in raster order)."""
  values = np.asarray(grey, dtype=np.float64)
  if values.ndim == 3 and values.shape[-1] == 1:
    values = values[..., 0]
  if values.ndim != 2:
    raise ValueError(f"segment_nuclei takes a grey (H, W) field, got {grey.shape}")
  low, high = float(values.min()), float(values.max())
  if high <= low:
    return np.zeros(values.shape, np.int32)
  smooth = filters.gaussian((values - low) / (high - low), sigma=config.sigma)
  background = float(np.median(smooth))
  level = THRESHOLDS[config.threshold](smooth)
  cut = background + config.threshold_scale * (level - background)
  foreground = ndimage.binary_fill_holes(smooth > cut)
  components, _ = ndimage.label(foreground)
  foreground &= (np.bincount(components.ravel()) >= config.min_area)[components]
  distance = ndimage.distance_transform_edt(foreground)
  peaks = feature.peak_local_max(distance, min_distance=config.min_distance,
                                 labels=measure.label(foreground), exclude_border=False)
  markers = np.zeros(values.shape, np.int32)
  markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
  labels = segmentation.watershed(-distance, markers, mask=foreground)
  areas = np.bincount(labels.ravel())
  keep = (areas >= config.min_area) & (areas <= config.max_area)
  keep[0] = False
  labels = np.where(keep[labels], labels, 0)
  return _renumber(labels)


def _renumber(labels: np.ndarray) -> np.ndarray:
  """Ids 1..N in raster order of each object's first pixel."""
  ids, first = np.unique(labels.ravel(), return_index=True)
  order = [i for _, i in sorted(zip(first, ids)) if i != 0]
  lookup = np.zeros(int(labels.max()) + 1, np.int32)
  lookup[order] = np.arange(1, len(order) + 1)
  return lookup[labels]


def match_centres(found: np.ndarray, true: np.ndarray, radius: float = 12.0
                  ) -> dict[str, float | int]:
  """One-to-one matching of detected centres to true ones (rows of (y, x)).

  A true cell counts as found when a detection, matched to it alone, lies within
  `radius` pixels; the matching maximises the number of such pairs (Hungarian
  assignment on distances, pairs beyond the radius refused). Returns {true, found,
  matched, recall, precision} (recall/precision None when there is nothing to divide
  by).
  """
  found = np.asarray(found, np.float64).reshape(-1, 2)
  true = np.asarray(true, np.float64).reshape(-1, 2)
  matched = 0
  if len(found) and len(true):
    distance = np.hypot(*(true[:, None, :] - found[None, :, :]).transpose(2, 0, 1))
    cost = np.where(distance <= radius, distance, 1e6)
    rows, cols = optimize.linear_sum_assignment(cost)
    matched = int((distance[rows, cols] <= radius).sum())
  return {"true": len(true), "found": len(found), "matched": matched,
          "recall": matched / len(true) if len(true) else None,
          "precision": matched / len(found) if len(found) else None}
