"""The trainer's own Keras callbacks (the summaries' are in summaries.py).

`NaNGuard` stops at the first non-finite loss and remembers where (the loop keeps no
resume state of an epoch whose loss went non-finite); `BestModel` keeps the inference
model of the epoch with the best validation MCA (RUN/best.keras, written atomically)
and its value across a resume (RUN/best.json).
"""

from __future__ import annotations

import json
import math

import keras

from hep2tf import atomic, rundir, storage


class NaNGuard(keras.callbacks.Callback):
  """Stops at the first non-finite loss and remembers where: (epoch, step). The loop
  ends its call at such a step, so the step is the one that went non-finite."""

  def __init__(self):
    super().__init__()
    self.where = None
    self._epoch = 0

  def on_train_batch_end(self, batch, logs=None):
    loss = (logs or {}).get("loss")
    if loss is not None and not math.isfinite(float(loss)):
      self.where = (self._epoch + 1, batch)
      self.model.stop_training = True

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch


class BestModel(keras.callbacks.Callback):
  """Keeps the inference model of the epoch with the best validation MCA; the best
  value survives a resume (RUN/best.json)."""

  def __init__(self, run: rundir.RunDir, inference_model: keras.Model,
               monitor: str = "val_mca"):
    super().__init__()
    self._run = run
    self._inference_model = inference_model
    self._monitor = monitor
    self._state_path = run.best_state
    self.best = -math.inf
    if storage.exists(self._state_path):
      with storage.open_file(self._state_path) as f:
        self.best = json.load(f)["value"]

  def on_epoch_end(self, epoch, logs=None):
    value = (logs or {}).get(self._monitor)
    if value is None or not math.isfinite(float(value)):
      return
    if float(value) > self.best:
      self.best = float(value)
      atomic.save_model(self._inference_model, self._run.best_model)
      atomic.write_json(self._state_path, {"monitor": self._monitor,
                                           "value": self.best, "epoch": epoch + 1})
