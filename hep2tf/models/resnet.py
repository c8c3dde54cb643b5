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

import dataclasses
import functools
from typing import Sequence

import keras

from hep2tf.models import scratch
from hep2tf.models.batch_norm import BatchNorm
from hep2tf.models.registry import read_hparams, register

STAGE_FACTORS = (1, 2, 4, 8)
STEMS = ("auto", "small", "imagenet")
# Inputs at least this many pixels on their short side get the paper's stem with "auto".
IMAGENET_STEM_FROM = 160


@dataclasses.dataclass(frozen=True)
class ResNetOptions(scratch.ScratchOptions):
  """A ResNet's hparams: ScratchOptions' (dropout before the head; weight decay
  1e-4) and

  depths: blocks per stage (four stages).
  width: filters of the stem and the first stage (64 in the paper).
  stem: "auto", "small" or "imagenet" (module docstring).
  bn_momentum: momentum of the BatchNorm moving statistics (Keras' 0.99 lags behind
    the weights for a few hundred steps; lower suits a short run).
  name: the model's name.
  """
  dropout: float = 0.0
  weight_decay: float = 1e-4
  depths: Sequence[int] = (2, 2, 2, 2)
  width: int = 64
  stem: str = "auto"
  bn_momentum: float = 0.99
  name: str = "resnet18"

  def __post_init__(self):
    if self.stem not in STEMS:
      raise ValueError(f"stem must be one of {STEMS}, got {self.stem!r}")
    if len(self.depths) != len(STAGE_FACTORS) or min(self.depths) < 1:
      raise ValueError(f"depths must be {len(STAGE_FACTORS)} positive block counts, "
                       f"got {self.depths}")


@register("resnet18")
def build(input_shape: tuple[int, int, int], num_classes: int,
          **hparams) -> keras.Model:
  """Builds a ResNet of basic blocks from images in [0, 255] of `input_shape`
  (H, W, C) to `num_classes` probabilities; `hparams` are the fields of
  `ResNetOptions`.

  Returns:
    keras.Model with layers stem_conv, stage1_block1_1_conv, ..., logits, probs.
  """
  options = read_hparams(ResNetOptions, hparams.get("name", "resnet18"),
                         hparams)
  stem = options.stem
  if stem == "auto":
    stem = "imagenet" if min(input_shape[:2]) >= IMAGENET_STEM_FROM else "small"
  images, x = scratch.scratch_input(input_shape, options, options.name)
  conv_bn = functools.partial(_conv_bn, options)
  x = conv_bn(x, options.width, 7 if stem == "imagenet" else 3, 2, name="stem")
  if stem == "imagenet":
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
  for stage, (factor, blocks) in enumerate(zip(STAGE_FACTORS, options.depths),
                                           start=1):
    for block in range(1, blocks + 1):
      strides = 2 if stage > 1 and block == 1 else 1
      x = _basic_block(x, options.width * factor, strides, conv_bn,
                       f"stage{stage}_block{block}")
  probs = scratch.pooled_head(x, num_classes, options)
  return keras.Model(images, probs, name=options.name)


def _conv_bn(options: ResNetOptions, x, filters: int, size: int, strides: int, *,
             name: str, relu: bool = True):
  """Conv (He normal, the L2 decay), BatchNorm at the options' momentum, ReLU."""
  x = keras.layers.Conv2D(filters, size, strides=strides, padding="same",
                          use_bias=False, kernel_initializer="he_normal",
                          kernel_regularizer=options.regularizer,
                          name=f"{name}_conv")(x)
  x = BatchNorm(momentum=options.bn_momentum, name=f"{name}_bn")(x)
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
