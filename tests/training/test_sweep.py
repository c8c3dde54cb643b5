"""sweep.py: grids, k-fold trials, the ranked table, HParams data and resume."""

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from tensorboard.plugins.hparams import metadata as hparams_metadata

from hep2tf import errors, rundir
from hep2tf.convert import create
from hep2tf.convert.plan import ConvertConfig
from hep2tf.data import synth
from hep2tf.training import sweep, sweep_results, trainer
from hep2tf.config.train import TrainConfig
from tests.conftest import REPO

# The smoke config at its smallest: one epoch of two steps, no image summaries.
TINY = dict(epochs=1, batch_size=8, steps_per_epoch=2, image_summary_every=0,
            shuffle_buffer=64)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
  """240 cells of 32x32 from 24 specimens; every specimen in the training split."""
  root = tmp_path_factory.mktemp("sweep")
  synth.generate(root / "src", 240, seed=1, image_size=32, num_specimens=24)
  create.create_records(ConvertConfig(
      "icpr2014", str(root / "src"), output_dir=str(root / "rec"), group_split=False,
      num_workers=1, num_shards=2, progress=False))
  return str(root / "rec")


def _hparams_sessions(log_dir):
  """{run folder relative to log_dir: its hparams} from every event file below."""
  sessions = {}
  for folder, _, files in os.walk(log_dir):
    for name in files:
      if not name.startswith("events.out.tfevents"):
        continue
      for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name)):
        for value in event.summary.value:
          if (value.metadata.plugin_data.plugin_name == hparams_metadata.PLUGIN_NAME
              and value.tag == hparams_metadata.SESSION_START_INFO_TAG):
            info = hparams_metadata.parse_session_start_info_plugin_data(
                value.metadata.plugin_data.content)
            sessions[os.path.relpath(folder, log_dir)] = {
                k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                for k, v in info.hparams.items()}
  return sessions


# --- The grid and the trials, without training ---------------------------------------


def test_parse_grid_gives_field_types_in_order():
  grid = sweep.parse_grid(["learning_rate=1e-2,1e-3", "batch_size=16, 32",
                           "optimizer=sgd,adamw", "batch_norm=true,false"])
  assert list(grid) == ["learning_rate", "batch_size", "optimizer", "batch_norm"]
  assert grid["learning_rate"] == [0.01, 0.001]
  assert grid["batch_size"] == [16, 32] and isinstance(grid["batch_size"][0], int)
  assert grid["optimizer"] == ["sgd", "adamw"]
  assert grid["batch_norm"] == [True, False]


@pytest.mark.parametrize("spec, reason", [
    ("learning_rate", "expected KEY=V1"),
    ("no_such_flag=1,2", "not a train flag"),
    ("fold=0,1", "set by the sweep"),
    ("batch_size=16,big", "bad value"),
    ("batch_norm=maybe", "bad value"),
    ("epochs=2,2", "repeats a value"),
])
def test_parse_grid_refuses_bad_entries(spec, reason):
  with pytest.raises(errors.InputError, match=reason) as caught:
    sweep.parse_grid([spec])
  assert caught.value.file == "--grid"


def test_trials_cover_every_combination_and_fold(tmp_path):
  base = TrainConfig(learning_rate=5.0, num_folds=7)
  grid = {"learning_rate": [0.01, 0.001], "batch_size": [16, 32]}
  trials = sweep.make_trials(base, grid, str(tmp_path), num_folds=3)
  assert len(trials) == 12
  assert len({t.run_dir for t in trials}) == 12
  assert {(t.config.learning_rate, t.config.batch_size, t.config.fold)
          for t in trials} == {(lr, b, k) for lr in (0.01, 0.001) for b in (16, 32)
                               for k in range(3)}
  assert all(t.config.num_folds == 3 and not t.config.overwrite for t in trials)
  assert trials[0].run_dir == os.path.join(
      str(tmp_path), "trials", "learning_rate-0.01_batch_size-16", "fold_0")
  single = sweep.make_trials(base, grid, str(tmp_path), num_folds=1)
  assert len(single) == 4
  assert all(t.config.num_folds == 0 and t.run_dir.endswith("run") for t in single)


def _fake_trial(tmp_path, combination, fold, val_mca, finished=True):
  trial = sweep.Trial(combination, sweep.combination_slug(combination), fold,
                      TrainConfig(**combination),
                      str(tmp_path / sweep.combination_slug(combination) / f"f{fold}"))
  os.makedirs(trial.run_dir)
  if finished:
    with open(os.path.join(trial.run_dir, rundir.COMPLETE_FILE), "w") as f:
      json.dump({"val_mca": val_mca, "val_aca": val_mca + 0.1,
                 "train_seconds": 2.0, "epochs": 1}, f)
  return trial


