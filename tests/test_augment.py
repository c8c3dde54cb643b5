"""Tests of hep2tf.augment, each op eagerly and inside tf.function / tf.data."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from hep2tf import augment  # noqa: E402


def asymmetric_image(height=5, width=5, channels=1):
  """An image with no symmetry: every pixel value is different."""
  return np.arange(height * width * channels, dtype=np.float32).reshape(
      height, width, channels) + 1


def numpy_dihedral(image, k):
  out = np.rot90(image, k % 4)
  return np.fliplr(out) if k >= 4 else out


def run_in(mode, fn, x):
  """Runs fn(x) eagerly, in a tf.function, or in a tf.data map."""
  if mode == "eager":
    return np.asarray(fn(x))
  if mode == "tf.function":
    return tf.function(fn)(tf.constant(x)).numpy()
  ds = tf.data.Dataset.from_tensors(x).map(fn)
  return next(iter(ds)).numpy()


# ---------------------------------------------------------------- dihedral


@pytest.mark.parametrize("k", range(8))
def test_dihedral_matches_numpy(k):
  image = asymmetric_image(4, 6, 2)   # not square: odd k swaps H and W
  np.testing.assert_array_equal(augment.dihedral(image, k).numpy(),
                                numpy_dihedral(image, k))
  batch = np.stack([image, image * 2])
  got = augment.dihedral(batch, k).numpy()
  np.testing.assert_array_equal(got[1], numpy_dihedral(image * 2, k))


def test_dihedral_all_eight_distinct_and_zero_is_identity():
  image = asymmetric_image()
  outs = [augment.dihedral(image, k).numpy() for k in range(8)]
  np.testing.assert_array_equal(outs[0], image)
  for i in range(8):
    for j in range(i + 1, 8):
      assert not np.array_equal(outs[i], outs[j]), (i, j)


@pytest.mark.parametrize("mode", ["tf.function", "tf.data"])
def test_dihedral_with_tensor_k_in_graph(mode):
  image = asymmetric_image()
  for k in (3, 6):
    got = run_in(mode, lambda x, k=k: augment.dihedral(x, tf.constant(k)), image)
    np.testing.assert_array_equal(got, numpy_dihedral(image, k))


# ---------------------------------------------------------------- layers

LAYERS = {
    "dihedral": lambda: augment.RandomDihedral(seed=1),
    "quarter_turn": lambda: augment.RandomQuarterTurn(seed=2),
    "erasing": lambda: augment.RandomErasing(1.0, scale=(0.1, 0.3), seed=3),
    "augmenter": lambda: augment.build_augmenter(brightness=0.2, contrast=0.2,
                                                 erasing=0.5, seed=4),
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
  for layer in (augment.RandomDihedral(seed=0), augment.RandomErasing(1.0, seed=0)):
    np.testing.assert_array_equal(layer(batch), batch)


def test_random_dihedral_draws_only_and_all_dihedral_transforms():
  image = asymmetric_image(6, 6, 1)
  out = augment.RandomDihedral(seed=5)(np.stack([image] * 64), training=True).numpy()
  candidates = [numpy_dihedral(image, k) for k in range(8)]
  seen = set()
  for example in out:
    matches = [k for k, c in enumerate(candidates) if np.array_equal(example, c)]
    assert len(matches) == 1
    seen.add(matches[0])
  assert seen == set(range(8))


def test_quarter_turn_draws_only_rotations():
  image = asymmetric_image(6, 6, 1)
  out = augment.RandomQuarterTurn(seed=5)(np.stack([image] * 32),
                                          training=True).numpy()
  rotations = [np.rot90(image, k) for k in range(4)]
  seen = {next(k for k, r in enumerate(rotations) if np.array_equal(o, r))
          for o in out}
  assert seen == {0, 1, 2, 3}


def test_random_erasing_fills_one_box_with_zero():
  batch = np.full((8, 20, 20, 1), 100.0, np.float32)
  out = augment.RandomErasing(1.0, scale=(0.1, 0.2), seed=7)(
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
  only_flips = augment.build_augmenter(rotation=False, rot90=False)
  assert [type(l).__name__ for l in only_flips.layers] == ["RandomFlip"]
  nothing = augment.build_augmenter(rotation=False, rot90=False, flips=False)
  batch = identical_batch(2)
  np.testing.assert_array_equal(nothing(batch, training=True), batch)


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
  fn = lambda x, y: augment.mix_batch(x, y, mixup_alpha=0.4, seed=[1, 2])
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
  out_images, out_labels = augment.mix_batch(images, labels, cutmix_alpha=1.0,
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
    a = augment.mix_batch(images, labels, mixup_alpha=1.0, cutmix_alpha=1.0,
                          seed=[s, 0])
    b = augment.mix_batch(images, labels, mixup_alpha=1.0, cutmix_alpha=1.0,
                          seed=[s, 0])
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    # mixup keeps each constant image constant; cutmix pastes a box into it.
    kinds.add(max(len(np.unique(x)) for x in a[0].numpy()) == 1)
  assert kinds == {True, False}


def test_mix_batch_off_is_identity():
  images, labels, _ = constant_batch()
  out_images, out_labels = augment.mix_batch(images, labels)
  np.testing.assert_array_equal(out_images, images)
  np.testing.assert_array_equal(out_labels, labels)
