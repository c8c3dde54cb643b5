"""Sharded, shuffled, parallel and atomic TFRecord writing, plus the metadata.

`write_records` turns an example table (after `splits.py`) into a records folder:

  <name>-<split>.tfrecord-00000-of-00008   shards of tf.train.Example (schema.py)
  dataset_info.json, features.json         TFDS metadata (tfds.builder_from_directory)
  manifest.csv                             one row per record: where it came from
                                           (and the dataset's own fold, if any)
  class_counts.json                        {split: {class: count}}, balance, copies
  hep2tf.json                              what the reader and trainer need to know,
                                           including the pixel dtype and intensity
                                           mapping (`intensity.PixelSpec`)
  samples.png                              a few cells per class and split, decoded
                                           as the reader decodes them
  rejects.csv                              inputs skipped under on_error="skip"

Images are loaded and checked in worker processes (`images.py`, no TensorFlow); the
parent serialises with `schema.encode_example` and writes in a fixed order, so the same
seed gives the same bytes whatever the number of workers. Everything is written into a
hidden sibling folder and renamed into place at the end: a crash or a bad input leaves
either no dataset or the previous complete one. The metadata files are written by
`metadata.py`, images loaded by `loading.py`; `Records.verify` reads one back.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import shutil
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf
import tqdm

from hep2tf import atomic, storage
from hep2tf.convert import loading, metadata, samples
from hep2tf.data import images, intensity, schema
from hep2tf.data.records import INFO_FILE, REJECTS, shard_file_name
from hep2tf.errors import InputError, Rejects

SPLIT_ORDER = ("train", "validation", "test")
MAX_SHARDS = 8
# Fewer shards for small splits: below this many records a shard buys no interleaving.
MIN_RECORDS_PER_SHARD = 256
def num_shards_for(num_examples: int, num_shards: int | None = None) -> int:
  """Shards for one split: `num_shards` if given, else up to 8, >= 256 records each."""
  if num_shards is not None:
    if num_shards < 1:
      raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    return max(1, min(num_shards, num_examples))
  return max(1, min(MAX_SHARDS, num_examples // MIN_RECORDS_PER_SHARD))


def write_records(source, examples: pd.DataFrame, output_dir: str | os.PathLike, *,
                  num_shards: int | None = None, num_workers: int = 1, seed: int = 0,
                  overwrite: bool = False, on_error: str = "fail",
                  image_size: tuple[int, int] | None = None, resize: str = "pad",
                  apply_mask: bool = False, progress: bool = True,
                  max_megapixels: float = images.DEFAULT_MAX_MEGAPIXELS,
                  balance: str = "none", augment_copies: int = 0,
                  data_dir: str | os.PathLike | None = None,
                  dataset: str | None = None,
                  rejects: Rejects | None = None, intensity_mode: str = "keep",
                  percentiles=intensity.DEFAULT_PERCENTILES,
                  pixels: intensity.PixelSpec | None = None,
                  split_notes: Sequence[str] = ()) -> metadata.WriteSummary:
  """Writes `examples` as a records folder at `output_dir`, atomically.

  Args:
    source: the `sources.Source` (name, class_names, channels, positive_class).
    examples: example table with `split` set (splits.assign_splits); an int
      `dihedral` column (0..7) asks for transformed copies.
    output_dir: the records folder; must not exist unless `overwrite`.
    num_shards: shards per split; None: 8 for big splits, fewer for small ones.
    num_workers: processes loading images; 1 loads in this process.
    seed: shuffles each split at write time; same seed, same bytes.
    on_error: "fail" stops at the first bad image with InputError and publishes
      nothing; "skip" drops it and lists it in rejects.csv.
    image_size, resize, apply_mask, max_megapixels: see `images.load_image`.
    balance, augment_copies: what `splits.py` did, recorded in the metadata.
    data_dir: the folder file names are relative to (default: the images' common
      folder). dataset: the source layout's name, recorded (default: source.name).
    rejects: inputs already skipped by earlier stages, written with ours.
    intensity_mode, percentiles: how source values become stored values (see
      `intensity`); the pre-scan `intensity.scan_pixels` decides the dtype.
    pixels: a PixelSpec decided already (skips the pre-scan).
    split_notes: what the splitter gave up (e.g. validation not group-disjoint),
      recorded in hep2tf.json.

  Returns:
    A metadata.WriteSummary. Raises InputError for bad input or an existing output_dir.
  """
  if not storage.is_local(output_dir):
    return _write_through_local(
        os.fspath(output_dir), overwrite,
        lambda local: write_records(
            source, examples, local, num_shards=num_shards, num_workers=num_workers,
            seed=seed, overwrite=False, on_error=on_error, image_size=image_size,
            resize=resize, apply_mask=apply_mask, progress=progress,
            max_megapixels=max_megapixels, balance=balance,
            augment_copies=augment_copies, data_dir=data_dir, dataset=dataset,
            rejects=rejects, intensity_mode=intensity_mode, percentiles=percentiles,
            pixels=pixels, split_notes=split_notes))
  name = source.name
  if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
    raise ValueError(f"dataset name must be snake_case, got {name!r}")
  if on_error not in ("fail", "skip"):
    raise ValueError(f"on_error must be fail or skip, got {on_error!r}")
  output_dir = pathlib.Path(output_dir).absolute()
  if output_dir.exists() and not overwrite:
    raise InputError("the records folder exists; pass overwrite (--overwrite) to "
                     "replace it", file=output_dir)
  class_names = list(source.class_names)
  unknown = sorted(set(examples["label"]) - set(class_names))
  if unknown:
    raise InputError(f"labels {unknown} are not among the classes {class_names}")
  masks = examples["mask_path"].fillna("").astype(str) != "" if (
      "mask_path" in examples.columns) else pd.Series(False, index=examples.index)
  has_mask = bool(len(examples)) and bool(masks.all())
  if apply_mask and not has_mask:
    raise InputError("apply_mask needs a mask for every image, and some have none")
  rejects = rejects if rejects is not None else Rejects()
  data_dir = pathlib.Path(data_dir).absolute() if data_dir else common_dir(
      examples["path"])

  atomic.clean_stale(output_dir)
  with atomic.staged_dir(output_dir) as staging:
    plan = shard_plan(examples, seed, num_shards)
    pixels = pixels or loading.prescan(plan, source.channels, intensity_mode,
                                       percentiles, max_megapixels, num_workers)
    load_options = dict(channels=source.channels, image_size=image_size,
                        resize=resize, apply_mask=apply_mask,
                        max_megapixels=max_megapixels, pixel_spec=pixels)
    tasks = [loading.load_task(row, has_mask, load_options)
             for row in plan.to_dict("records")]
    loaded = loading.load_all(tasks, num_workers)
    try:
      results = tqdm.tqdm(loaded, total=len(tasks), unit="img",
                          desc=f"writing {name}", disable=not progress)
      manifest, shard_lengths, num_bytes, shapes = _write_shards(
          staging, name, source, plan, results, has_mask, data_dir, on_error,
          rejects, pixels)
    finally:
      loaded.close()   # stops the worker pool now, also after an error
    image_shape = list(shapes.pop()) if len(shapes) == 1 else None
    summary = metadata.summarise(output_dir, name, class_names, manifest,
                                 shard_lengths, num_bytes, image_shape, len(rejects),
                                 pixels)
    summary.split_notes = list(split_notes)
    metadata.write_tfds_metadata(staging, source, summary, shard_lengths, has_mask,
                                 image_shape)
    metadata.write_tables(staging, source, summary, manifest, has_mask, balance,
                          augment_copies, seed, dataset or name, data_dir, rejects)
    samples.write_samples(str(staging), summary, source.channels, has_mask)
  return summary


# ---------------------------------------------------------------------------
# Planning.


def shard_plan(examples: pd.DataFrame, seed: int,
               num_shards: int | None) -> pd.DataFrame:
  """The write order: per split a seeded shuffle cut into contiguous shards."""
  parts = []
  extra = sorted(set(examples["split"]) - set(SPLIT_ORDER))
  for split_index, split in enumerate(list(SPLIT_ORDER) + extra):
    rows = examples[examples["split"] == split]
    if rows.empty:
      continue
    rng = np.random.default_rng([seed, split_index])
    rows = rows.iloc[rng.permutation(len(rows))]
    count = num_shards_for(len(rows), num_shards)
    shard = np.repeat(np.arange(count),
                      [len(c) for c in np.array_split(np.arange(len(rows)), count)])
    parts.append(rows.assign(shard=shard, num_shards=count))
  if not parts:
    raise InputError("no examples to write")
  out = pd.concat(parts, ignore_index=True)
  if "dihedral" not in out.columns:
    out["dihedral"] = 0
  out["dihedral"] = out["dihedral"].fillna(0).astype(int)
  return out


# ---------------------------------------------------------------------------
# Writing.


def _write_shards(staging, name, source, plan, results, has_mask, data_dir,
                  on_error, rejects, pixels):
  """Serialises and writes every record; returns manifest rows and shard facts."""
  features = schema.make_features(source.class_names, source.channels, has_mask,
                                  dtype=pixels.dtype)
  manifest, shapes = [], set()
  shard_lengths: dict[str, list[int]] = {}
  num_bytes: dict[str, int] = {}
  writer, current = None, None
  try:
    for row, loaded in zip(plan.to_dict("records"), results):
      split, shard, count = row["split"], int(row["shard"]), int(row["num_shards"])
      if (split, shard) != current:
        if writer is not None:
          writer.close()
        file_name = shard_file_name(name, split, shard, count)
        writer = tf.io.TFRecordWriter(str(staging / file_name))
        current = (split, shard)
        shard_lengths.setdefault(split, [0] * count)
        num_bytes.setdefault(split, 0)
      if isinstance(loaded, tuple):
        error = InputError(loaded[0], file=loaded[1])
        if on_error == "fail":
          raise error
        rejects.add(error)
        continue
      loading.check_dtype(loaded, pixels, row["path"])
      relative = relative_file_name(row["path"], data_dir)
      example = {schema.IMAGE: loaded.png, schema.LABEL: row["label"],
                 schema.ID: row["id"], schema.FILE_NAME: relative,
                 schema.SHA256: loaded.sha256, schema.INTENSITY: row.get("intensity"),
                 schema.GROUP: row.get("group"), schema.DIHEDRAL: int(row["dihedral"])}
      if has_mask:
        example[schema.MASK] = loaded.mask_png
      record = schema.encode_example(features, example)
      writer.write(record)
      manifest.append({"id": row["id"], "file_name": relative,
                       "sha256": loaded.sha256, "split": split,
                       "shard": file_name, "index": shard_lengths[split][shard],
                       "label": row["label"], "group": row.get("group", "") or "",
                       "intensity": row.get("intensity", "") or "",
                       "dihedral": int(row["dihedral"]),
                       "fold": row.get("fold", "") or "", **loaded.stats})
      shard_lengths[split][shard] += 1
      # TFRecord framing: 8-byte length, two 4-byte CRCs around the payload.
      num_bytes[split] += len(record) + 16
      shapes.add((loaded.height, loaded.width))
  finally:
    if writer is not None:
      writer.close()
  if not manifest:
    raise InputError("every image was rejected; nothing to write")
  return pd.DataFrame(manifest), shard_lengths, num_bytes, shapes


def _write_through_local(url: str, overwrite: bool, write) -> metadata.WriteSummary:
  """A records folder at a tf.io.gfile URL (gs://, hdfs://, ram://): built whole
  in a local scratch folder by `write(local_dir)` (the parallel loaders and the
  rename-based publish need a local disk), then copied file by file with the
  metadata last (`storage.copy_tree`): not atomic, see docs/CLUSTER.md."""
  url = url.rstrip("/")
  if storage.exists(url) and not overwrite:
    raise InputError("the records folder exists; pass overwrite (--overwrite) to "
                     "replace it", file=url)
  scratch = storage.local_staging(prefix="hep2tf-records-")
  try:
    summary = write(os.path.join(scratch, url.rsplit("/", 1)[-1]))
    if storage.exists(url):
      storage.rmtree(url)
    storage.copy_tree(os.fspath(summary.output_dir), url,
                      last=(REJECTS, "dataset_info.json", INFO_FILE))
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  return dataclasses.replace(summary, output_dir=url)


def common_dir(paths: Iterable[str]) -> pathlib.Path:
  folders = [os.path.dirname(os.path.abspath(p)) for p in paths]
  return pathlib.Path(os.path.commonpath(folders)) if folders else pathlib.Path.cwd()


def relative_file_name(path: str, data_dir: pathlib.Path) -> str:
  relative = os.path.relpath(os.path.abspath(path), data_dir)
  return pathlib.PurePath(relative).as_posix()


