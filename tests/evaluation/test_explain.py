"""Tests of hep2tf.evaluation.explain: SmoothGrad maps and the mask and randomisation
checks."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import pytest

from hep2tf import models
from hep2tf.errors import InputError
from hep2tf.evaluation import explain

SIZE = 32


def _cells(count=6, seed=0):
  """Bright discs (the cells, radius 8, centred) on a dim noisy background."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:SIZE, :SIZE]
  mask = (yy - 16) ** 2 + (xx - 16) ** 2 <= 64
  images = rng.normal(5.0, 2.0, (count, SIZE, SIZE, 1))
  images[:, mask] += (rng.uniform(60, 120, (count, 1, 1))
                     + rng.normal(0, 10, (count, mask.sum(), 1)))
  return np.clip(images, 0, 255).astype(np.float32), np.repeat(mask[None], count, 0)


def _region_model(top, left, size):
  """Two-class model that looks only at a size x size window at (top, left): the
  logits are (+mean, -mean) of the window, so class 0 wins and its gradient is
  positive exactly on the window."""
  inputs = keras.Input((SIZE, SIZE, 1))
  window = keras.layers.Cropping2D(((top, SIZE - top - size),
                                    (left, SIZE - left - size)))(inputs)
  pooled = keras.layers.GlobalAveragePooling2D()(window)
  logits = keras.layers.Dense(2, name="logits")(pooled)
  probs = keras.layers.Activation("softmax", name="probs")(logits)
  model = keras.Model(inputs, probs)
  model.get_layer("logits").set_weights([np.array([[1.0, -1.0]]), np.zeros(2)])
  return model


def test_plain_gradient_of_a_window_model_is_exact():
  images, _ = _cells(2)
  model = _region_model(4, 6, 5)
  maps = explain.smoothgrad(model, images, [0, 0], samples=1, noise=0.0)
  expected = np.zeros((SIZE, SIZE))
  expected[4:9, 6:11] = 1.0 / 25
  np.testing.assert_allclose(maps[0], expected, atol=1e-6)
  np.testing.assert_allclose(maps[1], expected, atol=1e-6)
  # The other class's logit has the opposite gradient.
  np.testing.assert_allclose(explain.smoothgrad(model, images[:1], [1], samples=1,
                                                noise=0.0)[0], -expected, atol=1e-6)


def test_lift_by_hand():
  mask = np.zeros((1, 4, 4), bool)
  mask[0, :2, :2] = True                      # a quarter of the area
  inside = np.where(mask, 1.0, 0.0)
  assert explain.lift(inside, mask)[0] == pytest.approx(4.0)
  assert explain.lift(np.ones((1, 4, 4)), mask)[0] == pytest.approx(1.0)
  assert explain.lift(-inside, mask) == (None, [None])   # no positive mass
  with pytest.raises(InputError):
    explain.lift(np.ones((1, 4, 4)), np.ones((1, 3, 3)))


def test_mask_check_catches_attribution_forced_off_the_cell():
  images, masks = _cells(6)
  on_cell = _region_model(12, 12, 8)          # inside the disc
  off_cell = _region_model(0, 0, 6)           # the top-left corner: background
  _, on = explain.attribution_checks(on_cell, images, [0] * 6, masks, samples=4)
  _, off = explain.attribution_checks(off_cell, images, [0] * 6, masks, samples=4)
  area = masks[0].mean()
  assert on["mask_lift"] > 1.5 and on["mask_lift"] == pytest.approx(1 / area, rel=0.05)
  assert off["mask_lift"] < 0.1
  # The intensity map is the same for both: it is about the images, not the model.
  assert on["intensity_lift"] == pytest.approx(off["intensity_lift"])
  assert on["intensity_lift"] > 1.5
  assert on["method"] == "smoothgrad" and on["num_cells"] == 6


def test_randomisation_check():
  rng = np.random.default_rng(1)
  a = rng.normal(size=(3, 10, 10))
  assert explain.rank_correlation(a, a) == pytest.approx(1.0)
  assert abs(explain.rank_correlation(a, rng.normal(size=(3, 10, 10)))) < 0.2
  model = models.build_model("cnn", (SIZE, SIZE, 1), 3, filters=(8, 8, 8, 8, 8),
                             kernel_sizes=(3, 3, 3, 3, 3), dense_units=16)
  copy = explain.randomised_copy(model, seed=5)
  assert not np.allclose(copy.get_layer("conv1").get_weights()[0],
                         model.get_layer("conv1").get_weights()[0])
  images, masks = _cells(4)
  maps, summary = explain.attribution_checks(model, images, [0, 1, 2, 0], masks,
                                             samples=2)
  assert maps.shape == (4, SIZE, SIZE)
  assert -1.0 <= summary["randomisation_rank_corr"] <= 1.0
  # A "map" that ignores the weights (the image itself) correlates perfectly.
  assert explain.rank_correlation(images[..., 0], images[..., 0]) == pytest.approx(1.0)


def test_select_cells_shows_errors_first_and_every_class():
  y_true = np.array([0, 0, 0, 1, 1, 2, 2, 2])
  probs = np.eye(3)[[0, 1, 0, 1, 1, 2, 0, 2]] * 0.5 + 0.1
  probs[1, 1] = 0.9                            # the most confident error
  chosen = explain.select_cells(y_true, probs, 6)
  assert list(chosen[:2]) == [1, 6]            # errors, most confident first
  assert {int(y_true[i]) for i in chosen[2:]} == {0, 1, 2}
  assert len(chosen) == len(set(chosen)) == 6
