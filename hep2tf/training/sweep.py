"""Hyper-parameter sweeps with k-fold cross-validation: the library of
`python -m hep2tf.sweep`.

A sweep is a grid over TrainConfig fields (`parse_grid`) times the folds of the
training split (`make_trials`); every trial is a normal run directory trained by
`trainer.train_and_evaluate` (`run_trial`), in sequence or one child process per GPU
(`run_parallel`); once trained, each trial's model is evaluated on the test split
(`trial_test_split`), for the validation-test gap only. `run_sweep` ranks the
combinations by mean validation MCA (`results_table`), optionally refits the best one
on the whole training split and tests it (`refit_best`), and writes the tables. The
folder layout and the command are described in hep2tf/sweep.py.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import subprocess
import sys
import time
from typing import Mapping, Sequence

import pandas as pd
from absl import logging

from hep2tf import atomic, errors, rundir
from hep2tf.data import folds
from hep2tf.data.records import Records
from hep2tf.evaluation import evaluate
from hep2tf.config import core
from hep2tf.config import train as config_lib
from hep2tf.training import distribute, sweep_results, trainer
from hep2tf.config.train import TrainConfig


TRIALS_DIR = "trials"
REFIT_DIR = "refit"
SWEEP_FILE = "sweep.json"
TRIAL_FILE = "trial.json"
# The sweep sets these on each trial; a grid over them would fight it.
RESERVED_KEYS = ("num_folds", "fold", "fold_column", "overwrite")


@dataclasses.dataclass
class Trial:
  """One combination on one fold: the run it is, where it lives and the split its
  model is tested on once trained (None: no test pass)."""

  combination: dict
  slug: str
  fold: int           # -1: no cross-validation, validated on the eval split
  config: TrainConfig
  run_dir: str
  test_split: str | None = None

  @property
  def run(self) -> rundir.RunDir:
    return rundir.RunDir(self.run_dir)

  @property
  def done(self) -> bool:
    """Trained, and tested when it has a test split."""
    return self.run.is_complete() and (
        not self.test_split or self.run.read_eval(self.test_split) is not None)


# --- The grid -----------------------------------------------------------------------


def parse_grid(specs: Sequence[str]) -> dict[str, list]:
  """['learning_rate=1e-2,1e-3', ...] -> {'learning_rate': [0.01, 0.001], ...}.

  Keys must be TrainConfig fields (the train flags) other than RESERVED_KEYS; the
  order of keys and values is kept, so the trial folders are stable across re-runs.
  Raises InputError for an unknown, reserved or repeated key or a bad value.
  """
  names = {f.name for f in dataclasses.fields(TrainConfig)}
  grid: dict[str, list] = {}
  for spec in specs:
    key, sep, values = spec.partition("=")
    key = key.strip().lstrip("-")
    if not sep or not key or not values.strip():
      raise errors.InputError(f"expected KEY=V1,V2,..., got {spec!r}", file="--grid")
    if key not in names:
      raise errors.InputError(f"{key!r} is not a train flag", file="--grid")
    if key in RESERVED_KEYS:
      raise errors.InputError(f"{key!r} is set by the sweep (--folds), not by a grid",
                              file="--grid")
    if key in grid:
      raise errors.InputError(f"{key!r} is given twice", file="--grid")
    parsed = [_parse_value(key, v.strip()) for v in values.split(",") if v.strip()]
    if len(set(map(repr, parsed))) != len(parsed):
      raise errors.InputError(f"{key!r} repeats a value", file="--grid")
    grid[key] = parsed
  return grid


def _parse_value(key: str, text: str):
  """One grid value as the train flag `key` parses it; InputError when it does not."""
  try:
    return config_lib.parse_value(key, text)
  except ValueError as e:
    raise errors.InputError(f"{key}: bad value {text!r}: {e}", file="--grid") from None


def combinations(grid: Mapping[str, Sequence]) -> list[dict]:
  """Every combination of the grid's values, the last key varying fastest."""
  keys = list(grid)
  return [dict(zip(keys, values)) for values in itertools.product(*grid.values())]


