"""The one dihedral table (hep2tf.data.dihedral) and its two users: numpy (the
converter's copies, EXIF orientation) and TensorFlow (TTA, the random layers) agree."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from hep2tf.data import augment, augment_layers, dihedral  # noqa: E402


def asymmetric_image(height=5, width=5, channels=1):
  """An image with no symmetry: every pixel value is different."""
  return np.arange(height * width * channels, dtype=np.float32).reshape(
      height, width, channels) + 1


def by_definition(image, k):
  """The convention in words: k % 4 quarter turns counter-clockwise, then a
  left-right flip if k >= 4."""
  out = np.rot90(image, k % 4)
  return np.fliplr(out) if k >= 4 else out


@pytest.mark.parametrize("k", range(8))
def test_the_table_is_the_convention_in_numpy_and_in_tensorflow(k):
  image = asymmetric_image(4, 6, 2)   # not square: odd k swaps H and W
  expected = by_definition(image, k)
  np.testing.assert_array_equal(dihedral.transform(image, k), expected)
  np.testing.assert_array_equal(augment.dihedral(image, k).numpy(), expected)
  batch = np.stack([image, image * 2])
  np.testing.assert_array_equal(augment.dihedral(batch, k).numpy()[1],
                                by_definition(image * 2, k))


def test_per_example_steps_apply_each_row_of_the_table():
  image = asymmetric_image(5, 5, 1)
  batch = np.stack([image] * dihedral.NUM_ELEMENTS)
  got = augment_layers.dihedral_steps(tf.constant(batch),
                                      tf.constant(dihedral.ELEMENTS)).numpy()
  for k in range(dihedral.NUM_ELEMENTS):
    np.testing.assert_array_equal(got[k], dihedral.transform(image, k))


def test_eight_distinct_elements_and_the_shape_keeping_four():
  image = asymmetric_image()
  outs = {dihedral.transform(image, k).tobytes() for k in range(8)}
  assert len(outs) == 8
  np.testing.assert_array_equal(dihedral.transform(image, 0), image)
  wide = asymmetric_image(3, 4)
  keeping = [k for k in range(8) if dihedral.transform(wide, k).shape == wide.shape]
  assert tuple(keeping) == dihedral.SHAPE_KEEPING == (0, 2, 4, 6)
  with pytest.raises(ValueError, match="0..7"):
    dihedral.transform(image, 8)


def test_exif_orientations_name_distinct_elements():
  # Which element each EXIF value is, checked against Pillow in test_lab_folders.
  assert sorted(dihedral.EXIF_ORIENTATION) == list(range(1, 9))
  assert sorted(dihedral.EXIF_ORIENTATION.values()) == list(range(8))


@pytest.mark.parametrize("mode", ["tf.function", "tf.data"])
def test_a_tensor_k_inside_a_graph(mode):
  image = asymmetric_image()
  for k in (3, 6):
    fn = lambda x, k=k: augment.dihedral(x, tf.constant(k))  # noqa: E731
    if mode == "tf.function":
      got = tf.function(fn)(tf.constant(image)).numpy()
    else:
      got = next(iter(tf.data.Dataset.from_tensors(image).map(fn))).numpy()
    np.testing.assert_array_equal(got, by_definition(image, k))
