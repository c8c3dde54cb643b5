"""K-fold cross-validation over a split of the records.

Folds are made from the records' manifest, stratified by class and, when groups
(specimens, patients) are known, grouped so that no group is in two folds; offline
copies of one source image share its id and so its fold. The functions here are pure
over the manifest table; `Records.fold_of` keeps their answer for the folder it
opened (so a folder rewritten and opened again gets new folds). The reader keeps or
drops examples by id (`fold_predicate`), so no records are rewritten. A dataset's own
folds (C-NMC's fold_0..2, in the manifest's `fold` column) are used instead with
`FoldSpec.column` (`train --fold_column=fold`, `sweep --folds=official`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from hep2tf.data import schema

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


def run_fold(config, holdout: bool) -> FoldSpec | None:
  """The cross-validation fold of a run's config (a `hep2tf.config` TrainConfig:
  num_folds, fold, seed, fold_by_group, fold_column): the fold held out for
  validation (holdout) or the rest, which trains; None when the run does not
  cross-validate. The trainer and evaluate both ask this, so a run is calibrated on
  exactly the fold it was validated on (a dataset's own folds included)."""
  if not config.num_folds:
    return None
  return FoldSpec(index=config.fold, num_folds=config.num_folds, holdout=holdout,
                  seed=config.seed, by_group=config.fold_by_group,
                  column=config.fold_column)


def official_folds(manifest: pd.DataFrame, split: str = "train",
                   where: str = "") -> list[str]:
  """The dataset's own folds (FOLD_COLUMN values) in `split` of a records manifest
  (`Records.manifest`), sorted; `where` (the folder) starts the error messages.

  Raises ValueError when the records have none, or when another split holds some of
  them (the official protocol then cannot run on `split` alone; the message says how
  to convert so that it can).
  """
  if FOLD_COLUMN not in manifest.columns or (manifest[FOLD_COLUMN] == "").all():
    raise ValueError(f"{where}: the records have no official folds (the "
                     f"manifest's {FOLD_COLUMN!r} column is empty); only layouts "
                     "that ship folds (cnmc) have them. Use --folds=K.")
  with_fold = manifest[manifest[FOLD_COLUMN] != ""]
  inside = sorted(set(with_fold.loc[with_fold["split"] == split, FOLD_COLUMN]))
  outside = with_fold[(with_fold["split"] != split)]
  if not outside.empty:
    where_else = ", ".join(f"{f} in {s}" for (f, s), _ in
                           outside.groupby([FOLD_COLUMN, "split"]))
    raise ValueError(
        f"{where}: official folds are outside split {split!r} ({where_else}), so "
        "the official cross-validation cannot run on it. Convert with "
        "--layout_option fold_as_split=train --validation_fraction=0 to keep every "
        "fold in train.")
  return inside


def assign_folds(manifest: pd.DataFrame, split: str, num_folds: int, seed: int = 0,
                 by_group: bool = True, column: str = "",
                 where: str = "") -> dict[str, int]:
  """Maps each source id of `split` in a records manifest to its fold (0 ..
  num_folds - 1); `where` (the folder) starts the error messages.

  Stratified by label; grouped by the manifest's `group` column when every example
  has one and by_group is set. Deterministic for a seed. With `column` (FOLD_COLUMN)
  the folds are that column's values in sorted order (fold_0 -> 0, ...); there must
  be exactly num_folds of them. A pure function of the table: `Records.fold_of`
  keeps its answer for the folder it opened.
  """
  rows = manifest[manifest["split"] == split].drop_duplicates("id")
  if rows.empty:
    raise ValueError(f"{where}: split {split!r} has no examples")
  if column:
    return _column_folds(where, rows, column, num_folds)
  labels = rows["label"].to_numpy()
  grouped = by_group and (rows["group"] != "").all()
  if grouped and rows["group"].nunique() < num_folds:
    raise ValueError(f"{where}: {rows['group'].nunique()} groups in {split!r}, "
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


def _column_folds(where: str, rows: pd.DataFrame, column: str,
                  num_folds: int) -> dict[str, int]:
  values = rows[column] if column in rows.columns else pd.Series([""] * len(rows))
  names = sorted(set(values) - {""})
  if (values == "").any() or len(names) != num_folds:
    raise ValueError(f"{where}: the manifest's {column!r} column gives "
                     f"{len(names)} folds ({', '.join(names) or 'none'}) and "
                     f"{int((values == '').sum())} examples without one; "
                     f"{num_folds} folds were asked for")
  index = {name: i for i, name in enumerate(names)}
  return dict(zip(rows["id"].tolist(), values.map(index).tolist()))


def fold_size(manifest: pd.DataFrame, split: str, fold_of: dict[str, int],
              spec: FoldSpec) -> int:
  """Examples (copies included) of `split` that the spec selects, given the
  split's `fold_of` (`assign_folds`)."""
  ids = manifest.loc[manifest["split"] == split, "id"]
  in_fold = ids.map(fold_of).to_numpy() == spec.index
  return int(in_fold.sum() if spec.holdout else (~in_fold).sum())


def fold_predicate(fold_of: dict[str, int], spec: FoldSpec):
  """A tf function serialized-record -> bool that keeps the examples of the spec,
  given the split's `fold_of` (`assign_folds`)."""
  table = tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(
          tf.constant(list(fold_of.keys())),
          tf.constant(list(fold_of.values()), dtype=tf.int64)),
      default_value=-1)
  id_spec = {schema.ID: tf.io.FixedLenFeature([], tf.string, default_value="")}

  def keep(serialized):
    source_id = tf.io.parse_single_example(serialized, id_spec)[schema.ID]
    in_fold = tf.equal(table.lookup(source_id), spec.index)
    return in_fold if spec.holdout else tf.logical_not(in_fold)

  return keep
