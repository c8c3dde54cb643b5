"""The records folder: its file names, its metadata and the `Records` object.

A records folder (written by hep2tf.convert; docs/ARCHITECTURE.md lists its files) is
opened once, as a `Records`: `Records.open(path)` reads and checks `hep2tf.json`
(`read_info`, the one place it is parsed) into a `DatasetInfo`, and the object then
answers the rest: a split's shards (`shards`, the set checked complete), its size,
or a cross-validation fold's (`num_examples`), the manifest (read on first use) and
the folds made from it (`fold_of`), damaged records (`check_shards`, `verify`). The
reader, the trainer, evaluation and the benchmarks receive the object, never a path
to read again.

One schema, two users: `DatasetInfo.to_json` and `from_json` (data/dataset_info.py,
below this module and `integrity`, which both use it) are the pair behind
`Records.write_info` (the local writer, the Beam pipeline and the tests) and
`read_info`; `shard_file_name` and `parse_shard_name` make and parse the shard names.
"""

from __future__ import annotations

import json
import os
import re

import pandas as pd
import tensorflow as tf

from hep2tf import storage
from hep2tf.data import folds
from hep2tf.data import integrity
from hep2tf.data.dataset_info import DatasetInfo
from hep2tf.errors import InputError

# The files hep2tf writes into a records folder beside the shards and the TFDS
# metadata; docs/ARCHITECTURE.md says what is in each.
INFO_FILE = "hep2tf.json"
TFDS_INFO_FILE = "dataset_info.json"
MANIFEST = "manifest.csv"
CLASS_COUNTS = "class_counts.json"
REJECTS = "rejects.csv"
# Shard names: TFDS's default template; `shard_file_name` makes one,
# `parse_shard_name` parses one.
FILENAME_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
_SHARD_RE = re.compile(r"^(?P<name>.+)-(?P<split>[^-]+)\.tfrecord-"
                       r"(?P<index>\d+)-of-(?P<total>\d+)$")
_REQUIRED_KEYS = ("name", "class_names", "channels", "splits")


def shard_file_name(name: str, split: str, shard: int, num_shards: int) -> str:
  """`<name>-<split>.tfrecord-00000-of-00008`, the TFDS default template."""
  return f"{name}-{split}.tfrecord-{shard:05d}-of-{num_shards:05d}"


def parse_shard_name(file_name: str) -> tuple[str, str, int, int] | None:
  """(name, split, shard, num_shards) of a `shard_file_name`; None for other files."""
  match = _SHARD_RE.match(file_name)
  if match is None:
    return None
  return (match["name"], match["split"], int(match["index"]), int(match["total"]))


def read_info(records_dir: str) -> DatasetInfo:
  """Parses `records_dir/hep2tf.json`: the only place the file is read.

  Raises:
    InputError naming the folder when it is missing, has no hep2tf.json, or the file
    is not valid JSON with the required keys.
  """
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
  return DatasetInfo.from_json(raw)


