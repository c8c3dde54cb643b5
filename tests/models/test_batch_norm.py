"""The fused batch norm trains as Keras's BatchNormalization does."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from hep2tf.models.batch_norm import BatchNorm


def _pair(momentum=0.9, **kwargs):
  ours = BatchNorm(momentum=momentum, **kwargs)
  theirs = keras.layers.BatchNormalization(momentum=momentum, **kwargs)
  x = tf.random.stateless_normal((8, 6, 5, 4), seed=(1, 2)) * 3.0 + 1.5
  ours.build(x.shape)
  theirs.build(x.shape)
  rng = np.random.default_rng(0)
  weights = [rng.uniform(0.5, 2.0, 4).astype("float32"),
             rng.normal(size=4).astype("float32"),
             rng.normal(size=4).astype("float32"),
             rng.uniform(0.5, 2.0, 4).astype("float32")]
  ours.set_weights(weights)
  theirs.set_weights(weights)
  return ours, theirs, x


def test_training_output_gradients_and_moving_statistics_match_keras():
  ours, theirs, x = _pair()
  results = []
  for layer in (ours, theirs):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = layer(x, training=True)
      loss = tf.reduce_sum(y * tf.range(4, dtype=tf.float32))
    grads = tape.gradient(loss, [x, layer.gamma, layer.beta])
    results.append((y, grads, layer.moving_mean.numpy(),
                    layer.moving_variance.numpy()))
  (y1, g1, mean1, var1), (y2, g2, mean2, var2) = results
  np.testing.assert_allclose(y1, y2, atol=1e-4)
  for a, b in zip(g1, g2):
    np.testing.assert_allclose(a, b, atol=1e-3, rtol=1e-4)
  np.testing.assert_allclose(mean1, mean2, rtol=1e-5, atol=1e-6)
  # The fused kernel keeps the unbiased batch variance: n / (n - 1), n = 8 * 6 * 5.
  n = 8 * 6 * 5
  start = _pair()[0].get_weights()[3]
  np.testing.assert_allclose((var1 - 0.9 * start) / 0.1,
                             (var2 - 0.9 * start) / 0.1 * n / (n - 1), rtol=1e-4)


def test_inference_is_keras_own():
  ours, theirs, x = _pair()
  np.testing.assert_array_equal(ours(x, training=False), theirs(x, training=False))


def test_bfloat16_inputs_train():
  layer = BatchNorm(dtype=keras.DTypePolicy("mixed_bfloat16"))
  x = tf.cast(tf.random.stateless_normal((4, 8, 8, 3), seed=(3, 4)), tf.bfloat16)
  y = layer(x, training=True)
  assert y.dtype == tf.bfloat16
  means = tf.reduce_mean(tf.cast(y, tf.float32), axis=(0, 1, 2))
  np.testing.assert_allclose(means, 0.0, atol=0.05)


@pytest.mark.parametrize("shape", [(6, 5), (2, 3, 4, 5, 2)])
def test_other_ranks_train_through_keras(shape):
  ours = BatchNorm()
  theirs = keras.layers.BatchNormalization()
  x = tf.random.stateless_normal(shape, seed=(5, 6))
  np.testing.assert_allclose(ours(x, training=True), theirs(x, training=True),
                             atol=1e-5)


def test_frozen_layer_uses_moving_statistics():
  ours, theirs, x = _pair()
  ours.trainable = False
  theirs.trainable = False
  np.testing.assert_allclose(ours(x, training=True), theirs(x, training=True),
                             atol=1e-6)


def test_saves_and_loads(tmp_path):
  inputs = keras.Input((6, 5, 4))
  model = keras.Model(inputs, BatchNorm(name="bn")(inputs))
  path = str(tmp_path / "m.keras")
  model.save(path)
  loaded = keras.saving.load_model(path, safe_mode=True)
  assert type(loaded.get_layer("bn")) is BatchNorm
  x = np.random.default_rng(1).normal(size=(2, 6, 5, 4)).astype("float32")
  np.testing.assert_array_equal(model(x), loaded(x))
