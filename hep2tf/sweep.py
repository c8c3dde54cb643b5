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

from hep2tf import errors, train
from hep2tf.config import cli, core
from hep2tf.config.sweep import SweepConfig
from hep2tf.config.train import TrainConfig


# The train flags (the base configuration), --model_dir (refused) and the sweep's own.
SECTIONS = train.SECTIONS + (SweepConfig,)


def define_flags() -> None:
  """Defines the command-line flags on the global FLAGS (once)."""
  core.define_flags(SECTIONS)


FLAGS = flags.FLAGS


def main(argv):
  from hep2tf import runlock
  from hep2tf.training import sweep, sweep_results, trainer
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
    num_folds, base = sweep.resolve_folds(FLAGS.folds,
                                          core.from_flags(TrainConfig, FLAGS))
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
  cli.run(main, SECTIONS, __doc__, interrupted=(
      "finished trials are kept; the same command skips them and "
      "resumes the one that was running"))


if __name__ == "__main__":
  run()
