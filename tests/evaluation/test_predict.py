"""evaluation/predict.py: one prediction loop for the trainer, evaluate and predict."""

import keras
import numpy as np
import tensorflow as tf

from hep2tf.data import augment
from hep2tf.evaluation import predict

CLASSES = 3


def _model(side=6):
  """A tiny hep2tf-shaped model: a Dense "logits" layer, then a softmax "probs"."""
  inputs = keras.Input((side, side, 1))
  x = keras.layers.Rescaling(1 / 255)(inputs)   # images in [0, 255], as the reader's
  x = keras.layers.Conv2D(2, 3, padding="same")(x)
  x = keras.layers.Flatten()(x)
  logits = keras.layers.Dense(CLASSES, name="logits")(x)
  probs = keras.layers.Softmax(name="probs")(logits)
  keras.utils.set_random_seed(0)
  return keras.Model(inputs, probs)


def _data(n=10, side=6):
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (n, side, side, 1)).astype(np.float32)
  y = rng.integers(0, CLASSES, n)
  return images, y


def test_one_loop_for_labelled_batches_meta_batches_and_bare_arrays():
  model = _model()
  images, y = _data()
  labels = tf.one_hot(y, CLASSES)
  ids = tf.constant([f"{i:03d}" for i in range(len(y))])
  with_meta = tf.data.Dataset.from_tensor_slices(
      (images, labels, {"id": ids})).batch(4)
  without_meta = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)

  # The trainer's scores: the model's own probabilities, the first images kept.
  y_true, probs, shown = predict.predict_probabilities(model, without_meta,
                                                       keep_images=6)
  np.testing.assert_array_equal(y_true, y)
  np.testing.assert_allclose(probs, model(images).numpy(), atol=1e-6)
  np.testing.assert_array_equal(shown, images[:6].astype(np.uint8))

  # evaluate: logits (1 view, N, K) and the meta as strings.
  y_meta, logits, meta, none = predict.predict_logits(model, with_meta)
  assert logits.shape == (1, len(y), CLASSES) and none is None
  np.testing.assert_array_equal(y_meta, y)
  assert list(meta["id"]) == [f"{i:03d}" for i in range(len(y))]
  np.testing.assert_allclose(predict.view_probabilities(logits), probs, atol=1e-6)

  # predict_files: bare arrays, no labels.
  bare = list(predict.iterate_logits(
      model, (images[i:i + 4] for i in range(0, len(y), 4))))
  assert [len(batch) for batch, _, _, _ in bare] == [4, 4, 2]
  assert all(labels is None and meta == {} for _, _, labels, meta in bare)
  np.testing.assert_allclose(np.concatenate([view for _, view, _, _ in bare], axis=1),
                             logits, atol=1e-6)


def test_tta_averages_the_dihedral_views_at_the_temperature():
  model = _model()
  images, y = _data(n=5)
  dataset = tf.data.Dataset.from_tensor_slices(
      (images, tf.one_hot(y, CLASSES))).batch(5)
  _, logits, _, _ = predict.predict_logits(model, dataset, tta=True)
  assert logits.shape == (8, 5, CLASSES)
  views = [model(augment.dihedral(images, k)).numpy() for k in range(8)]
  np.testing.assert_allclose(predict.view_probabilities(logits),
                             np.mean(views, axis=0), atol=1e-6)
  _, probs, _ = predict.predict_probabilities(model, dataset, tta=True,
                                              temperature=2.0)
  assert min(v.min() for v in views) > 1e-6   # so that the logs below are exact
  scaled = [np.exp(np.log(v) / 2.0) for v in views]
  np.testing.assert_allclose(
      probs, np.mean([s / s.sum(1, keepdims=True) for s in scaled], axis=0),
      atol=1e-6)
  # A non-square image keeps its shape in 4 of the 8 views.
  assert predict.tta_transforms(6, 8) == [0, 2, 4, 6]