def combination_slug(combination: Mapping[str, object]) -> str:
  """A folder name for a combination: 'learning_rate-0.01_batch_size-16'."""
  if not combination:
    return "base"
  parts = [f"{k}-{v}" for k, v in combination.items()]
  return re.sub(r"[^0-9A-Za-z.+-]+", "_", "_".join(parts))


def make_trials(base: TrainConfig, grid: Mapping[str, Sequence],
                output_dir: str, num_folds: int,
                test_split: str | None = None) -> list[Trial]:
  """The trials of a sweep, combination-major, folds in order, each tested on
  `test_split` once trained (None: not tested).

  num_folds 0 or 1 gives one trial per combination validated on the eval split.
  """
  trials = []
  for combination in combinations(grid):
    slug = combination_slug(combination)
    if num_folds >= 2:
      fold_ids = range(num_folds)
    else:
      fold_ids = [-1]
    for fold in fold_ids:
      config = dataclasses.replace(
          base, **combination, overwrite=False,
          num_folds=num_folds if fold >= 0 else 0, fold=max(fold, 0))
      name = f"fold_{fold}" if fold >= 0 else "run"
      trials.append(Trial(combination, slug, fold, config,
                          os.path.join(output_dir, TRIALS_DIR, slug, name),
                          test_split))
  return trials


# --- Running one trial ------------------------------------------------------------


def write_trial_file(trial: Trial, by_group: bool) -> None:
  """RUN/trial.json: what `--trial_dir` runs (the trainer writes RUN/flags.txt, so
  `python -m hep2tf.train --flagfile=` reruns the trial too)."""
  os.makedirs(trial.run_dir, exist_ok=True)
  atomic.write_json(os.path.join(trial.run_dir, TRIAL_FILE), {
      "combination": trial.combination, "slug": trial.slug, "fold": trial.fold,
      "by_group": by_group, "test_split": trial.test_split,
      "config": core.to_json(trial.config)})


def read_trial_file(run_dir: str) -> tuple[Trial, bool]:
  path = os.path.join(run_dir, TRIAL_FILE)
  with open(path) as f:
    state = json.load(f)
  config = core.from_json(TrainConfig, state["config"], path)
  return (Trial(state["combination"], state["slug"], state["fold"], config, run_dir,
                state.get("test_split")), state["by_group"])


def run_trial(trial: Trial, by_group: bool = True,
              force_unlock: bool = False) -> dict:
  """Trains one trial unless it finished before, then, with a test split, evaluates
  its best model on it (RUN/eval/<split>/, as `hep2tf.evaluate` writes it; once per
  training). Returns the trial's complete.json.

  A half-finished trial resumes from its checkpoints (the trainer does that).
  Raises trainer.TrainingError when training fails (e.g. the loss went NaN),
  runlock.RunLocked when another run holds the trial's folder (`force_unlock`
  takes its lock whatever it says).
  """
  trained = not trial.run.is_complete()
  if trained:
    write_trial_file(trial, by_group)
    logging.info("Trial %s", trial.run_dir)
    config = dataclasses.replace(trial.config, fold_by_group=by_group)
    trainer.train_and_evaluate(config, trial.run_dir, force_unlock)
  else:
    logging.info("Finished before, not trained again: %s", trial.run_dir)
  if trial.test_split and (trained or not trial.done):
    # The fold model on specimens it never saw: the validation-test gap, read beside
    # the ranking, never used to choose.
    evaluate.evaluate_run(trial.run_dir, trial.test_split)
  return trial.run.read_complete()


# --- Running many ---------------------------------------------------------------------


def run_sequential(trials: Sequence[Trial], by_group: bool,
                   force_unlock: bool = False) -> dict[str, str]:
  """Runs the trials one after the other; returns {run_dir: error} of failed ones.
  A trial whose folder another run holds stops the sweep (runlock.RunLocked)."""
  failures = {}
  for i, trial in enumerate(trials):
    logging.info("Trial %d of %d", i + 1, len(trials))
    try:
      run_trial(trial, by_group, force_unlock)
    except trainer.TrainingError as e:
      # One diverging combination must not end the sweep; the table says it failed.
      logging.error("%s failed: %s", trial.run_dir, e)
      failures[trial.run_dir] = str(e)
  return failures


