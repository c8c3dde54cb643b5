"""Record conversion as an Apache Beam pipeline (the library of
`python -m hep2tf.beam_pipeline`).

The same conversion as `hep2tf.convert.create`, for sets too big for one machine. The
launcher reads the source table and makes the splits and the shard plan (small tables,
the same functions and seed as the local converter); the pipeline loads and encodes the
images in parallel on the runner's workers and writes each shard in one piece; the
launcher then writes the same metadata as `writer.py`. Each record gets its shard and
position on the launcher exactly as `writer.py` assigns them, so the shards hold the
same records in the same order as the local converter's, whatever the runner.
(Byte-identical too once `schema.encode_example` serialises deterministically:
protobuf's map order now varies between processes, for the local converter as well.)

The source images must be readable at the same paths on the launcher and on every
worker (a shared filesystem); the output may be a local path or any filesystem
`tf.io.gfile` writes (gs://, hdfs://), published atomically only on a local path.
Install with `pip install -e .[beam]`.

Pipeline: plan.jsonl -> ReadFromText -> Reshuffle -> load+encode (images.load_image,
schema.encode_example) -> GroupByKey(split, shard) -> write shard (sorted by position)
-> one JSON of shard facts per shard, read back by the launcher.
"""

from __future__ import annotations

import json
import os
import pathlib
import posixpath
import tempfile
from typing import Iterator, Sequence

import apache_beam as beam
import pandas as pd
import tensorflow as tf
from absl import logging
from apache_beam.options.pipeline_options import PipelineOptions

from hep2tf import atomic, errors
from hep2tf.convert import create, loading, metadata, samples, writer
from hep2tf.data import images, intensity, schema, sources, splits, synth
from hep2tf.data.records import INFO_FILE, shard_file_name

WORK_DIR = "_beam"          # inside staging: the plan and the per-shard facts
PLAN_FILE = "plan.jsonl"
PARTS_DIR = "parts"
# Written last when publishing to an object store: its presence marks the folder whole.
_LAST_FILES = (INFO_FILE, "dataset_info.json")


# ---------------------------------------------------------------------------
# Launcher: the example table, as the local converter makes it.


def prepare_examples(dataset: str = create.SYNTHETIC,
                     data_dir: str | None = None, *, name: str | None = None,
                     source_options: dict | None = None,
                     synth_num_images: int = create.DEFAULT_SET_IMAGES,
                     synth_num_specimens: int | None = None,
                     synth_seed: int = 0,
                     validation_fraction: float | None = None,
                     test_fraction: float | None = None,
                     group_split: bool = True, balance: str = "none",
                     augment_copies: int = 0, seed: int = 0, on_error: str = "fail",
                     num_workers: int = 1
                     ) -> tuple[sources.Source, pd.DataFrame, str, errors.Rejects]:
  """Source -> splits -> balance -> dihedral copies, as `create_records` does.

  Args mirror `create.create_records`. Returns (source, example table with
  split and dihedral set, the data folder, rejects so far). Raises InputError.
  """
  synth_num_specimens, validation_fraction, test_fraction = (
      create.default_set_options(
          dataset, synth_num_images, "default", synth_num_specimens,
          validation_fraction, test_fraction))
  rejects = errors.Rejects()
  layout = dataset
  if dataset == create.SYNTHETIC:
    data_dir = data_dir or create.SYNTHETIC_DIR
    name = name or create.SYNTHETIC_NAME
    size = create.SYNTHETIC_IMAGE_SIZE
    if not synth.matches(data_dir, synth_num_images, synth_seed, size,
                         synth_num_specimens):
      logging.info("Drawing %d synthetic cells into %s", synth_num_images, data_dir)
      synth.generate(data_dir, synth_num_images, seed=synth_seed, image_size=size,
                     num_specimens=synth_num_specimens, num_workers=num_workers,
                     overwrite=True)
    layout = "icpr2014"
  elif not data_dir and dataset == "csv" and (source_options or {}).get("csv_path"):
    # --csv_path alone: the paths in it are relative to its folder.
    data_dir = os.path.dirname(os.path.abspath(source_options["csv_path"]))
  elif not data_dir:
    raise errors.InputError(f"--data_dir is needed for --dataset={dataset}")
  source = sources.read_source(layout, data_dir, on_error=on_error, rejects=rejects,
                               name=name, **(source_options or {}))
  examples = splits.assign_splits(
      source.examples, validation_fraction=validation_fraction,
      test_fraction=test_fraction, seed=seed, by_group=group_split,
      on_error=on_error, rejects=rejects)
  notes = list(examples.attrs.get("split_notes", []))
  examples = splits.balance(examples, balance, seed=seed)
  examples = splits.add_dihedral_copies(examples, augment_copies, seed=seed)
  # Carried for convert(), which records them in hep2tf.json as the local writer does.
  examples.attrs["split_notes"] = notes
  return source, examples, data_dir, rejects


