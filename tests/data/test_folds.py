"""folds.py: k-fold cross-validation over a split, grouped and stratified."""

import collections

import numpy as np
import pytest

from hep2tf.convert import create
from hep2tf.convert.plan import ConvertConfig
from hep2tf.data import folds, reader, schema, synth
from hep2tf.data.records import Records


def _convert(root, num_images=240, seed=1, overwrite=False):
  synth.generate(root / f"src{seed}", num_images, seed=seed, image_size=32,
                 num_specimens=24)
  create.create_records(ConvertConfig(
      "icpr2014", str(root / f"src{seed}"), output_dir=str(root / "rec"),
      group_split=False, num_workers=1, num_shards=2, progress=False,
      overwrite=overwrite))
  return str(root / "rec")


@pytest.fixture(scope="module")
def records(tmp_path_factory):
  """240 cells of 24 specimens (4 per class); record splits ignore specimens so that
  the training split holds every specimen."""
  return Records.open(_convert(tmp_path_factory.mktemp("folds")))


def _train_rows(records):
  manifest = records.manifest
  return manifest[manifest["split"] == "train"]


def _fold_of(records, num_folds=3, seed=0, by_group=True):
  return records.fold_of("train", folds.FoldSpec(0, num_folds, True, seed=seed,
                                                 by_group=by_group))


@pytest.mark.parametrize("by_group", [True, False])
def test_folds_partition_the_split(records, by_group):
  rows = _train_rows(records)
  fold_of = _fold_of(records, by_group=by_group)
  assert set(fold_of) == set(rows["id"])
  assert set(fold_of.values()) == {0, 1, 2}
  sizes = [records.num_examples("train", folds.FoldSpec(k, 3, True,
                                                        by_group=by_group))
           for k in range(3)]
  assert sum(sizes) == len(rows) and min(sizes) > 0
  for k in range(3):
    rest = records.num_examples("train", folds.FoldSpec(k, 3, False,
                                                        by_group=by_group))
    assert rest + sizes[k] == len(rows)


def test_no_specimen_in_two_folds_and_classes_spread(records):
  rows = _train_rows(records)
  fold_of = _fold_of(records)
  rows = rows.assign(fold=rows["id"].map(fold_of))
  assert rows["group"].nunique() >= 12
  assert (rows.groupby("group")["fold"].nunique() == 1).all()
  # Stratified: each of the 4-specimen classes reaches at least two folds.
  assert (rows.groupby("label")["fold"].nunique() >= 2).all()


def test_ungrouped_folds_mix_specimens(records):
  rows = _train_rows(records)
  fold_of = _fold_of(records, by_group=False)
  rows = rows.assign(fold=rows["id"].map(fold_of))
  assert (rows.groupby("group")["fold"].nunique() > 1).any()
  # Stratified by label: per class, fold sizes differ by at most one.
  counts = rows.groupby(["label", "fold"]).size().unstack(fill_value=0)
  assert (counts.max(axis=1) - counts.min(axis=1) <= 1).all()


def test_records_without_official_folds_say_so(records):
  with pytest.raises(ValueError, match="no official folds"):
    folds.official_folds(records.manifest, where=records.path)
  with pytest.raises(ValueError, match="gives 0 folds"):
    folds.assign_folds(records.manifest, "train", 3, column=folds.FOLD_COLUMN)


def test_seed_changes_the_folds_and_is_deterministic(records):
  a = folds.assign_folds(records.manifest, "train", 3, seed=0)
  assert folds.assign_folds(records.manifest, "train", 3, seed=0) == a
  assert folds.assign_folds(records.manifest, "train", 3, seed=5) != a
  assert _fold_of(records, seed=0) == a


def test_create_split_reads_exactly_the_fold(records):
  fold_of = _fold_of(records)
  seen = collections.Counter()
  for holdout in (True, False):
    spec = folds.FoldSpec(1, 3, holdout)
    split = reader.create_split(records, "train", batch_size=64,
                                training=False, fold=spec, with_meta=True)
    ids = np.concatenate([meta[schema.ID].numpy().astype(str)
                          for _, _, meta in split.dataset])
    assert len(ids) == records.num_examples("train", spec) == split.num_examples
    assert all((fold_of[i] == 1) == holdout for i in ids)
    seen.update(ids)
  assert set(seen) == set(fold_of) and max(seen.values()) == 1


def test_a_folder_rewritten_in_one_process_gets_new_folds(tmp_path):
  """No cache keyed on a path: the folds come from the manifest of the folder as
  opened, so converting other images into the same folder and opening it again gives
  the new images' folds (a path-keyed lru_cache once returned the old ones)."""
  spec = folds.FoldSpec(0, 3, True)
  first = Records.open(_convert(tmp_path, num_images=120, seed=1))
  before = first.fold_of("train", spec)
  second = Records.open(_convert(tmp_path, num_images=150, seed=2, overwrite=True))
  after = second.fold_of("train", spec)
  assert set(after) == set(_train_rows(second)["id"]) != set(before)
  assert second.num_examples("train", spec) + second.num_examples(
      "train", folds.FoldSpec(0, 3, False)) == second.num_examples("train")


def test_bad_fold_specs_are_refused(records):
  with pytest.raises(ValueError, match="num_folds >= 2"):
    folds.FoldSpec(3, 3, True)
  with pytest.raises(ValueError, match="fewer than 40 folds"):
    records.fold_of("train", folds.FoldSpec(0, 40, True))
