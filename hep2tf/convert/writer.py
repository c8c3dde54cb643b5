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
either no dataset or the previous complete one. `verify_records` reads a folder back.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import pathlib
import re
import shutil
from typing import Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_datasets as tfds
import tqdm

from hep2tf.data import images
from hep2tf.data import intensity
from hep2tf.convert import samples
from hep2tf.data import schema
from hep2tf import storage
from hep2tf.errors import InputError, Rejects

SPLIT_ORDER = ("train", "validation", "test")
FILENAME_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
MANIFEST = "manifest.csv"
CLASS_COUNTS = "class_counts.json"
HEP2TF_JSON = "hep2tf.json"
REJECTS = "rejects.csv"
MAX_SHARDS = 8
# Fewer shards for small splits: below this many records a shard buys no interleaving.
MIN_RECORDS_PER_SHARD = 256
_CHUNKSIZE = 32


@dataclasses.dataclass
class WriteSummary:
  """What `write_records` wrote: per split counts, class counts, shards and bytes."""
  output_dir: str
  name: str
  class_names: list[str]
  splits: dict[str, int]
  class_counts: dict[str, dict[str, int]]
  shards: dict[str, int]
  num_bytes: dict[str, int]
  image_shape: list[int] | None
  num_rejected: int = 0
  # Set with the metadata: the layout's notes (sources.Source.notes) and whether no
  # group (specimen, patient, slide) is in two splits (False also when some image
  # has no group).
  notes: list[str] = dataclasses.field(default_factory=list)
  group_disjoint: bool | None = None
  pixels: intensity.PixelSpec = dataclasses.field(default_factory=intensity.PixelSpec)
  warnings: list[str] = dataclasses.field(default_factory=list)
  # What the splitter had to give up (splits.assign_splits' attrs["split_notes"]).
  split_notes: list[str] = dataclasses.field(default_factory=list)

  def table(self) -> str:
    """A plain-text table: one line per split with images, classes, shards, bytes."""
    width = max([len(c) for c in self.class_names] + [7])
    head = f"{'split':<11}{'images':>8}  " + "  ".join(
        f"{c:>{width}}" for c in self.class_names) + f"{'shards':>8}{'MiB':>9}"
    lines = [head, "-" * len(head)]
    for split, count in self.splits.items():
      counts = "  ".join(f"{self.class_counts[split].get(c, 0):>{width}}"
                         for c in self.class_names)
      lines.append(f"{split:<11}{count:>8}  {counts}{self.shards[split]:>8}"
                   f"{self.num_bytes[split] / 2**20:>9.2f}")
    return "\n".join(lines)


