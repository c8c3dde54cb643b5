"""The keras-io "image classification from scratch" recipe, as a user would adapt it.

Our own small equivalent of the recipe's shape (not its code): images straight from
`image_dataset_from_directory`, augmentation by RandomFlip("horizontal") and
RandomRotation(0.1), rescaling to [0, 1], then an entry conv (stride 2) with
BatchNorm, three residual blocks of two separable convs and a strided max-pool
(widths 256, 512, 728) with a strided 1x1 shortcut, a 1024-wide separable conv,
global average pooling, dropout 0.25 and a softmax head. Adam at 3e-4, batch 128,
float32, as in the recipe; the softmax and categorical cross-entropy replace its
binary head because the cells have six classes.
"""

from __future__ import annotations

import keras

LEARNING_RATE = 3e-4
BATCH_SIZE = 128
BLOCK_WIDTHS = (256, 512, 728)


def build(input_shape: tuple[int, int, int], num_classes: int,
          block_widths=BLOCK_WIDTHS, entry_width: int = 128,
          exit_width: int = 1024) -> keras.Model:
  """The recipe-shaped network from uint8-range images (N, H, W, C) to probabilities."""
  inputs = keras.Input(shape=input_shape)
  x = keras.layers.RandomFlip("horizontal")(inputs)
  x = keras.layers.RandomRotation(0.1)(x)
  x = keras.layers.Rescaling(1.0 / 255)(x)
  x = keras.layers.Conv2D(entry_width, 3, strides=2, padding="same")(x)
  x = keras.layers.BatchNormalization()(x)
  x = keras.layers.Activation("relu")(x)
  shortcut = x
  for width in block_widths:
    for _ in range(2):
      x = keras.layers.Activation("relu")(x)
      x = keras.layers.SeparableConv2D(width, 3, padding="same")(x)
      x = keras.layers.BatchNormalization()(x)
    x = keras.layers.MaxPooling2D(3, strides=2, padding="same")(x)
    projected = keras.layers.Conv2D(width, 1, strides=2, padding="same")(shortcut)
    x = keras.layers.add([x, projected])
    shortcut = x
  x = keras.layers.SeparableConv2D(exit_width, 3, padding="same")(x)
  x = keras.layers.BatchNormalization()(x)
  x = keras.layers.Activation("relu")(x)
  x = keras.layers.GlobalAveragePooling2D()(x)
  x = keras.layers.Dropout(0.25)(x)
  outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
  return keras.Model(inputs, outputs, name="keras_io_recipe")
