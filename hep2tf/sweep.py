"""Hyper-parameter sweeps with k-fold cross-validation over the training split.

  python -m hep2tf.sweep --flagfile=configs/cnn.flags \
      --grid=learning_rate=1e-2,1e-3 --grid=batch_size=16,32 \
      --folds=5 --group_by=specimen --output_dir=sweeps/cnn [--refit] [--parallel]

`--folds=official` cross-validates on the dataset's own folds instead (C-NMC's
fold_0..2, recorded in the records' manifest).

The base configuration comes from the train flags (a train flagfile works here, and
train flags on the command line override it); each `--grid=KEY=V1,V2,...` names a train
flag and its values. Every combination x fold is a normal run directory:

  DIR/trials/<combination>/fold_<k>/   (or .../run/ with --folds=0 or 1); eval/test/
                                       holds its model's scores on --test_split
  DIR/results.csv, DIR/results.md      ranked by mean validation MCA over the folds;
                                       beside it the mean test MCA of the same models
                                       and the validation-test gap (flagged over
                                       0.05), for reading, not for choosing
  DIR/refit/                           with --refit: the best combination retrained on
                                       the whole training split, evaluated on test
  DIR/sweep.json                       the base configuration and the grid

`tensorboard --logdir DIR` shows every trial in the HParams dashboard. Running the same
command again after an interruption skips finished trials (their complete.json) and
resumes a half-finished one from its last epoch.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

from hep2tf import console, errors, runlock, train
from hep2tf.training import config as config_lib
from hep2tf.training import sweep, sweep_results, trainer


def define_flags() -> None:
  """Defines the train flags (the base configuration) and the sweep's own."""
  train.define_flags()
  flags.DEFINE_multi_string(
      "grid", [], "KEY=V1,V2,...: a train flag and the values to try; repeat for "
      "more keys (all combinations run).")
  flags.DEFINE_string(
      "folds", "5", "Cross-validation folds of the training split; 0 or 1: one run "
      "per combination, validated on --eval_split; 'official': the dataset's own "
      "folds recorded in the manifest (C-NMC fold_0..2, converted with "
      "--layout_option fold_as_split=train --validation_fraction=0).")
  flags.DEFINE_enum(
      "group_by", "specimen", ["specimen", "patient", "none"],
      "specimen/patient: no group of the records (specimen or patient) in two "
      "folds; none: folds ignore groups.")
  flags.DEFINE_string("output_dir", None,
                      "Sweep folder (trials, results tables, refit).")
  flags.DEFINE_boolean(
      "refit", False, "Retrain the best combination on the whole training split and "
      "evaluate it on --test_split.")
  flags.DEFINE_string(
      "test_split", "test", "Split every trial's model (for the validation-test gap "
      "in the table, not for ranking) and the refit model are evaluated on.")
  flags.DEFINE_boolean(
      "parallel", False, "Run trials in separate processes, one per visible GPU "
      "(sequential on CPU or one GPU).")
  flags.DEFINE_string(
      "trial_dir", None, "Internal (--parallel): run the one trial described by "
      "TRIAL_DIR/trial.json and exit.")

FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    if FLAGS.trial_dir:
      trial, by_group = sweep.read_trial_file(FLAGS.trial_dir)
      sweep.run_trial(trial, by_group, FLAGS.force_unlock)
      return
    if not FLAGS.output_dir:
      raise app.UsageError("--output_dir is required")
    if FLAGS.model_dir:
      logging.warning("--model_dir is not used by a sweep; trials go under "
                      "--output_dir")
    num_folds, base = sweep.resolve_folds(FLAGS.folds, config_lib.config_from_flags())
    result = sweep.run_sweep(
        base, sweep.parse_grid(FLAGS.grid), FLAGS.output_dir,
        num_folds=num_folds, by_group=FLAGS.group_by != "none",
        refit=FLAGS.refit, test_split=FLAGS.test_split, parallel=FLAGS.parallel,
        force_unlock=FLAGS.force_unlock)
  except (trainer.TrainingError, runlock.RunLocked, errors.InputError,
          FileNotFoundError, ValueError) as e:
    logging.error("%s", e)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(errors.EXIT_INPUT_ERROR)
  print(sweep_results.markdown_table(result["table"]))
  if result["refit"]:
    r = result["refit"]
    print(f"refit {r['combination']} on {r['split']}: MCA {r['mca']:.4f}  "
          f"ACA {r['aca']:.4f}  ({r['run_dir']})")
  print(f"results in {os.path.join(FLAGS.output_dir, sweep_results.RESULTS_MD)}")
  if result["failures"]:
    sys.exit(1)


def run():
  define_flags()
  console.run(main, interrupted=(
      "finished trials are kept; the same command skips them and "
      "resumes the one that was running"))


if __name__ == "__main__":
  run()
