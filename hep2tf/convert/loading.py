"""Loading source images for a records folder, in worker processes.

`prescan` decides the dataset's `intensity.PixelSpec` from its sources before any
record is written (headers; float ranges; the training values for intensity=rescale).
`load_task` and `load_one` turn one row of the write plan into a `images.LoadedImage`
(or the reason it is bad, as InputError pickles lossily); `load_all` loads in plan
order, in a process pool when asked (fork: no TensorFlow re-import). `check_dtype`
refuses an image whose bit depth changed after the pre-scan. The local writer and the
Beam pipeline load through these.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from typing import Iterator, Sequence

import pandas as pd

from hep2tf import console
from hep2tf.data import images
from hep2tf.data import intensity
from hep2tf.errors import InputError

_CHUNKSIZE = 32


def prescan(plan: pd.DataFrame, channels: int, intensity_mode: str, percentiles,
            max_megapixels: float, num_workers: int) -> intensity.PixelSpec:
  """The dataset's PixelSpec from its sources (each file once; train for rescale)."""
  paths = list(dict.fromkeys(plan["path"]))
  train = list(dict.fromkeys(plan.loc[plan["split"] == "train", "path"])) or paths
  return intensity.scan_pixels(paths, train, channels, intensity=intensity_mode,
                               percentiles=percentiles,
                               max_megapixels=max_megapixels,
                               num_workers=num_workers)


def load_task(row, has_mask: bool, options: dict) -> tuple:
  mask = row["mask_path"] if has_mask else None
  return (row["path"], dict(options, mask_path=mask,
                            dihedral_id=int(row["dihedral"])))


def load_all(tasks: Sequence[tuple], num_workers: int) -> Iterator:
  """Loads in task order; with workers, in a process pool (fork: no TF re-import)."""
  if num_workers <= 1:
    yield from map(load_one, tasks)
    return
  methods = multiprocessing.get_all_start_methods()
  context = multiprocessing.get_context("fork" if "fork" in methods else None)
  with concurrent.futures.ProcessPoolExecutor(
      num_workers, mp_context=context,
      initializer=console.ignore_interrupts) as pool:   # Ctrl-C: the parent's
    try:
      yield from pool.map(load_one, tasks, chunksize=_CHUNKSIZE)
    finally:
      pool.shutdown(wait=True, cancel_futures=True)


def load_one(task: tuple):
  """LoadedImage, or (reason, file) for a bad input (InputError pickles lossily)."""
  path, options = task
  options = dict(options)
  channels = options.pop("channels")
  try:
    return images.load_image(path, channels, **options)
  except InputError as e:
    return (e.reason, e.file)


def check_dtype(loaded: images.LoadedImage, pixels: intensity.PixelSpec,
                path) -> None:
  """The stored PNG's bit depth must be the dataset's (a file may change mid-run)."""
  depth = 16 if loaded.png[24] == 16 else 8
  if depth != (16 if pixels.dtype == "uint16" else 8):
    raise InputError(f"became a {depth}-bit image after the pre-scan chose "
                     f"{pixels.dtype} for this dataset (was the file replaced?)",
                     file=path)
