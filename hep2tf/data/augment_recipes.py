"""The augmentations of the ImageNet-style recipes the seed studies used, made to fit
cells: RandAugment, random resized crop and colour jitter, as Keras layers.

Images are float32 (N, H, W, C), grey or RGB, 255 being full scale, and may be dim: a
16-bit source reaches the model as `stored * 255 / white_level`, so a cell can span
0.04 to 0.56 of those units. As with the specimen-level layers (specimen_layers),
every intensity operation here is relative to each image, never an absolute number
of grey levels:

- `LevelRandAugment` runs Keras' own `keras.layers.RandAugment` on each image scaled
  so that its maximum is 255, and scales the result back. Fed as they are, its
  brightness (which adds a fraction of the range), solarisation (an absolute
  threshold), posterisation (a cast to uint8) and equalisation (256 bins of the
  range) would wash out or blank such a cell; scaled, they act as on a photograph.
  The scale is the maximum, not `specimen_layers.image_level` (the 99th percentile),
  because Keras clips to its value range and would cut the brightest pixels. Keras
  draws the operations once per batch and their magnitudes per image; its geometric
  operations fill with 0 here (the dark IIF background) instead of reflecting.
- `RandomColorJitter` is torchvision's ColorJitter (the studies' library): brightness
  multiplies, contrast blends with the image's mean grey level, saturation with each
  pixel's grey (a no-op on grey input). All three scale with the image, so they need
  no level. Keras' RandomColorJitter adds brightness as a fraction of the range,
  which lifts a dark background; hence this one.
- `RandomResizedCrop` is torchvision's RandomResizedCrop (Keras has none: RandomZoom
  zooms about the centre): a box of random area and aspect ratio at a random place,
  resized back to the input size.

Each is the identity unless called with training=True, computes in float32, clips at
0 only (as the specimen-level layers, so a bright image is not cut at 255), and
`augment.build_augmenter` stacks them.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

from hep2tf.data.specimen_layers import RandomImageLayer

# ITU-R 601 luma, as torchvision's rgb_to_grayscale.
_LUMA = (0.299, 0.587, 0.114)
# RandAugment's geometric operations (attribute names of keras.layers.RandAugment).
_GEOMETRIC = ("random_shear", "random_translation", "random_rotation")


def _peak(images: tf.Tensor) -> tf.Tensor:
  """Each image's maximum, (N, 1, 1, 1), floored at 1e-6 (a black image stays so)."""
  return tf.maximum(tf.reduce_max(images, axis=[1, 2, 3], keepdims=True), 1e-6)


def _grey(images: tf.Tensor) -> tf.Tensor:
  """(N, H, W, 1): the luma of RGB images, grey images as they are."""
  if images.shape[-1] == 3:
    return tf.reduce_sum(images * tf.constant(_LUMA, images.dtype), axis=-1,
                         keepdims=True)
  return tf.reduce_mean(images, axis=-1, keepdims=True)


@keras.saving.register_keras_serializable(package="hep2tf")
class LevelRandAugment(keras.layers.Layer):
  """Keras' RandAugment (Cubuk et al. 2020) at each image's own level.

  Args:
    num_ops: operations applied in sequence (RandAugment's N).
    magnitude: their strength in 0..1 (RandAugment's factor; Keras' default 0.5
      turns a cell up to 180 degrees and moves it up to half its frame).
    seed: int or None.

  Input and output: float (N, H, W, C). Identity unless `training=True`.
  """

  def __init__(self, num_ops: int = 2, magnitude: float = 0.3,
               seed: int | None = None, **kwargs):
    super().__init__(**kwargs)
    if num_ops < 1:
      raise ValueError(f"num_ops must be >= 1, got {num_ops}")
    if not 0 < magnitude <= 1:
      raise ValueError(f"magnitude must be in (0, 1], got {magnitude}")
    self.num_ops = int(num_ops)
    self.magnitude = float(magnitude)
    self.seed = seed
    self.rand_augment = keras.layers.RandAugment(
        value_range=(0, 255), num_ops=self.num_ops, factor=self.magnitude,
        seed=seed, dtype="float32")
    for name in _GEOMETRIC:
      getattr(self.rand_augment, name).fill_mode = "constant"

  def build(self, input_shape):
    self.rand_augment.build(input_shape)

  def call(self, inputs, training=False):
    if not training:
      return inputs
    images = tf.convert_to_tensor(inputs)
    scale = 255.0 / _peak(images)
    return self.rand_augment(images * scale, training=True) / scale

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "num_ops": self.num_ops,
            "magnitude": self.magnitude, "seed": self.seed}


