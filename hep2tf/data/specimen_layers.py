"""Specimen-level augmentation layers: what differs between IIF slides, exposures and
microscopes.

Each draws one setting per image (a cell crop stands for its specimen), is the
identity unless called with training=True and computes in float32:
`RandomDefocus`, `RandomGainGamma`, `RandomBackgroundOffset`, `RandomSensorNoise`.
Intensity settings are fractions of each image's own level (`image_level`), never
counts of 0..255 units: a source stored at 1/257 of the scale gets the same relative
offset and noise as one that fills it, so the augmentation does not bury a dim
source. They register with Keras under the package "hep2tf".
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

# The level of an image: the value below which LEVEL_PERCENTILE % of its pixels lie.
LEVEL_PERCENTILE = 99.0
# Intensity settings are fractions of the level; a value above this is a setting in
# the absolute units of earlier versions (DN of 255), and an error says so.
_MAX_FRACTION = 1.0


def image_level(images: tf.Tensor) -> tf.Tensor:
  """Each image's level, its LEVEL_PERCENTILE-th percentile over all pixels and
  channels: (N, H, W, C) -> (N, 1, 1, 1), floored far below any stored level."""
  images = tf.convert_to_tensor(images)
  flat = tf.reshape(images, [tf.shape(images)[0], -1])
  size = math.prod(images.shape[1:]) if None not in images.shape[1:] else None
  if size is None:
    level = tf.reduce_max(flat, axis=1)
  else:
    # The k-th largest value is the percentile; top_k avoids sorting the image.
    k = max(1, int(round(size * (100.0 - LEVEL_PERCENTILE) / 100.0)))
    level = tf.math.top_k(flat, k, sorted=True)[0][:, -1]
  return tf.maximum(level, 1e-6)[:, None, None, None]


def seed_pair(generator: keras.random.SeedGenerator) -> tf.Tensor:
  """A fresh int32 stateless seed (2,) from a Keras SeedGenerator."""
  return tf.cast(generator.next(), tf.int32)


class RandomImageLayer(keras.layers.Layer):
  """What hep2tf's random augmentation layers share (not registered: only its
  subclasses are saved).

  Input and output float (N, H, W, C), the same shape; the identity unless called
  with training=True, and when `is_identity()` (a layer switched off by its
  settings). `seed` is kept in the config and feeds the Keras SeedGenerator
  `generator` (the attribute name saved models hold), drawn by `next_seed`. A
  subclass writes `augment(images)` (a tensor in, the augmented tensor out) and names
  its settings in `CONFIG`, the attributes `get_config` adds.
  """

  CONFIG: tuple[str, ...] = ()

  def __init__(self, seed: int | None = None, **kwargs):
    super().__init__(**kwargs)
    self.seed = seed
    self.generator = keras.random.SeedGenerator(seed)

  def is_identity(self) -> bool:
    return False

  def augment(self, images: tf.Tensor) -> tf.Tensor:
    raise NotImplementedError

  def next_seed(self) -> tf.Tensor:
    """A fresh int32 stateless seed (2,)."""
    return seed_pair(self.generator)

  def call(self, inputs, training=False):
    if not training or self.is_identity():
      return inputs
    return self.augment(tf.convert_to_tensor(inputs))

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), **{name: getattr(self, name)
                                       for name in self.CONFIG}, "seed": self.seed}


def _uniform(seed, n, low, high) -> tf.Tensor:
  return tf.random.stateless_uniform([n], seed=seed, minval=low, maxval=high)


def _check_nonnegative(**values) -> None:
  for name, value in values.items():
    if value < 0:
      raise ValueError(f"{name} must be >= 0, got {value}")


def _check_fraction(example: str, **values) -> None:
  """Intensity settings are fractions of the image's level: in [0, 1]."""
  _check_nonnegative(**values)
  for name, value in values.items():
    if value > _MAX_FRACTION:
      raise ValueError(
          f"{name}={value:g}: specimen augmentation is now relative to each "
          f"image's level (its {LEVEL_PERCENTILE:g}th percentile), a fraction in "
          f"[0, 1], not a count of 0..255 units; {example}")


