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

import dataclasses
import functools

import keras

from hep2tf.models import layers as hep2tf_layers
from hep2tf.models import scratch
from hep2tf.models.batch_norm import BatchNorm
from hep2tf.models.registry import read_hparams, register

FILTERS = (96, 256, 384, 384, 256)
KERNEL_SIZES = (11, 5, 3, 3, 3)
POOL_AFTER = (1, 2, 5)


@dataclasses.dataclass(frozen=True)
class AlexNetOptions(scratch.ScratchOptions):
  """AlexNet's hparams: ScratchOptions' (dropout before fc1 and before fc2, where the
  original put it) and

  width: multiplier on the conv widths.
  dense_units: width of fc1 and fc2.
  stem_stride: stride of the 11x11 conv1; None picks 4 for inputs of 160 px and
    more, else 2.
  batch_norm: BatchNormalization after each conv, before the ReLU.
  """
  width: float = 1.0
  dense_units: int = 4096
  stem_stride: int | None = None
  batch_norm: bool = False


@register("alexnet")
def build(input_shape: tuple[int, int, int], num_classes: int,
          **hparams) -> keras.Model:
  """Builds the AlexNet-style net from images in [0, 255] of `input_shape` (H, W, C)
  to `num_classes` probabilities; `hparams` are the fields of `AlexNetOptions`.

  Returns:
    keras.Model named "alexnet" with layers conv1..conv5, fc1, fc2, logits, probs.
  """
  options = read_hparams(AlexNetOptions, "alexnet", hparams)
  stem_stride = options.stem_stride
  if stem_stride is None:
    stem_stride = 4 if min(input_shape[:2]) >= 160 else 2
  images, x = scratch.scratch_input(input_shape, options, "alexnet")
  for i, (filters, size) in enumerate(zip(FILTERS, KERNEL_SIZES), start=1):
    x = keras.layers.Conv2D(
        max(8, int(round(filters * options.width))), size,
        strides=stem_stride if i == 1 else 1, padding="same",
        use_bias=not options.batch_norm, kernel_initializer="glorot_uniform",
        kernel_regularizer=options.regularizer, name=f"conv{i}")(x)
    if options.batch_norm:
      x = BatchNorm(name=f"bn{i}")(x)
    x = keras.layers.Activation("relu", name=f"relu{i}")(x)
    if i in POOL_AFTER:
      x = keras.layers.MaxPooling2D(3, strides=2, padding="same",
                                    name=f"pool{i}")(x)
  x = keras.layers.Flatten(name="flatten")(x)
  x = scratch.dense_layers(x, options.dense_units, options, dropout_first=True)
  probs = hep2tf_layers.softmax_head(x, num_classes, options.weight_decay)
  return keras.Model(images, probs, name="alexnet")


register("alexnet_small")(functools.partial(build, width=0.5, dense_units=1024))