def num_shards_for(num_examples: int, num_shards: int | None = None) -> int:
  """Shards for one split: `num_shards` if given, else up to 8, >= 256 records each."""
  if num_shards is not None:
    if num_shards < 1:
      raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    return max(1, min(num_shards, num_examples))
  return max(1, min(MAX_SHARDS, num_examples // MIN_RECORDS_PER_SHARD))


def shard_file_name(name: str, split: str, shard: int, num_shards: int) -> str:
  """`<name>-<split>.tfrecord-00000-of-00008`, the TFDS default template."""
  return f"{name}-{split}.tfrecord-{shard:05d}-of-{num_shards:05d}"


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
                  split_notes: Sequence[str] = ()) -> WriteSummary:
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
    A WriteSummary. Raises InputError for bad input or an existing output_dir.
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
  data_dir = pathlib.Path(data_dir).absolute() if data_dir else _common_dir(
      examples["path"])

  _clean_stale(output_dir)
  staging = output_dir.parent / f".{output_dir.name}.tmp-{os.getpid()}"
  if staging.exists():
    shutil.rmtree(staging)
  staging.mkdir(parents=True)
  try:
    plan = _plan(examples, seed, num_shards)
    pixels = pixels or prescan(plan, source.channels, intensity_mode, percentiles,
                               max_megapixels, num_workers)
    load_options = dict(channels=source.channels, image_size=image_size,
                        resize=resize, apply_mask=apply_mask,
                        max_megapixels=max_megapixels, pixel_spec=pixels)
    tasks = [_task(row, has_mask, load_options)
             for row in plan.to_dict("records")]
    loading = _load_all(tasks, num_workers)
    try:
      results = tqdm.tqdm(loading, total=len(tasks), unit="img",
                          desc=f"writing {name}", disable=not progress)
      manifest, shard_lengths, num_bytes, shapes = _write_shards(
          staging, name, source, plan, results, has_mask, data_dir, on_error,
          rejects, pixels)
    finally:
      loading.close()   # stops the worker pool now, also after an error
    image_shape = list(shapes.pop()) if len(shapes) == 1 else None
    summary = _summarise(output_dir, name, class_names, manifest, shard_lengths,
                         num_bytes, image_shape, len(rejects), pixels)
    summary.split_notes = list(split_notes)
    _write_metadata(staging, source, summary, shard_lengths, has_mask, image_shape)
    _write_tables(staging, source, summary, manifest, has_mask, balance,
                  augment_copies, seed, dataset or name, data_dir, rejects)
    samples.write_samples(str(staging), summary, source.channels, has_mask)
    _publish(staging, output_dir)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return summary


# ---------------------------------------------------------------------------
# Planning and loading.


def _plan(examples: pd.DataFrame, seed: int, num_shards: int | None) -> pd.DataFrame:
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


def prescan(plan: pd.DataFrame, channels: int, intensity_mode: str, percentiles,
            max_megapixels: float, num_workers: int) -> intensity.PixelSpec:
  """The dataset's PixelSpec from its sources (each file once; train for rescale)."""
  paths = list(dict.fromkeys(plan["path"]))
  train = list(dict.fromkeys(plan.loc[plan["split"] == "train", "path"])) or paths
  return intensity.scan_pixels(paths, train, channels, intensity=intensity_mode,
                               percentiles=percentiles,
                               max_megapixels=max_megapixels,
                               num_workers=num_workers)


def _task(row, has_mask: bool, options: dict) -> tuple:
  mask = row["mask_path"] if has_mask else None
  return (row["path"], dict(options, mask_path=mask,
                            dihedral_id=int(row["dihedral"])))


def _load_all(tasks: Sequence[tuple], num_workers: int) -> Iterator:
  """Loads in task order; with workers, in a process pool (fork: no TF re-import)."""
  if num_workers <= 1:
    yield from map(_load_one, tasks)
    return
  methods = multiprocessing.get_all_start_methods()
  context = multiprocessing.get_context("fork" if "fork" in methods else None)
  with concurrent.futures.ProcessPoolExecutor(num_workers, mp_context=context) as pool:
    try:
      yield from pool.map(_load_one, tasks, chunksize=_CHUNKSIZE)
    finally:
      pool.shutdown(wait=True, cancel_futures=True)


def _load_one(task: tuple):
  """LoadedImage, or (reason, file) for a bad input (InputError pickles lossily)."""
  path, options = task
  options = dict(options)
  channels = options.pop("channels")
  try:
    return images.load_image(path, channels, **options)
  except InputError as e:
    return (e.reason, e.file)


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
      check_dtype(loaded, pixels, row["path"])
      relative = _relative(row["path"], data_dir)
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


def check_dtype(loaded: images.LoadedImage, pixels: intensity.PixelSpec,
                path) -> None:
  """The stored PNG's bit depth must be the dataset's (a file may change mid-run)."""
  depth = 16 if loaded.png[24] == 16 else 8
  if depth != (16 if pixels.dtype == "uint16" else 8):
    raise InputError(f"became a {depth}-bit image after the pre-scan chose "
                     f"{pixels.dtype} for this dataset (was the file replaced?)",
                     file=path)


def _summarise(output_dir, name, class_names, manifest, shard_lengths, num_bytes,
               image_shape, num_rejected,
               pixels: intensity.PixelSpec | None = None) -> WriteSummary:
  pixels = pixels or intensity.PixelSpec()
  if pixels.dtype == "uint16":
    pixels = dataclasses.replace(
        pixels, white_level=intensity.white_level(int(manifest["max_value"].max())))
  splits, counts = {}, {}
  for split in shard_lengths:
    rows = manifest[manifest["split"] == split]
    splits[split] = len(rows)
    per_class = rows["label"].value_counts()
    counts[split] = {c: int(per_class.get(c, 0)) for c in class_names}
  return WriteSummary(str(output_dir), name, class_names, splits, counts,
                      {s: len(v) for s, v in shard_lengths.items()}, num_bytes,
                      image_shape, num_rejected, pixels=pixels,
                      warnings=samples.pixel_warnings(manifest, pixels))


def _write_metadata(staging, source, summary, shard_lengths, has_mask, image_shape):
  """dataset_info.json and features.json, so tfds.builder_from_directory loads it."""
  # A split whose every image was rejected has only empty shards: leave it out.
  for split, lengths in list(shard_lengths.items()):
    if sum(lengths) == 0:
      for path in staging.glob(f"{source.name}-{split}.tfrecord-*"):
        path.unlink()
      del shard_lengths[split]
  features = schema.make_features(source.class_names, source.channels, has_mask,
                                  tuple(image_shape) if image_shape else (None, None),
                                  dtype=summary.pixels.dtype)
  split_infos = [tfds.core.SplitInfo(name=split, shard_lengths=lengths,
                                     num_bytes=summary.num_bytes[split])
                 for split, lengths in shard_lengths.items()]
  tfds.folder_dataset.write_metadata(
      data_dir=str(staging), features=features, split_infos=split_infos,
      filename_template=FILENAME_TEMPLATE, check_data=False,
      description=_description(summary))


def _description(summary: WriteSummary) -> str:
  sizes = ", ".join(f"{s} {n}" for s, n in summary.splits.items())
  lines = [f"{summary.name}: single-cell images written by hep2tf.",
           f"Classes (label ids in this order): {', '.join(summary.class_names)}.",
           f"Split sizes: {sizes}.",
           f"Pixels: {summary.pixels.describe()}"]
  for split, counts in summary.class_counts.items():
    lines.append(f"{split} per class: " +
                 ", ".join(f"{c} {n}" for c, n in counts.items()) + ".")
  return "\n".join(lines)


def _write_tables(staging, source, summary, manifest, has_mask, balance,
                  augment_copies, seed, dataset, data_dir, rejects):
  manifest.to_csv(staging / MANIFEST, index=False)
  summary.notes = list(getattr(source, "notes", []))
  summary.group_disjoint = bool((manifest["group"] != "").all() and (
      manifest.groupby("group")["split"].nunique() == 1).all())
  counts = dict(summary.class_counts, balance=balance, augment_copies=augment_copies)
  (staging / CLASS_COUNTS).write_text(json.dumps(counts, indent=2) + "\n")
  info = {"name": summary.name, "class_names": summary.class_names,
          "channels": source.channels, "image_shape": summary.image_shape,
          "has_mask": has_mask, "positive_class": source.positive_class,
          "splits": summary.splits, "class_counts": summary.class_counts,
          "balance": balance, "augment_copies": augment_copies, "seed": seed,
          "dataset": dataset, "data_dir": str(data_dir),
          "group_disjoint": summary.group_disjoint, "layout_notes": summary.notes,
          "pixels": summary.pixels.to_json(), "warnings": summary.warnings,
          "split_notes": summary.split_notes}
  (staging / HEP2TF_JSON).write_text(json.dumps(info, indent=2) + "\n")
  if len(rejects):
    rejects.write_csv(staging / REJECTS)


def _write_through_local(url: str, overwrite: bool, write) -> WriteSummary:
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
                      last=(REJECTS, "dataset_info.json", HEP2TF_JSON))
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
  return dataclasses.replace(summary, output_dir=url)