def plan_records(examples: pd.DataFrame, seed: int = 0,
                 num_shards: int | None = None) -> pd.DataFrame:
  """The local writer's plan (split, shard, num_shards) plus each record's `position`.

  `position` is the record's place in the local writer's write order; sorting a
  shard's records by it gives the local writer's shard content.
  """
  plan = writer.shard_plan(examples, seed, num_shards)
  return plan.assign(position=range(len(plan)))


# ---------------------------------------------------------------------------
# Workers: load and encode one image; write one shard.


def _record_for(row: dict, loaded, features, has_mask: bool,
                data_dir: str) -> tuple[bytes, dict]:
  """(serialised example, manifest row without shard and index), as writer.py."""
  relative = writer.relative_file_name(row["path"], pathlib.Path(data_dir))
  example = {schema.IMAGE: loaded.png, schema.LABEL: row["label"],
             schema.ID: row["id"], schema.FILE_NAME: relative,
             schema.SHA256: loaded.sha256, schema.INTENSITY: row.get("intensity"),
             schema.GROUP: row.get("group"), schema.DIHEDRAL: int(row["dihedral"])}
  if has_mask:
    example[schema.MASK] = loaded.mask_png
  manifest = {"id": row["id"], "file_name": relative, "sha256": loaded.sha256,
              "split": row["split"], "label": row["label"],
              "group": row.get("group", "") or "",
              "intensity": row.get("intensity", "") or "",
              "dihedral": int(row["dihedral"]), "fold": row.get("fold", "") or ""}
  return schema.encode_example(features, example), manifest


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

  def process(self, row: dict) -> Iterator[tuple]:
    key = (row["split"], int(row["shard"]), int(row["num_shards"]))
    loaded = loading.load_one(
        loading.load_task(row, self._has_mask, self._load_options))
    if isinstance(loaded, tuple):
      yield key, (int(row["position"]), None, {"reason": loaded[0],
                                               "file": loaded[1]})
      return
    record, manifest = _record_for(row, loaded, self._features, self._has_mask,
                                   self._data_dir)
    try:
      loading.check_dtype(loaded, self._load_options["pixel_spec"],
                          row["path"])
    except errors.InputError as e:
      yield key, (int(row["position"]), None, {"reason": e.reason, "file": e.file})
      return
    manifest["shape"] = [loaded.height, loaded.width]
    manifest.update(loaded.stats)
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


def build_pipeline(pipeline: beam.Pipeline, plan_path: str, staging: str,
                   source: sources.Source, has_mask: bool, load_options: dict,
                   data_dir: str) -> beam.PCollection:
  """Adds the conversion to `pipeline`; returns the PCollection of part file paths."""
  return (pipeline
          | "ReadPlan" >> beam.io.ReadFromText(plan_path)
          | "ParsePlan" >> beam.Map(json.loads)
          # Spread the images over the workers rather than the plan file's splits.
          | "Spread" >> beam.Reshuffle()
          | "LoadAndEncode" >> beam.ParDo(LoadAndEncode(
              source.class_names, source.channels, has_mask, load_options, data_dir))
          | "GroupByShard" >> beam.GroupByKey()
          | "WriteShard" >> beam.ParDo(WriteShard(staging, source.name)))


# ---------------------------------------------------------------------------
# Launcher: run, gather, metadata, publish.