@keras.saving.register_keras_serializable(package="hep2tf")
class RandomColorJitter(RandomImageLayer):
  """torchvision's ColorJitter(brightness, contrast, saturation), per image.

  Factors are drawn uniformly from [1 - x, 1 + x] for each image and applied in this
  order: brightness (x * b), contrast (blend with the image's mean grey level),
  saturation (blend with each pixel's grey; grey input is unchanged); then clipped
  at 0. timm's `--color-jitter 0.4` is x = 0.4 for all three.

  Input and output: float (N, H, W, C). Identity unless `training=True`.
  """

  CONFIG = ("brightness", "contrast", "saturation")

  def __init__(self, brightness: float = 0.4, contrast: float = 0.4,
               saturation: float = 0.4, seed: int | None = None, **kwargs):
    super().__init__(seed=seed, **kwargs)
    for name, value in (("brightness", brightness), ("contrast", contrast),
                        ("saturation", saturation)):
      if not 0 <= value < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    self.brightness = float(brightness)
    self.contrast = float(contrast)
    self.saturation = float(saturation)

  def augment(self, images):
    seeds = tf.random.experimental.stateless_split(self.next_seed(), 3)

    def factor(seed, spread):
      return tf.random.stateless_uniform([tf.shape(images)[0], 1, 1, 1], seed=seed,
                                         minval=1.0 - spread, maxval=1.0 + spread)

    out = images * factor(seeds[0], self.brightness)
    mean = tf.reduce_mean(_grey(out), axis=[1, 2, 3], keepdims=True)
    c = factor(seeds[1], self.contrast)
    out = c * out + (1.0 - c) * mean
    s = factor(seeds[2], self.saturation)
    out = s * out + (1.0 - s) * _grey(out)
    return tf.maximum(out, 0.0)


@keras.saving.register_keras_serializable(package="hep2tf")
class RandomResizedCrop(RandomImageLayer):
  """torchvision's RandomResizedCrop at the input size, per image.

  The box covers a fraction of the image drawn uniformly from `scale`, with aspect
  ratio (width / height) drawn log-uniformly from `ratio`, clipped to the image (where
  torchvision retries and falls back to a centre crop), at a uniform position; it is
  resized back to the input size bilinearly.

  Input and output: float (N, H, W, C). Identity unless `training=True`.
  """

  CONFIG = ("scale", "ratio")

  def __init__(self, scale: tuple[float, float] = (0.08, 1.0),
               ratio: tuple[float, float] = (3 / 4, 4 / 3), seed: int | None = None,
               **kwargs):
    super().__init__(seed=seed, **kwargs)
    if not 0 < scale[0] <= scale[1] <= 1:
      raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}")
    if not 0 < ratio[0] <= ratio[1]:
      raise ValueError(f"ratio must satisfy 0 < min <= max, got {ratio}")
    self.scale = tuple(float(s) for s in scale)
    self.ratio = tuple(float(r) for r in ratio)

  def augment(self, images):
    shape = tf.shape(images)
    n = shape[0]
    height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    seeds = tf.random.experimental.stateless_split(self.next_seed(), 4)
    area = tf.random.stateless_uniform([n], seed=seeds[0], minval=self.scale[0],
                                       maxval=self.scale[1]) * height * width
    aspect = tf.exp(tf.random.stateless_uniform(
        [n], seed=seeds[1], minval=math.log(self.ratio[0]),
        maxval=math.log(self.ratio[1])))
    box_h = tf.minimum(tf.sqrt(area / aspect) / height, 1.0)
    box_w = tf.minimum(tf.sqrt(area * aspect) / width, 1.0)
    y0 = tf.random.stateless_uniform([n], seed=seeds[2]) * (1.0 - box_h)
    x0 = tf.random.stateless_uniform([n], seed=seeds[3]) * (1.0 - box_w)
    boxes = tf.stack([y0, x0, y0 + box_h, x0 + box_w], axis=1)
    out = tf.image.crop_and_resize(images, boxes, tf.range(n), shape[1:3])
    return tf.ensure_shape(tf.cast(out, images.dtype), images.shape)
