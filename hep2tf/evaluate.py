"""Evaluates a run on a split, in the terms this field reports.

  python -m hep2tf.evaluate --model_dir=RUN --split=test [--tta] [--calibrate]
      [--min_confidence=0.9] [--explain_cells=24]

Prints the table (per-class precision/recall/F1/specificity/support, macro and weighted
averages, ACA, MCA, the confusion matrix; ROC-AUC and positive-class F1 for binary
tasks; specimen/patient accuracy by voting when groups are known), then how far the
probabilities can be trusted: ECE (15 bins) before and after temperature scaling,
accuracy at 90% and 95% coverage, scores by intensity and by specimen, the
specimen-level vote table and the checks on the attribution maps. Writes
RUN/eval/<split>/ metrics.json, predictions.csv, specimen_votes.csv,
confusion_matrix.png, predictions.png, reliability.png, coverage_accuracy.png,
attributions.png, learning_curves.png and TensorBoard events of all of them.

--calibrate fits a temperature on the run's validation split, keeps it in
RUN/calibration.json and re-exports RUN/export with it; from then on evaluate, predict
and the SavedModel apply it. --min_confidence=P writes the coverage and accuracy that P
gives on the validation split into RUN/calibration.json.
"""

from __future__ import annotations

import sys

from absl import app, flags

from hep2tf import errors
from hep2tf.config import cli, core
from hep2tf.config.evaluate import EvaluateConfig


# EvaluateConfig's fields (hep2tf/config/evaluate.py).
SECTIONS = (EvaluateConfig,)


def define_flags() -> None:
  """Defines the command-line flags on the global FLAGS (once; importing this module
  defines none)."""
  core.define_flags(SECTIONS)


FLAGS = flags.FLAGS


def main(argv):
  from hep2tf import rundir
  from hep2tf.evaluation import evaluate, formatting
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.model_dir:
    raise app.UsageError("--model_dir is required")
  try:
    report = evaluate.evaluate_run(core.from_flags(EvaluateConfig, FLAGS))
  except (errors.InputError, FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(errors.EXIT_INPUT_ERROR)
  title = f"{FLAGS.model_dir} on {FLAGS.split}" + (" (TTA)" if FLAGS.tta else "")
  print(formatting.format_report(report, title=title))
  print(formatting.format_trust(report))
  print(f"{FLAGS.split}: MCA {report['mca']:.4f}  ACA {report['aca']:.4f}")
  if report.get("group_disjoint") is False:
    print("note: the records' splits are not specimen/patient/slide-disjoint "
          "(group_disjoint: false in hep2tf.json); these figures may be optimistic")
  gap = report.get("val_test_gap")
  if gap:
    print(f"validation MCA {gap['validation_mca']:.4f}, gap {gap['gap']:+.4f}"
          + (f"  WARNING: {gap['warning']}" if gap["warning"] else ""))
  for note in report["split_notes"]:
    print(f"split note (from the converter): {note}")
  print(f"written to {rundir.RunDir(FLAGS.model_dir).eval_dir(FLAGS.split)}")


def run():
  cli.run(main, SECTIONS, __doc__,
          interrupted="nothing half-written was published")


if __name__ == "__main__":
  run()