def run_parallel(trials: Sequence[Trial], by_group: bool, devices: Sequence[str],
                 poll_seconds: float = 2.0,
                 force_unlock: bool = False) -> dict[str, str]:
  """Runs unfinished trials in child processes, one per device at a time.

  Each child is `python -m hep2tf.sweep --trial_dir=RUN` with CUDA_VISIBLE_DEVICES
  set to its device; its output goes to RUN/log.txt. Returns {run_dir: error}.
  """
  pending = [t for t in trials if not t.done]
  trial_of = {t.run_dir: t for t in pending}
  for trial in pending:
    write_trial_file(trial, by_group)
  free = list(devices)
  running: dict[str, tuple[subprocess.Popen, str, object]] = {}
  failures = {}
  while pending or running:
    while pending and free:
      trial, device = pending.pop(0), free.pop(0)
      log = open(os.path.join(trial.run_dir, "log.txt"), "a")
      env = dict(os.environ, CUDA_VISIBLE_DEVICES=device)
      proc = subprocess.Popen(
          [sys.executable, "-m", "hep2tf.sweep", f"--trial_dir={trial.run_dir}"]
          + (["--force_unlock"] if force_unlock else []),
          stdout=log, stderr=subprocess.STDOUT, env=env)
      logging.info("Trial %s on GPU %s (pid %d)", trial.run_dir, device, proc.pid)
      running[trial.run_dir] = (proc, device, log)
    time.sleep(poll_seconds)
    for run_dir, (proc, device, log) in list(running.items()):
      if proc.poll() is None:
        continue
      log.close()
      free.append(device)
      del running[run_dir]
      if proc.returncode != 0 or not trial_of[run_dir].done:
        failures[run_dir] = (f"exit status {proc.returncode}; see "
                             f"{os.path.join(run_dir, 'log.txt')}")
        logging.error("%s failed: %s", run_dir, failures[run_dir])
  return failures


# --- The sweep --------------------------------------------------------------------


def _check_sweep_file(output_dir: str, base: TrainConfig,
                      grid: Mapping[str, Sequence], num_folds: int,
                      by_group: bool) -> None:
  """A re-run must be the same sweep: mixing trials of another base config into one
  table would compare unlike runs. The grid may grow."""
  path = os.path.join(output_dir, SWEEP_FILE)
  state = {"base": dataclasses.asdict(base), "num_folds": num_folds,
           "by_group": by_group}
  if os.path.exists(path):
    with open(path) as f:
      before = json.load(f)
    # Fields that only one side knows (a newer TrainConfig) hold their defaults.
    changed = [k for k in state["base"] if k in before["base"]
               and before["base"][k] != state["base"][k]]
    changed += [k for k in ("num_folds", "by_group") if before.get(k) != state[k]]
    if changed:
      raise errors.InputError(
          f"this sweep folder was made with other settings ({', '.join(changed)}); "
          "use another --output_dir or the same flags", file=path)
  os.makedirs(output_dir, exist_ok=True)
  atomic.write_json(path, dict(state, grid=grid))


def best_combination(table: pd.DataFrame, trials: Sequence[Trial]) -> dict:
  """The combination ranked first among those with every fold done."""
  complete = table[table["folds_done"] == table["folds"]]
  if complete.empty:
    raise trainer.TrainingError("no combination finished all its folds; "
                                "nothing to refit")
  best = complete.iloc[0]["trials"]
  return next(t.combination for t in trials if os.path.dirname(t.run_dir) == best)


def refit_best(combination: Mapping[str, object], base: TrainConfig,
               output_dir: str, test_split: str = "test") -> dict:
  """Retrains `combination` on the whole training split (validated on the eval split,
  best checkpoint by its MCA) in DIR/refit and evaluates it on `test_split`.

  Returns {combination, run_dir, split, mca, aca, val_test_gap (see
  metrics.val_test_gap)}. A finished refit is neither retrained nor re-evaluated.
  """
  combination = dict(combination)
  config = dataclasses.replace(base, **combination, num_folds=0, fold=0,
                               overwrite=False)
  trial = Trial(combination, "refit", -1, config,
                os.path.join(output_dir, REFIT_DIR), test_split)
  run_trial(trial)
  report = trial.run.read_eval(test_split)
  return {"combination": combination, "run_dir": trial.run_dir, "split": test_split,
          "mca": float(report["mca"]), "aca": float(report["aca"]),
          "val_test_gap": report.get("val_test_gap")}


