"""Reader: images/s of the training input pipeline against two baselines.

  ours          reader.create_split(train, training=True) as the trainer calls
                it: interleave, parse, decode, [cache], shuffle, batch, one-hot,
                prefetch
  decode-only   the same shards read, parsed and decoded in parallel and batched, no
                shuffle: the most a reader of these records can deliver (the limit)
  from PNGs     keras.utils.image_dataset_from_directory over the same images as PNG
                files (shuffled, batched, prefetched), as the keras-io recipe reads
  streaming     ours with cache=False: decoded every epoch (a split over the cache
                budget, or the first pass of any)

ours is the trainer's default, cache="auto": a split whose decoded size fits
reader.CACHE_BUDGET_BYTES is decoded once and kept in memory. Streaming,
ours and the PNG reader spend their time decoding the same 78x78 PNG bytes.

Each pipeline runs one warm-up epoch (file cache, autotuning), then `passes` timed
epochs; the fastest counts.
"""

from __future__ import annotations

import os
import time

import keras
import tensorflow as tf

from benchmarks import common
from benchmarks import data
from hep2tf.data import reader, schema


def epoch_rate(make_dataset, passes: int) -> float:
  """Images/s of the fastest timed epoch of `make_dataset()` (after one warm-up)."""
  dataset = make_dataset()
  best = 0.0
  for index in range(1 + max(1, passes)):
    start, count = time.perf_counter(), 0
    for images, _ in dataset:
      count += int(images.shape[0])
    if index:
      best = max(best, common.rate(count, time.perf_counter() - start))
  return best


def ours(inputs: data.Inputs, batch_size: int,
         cache: bool | str = "auto") -> tf.data.Dataset:
  """The training split as the trainer reads it by default (cache="auto")."""
  return reader.create_split(inputs.records, inputs.train_split,
                             batch_size=batch_size, training=True, cache=cache,
                             seed=0).dataset


def decode_only(inputs: data.Inputs, batch_size: int) -> tf.data.Dataset:
  info = inputs.records.info
  files = inputs.records.shards(inputs.train_split)
  records = tf.data.Dataset.from_tensor_slices(files).interleave(
      tf.data.TFRecordDataset, cycle_length=len(files),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)

  def decode(serialized):
    example = schema.parse_example(serialized, info.channels)
    return example[schema.IMAGE], example[schema.LABEL]

  return records.map(decode, num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=False).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def from_pngs(inputs: data.Inputs, batch_size: int, split: str | None = None,
              seed: int | None = None) -> tf.data.Dataset:
  """image_dataset_from_directory over png_dir/<split>, as the keras-io recipe uses
  it."""
  dataset = keras.utils.image_dataset_from_directory(
      os.path.join(inputs.png_dir, split or inputs.train_split),
      labels="inferred", label_mode="categorical",
      class_names=list(inputs.class_names), color_mode="grayscale",
      image_size=(data.IMAGE_SIZE, data.IMAGE_SIZE), batch_size=batch_size,
      shuffle=True, seed=seed, verbose=False)
  return dataset.prefetch(tf.data.AUTOTUNE)


def run(inputs: data.Inputs, *, batch_size: int = 64,
        passes: int = 2) -> list[common.Figure]:
  """The reader figures over the train split of `inputs`."""
  rate_default = epoch_rate(lambda: ours(inputs, batch_size), passes)
  rate_stream = epoch_rate(lambda: ours(inputs, batch_size, cache=False), passes)
  rate_limit = epoch_rate(lambda: decode_only(inputs, batch_size), passes)
  rate_pngs = epoch_rate(lambda: from_pngs(inputs, batch_size), passes)
  cached = reader.resolve_cache(inputs.records, inputs.train_split, None, False,
                                reader.CACHE_BUDGET_BYTES)
  note = f"train split, batch {batch_size}, best of {passes} epochs after a warm-up"
  return [
      common.Figure("reader streaming (cache off) vs decode-only", "images/s",
                    rate_stream, rate_limit, target=">= 0.8",
                    baseline_name="parse + decode + batch only", note=note +
                    "; create_split(cache=False): decodes every epoch, as a split "
                    "over the cache budget does, and as the first pass does"),
      common.Figure("reader as the trainer uses it vs image_dataset_from_directory",
                    "images/s", rate_default, rate_pngs, target=">= 2",
                    baseline_name="image_dataset_from_directory over the PNGs",
                    note=note + "; create_split(cache='auto'): this split "
                    + ("fits the cache budget, so epochs after the first read memory"
                       if cached else "is over the cache budget and streams")),
  ]
