"""How far a run's probabilities can be trusted: calibration and abstention.

Calibration. `expected_calibration_error` is the ECE of Guo et al. (2017): the cells
are put in 15 equal-width bins of confidence (the top probability), and the ECE is the
support-weighted mean gap |accuracy - mean confidence| over the bins. `fit_temperature`
fits one temperature T > 0 on validation logits by minimising the negative
log-likelihood of softmax(logits / T); T > 1 softens an over-confident model. T divides
all logits alike, so the predicted class (and with it MCA and ACA) does not change.

Abstention. A reader can leave the cells the model is least sure of to a person:
`coverage_accuracy` gives the accuracy on the most confident fraction of cells, for
coverage 5%, 10%, ... 100%, and `coverage_at` the share of cells whose confidence
reaches a threshold P.

The run keeps what `python -m hep2tf.evaluate --calibrate` and `--min_confidence`
fitted in RUN/calibration.json (`read_run_calibration`, `update_run_calibration`);
evaluate, predict and the exported SavedModel apply its temperature.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from scipy import optimize

from hep2tf import atomic, storage
from hep2tf.errors import InputError

NUM_BINS = 15
CALIBRATION_FILE = "calibration.json"
COVERAGES = tuple(round(0.05 * k, 2) for k in range(1, 21))
# log T is searched in [-4, 4]: T from 0.018 to 55, far beyond any sane model.
_LOG_T_BOUNDS = (-4.0, 4.0)


# ----------------------------------------------------------------------------------
# logits and probabilities


def logits_model(model: keras.Model) -> keras.Model:
  """A model sharing `model`'s weights that returns the pre-softmax logits.

  hep2tf models end in a Dense "logits" layer and a float32 softmax "probs"
  (models.layers.softmax_head). The result is cast to float32 by the callers, since
  under a mixed-precision policy the logits layer computes in 16 bits.
  """
  try:
    layer = model.get_layer("logits")
  except ValueError:
    raise InputError(f"model {model.name!r} has no 'logits' layer; calibration and "
                     "explanations need the pre-softmax output") from None
  # One input as a tensor, not a list of one, so calling it with a tensor is exact.
  inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
  return keras.Model(inputs, layer.output, name=f"{model.name}_logits")


def softmax(logits, temperature: float = 1.0) -> np.ndarray:
  """softmax(logits / temperature) over the last axis, in float64."""
  z = np.asarray(logits, dtype=np.float64) / float(temperature)
  z = z - z.max(axis=-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=-1, keepdims=True)


def _check(probs, y_true) -> tuple[np.ndarray, np.ndarray]:
  probs = np.asarray(probs, dtype=np.float64)
  y_true = np.asarray(y_true).astype(np.int64).reshape(-1)
  if probs.ndim != 2 or len(probs) != len(y_true):
    raise InputError(f"need probabilities (N, K) and N labels, got {probs.shape} "
                     f"and {y_true.shape}")
  if not len(y_true):
    raise InputError("no examples")
  return probs, y_true


# ----------------------------------------------------------------------------------
# calibration


def reliability_bins(probs, y_true, num_bins: int = NUM_BINS) -> list[dict[str, Any]]:
  """Per confidence bin: its edges, count, mean confidence and accuracy.

  Bins are (lo, hi], the first [0, hi]; empty bins have confidence and accuracy None.
  """
  probs, y_true = _check(probs, y_true)
  confidence = probs.max(axis=1)
  correct = probs.argmax(axis=1) == y_true
  edges = np.linspace(0.0, 1.0, num_bins + 1)
  # right=True puts a confidence of exactly 1/15 in the first bin, 1.0 in the last.
  index = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, num_bins - 1)
  rows = []
  for b in range(num_bins):
    inside = index == b
    count = int(inside.sum())
    rows.append({"lower": float(edges[b]), "upper": float(edges[b + 1]),
                 "count": count,
                 "confidence": float(confidence[inside].mean()) if count else None,
                 "accuracy": float(correct[inside].mean()) if count else None})
  return rows


def expected_calibration_error(probs, y_true, num_bins: int = NUM_BINS) -> float:
  """ECE: sum over bins of (bin count / N) * |bin accuracy - bin mean confidence|."""
  bins = reliability_bins(probs, y_true, num_bins)
  total = sum(b["count"] for b in bins)
  return float(sum(b["count"] / total * abs(b["accuracy"] - b["confidence"])
                   for b in bins if b["count"]))


def negative_log_likelihood(logits, y_true, temperature: float = 1.0) -> float:
  """Mean -log softmax(logits / T)[y] (computed stably from the logits)."""
  z = np.asarray(logits, dtype=np.float64) / float(temperature)
  y_true = np.asarray(y_true).astype(np.int64).reshape(-1)
  z = z - z.max(axis=1, keepdims=True)
  log_norm = np.log(np.exp(z).sum(axis=1))
  return float(np.mean(log_norm - z[np.arange(len(z)), y_true]))


def fit_temperature(logits, y_true) -> float:
  """The temperature T minimising the validation NLL of softmax(logits / T).

  Args:
    logits: (N, K) pre-softmax outputs (float), for example of the validation split.
    y_true: (N,) int class ids.

  Returns:
    T > 0 (the NLL is convex in 1/T, so the bounded 1-D search finds its minimum).
  """
  logits = np.asarray(logits, dtype=np.float64)
  _check(logits, y_true)
  if not np.all(np.isfinite(logits)):
    raise InputError("logits hold a non-finite value; cannot fit a temperature")
  result = optimize.minimize_scalar(
      lambda log_t: negative_log_likelihood(logits, y_true, math.exp(log_t)),
      bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4})
  return float(math.exp(result.x))


# ----------------------------------------------------------------------------------
# abstention


def _ranked_correct(probs, y_true) -> np.ndarray:
  """Correctness of each cell, most confident first (ties keep their order)."""
  probs, y_true = _check(probs, y_true)
  order = np.argsort(-probs.max(axis=1), kind="stable")
  return (probs.argmax(axis=1) == y_true)[order]


def accuracy_at_coverage(probs, y_true, coverage: float) -> float:
  """Accuracy on the ceil(coverage * N) most confident cells."""
  if not 0.0 < coverage <= 1.0:
    raise InputError(f"coverage must be in (0, 1], got {coverage}")
  correct = _ranked_correct(probs, y_true)
  kept = max(1, math.ceil(coverage * len(correct) - 1e-9))
  return float(correct[:kept].mean())


def coverage_accuracy(probs, y_true,
                      coverages=COVERAGES) -> list[dict[str, float]]:
  """Rows {coverage, accuracy, min_confidence}: the accuracy on the most confident
  `coverage` of cells, and the confidence of the least confident cell kept."""
  probs, y_true = _check(probs, y_true)
  confidence = np.sort(probs.max(axis=1))[::-1]
  rows = []
  for c in coverages:
    kept = max(1, math.ceil(c * len(confidence) - 1e-9))
    rows.append({"coverage": float(c),
                 "accuracy": accuracy_at_coverage(probs, y_true, c),
                 "min_confidence": float(confidence[kept - 1])})
  return rows


def coverage_at(probs, y_true, min_confidence: float) -> dict[str, float | None]:
  """{min_confidence, coverage, accuracy}: the share of cells whose top probability
  is >= min_confidence and the accuracy on them (None when none is kept)."""
  probs, y_true = _check(probs, y_true)
  if not 0.0 <= min_confidence <= 1.0:
    raise InputError(f"min_confidence must be in [0, 1], got {min_confidence}")
  kept = probs.max(axis=1) >= min_confidence
  correct = probs.argmax(axis=1) == y_true
  return {"min_confidence": float(min_confidence), "coverage": float(kept.mean()),
          "accuracy": float(correct[kept].mean()) if kept.any() else None}


def calibration_report(probs, y_true, calibrated=None,
                       temperature: float | None = None) -> dict[str, Any]:
  """The calibration and abstention keys of an evaluation report.

  Args:
    probs: (N, K) probabilities as the model gives them.
    y_true: (N,) class ids.
    calibrated: (N, K) probabilities after temperature scaling, or None.
    temperature: the temperature behind `calibrated`.

  Returns:
    ece, ece_calibrated (None without `calibrated`), temperature, reliability (bins of
    the probabilities in effect: calibrated when given), coverage_accuracy rows and
    accuracy_at_coverage {"0.90", "0.95"}, all over the probabilities in effect.
  """
  in_effect = probs if calibrated is None else calibrated
  return {
      "ece": expected_calibration_error(probs, y_true),
      "ece_calibrated": (None if calibrated is None
                         else expected_calibration_error(calibrated, y_true)),
      "temperature": temperature,
      "reliability": reliability_bins(probs, y_true),
      "reliability_calibrated": (None if calibrated is None
                                 else reliability_bins(calibrated, y_true)),
      "coverage_accuracy": coverage_accuracy(in_effect, y_true),
      "accuracy_at_coverage": {
          f"{c:.2f}": accuracy_at_coverage(in_effect, y_true, c) for c in (0.90, 0.95)},
  }


# ----------------------------------------------------------------------------------
# the run's calibration file


def read_run_calibration(model_dir: str) -> dict[str, Any]:
  """RUN/calibration.json as a dict; {} when the run has none."""
  path = os.path.join(model_dir, CALIBRATION_FILE)
  if not storage.exists(path):
    return {}
  try:
    with storage.open_file(path) as f:
      stored = json.load(f)
  except (OSError, ValueError, tf.errors.OpError) as e:
    raise InputError(f"cannot read {CALIBRATION_FILE}: {e}", file=path) from e
  temperature = stored.get("temperature")
  if temperature is not None and not (isinstance(temperature, (int, float))
                                      and temperature > 0):
    raise InputError(f"temperature must be a positive number, got {temperature!r}",
                     file=path)
  return stored


def run_temperature(model_dir: str, checkpoint: str = "best",
                    default: float | None = 1.0) -> float | None:
  """The run's fitted temperature when it was fitted for `checkpoint` ("best" or
  "final"), else `default` (1.0: softmax as the model gives it; None tells
  evaluate that nothing was fitted)."""
  stored = read_run_calibration(model_dir)
  if (stored.get("temperature") is None
      or stored.get("checkpoint", "best") != checkpoint):
    return default
  return float(stored["temperature"])


def update_run_calibration(model_dir: str, **values) -> dict[str, Any]:
  """Merges `values` into RUN/calibration.json (written atomically); returns it."""
  stored = {**read_run_calibration(model_dir), **values}
  path = os.path.join(model_dir, CALIBRATION_FILE)
  atomic.write_json(path, stored)
  return stored
