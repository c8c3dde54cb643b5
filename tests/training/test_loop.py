"""The training loop (hep2tf/training/loop.py) on a tiny dense model: its metrics are
`metrics.confusion_scores` of what the model predicts, they stay on the device for
`log_every` steps, and a non-finite loss ends a call at its step."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from hep2tf.evaluation import metrics
from hep2tf.training import loop

NAMES = ["a", "b", "c"]
RECALLS = [f"recall_{n}" for n in NAMES]
BATCH = 8


def _model(seed=0):
  keras.utils.set_random_seed(seed)
  inputs = keras.Input((4,))
  outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Dense(8)(inputs))
  model = keras.Model(inputs, outputs)
  model.compile(optimizer=keras.optimizers.SGD(0.1),
                loss=keras.losses.CategoricalCrossentropy())
  return model


def _data(n=64, seed=0, soft=False):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 4)).astype("float32")
  y = rng.integers(0, 3, size=n)
  labels = np.eye(3, dtype="float32")[y]
  if soft:   # as mixup makes them: the dominant class is the label
    labels = 0.7 * labels + 0.3 * np.eye(3, dtype="float32")[rng.integers(0, 3, n)]
  return x, y, labels


def _iterator(x, labels, strategy):
  ds = tf.data.Dataset.from_tensor_slices((x, labels)).repeat().batch(
      BATCH, drop_remainder=True)
  return iter(strategy.experimental_distribute_dataset(ds))


@pytest.mark.parametrize("soft", [False, True])
def test_validation_logs_are_the_reports_scores(soft):
  x, y, labels = _data(soft=soft)
  model = _model()
  runner = loop.Loop(tf.distribute.get_strategy(), model, global_batch_size=BATCH)
  ds = tf.data.Dataset.from_tensor_slices((x, labels)).batch(BATCH)
  logs = runner.evaluate(ds, RECALLS)
  report = metrics.classification_report(np.argmax(labels, 1), model.predict(x),
                                         NAMES)
  assert 0.0 < report["mca"] < 1.0
  assert logs["val_mca"] == pytest.approx(report["mca"], abs=1e-6)
  assert logs["val_accuracy"] == pytest.approx(report["aca"], abs=1e-6)
  assert logs["val_recall_b"] == pytest.approx(report["per_class"]["b"]["recall"])
  assert np.isfinite(logs["val_loss"])


def test_steps_in_one_call_are_the_same_updates_as_one_call_each():
  """log_every changes when the host reads, not what is computed."""
  x, _, labels = _data()
  strategy = tf.distribute.get_strategy()
  results = []
  for calls in ([5], [1] * 5):
    model = _model()
    runner = loop.Loop(strategy, model, global_batch_size=BATCH,
                       class_weight={0: 2.0, 1: 1.0, 2: 0.5})
    iterator = _iterator(x, labels, strategy)
    loss, confusion, steps = 0.0, np.zeros((3, 3)), 0
    for n in calls:
      chunk_loss, chunk_confusion, done = runner.train_steps(iterator, n)
      loss, confusion, steps = loss + chunk_loss, confusion + chunk_confusion, (
          steps + done)
    results.append((loss, confusion, steps, model.get_weights()))
    assert int(runner.optimizer.iterations) == 5
  (loss5, confusion5, steps5, weights5), (loss1, confusion1, steps1, weights1) = (
      results)
  assert steps5 == steps1 == 5
  assert loss5 == pytest.approx(loss1, rel=1e-5)
  np.testing.assert_allclose(confusion5, confusion1, rtol=1e-5)
  # Class-weighted rows: 5 batches of 8 cells, the weights of their true classes.
  counts = np.bincount(np.argmax(labels[:40], 1), minlength=3)
  np.testing.assert_allclose(confusion5.sum(axis=1), counts * [2.0, 1.0, 0.5],
                             rtol=1e-5)
  for a, b in zip(weights5, weights1):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_non_finite_loss_ends_the_call_at_its_step():
  x, _, labels = _data()
  x[2 * BATCH + 3] = np.nan           # the third batch
  model = _model()
  strategy = tf.distribute.get_strategy()
  runner = loop.Loop(strategy, model, global_batch_size=BATCH)
  loss, _, done = runner.train_steps(_iterator(x, labels, strategy), 6)
  assert done == 3 and not np.isfinite(loss)
  assert int(runner.optimizer.iterations) == 3


class _Batches(keras.callbacks.Callback):
  def __init__(self):
    super().__init__()
    self.begins, self.ends = [], []

  def on_train_batch_begin(self, batch, logs=None):
    self.begins.append(batch)

  def on_train_batch_end(self, batch, logs=None):
    self.ends.append((batch, logs["loss"]))


@pytest.mark.parametrize("log_every, begins, ends", [
    (3, [0, 3, 6], [2, 5, 6]), (0, [0], [6]), (50, [0], [6]),
    (1, list(range(7)), list(range(7)))])
def test_an_epoch_syncs_every_log_every_steps(log_every, begins, ends):
  x, _, labels = _data()
  model = _model()
  strategy = tf.distribute.get_strategy()
  runner = loop.Loop(strategy, model, global_batch_size=BATCH)
  batches = _Batches()
  callbacks = keras.callbacks.CallbackList([batches], model=model)
  loss, steps, confusion = loop.train_epoch(runner, _iterator(x, labels, strategy),
                                            callbacks, 7, log_every)
  assert steps == 7 and confusion.sum() == 7 * BATCH
  assert batches.begins == begins and [b for b, _ in batches.ends] == ends
  assert np.isfinite(loss) and all(np.isfinite(v) for _, v in batches.ends)


def test_a_callback_stops_the_epoch_at_the_next_sync():
  x, _, labels = _data()
  model = _model()
  strategy = tf.distribute.get_strategy()
  runner = loop.Loop(strategy, model, global_batch_size=BATCH)

  class Stop(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
      self.model.stop_training = True

  model.stop_training = False
  callbacks = keras.callbacks.CallbackList([Stop()], model=model)
  _, steps, _ = loop.train_epoch(runner, _iterator(x, labels, strategy), callbacks,
                                 7, 3)
  assert steps == 3
  with pytest.raises(ValueError, match="log_every"):
    loop.train_epoch(runner, _iterator(x, labels, strategy), callbacks, 7, -1)


def test_a_keras_fit_backup_is_named_and_the_phase_starts_again(tmp_path, caplog):
  """A run interrupted under the gone --training_loop=fit left Keras's backup, which
  the loop cannot read: it says so and starts the phase from its first epoch."""
  (tmp_path / loop.KERAS_BACKUP).write_text('{"epoch": 3}')
  model = _model()
  epoch = tf.Variable(0, dtype=tf.int64)
  checkpoint = tf.train.Checkpoint(model=model, epoch=epoch)
  with caplog.at_level("WARNING"):
    assert loop._restore(checkpoint, epoch, str(tmp_path), 0) == 0
  assert "Keras fit" in caplog.text and str(tmp_path) in caplog.text
