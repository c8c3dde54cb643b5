"""Record conversion as an Apache Beam pipeline (the library of
`python -m hep2tf.beam_pipeline`).

The same conversion as `hep2tf.convert.create`, for sets too big for one machine.
`convert_records(config)` makes the same plan on the launcher (`plan.prepare_examples`
and `plan.shard_plan`: small tables, the same functions and seed as the local
converter); the pipeline loads the images on the runner's workers, makes each record
with `plan.make_record` as `writer.py` does, and writes each shard in one piece; the
launcher then writes the same metadata as `writer.py` and publishes the folder with
the same `atomic.publish_dir`. Each record gets its shard and position on the
launcher exactly as `writer.py` assigns them, so the shards hold the same records in
the same order as the local converter's, whatever the runner.
(Byte-identical too once `schema.encode_example` serialises deterministically:
protobuf's map order now varies between processes, for the local converter as well.)

The source images must be readable at the same paths on the launcher and on every
worker (a shared filesystem); the output may be a local path or any filesystem
`tf.io.gfile` writes (gs://, hdfs://), published atomically only on a local path.
Install with `pip install -e .[beam]` (`.[dask]` for the DaskRunner).

Pipeline: plan chunk files -> Create -> read each chunk -> Reshuffle -> load+encode
(images.load_image, plan.make_record) -> GroupByKey(split, shard) -> write shard
(sorted by position) -> one JSON of shard facts per shard, read back by the
launcher. Only transforms Beam's DaskRunner translates (Create, ParDo, GroupByKey;
Reshuffle is an identity there): ReadFromText is not, hence the chunk files.
`runners.py` runs it (on the DaskRunner against a dask.distributed cluster).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import posixpath
import secrets
import tempfile
from typing import Iterator, Sequence

import apache_beam as beam
import pandas as pd
import tensorflow as tf

from hep2tf import atomic, errors, storage
from hep2tf.convert import loading, metadata, plan, runners, samples
from hep2tf.data import schema, sources
from hep2tf.data.records import shard_file_name

DIRECT = runners.DIRECT
WORK_DIR = "_beam"          # inside staging: the plan and the per-shard facts
PLAN_DIR = "plan"           # plan-<token>/: the plan in chunks of <= CHUNK_ROWS rows
PARTS_DIR = "parts"
# The plan is cut into about PLAN_CHUNKS chunks: a chunk is the unit a runner hands
# one worker (on Dask, one task), so a small set still reaches every worker.
PLAN_CHUNKS = 64
CHUNK_ROWS = 256


def plan_records(examples: pd.DataFrame, seed: int = 0,
                 num_shards: int | None = None) -> pd.DataFrame:
  """The local writer's plan (split, shard, num_shards) plus each record's `position`.

  `position` is the record's place in the local writer's write order; sorting a
  shard's records by it gives the local writer's shard content.
  """
  order = plan.shard_plan(examples, seed, num_shards)
  return order.assign(position=range(len(order)))


def write_plan(order: pd.DataFrame, folder: str) -> list[str]:
  """Writes the plan as JSON-lines chunk files in `folder`; returns their paths."""
  rows = max(1, min(CHUNK_ROWS, math.ceil(len(order) / PLAN_CHUNKS)))
  storage.makedirs(folder)
  paths = []
  for start in range(0, len(order), rows):
    paths.append(_join(folder, f"plan-{start // rows:05d}.jsonl"))
    with tf.io.gfile.GFile(paths[-1], "w") as f:
      f.write(order.iloc[start:start + rows].to_json(orient="records", lines=True))
  return paths


# ---------------------------------------------------------------------------
# Workers: read a chunk of the plan; load and encode one image; write one shard.


def read_chunk(path: str) -> Iterator[dict]:
  """The plan rows of one chunk file."""
  with tf.io.gfile.GFile(path) as f:
    for line in f:
      if line.strip():
        yield json.loads(line)


class LoadAndEncode(beam.DoFn):
  """Plan row -> ((split, shard), (position, record or None, facts)).

  A bad image is not raised here (a worker's exception reaches the launcher wrapped
  and retried); it travels as (reason, file) so the launcher can fail or skip it.
  """

  def __init__(self, class_names: Sequence[str], channels: int, has_mask: bool,
               load_options: dict, data_dir: str):
    self._class_names = list(class_names)
    self._channels = channels
    self._has_mask = has_mask
    self._load_options = dict(load_options)
    self._data_dir = data_dir
    self._features = None

  def setup(self):
    self._features = schema.make_features(self._class_names, self._channels,
                                          self._has_mask,
                                          dtype=self._load_options["pixel_spec"].dtype)

  def process(self, row: dict) -> Iterator[tuple[tuple, tuple]]:
    key = (row["split"], int(row["shard"]), int(row["num_shards"]))
    loaded = loading.load_one(
        loading.load_task(row, self._has_mask, self._load_options))
    try:
      record, manifest = plan.make_record(
          row, loaded, features=self._features,
          pixels=self._load_options["pixel_spec"], has_mask=self._has_mask,
          data_dir=pathlib.Path(self._data_dir))
    except errors.InputError as e:
      yield key, (int(row["position"]), None, {"reason": e.reason, "file": e.file})
      return
    manifest["shape"] = [loaded.height, loaded.width]
    yield key, (int(row["position"]), record, manifest)


class WriteShard(beam.DoFn):
  """(split, shard, num_shards), records -> the shard file plus a JSON of its facts.

  Records are written sorted by position, so the shard is the same whichever worker
  loaded what; a retried bundle rewrites the same bytes under the same name.
  """

  def __init__(self, staging: str, name: str):
    self._staging = staging
    self._name = name

  def process(self, element) -> Iterator[str]:
    (split, shard, count), items = element
    file_name = shard_file_name(self._name, split, shard, count)
    manifest, rejects, num_bytes = [], [], 0
    with tf.io.TFRecordWriter(_join(self._staging, file_name)) as out:
      for position, record, facts in sorted(items, key=lambda item: item[0]):
        if record is None:
          rejects.append(dict(facts, position=position))
          continue
        out.write(record)
        manifest.append(dict(facts, position=position, shard=file_name,
                             index=len(manifest)))
        # TFRecord framing: 8-byte length, two 4-byte CRCs around the payload.
        num_bytes += len(record) + 16
    facts = {"split": split, "shard": shard, "num_shards": count,
             "num_bytes": num_bytes, "manifest": manifest, "rejects": rejects}
    part = _join(self._staging, WORK_DIR, PARTS_DIR, f"{split}-{shard:05d}.json")
    with tf.io.gfile.GFile(part, "w") as f:
      f.write(json.dumps(facts))
    yield part


def build_pipeline(pipeline: beam.Pipeline, chunks: Sequence[str], staging: str,
                   source: sources.Source, has_mask: bool, load_options: dict,
                   data_dir: str) -> beam.PCollection:
  """Adds the conversion of the plan `chunks` to `pipeline`; returns the
  PCollection of part file paths."""
  return (pipeline
          | "PlanChunks" >> beam.Create(list(chunks))
          | "ReadPlan" >> beam.FlatMap(read_chunk)
          # Spread the images over the workers rather than the chunks (an identity
          # on the DaskRunner, where each chunk is a task of its own).
          | "Spread" >> beam.Reshuffle()
          | "LoadAndEncode" >> beam.ParDo(LoadAndEncode(
              source.class_names, source.channels, has_mask, load_options, data_dir))
          | "GroupByShard" >> beam.GroupByKey()
          | "WriteShard" >> beam.ParDo(WriteShard(staging, source.name)))


# ---------------------------------------------------------------------------
# Launcher: run, gather, metadata, publish.


def convert_records(config: plan.ConvertConfig,
                    pipeline_args: Sequence[str] = DIRECT
                    ) -> tuple[metadata.WriteSummary, errors.Rejects]:
  """`create.create_records` with a Beam pipeline writing: the same plan
  (`plan.prepare_examples`), then `convert`. Returns the summary and what was
  skipped; raises InputError for bad input (nothing is published then)."""
  prepared = plan.prepare_examples(config)
  return convert(prepared, pipeline_args), prepared.rejects


def convert(prepared: plan.Prepared,
            pipeline_args: Sequence[str] = DIRECT) -> metadata.WriteSummary:
  """Writes a prepared conversion as its records folder with a Beam pipeline.

  The config's options are those of `writer.write_records` (which documents them);
  `pipeline_args` are the Beam pipeline options (e.g. ["--runner=FlinkRunner", ...];
  `runners.pipeline_args` makes them; on the DaskRunner without a scheduler address
  a local cluster of `num_workers` processes runs it).
  The pixel pre-scan (`loading.prescan`: headers; float and, for intensity=rescale,
  training values) runs on the launcher with `num_workers` processes before the
  pipeline, so every worker stores the same dtype. The output folder may be a local
  path (published atomically by renames) or a gfile URL such as
  gs://bucket/records/name (copied into place, hep2tf.json last): the same
  `atomic.publish_dir` as the local writer's.

  Returns a WriteSummary equal to the local writer's for the same input and seed.
  Raises InputError for bad input or an existing output_dir, runners.PipelineError
  when the runner fails (a worker died); nothing is published then.
  """
  has_mask = plan.check_inputs(prepared)
  output_dir = storage.abspath(prepared.output_dir)
  if storage.is_local(output_dir):
    atomic.clean_stale(output_dir)
  staging = atomic.staging_path(output_dir)
  if storage.exists(staging):
    storage.rmtree(staging)
  storage.makedirs(_join(staging, WORK_DIR, PARTS_DIR))
  try:
    summary = _write(prepared, staging, output_dir, has_mask, pipeline_args)
    atomic.publish_dir(staging, output_dir, last=metadata.PUBLISH_LAST)
  except BaseException:
    storage.rmtree(staging, ignore_errors=True)
    raise
  return summary


def _write(prepared: plan.Prepared, staging: str, output_dir: str, has_mask: bool,
           pipeline_args: Sequence[str]) -> metadata.WriteSummary:
  """Runs the pipeline into `staging`, then writes the metadata beside the shards."""
  config, source, rejects = prepared.config, prepared.source, prepared.rejects
  order = plan_records(prepared.examples, config.seed, config.num_shards)
  pixels = plan.prescan(prepared, order)
  # A folder name of its own per run: Dask names tasks by their inputs, and a rerun
  # on the same cluster must not meet an earlier run's failed tasks.
  chunks = write_plan(order, _join(staging, WORK_DIR,
                                   f"{PLAN_DIR}-{secrets.token_hex(4)}"))
  runners.run(lambda pipeline: build_pipeline(
      pipeline, chunks, staging, source, has_mask,
      plan.load_options(prepared, pixels), str(prepared.data_dir)),
      pipeline_args, config.workers)
  manifest, shard_lengths, num_bytes, shapes = _gather(
      staging, order, config.on_error, rejects)
  storage.rmtree(_join(staging, WORK_DIR))
  image_shape = list(shapes.pop()) if len(shapes) == 1 else None
  summary = metadata.summarise(output_dir, source.name, list(source.class_names),
                               manifest, shard_lengths, num_bytes, image_shape,
                               len(rejects), pixels)
  summary.split_notes = list(prepared.split_notes)
  _write_metadata(staging, source, summary, manifest, shard_lengths, has_mask,
                  image_shape, config.balance, config.augment_copies, config.seed,
                  config.dataset, prepared.data_dir, rejects)
  samples.write_samples(staging, summary, source.channels, has_mask)
  return summary


def _gather(staging: str, order: pd.DataFrame, on_error: str,
            rejects: errors.Rejects):
  """Reads the shard facts back: (manifest, shard lengths, bytes, image shapes)."""
  parts = [json.loads(tf.io.gfile.GFile(path).read())
           for path in tf.io.gfile.glob(_join(staging, WORK_DIR, PARTS_DIR, "*.json"))]
  bad = sorted((r for part in parts for r in part["rejects"]),
               key=lambda r: r["position"])
  if bad and on_error == "fail":
    raise errors.InputError(bad[0]["reason"], file=bad[0]["file"])
  for reject in bad:
    rejects.add(errors.InputError(reject["reason"], file=reject["file"]))
  expected = order.groupby("split", sort=False)["num_shards"].first()
  shard_lengths = {split: [0] * int(count) for split, count in expected.items()}
  num_bytes = {split: 0 for split in expected.index}
  for part in parts:
    shard_lengths[part["split"]][part["shard"]] = len(part["manifest"])
    num_bytes[part["split"]] += part["num_bytes"]
  planned = sum(len(lengths) for lengths in shard_lengths.values())
  if len(parts) != planned:
    raise RuntimeError(f"the pipeline wrote {len(parts)} of {planned} shards")
  rows = sorted((r for part in parts for r in part["manifest"]),
                key=lambda r: r["position"])
  if not rows:
    raise errors.InputError("every image was rejected; nothing to write")
  shapes = {tuple(r.pop("shape")) for r in rows}
  # The columns in plan.make_record's order, as the local writer writes them.
  manifest = pd.DataFrame(rows).drop(columns="position")
  return manifest, shard_lengths, num_bytes, shapes


def _write_metadata(staging, source, summary, manifest, shard_lengths, has_mask,
                    image_shape, balance, augment_copies, seed, dataset, data_dir,
                    rejects) -> None:
  """The local writer's metadata, written locally and copied into `staging`."""
  with tempfile.TemporaryDirectory() as local:
    folder = pathlib.Path(local)
    # TFDS finds the splits by listing shard files, and metadata.write_tfds_metadata
    # drops an empty split by deleting its shards: empty stand-ins serve both here.
    shard_names = set()
    for split, lengths in shard_lengths.items():
      for shard in range(len(lengths)):
        name = shard_file_name(source.name, split, shard, len(lengths))
        (folder / name).touch()
        shard_names.add(name)
        if sum(lengths) == 0:
          tf.io.gfile.remove(_join(staging, name))
    metadata.write_tfds_metadata(folder, source, summary, shard_lengths, has_mask,
                                 image_shape)
    metadata.write_tables(folder, source, summary, manifest, has_mask, balance,
                          augment_copies, seed, dataset, pathlib.Path(data_dir),
                          rejects)
    for path in sorted(folder.iterdir()):
      if path.name not in shard_names:
        tf.io.gfile.copy(str(path), _join(staging, path.name), overwrite=True)


def _join(*parts: str) -> str:
  """Joins with '/', which both local paths and gfile URLs take."""
  return posixpath.join(*[os.fspath(p) for p in parts])
