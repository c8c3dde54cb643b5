"""The run directory: one `RunDir` object names its files and reads them.

A run directory (docs/ARCHITECTURE.md) is written by the trainer (hep2tf.training) and
read by evaluate, predict and sweeps (hep2tf.evaluation, hep2tf.training.sweep), so
it is defined here, once, below both. A `RunDir` is a path that may be local or a
tf.io.gfile URL (hep2tf.storage); everything that builds a run's paths or reads its
files asks it:

  run = RunDir(model_dir)
  run.held(force_unlock)        the trainer's chief holds the lock (one run at a
                                time); a run that never started leaves no folder
  run.prepare(overwrite)        once, by the trainer, before anything is written
  run.config_file, run.flags_file, run.best_model, run.final_model, run.history_file,
  run.complete_file, run.checkpoint_dir, run.export_dir, run.eval_dir(split), ...
  run.read_config(), run.read_history(), run.is_complete(), run.read_complete(),
  run.read_eval(split)
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Iterator

from hep2tf import atomic, runlock, storage

CONFIG_FILE = "config.json"
FLAGS_FILE = "flags.txt"
BEST_MODEL = "best.keras"
FINAL_MODEL = "model.keras"
# The checkpoints a later run may start from (--weights=RUN), best first.
RUN_CHECKPOINTS = (BEST_MODEL, FINAL_MODEL)
COMPLETE_FILE = "complete.json"
BEST_STATE = "best.json"
HISTORY_FILE = "history.csv"
CHECKPOINT_DIR = "checkpoints"
EXPORT_DIR = "export"
LEARNING_CURVES = "learning_curves.png"
EVAL_DIR = "eval"
EVAL_METRICS = "metrics.json"


class RunDir:
  """A run directory at `path` (local or a gfile URL): its files and their reads."""

  def __init__(self, path: str | os.PathLike):
    self.path = os.fspath(path)
    self.config_file = self.join(CONFIG_FILE)
    self.flags_file = self.join(FLAGS_FILE)
    self.best_model = self.join(BEST_MODEL)
    self.final_model = self.join(FINAL_MODEL)
    self.best_state = self.join(BEST_STATE)
    self.history_file = self.join(HISTORY_FILE)
    self.complete_file = self.join(COMPLETE_FILE)
    self.checkpoint_dir = self.join(CHECKPOINT_DIR)
    self.export_dir = self.join(EXPORT_DIR)
    self.learning_curves = self.join(LEARNING_CURVES)
    self.lock_file = self.join(runlock.LOCK_FILE)

  def __repr__(self) -> str:
    return f"RunDir({self.path!r})"

  def __fspath__(self) -> str:
    return self.path

  def join(self, *names: str) -> str:
    return os.path.join(self.path, *names)

  def model_file(self, checkpoint: str = "best") -> str:
    """The model of `checkpoint`: best (best validation MCA) or final."""
    return self.best_model if checkpoint == "best" else self.final_model

  def eval_dir(self, split: str) -> str:
    """RUN/eval/<split>/: what evaluate wrote for `split`."""
    return self.join(EVAL_DIR, split)

  # --- Making and reading it --------------------------------------------------------

  def lock(self, force: bool = False) -> runlock.RunLock:
    """Takes RUN/lock.json for this process (`runlock.RunLock.acquire`); RunLocked
    when another live run holds it."""
    return runlock.RunLock.acquire(self.path, force=force)

  @contextlib.contextmanager
  def held(self, force_unlock: bool = False) -> Iterator[runlock.RunLock]:
    """The folder locked for this process while the block runs (`lock`). When the
    block fails before the first epoch is written (no history.csv) in a folder that
    did not exist before, the folder is removed: a run that never started leaves
    no run folder behind."""
    fresh = not storage.exists(self.path)
    lock = self.lock(force_unlock)
    try:
      yield lock
    except BaseException:
      if fresh and not storage.exists(self.history_file):
        self.clear()
        lock.release()
        if not storage.listdir(self.path):
          storage.rmtree(self.path, ignore_errors=True)
      raise
    finally:
      lock.release()

  def prepare(self, overwrite: bool) -> None:
    """With overwrite, whatever is in the folder (a finished run or a killed one) is
    removed, so the run starts afresh with the settings it is given (its lock
    stays). Without it a finished run is an error and an unfinished one resumes
    from its last epoch."""
    if overwrite and storage.exists(self.path):
      self.clear()
    elif self.is_complete():
      raise FileExistsError(
          f"{self.path} holds a finished run; pass --overwrite to train it again "
          "or choose another --model_dir")
    storage.makedirs(self.path)

  def clear(self) -> None:
    """Removes everything in the folder but its lock."""
    for name in storage.listdir(self.path):
      if name != runlock.LOCK_FILE:
        path = self.join(name)
        if storage.isdir(path):
          storage.rmtree(path)
        else:
          storage.remove(path)

  def read_config(self) -> dict:
    """RUN/config.json as a dict; FileNotFoundError when this is not a run."""
    if not storage.exists(self.config_file):
      raise FileNotFoundError(f"{self.path} is not a hep2tf run directory "
                              f"({CONFIG_FILE} is missing)")
    return _read_json(self.config_file)

  def write_config(self, config: dict) -> None:
    atomic.write_json(self.config_file, config)

  def read_history(self) -> dict:
    """The per-epoch metrics (history.csv) as {column: list}; {} if none yet."""
    if not storage.exists(self.history_file):
      return {}
    import pandas as pd
    with storage.open_file(self.history_file) as f:
      frame = pd.read_csv(f)
    # A resumed run may have logged an epoch twice; the later row is the one kept.
    frame = frame.drop_duplicates(subset="epoch", keep="last")
    return {k: frame[k].tolist() for k in frame.columns}

  def is_complete(self) -> bool:
    """Whether the run finished (its complete.json, written last, exists)."""
    return storage.exists(self.complete_file)

  def read_complete(self) -> dict:
    """The trainer's summary of a finished run (val_mca, val_aca, train_seconds,
    epochs)."""
    return _read_json(self.complete_file)

  def write_complete(self, summary: dict) -> None:
    atomic.write_json(self.complete_file, summary)

  def read_eval(self, split: str) -> dict | None:
    """RUN/eval/<split>/metrics.json (evaluate's report), or None when not there."""
    path = os.path.join(self.eval_dir(split), EVAL_METRICS)
    return _read_json(path) if storage.exists(path) else None


def _read_json(path: str) -> dict:
  with storage.open_file(path) as f:
    return json.load(f)