def trial_test_split(base: TrainConfig, test_split: str,
                     num_folds: int) -> tuple[str | None, str]:
  """(the split every trial's model is tested on, "") or (None, why there is none):
  the records lack it, or the trials train or validate on it."""
  splits = Records.open(base.records_dir).info.splits
  if test_split not in splits:
    return None, (f"the records have no {test_split!r} split (they have "
                  f"{', '.join(sorted(splits))})")
  if test_split == base.train_split or (not num_folds
                                        and test_split == base.eval_split):
    return None, f"the trials train or validate on {test_split!r}"
  return test_split, ""


def resolve_folds(text: str, base: TrainConfig
                  ) -> tuple[int, TrainConfig]:
  """--folds -> (number of folds, base config).

  A number K is K made folds (the base's fold_column is kept, so `--folds=3
  --fold_column=fold` also works); 'official' counts the dataset's own folds in the
  training split's manifest and sets fold_column to them. Raises InputError for
  other text, ValueError when the records have no official folds.
  """
  if text.strip().lower() == "official":
    names = Records.open(base.records_dir).official_folds(base.train_split)
    logging.info("Official folds of %s: %s", base.train_split, ", ".join(names))
    return len(names), dataclasses.replace(base, fold_column=folds.FOLD_COLUMN)
  try:
    return int(text), base
  except ValueError:
    raise errors.InputError(f"--folds must be a number or 'official', got "
                            f"{text!r}") from None


def run_sweep(base: TrainConfig, grid: Mapping[str, Sequence],
              output_dir: str, *, num_folds: int = 5, by_group: bool = True,
              refit: bool = False, test_split: str = "test",
              parallel: bool = False, force_unlock: bool = False) -> dict:
  """Runs (or resumes) a sweep and writes its tables.

  Args:
    base: the configuration every trial starts from.
    grid: {TrainConfig field: values}, e.g. from `parse_grid`.
    output_dir: the sweep folder (layout in the module docstring).
    num_folds: >= 2 for k-fold cross-validation of the training split; 0 or 1 for one
      run per combination validated on the eval split.
    by_group: folds keep each specimen/patient together (when the records know them).
    refit: retrain the best combination on the whole training split, test it.
    test_split: the split every trial's model (for the validation-test gap of the
      table; skipped with the reason stated when the records lack it) and the refit
      model are evaluated on.
    parallel: one child process per visible GPU when there are several.
    force_unlock: take the trials' run locks whatever they say (hep2tf/runlock.py).

  Returns:
    {"table": the ranked DataFrame, "failures": {run_dir: reason},
     "refit": refit_best's dict or None}.
  """
  num_folds = num_folds if num_folds >= 2 else 0
  _check_sweep_file(output_dir, base, grid, num_folds, by_group)
  sweep_results.write_hparams_config(output_dir, grid, num_folds)
  tested, untested_why = trial_test_split(base, test_split, num_folds)
  if not tested:
    logging.warning("The trials are not tested: %s", untested_why)
  trials = make_trials(base, grid, output_dir, num_folds, tested)
  logging.info("%d combinations x %d folds: %d trials, %d finished before",
               len(combinations(grid)), max(num_folds, 1), len(trials),
               sum(t.done for t in trials))
  devices = distribute.visible_gpus() if parallel else []
  if parallel and len(devices) < 2:
    logging.info("--parallel: %s; running the trials in sequence",
                 "one GPU" if devices else "no GPU")
    print("--parallel: fewer than two GPUs visible, running trials sequentially")
  if len(devices) >= 2:
    failures = run_parallel(trials, by_group, devices, force_unlock=force_unlock)
  else:
    failures = run_sequential(trials, by_group, force_unlock)
  table = sweep_results.results_table(trials)
  refit_result = None
  if refit:
    refit_result = refit_best(best_combination(table, trials), base, output_dir,
                              test_split)
  sweep_results.write_results(output_dir, table, num_folds, failures, refit_result,
                              test=(tested, untested_why))
  return {"table": table, "failures": failures, "refit": refit_result}


