"""Trains a model on converted records.

  python -m hep2tf.train --flagfile=configs/cnn.flags --model_dir=runs/cnn

The flags are TrainConfig's fields (hep2tf/config/, where their help is; `--help`
lists them by section: data, model, augment, train) and --model_dir. Flags on the
command line override the flagfile. The resolved flags are written to RUN/flags.txt.
Running the same command again after an interruption resumes from the last
completed epoch. One run at a time holds a run directory (RUN/lock.json): a second
one stops at once naming the holder's host, pid and start; a lock whose holder is
gone is taken over with a message, --force_unlock takes it whatever it says.
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging

from hep2tf import errors
from hep2tf.config import cli, core
from hep2tf.config.train import TrainConfig, TrainOutput

# One flag per TrainConfig field (hep2tf/config/), and --model_dir.
SECTIONS = (TrainConfig, TrainOutput)


def define_flags() -> None:
  """Defines the command-line flags on the global FLAGS (once; importing this module
  defines none)."""
  core.define_flags(SECTIONS)


FLAGS = flags.FLAGS


def check_paths(config: TrainConfig, model_dir: str) -> None:
  """Rejects path flags that cannot be right, before anything is written."""
  from hep2tf import models, storage
  if not storage.isdir(config.records_dir):
    raise FileNotFoundError(f"--records_dir={config.records_dir} is not a folder; "
                            "make records with python -m hep2tf.create_records")
  if storage.exists(model_dir) and not storage.isdir(model_dir):
    raise ValueError(f"--model_dir={model_dir} is a file, not a run directory")
  if storage.is_local(model_dir) and storage.is_local(config.records_dir):
    same = os.path.realpath(model_dir) == os.path.realpath(config.records_dir)
  else:
    same = model_dir.rstrip("/") == config.records_dir.rstrip("/")
  if same:
    raise ValueError("--model_dir must not be the records folder")
  if config.weights not in ("none", "", "imagenet"):
    if not storage.exists(config.weights):
      raise FileNotFoundError(f"--weights={config.weights}: no such file or run "
                              "directory (expected none, imagenet, a .keras/"
                              ".weights.h5 file or an earlier run)")
    models.resolve_weights(config.weights)   # InputError saying what it is


def main(argv):
  from hep2tf import runlock
  from hep2tf.training import trainer
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.model_dir:
    raise app.UsageError("--model_dir is required")
  config = core.from_flags(TrainConfig, FLAGS)
  try:
    check_paths(config, FLAGS.model_dir)
    report = trainer.train_and_evaluate(config, FLAGS.model_dir,
                                        FLAGS.force_unlock)
  except (trainer.TrainingError, runlock.RunLocked, errors.InputError,
          FileExistsError, FileNotFoundError, ValueError) as e:
    logging.error("%s", e)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(errors.EXIT_INPUT_ERROR)
  print(f"{config.eval_split}: MCA {report['mca']:.4f}  ACA {report['aca']:.4f}  "
        f"({report['epochs_run']} epochs, {report['train_seconds']:.0f} s, "
        f"{report['mixed_precision']}); "
        f"run in {FLAGS.model_dir}")


def run():
  cli.run(main, SECTIONS, __doc__, interrupted=(
      "the run resumes from its last finished epoch when the same "
      "command runs again"))


if __name__ == "__main__":
  run()