@keras.saving.register_keras_serializable(package="hep2tf")
class RandomDefocus(RandomImageLayer):
  """Gaussian blur with a random sigma per image, uniform in [0, max_sigma] pixels.

  Stands for the focus of a slide. Separable convolution with one kernel per image
  (the batch is folded into the channels of a depthwise convolution), reflecting at
  the border so the background does not darken there. Sigma 0 is the identity.

  Input and output: float (N, H, W, C). Identity unless `training=True`.
  """

  CONFIG = ("max_sigma",)

  def __init__(self, max_sigma: float = 1.5, seed: int | None = None, **kwargs):
    super().__init__(seed=seed, **kwargs)
    _check_nonnegative(max_sigma=max_sigma)
    self.max_sigma = float(max_sigma)

  def is_identity(self) -> bool:
    return self.max_sigma == 0

  def augment(self, images):
    n = tf.shape(images)[0]
    sigma = _uniform(self.next_seed(), n, 0.0, self.max_sigma)
    return gaussian_blur(images, sigma, radius=math.ceil(3 * self.max_sigma))


def gaussian_blur(images: tf.Tensor, sigma: tf.Tensor, radius: int) -> tf.Tensor:
  """Blurs image i of (N, H, W, C) with a Gaussian of sigma[i] pixels (N,).

  Kernels span 2 * radius + 1 taps, normalised to sum 1; sigma near 0 leaves the
  image as it is. Borders are reflected (radius must be < H and < W).
  """
  images = tf.convert_to_tensor(images)
  shape = tf.shape(images)
  n, h, w, c = shape[0], shape[1], shape[2], shape[3]
  taps = tf.range(-radius, radius + 1, dtype=images.dtype)
  sigma = tf.maximum(tf.cast(sigma, images.dtype), 1e-3)
  kernel = tf.exp(-0.5 * (taps[None, :] / sigma[:, None]) ** 2)      # (N, K)
  kernel = kernel / tf.reduce_sum(kernel, axis=1, keepdims=True)
  # One kernel per (image, channel): the channels of a depthwise convolution.
  kernel = tf.reshape(tf.repeat(kernel, c, axis=0), [-1, 2 * radius + 1])  # (N*C, K)
  folded = tf.reshape(tf.transpose(images, [1, 2, 0, 3]), [1, h, w, n * c])
  padded = tf.pad(folded, [[0, 0], [radius, radius], [radius, radius], [0, 0]],
                  mode="REFLECT")
  along_w = tf.transpose(kernel)[None, :, :, None]                  # (1, K, N*C, 1)
  along_h = tf.transpose(kernel)[:, None, :, None]                  # (K, 1, N*C, 1)
  out = tf.nn.depthwise_conv2d(padded, along_w, [1, 1, 1, 1], "VALID")
  out = tf.nn.depthwise_conv2d(out, along_h, [1, 1, 1, 1], "VALID")
  out = tf.transpose(tf.reshape(out, [h, w, n, c]), [2, 0, 1, 3])
  return tf.ensure_shape(out, images.shape)


@keras.saving.register_keras_serializable(package="hep2tf")
class RandomGainGamma(RandomImageLayer):
  """Exposure and camera response: x -> g * L * (x / L) ** gamma, L the image's level.

  Per image, g is log-uniform in [1 / (1 + gain), 1 + gain] and gamma log-uniform in
  [1 / (1 + gamma), 1 + gamma]; 0 turns either off. Unlike RandomBrightness, which
  adds, a gain multiplies: the dark background stays dark, as on a longer exposure.
  The gamma curve is taken relative to the image's own level, so it bends a dim
  source as it bends a bright one; nothing is clipped at 255 (a fixed full scale would
  saturate bright sources only), only below at 0.

  Input and output: float (N, H, W, C), >= 0. Identity unless `training=True`.
  """

  CONFIG = ("gain", "gamma")

  def __init__(self, gain: float = 0.5, gamma: float = 0.0, seed: int | None = None,
               **kwargs):
    super().__init__(seed=seed, **kwargs)
    _check_nonnegative(gain=gain, gamma=gamma)
    self.gain = float(gain)
    self.gamma = float(gamma)

  def is_identity(self) -> bool:
    return self.gain == 0 and self.gamma == 0

  def augment(self, images):
    n = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(self.next_seed(), 2)
    log_g, log_gamma = math.log1p(self.gain), math.log1p(self.gamma)
    gain = tf.exp(_uniform(seeds[0], n, -log_g, log_g))[:, None, None, None]
    gamma = tf.exp(_uniform(seeds[1], n, -log_gamma, log_gamma))[:, None, None, None]
    level = image_level(images)
    scaled = tf.maximum(images, 0.0) / level
    return gain * level * tf.pow(scaled, gamma)


