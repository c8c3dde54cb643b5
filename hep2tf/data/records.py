"""A records folder as the reader sees it: its metadata, its shards, their health.

`load_info` reads the folder's `hep2tf.json` (written by hep2tf.convert) into a
`DatasetInfo`: class names, channels, image shape, split sizes and class counts, the
pixel dtype and mapping (`intensity.PixelSpec`), and what the converter noted about
the splits. `num_examples` gives a split's size from it; `shard_files` lists a
split's shards `<name>-<split>.tfrecord-NNNNN-of-MMMMM` and refuses an incomplete
set; `check_shards` reads every record of a split and names the damaged ones. The
folder's file names live here, once, for the converter that writes them and every
reader; `shard_file_name` makes the shard names that `shard_files` parses.

The `Records` object that opens and validates a folder once (issue 18) is planned
for this module.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re

import tensorflow as tf

from hep2tf import storage
from hep2tf.data import intensity
from hep2tf.data import schema
from hep2tf.errors import InputError

# The files hep2tf writes into a records folder beside the shards and the TFDS
# metadata (dataset_info.json, features.json); docs/ARCHITECTURE.md says what is in
# each.
INFO_FILE = "hep2tf.json"
MANIFEST = "manifest.csv"
CLASS_COUNTS = "class_counts.json"
REJECTS = "rejects.csv"
# Shard names: TFDS's default template; `shard_file_name` makes one, _SHARD_RE parses
# one.
FILENAME_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
_SHARD_RE = re.compile(r"^(?P<name>.+)-(?P<split>[^-]+)\.tfrecord-"
                       r"(?P<index>\d+)-of-(?P<total>\d+)$")
_REQUIRED_KEYS = ("name", "class_names", "channels", "splits")


def shard_file_name(name: str, split: str, shard: int, num_shards: int) -> str:
  """`<name>-<split>.tfrecord-00000-of-00008`, the TFDS default template."""
  return f"{name}-{split}.tfrecord-{shard:05d}-of-{num_shards:05d}"


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a records folder holds, from its hep2tf.json."""

  records_dir: str
  name: str
  class_names: list[str]
  channels: int
  image_shape: tuple[int, int] | None   # None when image sizes vary
  has_mask: bool = False
  positive_class: str | None = None
  splits: dict[str, int] = dataclasses.field(default_factory=dict)
  class_counts: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
  balance: str | None = None       # what the converter did: none/oversample/undersample
  augment_copies: int = 0
  seed: int | None = None
  dataset: str | None = None
  data_dir: str | None = None
  pixels: intensity.PixelSpec = dataclasses.field(default_factory=intensity.PixelSpec)
  # What the converter's splitter gave up, e.g. a validation split carved from the
  # training groups of a small grouped set; [] when the splits are group-disjoint.
  split_notes: list[str] = dataclasses.field(default_factory=list)
  # Whether no group (specimen, patient, slide) is in two splits; None when unknown.
  group_disjoint: bool | None = None

  @property
  def num_classes(self) -> int:
    return len(self.class_names)


def load_info(records_dir: str | os.PathLike) -> DatasetInfo:
  """Reads `records_dir/hep2tf.json`.

  Raises:
    InputError naming the folder when it is missing, has no hep2tf.json, or the file
    is not valid JSON with the required keys.
  """
  records_dir = os.fspath(records_dir)
  path = os.path.join(records_dir, INFO_FILE)
  if not storage.isdir(records_dir):
    raise InputError("records folder does not exist", file=records_dir)
  if not storage.exists(path):
    raise InputError(
        f"not a hep2tf records folder: no {INFO_FILE} (make one with "
        "`python -m hep2tf.create_records`)", file=records_dir)
  try:
    with storage.open_file(path) as f:
      raw = json.load(f)
  except (OSError, ValueError, tf.errors.OpError) as e:
    raise InputError(f"cannot read {INFO_FILE}: {e}", file=path) from e
  if not isinstance(raw, dict):
    raise InputError(f"{INFO_FILE} must hold a JSON object", file=path)
  missing = [k for k in _REQUIRED_KEYS if k not in raw]
  if missing:
    raise InputError(f"{INFO_FILE} lacks keys {missing}", file=path)
  shape = raw.get("image_shape")
  return DatasetInfo(
      records_dir=records_dir,
      name=str(raw["name"]),
      class_names=[str(c) for c in raw["class_names"]],
      channels=int(raw["channels"]),
      image_shape=None if shape is None else (int(shape[0]), int(shape[1])),
      has_mask=bool(raw.get("has_mask", False)),
      positive_class=raw.get("positive_class"),
      splits={str(k): int(v) for k, v in raw["splits"].items()},
      class_counts=raw.get("class_counts") or {},
      balance=raw.get("balance"),
      augment_copies=int(raw.get("augment_copies") or 0),
      seed=raw.get("seed"),
      dataset=raw.get("dataset"),
      data_dir=raw.get("data_dir"),
      pixels=intensity.PixelSpec.from_json(raw.get("pixels")),
      split_notes=[str(n) for n in raw.get("split_notes") or []],
      group_disjoint=raw.get("group_disjoint"),
  )


