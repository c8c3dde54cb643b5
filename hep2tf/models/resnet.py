"""ResNet-18 and ResNet-34 (He et al. 2016), native Keras, trained from scratch.

Basic blocks: two 3x3 convs, each with batch norm, ReLU after the first and after the
sum with the shortcut; the shortcut is the identity, or a strided 1x1 conv with batch
norm where the block changes the map's size or width. Four stages of 64, 128, 256 and
512 filters (times `width / 64`), the first block of stages 2-4 at stride 2; [2, 2, 2,
2] blocks for `resnet18`, [3, 4, 6, 3] for `resnet34`. He normal init, L2 weight decay
on every kernel, global average pooling, dropout, softmax.

The stem ("stem_*" layers): "imagenet" is the paper's 7x7 stride-2 conv + 3x3
stride-2 max-pool (224 px reach the first stage at 56 px, a 78 px cell at 20 px and
the last stage at 3x3); "small" is one 3x3 stride-2 conv and no pool, so a 78 px cell
reaches the first stage at 39 px and the last at 5x5. "auto" (the default) takes the
paper's stem from 160 px up and the small one below, as `alexnet` picks its stride.
Forward, per image: resnet18 1.7 GFLOP at 78x78x1 (small stem; 8x the 5-conv CNN) and
3.6 at 224x224x3; resnet34 3.6 and 7.3. 11.2 and 21.3 million parameters.
"""

from __future__ import annotations

import functools
from typing import Sequence

import keras

from hep2tf.models import register
from hep2tf.models.batch_norm import BatchNorm
from hep2tf.models import layers as hep2tf_layers

STAGE_FACTORS = (1, 2, 4, 8)
STEMS = ("auto", "small", "imagenet")
# Inputs at least this many pixels on their short side get the paper's stem with "auto".
IMAGENET_STEM_FROM = 160


@register("resnet18")
def build(input_shape: tuple[int, int, int], num_classes: int, *,
          depths: Sequence[int] = (2, 2, 2, 2),
          width: int = 64,
          stem: str = "auto",
          bn_momentum: float = 0.99,
          dropout: float = 0.0,
          weight_decay: float = 1e-4,
          normalization: str = "per_image",
          mean: float | Sequence[float] | None = None,
          std: float | Sequence[float] | None = None,
          weights: str | None = None,
          name: str = "resnet18") -> keras.Model:
  """Builds a ResNet of basic blocks.

  Args:
    input_shape: (height, width, channels) of images in [0, 255].
    num_classes: size of the softmax output.
    depths: blocks per stage (four stages).
    width: filters of the stem and the first stage (64 in the paper).
    stem: "auto", "small" or "imagenet" (module docstring).
    bn_momentum: momentum of the BatchNorm moving statistics (Keras' 0.99 lags
      behind the weights for a few hundred steps; lower suits a short run).
    dropout: rate before the head.
    weight_decay: L2 coefficient on every conv and dense kernel.
    normalization, mean, std: the input normalisation (layers.normalization_layer).
    weights: None/"none" or a path; `build_model` loads a path after building.
    name: the model's name.

  Returns:
    keras.Model with layers stem_conv, stage1_block1_1_conv, ..., logits, probs.
  """
  hep2tf_layers.check_scratch_weights(weights, name)
  if stem not in STEMS:
    raise ValueError(f"stem must be one of {STEMS}, got {stem!r}")
  if len(depths) != len(STAGE_FACTORS) or min(depths) < 1:
    raise ValueError(f"depths must be {len(STAGE_FACTORS)} positive block counts, "
                     f"got {depths}")
  if stem == "auto":
    stem = "imagenet" if min(input_shape[:2]) >= IMAGENET_STEM_FROM else "small"
  regularizer = hep2tf_layers.l2_regularizer(weight_decay)
  images = keras.Input(shape=input_shape, name="image")
  x = images
  normalize = hep2tf_layers.normalization_layer(normalization, mean, std)
  if normalize is not None:
    x = normalize(x)
  conv_bn = functools.partial(_conv_bn, regularizer=regularizer,
                              bn_momentum=bn_momentum)
  x = conv_bn(x, width, 7 if stem == "imagenet" else 3, 2, name="stem")
  if stem == "imagenet":
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
  for stage, (factor, blocks) in enumerate(zip(STAGE_FACTORS, depths), start=1):
    for block in range(1, blocks + 1):
      strides = 2 if stage > 1 and block == 1 else 1
      x = _basic_block(x, width * factor, strides, conv_bn,
                       f"stage{stage}_block{block}")
  x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
  x = keras.layers.Dropout(dropout, name="dropout")(x)
  probs = hep2tf_layers.softmax_head(x, num_classes, weight_decay)
  return keras.Model(images, probs, name=name)


def _conv_bn(x, filters: int, size: int, strides: int, *, regularizer,
             bn_momentum: float, name: str, relu: bool = True):
  x = keras.layers.Conv2D(filters, size, strides=strides, padding="same",
                          use_bias=False, kernel_initializer="he_normal",
                          kernel_regularizer=regularizer, name=f"{name}_conv")(x)
  x = BatchNorm(momentum=bn_momentum, name=f"{name}_bn")(x)
  return keras.layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def _basic_block(x, filters: int, strides: int, conv_bn, name: str):
  shortcut = x
  if strides != 1 or x.shape[-1] != filters:
    shortcut = conv_bn(x, filters, 1, strides, name=f"{name}_shortcut", relu=False)
  y = conv_bn(x, filters, 3, strides, name=f"{name}_1")
  y = conv_bn(y, filters, 3, 1, name=f"{name}_2", relu=False)
  y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
  return keras.layers.Activation("relu", name=f"{name}_out")(y)


register("resnet34")(functools.partial(build, depths=(3, 4, 6, 3), name="resnet34"))