def convert(source: sources.Source, examples: pd.DataFrame, output_dir: str, *,
            pipeline_args: Sequence[str] = ("--runner=DirectRunner",),
            data_dir: str | None = None, dataset: str | None = None,
            num_shards: int | None = None, seed: int = 0, overwrite: bool = False,
            on_error: str = "fail", image_size: tuple[int, int] | None = None,
            resize: str = "pad", apply_mask: bool = False,
            max_megapixels: float = images.DEFAULT_MAX_MEGAPIXELS,
            balance: str = "none", augment_copies: int = 0,
            rejects: errors.Rejects | None = None, intensity_mode: str = "keep",
            percentiles=intensity.DEFAULT_PERCENTILES,
            num_workers: int = 1) -> metadata.WriteSummary:
  """Writes `examples` as a records folder at `output_dir` with a Beam pipeline.

  Args are those of `writer.write_records` (which documents them), plus
  `pipeline_args`, the Beam pipeline options (e.g. ["--runner=FlinkRunner", ...]).
  The pixel pre-scan (`loading.prescan`: headers; float and, for intensity=rescale,
  training values) runs on the launcher with `num_workers` processes before the
  pipeline, so every worker stores the same dtype.
  `output_dir` may be a local path (published atomically by renames) or a gfile URL
  such as gs://bucket/records/name (copied into place, dataset_info.json last).

  Returns a WriteSummary equal to the local writer's for the same input and seed.
  Raises InputError for bad input or an existing output_dir; nothing is published.
  """
  if on_error not in ("fail", "skip"):
    raise ValueError(f"on_error must be fail or skip, got {on_error!r}")
  local = _is_local(output_dir)
  output_dir = str(pathlib.Path(output_dir).absolute()) if local else output_dir
  if tf.io.gfile.exists(output_dir) and not overwrite:
    raise errors.InputError("the records folder exists; pass overwrite "
                            "(--overwrite) to replace it", file=output_dir)
  unknown = sorted(set(examples["label"]) - set(source.class_names))
  if unknown:
    raise errors.InputError(f"labels {unknown} are not among the classes "
                            f"{list(source.class_names)}")
  masks = examples.get("mask_path", pd.Series("", index=examples.index))
  has_mask = bool(len(examples)) and bool((masks.fillna("").astype(str) != "").all())
  if apply_mask and not has_mask:
    raise errors.InputError("apply_mask needs a mask for every image, and some "
                            "have none")
  rejects = rejects if rejects is not None else errors.Rejects()
  data_dir = str(pathlib.Path(data_dir).absolute() if data_dir
                 else writer.common_dir(examples["path"]))
  load_options = dict(channels=source.channels, image_size=image_size,
                      resize=resize, apply_mask=apply_mask,
                      max_megapixels=max_megapixels)

  if local:
    atomic.clean_stale(output_dir)
  staging = atomic.staging_path(output_dir)
  if tf.io.gfile.exists(staging):
    tf.io.gfile.rmtree(staging)
  tf.io.gfile.makedirs(_join(staging, WORK_DIR, PARTS_DIR))
  try:
    plan = plan_records(examples, seed, num_shards)
    pixels = loading.prescan(plan, source.channels, intensity_mode, percentiles,
                             max_megapixels, num_workers)
    load_options["pixel_spec"] = pixels
    plan_path = _join(staging, WORK_DIR, PLAN_FILE)
    with tf.io.gfile.GFile(plan_path, "w") as f:
      f.write(plan.to_json(orient="records", lines=True))
    options = PipelineOptions(list(pipeline_args))
    with beam.Pipeline(options=options) as pipeline:
      build_pipeline(pipeline, plan_path, staging, source, has_mask, load_options,
                     data_dir)
    manifest, shard_lengths, num_bytes, shapes = _gather(
        staging, plan, on_error, rejects)
    tf.io.gfile.rmtree(_join(staging, WORK_DIR))
    image_shape = list(shapes.pop()) if len(shapes) == 1 else None
    summary = metadata.summarise(output_dir, source.name, list(source.class_names),
                                 manifest, shard_lengths, num_bytes, image_shape,
                                 len(rejects), pixels)
    summary.split_notes = list(examples.attrs.get("split_notes", []))
    _write_metadata(staging, source, summary, manifest, shard_lengths, has_mask,
                    image_shape, balance, augment_copies, seed,
                    dataset or source.name, data_dir, rejects)
    samples.write_samples(staging, summary, source.channels, has_mask)
    _publish(staging, output_dir)
  except BaseException:
    if tf.io.gfile.exists(staging):
      tf.io.gfile.rmtree(staging)
    raise
  return summary


def _gather(staging: str, plan: pd.DataFrame, on_error: str,
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
  expected = plan.groupby("split", sort=False)["num_shards"].first()
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
  columns = ["id", "file_name", "sha256", "split", "shard", "index", "label",
              "group", "intensity", "dihedral", "fold", "levels", "max_value", "at_max"]
  return pd.DataFrame(rows)[columns], shard_lengths, num_bytes, shapes


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


def _publish(staging: str, output_dir: str) -> None:
  """Local: renames into place (atomic). Elsewhere: copies, dataset_info.json last."""
  if _is_local(output_dir):
    atomic.publish_dir(staging, output_dir)
    return
  if tf.io.gfile.exists(output_dir):
    tf.io.gfile.rmtree(output_dir)
  tf.io.gfile.makedirs(output_dir)
  names = sorted(tf.io.gfile.listdir(staging),
                 key=lambda n: (n in _LAST_FILES, _LAST_FILES.index(n)
                                if n in _LAST_FILES else 0, n))
  for name in names:
    tf.io.gfile.copy(_join(staging, name), _join(output_dir, name), overwrite=True)
  tf.io.gfile.rmtree(staging)


def _is_local(path: str | os.PathLike) -> bool:
  return "://" not in os.fspath(path)


def _join(*parts: str) -> str:
  """Joins with '/', which both local paths and gfile URLs take."""
  return posixpath.join(*[os.fspath(p) for p in parts])
