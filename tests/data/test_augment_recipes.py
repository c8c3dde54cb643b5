"""Tests of hep2tf.data.augment_recipes: RandAugment, colour jitter and random resized
crop act at each image's own level, on grey and RGB cells."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from hep2tf.data import augment_recipes  # noqa: E402


def cells(n=16, size=24, channels=1, seed=0):
  """Dark background, a brighter disc, texture: values up to exactly 255."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:size, :size]
  disc = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2)
  images = rng.uniform(0, 20, (n, size, size, channels))
  images[:, disc] += rng.uniform(60, 200, (n, int(disc.sum()), channels))
  images = np.clip(images, 0, 255)
  images[:, 0, 0, 0] = 255.0
  return images.astype("float32")


@pytest.mark.parametrize("channels", [1, 3])
def test_randaugment_gives_a_dim_cell_what_it_gives_a_bright_one(channels):
  # A 16-bit source 8 bits darker reaches the model at 1/256 of the level: exact in
  # float, so the same draws must give the same image at 1/256 of the level.
  bright = cells(channels=channels)
  dim = bright / 256.0
  out_bright = np.asarray(augment_recipes.LevelRandAugment(2, 0.5, seed=3)(
      bright, training=True))
  out_dim = np.asarray(augment_recipes.LevelRandAugment(2, 0.5, seed=3)(
      dim, training=True))
  assert not np.allclose(out_bright, bright)
  np.testing.assert_allclose(out_dim * 256.0, out_bright, rtol=1e-5, atol=1e-3)
  # Never above the image's own level; Keras' layer fed the dim cell as it is adds
  # brightness and solarises in absolute grey levels.
  assert out_dim.max() <= dim.max() + 1e-6
  raw = keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=0.5, seed=3)
  lifted = max(float(np.max(raw(dim, training=True))) for _ in range(8))
  assert lifted > 10 * dim.max()


def test_randaugment_fills_with_the_dark_background():
  layer = augment_recipes.LevelRandAugment(2, 0.5, seed=0)
  assert {getattr(layer.rand_augment, name).fill_mode
          for name in augment_recipes._GEOMETRIC} == {"constant"}


def test_color_jitter_brightness_multiplies_and_contrast_keeps_the_mean():
  images = cells(n=32) * 0.5
  bright = np.asarray(augment_recipes.RandomColorJitter(0.4, 0.0, 0.0, seed=1)(
      images, training=True))
  factors = bright[:, 12, 12, 0] / images[:, 12, 12, 0]
  np.testing.assert_allclose(bright, images * factors[:, None, None, None],
                             rtol=1e-5)
  assert 0.6 <= factors.min() < 0.9 and 1.1 < factors.max() <= 1.4
  lifted = images + 50.0   # nothing clips at 0 or 255 after a contrast of 0.6..1.4
  contrast = np.asarray(augment_recipes.RandomColorJitter(0.0, 0.4, 0.0, seed=2)(
      lifted, training=True))
  np.testing.assert_allclose(contrast.mean(axis=(1, 2, 3)),
                             lifted.mean(axis=(1, 2, 3)), rtol=1e-4)
  assert not np.allclose(contrast, lifted)


def test_color_jitter_saturation_leaves_grey_and_moves_colour():
  grey = cells(n=8)
  np.testing.assert_allclose(
      augment_recipes.RandomColorJitter(0.0, 0.0, 0.4, seed=3)(grey, training=True),
      grey, rtol=1e-6)
  # Colour well inside the range, so that a saturation of 0.6..1.4 clips nowhere.
  rgb = 60.0 + cells(n=8, channels=3) * np.array([0.4, 0.25, 0.1], "float32")
  out = np.asarray(augment_recipes.RandomColorJitter(0.0, 0.0, 0.4, seed=3)(
      rgb, training=True))
  luma = (rgb * augment_recipes._LUMA).sum(-1)
  np.testing.assert_allclose((out * augment_recipes._LUMA).sum(-1), luma, rtol=1e-4)
  assert not np.allclose(out, rgb)
  # Scale-invariant: a cell at 1/256 of the level gets the same jitter at that level.
  dim = np.asarray(augment_recipes.RandomColorJitter(0.4, 0.4, 0.4, seed=4)(
      rgb / 256.0, training=True))
  full = np.asarray(augment_recipes.RandomColorJitter(0.4, 0.4, 0.4, seed=4)(
      rgb, training=True))
  np.testing.assert_allclose(dim * 256.0, full, rtol=1e-4, atol=1e-3)


def test_resized_crop_takes_a_box_of_the_asked_area_and_resizes_it():
  ramp = np.tile(np.arange(16, dtype="float32"), (8, 16, 1))[..., None]  # x = column
  whole = augment_recipes.RandomResizedCrop((1.0, 1.0), (1.0, 1.0), seed=0)
  np.testing.assert_allclose(whole(ramp, training=True), ramp, atol=1e-4)
  quarter = np.asarray(augment_recipes.RandomResizedCrop((0.25, 0.25), (1.0, 1.0),
                                                         seed=1)(ramp, training=True))
  assert quarter.shape == ramp.shape
  # Half the width, resized to 16 columns: the ramp spans 7.5 instead of 15.
  np.testing.assert_allclose(quarter[:, :, -1, 0] - quarter[:, :, 0, 0], 7.5,
                             atol=1e-3)
  assert len({round(float(q[0, 0, 0]), 3) for q in quarter}) > 1  # random places


def test_recipe_layers_refuse_bad_settings():
  with pytest.raises(ValueError, match="magnitude"):
    augment_recipes.LevelRandAugment(2, 1.5)
  with pytest.raises(ValueError, match="num_ops"):
    augment_recipes.LevelRandAugment(0)
  with pytest.raises(ValueError, match="brightness"):
    augment_recipes.RandomColorJitter(brightness=1.0)
  with pytest.raises(ValueError, match="scale"):
    augment_recipes.RandomResizedCrop((0.5, 0.2))
