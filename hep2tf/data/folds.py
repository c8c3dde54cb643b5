"""K-fold cross-validation over a split of the records.

Folds are made from the records' manifest, stratified by class and, when groups
(specimens, patients) are known, grouped so that no group is in two folds; offline
copies of one source image share its id and so its fold. The reader keeps or drops
examples by id (`fold_predicate`), so no records are rewritten. A dataset's own
folds (C-NMC's fold_0..2, in the manifest's `fold` column) are used instead with
`FoldSpec.column` (`train --fold_column=fold`, `sweep --folds=official`).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from hep2tf import storage
from hep2tf.data import schema
from hep2tf.data.records import MANIFEST

# The manifest column with a dataset's own folds (C-NMC fold_0..2); "" elsewhere.
FOLD_COLUMN = "fold"


@dataclasses.dataclass(frozen=True)
class FoldSpec:
  """Fold `index` of `num_folds`; holdout=True selects that fold, False the rest."""

  index: int
  num_folds: int
  holdout: bool
  seed: int = 0
  by_group: bool = True
  column: str = ""     # a manifest column giving the folds (FOLD_COLUMN); "": made

  def __post_init__(self):
    if self.num_folds < 2 or not 0 <= self.index < self.num_folds:
      raise ValueError(f"fold {self.index} of {self.num_folds}: need num_folds >= 2 "
                       "and 0 <= fold < num_folds")


def _read_manifest(records_dir: str) -> pd.DataFrame:
  path = os.path.join(records_dir, MANIFEST)
  if not storage.exists(path):
    raise FileNotFoundError(f"{records_dir}: {MANIFEST} is missing; folds are made "
                            "from the manifest the converter writes")
  with storage.open_file(path) as f:
    return pd.read_csv(f, dtype=str, keep_default_na=False)


def official_folds(records_dir: str, split: str = "train") -> list[str]:
  """The dataset's own folds (FOLD_COLUMN values) in `split`, sorted.

  Raises ValueError when the records have none, or when another split holds some of
  them (the official protocol then cannot run on `split` alone; the message says how
  to convert so that it can).
  """
  manifest = _read_manifest(records_dir)
  if FOLD_COLUMN not in manifest.columns or (manifest[FOLD_COLUMN] == "").all():
    raise ValueError(f"{records_dir}: the records have no official folds (the "
                     f"manifest's {FOLD_COLUMN!r} column is empty); only layouts "
                     "that ship folds (cnmc) have them. Use --folds=K.")
  with_fold = manifest[manifest[FOLD_COLUMN] != ""]
  inside = sorted(set(with_fold.loc[with_fold["split"] == split, FOLD_COLUMN]))
  outside = with_fold[(with_fold["split"] != split)]
  if not outside.empty:
    where = ", ".join(f"{f} in {s}" for (f, s), _ in
                      outside.groupby([FOLD_COLUMN, "split"]))
    raise ValueError(
        f"{records_dir}: official folds are outside split {split!r} ({where}), so "
        "the official cross-validation cannot run on it. Convert with "
        "--layout_option fold_as_split=train --validation_fraction=0 to keep every "
        "fold in train.")
  return inside


@functools.lru_cache(maxsize=16)
def assign_folds(records_dir: str, split: str, num_folds: int, seed: int = 0,
                 by_group: bool = True, column: str = "") -> dict[str, int]:
  """Maps each source id of `split` to its fold (0 .. num_folds - 1).

  Stratified by label; grouped by the manifest's `group` column when every example
  has one and by_group is set. Deterministic for a seed. With `column` (FOLD_COLUMN)
  the folds are that column's values in sorted order (fold_0 -> 0, ...); there must
  be exactly num_folds of them.
  """
  manifest = _read_manifest(records_dir)
  rows = manifest[manifest["split"] == split].drop_duplicates("id")
  if rows.empty:
    raise ValueError(f"{records_dir}: split {split!r} has no examples")
  if column:
    return _column_folds(records_dir, rows, column, num_folds)
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


def _column_folds(records_dir: str, rows: pd.DataFrame, column: str,
                  num_folds: int) -> dict[str, int]:
  values = rows[column] if column in rows.columns else pd.Series([""] * len(rows))
  names = sorted(set(values) - {""})
  if (values == "").any() or len(names) != num_folds:
    raise ValueError(f"{records_dir}: the manifest's {column!r} column gives "
                     f"{len(names)} folds ({', '.join(names) or 'none'}) and "
                     f"{int((values == '').sum())} examples without one; "
                     f"{num_folds} folds were asked for")
  index = {name: i for i, name in enumerate(names)}
  return dict(zip(rows["id"].tolist(), values.map(index).tolist()))


def fold_size(records_dir: str, split: str, spec: FoldSpec) -> int:
  """Examples (copies included) of `split` that the spec selects."""
  folds = assign_folds(os.fspath(records_dir), split, spec.num_folds, spec.seed,
                       spec.by_group, spec.column)
  manifest = _read_manifest(records_dir)
  ids = manifest.loc[manifest["split"] == split, "id"]
  in_fold = ids.map(folds).to_numpy() == spec.index
  return int(in_fold.sum() if spec.holdout else (~in_fold).sum())


def fold_predicate(records_dir: str, split: str, spec: FoldSpec):
  """A tf function serialized-record -> bool that keeps the examples of the spec."""
  folds = assign_folds(os.fspath(records_dir), split, spec.num_folds, spec.seed,
                       spec.by_group, spec.column)
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
