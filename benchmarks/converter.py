"""Converter: images/s of create_records with 1 and 2 workers, and its peak memory.

The baseline is what a user would write without hep2tf: one loop that reads each
image and mask file and writes a `tf.train.Example` with `tf.io.TFRecordWriter` into
one file, with the same features and no checks, shuffling, sharding or metadata.
Our converter is timed end to end (read the layout, hash, split, decode and check
every image, write shards, manifest and TFDS metadata), in this process.

1 and 2 workers run alternately (1, 2, 1, 2, ...) after a warm-up of each, so that
both see the same load; the wall-clock ratio compares the fastest run of each. On
a machine whose cores are busy with other work that ratio says little, so the CPU
seconds of every stage are printed too (`hep2tf.convert.stages`: the parent's per
stage, the workers' per image), with the 2-worker wall time they imply on an idle
machine of this many cores (the parent's serial stages, plus the write phase at the
most of: the parent's writing, the workers' share, all of it over the cores).

  python -m benchmarks.converter --num_images=600 --repeats=5
  python -m benchmarks.converter --num_images=6000 --repeats=3

Peak memory is the maximum resident set of the converter run as a command in a child
process (`resource.getrusage(RUSAGE_CHILDREN)`, measured by a wrapper process so
that each size starts from zero), at two dataset sizes: it must not grow with the
dataset, because images stream from the workers to the shard writer.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import time

import tensorflow as tf

from benchmarks import common
from benchmarks import data
from hep2tf.convert import writer
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


@dataclasses.dataclass(frozen=True)
class Conversion:
  """One timed create_records run: wall seconds and CPU / wall seconds per stage."""
  workers: int
  wall: float
  stages: dict[str, list[float]]

  @property
  def cpu(self) -> float:
    return sum(cpu for cpu, _ in self.stages.values())


# Stages that run in the worker pool with more than one worker (else in the parent).
POOL_STAGES = (writer.LOAD, writer.ENCODE, "pool: start-up, pickling")


def projected_wall(run: Conversion, cores: int) -> float:
  """The wall seconds `run`'s CPU seconds imply on `cores` idle cores: the parent's
  stages one after the other, the pre-scan spread over the workers, and the write
  phase (parent writing while the pool loads and encodes) at the most of the
  parent's writing, the pool's CPU over its workers and all of it over the cores."""
  if run.workers <= 1:
    return run.cpu
  pool = sum(run.stages.get(s, [0.0])[0] for s in POOL_STAGES)
  write = run.stages.get(writer.WRITE, [0.0])[0]
  prescan = run.stages.get("pre-scan", [0.0])[0]
  serial = run.cpu - pool - write - prescan
  phase = max(write, pool / run.workers, (pool + write) / max(1, cores))
  return serial + prescan / min(run.workers, cores) + phase


def time_conversions(source_dir: str, out_dir: str, repeats: int,
                     workers: tuple[int, ...] = (1, 2)) -> dict[int, list[Conversion]]:
  """{workers: runs}: each count once untimed (file cache, imports), then `repeats`
  rounds that run every count in turn, so that all see the same load."""
  output = os.path.join(out_dir, "records")
  for count in workers:
    data.convert(source_dir, output, num_workers=count)
  runs = {count: [] for count in workers}
  for _ in range(max(1, repeats)):
    for count in workers:
      start = time.perf_counter()
      summary = data.convert(source_dir, output, num_workers=count)
      runs[count].append(Conversion(count, time.perf_counter() - start,
                                    dict(summary.stages.seconds)))
  return runs


def median_run(runs: list[Conversion]) -> Conversion:
  return sorted(runs, key=lambda r: r.wall)[(len(runs) - 1) // 2]


def format_stages(runs: dict[int, list[Conversion]], count: int) -> str:
  """The CPU seconds (and share) per stage of each worker count's median run."""
  chosen = {n: median_run(r) for n, r in runs.items()}
  names = list(dict.fromkeys(name for run in chosen.values() for name in run.stages))
  width = max(len(n) for n in names + ["total CPU (wall)"]) + 2
  lines = [f"converter CPU seconds by stage, {count} images, median run "
           f"(load average {os.getloadavg()[0]:.1f}):",
           "  " + "stage".ljust(width) + "".join(
               f"{f'{n} worker' + ('s' if n > 1 else ''):>18}" for n in chosen)]
  for name in names:
    cells = ""
    for run in chosen.values():
      cpu = run.stages.get(name, [0.0])[0]
      cells += f"{cpu:>10.2f} s ({cpu / run.cpu:>3.0%})"
    lines.append("  " + name.ljust(width) + cells)
  lines.append("  " + "total CPU (wall)".ljust(width) + "".join(
      f"{run.cpu:>9.2f} s ({run.wall:.1f})" for run in chosen.values()))
  for n, rs in runs.items():
    walls = sorted(r.wall for r in rs)
    lines.append(f"  {n} worker(s), wall s of {len(walls)} runs: min {walls[0]:.2f} "
                 f"median {statistics.median(walls):.2f} max {walls[-1]:.2f}")
  return "\n".join(lines)


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

  plain = best_rate(lambda: plain_loop(inputs.source_dir,
                                       os.path.join(out_dir, "plain.tfrecord")),
                    count, repeats)
  runs = time_conversions(inputs.source_dir, out_dir, repeats)
  print(format_stages(runs, count), flush=True)
  one, two = (common.rate(count, min(r.wall for r in runs[n])) for n in (1, 2))
  cores = common.usable_cores()
  one_cpu = median_run(runs[1]).cpu
  implied = projected_wall(median_run(runs[2]), min(cores, 2))
  figures = [
      common.Figure("converter, 1 worker", "images/s", one, plain,
                    baseline_name="plain TFRecordWriter loop",
                    note=f"{count} images, end to end (hash, split, decode-check, "
                         "shard, metadata) against an unchecked single-file loop"),
      common.Figure("converter, 2 workers vs 1", "images/s", two, one,
                    target=">= 1.6", baseline_name="converter, 1 worker",
                    note=f"{count} images; {cores} cores; fastest of {repeats} "
                         "alternating runs each; wall clock, so other load on the "
                         "machine lowers it"),
      common.Figure("converter, 2 workers vs 1, from CPU seconds", "s",
                    one_cpu, implied,
                    target=">= 1.6", baseline_name="2 workers' implied idle wall",
                    note="value: 1 worker's CPU seconds (its wall on an idle core); "
                         "baseline: the wall the 2-worker run's per-stage CPU "
                         "seconds imply on 2 idle cores (benchmarks.converter."
                         "projected_wall); robust to load, an estimate"),
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


def ratios(runs: dict[int, list[Conversion]], cores: int) -> str:
  """The 2-vs-1 ratios of `runs`: wall (fastest and median) and from CPU seconds."""
  fastest = min(r.wall for r in runs[1]) / min(r.wall for r in runs[2])
  median = median_run(runs[1]).wall / median_run(runs[2]).wall
  implied = median_run(runs[1]).cpu / projected_wall(median_run(runs[2]), cores)
  return (f"2 workers vs 1: wall {fastest:.2f} (fastest runs), {median:.2f} (median "
          f"runs); from CPU seconds on {cores} idle cores {implied:.2f}")


def main(argv) -> None:
  """python -m benchmarks.converter: the scaling figures alone, on a synthetic set."""
  del argv
  from absl import flags
  options = flags.FLAGS
  work_dir = options.work_dir
  source = data.draw_source(work_dir, options.num_images)
  out_dir = os.path.join(work_dir, "convert_out")
  runs = time_conversions(source, out_dir, options.repeats)
  print(format_stages(runs, options.num_images))
  print(ratios(runs, min(common.usable_cores(), 2)))
  print(f"{common.usable_cores()} cores, {common.cpu_model()}")
  shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
  from absl import app, flags
  flags.DEFINE_integer("num_images", 600, "Synthetic cells to convert.")
  flags.DEFINE_integer("repeats", 5, "Timed rounds (1 and 2 workers each).")
  flags.DEFINE_string("work_dir", os.path.join(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))), "benchmarks", "work"), "Scratch folder.")
  app.run(main)
