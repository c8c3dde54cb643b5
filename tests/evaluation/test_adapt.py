"""Test-time adaptation (AdaBN): each specimen's cells are predicted with BatchNorm
statistics re-estimated from that specimen's own cells, without reading labels."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from hep2tf.data import schema
from hep2tf.evaluation import adapt, evaluate
from hep2tf.models import build_model

SHAPE = (32, 32, 1)


def _cells(rng, n, level):
  images = rng.normal(5, 1, (n,) + SHAPE)
  images[:, 8:24, 8:24] += level * rng.uniform(0.5, 1.0, (n, 1, 1, 1))
  return np.clip(images, 0, None).astype("float32")


def _dataset(images, labels, groups, batch=5):
  meta = {schema.GROUP: tf.constant(groups)}
  one_hot = tf.one_hot(labels, 3)
  return tf.data.Dataset.from_tensor_slices((images, one_hot, meta)).batch(batch)


def test_statistics_are_the_groups_and_are_put_back():
  model = build_model("cnn_bn", SHAPE, 3, filters=(4, 4, 4, 4, 4), dense_units=8)
  images = _cells(np.random.default_rng(0), 12, 80.0)
  first = adapt.batch_norm_layers(model)[0]
  trained = np.array(first.moving_mean)
  conv1 = keras.Model(model.inputs, model.get_layer("conv1").output)
  want = np.asarray(conv1(images)).mean(axis=(0, 1, 2))
  saved = adapt.adapt_statistics(model, images)
  np.testing.assert_allclose(np.array(first.moving_mean), want, rtol=1e-4, atol=1e-5)
  assert first.momentum == 0.99
  adapt.restore_statistics(model, saved)
  np.testing.assert_array_equal(np.array(first.moving_mean), trained)


def test_each_group_is_predicted_with_its_own_statistics_and_no_labels():
  rng = np.random.default_rng(1)
  model = build_model("cnn_bn", SHAPE, 3, filters=(4, 4, 4, 4, 4), dense_units=8)
  images = np.concatenate([_cells(rng, 6, 40.0), _cells(rng, 7, 150.0)])
  groups = np.array(["A"] * 6 + ["B"] * 7)
  labels = rng.integers(0, 3, len(images))
  _, logits, meta, _ = adapt.predict_logits_by_group(
      model, _dataset(images, labels, groups))
  assert logits.shape == (1, 13, 3)
  for group in ("A", "B"):
    index = groups == group
    saved = adapt.adapt_statistics(model, images[index])
    logits_model = keras.Model(model.inputs, model.get_layer("logits").output)
    alone = np.asarray(logits_model(images[index], training=False))
    adapt.restore_statistics(model, saved)
    np.testing.assert_allclose(logits[0, index], alone, rtol=1e-4, atol=1e-4)
  # Other labels, the same predictions: adaptation never reads them.
  _, again, _, _ = adapt.predict_logits_by_group(
      model, _dataset(images, (labels + 1) % 3, groups))
  np.testing.assert_allclose(again, logits, atol=1e-6)
  assert list(meta[schema.GROUP]) == list(groups)
  # "split": one set of statistics for all cells, whatever their group.
  _, pooled, _, _ = adapt.predict_logits_by_group(
      model, _dataset(images, labels, groups), unit="split")
  saved = adapt.adapt_statistics(model, images)
  want = np.asarray(keras.Model(model.inputs, model.get_layer("logits").output)(
      images, training=False))
  adapt.restore_statistics(model, saved)
  np.testing.assert_allclose(pooled[0], want, rtol=1e-4, atol=1e-4)
  assert np.abs(pooled - logits).max() > 1e-3


def test_models_without_batch_norm_or_records_without_groups_are_refused():
  with pytest.raises(ValueError, match="has none"):
    evaluate.check_adaptable(build_model("cnn", SHAPE, 3, filters=(4,) * 5,
                                         dense_units=8))
  model = build_model("cnn_bn", SHAPE, 3, filters=(4,) * 5, dense_units=8)
  images = _cells(np.random.default_rng(2), 4, 50.0)
  with pytest.raises(ValueError, match="specimen of each cell"):
    adapt.predict_logits_by_group(model, _dataset(images, [0, 1, 2, 0],
                                                  np.array([""] * 4)))
