"""Splits, class balance and offline dihedral copies of the example table.

The functions take the example table of `hep2tf.data.sources` (columns id, path, label,
mask_path, intensity, group, split; all str) and return a new table; nothing is changed
in place. After `assign_splits` every row has a split and a `sha256` column (hex digest
of the source file); `balance` and `add_dihedral_copies` touch the `train` rows only and
add an int `dihedral` column (0 = the source as is).

Rules, from the design brief:
- splits the layout defines are kept; `validation` is carved out of `train` when the
  layout has none and validation_fraction > 0;
- otherwise train / validation / test are made stratified by class and, when groups
  (specimen, patient) are known and by_group, grouped: no group in two splits;
- no source image (by content hash) in two splits: identical files are tied into one
  group before splitting, and a layout that puts one file's content in two splits is an
  InputError (a reject under on_error="skip");
- no content under two labels: identical files labelled differently are all left out
  together, as one InputError naming every file (one reject under "skip");
- small grouped sets: when some class has fewer groups than the grouped splits need (3
  for train / validation / test), whole groups go to train and test only and
  validation is carved from the training cells of training groups, stratified by class
  (small_groups="carve", logged and recorded: validation is then not group-disjoint
  from train), or the conversion stops (small_groups="fail"). The returned table's
  `attrs["split_notes"]` says what was done (empty when nothing was).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from absl import logging

from hep2tf.data import images
from hep2tf.errors import InputError, Rejects

TRAIN, VALIDATION, TEST = "train", "validation", "test"
SPLITS = (TRAIN, VALIDATION, TEST)
BALANCE_MODES = ("none", "oversample", "undersample")
DEFAULT_VALIDATION_FRACTION = 0.16
DEFAULT_TEST_FRACTION = 0.2
SMALL_GROUP_MODES = ("carve", "fail")


def add_hashes(examples: pd.DataFrame, *, on_error: str = "fail",
               rejects: Rejects | None = None) -> pd.DataFrame:
  """Returns the table with a `sha256` column (hex digest of each file's bytes).

  Unreadable files raise InputError(file, row) under on_error="fail"; under "skip" the
  row is dropped and the error added to `rejects`.
  """
  hashes, keep = [], []
  for row, path in enumerate(examples["path"]):
    try:
      hashes.append(images.file_sha256(path))
      keep.append(True)
    except InputError as e:
      _fail_or_skip(InputError(e.reason, file=e.file, row=row), on_error, rejects)
      hashes.append("")
      keep.append(False)
  out = examples.assign(sha256=hashes)
  return out[keep].reset_index(drop=True)


def assign_splits(examples: pd.DataFrame, *,
                  validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
                  test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = 0,
                  by_group: bool = True, on_error: str = "fail",
                  rejects: Rejects | None = None,
                  small_groups: str = "carve") -> pd.DataFrame:
  """Gives every example a split; see the module docstring for the rules.

  Args:
    examples: the example table; a `sha256` column is computed when missing.
    validation_fraction, test_fraction: fractions of all examples for made splits.
      When only validation is carved out of a layout's train split, the part of train
      taken is validation_fraction / (1 - test_fraction), so train : validation keeps
      the ratio a made split would have (0.8 : 0.2 of train with the defaults).
    seed: makes the assignment repeatable.
    by_group: keep each non-empty `group` in one split.
    on_error, rejects: "fail" raises InputError; "skip" drops rows into `rejects`.
    small_groups: "carve" or "fail", for classes with too few groups (see the module
      docstring).

  Returns:
    A new table with `split` in {train, validation, test} and `sha256` set, and
    `attrs["split_notes"]`: a list of sentences, one per class that had too few
    groups, plus the rule applied; [] when every split is group-disjoint.
  """
  if small_groups not in SMALL_GROUP_MODES:
    raise ValueError(f"small_groups must be one of {SMALL_GROUP_MODES}, got "
                     f"{small_groups!r}")
  if not 0 <= validation_fraction < 1 or not 0 <= test_fraction < 1 or (
      validation_fraction + test_fraction >= 1):
    raise ValueError("fractions must be in [0, 1) and leave some for train, got "
                     f"validation={validation_fraction} test={test_fraction}")
  if "sha256" not in examples.columns:
    examples = add_hashes(examples, on_error=on_error, rejects=rejects)
  examples = _drop_label_conflicts(examples, on_error, rejects)
  examples = examples.reset_index(drop=True).copy()
  examples["split"] = examples["split"].fillna("").astype(str)
  defined = examples["split"] != ""
  if defined.any():
    if not defined.all():
      first = int(np.flatnonzero(~defined)[0])
      raise InputError("the layout gives a split to some images but not this one",
                       file=examples["path"][first], row=first)
    unknown = sorted(set(examples["split"]) - set(SPLITS))
    if unknown:
      raise InputError(f"unknown split name(s) {unknown}; expected {list(SPLITS)}")
    examples = _drop_cross_split_duplicates(examples, on_error, rejects)
    split, notes = _carve_validation(examples, validation_fraction, test_fraction,
                                     seed, by_group, small_groups)
  else:
    split, notes = _made_splits(examples, validation_fraction, test_fraction, seed,
                                by_group, small_groups)
  examples["split"] = split
  examples.attrs["split_notes"] = notes
  return examples


def _carve_validation(examples: pd.DataFrame, validation_fraction: float,
                      test_fraction: float, seed: int, by_group: bool,
                      small_groups: str) -> tuple[pd.Series, list[str]]:
  """The layout's splits, with validation carved from its train split when the layout
  has none (and one is asked for): (the split column, the notes)."""
  split = examples["split"].copy()
  if validation_fraction == 0 or (split == VALIDATION).any():
    return split, []
  is_train = split == TRAIN
  part = validation_fraction / (1 - test_fraction)
  train = examples[is_train]
  notes = _small_group_notes(train, [TRAIN, VALIDATION], by_group, small_groups)
  split[is_train] = _grouped_assignment(train, {TRAIN: 1 - part, VALIDATION: part},
                                        seed, by_group and not notes)
  return split, notes


def _made_splits(examples: pd.DataFrame, validation_fraction: float,
                 test_fraction: float, seed: int, by_group: bool,
                 small_groups: str) -> tuple[pd.Series, list[str]]:
  """Splits made from scratch by the fractions: (the split column, the notes)."""
  fractions = {TRAIN: 1 - validation_fraction - test_fraction,
               VALIDATION: validation_fraction, TEST: test_fraction}
  fractions = {name: f for name, f in fractions.items() if f > 0}
  notes = _small_group_notes(examples, list(fractions), by_group, small_groups)
  if not (notes and VALIDATION in fractions):
    return pd.Series(_grouped_assignment(examples, fractions, seed, by_group),
                     index=examples.index), notes
  # Whole groups to train and test; validation from the training cells.
  outer = {name: f for name, f in fractions.items() if name != VALIDATION}
  outer[TRAIN] += validation_fraction
  split = pd.Series(_grouped_assignment(examples, outer, seed, by_group),
                    index=examples.index)
  is_train = split == TRAIN
  part = validation_fraction / outer[TRAIN]
  split[is_train] = _grouped_assignment(
      examples[is_train], {TRAIN: 1 - part, VALIDATION: part}, seed, False)
  return split, notes


def _small_group_notes(examples: pd.DataFrame, names: list[str], by_group: bool,
                       small_groups: str) -> list[str]:
  """Sentences naming the classes with fewer groups than `names` (the splits to
  fill) and the rule that follows; [] when groups are unknown or suffice. Raises
  InputError under small_groups="fail"."""
  if (not by_group or VALIDATION not in names or "group" not in examples.columns
      or not (examples["group"].fillna("").astype(str) != "").any()):
    return []
  keys = group_keys(examples, by_group)
  pairs = pd.DataFrame({"key": keys, "label": examples["label"].astype(str)})
  per_class = pairs.drop_duplicates().groupby("label")["key"].count()
  short = per_class[per_class < len(names)]
  if short.empty:
    return []
  listed = ", ".join(f"{label} ({n} group{'s' if n > 1 else ''})"
                     for label, n in short.items())
  needed = f"{len(names)} that {' / '.join(names)} need"
  if small_groups == "fail":
    raise InputError(
        f"too few specimens/patients to split by group: {listed}, fewer than the "
        f"{needed}. Pass --small_groups=carve to carve validation from the training "
        "cells of training groups (not group-disjoint), --nogroup_split to split "
        "by cell, or --validation_fraction=0 for no validation split")
  notes = [f"{label} has {n} group{'s' if n > 1 else ''}, fewer than the {needed}"
           for label, n in short.items()]
  rule = ("validation carved from the training cells of training groups, "
          "stratified by class: validation is NOT group-disjoint from train"
          + ("; whole groups go to train and test" if TEST in names else ""))
  for note in notes:
    logging.warning("small grouped set: %s", note)
  logging.warning("small grouped set: %s (--small_groups=fail stops instead)", rule)
  return notes + [rule]


def balance(examples: pd.DataFrame, mode: str = "none",
            seed: int = 0) -> pd.DataFrame:
  """Equal class counts in the train split; other splits are left as they are.

  mode: "none"; "oversample" repeats each class in whole rounds, then a seeded sample
  without replacement, up to the largest class; "undersample" keeps a seeded sample of
  each class the size of the smallest. Returns a new table, train rows first.
  """
  if mode not in BALANCE_MODES:
    raise ValueError(f"balance must be one of {BALANCE_MODES}, got {mode!r}")
  if mode == "none":
    return examples.reset_index(drop=True)
  rng = np.random.default_rng(seed)
  is_train = examples["split"] == TRAIN
  train = examples[is_train]
  counts = train["label"].value_counts()
  if counts.empty:
    return examples.reset_index(drop=True)
  target = int(counts.max() if mode == "oversample" else counts.min())
  parts = []
  for label in sorted(counts.index):
    rows = np.flatnonzero(train["label"].to_numpy() == label)
    rounds, extra = divmod(target, len(rows))
    picked = np.concatenate([np.tile(rows, rounds),
                             rng.choice(rows, extra, replace=False)])
    parts.append(train.iloc[np.sort(picked, kind="stable")])
  return pd.concat(parts + [examples[~is_train]], ignore_index=True)


def add_dihedral_copies(examples: pd.DataFrame, copies: int,
                        seed: int = 0) -> pd.DataFrame:
  """Adds `copies` (0..7) rows per train row, each with a distinct dihedral id 1..7.

  The ids are chosen per row by `seed`; `hep2tf.data.dihedral` says what each id
  does. All rows get an int `dihedral` column (0 for the originals). Returns a new
  table.
  """
  if not 0 <= copies <= 7:
    raise ValueError(f"augment copies must be in 0..7, got {copies}")
  out = examples.reset_index(drop=True).copy()
  if "dihedral" not in out.columns:
    out["dihedral"] = 0
  out["dihedral"] = out["dihedral"].astype(int)
  if copies == 0:
    return out
  rng = np.random.default_rng(seed)
  train = out[out["split"] == TRAIN]
  ids = np.stack([rng.choice(np.arange(1, 8), copies, replace=False)
                  for _ in range(len(train))]) if len(train) else np.zeros((0, copies))
  extra = []
  for c in range(copies):
    extra.append(train.assign(dihedral=ids[:, c].astype(int)))
  return pd.concat([out] + extra, ignore_index=True)


def group_keys(examples: pd.DataFrame, by_group: bool = True) -> np.ndarray:
  """One int key per row: rows sharing a group or a file hash share a key.

  Rows without a group (or with by_group False) start as their own group; identical
  files (same sha256) are then tied together, transitively (union-find).
  """
  n = len(examples)
  parent = np.arange(n)

  def find(i):
    while parent[i] != i:
      parent[i] = parent[parent[i]]
      i = parent[i]
    return i

  def tie(column):
    first = {}
    for i, value in enumerate(column):
      if value == "":
        continue
      j = first.setdefault(value, i)
      root_i, root_j = find(i), find(j)
      if root_i != root_j:
        parent[max(root_i, root_j)] = min(root_i, root_j)

  if by_group and "group" in examples.columns:
    tie(examples["group"].fillna("").astype(str).tolist())
  if "sha256" in examples.columns:
    tie(examples["sha256"].astype(str).tolist())
  return np.array([find(i) for i in range(n)])


def _grouped_assignment(examples: pd.DataFrame, fractions: dict[str, float],
                        seed: int, by_group: bool) -> np.ndarray:
  """Split name per row: stratified by label, whole groups to one split.

  Greedy: first, for every class with at least as many groups as splits, one group of
  that class goes to each non-train split (so every class is in every split); then the
  other groups, largest first (seeded order among equals), each go to the split whose
  per-class counts move closest to their targets (least added squared error).
  """
  names = list(fractions)
  labels = examples["label"].astype(str).to_numpy()
  classes = sorted(set(labels))
  class_index = {c: i for i, c in enumerate(classes)}
  keys = group_keys(examples, by_group)
  unique_keys, row_group = np.unique(keys, return_inverse=True)
  counts = np.zeros((len(unique_keys), len(classes)))
  np.add.at(counts, (row_group, [class_index[c] for c in labels]), 1)
  targets = np.outer([fractions[n] for n in names], counts.sum(axis=0))
  assigned = np.zeros((len(names), len(classes)))
  group_split = np.full(len(unique_keys), -1)
  rng = np.random.default_rng(seed)

  def put(group, split):
    group_split[group] = split
    assigned[split] += counts[group]

  # Seed each non-train split with one (small) group of every class that has enough.
  primary = counts.argmax(axis=1)
  sizes = counts.sum(axis=1)
  for c in range(len(classes)):
    own = np.flatnonzero(primary == c)
    if len(own) < len(names):
      continue
    own = own[rng.permutation(len(own))]
    own = own[np.argsort(sizes[own], kind="stable")]
    for split, group in zip(range(1, len(names)), own):
      put(group, split)

  rest = np.flatnonzero(group_split < 0)
  rest = rest[rng.permutation(len(rest))]
  rest = rest[np.argsort(-sizes[rest], kind="stable")]
  for group in rest:
    before = (assigned - targets) ** 2
    after = (assigned + counts[group] - targets) ** 2
    put(group, int(np.argmin((after - before).sum(axis=1))))
  return np.array(names)[group_split[row_group]]


def _drop_cross_split_duplicates(examples: pd.DataFrame, on_error: str,
                                 rejects: Rejects | None) -> pd.DataFrame:
  """Identical files in two layout splits: an error, or keep the earliest split's."""
  order = {name: i for i, name in enumerate(SPLITS)}
  keep = np.ones(len(examples), bool)
  for _, rows in _groups_with_several(examples, "split"):
    ranked = rows.assign(rank=rows["split"].map(order)).sort_values(
        ["rank"], kind="stable")
    first = ranked.iloc[0]
    for index, other in ranked.iterrows():
      if other["split"] == first["split"]:
        continue
      _fail_or_skip(InputError(
          f"same content (sha256 {other['sha256'][:12]}...) as {first['path']} in "
          f"split {first['split']}, but this file is in split {other['split']}",
          file=other["path"], row=int(index)), on_error, rejects)
      keep[index] = False
  return examples[keep].reset_index(drop=True)


def _drop_label_conflicts(examples: pd.DataFrame, on_error: str,
                          rejects: Rejects | None) -> pd.DataFrame:
  """Identical files under two labels: the label is in doubt, so all of them are
  one error (fail) or one reject naming every file (skip), and all are dropped."""
  examples = examples.reset_index(drop=True)
  keep = np.ones(len(examples), bool)
  for digest, rows in _groups_with_several(examples, "label"):
    if not digest:
      continue
    named = "; ".join(f"{path} ({label})"
                      for path, label in zip(rows["path"], rows["label"]))
    _fail_or_skip(InputError(
        f"the same content (sha256 {digest[:12]}...) under {rows['label'].nunique()} "
        f"labels: {named}; all {len(rows)} files left out (the label is in doubt)",
        file=rows["path"].iloc[0]), on_error, rejects)
    keep[rows.index] = False
  return examples[keep].reset_index(drop=True)


def _groups_with_several(examples: pd.DataFrame, column: str):
  """(sha256, rows) of the files whose identical copies differ in `column`, by
  digest; only those groups are visited (a Python loop over every group costs
  a second per few thousand images)."""
  several = examples.groupby("sha256")[column].transform("nunique") >= 2
  return examples[several.to_numpy()].groupby("sha256", sort=True)


def _fail_or_skip(error: InputError, on_error: str, rejects: Rejects | None) -> None:
  if on_error == "fail":
    raise error
  if on_error != "skip":
    raise ValueError(f"on_error must be fail or skip, got {on_error!r}")
  if rejects is not None:
    rejects.add(error)