def _publish(staging: pathlib.Path, output_dir: pathlib.Path) -> None:
  """Renames the finished folder into place; the old one goes only after."""
  if not output_dir.exists():
    os.rename(staging, output_dir)
    return
  old = output_dir.parent / f".{output_dir.name}.old-{os.getpid()}"
  os.rename(output_dir, old)
  os.rename(staging, output_dir)
  shutil.rmtree(old, ignore_errors=True)


def _clean_stale(output_dir: pathlib.Path) -> None:
  """Removes what a crashed earlier run left; restores an old folder it moved aside."""
  parent = output_dir.parent
  if not parent.exists():
    return
  for path in sorted(parent.glob(f".{output_dir.name}.*-*")):
    kind, _, pid = path.name.rpartition("-")
    if not pid.isdigit() or _alive(int(pid)):
      continue
    if kind.endswith(".old") and not output_dir.exists():
      os.rename(path, output_dir)
    elif kind.endswith((".old", ".tmp")):
      shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
  if pid == os.getpid():
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _common_dir(paths: Iterable[str]) -> pathlib.Path:
  folders = [os.path.dirname(os.path.abspath(p)) for p in paths]
  return pathlib.Path(os.path.commonpath(folders)) if folders else pathlib.Path.cwd()


def _relative(path: str, data_dir: pathlib.Path) -> str:
  relative = os.path.relpath(os.path.abspath(path), data_dir)
  return pathlib.PurePath(relative).as_posix()


