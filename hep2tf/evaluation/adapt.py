"""Test-time adaptation to a specimen: BatchNorm statistics re-estimated per group.

AdaBN (Li et al. 2016): a network with batch normalisation keeps the moving mean and
variance of its training specimens; a specimen from another microscope shifts every
layer's activation statistics. `predict_logits_by_group` re-estimates them from each
specimen's own cells, unsupervised (the labels are never read), layer by layer in one
forward pass in batch-statistics mode, then predicts that specimen's cells in
inference mode with those statistics, and puts the trained ones back.

Two units of adaptation (`hep2tf.config.evaluate.ADAPT_MODES`): "specimen", the
groups of the records (`schema.GROUP`: specimen, patient, slide; cells without one
keep the trained statistics), and "split", all cells of the evaluated split at once
(a new lab's batch, imaged together). In IIF sets a specimen carries one pattern, so
its own statistics hold the class signal, and re-estimating them per specimen
normalises it away (docs/RESULTS.md measures this); "split" keeps the classes mixed.

Only models with BatchNormalization layers have statistics to re-estimate
(`has_batch_norm`); the from-scratch cnn without --batch_norm standardises each image
on its own already.
"""

from __future__ import annotations

import keras
import numpy as np

from hep2tf.data import schema
from hep2tf.evaluation import predict

# Cells of one group used to estimate its statistics (a random subset beyond it).
MAX_ADAPT_CELLS = 512


def batch_norm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
  """Every BatchNormalization layer of the model, nested models included."""
  found = []
  for layer in getattr(model, "layers", []):
    if isinstance(layer, keras.layers.BatchNormalization):
      found.append(layer)
    else:
      found.extend(batch_norm_layers(layer))
  return found


def has_batch_norm(model: keras.Model) -> bool:
  return bool(batch_norm_layers(model))


def adapt_statistics(model: keras.Model, images: np.ndarray, seed: int = 0) -> list:
  """Sets every BatchNorm layer's moving mean and variance to those of `images`
  (N, H, W, C), estimated in one forward pass; returns the trained statistics for
  `restore_statistics`."""
  layers = batch_norm_layers(model)
  saved = [(layer.momentum, layer.trainable,
            np.array(layer.moving_mean), np.array(layer.moving_variance))
           for layer in layers]
  if len(images) > MAX_ADAPT_CELLS:
    pick = np.random.default_rng(seed).choice(len(images), MAX_ADAPT_CELLS,
                                              replace=False)
    images = images[np.sort(pick)]
  for layer in layers:
    layer.momentum = 0.0      # the moving statistics become this batch's
    layer.trainable = True    # frozen BatchNorm layers would ignore training=True
  try:
    model(images, training=True)
  finally:
    for layer, (momentum, trainable, _, _) in zip(layers, saved):
      layer.momentum, layer.trainable = momentum, trainable
  return saved


def restore_statistics(model: keras.Model, saved: list) -> None:
  for layer, (_, _, mean, variance) in zip(batch_norm_layers(model), saved):
    layer.moving_mean.assign(mean)
    layer.moving_variance.assign(variance)


def predict_logits_by_group(model: keras.Model, dataset, tta: bool = False,
                            keep_images: int = 0, unit: str = "specimen"):
  """`predict.predict_logits` with each group's own BatchNorm statistics.

  `dataset` yields (images, labels, meta) with `schema.GROUP` in meta; `unit`
  "specimen" adapts to each group, "split" to all cells at once. Returns the same
  tuple as `predict.predict_logits`, in the dataset's order.
  """
  images, y_true, meta = [], [], {}
  for batch, labels, batch_meta in dataset:
    images.append(np.asarray(batch))
    y_true.append(np.argmax(np.asarray(labels), axis=1))
    for key, value in batch_meta.items():
      meta.setdefault(key, []).append(value.numpy().astype(str))
  images = np.concatenate(images)
  y_true = np.concatenate(y_true)
  meta = {k: np.concatenate(v) for k, v in meta.items()}
  groups = meta.get(schema.GROUP, np.full(len(y_true), "", dtype=object))
  if unit == "split":
    groups = np.full(len(y_true), "all", dtype=object)
  elif not any(groups):
    raise ValueError("adapting to specimens needs the specimen of each cell, and "
                     "these records have none")
  logits = None
  for group in dict.fromkeys(groups):
    index = np.flatnonzero(groups == group)
    saved = adapt_statistics(model, images[index]) if group else None
    try:
      chunks = [images[index[i:i + 256]] for i in range(0, len(index), 256)]
      part = np.concatenate([view for _, view, _, _ in predict.iterate_logits(
          model, chunks, tta)], axis=1)
    finally:
      if saved is not None:
        restore_statistics(model, saved)
    if logits is None:
      logits = np.zeros((part.shape[0], len(y_true), part.shape[2]))
    logits[:, index] = part
  shown = images[:keep_images].astype("uint8") if keep_images else None
  return y_true, logits, meta, shown
