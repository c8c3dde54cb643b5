"""The data section of a training run: which records, which splits and folds, and
how they are read (hep2tf.data.reader)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from hep2tf.config.core import flag


@dataclasses.dataclass
class DataConfig:
  """The records a run reads and how; the flags of the data section."""

  SECTION: ClassVar[str] = "data"

  records_dir: str = flag(
      "records/synthetic_hep2", "Records folder made by create_records.")
  train_split: str = flag("train", "Split to train on.")
  eval_split: str = flag(
      "validation", "Split for per-epoch validation and the best checkpoint.")
  image_size: int = flag(
      0, "Side the images are resized (with padding) to; 0 keeps the records' size.")
  apply_mask: bool = flag(
      False, "Zero the background outside the cell mask (records with masks).")
  balanced_sampling: bool = flag(
      False, "Sample training batches with equal class frequencies.")
  shuffle_buffer: int = flag(8192, "Examples in the shuffle buffer.")
  cache: str = flag(
      "auto", "Keep decoded examples in memory after the first epoch. auto: when a "
      "split's decoded size fits reader.CACHE_BUDGET_BYTES (1 GiB); logged.",
      choices=("auto", "true", "false"))
  # Cross-validation (hep2tf.sweep runs these): hold out fold `fold` of `num_folds`
  # of the training split for validation; 0 folds uses eval_split.
  num_folds: int = flag(
      0, "Hold out one of this many folds of the training split (stratified, grouped "
      "by specimen/patient) for validation; 0 validates on --eval_split.")
  fold: int = flag(0, "Which fold to hold out (0 .. num_folds - 1).")
  fold_by_group: bool = flag(
      True, "Keep each specimen/patient in one fold when groups are known.")
  fold_column: str = flag(
      "", "Manifest column whose values are the folds: 'fold' for a dataset's own "
      "folds (C-NMC fold_0..2, sorted to 0..num_folds - 1); empty: folds are made "
      "(stratified, grouped).")

  @property
  def validation_split(self) -> str:
    """The split the run validates on: the training split's held-out fold when it
    cross-validates, else eval_split."""
    return self.train_split if self.num_folds else self.eval_split
