"""Tests of hep2tf.data.augment, augment_layers and mixing, each op eagerly and inside
tf.function / tf.data."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from hep2tf.config.augment import AugmentConfig  # noqa: E402
from hep2tf.data import (augment, augment_layers, augment_recipes, dihedral,  # noqa: E402
                         mixing, specimen_layers)


def asymmetric_image(height=5, width=5, channels=1):
  """An image with no symmetry: every pixel value is different."""
  return np.arange(height * width * channels, dtype=np.float32).reshape(
      height, width, channels) + 1


def run_in(mode, fn, x):
  """Runs fn(x) eagerly, in a tf.function, or in a tf.data map."""
  if mode == "eager":
    return np.asarray(fn(x))
  if mode == "tf.function":
    return tf.function(fn)(tf.constant(x)).numpy()
  ds = tf.data.Dataset.from_tensors(x).map(fn)
  return next(iter(ds)).numpy()


# ---------------------------------------------------------------- layers

LAYERS = {
    "dihedral": lambda: augment_layers.RandomDihedral(seed=1),
    "quarter_turn": lambda: augment_layers.RandomQuarterTurn(seed=2),
    "erasing": lambda: augment_layers.RandomErasing(1.0, scale=(0.1, 0.3), seed=3),
    "augmenter": lambda: augment.build_augmenter(brightness=0.2, contrast=0.2,
                                                 erasing=0.5, seed=4),
    "defocus": lambda: specimen_layers.RandomDefocus(2.0, seed=5),
    "gain_gamma": lambda: specimen_layers.RandomGainGamma(0.5, 0.3, seed=6),
    "background_offset": lambda: specimen_layers.RandomBackgroundOffset(0.2, seed=7),
    "sensor_noise": lambda: specimen_layers.RandomSensorNoise(0.01, 0.02, seed=8),
    "randaugment": lambda: augment_recipes.LevelRandAugment(2, 0.5, seed=10),
    "color_jitter": lambda: augment_recipes.RandomColorJitter(0.4, 0.4, 0.4, seed=11),
    "resized_crop": lambda: augment_recipes.RandomResizedCrop((0.2, 0.6), seed=12),
    "recipe_augmenter": lambda: augment.build_augmenter(
        rotation=False, resized_crop=0.3, color_jitter=0.4, randaugment=2, seed=13),
    "specimen_augmenter": lambda: augment.build_augmenter(
        rotation=False, rot90=False, flips=False, defocus=1.5, gain=0.4, gamma=0.2,
        background_offset=0.1, shot_noise=0.01, read_noise=0.02, seed=9),
    "zoom": lambda: augment.build_augmenter(rotation=False, rot90=False, flips=False,
                                            zoom=0.3, seed=10),
    "grain": lambda: specimen_layers.RandomGrain(0.05, seed=11),
}


def identical_batch(n=16):
  return np.stack([asymmetric_image(8, 8, 1) * 3] * n)


@pytest.mark.parametrize("mode", ["eager", "tf.function", "tf.data"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_identity_at_inference(name, mode):
  layer = LAYERS[name]()
  batch = identical_batch()
  got = run_in(mode, lambda x: layer(x, training=False), batch)
  np.testing.assert_array_equal(got, batch)


@pytest.mark.parametrize("mode", ["eager", "tf.function", "tf.data"])
@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layer_changes_examples_differently_in_training(name, mode):
  layer = LAYERS[name]()
  batch = identical_batch()
  got = run_in(mode, lambda x: layer(x, training=True), batch)
  assert got.shape == batch.shape and got.dtype == np.float32
  assert not np.array_equal(got, batch)
  distinct = {g.tobytes() for g in got}
  assert len(distinct) > 1, "every example got the same transform"


def test_custom_layers_default_to_identity():
  batch = identical_batch(4)
  for layer in (augment_layers.RandomDihedral(seed=0),
                augment_layers.RandomErasing(1.0, seed=0)):
    np.testing.assert_array_equal(layer(batch), batch)


def test_random_dihedral_draws_only_and_all_dihedral_transforms():
  image = asymmetric_image(6, 6, 1)
  out = augment_layers.RandomDihedral(seed=5)(np.stack([image] * 64),
                                              training=True).numpy()
  candidates = [dihedral.transform(image, k) for k in range(8)]
  seen = set()
  for example in out:
    matches = [k for k, c in enumerate(candidates) if np.array_equal(example, c)]
    assert len(matches) == 1
    seen.add(matches[0])
  assert seen == set(range(8))


def test_quarter_turn_draws_only_rotations():
  image = asymmetric_image(6, 6, 1)
  out = augment_layers.RandomQuarterTurn(seed=5)(np.stack([image] * 32),
                                                 training=True).numpy()
  rotations = [np.rot90(image, k) for k in range(4)]
  seen = {next(k for k, r in enumerate(rotations) if np.array_equal(o, r))
          for o in out}
  assert seen == {0, 1, 2, 3}


def test_random_erasing_fills_one_box_with_zero():
  batch = np.full((8, 20, 20, 1), 100.0, np.float32)
  out = augment_layers.RandomErasing(1.0, scale=(0.1, 0.2), seed=7)(
      batch, training=True).numpy()
  assert set(np.unique(out)) <= {0.0, 100.0}
  for example in out:
    rows, cols = np.nonzero(example[..., 0] == 0)
    # One solid rectangle: the bounding box of the zeros is all zeros.
    box = example[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert np.all(box == 0)
    assert 0.05 <= len(rows) / 400 <= 0.3


def test_build_augmenter_composition_and_name():
  full = augment.build_augmenter(brightness=0.1, contrast=0.1, erasing=0.5)
  assert full.name == "augment"
  assert [type(l).__name__ for l in full.layers] == [
      "RandomRotation", "RandomDihedral", "RandomBrightness", "RandomContrast",
      "RandomErasing"]
  recipe = augment.build_augmenter(resized_crop=0.08, color_jitter=0.4,
                                   randaugment=2, erasing=0.25)
  assert [type(l).__name__ for l in recipe.layers] == [
      "RandomResizedCrop", "RandomRotation", "RandomDihedral", "RandomColorJitter",
      "LevelRandAugment", "RandomErasing"]
  only_flips = augment.build_augmenter(rotation=False, rot90=False)
  assert [type(l).__name__ for l in only_flips.layers] == ["RandomFlip"]
  nothing = augment.build_augmenter(rotation=False, rot90=False, flips=False)
  batch = identical_batch(2)
  np.testing.assert_array_equal(nothing(batch, training=True), batch)


def test_build_augmenter_reads_the_augment_section():
  """STACK_DEFAULTS are AugmentConfig's defaults (data/ cannot import the config
  package, so they are written twice and checked here); a config object and the same
  fields by name build the same stack; an unknown field is refused."""
  defaults = AugmentConfig()
  assert {name: getattr(defaults, name) for name in augment.STACK_DEFAULTS} == (
      augment.STACK_DEFAULTS)
  config = AugmentConfig(rotation=False, flips=False, gain=0.3, erasing=0.5)
  from_config = augment.build_augmenter(config, seed=2)
  by_name = augment.build_augmenter(rotation=False, flips=False, gain=0.3,
                                    erasing=0.5, seed=2)
  assert [l.get_config() for l in from_config.layers] == [
      l.get_config() for l in by_name.layers]
  assert [l.name for l in from_config.layers] == ["rot90", "gain_gamma", "erasing"]
  overridden = augment.build_augmenter(config, erasing=0.0)
  assert [l.name for l in overridden.layers] == ["rot90", "gain_gamma"]
  with pytest.raises(TypeError, match="no field brightnes"):
    augment.build_augmenter(brightnes=0.2)


# ---------------------------------------------------------------- specimen layers


def _high_frequency_energy(images):
  """Mean squared difference between neighbouring pixels, per image."""
  dy = np.diff(images, axis=1) ** 2
  dx = np.diff(images, axis=2) ** 2
  return dy.mean(axis=(1, 2, 3)) + dx.mean(axis=(1, 2, 3))


@pytest.mark.parametrize("mode", ["eager", "tf.function", "tf.data"])
def test_defocus_removes_fine_detail_keeps_the_mean_and_varies_per_image(mode):
  rng = np.random.default_rng(0)
  batch = (rng.uniform(0, 200, (32, 24, 24, 1))).astype(np.float32)
  layer = specimen_layers.RandomDefocus(2.0, seed=1)
  out = run_in(mode, lambda x: layer(x, training=True), batch)
  before, after = _high_frequency_energy(batch), _high_frequency_energy(out)
  assert np.median(after / before) < 0.3
  # Reflecting borders: the blur moves light around, it neither adds nor removes it.
  np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), batch.mean(axis=(1, 2, 3)),
                             rtol=0.03)
  # Sigma is drawn per image, so the loss of detail differs from image to image.
  assert np.ptp(after / before) > 0.1


def test_gaussian_blur_matches_scipy():
  from scipy import ndimage
  rng = np.random.default_rng(1)
  batch = rng.uniform(0, 255, (2, 16, 16, 2)).astype(np.float32)
  got = specimen_layers.gaussian_blur(batch, tf.constant([0.8, 1.6]), radius=5).numpy()
  for i, sigma in enumerate((0.8, 1.6)):
    for c in range(2):
      want = ndimage.gaussian_filter(batch[i, :, :, c], sigma, mode="mirror",
                                     truncate=5 / sigma)
      np.testing.assert_allclose(got[i, :, :, c], want, atol=0.05)


@pytest.mark.parametrize("mode", ["eager", "tf.function", "tf.data"])
def test_gain_scales_each_image_by_one_factor_in_range(mode):
  batch = np.full((64, 8, 8, 1), 50.0, np.float32)
  batch[:, :4] = 20.0
  layer = specimen_layers.RandomGainGamma(gain=1.0, gamma=0.0, seed=2)
  out = run_in(mode, lambda x: layer(x, training=True), batch)
  factors = out / batch
  # One factor per image (the mean scales with it), within [1/2, 2], both ways.
  np.testing.assert_allclose(factors, factors[:, :1, :1, :] * np.ones_like(factors),
                             rtol=1e-5)
  per_image = factors[:, 0, 0, 0]
  assert per_image.min() >= 0.5 - 1e-6 and per_image.max() <= 2.0 + 1e-6
  assert (per_image < 0.8).any() and (per_image > 1.25).any()
  np.testing.assert_allclose(out.mean(axis=(1, 2, 3)), 35.0 * per_image, rtol=1e-5)


def test_gamma_is_a_power_law_per_image_relative_to_its_level():
  batch = np.full((32, 4, 4, 1), 255 * 0.2, np.float32)
  batch[:, 2:] = 255 * 0.6
  out = specimen_layers.RandomGainGamma(gain=0.0, gamma=1.0, seed=3)(
      batch, training=True).numpy()
  # x -> L (x / L) ** g with L the image's level (here its bright half): the level
  # stays, the dark third of it bends by one exponent per image.
  np.testing.assert_allclose(out[:, 3], batch[:, 3], rtol=1e-5)
  exponent = np.log(out[:, 0, 0, 0] / (255 * 0.6)) / np.log(1 / 3)
  assert exponent.min() >= 0.5 - 1e-4 and exponent.max() <= 2.0 + 1e-4
  assert np.ptp(exponent) > 0.5


def test_background_offset_adds_one_constant_per_image():
  rng = np.random.default_rng(4)
  batch = rng.uniform(0, 100, (32, 6, 6, 1)).astype(np.float32)
  layer = specimen_layers.RandomBackgroundOffset(0.15, seed=4)
  out = layer(batch, training=True).numpy()
  offset = out - batch
  np.testing.assert_allclose(offset, offset[:, :1, :1, :] * np.ones_like(offset),
                             atol=1e-4)
  level = np.percentile(batch.reshape(32, -1), 99, axis=1, method="higher")
  assert offset.min() >= 0 and np.all(offset[:, 0, 0, 0] <= 0.15 * level + 1e-4)
  assert np.ptp(offset[:, 0, 0, 0] / level) > 0.05


def _noise_variance(layer, level, n=64, size=16):
  batch = np.full((n, size, size, 1), level, np.float32)
  out = layer(batch, training=True).numpy()
  return (out - batch).var()


def _half_and_half(n=64, size=16, dark=20.0, bright=180.0):
  batch = np.full((n, size, size, 1), dark, np.float32)
  batch[:, size // 2:] = bright
  return batch


def test_shot_noise_grows_with_signal_read_noise_does_not():
  batch = _half_and_half()
  shot = specimen_layers.RandomSensorNoise(shot=0.02, read=0.0, seed=5)
  noise = shot(batch, training=True).numpy() - batch
  dark, bright = noise[:, :8].var(), noise[:, 8:].var()
  # Variance k * L * x: nine times the signal, about nine times the variance.
  assert 6 < bright / dark < 12
  # E[k] = 0.01 for k uniform in [0, 0.02]: at the level, a variance of 0.01 L^2.
  assert 0.006 < bright / 180.0 ** 2 < 0.014
  read = specimen_layers.RandomSensorNoise(shot=0.0, read=0.04, seed=6)
  noise = read(batch, training=True).numpy() - batch
  assert 0.7 < noise[:, 8:].var() / noise[:, :8].var() < 1.4
  # std uniform in [0, 0.04] L: E[std^2] = (0.04 L)^2 / 3.
  assert 0.7 < noise[:, 8:].var() / ((0.04 * 180.0) ** 2 / 3) < 1.4
  # Both at once: independent, so their variances add.
  both = specimen_layers.RandomSensorNoise(shot=0.02, read=0.04, seed=7)
  noise = both(batch, training=True).numpy() - batch
  expected = 0.01 * 180.0 ** 2 + (0.04 * 180.0) ** 2 / 3
  assert 0.7 < noise[:, 8:].var() / expected < 1.4


def test_specimen_augmentation_is_relative_to_the_images_level():
  """The same cells at 1/257 of the scale (8-bit values in a 16-bit container) get
  the same offset, gamma and noise, relative to their level."""
  batch = _half_and_half(n=16)
  kwargs = dict(rotation=False, rot90=False, flips=False, defocus=1.0, gain=0.5,
                gamma=0.3, background_offset=0.1, shot_noise=0.01,
                read_noise=0.02, grain=0.03, zoom=0.2)
  bright = augment.build_augmenter(seed=3, **kwargs)(batch, training=True).numpy()
  dim = augment.build_augmenter(seed=3, **kwargs)(batch / 257.0,
                                                  training=True).numpy()
  np.testing.assert_allclose(dim * 257.0, bright, rtol=1e-3, atol=1e-3)
  assert np.abs(bright - batch).max() > 1.0


def test_specimen_layers_stay_in_range_and_are_serialisable():
  batch = np.concatenate([np.zeros((4, 8, 8, 1)), np.full((4, 8, 8, 1), 255.0)]
                         ).astype(np.float32)
  aug = augment.build_augmenter(
      rotation=False, rot90=False, flips=False, defocus=1.0, gain=1.0, gamma=0.5,
      background_offset=0.3, shot_noise=0.03, read_noise=0.05, seed=0)
  assert [l.name for l in aug.layers] == [
      "defocus", "background_offset", "gain_gamma", "sensor_noise"]
  out = aug(batch, training=True).numpy()
  assert out.min() >= 0 and np.isfinite(out).all()
  for layer in aug.layers:
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
  with pytest.raises(ValueError, match="must be >= 0"):
    specimen_layers.RandomSensorNoise(shot=-1.0)
  # A setting in the absolute units of earlier versions is refused, with the fix.
  with pytest.raises(ValueError, match="fraction in"):
    specimen_layers.RandomBackgroundOffset(10.0)


def test_rotation_fills_corners_with_black():
  batch = np.full((16, 16, 16, 1), 200.0, np.float32)
  aug = augment.build_augmenter(rot90=False, flips=False, seed=0)
  out = aug(batch, training=True).numpy()
  # Unless the angle is a multiple of 90 degrees, the corners come from outside.
  assert np.mean(out[:, 0, 0, 0] < 100) > 0.5


def test_augmenter_saves_and_loads_in_a_model(tmp_path):
  model = keras.Sequential([
      keras.Input((8, 8, 1)),
      augment.build_augmenter(erasing=0.5, seed=1),
      keras.layers.Flatten(),
      keras.layers.Dense(2),
  ])
  path = tmp_path / "m.keras"
  model.save(path)
  loaded = keras.models.load_model(path)
  names = [type(l).__name__ for l in loaded.get_layer("augment").layers]
  assert "RandomDihedral" in names and "RandomErasing" in names
  erasing = loaded.get_layer("augment").get_layer("erasing")
  assert erasing.probability == 0.5


# ---------------------------------------------------------------- mix_batch


def constant_batch(n=6, k=6, size=10):
  """Example i is all (i + 1) * 10 and of class i: a mix is readable in both."""
  values = (np.arange(n, dtype=np.float32) + 1) * 10
  images = np.ones((n, size, size, 2), np.float32) * values[:, None, None, None]
  labels = np.eye(k, dtype=np.float32)[np.arange(n) % k]
  return images, labels, values


@pytest.mark.parametrize("mode", ["eager", "tf.data"])
def test_mixup_follows_formula(mode):
  images, labels, values = constant_batch()
  fn = lambda x, y: mixing.mix_batch(x, y, mixup_alpha=0.4, seed=[1, 2])
  if mode == "eager":
    out_images, out_labels = fn(images, labels)
  else:
    ds = tf.data.Dataset.from_tensors((images, labels)).map(fn)
    out_images, out_labels = next(iter(ds))
  out_images, out_labels = out_images.numpy(), out_labels.numpy()
  np.testing.assert_allclose(out_labels.sum(axis=1), 1.0, atol=1e-6)
  for i in range(len(images)):
    own = out_labels[i, i]
    others = [j for j in np.nonzero(out_labels[i])[0] if j != i]
    partner = others[0] if others else i
    expected = own * values[i] + (1 - own) * values[partner]
    np.testing.assert_allclose(out_images[i], expected, rtol=1e-5)


def test_cutmix_labels_follow_box_area():
  images, labels, values = constant_batch(size=20)
  out_images, out_labels = mixing.mix_batch(images, labels, cutmix_alpha=1.0,
                                            seed=[3, 4])
  out_images, out_labels = out_images.numpy(), out_labels.numpy()
  np.testing.assert_allclose(out_labels.sum(axis=1), 1.0, atol=1e-6)
  pasted_any = False
  for i in range(len(images)):
    own_fraction = np.mean(out_images[i] == values[i])
    if own_fraction < 1:
      pasted_any = True
      np.testing.assert_allclose(out_labels[i, i], own_fraction, atol=1e-6)
  assert pasted_any


def test_mix_batch_chooses_per_batch_and_is_seeded():
  images, labels, _ = constant_batch()
  kinds = set()
  for s in range(12):
    a = mixing.mix_batch(images, labels, mixup_alpha=1.0, cutmix_alpha=1.0,
                         seed=[s, 0])
    b = mixing.mix_batch(images, labels, mixup_alpha=1.0, cutmix_alpha=1.0,
                         seed=[s, 0])
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    # mixup keeps each constant image constant; cutmix pastes a box into it.
    kinds.add(max(len(np.unique(x)) for x in a[0].numpy()) == 1)
  assert kinds == {True, False}


def test_mix_batch_off_is_identity():
  images, labels, _ = constant_batch()
  out_images, out_labels = mixing.mix_batch(images, labels)
  np.testing.assert_array_equal(out_images, images)
  np.testing.assert_array_equal(out_labels, labels)


def test_grain_is_correlated_noise_at_a_fraction_of_the_level():
  batch = np.full((32, 24, 24, 1), 100.0, np.float32)
  out = specimen_layers.RandomGrain(0.06, max_sigma=1.5, seed=2)(
      batch, training=True).numpy()
  noise = out - batch
  # Neighbouring pixels move together (white noise would give ~0 correlation).
  lag = np.corrcoef(noise[:, :, :-1].ravel(), noise[:, :, 1:].ravel())[0, 1]
  assert lag > 0.3
  std = noise.std(axis=(1, 2, 3))
  assert std.max() <= 0.06 * 100 * 1.2 and np.ptp(std) > 1.0
