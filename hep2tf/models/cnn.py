"""The from-scratch 5-conv CNN of the TFRecord C-NMC study.

Five conv layers (32 filters 5x5 first, then 64, 128, 256, 512 filters 3x3), each
followed by 2x2 max-pooling; flatten; dense 1024; dropout; dense 1024; dropout; softmax.
ReLU, Glorot uniform init, L2 weight decay 5e-4 on every kernel. Padding "same", so
78x78 cells go 78 -> 39 -> 19 -> 9 -> 4 -> 2 and 256x256 slides reach 8x8x512.

At 78x78x1 this is about 0.2 GFLOP per image forward (0.6 with the backward pass);
the dense layers hold 3.1 of its 4.7 million parameters.
"""

from __future__ import annotations

import functools
from typing import Sequence

import keras

from hep2tf.models import register
from hep2tf.models.batch_norm import BatchNorm
from hep2tf.models import layers as hep2tf_layers

FILTERS = (32, 64, 128, 256, 512)
KERNEL_SIZES = (5, 3, 3, 3, 3)
DENSE_UNITS = 1024
HEADS = ("flatten", "avg")


@register("cnn")
def build(input_shape: tuple[int, int, int], num_classes: int, *,
          filters: Sequence[int] = FILTERS,
          kernel_sizes: Sequence[int] = KERNEL_SIZES,
          dense_units: int = DENSE_UNITS,
          dropout: float = 0.5,
          weight_decay: float = 5e-4,
          batch_norm: bool = False,
          bn_momentum: float = 0.99,
          head: str = "flatten",
          normalization: str = "per_image",
          mean: float | Sequence[float] | None = None,
          std: float | Sequence[float] | None = None,
          weights: str | None = None) -> keras.Model:
  """Builds the CNN.

  Args:
    input_shape: (height, width, channels) of images in [0, 255].
    num_classes: size of the softmax output.
    filters, kernel_sizes: one per conv block (same length).
    dense_units: width of fc1 and fc2.
    dropout: rate after fc1 and after fc2.
    weight_decay: L2 coefficient on every conv and dense kernel (see l2_regularizer).
    batch_norm: BatchNormalization after each conv, before the ReLU.
    bn_momentum: its moving statistics' momentum (Keras' default 0.99 lags behind
      the weights for hundreds of steps; 0.9 suits a run of a few hundred).
    head: how the last feature map reaches fc1: "flatten" (the seed study's: every
      position its own weights) or "avg" (global average pooling: the mean of each
      filter over the cell, so fc1 does not depend on where a feature lies).
    normalization, mean, std: the input normalisation (layers.normalization_layer).
    weights: None/"none" or a path; `build_model` loads a path after building.

  Returns:
    keras.Model named "cnn" with layers conv1..convN, fc1, fc2, logits, probs.
  """
  hep2tf_layers.check_scratch_weights(weights, "cnn")
  if head not in HEADS:
    raise ValueError(f"head must be one of {HEADS}, got {head!r}")
  if len(filters) != len(kernel_sizes):
    raise ValueError(f"filters {filters} and kernel_sizes {kernel_sizes} differ "
                     f"in length")
  regularizer = hep2tf_layers.l2_regularizer(weight_decay)
  images = keras.Input(shape=input_shape, name="image")
  x = images
  normalize = hep2tf_layers.normalization_layer(normalization, mean, std)
  if normalize is not None:
    x = normalize(x)
  for i, (width, size) in enumerate(zip(filters, kernel_sizes), start=1):
    x = keras.layers.Conv2D(
        width, size, padding="same", use_bias=not batch_norm,
        kernel_initializer="glorot_uniform", kernel_regularizer=regularizer,
        name=f"conv{i}")(x)
    if batch_norm:
      x = BatchNorm(momentum=bn_momentum, name=f"bn{i}")(x)
    x = keras.layers.Activation("relu", name=f"relu{i}")(x)
    x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
  if head == "avg":
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
  else:
    x = keras.layers.Flatten(name="flatten")(x)
  for i in (1, 2):
    x = keras.layers.Dense(
        dense_units, activation="relu", kernel_initializer="glorot_uniform",
        kernel_regularizer=regularizer, name=f"fc{i}")(x)
    x = keras.layers.Dropout(dropout, name=f"dropout{i}")(x)
  probs = hep2tf_layers.softmax_head(x, num_classes, weight_decay)
  return keras.Model(images, probs, name="cnn")


register("cnn_bn")(functools.partial(build, batch_norm=True))
