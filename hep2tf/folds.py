"""K-fold cross-validation over a split of the records.

Folds are made from the records' manifest, stratified by class and, when groups
(specimens, patients) are known, grouped so that no group is in two folds; offline
copies of one source image share its id and so its fold. The reader keeps or drops
examples by id (`fold_predicate`), so no records are rewritten.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from hep2tf import schema, storage

MANIFEST = "manifest.csv"


@dataclasses.dataclass(frozen=True)
class FoldSpec:
  """Fold `index` of `num_folds`; holdout=True selects that fold, False the rest."""

  index: int
  num_folds: int
  holdout: bool
  seed: int = 0
  by_group: bool = True

  def __post_init__(self):
    if self.num_folds < 2 or not 0 <= self.index < self.num_folds:
      raise ValueError(f"fold {self.index} of {self.num_folds}: need num_folds >= 2 "
                       "and 0 <= fold < num_folds")


@functools.lru_cache(maxsize=16)
def assign_folds(records_dir: str, split: str, num_folds: int, seed: int = 0,
                 by_group: bool = True) -> dict[str, int]:
  """Maps each source id of `split` to its fold (0 .. num_folds - 1).

  Stratified by label; grouped by the manifest's `group` column when every example
  has one and by_group is set. Deterministic for a seed.
  """
  path = os.path.join(records_dir, MANIFEST)
  if not storage.exists(path):
    raise FileNotFoundError(f"{records_dir}: {MANIFEST} is missing; folds are made "
                            "from the manifest the converter writes")
  with storage.open_file(path) as f:
    manifest = pd.read_csv(f, dtype=str, keep_default_na=False)
  rows = manifest[manifest["split"] == split].drop_duplicates("id")
  if rows.empty:
    raise ValueError(f"{records_dir}: split {split!r} has no examples")
  labels = rows["label"].to_numpy()
  grouped = by_group and (rows["group"] != "").all()
  if grouped and rows["group"].nunique() < num_folds:
    raise ValueError(f"{records_dir}: {rows['group'].nunique()} groups in {split!r}, "
                     f"fewer than {num_folds} folds")
  if grouped:
    splitter = StratifiedGroupKFold(num_folds, shuffle=True, random_state=seed)
    parts = splitter.split(np.zeros(len(rows)), labels, rows["group"].to_numpy())
  else:
    splitter = StratifiedKFold(num_folds, shuffle=True, random_state=seed)
    parts = splitter.split(np.zeros(len(rows)), labels)
  fold_of = np.empty(len(rows), dtype=np.int64)
  for fold, (_, held) in enumerate(parts):
    fold_of[held] = fold
  return dict(zip(rows["id"].tolist(), fold_of.tolist()))


def fold_size(records_dir: str, split: str, spec: FoldSpec) -> int:
  """Examples (copies included) of `split` that the spec selects."""
  folds = assign_folds(os.fspath(records_dir), split, spec.num_folds, spec.seed,
                       spec.by_group)
  with storage.open_file(os.path.join(records_dir, MANIFEST)) as f:
    manifest = pd.read_csv(f, dtype=str, keep_default_na=False)
  ids = manifest.loc[manifest["split"] == split, "id"]
  in_fold = ids.map(folds).to_numpy() == spec.index
  return int(in_fold.sum() if spec.holdout else (~in_fold).sum())


def fold_predicate(records_dir: str, split: str, spec: FoldSpec):
  """A tf function serialized-record -> bool that keeps the examples of the spec."""
  folds = assign_folds(os.fspath(records_dir), split, spec.num_folds, spec.seed,
                       spec.by_group)
  table = tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(
          tf.constant(list(folds.keys())),
          tf.constant(list(folds.values()), dtype=tf.int64)),
      default_value=-1)
  id_spec = {schema.ID: tf.io.FixedLenFeature([], tf.string, default_value="")}

  def keep(serialized):
    source_id = tf.io.parse_single_example(serialized, id_spec)[schema.ID]
    in_fold = tf.equal(table.lookup(source_id), spec.index)
    return in_fold if spec.holdout else tf.logical_not(in_fold)

  return keep
