"""Rules for small and shifted sets: train length that scales with the set
(--min_steps), automatic class weights (--auto_class_weights), and the
validation-test gap that evaluate and the sweep's refit report."""

import json
import logging
import os

import pandas as pd
import pytest

from hep2tf import rundir
from hep2tf.data.records import Records
from hep2tf.evaluation import evaluate, metrics
from hep2tf.training import build, sweep_results, trainer
from hep2tf.config.train import TrainConfig

CLASSES = ["a", "b", "c"]


def config(**overrides):
  return TrainConfig(**overrides)


def test_min_steps_raises_epochs_only_when_a_run_is_short():
  # 400 cells at batch 64: 6 steps an epoch; 6 epochs are 36 steps.
  assert build.train_epochs(config(epochs=6, min_steps=600), 6) == 100
  assert build.train_epochs(config(epochs=6, min_steps=601), 6) == 101
  # 13,596 cells: 212 steps an epoch, 6 epochs are already over 600 steps.
  assert build.train_epochs(config(epochs=6, min_steps=600), 212) == 6
  assert build.train_epochs(config(epochs=6, min_steps=0), 6) == 6


@pytest.mark.parametrize("counts, ratio, expected", [
    ({"a": 90, "b": 60, "c": 29}, 3.0, True),      # smallest < a third of largest
    ({"a": 90, "b": 60, "c": 30}, 3.0, False),     # exactly a third: balanced enough
    ({"a": 50, "b": 48, "c": 45}, 3.0, False),
    ({"a": 90, "b": 60, "c": 29}, 0.0, False),     # the rule is off
    ({"a": 90, "b": 0, "c": 0}, 3.0, False),       # one class present: nothing to even
])
def test_auto_class_weights_follow_the_imbalance_rule(counts, ratio, expected):
  assert build.use_class_weights(config(auto_class_weights=ratio), counts,
                                 CLASSES) is expected


def test_explicit_choices_win_over_the_rule():
  imbalanced = {"a": 90, "b": 60, "c": 10}
  assert build.use_class_weights(config(class_weights=True), {"a": 5, "b": 5},
                                 CLASSES)
  # Balanced sampling already evens the classes.
  assert not build.use_class_weights(
      config(auto_class_weights=3.0, balanced_sampling=True), imbalanced, CLASSES)


def test_a_short_imbalanced_run_trains_longer_and_weights_its_classes(
    tiny_records, tmp_path, caplog):
  records_dir, _ = tiny_records
  records = Records.open(records_dir)
  counts = records.info.class_counts["train"]
  assert max(counts.values()) > 3 * min(counts.values())   # Golgi is rare
  steps = records.num_examples("train") // 16
  run = str(tmp_path / "run")
  with caplog.at_level(logging.INFO, logger="absl"):
    report = trainer.train_and_evaluate(TrainConfig(
        records_dir=records_dir, model="cnn", epochs=1, batch_size=16,
        min_steps=steps + 1, auto_class_weights=3.0, shuffle_buffer=256,
        image_summary_every=0), run)
  assert report["epochs_run"] == 2
  with open(os.path.join(run, rundir.CONFIG_FILE)) as f:
    assert json.load(f)["config"]["train"]["epochs"] == 2
  assert "under --min_steps" in caplog.text
  assert "weighting the loss by class" in caplog.text
  # Evaluate puts the test MCA beside the validation MCA of the best checkpoint.
  test = evaluate.evaluate_run(run, "test", write=False)
  gap = test["val_test_gap"]
  assert gap["validation_mca"] == pytest.approx(report["mca"])
  assert gap["gap"] == pytest.approx(report["mca"] - test["mca"])
  assert "val_test_gap" not in evaluate.evaluate_run(run, "validation", write=False)


def test_val_test_gap_warns_above_the_threshold():
  small = metrics.val_test_gap(0.95, 0.93)
  assert small["gap"] == pytest.approx(0.02) and small["warning"] is None
  large = metrics.val_test_gap(0.904, 0.753)
  assert large["gap"] == pytest.approx(0.151) and "0.151" in large["warning"]
  # A test split easier than validation is no warning.
  assert metrics.val_test_gap(0.80, 0.90)["warning"] is None
  assert metrics.val_test_gap(0.90, 0.87, threshold=0.02)["warning"]


def test_sweep_results_show_the_refits_gap(tmp_path):
  table = pd.DataFrame({"rank": [1], "learning_rate": [1e-3], "mean_val_mca": [0.9]})
  refit = {"combination": {"learning_rate": 1e-3}, "run_dir": "r", "split": "test",
           "mca": 0.75, "aca": 0.8,
           "val_test_gap": metrics.val_test_gap(0.904, 0.75)}
  sweep_results.write_results(str(tmp_path), table, 3, {}, refit=refit)
  text = (tmp_path / sweep_results.RESULTS_MD).read_text()
  assert "validation - test gap +0.1540" in text and "**Warning:**" in text
