"""Time to accuracy: wall time until validation MCA reaches a target.

  ours     configs/cnn.flags run by the trainer's own steps (open_data, make_models,
           make_callbacks, fit: its reader, model, augmentation, optimiser, schedule,
           precision, callbacks and training loop), on the records
  recipe   the keras-io recipe (`recipe.py`) on the same images as PNG files, read by
           image_dataset_from_directory, same train and validation split

The clock starts before the datasets and the model are built. Validation MCA is
measured in inference mode at the end of each epoch, so the time is that of the first
epoch whose validation MCA reaches the target. A run stops at the target, at the end
of its epochs, or when its time cap passes (checked after every step); a run that
did not reach the target reports the cap, or its whole time when it ran out of
epochs first, as a lower bound.
"""

from __future__ import annotations

import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf

from benchmarks import common
from benchmarks import data
from benchmarks import reader
from benchmarks import recipe
from benchmarks import training
from hep2tf.evaluation import metrics
from hep2tf.training import trainer
from hep2tf.config.train import TrainConfig


@dataclasses.dataclass
class Outcome:
  """seconds: to the target, or None; elapsed: the whole run; best: best val MCA."""
  seconds: float | None
  elapsed: float
  best: float
  epochs: int
  capped: bool


class StopAtTarget(keras.callbacks.Callback):
  """Stops fit when val_mca >= target (after an epoch) or the time cap passes."""

  def __init__(self, target: float, cap_seconds: float, start: float):
    super().__init__()
    self.target, self.cap, self.start = target, cap_seconds, start
    self.reached_at, self.best, self.epochs, self.capped = None, 0.0, 0, False

  def on_train_batch_end(self, batch, logs=None):
    if time.perf_counter() - self.start > self.cap:
      self.capped = True
      self.model.stop_training = True

  def on_epoch_end(self, epoch, logs=None):
    self.epochs = epoch + 1
    value = (logs or {}).get("val_mca")
    if value is None:
      return
    self.best = max(self.best, float(value))
    if float(value) >= self.target and self.reached_at is None:
      self.reached_at = time.perf_counter() - self.start
      self.model.stop_training = True

  def outcome(self) -> Outcome:
    return Outcome(self.reached_at, time.perf_counter() - self.start, self.best,
                   self.epochs, self.capped)


class ValidationMCA(keras.callbacks.Callback):
  """Sets the epoch's val_mca (`metrics.mean_class_accuracy`, the one MCA) from one
  inference pass over `val_ds`, in place of fit's validation; callbacks after it
  read it from the same logs."""

  def __init__(self, val_ds, num_classes: int):
    super().__init__()
    self._val_ds, self._num_classes = val_ds, num_classes

  def on_epoch_end(self, epoch, logs=None):
    true, predicted = [], []
    for images, labels in self._val_ds:
      true.append(np.argmax(labels, axis=-1))
      predicted.append(np.argmax(self.model.predict_on_batch(images), axis=-1))
    if logs is not None:
      logs["val_mca"] = metrics.mean_class_accuracy(
          np.concatenate(true), np.concatenate(predicted), self._num_classes)


def ours(config: TrainConfig, work_dir: str, *, target: float,
         cap_seconds: float) -> Outcome:
  """Trains `config` with the trainer's own steps (its data, models, callbacks and
  fit), until the target or the cap."""
  start = time.perf_counter()
  stop = StopAtTarget(target, cap_seconds, start)
  config, train_data, built = training.setup(config)
  run = training.fresh_run(config, os.path.join(work_dir, "tta_ours"))
  strategy = tf.distribute.get_strategy()
  callbacks = trainer.make_callbacks(config, run, built, train_data,
                                     strategy) + [stop]
  trainer.fit(config, strategy, built, train_data, callbacks, run)
  outcome = stop.outcome()
  keras.backend.clear_session()
  keras.mixed_precision.set_global_policy("float32")
  return outcome


def keras_io(inputs: data.Inputs, *, target: float, cap_seconds: float,
             max_epochs: int = 100, seed: int = 0) -> Outcome:
  """The keras-io recipe on the PNG folders, until the target or the cap."""
  keras.mixed_precision.set_global_policy("float32")
  keras.utils.set_random_seed(seed)
  start = time.perf_counter()
  stop = StopAtTarget(target, cap_seconds, start)
  train_ds = reader.from_pngs(inputs, recipe.BATCH_SIZE, seed=seed)
  val_ds = reader.from_pngs(inputs, recipe.BATCH_SIZE, split=inputs.eval_split,
                            seed=seed)
  num_classes = len(inputs.class_names)
  model = recipe.build((data.IMAGE_SIZE, data.IMAGE_SIZE, 1), num_classes)
  model.compile(optimizer=keras.optimizers.Adam(recipe.LEARNING_RATE),
                loss="categorical_crossentropy", metrics=["accuracy"])
  model.fit(train_ds, epochs=max_epochs, verbose=0,
            callbacks=[ValidationMCA(val_ds, num_classes), stop])
  outcome = stop.outcome()
  keras.backend.clear_session()
  return outcome


def _describe(outcome: Outcome, cap: float) -> str:
  if outcome.seconds is not None:
    return (f"reached in {outcome.seconds:.0f} s ({outcome.epochs} epochs)")
  why = f"cap {cap:.0f} s" if outcome.capped else f"its {outcome.epochs} epochs"
  return f"not reached within {why} (best {outcome.best:.3f})"


def run(config: TrainConfig, inputs: data.Inputs, work_dir: str, *,
        target: float = 0.90, cap_seconds: float = 330.0,
        recipe_cap_seconds: float | None = None) -> list[common.Figure]:
  """The time-to-accuracy figure; a run that missed reports its time as a bound."""
  recipe_cap = recipe_cap_seconds or cap_seconds
  mine = ours(config, work_dir, target=target, cap_seconds=cap_seconds)
  theirs = keras_io(inputs, target=target, cap_seconds=recipe_cap,
                    seed=config.seed)
  value = mine.seconds if mine.seconds is not None else mine.elapsed
  baseline = theirs.seconds if theirs.seconds is not None else theirs.elapsed
  note = (f"ours: {_describe(mine, cap_seconds)}; keras-io: "
          f"{_describe(theirs, recipe_cap)}")
  judged = True
  if mine.seconds is None:
    note += "; ours missed, so the target is not judged"
    judged = False
  elif theirs.seconds is None:
    note += "; keras-io missed: its time is a lower bound, the ratio an upper one"
    judged = value / max(baseline, 1e-9) <= 0.5
  return [common.Figure(
      f"time to validation MCA {target:.2f}", "s", value, baseline, target="<= 0.5",
      baseline_name="keras-io recipe on the same PNGs", note=note, judged=judged)]
