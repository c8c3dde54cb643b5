"""splits.py: stratified grouped splits, content hashes, balance, dihedral copies."""

import numpy as np
import pandas as pd
import pytest

from hep2tf.data import splits
from hep2tf.errors import InputError, Rejects

CLASSES = ["a", "b", "c"]


def _table(n_per_class=(40, 30, 20), groups_per_class=4, split=""):
  """Rows with a unique fake hash; each group (specimen) holds one class."""
  rows = []
  for c, (label, n) in enumerate(zip(CLASSES, n_per_class)):
    for i in range(n):
      rows.append({"id": f"{label}{i}", "path": f"/x/{label}{i}.png", "label": label,
                   "mask_path": "", "intensity": "",
                   "group": f"{label}-g{i % groups_per_class}", "split": split,
                   "sha256": f"{c:02d}{i:062d}"})
  return pd.DataFrame(rows)


def test_grouped_split_keeps_groups_apart_and_every_class_everywhere():
  out = splits.assign_splits(_table(), validation_fraction=0.16, test_fraction=0.2,
                             seed=1)
  assert (out.groupby("group")["split"].nunique() == 1).all()
  for split in splits.SPLITS:
    assert set(out[out["split"] == split]["label"]) == set(CLASSES)
  assert (out["split"] == "train").sum() > (out["split"] == "test").sum()


def test_ungrouped_split_is_stratified_with_the_promised_sizes():
  table = _table(n_per_class=(500, 300, 200)).assign(group="")
  out = splits.assign_splits(table, validation_fraction=0.16, test_fraction=0.2,
                             seed=0)
  counts = out["split"].value_counts()
  assert abs(counts["test"] - 200) <= 3 and abs(counts["validation"] - 160) <= 3
  share = out[out["split"] == "test"]["label"].value_counts(normalize=True)
  assert abs(share["c"] - 0.2) < 0.02


def test_same_seed_same_split_other_seed_differs():
  table = _table()
  first = splits.assign_splits(table, seed=3)["split"].tolist()
  assert first == splits.assign_splits(table, seed=3)["split"].tolist()
  assert first != splits.assign_splits(table, seed=4)["split"].tolist()


def test_identical_files_are_tied_into_one_split():
  table = _table().assign(group="")
  # Two copies of one file under one label (under two labels both would be left
  # out: tests/data/test_lab_folders.py).
  table.loc[5, "sha256"] = table.loc[30, "sha256"]
  table.loc[6, "sha256"] = table.loc[31, "sha256"]
  for seed in range(5):
    out = splits.assign_splits(table, seed=seed)
    assert out.loc[5, "split"] == out.loc[30, "split"]
    assert out.loc[6, "split"] == out.loc[31, "split"]


def test_layout_splits_are_kept_and_validation_carved_from_train():
  table = _table(split="train")
  table.loc[table.index % 5 == 0, "split"] = "test"
  table.loc[table.index % 5 == 0, "group"] = "held-out"
  out = splits.assign_splits(table, validation_fraction=0.16, test_fraction=0.2)
  np.testing.assert_array_equal(out["split"] == "test", table["split"] == "test")
  carved = out[out["split"] != "test"]
  assert (carved.groupby("group")["split"].nunique() == 1).all()
  assert (carved["split"] == "validation").sum() > 0


def test_layout_duplicate_across_splits_fails_or_is_skipped():
  table = _table(split="train")
  table.loc[0, "split"] = "test"
  table.loc[1, "sha256"] = table.loc[0, "sha256"]
  # The train copy is kept; the test copy is the error, naming both files.
  with pytest.raises(InputError, match="/x/a1.png") as info:
    splits.assign_splits(table, validation_fraction=0)
  assert info.value.file == "/x/a0.png"
  rejects = Rejects()
  out = splits.assign_splits(table, validation_fraction=0, on_error="skip",
                             rejects=rejects)
  assert len(out) == len(table) - 1 and len(rejects) == 1
  assert out.groupby("sha256")["split"].nunique().max() == 1


