"""What a model looked at: SmoothGrad attribution maps and two checks on them.

The method is SmoothGrad (Smilkov et al. 2017): the gradient of the predicted class's
logit with respect to the input pixels, averaged over `samples` copies of the image
with Gaussian noise (sigma = `noise` x the image's range), summed over channels. It was
chosen over the alternatives for reasons of these images and these models:
  - Grad-CAM needs a spatial map: the seed CNN's last conv map is 2x2 at 78x78 input,
    so its Grad-CAM can only name a quadrant.
  - Input x gradient, integrated gradients from a black baseline and occlusion with a
    black patch all multiply by (x - 0): on IIF images, whose background is near 0,
    they put the mass on the cell by construction, and they pass the
    model-randomisation check badly (Adebayo et al. 2018) because the image term
    dominates. The models also standardise each image, so they do not see brightness
    scale: the straight path from black is flat except in its first few percent, which
    a Riemann sum of integrated gradients resolves poorly.
  - Occlusion costs a forward pass per patch position (some 150 per 78x78 cell).
  SmoothGrad has no image factor, so background pixels can and do receive attribution;
  that is what makes the mask check below a test rather than a tautology. Its cost is
  `samples` forward and backward passes per cell, run in batches.

Checks (`attribution_checks`):
  mask_lift: the share of positive attribution inside the cell mask, divided by the
    mask's share of the image area (1 = no better than uniform), mean over cells;
  intensity_lift: the same for the image intensity used as a map, so a reader sees
    whether the map says more than "where it is bright";
  randomisation_rank_corr: Spearman rank correlation of |map| between the trained
    model and the same architecture with re-initialised weights (mean over cells); a
    map that does not depend on the weights (high correlation) explains nothing.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf
from scipy import stats

from hep2tf.data import schema
from hep2tf.data.records import Records
from hep2tf.errors import InputError
from hep2tf.evaluation import calibration

METHOD = "smoothgrad"
SAMPLES = 16
NOISE = 0.15
_MAX_BATCH = 128  # noisy copies per forward/backward pass


def _gradient_fn(logits_model: keras.Model):
  @tf.function(reduce_retracing=True)
  def grads(images, class_ids):
    with tf.GradientTape() as tape:
      tape.watch(images)
      logits = tf.cast(logits_model(images, training=False), tf.float32)
      picked = tf.gather(logits, class_ids, batch_dims=1)
    return tape.gradient(picked, images)
  return grads


def smoothgrad(model: keras.Model, images, class_ids, *, samples: int = SAMPLES,
               noise: float = NOISE, seed: int = 0) -> np.ndarray:
  """SmoothGrad maps of `class_ids`' logits.

  Args:
    model: a hep2tf model (images in [0, 255] -> probabilities, with a "logits"
      layer); the gradient is taken of the logit, which does not saturate as the
      softmax does.
    images: (N, H, W, C) float in [0, 255].
    class_ids: (N,) the class to explain per image (usually the predicted one).
    samples: noisy copies per image (1 with noise 0 gives the plain gradient).
    noise: noise sigma as a fraction of each image's max - min.
    seed: seeds the noise.

  Returns:
    (N, H, W) float32 maps, signed; positive = more of this pixel, more of the class.
  """
  images = np.asarray(images, dtype=np.float32)
  class_ids = np.asarray(class_ids, dtype=np.int64).reshape(-1)
  if images.ndim != 4 or len(images) != len(class_ids):
    raise InputError(f"need images (N, H, W, C) and N class ids, got {images.shape} "
                     f"and {class_ids.shape}")
  grads = _gradient_fn(calibration.logits_model(model))
  rng = np.random.default_rng(seed)
  per_batch = max(1, _MAX_BATCH // samples)
  maps = []
  for start in range(0, len(images), per_batch):
    chunk = images[start:start + per_batch]
    ids = np.repeat(class_ids[start:start + per_batch], samples)
    span = (chunk.max(axis=(1, 2, 3)) - chunk.min(axis=(1, 2, 3)))[:, None, None, None]
    noisy = np.repeat(chunk, samples, axis=0)
    sigma = np.repeat(noise * span, samples, axis=0)
    noisy = noisy + rng.normal(size=noisy.shape).astype(np.float32) * sigma
    g = grads(tf.constant(noisy), tf.constant(ids)).numpy()
    g = g.reshape((len(chunk), samples) + chunk.shape[1:]).mean(axis=1)
    maps.append(g.sum(axis=-1))
  return np.concatenate(maps).astype(np.float32)


def lift(maps, masks) -> tuple[float | None, list[float | None]]:
  """(mean, per map) of: share of positive mass inside the mask / mask area share.

  Maps (N, H, W) with no positive mass, and empty or full masks, give None and are
  left out of the mean.
  """
  maps = np.asarray(maps, dtype=np.float64)
  masks = np.asarray(masks).astype(bool)
  if masks.ndim == 4:
    masks = masks[..., 0]
  if maps.shape != masks.shape:
    raise InputError(f"maps {maps.shape} and masks {masks.shape} differ in shape")
  values = []
  for m, mask in zip(maps, masks):
    positive = np.clip(m, 0.0, None)
    area = mask.mean()
    if positive.sum() <= 0 or area in (0.0, 1.0):
      values.append(None)
      continue
    values.append(float(positive[mask].sum() / positive.sum() / area))
  known = [v for v in values if v is not None]
  return (float(np.mean(known)) if known else None), values


def rank_correlation(maps_a, maps_b) -> float | None:
  """Mean over maps of the Spearman rank correlation of |a| and |b|."""
  values = []
  for a, b in zip(np.asarray(maps_a), np.asarray(maps_b)):
    a, b = np.abs(a).ravel(), np.abs(b).ravel()
    if a.std() == 0 or b.std() == 0:
      continue
    values.append(stats.spearmanr(a, b).statistic)
  return float(np.mean(values)) if values else None


def randomised_copy(model: keras.Model, seed: int = 0) -> keras.Model:
  """The same architecture with every weight drawn anew from its initialiser."""
  keras.utils.set_random_seed(seed)
  return keras.models.clone_model(model)


def attribution_checks(model: keras.Model, images, class_ids, masks=None, *,
                       samples: int = SAMPLES, noise: float = NOISE,
                       seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
  """Maps for `images` and the `explanations` entry of a report.

  Returns (maps (N, H, W), dict with method, samples, noise, num_cells, mask_lift,
  intensity_lift (both None without masks), randomisation_rank_corr).
  """
  maps = smoothgrad(model, images, class_ids, samples=samples, noise=noise, seed=seed)
  random_maps = smoothgrad(randomised_copy(model, seed), images, class_ids,
                           samples=samples, noise=noise, seed=seed)
  summary = {"method": METHOD, "samples": samples, "noise": noise,
             "num_cells": int(len(maps)), "mask_lift": None, "intensity_lift": None,
             "randomisation_rank_corr": rank_correlation(maps, random_maps)}
  if masks is not None:
    summary["mask_lift"] = lift(maps, masks)[0]
    summary["intensity_lift"] = lift(np.asarray(images).sum(axis=-1), masks)[0]
  return maps, summary


# ----------------------------------------------------------------------------------
# which cells, and reading their images and masks back from the records


def select_cells(y_true, probs, count: int) -> np.ndarray:
  """Up to `count` cell indices: the most confident errors (at most half), then right
  ones taken round-robin over the true classes so that every class is shown."""
  y_true = np.asarray(y_true)
  probs = np.asarray(probs)
  y_pred = probs.argmax(axis=1)
  confidence = probs.max(axis=1)
  wrong = np.flatnonzero(y_pred != y_true)
  wrong = wrong[np.argsort(-confidence[wrong], kind="stable")][:count // 2]
  right = np.flatnonzero(y_pred == y_true)
  queues = [list(right[y_true[right] == k]) for k in np.unique(y_true[right])]
  chosen = list(wrong)
  while len(chosen) < count and any(queues):
    for queue in queues:
      if queue and len(chosen) < count:
        chosen.append(queue.pop(0))
  return np.asarray(chosen, dtype=np.int64)


def gather_images(dataset: tf.data.Dataset, file_names: Sequence[str]) -> np.ndarray:
  """The images of `file_names` (in that order) from (images, labels, meta) batches."""
  wanted = {name: i for i, name in enumerate(file_names)}
  found: dict[int, np.ndarray] = {}
  for images, _, meta in dataset:
    names = meta[schema.FILE_NAME].numpy().astype(str)
    for row, name in enumerate(names):
      if name in wanted and wanted[name] not in found:
        found[wanted[name]] = images[row].numpy()
    if len(found) == len(wanted):
      break
  missing = [n for n in file_names if wanted[n] not in found]
  if missing:
    raise InputError(f"cells {missing[:3]} were not found in the records again")
  return np.stack([found[i] for i in range(len(file_names))])


def read_masks(records: Records, split: str, file_names: Sequence[str],
               image_size: tuple[int, int] | None = None) -> np.ndarray | None:
  """Boolean masks (N, H, W) of `file_names` from the records, resized like the
  images (aspect-preserving pad); None when the records hold no masks."""
  if not records.info.has_mask:
    return None
  spec = {k: v for k, v in schema.feature_spec(has_mask=True).items()
          if k in (schema.FILE_NAME, schema.MASK)}
  wanted = {name: i for i, name in enumerate(file_names)}
  found: dict[int, np.ndarray] = {}
  for serialized in tf.data.TFRecordDataset(records.shards(split)):
    example = tf.io.parse_single_example(serialized, spec)
    name = example[schema.FILE_NAME].numpy().decode("utf-8")
    if name not in wanted or wanted[name] in found:
      continue
    mask = tf.io.decode_png(example[schema.MASK], channels=1, dtype=tf.uint8)
    mask = tf.cast(mask, tf.float32)
    if image_size is not None:
      mask = tf.image.resize_with_pad(mask, image_size[0], image_size[1])
    found[wanted[name]] = mask.numpy()[..., 0] > 127
    if len(found) == len(wanted):
      break
  if len(found) < len(wanted):
    missing = [n for n in file_names if wanted[n] not in found]
    raise InputError(f"no mask found for {missing[:3]}", file=records.path)
  return np.stack([found[i] for i in range(len(file_names))])
