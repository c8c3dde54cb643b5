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

Each image is loaded, checked and serialised as its record in a worker process
(`plan.RecordMaker`: `images.py`, then `plan.make_record`), so the parent only writes
bytes, in the order of `plan.shard_plan`: the same seed gives the same bytes whatever
the number of workers (and the Beam pipeline writes the same records). Where the
time went, per stage, is in the summary (`stages.Stages`). Everything is written into a
hidden sibling folder and renamed into place at the end: a crash or a bad input leaves
either no dataset or the previous complete one. The metadata files are written by
`metadata.py`, images loaded by `loading.py`; `Records.verify` reads one back.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import os
import pathlib
import shutil

import pandas as pd
import tensorflow as tf
import tqdm

from hep2tf import atomic, errors, storage
from hep2tf.convert import loading, metadata, plan, samples, stages
from hep2tf.data import intensity
from hep2tf.data.records import shard_file_name
from hep2tf.errors import InputError

# The per-image stages (`stages.Stages`; where they run depends on num_workers).
LOAD, ENCODE = "load: read, hash, decode, check", "encode: tf.train.Example"
WRITE = "parent: write shards"


def write_records(prepared: plan.Prepared,
                  pixels: intensity.PixelSpec | None = None,
                  timing: stages.Stages | None = None) -> metadata.WriteSummary:
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
  `timing`: a `stages.Stages` to add this write's stages to (the summary's
  `stages` holds them either way).

  Returns:
    A metadata.WriteSummary. Raises InputError for bad input or an existing
    output_dir, errors.NoSpaceError (naming output_dir) when the disk fills up.
  """
  if not storage.is_local(prepared.output_dir):
    return _write_through_local(prepared, pixels, timing)
  has_mask = plan.check_inputs(prepared)
  output_dir = pathlib.Path(prepared.output_dir).absolute()
  atomic.clean_stale(output_dir)
  try:
    return _write_staged(prepared, output_dir, has_mask, pixels,
                         timing or stages.Stages())
  except Exception as e:
    if errors.is_no_space(e):   # the staged folder is gone: say so in one line
      raise errors.no_space(e, output_dir) from None
    raise


def _write_staged(prepared: plan.Prepared, output_dir: pathlib.Path, has_mask: bool,
                  pixels: intensity.PixelSpec | None,
                  timing: stages.Stages) -> metadata.WriteSummary:
  """The records folder built in a hidden sibling and renamed into place."""
  config, source = prepared.config, prepared.source
  name, class_names = source.name, list(source.class_names)
  rejects, data_dir = prepared.rejects, prepared.data_dir
  with atomic.staged_dir(output_dir) as staging:
    with timing.timed("shard plan"):
      order = plan.shard_plan(prepared.examples, config.seed, config.num_shards)
      rows = order.to_dict("records")
    children = stages.children_cpu()
    with timing.timed("pre-scan"):
      pixels = pixels or plan.prescan(prepared, order)
    timing.add("pre-scan", stages.children_cpu() - children)   # its workers
    children = stages.children_cpu()
    maker = plan.RecordMaker(tuple(class_names), source.channels, has_mask,
                             plan.load_options(prepared, pixels), data_dir)
    made = loading.in_order(maker, rows, config.workers)
    cells = _SampleCells(prepared, rows, pixels, has_mask)
    try:
      results = tqdm.tqdm(made, total=len(rows), unit="img",
                          desc=f"writing {name}", disable=not config.progress)
      manifest, shard_lengths, num_bytes, shapes = _write_shards(
          staging, prepared, rows, results, timing, cells)
    finally:
      made.close()   # stops the worker pool now, also after an error
      cells.close()
    _add_pool_time(timing, config.workers, stages.children_cpu() - children)
    image_shape = list(shapes.pop()) if len(shapes) == 1 else None
    with timing.timed("metadata"):
      summary = metadata.summarise(output_dir, name, class_names, manifest,
                                   shard_lengths, num_bytes, image_shape,
                                   len(rejects), pixels)
      summary.split_notes = list(prepared.split_notes)
      metadata.write_tfds_metadata(staging, source, summary, shard_lengths,
                                   has_mask, image_shape)
      metadata.write_tables(staging, source, summary, manifest, has_mask,
                            config.balance, config.augment_copies, config.seed,
                            config.dataset, data_dir, rejects)
    with timing.timed("samples.png"):
      samples.save_samples(str(staging), cells.png(summary.pixels))
  summary.stages = timing
  return summary


def _add_pool_time(timing: stages.Stages, workers: int, children_cpu: float) -> None:
  """The load and encode stages ran in the parent (one worker: taken out of its
  write stage) or in the pool (whose other CPU is start-up, pickling, waiting)."""
  worker_cpu = sum(timing.seconds.get(s, [0.0])[0] for s in (LOAD, ENCODE))
  if workers <= 1:
    timing.seconds[WRITE][0] -= worker_cpu
  else:
    timing.add("pool: start-up, pickling", max(0.0, children_cpu - worker_cpu))


# ---------------------------------------------------------------------------
# Writing.


class _SampleCells:
  """samples.png's cells picked as the records are written (`samples.CellPicker`),
  so the shards are not read back for them. With a worker pool the parent mostly
  waits, so it draws the picture in a thread as soon as every split is settled: it
  has its cells, or its last row has been written (a split with fewer cells of a
  class than the picture holds gets no more). For 8-bit records only: a 16-bit
  dataset's white level is known only at the end."""

  def __init__(self, prepared: plan.Prepared, rows: list[dict],
               pixels: intensity.PixelSpec, has_mask: bool):
    source = prepared.source
    self._label_ids = {c: i for i, c in enumerate(source.class_names)}
    self._picker = samples.CellPicker(list(dict.fromkeys(r["split"] for r in rows)),
                                      len(source.class_names))
    self._draw = functools.partial(samples.draw_samples, source.name,
                                   list(source.class_names), picker=self._picker,
                                   channels=source.channels, has_mask=has_mask)
    self._early = prepared.config.workers > 1 and pixels.dtype == "uint8"
    self._pixels, self._thread, self._future = pixels, None, None
    self._last_row = {r["split"]: i for i, r in enumerate(rows)}

  def offer(self, index: int, split: str, label: str, record: bytes) -> None:
    """Row `index` of the write order was written as `record`."""
    if self._future is not None:
      return
    self._picker.offer(split, self._label_ids[label], record)
    if self._early and all(self._picker.split_complete(s) or index >= last
                           for s, last in self._last_row.items()):
      self._thread = concurrent.futures.ThreadPoolExecutor(1)
      self._future = self._thread.submit(self._draw, self._pixels)

  def png(self, pixels: intensity.PixelSpec) -> bytes:
    """The picture's bytes (drawn now unless drawn early with these pixels)."""
    if self._future is not None and pixels == self._pixels:
      return self._future.result()
    return self._draw(pixels)

  def close(self) -> None:
    if self._thread is not None:
      self._thread.shutdown(wait=True)


