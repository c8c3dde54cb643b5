"""Tests of hep2tf.evaluation.calibration: ECE, temperature scaling and abstention
figures."""

import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from hep2tf.errors import InputError
from hep2tf.evaluation import calibration


def test_ece_and_bins_by_hand():
  # Four cells at confidence 0.9, three right: one bin, gap |0.75 - 0.9| = 0.15.
  # Two cells at 0.5, one right: gap 0. ECE = 4/6 * 0.15 = 0.1.
  probs = np.array([[0.9, 0.1]] * 4 + [[0.5, 0.5]] * 2)
  y_true = np.array([0, 0, 0, 1, 0, 1])
  assert calibration.expected_calibration_error(probs, y_true) == pytest.approx(0.1)
  bins = calibration.reliability_bins(probs, y_true)
  assert len(bins) == 15 and sum(b["count"] for b in bins) == 6
  full = [b for b in bins if b["count"]]
  assert [b["count"] for b in full] == [2, 4]
  assert full[1]["accuracy"] == pytest.approx(0.75)
  assert full[1]["lower"] < 0.9 <= full[1]["upper"]
  # Perfectly calibrated in every bin: ECE 0.
  assert calibration.expected_calibration_error(
      [[1.0, 0.0]] * 3, [0, 0, 0]) == pytest.approx(0.0)
  with pytest.raises(InputError):
    calibration.expected_calibration_error(np.zeros((3, 2)), [0, 1])


def _overconfident_model(weights, sharpen):
  """A linear softmax model whose logits are `sharpen` times the true ones."""
  inputs = keras.Input((weights.shape[0],))
  logits = keras.layers.Dense(weights.shape[1], name="logits")(inputs)
  probs = keras.layers.Activation("softmax", name="probs")(logits)
  model = keras.Model(inputs, probs)
  model.get_layer("logits").set_weights([weights * sharpen,
                                         np.zeros(weights.shape[1])])
  return model


def test_overconfident_model_ece_falls_after_temperature_scaling():
  rng = np.random.default_rng(0)
  weights = rng.normal(size=(4, 3)).astype(np.float32)
  x = rng.normal(size=(3000, 4)).astype(np.float32)
  # Labels drawn from the true (unsharpened) probabilities: the model that
  # multiplies the logits by 6 is over-confident.
  true_probs = calibration.softmax(x @ weights)
  y = np.array([rng.choice(3, p=p) for p in true_probs])
  model = _overconfident_model(weights, sharpen=6.0)
  logits = calibration.logits_model(model)(x).numpy()
  np.testing.assert_allclose(calibration.softmax(logits), model(x).numpy(), atol=1e-5)
  val, test = slice(0, 1500), slice(1500, None)
  temperature = calibration.fit_temperature(logits[val], y[val])
  assert 4.0 < temperature < 9.0
  raw = calibration.softmax(logits[test])
  scaled = calibration.softmax(logits[test], temperature)
  ece = calibration.expected_calibration_error(raw, y[test])
  ece_scaled = calibration.expected_calibration_error(scaled, y[test])
  assert ece > 0.15 and ece_scaled < 0.05 and ece_scaled < ece / 3
  assert (calibration.negative_log_likelihood(logits[test], y[test], temperature)
          < calibration.negative_log_likelihood(logits[test], y[test]))
  # Scaling never changes the predicted class.
  assert (raw.argmax(1) == scaled.argmax(1)).all()
  report = calibration.calibration_report(raw, y[test], scaled, temperature)
  assert report["ece"] == pytest.approx(ece)
  assert report["ece_calibrated"] == pytest.approx(ece_scaled)
  json.dumps(report)


def test_coverage_accuracy_by_hand():
  # Confidence ranks the cells: the 2 most confident are right, then 1 wrong,
  # 1 right, 1 wrong (least confident).
  probs = np.array([[0.95, 0.05], [0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])
  y_true = np.array([0, 0, 1, 0, 1])
  assert calibration.accuracy_at_coverage(probs, y_true, 0.4) == pytest.approx(1.0)
  assert calibration.accuracy_at_coverage(probs, y_true, 0.6) == pytest.approx(2 / 3)
  assert calibration.accuracy_at_coverage(probs, y_true, 1.0) == pytest.approx(0.6)
  rows = calibration.coverage_accuracy(probs, y_true, coverages=(0.2, 0.8, 1.0))
  assert [r["accuracy"] for r in rows] == pytest.approx([1.0, 0.75, 0.6])
  assert [r["min_confidence"] for r in rows] == pytest.approx([0.95, 0.7, 0.6])
  at = calibration.coverage_at(probs, y_true, 0.75)
  assert at == {"min_confidence": 0.75, "coverage": pytest.approx(0.6),
                "accuracy": pytest.approx(2 / 3)}
  assert calibration.coverage_at(probs, y_true, 0.99)["accuracy"] is None
  report = calibration.calibration_report(probs, y_true)
  assert len(report["coverage_accuracy"]) == 20
  assert report["coverage_accuracy"][-1]["accuracy"] == pytest.approx(0.6)
  assert report["ece_calibrated"] is None and report["temperature"] is None
  with pytest.raises(InputError):
    calibration.accuracy_at_coverage(probs, y_true, 0.0)


def test_run_calibration_file(tmp_path):
  run = str(tmp_path)
  assert calibration.read_run_calibration(run) == {}
  assert calibration.run_temperature(run) == 1.0
  calibration.update_run_calibration(run, temperature=1.7)
  calibration.update_run_calibration(run, min_confidence=0.8)
  assert calibration.read_run_calibration(run) == {"temperature": 1.7,
                                                   "min_confidence": 0.8}
  assert calibration.run_temperature(run) == 1.7
  with open(tmp_path / calibration.CALIBRATION_FILE, "w") as f:
    json.dump({"temperature": -1}, f)
  with pytest.raises(InputError, match="calibration.json.*positive"):
    calibration.read_run_calibration(run)


def test_run_temperature_is_the_checkpoints_own(tmp_path):
  run = str(tmp_path)
  assert calibration.run_temperature(run, "best", default=None) is None
  calibration.update_run_calibration(run, temperature=1.5, checkpoint="final")
  assert calibration.run_temperature(run, "final") == 1.5
  assert calibration.run_temperature(run, "best") == 1.0
  assert calibration.run_temperature(run, "best", default=None) is None
