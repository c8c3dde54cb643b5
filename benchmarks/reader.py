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

Ours and the PNG reader: each pipeline runs one warm-up epoch (file cache,
autotuning), then `passes` timed epochs; the fastest counts.

Streaming vs decode-only is read as the trainer reads (`repeat=True`, endless, one
iterator): a fresh iterator of each side runs `warmup` untimed batches (thread
start-up, autotuning, the shuffle buffer's first fill), then `batches` timed ones,
and is dropped before the other side starts, so only one pipeline runs at a time;
the sides alternate `repeats` times. The figure is the ratio of the medians; the
per-round ratios' min / quartiles / max, and the CPU seconds per image of each side
(process CPU over the window: robust to other load), are in the note and printed.

  python -m benchmarks.reader --num_images=600 --repeats=7
"""

from __future__ import annotations

import os
import statistics
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


def ours(inputs: data.Inputs, batch_size: int, cache: bool | str = "auto",
         repeat: bool = False) -> tf.data.Dataset:
  """The training split as the trainer reads it by default (cache="auto")."""
  return reader.create_split(inputs.records, inputs.train_split,
                             batch_size=batch_size, training=True, cache=cache,
                             seed=0, repeat=repeat).dataset


def decode_only(inputs: data.Inputs, batch_size: int,
                repeat: bool = False) -> tf.data.Dataset:
  info = inputs.records.info
  files = inputs.records.shards(inputs.train_split)
  records = tf.data.Dataset.from_tensor_slices(files).interleave(
      tf.data.TFRecordDataset, cycle_length=len(files),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)

  def decode(serialized):
    example = schema.parse_example(serialized, info.channels)
    return example[schema.IMAGE], example[schema.LABEL]

  examples = records.map(decode, num_parallel_calls=tf.data.AUTOTUNE,
                         deterministic=False)
  if repeat:
    examples = examples.repeat()
  return examples.batch(batch_size).prefetch(tf.data.AUTOTUNE)


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


def stream_window(make_dataset, batches: int, warmup: int) -> tuple[float, float]:
  """(images/s, CPU microseconds per image) of `batches` batches of a fresh iterator
  of `make_dataset()`, after `warmup` untimed ones; the iterator is dropped after."""
  iterator = iter(make_dataset())
  for _ in range(warmup):
    next(iterator)
  wall, cpu, count = time.perf_counter(), time.process_time(), 0
  for _ in range(batches):
    count += int(next(iterator)[0].shape[0])
  wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
  del iterator
  return common.rate(count, wall), 1e6 * cpu / max(count, 1)


def compare_streams(sides: dict, repeats: int, batches: int,
                    warmup: int) -> dict[str, list[tuple[float, float]]]:
  """{side: [(images/s, CPU us per image)] per round}, the sides alternating."""
  results = {name: [] for name in sides}
  for _ in range(max(1, repeats)):
    for name, make in sides.items():
      results[name].append(stream_window(make, batches, warmup))
  return results


def spread(values: list[float]) -> str:
  """min / lower quartile / median / upper quartile / max, as text."""
  values = sorted(values)
  if len(values) < 2:
    return f"{values[0]:.2f}"
  q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
  return (f"min {values[0]:.2f} q1 {q1:.2f} median {q2:.2f} q3 {q3:.2f} "
          f"max {values[-1]:.2f}")


def streaming_figure(inputs: data.Inputs, batch_size: int, repeats: int,
                     batches: int, warmup: int) -> common.Figure:
  """Streaming (cache off, endless, as trained) vs decode-only: median of `repeats`
  interleaved rounds."""
  results = compare_streams(
      {"streaming": lambda: ours(inputs, batch_size, cache=False, repeat=True),
       "decode-only": lambda: decode_only(inputs, batch_size, repeat=True)},
      repeats, batches, warmup)
  rates = {name: [rate for rate, _ in rounds] for name, rounds in results.items()}
  cpu = {name: statistics.median(c for _, c in rounds)
         for name, rounds in results.items()}
  ratios = [a / b for a, b in zip(rates["streaming"], rates["decode-only"])]
  cpu_ratio = cpu["decode-only"] / cpu["streaming"]
  detail = (f"median of {len(ratios)} interleaved rounds of {batches} batches after "
            f"{warmup} warm-up batches; per-round ratio {spread(ratios)}; CPU us per "
            f"image streaming {cpu['streaming']:.0f}, decode-only "
            f"{cpu['decode-only']:.0f} (ratio {cpu_ratio:.2f})")
  print(f"reader streaming vs decode-only: {detail}", flush=True)
  return common.Figure(
      "reader streaming (cache off) vs decode-only", "images/s",
      statistics.median(rates["streaming"]), statistics.median(rates["decode-only"]),
      target=">= 0.85", baseline_name="parse + decode + batch only",
      note=f"train split, batch {batch_size}, as trained (repeat=True); {detail}; "
           "create_split(cache=False): decodes every epoch, as a split over the cache "
           "budget does, and as the first pass does")


def run(inputs: data.Inputs, *, batch_size: int = 64, passes: int = 2,
        repeats: int = 5, batches: int = 40) -> list[common.Figure]:
  """The reader figures over the train split of `inputs`."""
  streaming = streaming_figure(inputs, batch_size, repeats, batches,
                               warmup=max(10, batches // 4))
  rate_default = epoch_rate(lambda: ours(inputs, batch_size), passes)
  rate_pngs = epoch_rate(lambda: from_pngs(inputs, batch_size), passes)
  cached = reader.resolve_cache(inputs.records, inputs.train_split, None, False,
                                reader.CACHE_BUDGET_BYTES)
  note = f"train split, batch {batch_size}, best of {passes} epochs after a warm-up"
  return [
      streaming,
      common.Figure("reader as the trainer uses it vs image_dataset_from_directory",
                    "images/s", rate_default, rate_pngs, target=">= 2",
                    baseline_name="image_dataset_from_directory over the PNGs",
                    note=note + "; create_split(cache='auto'): this split "
                    + ("fits the cache budget, so epochs after the first read memory"
                       if cached else "is over the cache budget and streams")),
  ]


def main(argv) -> None:
  """python -m benchmarks.reader: the streaming figure alone, on a synthetic set."""
  del argv
  from absl import flags
  options = flags.FLAGS
  inputs = data.prepare(options.work_dir, options.num_images)
  figure = streaming_figure(inputs, options.batch_size, options.repeats,
                            options.batches, warmup=max(10, options.batches // 4))
  print(f"{figure.name}: {figure.ratio:.2f} ({figure.value:.0f} vs "
        f"{figure.baseline:.0f} images/s); {common.usable_cores()} cores, "
        f"{common.cpu_model()}")


if __name__ == "__main__":
  from absl import app, flags
  flags.DEFINE_integer("num_images", 600, "Synthetic cells.")
  flags.DEFINE_integer("repeats", 7, "Interleaved rounds of each side.")
  flags.DEFINE_integer("batches", 40, "Timed batches per round.")
  flags.DEFINE_integer("batch_size", 64, "Examples per batch.")
  flags.DEFINE_string("work_dir", os.path.join(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))), "benchmarks", "work"), "Scratch folder.")
  app.run(main)
