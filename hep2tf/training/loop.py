"""A custom training loop that runs under every tf.distribute strategy.

Keras 3's `Model.fit` cannot train under `MultiWorkerMirroredStrategy`
(keras-team/keras#20585: it reduces scalar metrics and the first data batch across
workers in ways that fail). This loop is the TensorFlow `multi_worker_with_ctl`
pattern with a Keras 3 model:

- the model and its optimizer are built under `strategy.scope()` (by the trainer);
- one `tf.function` step runs `strategy.run` on each replica: the per-example loss
  (class-weighted) is averaged over the GLOBAL batch with `tf.nn.compute_average_loss`,
  the model's regularisation losses are divided by the replicas with
  `tf.nn.scale_regularization_loss`, and the optimizer all-reduces the gradients
  (sum) before applying them, so a step is the same update as one process with the
  same global batch;
- metrics stay on the device and out of the replicated state: each replica returns
  its loss and a (class-weighted) confusion matrix, summed across replicas with one
  `strategy.reduce` a step and over the steps inside the same `tf.function`, which
  runs `log_every` steps a call (`tf.range`, as Keras's steps_per_execution does); the
  host reads the sums once a call and turns them into accuracy, MCA and per-class
  recall (`metrics.confusion_scores`). No Keras metric variable is mirrored, so the
  NaN metrics of keras-team/keras#21467 (a mirrored `Mean` accumulator) cannot happen
  here. A step whose loss is not finite ends its call, so the NaN stop comes at once;
- every worker validates on the whole validation split with the inference-mode model,
  and the chief's numbers are then broadcast (an all-reduce in which only replica 0
  contributes), so that decisions taken from them (reduce-on-plateau, early stopping,
  the NaN stop) are the same on every worker even if their arithmetic differs;
- the run's Keras callbacks (history.csv, summaries, best model, schedules, early
  stopping, the NaN guard) are driven with the logs `fit` gives them, their batch
  hooks once a call (the learning-rate schedules are the optimizer's and need
  nothing from the host);
- after each epoch whose loss is finite, a `tf.train.Checkpoint` (model, optimizer,
  epoch) is written. The chief writes to the run's checkpoint folder; other workers
  must take part in the save but write to a scratch folder they delete at once (as
  the TensorFlow multi-worker guide does). On start, every worker restores from the
  chief's folder, so a job restarted after a kill continues from the last epoch all
  workers finished.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from hep2tf.evaluation import metrics

EPOCH_VARIABLE = "epoch"
# What Keras's BackupAndRestore left in a phase's folder (the fit path, gone).
KERAS_BACKUP = "training_metadata.json"


def confusion_logs(confusion: np.ndarray, recall_names: Sequence[str],
                   prefix: str = "") -> dict[str, float]:
  """accuracy, mca and recall_<class> from a (K, K) confusion matrix (rows = true),
  as `metrics.confusion_scores` defines them (a class without true examples: recall
  NaN, left out of the MCA)."""
  accuracy, mca, recall = metrics.confusion_scores(confusion)
  logs = {f"{prefix}accuracy": accuracy, f"{prefix}mca": mca}
  for name, value in zip(recall_names, recall):
    logs[f"{prefix}{name}"] = float(value)
  return logs


class Loop:
  """The compiled steps of one training model under one strategy.

  Args:
    strategy: the strategy the model and optimizer were built under.
    train_model: compiled (for its optimizer and loss) training model: augmenter ->
      inference model, so augmentation runs inside the step.
    global_batch_size: examples per step over all replicas.
    class_weight: {class id: weight} or None, as `fit` takes it.
    jit_compile: compile the forward and backward pass with XLA (the gradient
      all-reduce and the update stay outside XLA).
  """

  def __init__(self, strategy: tf.distribute.Strategy, train_model: keras.Model, *,
               global_batch_size: int, class_weight: dict | None = None,
               jit_compile: bool = False):
    self.strategy = strategy
    self.model = train_model
    self.optimizer = train_model.optimizer
    self.num_classes = int(train_model.output_shape[-1])
    self.global_batch_size = int(global_batch_size)
    config = dict(train_model.loss.get_config(), reduction=None)
    self._loss = type(train_model.loss).from_config(config)
    self._class_weight = None
    if class_weight:
      self._class_weight = tf.constant(
          [float(class_weight.get(k, 1.0)) for k in range(self.num_classes)],
          tf.float32)
    with strategy.scope():
      # Slots exist before any restore, so the checkpoint restores them eagerly.
      self.optimizer.build(train_model.trainable_variables)
    if jit_compile and not getattr(train_model, "jit_compile", True):
      # Keras's compile found ops XLA cannot compile (the rotation layer on CPU)
      # and turned it off, with a warning; fit would run without XLA, and so do we.
      jit_compile = False
    self._jit_compile = jit_compile
    self._forward_backward = tf.function(self._forward_backward_fn,
                                         jit_compile=jit_compile or None)
    self._train_steps = tf.function(self._train_steps_fn)
    self._predict = tf.function(lambda images: train_model(images, training=False))
    self._broadcast = tf.function(self._broadcast_fn)

  # --- Training ---------------------------------------------------------------------

  def _confusion(self, labels, probs, weights):
    true = tf.one_hot(tf.argmax(labels, axis=-1), self.num_classes, dtype=tf.float32)
    pred = tf.one_hot(tf.argmax(probs, axis=-1), self.num_classes, dtype=tf.float32)
    return tf.matmul(true * weights[:, tf.newaxis], pred, transpose_a=True)

  def _forward_backward_fn(self, images, labels):
    model = self.model
    with tf.GradientTape() as tape:
      probs = model(images, training=True)
      per_example = tf.cast(self._loss(labels, probs), tf.float32)
      if self._class_weight is not None:
        weights = tf.gather(self._class_weight, tf.argmax(labels, axis=-1))
      else:
        weights = tf.ones_like(per_example)
      loss = tf.nn.compute_average_loss(per_example * weights,
                                        global_batch_size=self.global_batch_size)
      if model.losses:
        loss += tf.nn.scale_regularization_loss(
            tf.add_n([tf.cast(l, tf.float32) for l in model.losses]))
      scaled = self.optimizer.scale_loss(loss)
    grads = tape.gradient(scaled, model.trainable_variables)
    return loss, grads, self._confusion(labels, tf.cast(probs, tf.float32), weights)

  def _train_steps_fn(self, iterator, steps):
    def replica_step(images, labels):
      loss, grads, confusion = self._forward_backward(images, labels)
      # Keras's optimizer all-reduces (sums) the gradients over the replicas here.
      self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
      # One tensor, so that the replicas' metrics cost one reduction a step.
      return tf.concat([loss[tf.newaxis], tf.reshape(confusion, [-1])], axis=0)

    # Sums over the steps, on the device: loss, then the confusion matrix.
    totals = tf.zeros([1 + self.num_classes ** 2], tf.float32)
    done = tf.constant(0, tf.int32)
    for _ in tf.range(steps):
      # Each replica's loss is its share of the global mean: the sum is the mean.
      step = self.strategy.reduce(
          tf.distribute.ReduceOp.SUM,
          self.strategy.run(replica_step, args=next(iterator)), axis=None)
      totals += step
      done += 1
      # The same reduced loss on every worker: all stop at the same step.
      if not tf.math.is_finite(step[0]):
        break
    return totals, done

  def train_steps(self, iterator, steps: int) -> tuple[float, np.ndarray, int]:
    """Up to `steps` global steps in one call, the metrics summed on the device and
    read once; it stops after a step whose loss is not finite. Returns (the steps'
    summed loss, their summed confusion matrix, the steps run)."""
    totals, done = self._train_steps(iterator, tf.constant(steps, tf.int32))
    totals = totals.numpy()   # the host's one sync of these steps
    k = self.num_classes
    return float(totals[0]), totals[1:].reshape(k, k), int(done)

  # --- Validation --------------------------------------------------------------------

  def evaluate(self, dataset: tf.data.Dataset, recall_names) -> dict[str, float]:
    """Inference-mode loss and metrics over a finite dataset, on this worker.

    The loss is the mean per-example loss plus the regularisation losses, as
    Keras's `evaluate` reports it (no class weights in validation).
    """
    # Summed on the device, read once at the end.
    loss_sum, count = tf.zeros([], tf.float32), 0
    confusion = tf.zeros((self.num_classes, self.num_classes))
    for images, labels in dataset:
      probs = tf.cast(self._predict(images), tf.float32)
      loss_sum += tf.reduce_sum(tf.cast(self._loss(labels, probs), tf.float32))
      count += int(labels.shape[0])
      confusion += self._confusion(labels, probs, tf.ones(labels.shape[0]))
    regularization = sum(float(l) for l in self.model.losses)
    mean_loss = float(loss_sum) / count if count else math.nan
    logs = {"val_loss": mean_loss + regularization}
    logs.update(confusion_logs(confusion.numpy(), recall_names, prefix="val_"))
    return logs

  def _broadcast_fn(self, values):
    def keep_first(values):
      context = tf.distribute.get_replica_context()
      first = tf.equal(context.replica_id_in_sync_group, 0)
      return tf.where(first, values, tf.zeros_like(values))

    return self.strategy.reduce(tf.distribute.ReduceOp.SUM,
                                self.strategy.run(keep_first, args=(values,)),
                                axis=None)

  def broadcast(self, logs: dict[str, float]) -> dict[str, float]:
    """The first replica's (the chief's) values of `logs`, on every worker."""
    keys = sorted(logs)
    values = self._broadcast(tf.constant([logs[k] for k in keys], tf.float32))
    return dict(zip(keys, (float(v) for v in values.numpy())))


@dataclasses.dataclass(frozen=True)
class FitPlan:
  """What one `fit` call runs, beside the model, the data and the callbacks.

    epochs, initial_epoch: epochs initial_epoch+1 .. epochs are run (fewer when a
      checkpoint in restore_dir is further on).
    steps_per_epoch, global_batch_size: steps of an epoch, examples per step over
      all replicas.
    recall_names: the log names of the per-class recalls, in class order.
    checkpoint_dir: where this worker writes the resume state; `restore_dir`:
      where it is read from (the chief's folder; the same folder on the chief).
    chief: whether this worker's checkpoint folder is the real one. Other workers
      delete what they wrote after each save.
    class_weight: {class id: weight} or None; jit_compile: XLA for the step.
    log_every: steps per host sync (the steps run in one call, their loss and
      confusion matrix summed on the device); 0 or more than an epoch's steps, once
      an epoch. A step whose loss is not finite ends its call at once.
    verbose: 1, a progress bar of the epoch's steps (a terminal); 2, none (the
      epoch's line is a callback's, `summaries.EpochLine`).
  """

  epochs: int
  steps_per_epoch: int
  global_batch_size: int
  recall_names: Sequence[str]
  checkpoint_dir: str
  restore_dir: str
  chief: bool
  initial_epoch: int = 0
  class_weight: dict | None = None
  jit_compile: bool = False
  log_every: int = 0
  verbose: int = 2


def fit(strategy: tf.distribute.Strategy, train_model: keras.Model,
        train_ds: tf.data.Dataset, val_ds: tf.data.Dataset, plan: FitPlan,
        callbacks: Sequence[keras.callbacks.Callback]) -> int:
  """Trains `train_model` as `Model.fit` would, as `plan` says; returns the number
  of the last epoch run (or restored).

  Args:
    train_ds: endless training batches of the GLOBAL batch size (the strategy
      splits them over the replicas and, across workers, shards them as the
      dataset's auto-shard policy says).
    val_ds: finite validation batches, read whole by every worker.
    callbacks: Keras callbacks, called with the logs `fit` would give them; a
      callback that sets `model.stop_training` ends the run after that batch/epoch.
      Batch hooks run once per `plan.log_every` steps, as fit's do with
      steps_per_execution: on_train_batch_begin(first step), on_train_batch_end(
      last step, {"loss": the mean loss of those steps}).
  """
  loop = Loop(strategy, train_model, global_batch_size=plan.global_batch_size,
              class_weight=plan.class_weight, jit_compile=plan.jit_compile)
  epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False, name=EPOCH_VARIABLE)
  checkpoint = tf.train.Checkpoint(model=train_model, optimizer=loop.optimizer,
                                   epoch=epoch_var)
  initial_epoch = _restore(checkpoint, epoch_var, plan.restore_dir,
                           plan.initial_epoch)
  manager = (tf.train.CheckpointManager(checkpoint, plan.checkpoint_dir,
                                        max_to_keep=2) if plan.chief else None)
  callback_list = keras.callbacks.CallbackList(
      list(callbacks), model=train_model, epochs=plan.epochs,
      steps=plan.steps_per_epoch, verbose=2)
  train_model.stop_training = False
  iterator = iter(strategy.experimental_distribute_dataset(train_ds))
  callback_list.on_train_begin()
  epoch = initial_epoch
  for epoch in range(initial_epoch, plan.epochs):
    callback_list.on_epoch_begin(epoch)
    loss, _, confusion = train_epoch(loop, iterator, callback_list,
                                     plan.steps_per_epoch, plan.log_every,
                                     plan.verbose)
    logs = {"loss": loss, **confusion_logs(confusion, plan.recall_names),
            **loop.broadcast(loop.evaluate(val_ds, plan.recall_names))}
    # The run's callbacks say what the epoch did (summaries.EpochLine prints it).
    callback_list.on_epoch_end(epoch, logs)
    if math.isfinite(logs["loss"]):
      # Only finished, finite epochs are kept for resuming.
      epoch_var.assign(epoch + 1)
      _save(checkpoint, manager, plan.checkpoint_dir, epoch + 1)
    if train_model.stop_training:
      break
  callback_list.on_train_end()
  sys.stdout.flush()
  return epoch + 1


def _restore(checkpoint: tf.train.Checkpoint, epoch_var: tf.Variable,
             restore_dir: str, initial_epoch: int) -> int:
  """Restores the latest checkpoint in `restore_dir`, if any; returns the epoch to
  start from."""
  latest = tf.train.latest_checkpoint(restore_dir)
  if latest:
    checkpoint.restore(latest).assert_existing_objects_matched()
    logging.info("Restored %s (epoch %d)", latest, int(epoch_var))
    initial_epoch = max(initial_epoch, int(epoch_var))
  elif tf.io.gfile.exists(f"{restore_dir}/{KERAS_BACKUP}"):
    logging.warning("%s holds a backup of Keras fit (--training_loop=fit, gone), "
                    "which this loop cannot resume from: the phase starts again "
                    "from its first epoch", restore_dir)
  return initial_epoch


def train_epoch(loop: Loop, iterator, callback_list: keras.callbacks.CallbackList,
                steps_per_epoch: int, log_every: int = 0, verbose: int = 2
                ) -> tuple[float, int, np.ndarray]:
  """One epoch's training steps, `log_every` per call (0: the whole epoch in one);
  returns (mean loss, steps run, summed confusion matrix). Stops early when a
  callback sets the model's stop_training at a sync."""
  if log_every < 0:
    raise ValueError(f"--log_every={log_every}: expected 0 (once an epoch) or a "
                     "positive number of steps")
  chunk = min(log_every or steps_per_epoch, steps_per_epoch)
  loss_sum, steps = 0.0, 0
  confusion = np.zeros((loop.num_classes, loop.num_classes))
  bar = keras.utils.Progbar(steps_per_epoch, verbose=1) if verbose == 1 else None
  while steps < steps_per_epoch:
    callback_list.on_train_batch_begin(steps)
    chunk_loss, chunk_confusion, done = loop.train_steps(
        iterator, min(chunk, steps_per_epoch - steps))
    loss_sum += chunk_loss
    confusion += chunk_confusion
    steps += done
    mean = chunk_loss / max(1, done)
    callback_list.on_train_batch_end(steps - 1, {"loss": mean})
    if bar is not None:
      bar.update(steps, [("loss", mean)])
    if loop.model.stop_training or not math.isfinite(chunk_loss):
      break
  return loss_sum / max(1, steps), steps, confusion


def _save(checkpoint: tf.train.Checkpoint, manager, checkpoint_dir: str,
          number: int) -> None:
  """Saves the resume state; a worker other than the chief (no manager) writes to
  its own folder and deletes it again (the collectives need every worker to save)."""
  if manager is not None:
    manager.save(checkpoint_number=number)
  else:
    # A fresh manager each time: the last one's files are gone.
    tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=1).save(
        checkpoint_number=number)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)

