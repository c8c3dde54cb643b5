"""Batched augmentation: pure functions for the host, Keras layers for the model.

Images are float32 in [0, 255], shape (N, H, W, C) (a few functions also take one
(H, W, C) image). Two kinds of code live here:

- pure TensorFlow functions that work eagerly and inside tf.data / tf.function:
  `dihedral` (the 8 rotations and flips, used for test-time augmentation and matching
  the converter's offline copies) and `mix_batch` (mixup / cutmix, which change the
  labels and therefore run on the host after batching);
- Keras layers that run inside the compiled training step, on the accelerator when
  there is one, and are the identity at inference: `RandomDihedral`, `RandomErasing`,
  the specimen-level layers (what differs between IIF slides, exposures and
  microscopes: `RandomDefocus`, `RandomGainGamma`, `RandomBackgroundOffset`,
  `RandomSensorNoise`), and `build_augmenter`, which stacks them with Keras' own
  rotation and colour layers into the Sequential named "augment" that the trainer
  puts in front of the model.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

NUM_DIHEDRAL = 8
_BETA_EPSILON = 1e-7


# ---------------------------------------------------------------------------------
# Pure functions.


def dihedral(images: tf.Tensor, k) -> tf.Tensor:
  """Applies dihedral transform `k` to one image or a batch.

  The convention, shared with the converter's offline copies: rotate `k % 4` quarter
  turns counter-clockwise (the direction of `np.rot90` and `tf.image.rot90`), then flip
  left-right if `k >= 4`. `k = 0` is the identity.

  Args:
    images: (H, W, C) or (N, H, W, C), any dtype.
    k: int or scalar int tensor in 0..7 (taken modulo 8).
  Returns:
    The transformed images; H and W swap for odd `k`.
  """
  images = tf.convert_to_tensor(images)
  k = tf.math.floormod(tf.cast(k, tf.int32), NUM_DIHEDRAL)
  rotated = tf.image.rot90(images, k=k % 4)
  return tf.cond(k >= 4, lambda: tf.image.flip_left_right(rotated),
                 lambda: rotated)


def beta_sample(alpha: float, seed: tf.Tensor) -> tf.Tensor:
  """One draw of lambda ~ Beta(alpha, alpha), float32 scalar, from a stateless seed."""
  seeds = tf.random.experimental.stateless_split(seed, num=2)
  a = tf.random.stateless_gamma([], seed=seeds[0], alpha=alpha)
  b = tf.random.stateless_gamma([], seed=seeds[1], alpha=alpha)
  # Both gammas can underflow to 0 for tiny alpha; fall back to an even mix.
  total = a + b
  return tf.where(total > _BETA_EPSILON, a / tf.maximum(total, _BETA_EPSILON), 0.5)


def mixup(images: tf.Tensor, labels: tf.Tensor, lam: tf.Tensor,
          partner: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """Mixup: lam * x + (1 - lam) * x[partner], and the same for the labels.

  Args:
    images: float (N, H, W, C).
    labels: float (N, K) one-hot or soft.
    lam: scalar weight of the example itself.
    partner: int (N,), the example each one is mixed with (a permutation).
  """
  lam = tf.cast(lam, images.dtype)
  mixed_images = lam * images + (1.0 - lam) * tf.gather(images, partner)
  lam = tf.cast(lam, labels.dtype)
  mixed_labels = lam * labels + (1.0 - lam) * tf.gather(labels, partner)
  return mixed_images, mixed_labels


def cutmix(images: tf.Tensor, labels: tf.Tensor, lam: tf.Tensor,
           partner: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """CutMix: pastes a box of the partner's image, of area about (1 - lam) * H * W.

  The box centre is uniform over the image and the box is clipped at the border, so
  the labels are mixed by the box's actual area, not by `lam`. One box per batch.

  Args:
    images: float (N, H, W, C).
    labels: float (N, K).
    lam: scalar in [0, 1]; the image keeps about this fraction of its own pixels.
    partner: int (N,), the example each one takes its box from.
    seed: stateless seed, int shape (2,), for the box position.
  """
  shape = tf.shape(images)
  height, width = shape[1], shape[2]
  h = tf.cast(height, tf.float32)
  w = tf.cast(width, tf.float32)
  cut = tf.sqrt(1.0 - tf.cast(lam, tf.float32))
  centre = tf.random.stateless_uniform([2], seed=seed)
  cy, cx = centre[0] * h, centre[1] * w
  y0 = tf.cast(tf.round(tf.clip_by_value(cy - cut * h / 2, 0.0, h)), tf.int32)
  y1 = tf.cast(tf.round(tf.clip_by_value(cy + cut * h / 2, 0.0, h)), tf.int32)
  x0 = tf.cast(tf.round(tf.clip_by_value(cx - cut * w / 2, 0.0, w)), tf.int32)
  x1 = tf.cast(tf.round(tf.clip_by_value(cx + cut * w / 2, 0.0, w)), tf.int32)
  box = _box_mask(height, width, y0[None], y1[None], x0[None], x1[None])
  mixed_images = tf.where(box, tf.gather(images, partner), images)
  area = tf.cast((y1 - y0) * (x1 - x0), tf.float32) / (h * w)
  kept = tf.cast(1.0 - area, labels.dtype)
  mixed_labels = kept * labels + (1.0 - kept) * tf.gather(labels, partner)
  return mixed_images, mixed_labels


def mix_batch(images: tf.Tensor, labels: tf.Tensor, *, mixup_alpha: float = 0.0,
              cutmix_alpha: float = 0.0, seed=None
              ) -> tuple[tf.Tensor, tf.Tensor]:
  """Mixup or CutMix on one batch; works eagerly and inside tf.data.

  Each example is mixed with a partner drawn by a random permutation of the batch.
  With both alphas > 0 one of the two is chosen per batch with even odds; with both 0
  the batch is returned unchanged.

  Args:
    images: float32 (N, H, W, C).
    labels: float32 (N, K); rows sum to 1, and still do afterwards.
    mixup_alpha: Beta(alpha, alpha) parameter of mixup's lambda; 0 turns it off.
    cutmix_alpha: the same for CutMix's lambda (area kept); 0 turns it off.
    seed: None (fresh randomness each call) or a stateless seed, int shape (2,);
      the input pipeline passes (seed, batch index) so runs are reproducible.
  Returns:
    (images, labels) with the same shapes and dtypes.
  """
  if mixup_alpha < 0 or cutmix_alpha < 0:
    raise ValueError(f"alphas must be >= 0, got mixup_alpha={mixup_alpha}, "
                     f"cutmix_alpha={cutmix_alpha}")
  if mixup_alpha == 0 and cutmix_alpha == 0:
    return images, labels
  if seed is None:
    seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
  seed = tf.cast(seed, tf.int64)
  perm_seed, choice_seed, lam_seed, box_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, num=4))
  n = tf.shape(images)[0]
  partner = tf.argsort(tf.random.stateless_uniform([n], seed=perm_seed))

  def do_mixup():
    return mixup(images, labels, beta_sample(mixup_alpha, lam_seed), partner)

  def do_cutmix():
    return cutmix(images, labels, beta_sample(cutmix_alpha, lam_seed), partner,
                  box_seed)

  if cutmix_alpha == 0:
    return do_mixup()
  if mixup_alpha == 0:
    return do_cutmix()
  use_mixup = tf.random.stateless_uniform([], seed=choice_seed) < 0.5
  return tf.cond(use_mixup, do_mixup, do_cutmix)


def _box_mask(height, width, y0, y1, x0, x1) -> tf.Tensor:
  """Boolean (N, H, W, 1) mask of per-example boxes [y0, y1) x [x0, x1); args (N,)."""
  rows = tf.range(height)[None, :, None, None]
  cols = tf.range(width)[None, None, :, None]
  inside_rows = (rows >= y0[:, None, None, None]) & (rows < y1[:, None, None, None])
  inside_cols = (cols >= x0[:, None, None, None]) & (cols < x1[:, None, None, None])
  return inside_rows & inside_cols


def _per_example(flags: tf.Tensor, transformed: tf.Tensor,
                 images: tf.Tensor) -> tf.Tensor:
  """Picks `transformed` where the (N,) boolean `flags` is set, else `images`."""
  return tf.where(flags[:, None, None, None], transformed, images)


def _seed_pair(generator: keras.random.SeedGenerator) -> tf.Tensor:
  """A fresh int32 stateless seed (2,) from a Keras SeedGenerator."""
  return tf.cast(generator.next(), tf.int32)


# ---------------------------------------------------------------------------------
# Keras layers: identity unless called with training=True.


@keras.saving.register_keras_serializable(package="hep2tf")
class RandomDihedral(keras.layers.Layer):
  """A random one of the 8 rotations by quarter turns and flips, per example.

  Drawn as three independent fair coins: transpose, flip up-down, flip left-right,
  whose 8 combinations are exactly the dihedral group, so every transform has
  probability 1/8. Images that are not square cannot be transposed within a batch;
  for those only the flips (4 transforms, including the half turn) are drawn.

  Input and output: float (N, H, W, C). Identity unless `training=True`.
  """

  def __init__(self, seed: int | None = None, **kwargs):
    super().__init__(**kwargs)
    self.seed = seed
    self.generator = keras.random.SeedGenerator(seed)

  def call(self, inputs, training=False):
    if not training:
      return inputs
    images = tf.convert_to_tensor(inputs)
    n = tf.shape(images)[0]
    coins = tf.random.stateless_uniform([3, n], seed=_seed_pair(self.generator)) < 0.5
    height, width = images.shape[1], images.shape[2]
    if height is not None and height == width:
      images = _per_example(coins[0], tf.transpose(images, [0, 2, 1, 3]), images)
    images = _per_example(coins[1], tf.reverse(images, axis=[1]), images)
    return _per_example(coins[2], tf.reverse(images, axis=[2]), images)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="hep2tf")
class RandomQuarterTurn(keras.layers.Layer):
  """A random number (0..3) of counter-clockwise quarter turns, per example.

  Square images only (a batch cannot mix shapes). Identity unless `training=True`.
  """

  def __init__(self, seed: int | None = None, **kwargs):
    super().__init__(**kwargs)
    self.seed = seed
    self.generator = keras.random.SeedGenerator(seed)

  def call(self, inputs, training=False):
    if not training:
      return inputs
    images = tf.convert_to_tensor(inputs)
    if images.shape[1] is not None and images.shape[1] != images.shape[2]:
      raise ValueError(f"quarter turns need square images, got {images.shape}")
    turns = tf.random.stateless_uniform(
        [tf.shape(images)[0]], maxval=4, dtype=tf.int32,
        seed=_seed_pair(self.generator))
    # A counter-clockwise quarter turn is a transpose followed by an up-down flip.
    once = tf.reverse(tf.transpose(images, [0, 2, 1, 3]), axis=[1])
    twice = tf.reverse(images, axis=[1, 2])
    thrice = tf.transpose(tf.reverse(images, axis=[1]), [0, 2, 1, 3])
    out = _per_example(turns == 1, once, images)
    out = _per_example(turns == 2, twice, out)
    return _per_example(turns == 3, thrice, out)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="hep2tf")
class RandomErasing(keras.layers.Layer):
  """Random erasing (Zhong et al. 2017): blanks a random box in some examples.

  Each example is erased with probability `probability`; the box covers a fraction
  of the image drawn uniformly from `scale`, with aspect ratio (height / width) drawn
  log-uniformly from `ratio`, clipped to the image, at a uniform position.

  Args:
    probability: chance that an example is erased.
    scale: (min, max) fraction of the image area that the box covers.
    ratio: (min, max) box aspect ratio.
    fill_value: what the box is filled with; 0 by default because IIF background is
      dark, or None for uniform noise in [0, 255].
    seed: int or None.

  Input and output: float (N, H, W, C) in [0, 255]. Identity unless `training=True`.
  """

  def __init__(self, probability: float = 0.5,
               scale: tuple[float, float] = (0.02, 1 / 3),
               ratio: tuple[float, float] = (0.3, 3.3),
               fill_value: float | None = 0.0, seed: int | None = None, **kwargs):
    super().__init__(**kwargs)
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
    self.seed = seed
    self.generator = keras.random.SeedGenerator(seed)

  def call(self, inputs, training=False):
    if not training or self.probability == 0:
      return inputs
    images = tf.convert_to_tensor(inputs)
    shape = tf.shape(images)
    n, height, width = shape[0], shape[1], shape[2]
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    seeds = tf.random.experimental.stateless_split(_seed_pair(self.generator), num=6)
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
    box = _box_mask(height, width, y0, y0 + tf.cast(box_h, tf.int32),
                    x0, x0 + tf.cast(box_w, tf.int32))
    box = box & erase[:, None, None, None]
    if self.fill_value is None:
      fill = tf.random.stateless_uniform(shape, seed=seeds[5], minval=0.0,
                                         maxval=255.0, dtype=images.dtype)
    else:
      fill = tf.fill(shape, tf.cast(self.fill_value, images.dtype))
    return tf.where(box, fill, images)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "probability": self.probability,
            "scale": self.scale, "ratio": self.ratio, "fill_value": self.fill_value,
            "seed": self.seed}


# ---------------------------------------------------------------------------------
# Specimen-level layers: what varies between slides, exposures and microscopes. Each
# draws one setting per image (a cell crop stands for its specimen) and keeps the
# 0..255 range.


def _uniform(seed, n, low, high) -> tf.Tensor:
  return tf.random.stateless_uniform([n], seed=seed, minval=low, maxval=high)


def _check_nonnegative(**values) -> None:
  for name, value in values.items():
    if value < 0:
      raise ValueError(f"{name} must be >= 0, got {value}")


@keras.saving.register_keras_serializable(package="hep2tf")
class RandomDefocus(keras.layers.Layer):
  """Gaussian blur with a random sigma per image, uniform in [0, max_sigma] pixels.

  Stands for the focus of a slide. Separable convolution with one kernel per image
  (the batch is folded into the channels of a depthwise convolution), reflecting at
  the border so the background does not darken there. Sigma 0 is the identity.

  Input and output: float (N, H, W, C). Identity unless `training=True`.
  """

  def __init__(self, max_sigma: float = 1.5, seed: int | None = None, **kwargs):
    super().__init__(**kwargs)
    _check_nonnegative(max_sigma=max_sigma)
    self.max_sigma = float(max_sigma)
    self.seed = seed
    self.generator = keras.random.SeedGenerator(seed)

  def call(self, inputs, training=False):
    if not training or self.max_sigma == 0:
      return inputs
    images = tf.convert_to_tensor(inputs)
    n = tf.shape(images)[0]
    sigma = _uniform(_seed_pair(self.generator), n, 0.0, self.max_sigma)
    return gaussian_blur(images, sigma, radius=math.ceil(3 * self.max_sigma))

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "max_sigma": self.max_sigma, "seed": self.seed}


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
class RandomGainGamma(keras.layers.Layer):
  """Exposure and camera response: x -> 255 * g * (x / 255) ** gamma, clipped.

  Per image, g is log-uniform in [1 / (1 + gain), 1 + gain] and gamma log-uniform in
  [1 / (1 + gamma), 1 + gamma]; 0 turns either off. Unlike RandomBrightness, which
  adds, a gain multiplies: the dark background stays dark, as on a longer exposure.

  Input and output: float (N, H, W, C) in [0, 255]. Identity unless `training=True`.
  """

  def __init__(self, gain: float = 0.5, gamma: float = 0.0, seed: int | None = None,
               **kwargs):
    super().__init__(**kwargs)
    _check_nonnegative(gain=gain, gamma=gamma)
    self.gain = float(gain)
    self.gamma = float(gamma)
    self.seed = seed
    self.generator = keras.random.SeedGenerator(seed)

  def call(self, inputs, training=False):
    if not training or (self.gain == 0 and self.gamma == 0):
      return inputs
    images = tf.convert_to_tensor(inputs)
    n = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(_seed_pair(self.generator), 2)
    log_g, log_gamma = math.log1p(self.gain), math.log1p(self.gamma)
    gain = tf.exp(_uniform(seeds[0], n, -log_g, log_g))[:, None, None, None]
    gamma = tf.exp(_uniform(seeds[1], n, -log_gamma, log_gamma))[:, None, None, None]
    scaled = tf.clip_by_value(images / 255.0, 0.0, 1.0)
    return tf.clip_by_value(255.0 * gain * tf.pow(scaled, gamma), 0.0, 255.0)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "gain": self.gain, "gamma": self.gamma,
            "seed": self.seed}


@keras.saving.register_keras_serializable(package="hep2tf")
class RandomBackgroundOffset(keras.layers.Layer):
  """Adds a uniform offset in [0, max_offset] DN to each image (out-of-focus haze,
  unbound conjugate, camera black level), clipped at 255.

  Input and output: float (N, H, W, C) in [0, 255]. Identity unless `training=True`.
  """

  def __init__(self, max_offset: float = 10.0, seed: int | None = None, **kwargs):
    super().__init__(**kwargs)
    _check_nonnegative(max_offset=max_offset)
    self.max_offset = float(max_offset)
    self.seed = seed
    self.generator = keras.random.SeedGenerator(seed)

  def call(self, inputs, training=False):
    if not training or self.max_offset == 0:
      return inputs
    images = tf.convert_to_tensor(inputs)
    offset = _uniform(_seed_pair(self.generator), tf.shape(images)[0], 0.0,
                      self.max_offset)
    return tf.clip_by_value(images + offset[:, None, None, None], 0.0, 255.0)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "max_offset": self.max_offset, "seed": self.seed}


@keras.saving.register_keras_serializable(package="hep2tf")
class RandomSensorNoise(keras.layers.Layer):
  """Shot and read noise of a camera, drawn per image.

  Shot noise is signal dependent: Gaussian with variance k * x, where k (DN per
  photon) is uniform in [0, shot] per image, the normal approximation of Poisson
  counting. Read noise is Gaussian with a standard deviation uniform in [0, read] DN
  per image. The sum is clipped to [0, 255].

  Input and output: float (N, H, W, C) in [0, 255]. Identity unless `training=True`.
  """

  def __init__(self, shot: float = 1.0, read: float = 2.0, seed: int | None = None,
               **kwargs):
    super().__init__(**kwargs)
    _check_nonnegative(shot=shot, read=read)
    self.shot = float(shot)
    self.read = float(read)
    self.seed = seed
    self.generator = keras.random.SeedGenerator(seed)

  def call(self, inputs, training=False):
    if not training or (self.shot == 0 and self.read == 0):
      return inputs
    images = tf.convert_to_tensor(inputs)
    shape = tf.shape(images)
    seeds = tf.random.experimental.stateless_split(_seed_pair(self.generator), 4)
    k = _uniform(seeds[0], shape[0], 0.0, self.shot)[:, None, None, None]
    read = _uniform(seeds[1], shape[0], 0.0, self.read)[:, None, None, None]
    shot_std = tf.sqrt(k * tf.maximum(images, 0.0))
    noise = (shot_std * tf.random.stateless_normal(shape, seed=seeds[2],
                                                   dtype=images.dtype)
             + read * tf.random.stateless_normal(shape, seed=seeds[3],
                                                 dtype=images.dtype))
    return tf.clip_by_value(images + noise, 0.0, 255.0)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "shot": self.shot, "read": self.read,
            "seed": self.seed}


def build_augmenter(*, rotation: bool = True, rot90: bool = True, flips: bool = True,
                    rotation_fill: str = "constant", brightness: float = 0.0,
                    contrast: float = 0.0, erasing: float = 0.0,
                    defocus: float = 0.0, gain: float = 0.0, gamma: float = 0.0,
                    background_offset: float = 0.0, shot_noise: float = 0.0,
                    read_noise: float = 0.0,
                    seed: int | None = None) -> keras.Sequential:
  """The training-time augmentation stack, a Sequential named "augment".

  Order: arbitrary-angle rotation (full circle, background filled with 0 because IIF
  background is dark), the dihedral group (quarter turns and flips), then the
  specimen-level layers in the order of image formation (defocus, background offset,
  gain and gamma, sensor noise), brightness, contrast, random erasing. Each part is
  left out when switched off; with everything off the Sequential is the identity.

  Args:
    rotation: keras RandomRotation over the full circle.
    rot90: random quarter turns; with `flips` too, the whole dihedral group.
    flips: random flips.
    rotation_fill: RandomRotation's fill_mode ("constant", "reflect", "wrap",
      "nearest"); "constant" fills with 0.
    brightness: RandomBrightness factor (fraction of the 0..255 range); 0 = off.
    contrast: RandomContrast factor; 0 = off.
    erasing: RandomErasing probability; 0 = off.
    defocus: RandomDefocus max_sigma, pixels; 0 = off.
    gain, gamma: RandomGainGamma ranges (1 + x as the largest factor); 0 = off.
    background_offset: RandomBackgroundOffset max_offset, DN; 0 = off.
    shot_noise, read_noise: RandomSensorNoise shot (DN per photon) and read (DN);
      0 = off.
    seed: base seed; each layer gets its own derived seed.

  Always call it with an explicit `training=` (Keras' fit and predict do): Keras' own
  random layers default to training=True when called bare, this module's to False.
  The layers compute in float32 even under a mixed-precision policy, so 0..255
  interpolation is not rounded to bfloat16.
  """
  def layer_seed(offset: int) -> int | None:
    return None if seed is None else seed + offset

  layers = []
  if rotation:
    layers.append(keras.layers.RandomRotation(
        factor=1.0, fill_mode=rotation_fill, fill_value=0.0,
        seed=layer_seed(0), dtype="float32", name="rotation"))
  if rot90 and flips:
    layers.append(RandomDihedral(seed=layer_seed(1), dtype="float32",
                                 name="dihedral"))
  elif rot90:
    layers.append(RandomQuarterTurn(seed=layer_seed(1), dtype="float32",
                                    name="rot90"))
  elif flips:
    layers.append(keras.layers.RandomFlip("horizontal_and_vertical",
                                          seed=layer_seed(1), dtype="float32",
                                          name="flips"))
  if defocus > 0:
    layers.append(RandomDefocus(defocus, seed=layer_seed(5), dtype="float32",
                                name="defocus"))
  if background_offset > 0:
    layers.append(RandomBackgroundOffset(background_offset, seed=layer_seed(6),
                                         dtype="float32", name="background_offset"))
  if gain > 0 or gamma > 0:
    layers.append(RandomGainGamma(gain, gamma, seed=layer_seed(7), dtype="float32",
                                  name="gain_gamma"))
  if shot_noise > 0 or read_noise > 0:
    layers.append(RandomSensorNoise(shot_noise, read_noise, seed=layer_seed(8),
                                    dtype="float32", name="sensor_noise"))
  if brightness > 0:
    layers.append(keras.layers.RandomBrightness(
        brightness, value_range=(0, 255), seed=layer_seed(2), dtype="float32",
        name="brightness"))
  if contrast > 0:
    layers.append(keras.layers.RandomContrast(
        contrast, value_range=(0, 255), seed=layer_seed(3), dtype="float32",
        name="contrast"))
  if erasing > 0:
    layers.append(RandomErasing(erasing, seed=layer_seed(4), dtype="float32",
                                name="erasing"))
  if not layers:
    # Keras cannot build an empty Sequential.
    layers.append(keras.layers.Identity(name="identity"))
  return keras.Sequential(layers, name="augment")
