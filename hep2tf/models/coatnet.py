"""A small CoAtNet-style hybrid (Dai et al. 2021): convolution first, then attention.

  stem    two 3x3 convs, the first at stride 2, each with batch norm and GELU
  S1, S2  MBConv blocks: pre-norm batch norm, 1x1 expansion (x4), 3x3 depthwise conv,
          squeeze-and-excitation (0.25 of the block's input width), 1x1 projection
  S3, S4  transformer blocks: pre-norm layer norm, multi-head self-attention over every
          position of the map with a learned relative position bias (one per head
          and offset (dy, dx): CoAtNet's relative attention), then an MLP (x4, GELU)
  head    global average pooling, layer norm, dropout, softmax

The first block of every stage halves the map: MBConv with a stride-2 depthwise
conv, a transformer block with a 2x2 max-pool in front of the attention; the shortcut
is max-pooled alike and, where the width changes, projected by a 1x1 conv. So the
stem and the four stages divide the side by 32: a 224 px input attends over 14x14
and 7x7 maps, a 78 px cell over 5x5 and 3x3. The relative bias table is sized from
the map at build time, so a model is built for one input size.

`coatnet_mini`: stem 32, stages 48 / 96 / 192 / 384 wide with 2 / 2 / 3 / 2 blocks,
attention heads of 32 channels: 4.9 million parameters, 0.25 GFLOP per image forward
at 78x78x1 and 1.9 at 224x224x3 (CoAtNet-0, the paper's smallest, is 64, 96 / 192 /
384 / 768 wide with 2 / 3 / 5 / 2 blocks: 25 million).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import keras
import numpy as np
from keras import ops

from hep2tf.models import scratch
from hep2tf.models.batch_norm import BatchNorm
from hep2tf.models.registry import read_hparams, register

EXPANSION = 4
SE_RATIO = 0.25


@keras.saving.register_keras_serializable(package="hep2tf")
class RelativeAttention(keras.layers.Layer):
  """Multi-head self-attention over the H x W positions of a map, with a learned bias
  per head for every relative offset (dy, dx) added to the attention logits.

  Input: (N, H*W, 3 * num_heads * head_dim), the queries, keys and values made by a
  Dense layer in front (so the projections stay ordinary layers that weight transfer
  matches by name). Output: (N, H*W, num_heads * head_dim), for a Dense projection.
  The bias table holds (2H - 1) * (2W - 1) x num_heads weights; softmax is in float32.
  """

  def __init__(self, num_heads: int, head_dim: int, grid: Sequence[int], **kwargs):
    super().__init__(**kwargs)
    self.num_heads = int(num_heads)
    self.head_dim = int(head_dim)
    self.grid = tuple(int(g) for g in grid)
    self._index = relative_position_index(*self.grid)

  def build(self, input_shape):
    height, width = self.grid
    self.relative_bias = self.add_weight(
        name="relative_bias", shape=((2 * height - 1) * (2 * width - 1),
                                     self.num_heads),
        initializer=keras.initializers.TruncatedNormal(stddev=0.02))

  def call(self, qkv):
    tokens = self.grid[0] * self.grid[1]
    heads, dim = self.num_heads, self.head_dim
    qkv = ops.transpose(ops.reshape(qkv, (-1, tokens, 3, heads, dim)), (2, 0, 3, 1, 4))
    query, key, value = qkv[0], qkv[1], qkv[2]
    logits = ops.einsum("bhqd,bhkd->bhqk", query, key) * (dim ** -0.5)
    bias = ops.take(ops.convert_to_tensor(self.relative_bias), self._index, axis=0)
    bias = ops.transpose(ops.reshape(bias, (tokens, tokens, heads)), (2, 0, 1))
    logits = ops.cast(logits, "float32") + ops.cast(bias, "float32")[None]
    attention = ops.cast(ops.softmax(logits, axis=-1), value.dtype)
    out = ops.einsum("bhqk,bhkd->bhqd", attention, value)
    return ops.reshape(ops.transpose(out, (0, 2, 1, 3)), (-1, tokens, heads * dim))

  def compute_output_shape(self, input_shape):
    return (input_shape[0], input_shape[1], self.num_heads * self.head_dim)

  def get_config(self):
    return {**super().get_config(), "num_heads": self.num_heads,
            "head_dim": self.head_dim, "grid": list(self.grid)}


def relative_position_index(height: int, width: int) -> np.ndarray:
  """(H*W * H*W,) int32: for each (query, key) pair of positions, row-major, the row
  of the bias table of their offset (dy + H - 1) * (2W - 1) + (dx + W - 1)."""
  ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
  dy = ys.ravel()[:, None] - ys.ravel()[None, :] + height - 1
  dx = xs.ravel()[:, None] - xs.ravel()[None, :] + width - 1
  return (dy * (2 * width - 1) + dx).ravel().astype("int32")


@dataclasses.dataclass(frozen=True)
class CoAtNetOptions(scratch.ScratchOptions):
  """The hybrid's hparams: ScratchOptions' (dropout before the head; weight decay 0,
  leaving the decay to AdamW as transformer recipes do) and

  stem_width: filters of the two stem convs.
  widths, depths: four stages, two of MBConv then two of transformer blocks.
  head_dim: channels per attention head (heads = width // head_dim).
  name: the model's name.
  """
  dropout: float = 0.0
  weight_decay: float = 0.0
  stem_width: int = 32
  widths: Sequence[int] = (48, 96, 192, 384)
  depths: Sequence[int] = (2, 2, 3, 2)
  head_dim: int = 32
  name: str = "coatnet_mini"

  def __post_init__(self):
    if len(self.widths) != 4 or len(self.depths) != 4 or min(self.depths) < 1:
      raise ValueError(f"widths and depths must each name 4 stages, got "
                       f"{self.widths}, {self.depths}")
    if any(w % self.head_dim for w in self.widths[2:]):
      raise ValueError(f"transformer widths {tuple(self.widths[2:])} must be "
                       f"multiples of head_dim={self.head_dim}")


@register("coatnet_mini")
def build(input_shape: tuple[int, int, int], num_classes: int,
          **hparams) -> keras.Model:
  """Builds the hybrid from images in [0, 255] of `input_shape` (H, W, C; fixed, the
  bias tables are sized from it) to `num_classes` probabilities; `hparams` are the
  fields of `CoAtNetOptions`.

  Returns:
    keras.Model with layers stem1_conv, s1_block1_*, ..., s4_block2_attention, logits,
    probs.
  """
  options = read_hparams(CoAtNetOptions, hparams.get("name", "coatnet_mini"),
                         hparams)
  regularizer = options.regularizer
  images, x = scratch.scratch_input(input_shape, options, options.name)
  for i, strides in ((1, 2), (2, 1)):
    x = keras.layers.Conv2D(options.stem_width, 3, strides=strides, padding="same",
                            use_bias=False, kernel_regularizer=regularizer,
                            name=f"stem{i}_conv")(x)
    x = BatchNorm(name=f"stem{i}_bn")(x)
    x = keras.layers.Activation("gelu", name=f"stem{i}_gelu")(x)
  for stage, (width, blocks) in enumerate(zip(options.widths, options.depths),
                                          start=1):
    block_fn = _mbconv_block if stage <= 2 else functools.partial(
        _transformer_block, head_dim=options.head_dim)
    for block in range(1, blocks + 1):
      x = block_fn(x, width, block == 1, regularizer, f"s{stage}_block{block}")
  probs = scratch.pooled_head(x, num_classes, options, layer_norm=True)
  return keras.Model(images, probs, name=options.name)


def _shortcut(x, width: int, downsample: bool, regularizer, name: str):
  if downsample:
    x = keras.layers.MaxPooling2D(2, padding="same", name=f"{name}_shortcut_pool")(x)
  if x.shape[-1] != width:
    x = keras.layers.Conv2D(width, 1, kernel_regularizer=regularizer,
                            name=f"{name}_shortcut_conv")(x)
  return x


def _mbconv_block(x, width: int, downsample: bool, regularizer, name: str):
  shortcut = _shortcut(x, width, downsample, regularizer, name)
  se_width = max(8, int(x.shape[-1] * SE_RATIO))
  y = BatchNorm(name=f"{name}_pre_bn")(x)
  y = keras.layers.Conv2D(width * EXPANSION, 1, use_bias=False,
                          kernel_regularizer=regularizer, name=f"{name}_expand")(y)
  y = BatchNorm(name=f"{name}_expand_bn")(y)
  y = keras.layers.Activation("gelu", name=f"{name}_expand_gelu")(y)
  y = keras.layers.DepthwiseConv2D(3, strides=2 if downsample else 1, padding="same",
                                   use_bias=False, depthwise_regularizer=regularizer,
                                   name=f"{name}_depthwise")(y)
  y = BatchNorm(name=f"{name}_depthwise_bn")(y)
  y = keras.layers.Activation("gelu", name=f"{name}_depthwise_gelu")(y)
  squeeze = keras.layers.GlobalAveragePooling2D(keepdims=True,
                                                name=f"{name}_se_pool")(y)
  squeeze = keras.layers.Conv2D(se_width, 1, activation="silu",
                                kernel_regularizer=regularizer,
                                name=f"{name}_se_reduce")(squeeze)
  squeeze = keras.layers.Conv2D(width * EXPANSION, 1, activation="sigmoid",
                                kernel_regularizer=regularizer,
                                name=f"{name}_se_expand")(squeeze)
  y = keras.layers.Multiply(name=f"{name}_se")([y, squeeze])
  y = keras.layers.Conv2D(width, 1, kernel_regularizer=regularizer,
                          name=f"{name}_project")(y)
  return keras.layers.Add(name=f"{name}_add")([shortcut, y])


def _transformer_block(x, width: int, downsample: bool, regularizer, name: str, *,
                       head_dim: int):
  shortcut = _shortcut(x, width, downsample, regularizer, name)
  y = keras.layers.LayerNormalization(name=f"{name}_attention_norm")(x)
  if downsample:
    y = keras.layers.MaxPooling2D(2, padding="same", name=f"{name}_pool")(y)
  height, grid_width = y.shape[1], y.shape[2]
  if height is None or grid_width is None:
    raise ValueError("coatnet needs a fixed input size (the relative position bias "
                     "is sized from it)")
  heads = width // head_dim
  y = keras.layers.Reshape((height * grid_width, y.shape[-1]),
                           name=f"{name}_tokens")(y)
  y = keras.layers.Dense(3 * heads * head_dim, kernel_regularizer=regularizer,
                         name=f"{name}_qkv")(y)
  y = RelativeAttention(heads, head_dim, (height, grid_width),
                        name=f"{name}_attention")(y)
  y = keras.layers.Dense(width, kernel_regularizer=regularizer,
                         name=f"{name}_attention_proj")(y)
  y = keras.layers.Reshape((height, grid_width, width), name=f"{name}_map")(y)
  x = keras.layers.Add(name=f"{name}_attention_add")([shortcut, y])
  y = keras.layers.LayerNormalization(name=f"{name}_mlp_norm")(x)
  y = keras.layers.Dense(width * EXPANSION, activation="gelu",
                         kernel_regularizer=regularizer, name=f"{name}_mlp1")(y)
  y = keras.layers.Dense(width, kernel_regularizer=regularizer,
                         name=f"{name}_mlp2")(y)
  return keras.layers.Add(name=f"{name}_mlp_add")([x, y])
