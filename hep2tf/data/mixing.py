"""Mixup and CutMix: batch mixing on the host, after batching, in the reader.

They change the labels, so they cannot run inside the model like the other
augmentations (hep2tf.data.augment); `reader.create_split` applies `mix_batch` to each
training batch. Pure TensorFlow functions on float32 images in [0, 255], shape
(N, H, W, C), and one-hot or soft labels (N, K); they work eagerly and inside
tf.data / tf.function.
"""

from __future__ import annotations

import tensorflow as tf

_BETA_EPSILON = 1e-7


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
  box = box_mask(height, width, y0[None], y1[None], x0[None], x1[None])
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


def box_mask(height, width, y0, y1, x0, x1) -> tf.Tensor:
  """Boolean (N, H, W, 1) mask of per-example boxes [y0, y1) x [x0, x1); args (N,).

  Also the box of `augment_layers.RandomErasing`."""
  rows = tf.range(height)[None, :, None, None]
  cols = tf.range(width)[None, None, :, None]
  inside_rows = (rows >= y0[:, None, None, None]) & (rows < y1[:, None, None, None])
  inside_cols = (cols >= x0[:, None, None, None]) & (cols < x1[:, None, None, None])
  return inside_rows & inside_cols