def _write_shards(staging, prepared, rows, results, timing: stages.Stages,
                  cells: _SampleCells):
  """Writes every record `plan.RecordMaker` made; returns manifest rows and shard
  facts. A bad input stops the run or is skipped into `prepared.rejects`."""
  name = prepared.source.name
  manifest, shapes = [], set()
  shard_lengths: dict[str, list[int]] = {}
  num_bytes: dict[str, int] = {}
  writer, current = None, None
  load_cpu = encode_cpu = 0.0
  try:
    with timing.timed(WRITE):
      for index, (row, made) in enumerate(zip(rows, results)):
        split, shard, count = row["split"], int(row["shard"]), int(row["num_shards"])
        if (split, shard) != current:
          if writer is not None:
            writer.close()
          file_name = shard_file_name(name, split, shard, count)
          writer = tf.io.TFRecordWriter(str(staging / file_name))
          current = (split, shard)
          shard_lengths.setdefault(split, [0] * count)
          num_bytes.setdefault(split, 0)
        load_cpu += made.seconds[0]
        encode_cpu += made.seconds[1]
        if made.record is None:
          error = InputError(made.manifest["reason"], file=made.manifest["file"])
          if prepared.config.on_error == "fail":
            raise error
          prepared.rejects.add(error)
          continue
        writer.write(made.record)
        cells.offer(index, split, row["label"], made.record)
        manifest.append(dict(made.manifest, shard=file_name,
                             index=shard_lengths[split][shard]))
        shard_lengths[split][shard] += 1
        # TFRecord framing: 8-byte length, two 4-byte CRCs around the payload.
        num_bytes[split] += len(made.record) + 16
        shapes.add(made.shape)
  finally:
    if writer is not None:
      writer.close()
    timing.add(LOAD, load_cpu)
    timing.add(ENCODE, encode_cpu)
  if not manifest:
    raise InputError("every image was rejected; nothing to write")
  return pd.DataFrame(manifest), shard_lengths, num_bytes, shapes


def _write_through_local(prepared: plan.Prepared, pixels,
                         timing: stages.Stages | None) -> metadata.WriteSummary:
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
    summary = write_records(dataclasses.replace(prepared, config=local), pixels,
                            timing)
    atomic.publish_dir(summary.output_dir, url, last=metadata.PUBLISH_LAST)
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  return dataclasses.replace(summary, output_dir=url)
