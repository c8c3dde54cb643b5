"""Keras callbacks that write what a run measured, for TensorBoard.

`EpochLine` prints one short line per epoch and keeps the per-class table in
RUN/train.log. Layout under the run directory (what `tensorboard --logdir RUN`
shows):
  train/        per-epoch scalars of the training split, the augmented-batch image
  validation/   per-epoch scalars of the validation split; the confusion matrix, the
                grid of predictions with ground truth and the classification report
  .             HParams (the run's hyper-parameters and its final metrics); the
                "run" text: how it was executed (precision policy and why)
  eval/<split>/ what `python -m hep2tf.evaluate` measured (written by
                `hep2tf.evaluation.results.write_evaluation`)
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from typing import Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf
from tensorboard.plugins.hparams import api as hparams_api

from hep2tf import atomic, figures, storage
from hep2tf.evaluation import formatting, metrics, plots, results

LOG_FILE = "train.log"   # the per-epoch metrics and per-class table, as text


def current_learning_rate(optimizer) -> float:
  """The optimizer's learning rate now, whether constant or a schedule."""
  lr = optimizer.learning_rate
  if callable(lr) and not isinstance(lr, (tf.Variable, keras.Variable)):
    lr = lr(optimizer.iterations)
  return float(keras.ops.convert_to_numpy(lr))


class ScalarSummaries(keras.callbacks.Callback):
  """Per epoch: every logged metric of train (to train/) and validation (to
  validation/, the `val_` prefix dropped), and the learning rate."""

  def __init__(self, log_dir: str):
    super().__init__()
    self._train = tf.summary.create_file_writer(os.path.join(log_dir, "train"))
    self._val = tf.summary.create_file_writer(os.path.join(log_dir, "validation"))

  def on_epoch_end(self, epoch, logs=None):
    logs = dict(logs or {})
    step = epoch + 1
    lr = current_learning_rate(self.model.optimizer)
    with self._train.as_default(step=step):
      for key, value in logs.items():
        if not key.startswith("val_") and key != "learning_rate":
          tf.summary.scalar(key, float(value))
      tf.summary.scalar("learning_rate", lr)
    with self._val.as_default(step=step):
      for key, value in logs.items():
        if key.startswith("val_"):
          tf.summary.scalar(key[len("val_"):], float(value))
    self._train.flush()
    self._val.flush()


class EpochLine(keras.callbacks.Callback):
  """After each epoch, one short line on stdout, whatever the number of classes:

    Epoch 3/20  loss 0.512  val acc 0.861  MCA 0.842  lowest Golgi 0.61  34s  ETA 2m

  (the training loss; validation accuracy, MCA and its lowest class recall; the
  epoch's time and the rest's at the mean pace). The per-class table (recall on
  training and validation) goes to RUN/train.log with the epoch's full metrics, and
  to TensorBoard as the text `per_class_recall` under validation/.

  Args:
    run_dir: the run directory.
    class_names: in label order; `recall_names` are their metric names
      (`recall_<slug>`, the logs' keys).
    num_epochs: the run's last epoch number (for the ETA).
  """

  def __init__(self, run_dir: str, class_names: Sequence[str],
               recall_names: Sequence[str], num_epochs: int):
    super().__init__()
    self._log = os.path.join(run_dir, LOG_FILE)
    self._val = tf.summary.create_file_writer(os.path.join(run_dir, "validation"))
    self._classes = list(zip(class_names, recall_names))
    self._num_epochs = num_epochs
    self._seconds: list[float] = []
    self._start = time.time()

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.time()

  def on_epoch_end(self, epoch, logs=None):
    logs = dict(logs or {})
    self._seconds.append(time.time() - self._start)
    left = max(0, self._num_epochs - epoch - 1) * float(np.mean(self._seconds))
    recall = {name: logs.get(f"val_{key}", math.nan) for name, key in self._classes}
    lowest = min(recall, key=lambda n: (math.isnan(recall[n]), recall[n]))
    print(f"Epoch {epoch + 1}/{self._num_epochs}  loss {logs.get('loss', math.nan):.3f}"
          f"  val acc {logs.get('val_accuracy', math.nan):.3f}  MCA "
          f"{logs.get('val_mca', math.nan):.3f}  lowest {lowest} {recall[lowest]:.2f}"
          f"  {_clock(self._seconds[-1])}  ETA {_clock(left)}", flush=True)
    width = max(len("class"), *(len(name) for name, _ in self._classes))
    table = "\n".join([f"{'class':<{width}}  train recall  validation recall"] + [
        f"{name:<{width}}  {logs.get(key, math.nan):12.4f}  {recall[name]:17.4f}"
        for name, key in self._classes])
    full = ", ".join(f"{k} {v:.4f}" for k, v in logs.items()
                     if not k.startswith(("recall_", "val_recall_")))
    entry = (f"Epoch {epoch + 1}/{self._num_epochs} ({self._seconds[-1]:.1f} s): "
             f"{full}\n{table}\n\n")
    before = ""
    if storage.exists(self._log):
      with storage.open_file(self._log) as f:
        before = f.read()
    atomic.write(self._log, before + entry)   # whole, also on object stores
    with self._val.as_default(step=epoch + 1):
      tf.summary.text("per_class_recall", "```\n" + table + "\n```")
    self._val.flush()