class Records:
  """A records folder, opened and validated once.

  `path` and `info` (its hep2tf.json) are read at `open`; the shard listing, the
  manifest and the folds made from it are read on first use and kept on the object,
  so they describe the folder as it was then. A folder rewritten since is opened
  anew.
  """

  def __init__(self, path: str | os.PathLike, info: DatasetInfo):
    self.path = os.fspath(path)
    self.info = info
    self._shards: dict[str, list[tuple[int, int, str]]] | None = None
    self._manifest: pd.DataFrame | None = None
    self._folds: dict[tuple, dict[str, int]] = {}

  @classmethod
  def open(cls, path: str | os.PathLike) -> Records:
    """Reads and checks the folder's hep2tf.json; see `read_info` for the errors."""
    return cls(path, read_info(os.fspath(path)))

  @staticmethod
  def write_info(folder: str | os.PathLike, info: DatasetInfo) -> None:
    """Writes `info` as `folder/hep2tf.json` (the converter writes it last)."""
    with storage.open_file(os.path.join(os.fspath(folder), INFO_FILE), "w") as f:
      f.write(json.dumps(info.to_json(), indent=2) + "\n")

  def __repr__(self) -> str:
    return f"Records({self.path!r})"

  def shards(self, split: str) -> list[str]:
    """The shard paths of `split`, sorted: `<name>-<split>.tfrecord-NNNNN-of-MMMMM`.

    Raises:
      InputError when the split has no shards (naming the splits that do exist) or
      a shard of the `-of-MMMMM` set is missing, so a half-copied folder is not read
      as a whole one.
    """
    if self._shards is None:
      self._shards = {}
      for entry in sorted(storage.listdir(self.path)):
        parsed = parse_shard_name(entry)
        if parsed and parsed[0] == self.info.name:
          self._shards.setdefault(parsed[1], []).append(
              (parsed[2], parsed[3], os.path.join(self.path, entry)))
    if split not in self._shards:
      raise InputError(f"no shards for split {split!r}; shards exist for splits "
                       f"{sorted(self._shards)}", file=self.path)
    shards = sorted(self._shards[split])
    totals = {total for _, total, _ in shards}
    indices = [index for index, _, _ in shards]
    if len(totals) != 1 or indices != list(range(totals.pop())):
      raise InputError(f"split {split!r} has an incomplete set of shards: "
                       f"{[os.path.basename(p) for _, _, p in shards]}",
                       file=self.path)
    return [path for _, _, path in shards]

  def num_examples(self, split: str, fold: folds.FoldSpec | None = None) -> int:
    """Examples in `split` (from the metadata, no shard is read), or with `fold`
    those of the split that the fold selects (copies included; from the manifest)."""
    if split not in self.info.splits:
      raise InputError(f"no split {split!r}; this folder has splits "
                       f"{sorted(self.info.splits)}", file=self.path)
    if fold is None:
      return self.info.splits[split]
    return folds.fold_size(self.manifest, split, self.fold_of(split, fold), fold)

  @property
  def manifest(self) -> pd.DataFrame:
    """manifest.csv (all columns str, "" where empty), read on first use."""
    if self._manifest is None:
      path = os.path.join(self.path, MANIFEST)
      if not storage.exists(path):
        raise InputError(f"{MANIFEST} is missing (folds and checks are made from "
                         "the manifest the converter writes)", file=self.path)
      with storage.open_file(path) as f:
        self._manifest = pd.read_csv(f, dtype=str, keep_default_na=False)
    return self._manifest

  def fold_of(self, split: str, fold: folds.FoldSpec) -> dict[str, int]:
    """Source id -> fold of `split` under `fold`'s folding (`folds.assign_folds`
    over the manifest); made once per object."""
    key = (split, fold.num_folds, fold.seed, fold.by_group, fold.column)
    if key not in self._folds:
      self._folds[key] = folds.assign_folds(
          self.manifest, split, fold.num_folds, seed=fold.seed,
          by_group=fold.by_group, column=fold.column, where=self.path)
    return self._folds[key]

  def official_folds(self, split: str = "train") -> list[str]:
    """The dataset's own folds in `split` (`folds.official_folds`), sorted."""
    return folds.official_folds(self.manifest, split, where=self.path)

  def check_shards(self, split: str) -> list[InputError]:
    """Reads every record of `split`; one InputError (shard, record index) per
    damaged or undecodable record (`integrity.damaged_records`), [] when clean.

    The trainer calls it when reading fails, and raises what it finds instead of
    TensorFlow's bare DataLossError.
    """
    return integrity.damaged_records(self.info, self.shards(split))

  def verify(self) -> list[str]:
    """Reads every record of every shard; returns the problems found (empty: fine).

    Each shard named by dataset_info.json must exist, every record must pass its
    CRC and parse and decode (`integrity.read_shard`), and the record counts must
    match dataset_info.json, hep2tf.json and the manifest. A problem names the shard
    and record index.
    """
    try:
      with storage.open_file(os.path.join(self.path, TFDS_INFO_FILE)) as f:
        tfds_splits = json.load(f).get("splits", [])
    except (OSError, ValueError, tf.errors.OpError) as e:
      return [f"{self.path}: cannot read the metadata ({e})"]
    problems = []
    for split_info in tfds_splits:
      split = split_info["name"]
      lengths = [int(n) for n in split_info.get("shardLengths", [])]
      for shard, expected in enumerate(lengths):
        file_name = shard_file_name(self.info.name, split, shard, len(lengths))
        path = os.path.join(self.path, file_name)
        if not storage.exists(path):
          problems.append(f"{file_name}: missing")
          continue
        count, problem = integrity.read_shard(path, self.info)
        if problem:
          problems.append(f"{file_name}: record {count}: {problem}")
        elif count != expected:
          problems.append(f"{file_name}: {count} records, metadata says {expected}")
      if sum(lengths) != self.info.splits.get(split):
        problems.append(f"split {split}: {sum(lengths)} records in "
                        f"{TFDS_INFO_FILE}, {self.info.splits.get(split)} in "
                        f"{INFO_FILE}")
    return problems + self._manifest_problems()

  def _manifest_problems(self) -> list[str]:
    try:
      listed = self.manifest["split"].value_counts()
    except (InputError, OSError, ValueError, KeyError, tf.errors.OpError) as e:
      return [f"{MANIFEST}: cannot read ({e})"]
    return [f"{MANIFEST}: {int(listed.get(split, 0))} rows for {split}, expected "
            f"{count}" for split, count in self.info.splits.items()
            if int(listed.get(split, 0)) != count]