@keras.saving.register_keras_serializable(package="hep2tf")
class RandomBackgroundOffset(RandomImageLayer):
  """Adds an offset to each image (out-of-focus haze, unbound conjugate, camera
  black level): uniform in [0, max_offset] times the image's level.

  Input and output: float (N, H, W, C). Identity unless `training=True`.
  """

  CONFIG = ("max_offset",)

  def __init__(self, max_offset: float = 0.1, seed: int | None = None, **kwargs):
    super().__init__(seed=seed, **kwargs)
    _check_fraction("10 DN on a typical 8-bit cell is about 0.1",
                    max_offset=max_offset)
    self.max_offset = float(max_offset)

  def is_identity(self) -> bool:
    return self.max_offset == 0

  def augment(self, images):
    offset = _uniform(self.next_seed(), tf.shape(images)[0], 0.0,
                      self.max_offset)
    return images + offset[:, None, None, None] * image_level(images)


@keras.saving.register_keras_serializable(package="hep2tf")
class RandomSensorNoise(RandomImageLayer):
  """Shot and read noise of a camera, drawn per image, relative to its level L.

  Shot noise is signal dependent: Gaussian with variance k * L * x, where k is
  uniform in [0, shot] per image, the normal approximation of Poisson counting (a
  pixel at the level has a relative noise of sqrt(k)). Read noise is Gaussian with a
  standard deviation uniform in [0, read] times L per image. The sum is clipped
  below at 0.

  Input and output: float (N, H, W, C). Identity unless `training=True`.
  """

  CONFIG = ("shot", "read")

  def __init__(self, shot: float = 0.01, read: float = 0.025,
               seed: int | None = None, **kwargs):
    super().__init__(seed=seed, **kwargs)
    _check_fraction("1 DN per photon and 2.5 DN of read noise on a typical 8-bit "
                    "cell are about shot=0.01 and read=0.025", shot=shot, read=read)
    self.shot = float(shot)
    self.read = float(read)

  def is_identity(self) -> bool:
    return self.shot == 0 and self.read == 0

  def augment(self, images):
    shape = tf.shape(images)
    seeds = tf.random.experimental.stateless_split(self.next_seed(), 3)
    level = image_level(images)
    k = _uniform(seeds[0], shape[0], 0.0, self.shot)[:, None, None, None]
    read = _uniform(seeds[1], shape[0], 0.0, self.read)[:, None, None, None]
    # Shot and read noise are independent Gaussians: their sum is one Gaussian with
    # the sum of their variances, drawn once (a normal field costs more than the
    # rest of the layer).
    variance = k * level * tf.maximum(images, 0.0) + tf.square(read * level)
    noise = tf.sqrt(variance) * tf.random.stateless_normal(shape, seed=seeds[2],
                                                           dtype=images.dtype)
    return tf.maximum(images + noise, 0.0)


@keras.saving.register_keras_serializable(package="hep2tf")
class RandomGrain(RandomImageLayer):
  """Spatially correlated noise (grain): white Gaussian noise blurred by a Gaussian of
  sigma uniform in [0.5, max_sigma] pixels, rescaled to a standard deviation uniform
  in [0, amount] times the image's level, added, clipped below at 0. Stands for
  what binning, demosaicing, denoising and electron multiplication leave in a
  camera's noise: grains a pixel or two wide that a network can read as texture.

  Input and output: float (N, H, W, C). Identity unless `training=True`.
  """

  CONFIG = ("amount", "max_sigma")

  def __init__(self, amount: float = 0.03, max_sigma: float = 1.5,
               seed: int | None = None, **kwargs):
    super().__init__(seed=seed, **kwargs)
    _check_fraction("amount is the grain's standard deviation over the level",
                    amount=amount)
    if max_sigma < 0.5:
      raise ValueError(f"max_sigma must be >= 0.5, got {max_sigma}")
    self.amount = float(amount)
    self.max_sigma = float(max_sigma)

  def is_identity(self) -> bool:
    return self.amount == 0

  def augment(self, images):
    shape = tf.shape(images)
    seeds = tf.random.experimental.stateless_split(self.next_seed(), 3)
    sigma = _uniform(seeds[0], shape[0], 0.5, self.max_sigma)
    white = tf.random.stateless_normal(shape, seed=seeds[1], dtype=images.dtype)
    grain = gaussian_blur(white, sigma, radius=math.ceil(3 * self.max_sigma))
    grain = grain / (tf.math.reduce_std(grain, axis=(1, 2, 3), keepdims=True) + 1e-6)
    amount = _uniform(seeds[2], shape[0], 0.0, self.amount)[:, None, None, None]
    return tf.maximum(images + amount * image_level(images) * grain, 0.0)