def test_table_ranks_complete_combinations_by_mean_mca(tmp_path):
  trials = []
  for lr, scores, finished in [(0.1, [0.5, 0.7], [True, True]),
                               (0.01, [0.8, 0.6], [True, True]),
                               (0.001, [0.99, 0.0], [True, False])]:
    trials += [_fake_trial(tmp_path, {"learning_rate": lr}, k, s, d)
               for k, (s, d) in enumerate(zip(scores, finished))]
  table = sweep_results.results_table(trials)
  # 0.01 and 0.1 tie on the mean; the incomplete one ranks last despite 0.99.
  assert table["learning_rate"].tolist()[2] == 0.001
  assert table["folds_done"].tolist() == [2, 2, 1]
  assert table.loc[0, "mean_val_mca"] == pytest.approx(0.7)
  assert table.loc[0, "std_val_mca"] == pytest.approx(0.1)
  assert table.loc[0, "train_seconds"] == pytest.approx(4.0)
  assert sweep.best_combination(table, trials)["learning_rate"] in (0.1, 0.01)
  text = sweep_results.markdown_table(table)
  assert text.count("\n") == 4 and "| 0.7000 |" in text


def _fake_test(trial, mca):
  """RUN/eval/test/metrics.json as evaluate writes it, for a finished fake trial."""
  os.makedirs(trial.run.eval_dir("test"))
  with open(os.path.join(trial.run.eval_dir("test"), rundir.EVAL_METRICS), "w") as f:
    json.dump({"split": "test", "mca": mca, "aca": mca}, f)
  return dataclasses.replace(trial, test_split="test")


def test_table_sets_the_test_mca_and_gap_beside_the_ranking(tmp_path):
  # learning_rate 0.1: validation 0.9 / 0.8, test 0.7 / 0.8 -> gap 0.1, flagged;
  # 0.01: validation 0.7 / 0.7, test 0.7 / 0.68 -> gap 0.01; 0.001: no test pass.
  trials = []
  for lr, vals, tests in [(0.1, [0.9, 0.8], [0.7, 0.8]),
                          (0.01, [0.7, 0.7], [0.7, 0.68]),
                          (0.001, [0.6, 0.6], [None, None])]:
    for k, (v, t) in enumerate(zip(vals, tests)):
      trial = _fake_trial(tmp_path, {"learning_rate": lr}, k, v)
      trials.append(trial if t is None else _fake_test(trial, t))
  table = sweep_results.results_table(trials)
  assert table["learning_rate"].tolist() == [0.1, 0.01, 0.001]  # by validation
  assert table["mean_test_mca"].tolist()[:2] == pytest.approx([0.75, 0.69])
  assert table["val_test_gap"].tolist()[:2] == pytest.approx([0.1, 0.01])
  assert table["gap_warning"].tolist() == [True, False, False]
  assert math.isnan(table.loc[2, "mean_test_mca"])
  sweep_results.write_results(str(tmp_path), table, 2, {}, test=("test", ""))
  markdown = (tmp_path / sweep_results.RESULTS_MD).read_text()
  assert "not for choosing" in markdown and "| **yes** |" in markdown


def test_ungrouped_folds_reach_the_trainer(monkeypatch, tmp_path):
  seen = []

  def fake_train(config, run_dir, force_unlock=False):
    seen.append(config)
    with open(os.path.join(run_dir, "complete.json"), "w") as f:
      json.dump({"val_mca": 0.5, "val_aca": 0.5, "train_seconds": 1.0}, f)

  monkeypatch.setattr(trainer, "train_and_evaluate", fake_train)
  config = TrainConfig(num_folds=3)
  run_dir = str(tmp_path / "trial")
  os.makedirs(run_dir)
  trial = sweep.Trial({"learning_rate": 0.1}, "lr", 0, config, run_dir)
  sweep.run_trial(trial, by_group=False)
  assert seen and seen[0].fold_by_group is False


# --- A real sweep ---------------------------------------------------------------------


def test_sweep_writes_table_and_hparams_and_resumes(records, tmp_path):
  base = TrainConfig(records_dir=records, **TINY)
  grid = {"learning_rate": [1e-3, 1e-2]}
  out = str(tmp_path / "sweep")
  result = sweep.run_sweep(base, grid, out, num_folds=2)
  table = pd.read_csv(os.path.join(out, sweep_results.RESULTS_CSV))
  assert len(table) == 2 and (table["folds_done"] == 2).all()
  for column in ("mean_val_mca", "std_val_mca", "mean_val_aca", "std_val_aca"):
    assert table[column].map(math.isfinite).all()
  assert table["mean_val_mca"].is_monotonic_decreasing
  with open(os.path.join(out, sweep_results.RESULTS_MD)) as f:
    markdown = f.read()
  assert markdown.count("| learning_rate") == 1 and markdown.count("\n| ") == 3
  assert not result["failures"]

  sessions = _hparams_sessions(out)
  assert len(sessions) == 4
  assert {(s["learning_rate"], s["fold"]) for s in sessions.values()} == {
      (lr, k) for lr in (1e-3, 1e-2) for k in (0, 1)}
  assert all(s["num_folds"] == 2 for s in sessions.values())

  # An interrupted trial: its complete.json gone. The re-run trains only that one.
  trials = sweep.make_trials(base, grid, out, num_folds=2)
  stamps = {t.run_dir: os.path.getmtime(os.path.join(t.run_dir,
                                                     rundir.COMPLETE_FILE))
            for t in trials}
  os.remove(os.path.join(trials[1].run_dir, rundir.COMPLETE_FILE))
  sweep.run_sweep(base, grid, out, num_folds=2)
  for t in trials:
    now = os.path.getmtime(os.path.join(t.run_dir, rundir.COMPLETE_FILE))
    assert (now == stamps[t.run_dir]) == (t is not trials[1])
  assert (pd.read_csv(os.path.join(out, sweep_results.RESULTS_CSV))["folds_done"]
          == 2).all()


