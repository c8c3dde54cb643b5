"""An AlexNet-style net, trained from scratch, for 78 to 224 px cells.

Five convs with the classic widths 96/256/384/384/256 (times `width`), 3x3/2 max-pools
after conv1, conv2 and conv5, then two dense layers with dropout and a softmax head.
Local response normalisation is left out (it did not outlast the paper); `batch_norm`
is the modern stand-in. The 11x11 stem uses stride 4 on inputs of 160 px and up, as in
the original at 224 px, and stride 2 below, so that 78 px cells keep a 5x5 map before
the dense layers instead of 1x1.

`alexnet_small` (half the conv widths, dense 1024; 5.3 million parameters at 78 px)
suits the 78 px ICPR 2014 cells and a CPU; `alexnet` (47 million at 78 px, 72 million at
224 px, most of them in fc1) is the shape of the fine-tuned ICPR 2014 reference run,
here trained from scratch.
"""

from __future__ import annotations

import functools
from typing import Sequence

import keras

from hep2tf.models import register
from hep2tf.models.batch_norm import BatchNorm
from hep2tf.models import layers as hep2tf_layers

FILTERS = (96, 256, 384, 384, 256)
KERNEL_SIZES = (11, 5, 3, 3, 3)
POOL_AFTER = (1, 2, 5)


@register("alexnet")
def build(input_shape: tuple[int, int, int], num_classes: int, *,
          width: float = 1.0,
          dense_units: int = 4096,
          stem_stride: int | None = None,
          dropout: float = 0.5,
          weight_decay: float = 5e-4,
          batch_norm: bool = False,
          normalization: str = "per_image",
          mean: float | Sequence[float] | None = None,
          std: float | Sequence[float] | None = None,
          weights: str | None = None) -> keras.Model:
  """Builds the AlexNet-style net.

  Args:
    input_shape: (height, width, channels) of images in [0, 255].
    num_classes: size of the softmax output.
    width: multiplier on the conv widths.
    dense_units: width of fc1 and fc2.
    stem_stride: stride of the 11x11 conv1; None picks 4 for inputs of 160 px and
      more, else 2.
    dropout: rate before fc1 and before fc2 (where the original put it).
    weight_decay: L2 coefficient on every conv and dense kernel.
    batch_norm: BatchNormalization after each conv, before the ReLU.
    normalization, mean, std: the input normalisation (layers.normalization_layer).
    weights: None/"none" or a path; `build_model` loads a path after building.

  Returns:
    keras.Model named "alexnet" with layers conv1..conv5, fc1, fc2, logits, probs.
  """
  hep2tf_layers.check_scratch_weights(weights, "alexnet")
  if stem_stride is None:
    stem_stride = 4 if min(input_shape[:2]) >= 160 else 2
  regularizer = hep2tf_layers.l2_regularizer(weight_decay)
  images = keras.Input(shape=input_shape, name="image")
  x = images
  normalize = hep2tf_layers.normalization_layer(normalization, mean, std)
  if normalize is not None:
    x = normalize(x)
  for i, (filters, size) in enumerate(zip(FILTERS, KERNEL_SIZES), start=1):
    x = keras.layers.Conv2D(
        max(8, int(round(filters * width))), size,
        strides=stem_stride if i == 1 else 1, padding="same",
        use_bias=not batch_norm, kernel_initializer="glorot_uniform",
        kernel_regularizer=regularizer, name=f"conv{i}")(x)
    if batch_norm:
      x = BatchNorm(name=f"bn{i}")(x)
    x = keras.layers.Activation("relu", name=f"relu{i}")(x)
    if i in POOL_AFTER:
      x = keras.layers.MaxPooling2D(3, strides=2, padding="same",
                                    name=f"pool{i}")(x)
  x = keras.layers.Flatten(name="flatten")(x)
  for i in (1, 2):
    x = keras.layers.Dropout(dropout, name=f"dropout{i}")(x)
    x = keras.layers.Dense(
        dense_units, activation="relu", kernel_initializer="glorot_uniform",
        kernel_regularizer=regularizer, name=f"fc{i}")(x)
  probs = hep2tf_layers.softmax_head(x, num_classes, weight_decay)
  return keras.Model(images, probs, name="alexnet")


register("alexnet_small")(functools.partial(build, width=0.5, dense_units=1024))