# ---------------------------------------------------------------------------
# Reading back.


def verify_records(records_dir: str | os.PathLike) -> list[str]:
  """Reads every record of every shard; returns the problems found (empty: fine).

  Checks that each shard named by dataset_info.json exists, that every record passes
  its CRC and parses and decodes with `schema.parse_example`, and that the record
  counts match the metadata and manifest. A problem names the shard and record index.
  """
  folder = pathlib.Path(records_dir)
  problems = []
  try:
    info = json.loads((folder / "dataset_info.json").read_text())
    meta = json.loads((folder / HEP2TF_JSON).read_text())
  except (OSError, ValueError) as e:
    return [f"{folder}: cannot read the metadata ({e})"]
  name = meta["name"]
  for split_info in info.get("splits", []):
    split = split_info["name"]
    lengths = [int(n) for n in split_info.get("shardLengths", [])]
    for shard, expected in enumerate(lengths):
      file_name = shard_file_name(name, split, shard, len(lengths))
      path = folder / file_name
      if not path.exists():
        problems.append(f"{file_name}: missing")
        continue
      count, problem = _read_shard(path, meta["channels"], meta["has_mask"],
                                   (meta.get("pixels") or {}).get("dtype", "uint8"))
      if problem:
        problems.append(f"{file_name}: record {count}: {problem}")
      elif count != expected:
        problems.append(f"{file_name}: {count} records, metadata says {expected}")
    if sum(lengths) != meta["splits"].get(split):
      problems.append(f"split {split}: {sum(lengths)} records in dataset_info.json, "
                      f"{meta['splits'].get(split)} in {HEP2TF_JSON}")
  try:
    manifest = pd.read_csv(folder / MANIFEST, dtype=str, keep_default_na=False)
    for split, count in meta["splits"].items():
      listed = int((manifest["split"] == split).sum())
      if listed != count:
        problems.append(f"{MANIFEST}: {listed} rows for {split}, expected {count}")
  except (OSError, ValueError, KeyError) as e:
    problems.append(f"{MANIFEST}: cannot read ({e})")
  return problems


def _read_shard(path: pathlib.Path, channels: int, has_mask: bool,
                dtype: str = "uint8"):
  """(records read, problem or None) for one shard."""
  count = 0
  iterator = iter(tf.data.TFRecordDataset(str(path)))
  while True:
    try:
      serialized = next(iterator)
    except StopIteration:
      return count, None
    except tf.errors.DataLossError as e:
      return count, f"corrupted (CRC or framing): {e.message.splitlines()[0]}"
    try:
      schema.parse_example(serialized, channels, has_mask, dtype)
    except (tf.errors.InvalidArgumentError, ValueError) as e:
      message = getattr(e, "message", str(e)).splitlines()[0]
      return count, f"does not parse or decode: {message}"
    count += 1