def test_sweep_tests_the_fold_models_for_the_gap(records, tmp_path):
  base = TrainConfig(records_dir=records, **TINY)
  grid = {"learning_rate": [1e-3]}
  out = str(tmp_path / "sweep")
  sweep.run_sweep(base, grid, out, num_folds=2)
  trials = sweep.make_trials(base, grid, out, num_folds=2, test_split="test")
  tested = [t.run.read_eval("test") for t in trials]
  assert all(r is not None and r["split"] == "test" for r in tested)
  val = np.mean([t.run.read_complete()["val_mca"] for t in trials])
  test = np.mean([r["mca"] for r in tested])
  table = pd.read_csv(os.path.join(out, sweep_results.RESULTS_CSV))
  assert table.loc[0, "mean_val_mca"] == pytest.approx(val)
  assert table.loc[0, "mean_test_mca"] == pytest.approx(test)
  assert table.loc[0, "val_test_gap"] == pytest.approx(val - test)
  assert bool(table.loc[0, "gap_warning"]) == (val - test > 0.05)
  markdown = (tmp_path / "sweep" / sweep_results.RESULTS_MD).read_text()
  assert "'test' split" in markdown and "not for choosing" in markdown

  # Records without the split: no test pass, and the table says why.
  sweep.run_sweep(base, grid, out, num_folds=2, test_split="holdout")
  table = pd.read_csv(os.path.join(out, sweep_results.RESULTS_CSV))
  assert math.isnan(table.loc[0, "mean_test_mca"])
  assert not table.loc[0, "gap_warning"]
  markdown = (tmp_path / "sweep" / sweep_results.RESULTS_MD).read_text()
  assert "No test figures: the records have no 'holdout' split" in markdown


def test_sweep_refuses_other_base_settings_in_the_same_folder(records, tmp_path):
  out = str(tmp_path / "sweep")
  base = TrainConfig(records_dir=records, **TINY)
  sweep._check_sweep_file(out, base, {"epochs": [1]}, 2, True)
  with pytest.raises(errors.InputError, match="dropout"):
    sweep._check_sweep_file(out, TrainConfig(records_dir=records, dropout=0.1,
                                             **TINY), {"epochs": [1]}, 2,
                            True)


def _sweep_command(records, out, *extra):
  return [sys.executable, "-m", "hep2tf.sweep",
          f"--flagfile={os.path.join(REPO, 'configs', 'smoke.flags')}",
          f"--records_dir={records}", "--epochs=1", "--batch_size=8",
          "--steps_per_epoch=2", "--image_summary_every=0", f"--output_dir={out}",
          *extra]


def test_command_line_checks_grid_values_as_train_does(records, tmp_path):
  grid = "--grid=optimizer=adam,rmsprop"
  done = subprocess.run(_sweep_command(records, tmp_path / "s", grid),
                        capture_output=True, text=True, cwd=REPO, timeout=120,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert done.returncode == errors.EXIT_INPUT_ERROR
  assert "--grid: optimizer: bad value 'rmsprop'" in done.stderr
  assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_smoke_sweep_4x3_killed_and_resumed(records, tmp_path):
  """The issue's criterion: 4 combinations x 3 folds on the smoke config, killed with
  SIGKILL after three trials, then resumed by the same command (about 4 minutes)."""
  out = tmp_path / "sweep"
  command = _sweep_command(records, out, "--grid=learning_rate=1e-2,1e-3",
                           "--grid=batch_size=8,16", "--folds=3", "--refit")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  complete = lambda: sorted(out.glob(f"trials/*/*/{rundir.COMPLETE_FILE}"))
  deadline = time.time() + 400
  while len(complete()) < 3 and proc.poll() is None and time.time() < deadline:
    time.sleep(0.5)
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  finished = {p: p.stat().st_mtime for p in complete()}
  assert 3 <= len(finished) < 12

  done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=900)
  assert done.returncode == 0, done.stderr[-2000:]
  assert len(complete()) == 12
  assert all(p.stat().st_mtime == t for p, t in finished.items())
  table = pd.read_csv(out / sweep_results.RESULTS_CSV)
  assert len(table) == 4 and (table["folds_done"] == 3).all()
  assert table[["mean_val_mca", "std_val_mca", "mean_val_aca", "std_val_aca"]
               ].map(math.isfinite).all().all()
  assert len(_hparams_sessions(str(out / "trials"))) == 12
  assert "Refit of the best combination" in (out / sweep_results.RESULTS_MD).read_text()
  assert (out / "refit" / "eval" / "test" / "metrics.json").exists()
