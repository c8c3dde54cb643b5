"""The evaluate section: the options of `python -m hep2tf.evaluate` (a run on a
split) and `python -m hep2tf.predict` (a run on image files)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from hep2tf.config.core import flag

CHECKPOINTS = ("best", "final")
# Test-time BatchNorm statistics (hep2tf/evaluation/adapt.py).
ADAPT_MODES = ("none", "specimen", "split")
# Cells evaluate explains: enough for a grid, seconds on a CPU.
DEFAULT_EXPLAIN_CELLS = 24
# predict --fields: a specimen with fewer confident cells is answered "uncertain"
# (hep2tf/evaluation/votes.py).
DEFAULT_MIN_CELLS = 3


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
  """`python -m hep2tf.evaluate`: a run's model on a split of its records."""

  SECTION: ClassVar[str] = "evaluate"

  model_dir: str | None = flag(None, "Run directory made by hep2tf.train.")
  split: str = flag("test", "Split of the run's records to evaluate.")
  tta: bool = flag(False, "Average over the 8 dihedral transforms (4 for non-square "
                   "inputs).")
  checkpoint: str = flag("best", "best: best validation MCA; final: the last epoch.",
                         choices=CHECKPOINTS)
  records_dir: str | None = flag(None, "Evaluate on these records instead of the "
                                 "run's own (same classes).")
  batch_size: int = flag(128, "Batch size for inference.")
  calibrate: bool = flag(False, "Fit a temperature on the validation split, store it "
                         "in the run and re-export the SavedModel with it.")
  min_confidence: float | None = flag(None, "Abstention threshold P: write the "
                                      "coverage it gives on the validation split "
                                      "into the run.")
  explain_cells: int = flag(DEFAULT_EXPLAIN_CELLS, "Cells to explain with attribution "
                            "maps (0: none); each costs a few dozen passes.")
  adapt: str = flag(
      "none", "Test-time BatchNorm statistics (AdaBN; unsupervised, never reads "
      "labels; models with BatchNorm only): split: re-estimated from all cells of the "
      "split (a new lab's batch); specimen: from each specimen's own cells (harmful "
      "where a specimen has one pattern, as in IIF).", choices=ADAPT_MODES)


@dataclasses.dataclass(frozen=True)
class PredictConfig:
  """`python -m hep2tf.predict`: a run's model on image files, into a CSV."""

  SECTION: ClassVar[str] = "evaluate"

  model_dir: str | None = flag(None, "Run directory made by hep2tf.train.")
  output: str = flag("-", "CSV to write; - writes to standard output.")
  checkpoint: str = flag("best", "Which model of the run.", choices=CHECKPOINTS)
  tta: bool = flag(False, "Average over the dihedral transforms.")
  batch_size: int = flag(64, "Batch size for inference.")
  min_confidence: float | None = flag(
      None, "Mark rows whose top probability is below this as uncertain (default: "
      "the run's stored threshold, if any).")
  explain: bool = flag(False, "Write one attribution overlay per input.")
  explain_dir: str = flag("explanations", "Folder for the --explain PNGs.")
  fields: str | None = flag(None, "A fields folder (DIR/<specimen>/<field>.png): "
                            "classify its cells and answer per specimen.")
  output_dir: str | None = flag(None, "--fields: folder for specimens.csv, cells.csv "
                                "and the overlays.")
  min_cells: int = flag(DEFAULT_MIN_CELLS, "--fields: a specimen with fewer confident "
                        "cells is answered 'uncertain'.")
