"""The run directory: its file names and the reads that every stage shares.

A run directory (docs/ARCHITECTURE.md) is written by the trainer (hep2tf.training) and
read by evaluate, predict and sweeps (hep2tf.evaluation, hep2tf.training.sweep), so
its names are spelled here, once, below both. The `RunDir` object that will open,
validate and name a run's files (issue 18) is planned for this module.
"""

from __future__ import annotations

import json
import os

from hep2tf import storage

CONFIG_FILE = "config.json"
BEST_MODEL = "best.keras"
FINAL_MODEL = "model.keras"
COMPLETE_FILE = "complete.json"
BEST_STATE = "best.json"
HISTORY_FILE = "history.csv"
CHECKPOINT_DIR = "checkpoints"
EXPORT_DIR = "export"


def prepare_run_dir(model_dir: str, overwrite: bool) -> None:
  """With overwrite, whatever is in `model_dir` (a finished run or a killed one) is
  removed, so the run starts afresh with the settings it is given. Without it a
  finished run is an error and an unfinished one resumes from its last epoch."""
  if overwrite and storage.exists(model_dir):
    storage.rmtree(model_dir)
  elif storage.exists(os.path.join(model_dir, COMPLETE_FILE)):
    raise FileExistsError(
        f"{model_dir} holds a finished run; pass --overwrite to train it again "
        "or choose another --model_dir")
  storage.makedirs(model_dir)


def read_run_config(model_dir: str) -> dict:
  """RUN/config.json as a dict; FileNotFoundError when `model_dir` is not a run."""
  path = os.path.join(model_dir, CONFIG_FILE)
  if not storage.exists(path):
    raise FileNotFoundError(f"{model_dir} is not a hep2tf run directory "
                            f"({CONFIG_FILE} is missing)")
  with storage.open_file(path) as f:
    return json.load(f)


def read_history(model_dir: str) -> dict:
  """The run's per-epoch metrics (history.csv) as {column: list}; {} if none yet."""
  path = os.path.join(model_dir, HISTORY_FILE)
  if not storage.exists(path):
    return {}
  import pandas as pd
  with storage.open_file(path) as f:
    frame = pd.read_csv(f)
  # A resumed run may have logged an epoch twice; the later row is the one kept.
  frame = frame.drop_duplicates(subset="epoch", keep="last")
  return {k: frame[k].tolist() for k in frame.columns}


def is_complete(run_dir: str) -> bool:
  """Whether the run finished (its complete.json exists; a local path)."""
  return os.path.exists(os.path.join(run_dir, COMPLETE_FILE))


def read_complete(run_dir: str) -> dict:
  """The trainer's summary of a finished run (val_mca, val_aca, train_seconds, ...)."""
  with open(os.path.join(run_dir, COMPLETE_FILE)) as f:
    return json.load(f)
