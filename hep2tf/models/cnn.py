"""The from-scratch 5-conv CNN of the TFRecord C-NMC study.

Five conv layers (32 filters 5x5 first, then 64, 128, 256, 512 filters 3x3), each
followed by 2x2 max-pooling; flatten; dense 1024; dropout; dense 1024; dropout; softmax.
ReLU, Glorot uniform init, L2 weight decay 5e-4 on every kernel. Padding "same", so
78x78 cells go 78 -> 39 -> 19 -> 9 -> 4 -> 2 and 256x256 slides reach 8x8x512.

At 78x78x1 this is about 0.2 GFLOP per image forward (0.6 with the backward pass);
the dense layers hold 3.1 of its 4.7 million parameters.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import keras

from hep2tf.models import layers as hep2tf_layers
from hep2tf.models import scratch
from hep2tf.models.batch_norm import BatchNorm
from hep2tf.models.registry import read_hparams, register

FILTERS = (32, 64, 128, 256, 512)
KERNEL_SIZES = (5, 3, 3, 3, 3)
DENSE_UNITS = 1024
HEADS = ("flatten", "avg")


@dataclasses.dataclass(frozen=True)
class CnnOptions(scratch.ScratchOptions):
  """The CNN's hparams: ScratchOptions' (dropout after fc1 and after fc2) and

  filters, kernel_sizes: one per conv block (same length).
  dense_units: width of fc1 and fc2.
  batch_norm: BatchNormalization after each conv, before the ReLU.
  bn_momentum: its moving statistics' momentum (Keras' default 0.99 lags behind the
    weights for hundreds of steps; 0.9 suits a run of a few hundred).
  head: how the last feature map reaches fc1: "flatten" (the seed study's: every
    position its own weights) or "avg" (global average pooling: the mean of each
    filter over the cell, so fc1 does not depend on where a feature lies).
  """
  filters: Sequence[int] = FILTERS
  kernel_sizes: Sequence[int] = KERNEL_SIZES
  dense_units: int = DENSE_UNITS
  batch_norm: bool = False
  bn_momentum: float = 0.99
  head: str = "flatten"

  def __post_init__(self):
    if self.head not in HEADS:
      raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
    if len(self.filters) != len(self.kernel_sizes):
      raise ValueError(f"filters {self.filters} and kernel_sizes "
                       f"{self.kernel_sizes} differ in length")


@register("cnn")
def build(input_shape: tuple[int, int, int], num_classes: int,
          **hparams) -> keras.Model:
  """Builds the CNN from images in [0, 255] of `input_shape` (H, W, C) to
  `num_classes` probabilities; `hparams` are the fields of `CnnOptions`.

  Returns:
    keras.Model named "cnn" with layers conv1..convN, fc1, fc2, logits, probs.
  """
  options = read_hparams(CnnOptions, "cnn", hparams)
  images, x = scratch.scratch_input(input_shape, options, "cnn")
  for i, (width, size) in enumerate(zip(options.filters, options.kernel_sizes),
                                    start=1):
    x = keras.layers.Conv2D(
        width, size, padding="same", use_bias=not options.batch_norm,
        kernel_initializer="glorot_uniform", kernel_regularizer=options.regularizer,
        name=f"conv{i}")(x)
    if options.batch_norm:
      x = BatchNorm(momentum=options.bn_momentum, name=f"bn{i}")(x)
    x = keras.layers.Activation("relu", name=f"relu{i}")(x)
    x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
  if options.head == "avg":
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
  else:
    x = keras.layers.Flatten(name="flatten")(x)
  x = scratch.dense_layers(x, options.dense_units, options, dropout_first=False)
  probs = hep2tf_layers.softmax_head(x, num_classes, options.weight_decay)
  return keras.Model(images, probs, name="cnn")


register("cnn_bn")(functools.partial(build, batch_norm=True))
