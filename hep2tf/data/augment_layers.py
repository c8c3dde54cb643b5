"""The Keras augmentation layers hep2tf adds to Keras' own: geometry and occlusion.

Each is the identity unless called with training=True and computes in float32;
`augment.build_augmenter` stacks them with the specimen-level layers of
`hep2tf.data.specimen_layers`: `RandomDihedral`, `RandomQuarterTurn`,
`RandomErasing`; `dihedral` and `dihedral_steps` apply the elements of
`hep2tf.data.dihedral` in TensorFlow (test-time augmentation, the random layers).
They register with Keras under the package "hep2tf", so a saved model that holds them
loads by name.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from hep2tf.data import dihedral as dihedral_table
from hep2tf.data.mixing import box_mask
from hep2tf.data.specimen_layers import RandomImageLayer, image_level


def _per_example(flags: tf.Tensor, transformed: tf.Tensor,
                 images: tf.Tensor) -> tf.Tensor:
  """Picks `transformed` where the (N,) boolean `flags` is set, else `images`."""
  return tf.where(flags[:, None, None, None], transformed, images)


def dihedral_steps(images: tf.Tensor, steps: tf.Tensor) -> tf.Tensor:
  """The dihedral steps of `hep2tf.data.dihedral.ELEMENTS`, one row per example.

  images: (N, H, W, C); steps: (N, 3) booleans (transpose, flip up-down, flip
  left-right), applied in that order, so row `ELEMENTS[k]` applies element k. Images
  that are not square cannot be transposed within a batch: their transpose column
  must be all False (it is then skipped).
  """
  height, width = images.shape[1], images.shape[2]
  if height is not None and height == width:
    images = _per_example(steps[:, 0], tf.transpose(images, [0, 2, 1, 3]), images)
  images = _per_example(steps[:, 1], tf.reverse(images, axis=[1]), images)
  return _per_example(steps[:, 2], tf.reverse(images, axis=[2]), images)


def dihedral(images: tf.Tensor, k) -> tf.Tensor:
  """Applies dihedral element `k` (hep2tf.data.dihedral) to one image or a batch.

  Args:
    images: (H, W, C) or (N, H, W, C), any dtype.
    k: int or scalar int tensor in 0..7 (taken modulo 8).
  Returns:
    The transformed images; H and W swap for odd `k`.
  """
  images = tf.convert_to_tensor(images)
  table = tf.constant(dihedral_table.ELEMENTS)
  steps = table[tf.math.floormod(tf.cast(k, tf.int32), dihedral_table.NUM_ELEMENTS)]
  rows, cols = (0, 1) if images.shape.rank == 3 else (1, 2)
  axes = list(range(images.shape.rank))
  axes[rows], axes[cols] = cols, rows
  out = tf.cond(steps[0], lambda: tf.transpose(images, axes), lambda: images)
  out = tf.cond(steps[1], lambda: tf.reverse(out, axis=[rows]), lambda: out)
  return tf.cond(steps[2], lambda: tf.reverse(out, axis=[cols]), lambda: out)


@keras.saving.register_keras_serializable(package="hep2tf")
class RandomDihedral(RandomImageLayer):
  """A random one of the 8 rotations by quarter turns and flips, per example.

  Drawn as three independent fair coins, one per step of `dihedral.ELEMENTS`
  (transpose, flip up-down, flip left-right), whose 8 combinations are exactly the
  dihedral group, so every transform has probability 1/8. Images that are not square
  cannot be transposed within a batch; for those only the flips (4 transforms,
  including the half turn) are drawn.

  Input and output: float (N, H, W, C). Identity unless `training=True`.
  """

  def augment(self, images):
    n = tf.shape(images)[0]
    coins = tf.random.stateless_uniform([3, n], seed=self.next_seed()) < 0.5
    return dihedral_steps(images, tf.transpose(coins))


@keras.saving.register_keras_serializable(package="hep2tf")
class RandomQuarterTurn(RandomImageLayer):
  """A random number (0..3) of counter-clockwise quarter turns, per example.

  Square images only (a batch cannot mix shapes). Identity unless `training=True`.
  """

  def augment(self, images):
    if images.shape[1] is not None and images.shape[1] != images.shape[2]:
      raise ValueError(f"quarter turns need square images, got {images.shape}")
    turns = tf.random.stateless_uniform(
        [tf.shape(images)[0]], maxval=4, dtype=tf.int32,
        seed=self.next_seed())
    # Elements 0..3 of the table are the quarter turns.
    return dihedral_steps(images, tf.gather(tf.constant(dihedral_table.ELEMENTS),
                                            turns))


@keras.saving.register_keras_serializable(package="hep2tf")
class RandomErasing(RandomImageLayer):
  """Random erasing (Zhong et al. 2017): blanks a random box in some examples.

  Each example is erased with probability `probability`; the box covers a fraction
  of the image drawn uniformly from `scale`, with aspect ratio (height / width) drawn
  log-uniformly from `ratio`, clipped to the image, at a uniform position.

  Args:
    probability: chance that an example is erased.
    scale: (min, max) fraction of the image area that the box covers.
    ratio: (min, max) box aspect ratio.
    fill_value: what the box is filled with; 0 by default because IIF background is
      dark, or None for uniform noise between 0 and the image's level.
    seed: int or None.

  Input and output: float (N, H, W, C). Identity unless `training=True`.
  """

  CONFIG = ("probability", "scale", "ratio", "fill_value")

  def __init__(self, probability: float = 0.5,
               scale: tuple[float, float] = (0.02, 1 / 3),
               ratio: tuple[float, float] = (0.3, 3.3),
               fill_value: float | None = 0.0, seed: int | None = None, **kwargs):
    super().__init__(seed=seed, **kwargs)
    if not 0 <= probability <= 1:
      raise ValueError(f"probability must be in [0, 1], got {probability}")
    if not 0 < scale[0] <= scale[1] <= 1:
      raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
    if not 0 < ratio[0] <= ratio[1]:
      raise ValueError(f"ratio must satisfy 0 < min <= max, got {ratio}")
    self.probability = float(probability)
    self.scale = tuple(float(s) for s in scale)
    self.ratio = tuple(float(r) for r in ratio)
    self.fill_value = None if fill_value is None else float(fill_value)

  def is_identity(self) -> bool:
    return self.probability == 0

  def augment(self, images):
    shape = tf.shape(images)
    n, height, width = shape[0], shape[1], shape[2]
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    seeds = tf.random.experimental.stateless_split(self.next_seed(), num=6)
    erase = tf.random.stateless_uniform([n], seed=seeds[0]) < self.probability
    area = tf.random.stateless_uniform(
        [n], seed=seeds[1], minval=self.scale[0], maxval=self.scale[1]) * h * w
    log_ratio = tf.random.stateless_uniform(
        [n], seed=seeds[2], minval=math.log(self.ratio[0]),
        maxval=math.log(self.ratio[1]))
    aspect = tf.exp(log_ratio)
    box_h = tf.clip_by_value(tf.round(tf.sqrt(area * aspect)), 1.0, h)
    box_w = tf.clip_by_value(tf.round(tf.sqrt(area / aspect)), 1.0, w)
    y0 = tf.floor(tf.random.stateless_uniform([n], seed=seeds[3]) * (h - box_h + 1))
    x0 = tf.floor(tf.random.stateless_uniform([n], seed=seeds[4]) * (w - box_w + 1))
    y0, x0 = tf.cast(y0, tf.int32), tf.cast(x0, tf.int32)
    box = box_mask(height, width, y0, y0 + tf.cast(box_h, tf.int32),
                   x0, x0 + tf.cast(box_w, tf.int32))
    box = box & erase[:, None, None, None]
    if self.fill_value is None:
      fill = tf.random.stateless_uniform(shape, seed=seeds[5], minval=0.0,
                                         maxval=1.0, dtype=images.dtype)
      fill = fill * tf.cast(image_level(images), images.dtype)
    else:
      fill = tf.fill(shape, tf.cast(self.fill_value, images.dtype))
    return tf.where(box, fill, images)