def num_examples(records_dir: str | os.PathLike, split: str) -> int:
  """Number of examples in `split`, from the metadata (no reading of shards)."""
  info = load_info(records_dir)
  if split not in info.splits:
    raise InputError(f"no split {split!r}; this folder has splits "
                     f"{sorted(info.splits)}", file=info.records_dir)
  return info.splits[split]


def shard_files(records_dir: str | os.PathLike, split: str) -> list[str]:
  """The shard paths of `split`, sorted: `<name>-<split>.tfrecord-NNNNN-of-MMMMM`.

  Raises:
    InputError when the split has no shards (naming the splits that do exist) or a
    shard of the `-of-MMMMM` set is missing, so a half-copied folder is not read as
    a whole one.
  """
  info = load_info(records_dir)
  found: dict[str, list[tuple[int, int, str]]] = {}
  for entry in sorted(storage.listdir(info.records_dir)):
    match = _SHARD_RE.match(entry)
    if match and match["name"] == info.name:
      found.setdefault(match["split"], []).append(
          (int(match["index"]), int(match["total"]),
           os.path.join(info.records_dir, entry)))
  if split not in found:
    raise InputError(f"no shards for split {split!r}; shards exist for splits "
                     f"{sorted(found)}", file=info.records_dir)
  shards = sorted(found[split])
  totals = {total for _, total, _ in shards}
  indices = [index for index, _, _ in shards]
  if len(totals) != 1 or indices != list(range(totals.pop())):
    raise InputError(f"split {split!r} has an incomplete set of shards: "
                     f"{[os.path.basename(p) for _, _, p in shards]}",
                     file=info.records_dir)
  return [path for _, _, path in shards]


def check_shards(records_dir: str | os.PathLike, split: str) -> list[InputError]:
  """Reads every record of `split` and reports the ones that are damaged.

  A flipped byte or a truncated file makes TFRecordDataset raise a bare
  `tf.errors.DataLossError` in the middle of training; this names the shard and the
  index (0-based, within the shard) of the first bad record, and also finds records
  whose bytes are intact but which do not parse or decode, or whose label is out of
  range.

  Returns:
    One InputError per problem, with `file` the shard path and `row` the record
    index; empty when the split reads cleanly.

  The trainer calls it when reading fails, and raises what it finds instead:

    try:
      model.fit(...)
    except tf.errors.DataLossError as e:
      problems = check_shards(records_dir, split)
      if problems:
        raise problems[0] from e
      raise
  """
  info = load_info(records_dir)
  shards = shard_files(records_dir, split)
  problems, readable = [], []
  for shard in shards:
    count, error = _readable_records(shard)
    readable.append(count)
    if error is not None:
      problems.append(InputError(
          f"corrupt record (damaged bytes; the rest of the shard is unreadable): "
          f"{error.message.splitlines()[0]}", file=shard, row=count))
  for shard_index, row in _undecodable_records(info, shards, readable):
    problems.append(InputError(
        "record does not parse or decode as a hep2tf example, or its label is "
        "not one of class_names", file=shards[shard_index], row=row))
  return sorted(problems, key=lambda p: (p.file, p.row))


def _readable_records(shard: str, chunk: int = 256
                      ) -> tuple[int, tf.errors.DataLossError | None]:
  """How many records of `shard` read before the first DataLossError, and the error."""
  count = 0
  try:
    # Whole chunks are fast to count; the record index is then found within the
    # chunk that failed.
    for records in tf.data.TFRecordDataset(shard).batch(chunk):
      count += int(records.shape[0])
    return count, None
  except tf.errors.DataLossError:
    pass
  try:
    for _ in tf.data.TFRecordDataset(shard).skip(count).take(chunk):
      count += 1
  except tf.errors.DataLossError as e:
    return count, e
  raise AssertionError(f"{shard}: a read error did not happen again")  # unreachable


def _undecodable_records(info: DatasetInfo, shards: list[str],
                         readable: list[int]) -> list[tuple[int, int]]:
  """(shard index, record index) of the readable records that fail to decode."""
  def records_of(shard_index, path, count):
    records = tf.data.TFRecordDataset(path).take(count).enumerate()
    return records.map(lambda row, serialized: (shard_index, row, serialized))

  def decode(shard_index, row, serialized):
    example = schema.parse_example(serialized, info.channels, info.has_mask,
                                   info.pixels.dtype)
    # Return something computed from every decoded tensor, or graph pruning would
    # skip the decoding whose errors are the point.
    sizes = [tf.size(example[key]) for key in (schema.IMAGE, schema.MASK)
             if key in example]
    label_ok = tf.debugging.assert_less(
        example[schema.LABEL], tf.constant(info.num_classes, tf.int64))
    with tf.control_dependencies([label_ok]):
      return shard_index, row, tf.add_n(sizes)

  every = tf.data.Dataset.from_tensor_slices(
      (tf.range(len(shards), dtype=tf.int64), shards,
       tf.constant(readable, tf.int64)))
  decoded = every.flat_map(records_of).map(
      decode, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
  good = set()
  for shard_index, row, _ in decoded.batch(1024).as_numpy_iterator():
    good.update(zip(shard_index.tolist(), row.tolist()))
  return [(s, r) for s, count in enumerate(readable) for r in range(count)
          if (s, r) not in good]
