"""What the from-scratch models (cnn, alexnet, resnet, coatnet) share.

`ScratchOptions` holds the hparams they all take (dropout, weight decay, the input
normalisation, weights); each model's own options dataclass adds its fields and
may change the defaults. A model's `build(input_shape, num_classes, **hparams)` reads
its hparams into that dataclass once (`registry.read_hparams`: an unknown name is a
TypeError naming the model and its hparams), then builds from three shared pieces:
`scratch_input` (the image input and its normalisation), `dense_layers` (fc1, fc2
with dropout) and `pooled_head` (global average pooling, dropout, softmax). Layer
names are those of earlier versions, so saved models and `load_pretrained` still
match by name.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import keras

from hep2tf.models import layers as hep2tf_layers


@dataclasses.dataclass(frozen=True)
class ScratchOptions:
  """The hparams of every from-scratch model.

  dropout: the rate of the model's dropout layers (the model says where).
  weight_decay: L2 coefficient on every conv and dense kernel
    (layers.l2_regularizer); 0 leaves the decay to the optimiser (AdamW).
  normalization, mean, std: the input normalisation (layers.normalization_layer).
  weights: None/"none" or a path; `build_model` loads a path after building.
  """
  dropout: float = 0.5
  weight_decay: float = 5e-4
  normalization: str = "per_image"
  mean: float | Sequence[float] | None = None
  std: float | Sequence[float] | None = None
  weights: str | None = None

  @property
  def regularizer(self) -> keras.regularizers.Regularizer | None:
    return hep2tf_layers.l2_regularizer(self.weight_decay)


def scratch_input(input_shape: tuple[int, int, int], options: ScratchOptions,
                  model: str) -> tuple[keras.KerasTensor, keras.KerasTensor]:
  """(the "image" Input, the normalised images) of a from-scratch model; ValueError
  for weights="imagenet", which no such model has."""
  hep2tf_layers.check_scratch_weights(options.weights, model)
  images = keras.Input(shape=input_shape, name="image")
  normalize = hep2tf_layers.normalization_layer(options.normalization, options.mean,
                                                options.std)
  return images, images if normalize is None else normalize(images)


def dense_layers(x, units: int, options: ScratchOptions, *, dropout_first: bool):
  """fc1 and fc2 (ReLU, Glorot uniform, the L2 decay), each with dropout1/dropout2
  after it, or before it with `dropout_first` (where AlexNet put it)."""
  for i in (1, 2):
    if dropout_first:
      x = keras.layers.Dropout(options.dropout, name=f"dropout{i}")(x)
    x = keras.layers.Dense(
        units, activation="relu", kernel_initializer="glorot_uniform",
        kernel_regularizer=options.regularizer, name=f"fc{i}")(x)
    if not dropout_first:
      x = keras.layers.Dropout(options.dropout, name=f"dropout{i}")(x)
  return x


def pooled_head(x, num_classes: int, options: ScratchOptions, *,
                layer_norm: bool = False):
  """Global average pooling ("avg_pool"), a LayerNormalization ("head_norm") when
  asked, dropout, then the softmax head (layers.softmax_head): the probabilities."""
  x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
  if layer_norm:
    x = keras.layers.LayerNormalization(name="head_norm")(x)
  x = keras.layers.Dropout(options.dropout, name="dropout")(x)
  return hep2tf_layers.softmax_head(x, num_classes, options.weight_decay)