def _clock(seconds: float) -> str:
  """34s, 2m05s, 1h12m."""
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class HistoryCSV(keras.callbacks.Callback):
  """history.csv as Keras's CSVLogger(append=True) writes it (`epoch`, then the
  logged keys sorted), but rewritten whole after each epoch with
  `atomic.write`, so it also works on object stores, which cannot append,
  and a crash never leaves half a row."""

  def __init__(self, path: str):
    super().__init__()
    self._path = path

  def on_epoch_end(self, epoch, logs=None):
    logs = dict(logs or {})
    text = ""
    if storage.exists(self._path):
      with storage.open_file(self._path) as f:
        text = f.read()
    buffer = io.StringIO()
    if text.strip():
      fields = next(csv.reader([text.splitlines()[0]]))
      buffer.write(text if text.endswith("\n") else text + "\n")
      writer = csv.DictWriter(buffer, fields, lineterminator="\n",
                              extrasaction="ignore")
    else:
      fields = ["epoch"] + sorted(logs)
      writer = csv.DictWriter(buffer, fields, lineterminator="\n")
      writer.writeheader()
    writer.writerow({key: (epoch if key == "epoch" else logs.get(key, "NA"))
                     for key in fields})
    atomic.write(self._path, buffer.getvalue())


class ImageSummaries(keras.callbacks.Callback):
  """Images and text: an augmented batch at the start; every `every` epochs and at
  the last one, the validation confusion matrix, a grid of predictions with ground
  truth, and the classification report.

  Args:
    log_dir: the run directory.
    train_batch: one (images, labels) batch from the training input.
    augmenter: the training-only augmentation model (called with training=True).
    predict_fn: returns (y_true ids, probabilities, images) of the validation split
      for the inference model.
    class_names: label names.
    every: epochs between validation image summaries.
    num_epochs: the run's last epoch number (summaries are always written there).
  """

  def __init__(self, log_dir: str, train_batch, augmenter: keras.Model,
               predict_fn: Callable[[], tuple[np.ndarray, np.ndarray, np.ndarray]],
               class_names: Sequence[str], every: int, num_epochs: int,
               positive_class: str | None = None):
    super().__init__()
    self._train = tf.summary.create_file_writer(os.path.join(log_dir, "train"))
    self._val = tf.summary.create_file_writer(os.path.join(log_dir, "validation"))
    self._train_batch = train_batch
    self._augmenter = augmenter
    self._predict_fn = predict_fn
    self._class_names = list(class_names)
    self._every = max(1, every)
    self._num_epochs = num_epochs
    self._positive_class = positive_class

  def on_train_begin(self, logs=None):
    images, _ = self._train_batch
    augmented = self._augmenter(images[:16], training=True)
    shown = tf.cast(tf.clip_by_value(augmented, 0, 255), tf.uint8)
    with self._train.as_default(step=0):
      tf.summary.image("augmented_batch", shown, max_outputs=16)
    self._train.flush()

  def on_epoch_end(self, epoch, logs=None):
    step = epoch + 1
    if step % self._every and step != self._num_epochs:
      return
    y_true, probs, images = self._predict_fn()
    report = metrics.classification_report(
        y_true, probs, self._class_names, positive_class=self._positive_class)
    y_pred = probs.argmax(axis=1)
    cm_png = figures.figure_to_png(plots.confusion_matrix_figure(
        np.asarray(report["confusion_matrix"]), self._class_names))
    shown = len(images)
    grid_png = figures.figure_to_png(plots.prediction_grid_figure(
        images, y_true[:shown], y_pred[:shown], self._class_names,
        probs=probs[:shown]))
    with self._val.as_default(step=step):
      tf.summary.image("confusion_matrix", results.png_to_image(cm_png))
      tf.summary.image("predictions", results.png_to_image(grid_png))
      # Markdown renders a fenced block verbatim, so the table keeps its columns.
      tf.summary.text("classification_report",
                      "```\n" + formatting.format_report(report) + "\n```")
    self._val.flush()


def write_hparams(log_dir: str, hparams: Mapping[str, object],
                  metric_names: Sequence[str]) -> None:
  """Writes the HParams experiment config and this run's hyper-parameters.

  The run's final metrics are the scalars of the same names that the scalar callbacks
  and `write_final_metrics` write, so the HParams dashboard can compare runs.
  """
  clean = {k: _hparam_value(v) for k, v in hparams.items()}
  writer = tf.summary.create_file_writer(log_dir)
  with writer.as_default():
    hparams_api.hparams_config(
        hparams=[hparams_api.HParam(k) for k in clean],
        metrics=[hparams_api.Metric(name) for name in metric_names])
    hparams_api.hparams(clean)
  writer.flush()


def write_run_text(log_dir: str, facts: Mapping[str, object]) -> None:
  """How the run was executed (e.g. the precision policy and why), as a Markdown
  table under the run root's text tab at step 0."""
  rows = "\n".join(f"| {key} | {value} |" for key, value in facts.items())
  writer = tf.summary.create_file_writer(log_dir)
  with writer.as_default(step=0):
    tf.summary.text("run", "| setting | value |\n|---|---|\n" + rows)
  writer.flush()


def write_final_metrics(log_dir: str, values: Mapping[str, float],
                        step: int) -> None:
  """Scalars under the run root that the HParams dashboard reads as the run's result."""
  writer = tf.summary.create_file_writer(log_dir)
  with writer.as_default(step=step):
    for name, value in values.items():
      if value is not None and math.isfinite(float(value)):
        tf.summary.scalar(name, float(value))
  writer.flush()


def _hparam_value(value):
  if isinstance(value, (bool, int, float, str)):
    return value
  return str(value)