def test_hashes_are_computed_from_files_when_missing(tmp_path):
  for name, content in [("x.png", b"1"), ("y.png", b"1"), ("z.png", b"2")]:
    (tmp_path / name).write_bytes(content)
  table = pd.DataFrame({"id": list("xyz"), "label": ["a", "a", "b"], "group": "",
                        "path": [str(tmp_path / f"{n}.png") for n in "xyz"],
                        "mask_path": "", "intensity": "", "split": ""})
  out = splits.add_hashes(table)
  assert out["sha256"][0] == out["sha256"][1] != out["sha256"][2]
  table.loc[2, "path"] = str(tmp_path / "missing.png")
  rejects = Rejects()
  assert len(splits.add_hashes(table, on_error="skip", rejects=rejects)) == 2
  assert rejects.errors[0].row == 2


@pytest.mark.parametrize("mode, per_class", [("oversample", 40),
                                             ("undersample", 20)])
def test_balance_gives_exact_equal_train_counts(mode, per_class):
  table = _table().assign(split="train")
  table.loc[table.index % 10 == 0, "split"] = "test"
  out = splits.balance(table, mode, seed=0)
  train = out[out["split"] == "train"]["label"].value_counts()
  expected = table[table["split"] == "train"]["label"].value_counts()
  assert set(train) == {expected.max() if mode == "oversample" else expected.min()}
  assert (out["split"] == "test").sum() == (table["split"] == "test").sum()
  if mode == "oversample":   # whole rounds first: every row of class c appears
    assert set(table[(table.split == "train") & (table.label == "c")]["id"]) <= set(
        out[out.split == "train"]["id"])
  else:
    assert not out[out.split == "train"]["id"].duplicated().any()


def test_dihedral_copies_are_distinct_and_counted():
  table = _table().assign(split="train")
  table.loc[:9, "split"] = "test"
  out = splits.add_dihedral_copies(table, 3, seed=0)
  n_train = (table["split"] == "train").sum()
  assert (out["split"] == "train").sum() == n_train * 4
  assert (out["split"] == "test").sum() == 10
  assert set(out[out.split == "test"]["dihedral"]) == {0}
  per_id = out[out.split == "train"].groupby("id")["dihedral"]
  assert (per_id.nunique() == 4).all() and (per_id.min() == 0).all()
  assert out["dihedral"].max() <= 7


def test_small_grouped_set_carves_validation_from_training_groups():
  table = _table(groups_per_class=2)            # 2 specimens per class, 3 splits
  out = splits.assign_splits(table, validation_fraction=0.16, test_fraction=0.2,
                             seed=0)
  notes = out.attrs["split_notes"]
  assert len(notes) == 4 and "a has 2 groups" in notes[0]
  assert "NOT group-disjoint" in notes[-1]
  outer = out[out["split"] != "validation"]
  assert (outer.groupby("group")["split"].nunique() == 1).all()
  for split in splits.SPLITS:
    assert set(out[out["split"] == split]["label"]) == set(CLASSES), split
  train_groups = set(out[out["split"] == "train"]["group"])
  assert set(out[out["split"] == "validation"]["group"]) <= train_groups
  # Validation is about validation_fraction / (1 - test share) of the train cells.
  in_train = out["split"].isin(["train", "validation"])
  share = (out["split"] == "validation").sum() / in_train.sum()
  assert 0.12 < share < 0.28
  assert (out.groupby("sha256")["split"].nunique() == 1).all()


def test_enough_groups_leave_no_notes_and_fail_mode_names_the_flag():
  out = splits.assign_splits(_table(groups_per_class=4), seed=0)
  assert out.attrs["split_notes"] == []
  with pytest.raises(InputError, match="small_groups=carve") as info:
    splits.assign_splits(_table(groups_per_class=2), small_groups="fail")
  assert "a (2 groups)" in str(info.value)
  # Layout splits: validation carved from a train split with one group per class.
  table = _table(groups_per_class=1, split="train")
  table.loc[table.index % 5 == 0, "split"] = "test"
  table.loc[table.index % 5 == 0, "group"] = "held-out"
  out = splits.assign_splits(table, validation_fraction=0.16, test_fraction=0.2)
  assert out.attrs["split_notes"] and (out["split"] == "validation").sum() > 0
  assert set(out[out["split"] == "validation"]["label"]) == set(CLASSES)
