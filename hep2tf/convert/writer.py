"""Sharded, shuffled, parallel and atomic TFRecord writing, plus the metadata.

`write_records` turns a prepared conversion (`plan.prepare_examples`: the example
table after `splits.py`, and its config) into a records folder:

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
parent makes each record with `plan.make_record` and writes in the order of
`plan.shard_plan`, so the same seed gives the same bytes whatever the number of
workers (and the Beam pipeline writes the same records). Everything is written into a
hidden sibling folder and renamed into place at the end: a crash or a bad input leaves
either no dataset or the previous complete one. The metadata files are written by
`metadata.py`, images loaded by `loading.py`; `Records.verify` reads one back.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil

import pandas as pd
import tensorflow as tf
import tqdm

from hep2tf import atomic, errors, storage
from hep2tf.convert import loading, metadata, plan, samples
from hep2tf.data import intensity, schema
from hep2tf.data.records import shard_file_name
from hep2tf.errors import InputError


def write_records(prepared: plan.Prepared,
                  pixels: intensity.PixelSpec | None = None) -> metadata.WriteSummary:
  """Writes a prepared conversion (`plan.prepare_examples`) as its records folder,
  atomically.

  The config says where (`output_dir`, replaced only with `overwrite`) and how:
  `num_shards` per split (None: 8 for big splits, fewer for small ones);
  `num_workers` processes load images; `seed` shuffles each split at write time
  (same seed, same bytes); `on_error` "fail" stops at the first bad image with
  InputError and publishes nothing, "skip" drops it and lists it in rejects.csv;
  image_size, resize, apply_mask, max_megapixels: see `images.load_image`;
  intensity, rescale_percentiles: how source values become stored values (see
  `intensity`; the pre-scan `intensity.scan_pixels` decides the dtype). The table
  may carry an int `dihedral` column (0..7) asking for transformed copies; file
  names are relative to its `data_dir`. `pixels`: a PixelSpec decided already
  (skips the pre-scan). What was skipped is added to `prepared.rejects`.

  Returns:
    A metadata.WriteSummary. Raises InputError for bad input or an existing
    output_dir, errors.NoSpaceError (naming output_dir) when the disk fills up.
  """
  if not storage.is_local(prepared.output_dir):
    return _write_through_local(prepared, pixels)
  has_mask = plan.check_inputs(prepared)
  output_dir = pathlib.Path(prepared.output_dir).absolute()
  atomic.clean_stale(output_dir)
  try:
    return _write_staged(prepared, output_dir, has_mask, pixels)
  except Exception as e:
    if errors.is_no_space(e):   # the staged folder is gone: say so in one line
      raise errors.no_space(e, output_dir) from None
    raise


def _write_staged(prepared: plan.Prepared, output_dir: pathlib.Path, has_mask: bool,
                  pixels: intensity.PixelSpec | None) -> metadata.WriteSummary:
  """The records folder built in a hidden sibling and renamed into place."""
  config, source = prepared.config, prepared.source
  name, class_names = source.name, list(source.class_names)
  rejects, data_dir = prepared.rejects, prepared.data_dir
  with atomic.staged_dir(output_dir) as staging:
    order = plan.shard_plan(prepared.examples, config.seed, config.num_shards)
    pixels = pixels or plan.prescan(prepared, order)
    load_options = plan.load_options(prepared, pixels)
    tasks = [loading.load_task(row, has_mask, load_options)
             for row in order.to_dict("records")]
    loaded = loading.load_all(tasks, config.workers)
    try:
      results = tqdm.tqdm(loaded, total=len(tasks), unit="img",
                          desc=f"writing {name}", disable=not config.progress)
      manifest, shard_lengths, num_bytes, shapes = _write_shards(
          staging, prepared, order, results, has_mask, pixels)
    finally:
      loaded.close()   # stops the worker pool now, also after an error
    image_shape = list(shapes.pop()) if len(shapes) == 1 else None
    summary = metadata.summarise(output_dir, name, class_names, manifest,
                                 shard_lengths, num_bytes, image_shape, len(rejects),
                                 pixels)
    summary.split_notes = list(prepared.split_notes)
    metadata.write_tfds_metadata(staging, source, summary, shard_lengths, has_mask,
                                 image_shape)
    metadata.write_tables(staging, source, summary, manifest, has_mask,
                          config.balance, config.augment_copies, config.seed,
                          config.dataset, data_dir, rejects)
    samples.write_samples(str(staging), summary, source.channels, has_mask)
  return summary


# ---------------------------------------------------------------------------
# Writing.


def _write_shards(staging, prepared, order, results, has_mask, pixels):
  """Serialises and writes every record; returns manifest rows and shard facts."""
  source = prepared.source
  features = schema.make_features(source.class_names, source.channels, has_mask,
                                  dtype=pixels.dtype)
  manifest, shapes = [], set()
  shard_lengths: dict[str, list[int]] = {}
  num_bytes: dict[str, int] = {}
  writer, current = None, None
  try:
    for row, loaded in zip(order.to_dict("records"), results):
      split, shard, count = row["split"], int(row["shard"]), int(row["num_shards"])
      if (split, shard) != current:
        if writer is not None:
          writer.close()
        file_name = shard_file_name(source.name, split, shard, count)
        writer = tf.io.TFRecordWriter(str(staging / file_name))
        current = (split, shard)
        shard_lengths.setdefault(split, [0] * count)
        num_bytes.setdefault(split, 0)
      try:
        record, entry = plan.make_record(row, loaded, features=features,
                                         pixels=pixels, has_mask=has_mask,
                                         data_dir=prepared.data_dir)
      except InputError as error:
        if prepared.config.on_error == "fail":
          raise
        prepared.rejects.add(error)
        continue
      writer.write(record)
      manifest.append(dict(entry, shard=file_name,
                           index=shard_lengths[split][shard]))
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


def _write_through_local(prepared: plan.Prepared, pixels) -> metadata.WriteSummary:
  """A records folder at a tf.io.gfile URL (gs://, hdfs://, ram://): built whole
  in a local scratch folder (the parallel loaders need a local disk), then
  published by `atomic.publish_dir` (copied file by file, `metadata.PUBLISH_LAST`
  last): not atomic, see docs/CLUSTER.md."""
  url = prepared.output_dir.rstrip("/")
  plan.check_output(url, prepared.config.overwrite)
  scratch = storage.local_staging(prefix="hep2tf-records-")
  try:
    local = dataclasses.replace(prepared.config, overwrite=False, output_dir=(
        os.path.join(scratch, url.rsplit("/", 1)[-1])))
    summary = write_records(dataclasses.replace(prepared, config=local), pixels)
    atomic.publish_dir(summary.output_dir, url, last=metadata.PUBLISH_LAST)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  return dataclasses.replace(summary, output_dir=url)
