"""Pixel types and intensity mappings: how source values become stored values.

Real microscopy is often 12- or 16-bit and rarely fills 16 bits (a 12-bit camera gives
0..4095; a dim exposure or 8-bit data in a 16-bit container far less). Scaling by the
type's maximum (x / 257) throws those levels away, so a dataset keeps them:

- `PixelSpec.dtype` is the one pixel type of a dataset's stored PNGs. A pre-scan of
  the sources (`scan_pixels`, headers only) decides it: uint8 when every source is
  8-bit, uint16 when any is deeper.
- intensity="keep" (the default) is lossless: 16-bit sources hold exactly their
  values; in a mixed set 8-bit sources are stored x 257 (0..255 onto 0..65535, PNG's
  own rule for widening a bit depth); float sources (float32 TIFF) are mapped from the
  dataset's float [min, max], recorded as `float_range`, onto 0..65535.
- intensity="rescale" stores 8 bits: v -> round((v - lo) / (hi - lo) * 255), clipped,
  with lo, hi the dataset-wide percentiles of the training split's values (computed
  once, recorded as `rescale_range`); "rescale_per_image" takes each image's own
  percentiles (csbdeep / StarDist style, 1 and 99.8 by default).

The reader maps stored values to the models' float input (models take float32 where
255 is full scale) by `x = stored * 255 / white_level`, with white_level = 2**b - 1 for
the fewest bits b >= 8 that hold the dataset's largest stored value: 255 for 8-bit data
and for 16-bit data within 0..255, 4095 for a 12-bit camera, 65535 when the range is
used. In float32 every 16-bit level stays distinct; nothing is rounded to 8 bits.

No TensorFlow here: this runs in the converter's worker processes.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import multiprocessing
from typing import Sequence

import numpy as np

from hep2tf import console
from hep2tf.data import decoding
from hep2tf.errors import InputError

INTENSITY_MODES = ("keep", "rescale", "rescale_per_image")
DEFAULT_PERCENTILES = (1.0, 99.8)
KINDS = ("uint8", "uint16", "float")
# Share of pixels at the white level above which an image counts as saturated.
SATURATION_FRACTION = 0.02
LOW_LEVELS = 16


@dataclasses.dataclass(frozen=True)
class PixelSpec:
  """How a dataset's source values become stored values (see the module docstring).

  dtype: "uint8" or "uint16", the stored PNGs' sample type.
  intensity: one of INTENSITY_MODES.
  deep: whether any source is deeper than 8 bits (8-bit sources are then x 257
    before any rescaling, so all values share one unit).
  float_range: (min, max) of the float sources, mapped onto 0..65535; or None.
  rescale_range: (lo, hi) for intensity="rescale", in the sources' unit; or None.
  percentiles: (low, high) percentiles of the rescale modes.
  white_level: the reader's full scale (stored * 255 / white_level); set after
    writing, from the largest stored value.
  source_kinds: the sample types the pre-scan found ("uint8", "uint16", "float").
  """
  dtype: str = "uint8"
  intensity: str = "keep"
  deep: bool = False
  float_range: tuple[float, float] | None = None
  rescale_range: tuple[float, float] | None = None
  percentiles: tuple[float, float] = DEFAULT_PERCENTILES
  white_level: int = 255
  source_kinds: tuple[str, ...] = ()

  def to_json(self) -> dict:
    out = dataclasses.asdict(self)
    out["mapping"] = self.describe()
    return out

  @classmethod
  def from_json(cls, raw: dict | None) -> "PixelSpec":
    """The spec recorded in hep2tf.json; records written before it are 8-bit."""
    if not raw:
      return cls()
    fields = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in raw.items() if k in fields}
    for key in ("float_range", "rescale_range", "percentiles"):
      if values.get(key) is not None:
        values[key] = tuple(float(v) for v in values[key])
    values["source_kinds"] = tuple(values.get("source_kinds") or ())
    return cls(**values)

  def describe(self) -> str:
    """One sentence: what the stored values are, for the metadata and the docs."""
    if self.intensity == "keep":
      text = f"{self.dtype} PNG holding the source values unchanged"
      if self.deep and "uint8" in self.source_kinds:
        text += "; 8-bit sources x 257"
    elif self.intensity == "rescale":
      lo, hi = self.rescale_range or (0, 0)
      text = (f"uint8 PNG: round((v - {lo:g}) / ({hi:g} - {lo:g}) * 255), clipped; "
              f"{lo:g} and {hi:g} are the training split's {self.percentiles[0]:g} "
              f"and {self.percentiles[1]:g} percentiles")
    else:
      low, high = self.percentiles
      text = (f"uint8 PNG: each image's {low:g}..{high:g} percentile range onto "
              "0..255, clipped")
    if self.float_range:
      text += (f"; float sources mapped from [{self.float_range[0]:g}, "
               f"{self.float_range[1]:g}] onto 0..65535")
    return text + (f". Reader: float = stored * 255 / {self.white_level}.")


def unit_values(values: np.ndarray, kind: str, spec: PixelSpec, path) -> np.ndarray:
  """Source values -> the dataset's common unit (before any rescaling), as float64.

  uint8 sources stay 0..255, or x 257 in a deep set; uint16 stay; float sources go
  through `float_range` onto 0..65535.
  """
  if kind == "uint8":
    out = values.astype(np.float64)
    return out * 257.0 if spec.deep else out
  if kind == "uint16":
    return values.astype(np.float64)
  if kind == "float":
    if spec.float_range is None:
      raise InputError("a float image, but these records have no float mapping "
                       "(no float sources were converted)", file=path)
    lo, hi = spec.float_range
    scale = 65535.0 / (hi - lo) if hi > lo else 0.0
    return np.clip((values.astype(np.float64) - lo) * scale, 0.0, 65535.0)
  raise ValueError(f"unknown pixel kind {kind!r}")


def to_storage(values: np.ndarray, kind: str, spec: PixelSpec, path) -> np.ndarray:
  """Source values (H, W, C) of `kind` -> the stored array (uint8 or uint16).

  With intensity="keep" on an 8-bit spec a deeper source keeps its counts as uint16
  (this happens only at prediction time; the converter's pre-scan makes such a set
  uint16).
  """
  if spec.intensity == "keep" and kind == "uint8" and not spec.deep:
    return values.astype(np.uint8)
  units = unit_values(values, kind, spec, path)
  if spec.intensity == "keep":
    return np.rint(units).astype(np.uint16)
  if spec.intensity == "rescale":
    if spec.rescale_range is None:
      raise ValueError("intensity='rescale' needs a rescale_range")
    lo, hi = spec.rescale_range
  else:
    lo, hi = np.percentile(units, spec.percentiles)
  return rescale(units, lo, hi)


def rescale(units: np.ndarray, lo: float, hi: float) -> np.ndarray:
  """[lo, hi] linearly onto 0..255, rounded and clipped (a flat image gives 0)."""
  if hi <= lo:
    return np.zeros(units.shape, np.uint8)
  out = np.rint((units - lo) * (255.0 / (hi - lo)))
  return np.clip(out, 0, 255).astype(np.uint8)


def white_level(max_value: int) -> int:
  """2**b - 1 for the fewest bits b >= 8 that hold `max_value`."""
  bits = max(8, int(max_value).bit_length())
  return 2 ** bits - 1


def image_stats(pixels: np.ndarray) -> dict:
  """Distinct levels, largest value and the share of pixels at it, and the 99th
  percentile (the image's level, `p99`) of one image's stored values."""
  # A histogram is several times faster than np.unique's sort on small cells.
  counts = np.bincount(pixels.reshape(-1))
  top = len(counts) - 1
  p99 = int(np.searchsorted(np.cumsum(counts), 0.99 * pixels.size))
  return {"levels": int(np.count_nonzero(counts)), "max_value": top,
          "at_max": float(counts[top] / pixels.size), "p99": p99}


def check_mode(intensity: str, percentiles: Sequence[float]) -> tuple[float, float]:
  """Validates the intensity flags; returns the percentiles as a pair."""
  if intensity not in INTENSITY_MODES:
    raise ValueError(f"intensity must be one of {INTENSITY_MODES}, got {intensity!r}")
  low, high = (float(p) for p in percentiles)
  if not 0.0 <= low < high <= 100.0:
    raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got "
                     f"{low:g}, {high:g}")
  return low, high


# ---------------------------------------------------------------------------
# The pre-scan and its per-file steps (they run in worker processes).


def scan_pixels(paths: Sequence[str], train_paths: Sequence[str], channels: int, *,
                intensity: str = "keep",
                percentiles: Sequence[float] = DEFAULT_PERCENTILES,
                max_megapixels: float = decoding.DEFAULT_MAX_MEGAPIXELS,
                num_workers: int = 1) -> PixelSpec:
  """Decides a dataset's PixelSpec before anything is written.

  Reads every source's header (bit depth; float or integer). Float sources are also
  decoded for the dataset's float [min, max]; intensity="rescale" decodes the training
  split (`train_paths`) for a histogram of its values, whose percentiles become the
  recorded `rescale_range`. A file that cannot be read is left to the writer, which
  reports it with the file name.
  """
  low, high = check_mode(intensity, percentiles)
  kinds = _map(probe_kind, [(p, max_megapixels) for p in paths], num_workers)
  found = {k for k in kinds if k is not None}
  deep = bool(found - {"uint8"})
  float_range = None
  if "float" in found:
    floats = [p for p, k in zip(paths, kinds) if k == "float"]
    ranges = [r for r in _map(float_range_of,
                              [(p, max_megapixels) for p in floats], num_workers)
              if r is not None]
    if ranges:
      float_range = (min(r[0] for r in ranges), max(r[1] for r in ranges))
  spec = PixelSpec(dtype="uint16" if deep and intensity == "keep" else "uint8",
                   intensity=intensity, deep=deep, float_range=float_range,
                   percentiles=(low, high), source_kinds=tuple(sorted(found)))
  if intensity != "rescale":
    return spec
  hists = [h for h in _map(unit_histogram,
                           [(p, channels, spec, max_megapixels) for p in train_paths],
                           num_workers) if h is not None]
  if not hists:
    raise InputError("intensity=rescale: no readable training image to take the "
                     "percentiles from")
  total = np.sum(hists, axis=0)
  return dataclasses.replace(spec, rescale_range=_hist_percentiles(total, low, high))


def probe_kind(path, max_megapixels: float) -> str | None:
  """"uint8", "uint16" or "float" from the file's header; None if unreadable."""
  try:
    data = decoding.read_bytes(path)
    header = decoding.open_header(data, path, max_megapixels)
    return decoding.sample_kind(header, data, path)
  except InputError:
    return None


def float_range_of(path, max_megapixels: float):
  """(min, max) of a float image's values; None if unreadable."""
  try:
    data = decoding.read_bytes(path)
    image = decoding.decode(data, path, max_megapixels)
    values = decoding.deep_values(image, data, 1, path)
  except InputError:
    return None
  return float(values.min()), float(values.max())


def unit_histogram(path, channels: int, spec: PixelSpec, max_megapixels: float):
  """Counts of each value 0..65535 of an image in the dataset's unit; None if bad."""
  try:
    data = decoding.read_bytes(path)
    image = decoding.decode(data, path, max_megapixels)
    kind = decoding.sample_kind(image, data, path)
    values = (decoding.to_uint8(image, channels, path) if kind == "uint8"
              else decoding.deep_values(image, data, channels, path))
    units = unit_values(values, kind, spec, path)
  except InputError:
    return None
  return np.bincount(np.rint(units).astype(np.int64).reshape(-1), minlength=65536)


def _hist_percentiles(hist: np.ndarray, low: float, high: float
                      ) -> tuple[float, float]:
  """Percentiles of integer values 0..len(hist)-1 given their counts."""
  cumulative = np.cumsum(hist) / hist.sum()
  lo = int(np.searchsorted(cumulative, low / 100.0, side="left"))
  hi = int(np.searchsorted(cumulative, high / 100.0, side="left"))
  return float(lo), float(min(hi, len(hist) - 1))


def _map(function, argument_tuples, num_workers: int) -> list:
  """function(*args) for each tuple, in order; in a process pool when asked."""
  if num_workers <= 1 or len(argument_tuples) < 64:
    return [function(*args) for args in argument_tuples]
  methods = multiprocessing.get_all_start_methods()
  context = multiprocessing.get_context("fork" if "fork" in methods else None)
  with concurrent.futures.ProcessPoolExecutor(
      num_workers, mp_context=context,
      initializer=console.ignore_interrupts) as pool:   # Ctrl-C: the parent's
    return list(pool.map(function, *zip(*argument_tuples), chunksize=32))
