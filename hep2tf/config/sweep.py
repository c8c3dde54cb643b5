"""The sweep section: the options of `python -m hep2tf.sweep` beside its base
configuration (the train flags, hep2tf.config.train)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from hep2tf.config.core import flag

GROUP_BY = ("specimen", "patient", "none")


@dataclasses.dataclass(frozen=True)
class SweepConfig:
  """A grid of train flags x cross-validation folds."""

  SECTION: ClassVar[str] = "sweep"

  grid: tuple[str, ...] = flag(
      (), "KEY=V1,V2,...: a train flag and the values to try; repeat for more keys "
      "(all combinations run).")
  folds: str = flag(
      "5", "Cross-validation folds of the training split; 0 or 1: one run per "
      "combination, validated on --eval_split; 'official': the dataset's own folds "
      "recorded in the manifest (C-NMC fold_0..2, converted with --layout_option "
      "fold_as_split=train --validation_fraction=0).")
  group_by: str = flag(
      "specimen", "specimen/patient: no group of the records (specimen or patient) in "
      "two folds; none: folds ignore groups.", choices=GROUP_BY)
  output_dir: str | None = flag(None, "Sweep folder (trials, results tables, refit).")
  refit: bool = flag(
      False, "Retrain the best combination on the whole training split and evaluate "
      "it on --test_split.")
  test_split: str = flag(
      "test", "Split every trial's model (for the validation-test gap in the table, "
      "not for ranking) and the refit model are evaluated on.")
  parallel: bool = flag(
      False, "Run trials in separate processes, one per visible GPU (sequential on "
      "CPU or one GPU).")
  trial_dir: str | None = flag(
      None, "Internal (--parallel): run the one trial described by "
      "TRIAL_DIR/trial.json and exit.")
