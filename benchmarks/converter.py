"""Converter: images/s of create_records with 1 and 2 workers, and its peak memory.

The baseline is what a user would write without hep2tf: one loop that reads each
image and mask file and writes a `tf.train.Example` with `tf.io.TFRecordWriter` into
one file, with the same features and no checks, shuffling, sharding or metadata.
Our converter is timed end to end (read the layout, hash, split, decode and check
every image, write shards, manifest and TFDS metadata), in this process.

Peak memory is the maximum resident set of the converter run as a command in a child
process (`resource.getrusage(RUSAGE_CHILDREN)`, measured by a wrapper process so
that each size starts from zero), at two dataset sizes: it must not grow with the
dataset, because images stream from the workers to the shard writer.
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
import subprocess
import sys

import tensorflow as tf

from benchmarks import common
from benchmarks import data
from hep2tf.data import synth

# Runs argv[1:] as a child and prints that child's peak RSS in KiB (Linux units).
_PEAK_RSS_PROBE = (
    "import resource, subprocess, sys\n"
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL,\n"
    "               stderr=subprocess.DEVNULL)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")


def _bytes_feature(value: bytes) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int_feature(value: int) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def plain_loop(source_dir: str, output_path: str) -> int:
  """The baseline: a single-threaded read-and-write loop; returns examples written."""
  class_ids = {name: i for i, name in enumerate(synth.CLASS_NAMES)}
  with open(os.path.join(source_dir, synth.CSV_NAME), newline="") as f:
    rows = list(csv.DictReader(f))
  with tf.io.TFRecordWriter(output_path) as writer:
    for row in rows:
      stem = f"{int(row['Image ID']):05d}"
      with open(os.path.join(source_dir, f"{stem}.png"), "rb") as f:
        image = f.read()
      with open(os.path.join(source_dir, f"{stem}_Mask.png"), "rb") as f:
        mask = f.read()
      example = tf.train.Example(features=tf.train.Features(feature={
          "image": _bytes_feature(image), "mask": _bytes_feature(mask),
          "label": _int_feature(class_ids[row["Image class"]]),
          "id": _bytes_feature(stem.encode()),
          "file_name": _bytes_feature(f"{stem}.png".encode()),
          "sha256": _bytes_feature(hashlib.sha256(image).hexdigest().encode()),
          "intensity": _bytes_feature(row["Intensity"].encode()),
          "group": _bytes_feature(row["Specimen"].encode()),
          "dihedral": _int_feature(0)}))
      writer.write(example.SerializeToString())
  return len(rows)


def best_rate(fn, count: int, repeats: int) -> float:
  """Images/s of the fastest of `repeats` calls (the least disturbed by other load)."""
  return max(common.rate(count, common.timed(fn)[0]) for _ in range(max(1, repeats)))


def peak_rss_mib(source_dir: str, output_dir: str, num_workers: int = 1) -> float:
  """Peak RSS (MiB) of `python -m hep2tf.create_records` converting source_dir."""
  command = [sys.executable, "-m", "hep2tf.create_records", "--dataset=icpr2014",
             f"--data_dir={source_dir}", f"--output_dir={output_dir}",
             f"--name={data.NAME}", "--overwrite", f"--num_workers={num_workers}"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  out = subprocess.run([sys.executable, "-c", _PEAK_RSS_PROBE] + command,
                       check=True, capture_output=True, text=True, env=env)
  return int(out.stdout.split()[-1]) / 1024


def run(inputs: data.Inputs, work_dir: str, *, repeats: int = 1,
        memory_sizes: tuple[int, int] | None = None) -> list[common.Figure]:
  """The converter figures on `inputs.source_dir` (all of its images).

  memory_sizes: (small, large) image counts for the peak-memory figure; default
  (a quarter of the set, all of it).
  """
  count = inputs.num_images
  out_dir = os.path.join(work_dir, "convert_out")
  os.makedirs(out_dir, exist_ok=True)

  def ours(workers):
    return lambda: data.make_records(inputs.source_dir,
                                     os.path.join(out_dir, "records"),
                                     num_workers=workers)

  plain = best_rate(lambda: plain_loop(inputs.source_dir,
                                       os.path.join(out_dir, "plain.tfrecord")),
                    count, repeats)
  one = best_rate(ours(1), count, repeats)
  two = best_rate(ours(2), count, repeats)
  figures = [
      common.Figure("converter, 1 worker", "images/s", one, plain,
                    baseline_name="plain TFRecordWriter loop",
                    note=f"{count} images, end to end (hash, split, decode-check, "
                         "shard, metadata) against an unchecked single-file loop"),
      common.Figure("converter, 2 workers vs 1", "images/s", two, one,
                    target=">= 1.6", baseline_name="converter, 1 worker",
                    note=f"{count} images; {common.usable_cores()} cores"),
  ]
  small, large = memory_sizes or (max(1, count // 4), count)
  subset = data.subset_source(inputs.source_dir, os.path.join(out_dir, "subset"), small)
  peak_small = peak_rss_mib(subset, os.path.join(out_dir, "mem_small"))
  peak_large = peak_rss_mib(
      inputs.source_dir if large == count else data.subset_source(
          inputs.source_dir, os.path.join(out_dir, "subset_large"), large),
      os.path.join(out_dir, "mem_large"))
  figures.append(common.Figure(
      f"converter peak RSS, {large} vs {small} images", "MiB", peak_large,
      peak_small, target="<= 1.2", baseline_name=f"peak RSS at {small} images",
      note="max resident set of the create_records process, 1 worker"))
  shutil.rmtree(out_dir, ignore_errors=True)
  return figures
