"""Loading source images for a records folder, in worker processes.

`prescan` decides the dataset's `intensity.PixelSpec` from its sources before any
record is written (headers; float ranges; the training values for intensity=rescale).
`load_task` and `load_one` turn one row of the write plan into a `images.LoadedImage`
(or the reason it is bad, as InputError pickles lossily); `in_order` runs a function
over the plan in order, in a process pool when asked (fork: the workers inherit the
parent's imports, TensorFlow included, and import nothing again). `check_dtype`
refuses an image whose bit depth changed after the pre-scan. The local writer and the
Beam pipeline load through these.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
from typing import Callable, Iterator, Sequence

import pandas as pd

from hep2tf import console
from hep2tf.data import images
from hep2tf.data import intensity
from hep2tf.errors import InputError

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


def in_order(work: Callable, tasks: Sequence, num_workers: int) -> Iterator:
  """work(task) for each task, yielded in task order; with workers, in a process
  pool (fork where the platform has it), `chunk_size` tasks per round trip. The
  pool stops when the generator is closed, also after an error."""
  if num_workers <= 1:
    yield from map(work, tasks)
    return
  methods = multiprocessing.get_all_start_methods()
  context = multiprocessing.get_context("fork" if "fork" in methods else None)
  with concurrent.futures.ProcessPoolExecutor(
      num_workers, mp_context=context,
      initializer=console.ignore_interrupts) as pool:   # Ctrl-C: the parent's
    try:
      yield from pool.map(work, tasks, chunksize=chunk_size(len(tasks), num_workers))
    finally:
      pool.shutdown(wait=True, cancel_futures=True)


def chunk_size(num_tasks: int, num_workers: int) -> int:
  """Tasks per round trip: about 8 chunks per worker (so the last chunks even out
  the workers' load), between 8 and 64 tasks (fewer round trips, each a pickle)."""
  return max(8, min(64, num_tasks // (8 * max(1, num_workers)) or 1))


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
