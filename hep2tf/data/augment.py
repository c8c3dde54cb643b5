"""In-model augmentation: the stack the trainer puts in front of the model.

Images are float32 in [0, 255], shape (N, H, W, C) (`dihedral` also takes one
(H, W, C) image). `build_augmenter` stacks Keras' own rotation and colour layers with
hep2tf's (hep2tf.data.augment_layers, hep2tf.data.specimen_layers) into the Sequential
named "augment": it runs inside the compiled training step, on the accelerator when
there is one, and is the identity at inference. `dihedral` (the 8 rotations and
flips of `hep2tf.data.dihedral`, applied in TensorFlow by `augment_layers.dihedral`)
is used for test-time augmentation and matches the converter's offline copies.
Mixup and CutMix change the labels, so they run on the host in the reader
(hep2tf.data.mixing). RandAugment, random resized crop and colour
jitter, the ImageNet-style recipes' augmentations, are in hep2tf.data.augment_recipes.
"""

from __future__ import annotations

import keras

from hep2tf.data.augment_layers import (RandomDihedral, RandomErasing,
                                        RandomQuarterTurn)
from hep2tf.data.augment_layers import dihedral  # noqa: F401  (TTA calls augment's)
from hep2tf.data.augment_recipes import (LevelRandAugment, RandomColorJitter,
                                         RandomResizedCrop)
from hep2tf.data.specimen_layers import (RandomBackgroundOffset, RandomDefocus,
                                         RandomGainGamma, RandomGrain,
                                         RandomSensorNoise)

def build_augmenter(*, rotation: bool = True, rot90: bool = True, flips: bool = True,
                    rotation_fill: str = "constant", zoom: float = 0.0,
                    brightness: float = 0.0,
                    contrast: float = 0.0, erasing: float = 0.0,
                    defocus: float = 0.0, gain: float = 0.0, gamma: float = 0.0,
                    background_offset: float = 0.0, shot_noise: float = 0.0,
                    read_noise: float = 0.0, grain: float = 0.0,
                    resized_crop: float = 0.0, color_jitter: float = 0.0,
                    randaugment: int = 0, randaugment_magnitude: float = 0.3,
                    seed: int | None = None) -> keras.Sequential:
  """The training-time augmentation stack, a Sequential named "augment".

  Order: random resized crop, arbitrary-angle rotation (full circle, background
  filled with 0 because IIF background is dark), zoom, the dihedral group (quarter
  turns and flips), then the specimen-level layers in the order of image formation
  (defocus, background offset, gain and gamma, sensor noise, grain), brightness,
  contrast, colour jitter, RandAugment, random erasing (timm's order for the recipe
  layers). Each part is left out when switched off; with everything off the
  Sequential is the identity.

  Args:
    rotation: keras RandomRotation over the full circle.
    rot90: random quarter turns; with `flips` too, the whole dihedral group.
    flips: random flips.
    rotation_fill: RandomRotation's fill_mode ("constant", "reflect", "wrap",
      "nearest"); "constant" fills with 0.
    zoom: RandomZoom in or out by up to this fraction, the same factor for height
      and width (texture scale: magnification, cell size); 0 = off.
    brightness: RandomBrightness factor (fraction of the 0..255 range, an absolute
      shift, unlike the specimen-level layers); 0 = off.
    contrast: RandomContrast factor; 0 = off.
    erasing: RandomErasing probability; 0 = off.
    defocus: RandomDefocus max_sigma, pixels; 0 = off.
    gain, gamma: RandomGainGamma ranges (1 + x as the largest factor); 0 = off.
    background_offset: RandomBackgroundOffset max_offset, a fraction of each
      image's level; 0 = off.
    shot_noise, read_noise: RandomSensorNoise shot and read, fractions of each
      image's level; 0 = off.
    grain: RandomGrain amount (correlated noise, a fraction of the level); 0 = off.
    resized_crop: RandomResizedCrop's smallest area fraction (scale (x, 1)); 0 = off.
    color_jitter: RandomColorJitter's brightness, contrast and saturation; 0 = off.
    randaugment, randaugment_magnitude: LevelRandAugment's num_ops (0 = off) and
      magnitude.
    seed: base seed; each layer gets its own derived seed.

  Always call it with an explicit `training=` (Keras' fit and predict do): Keras' own
  random layers default to training=True when called bare, this module's to False.
  The layers compute in float32 even under a mixed-precision policy, so
  interpolation is not rounded to bfloat16.
  """
  def layer_seed(offset: int) -> int | None:
    return None if seed is None else seed + offset

  layers = []
  if resized_crop > 0:
    layers.append(RandomResizedCrop((resized_crop, 1.0), seed=layer_seed(12),
                                    dtype="float32", name="resized_crop"))
  if rotation:
    layers.append(keras.layers.RandomRotation(
        factor=1.0, fill_mode=rotation_fill, fill_value=0.0,
        seed=layer_seed(0), dtype="float32", name="rotation"))
  if zoom > 0:
    layers.append(keras.layers.RandomZoom(
        height_factor=(-zoom, zoom), fill_mode="constant", fill_value=0.0,
        seed=layer_seed(9), dtype="float32", name="zoom"))
  if rot90 and flips:
    layers.append(RandomDihedral(seed=layer_seed(1), dtype="float32",
                                 name="dihedral"))
  elif rot90:
    layers.append(RandomQuarterTurn(seed=layer_seed(1), dtype="float32",
                                    name="rot90"))
  elif flips:
    layers.append(keras.layers.RandomFlip("horizontal_and_vertical",
                                          seed=layer_seed(1), dtype="float32",
                                          name="flips"))
  if defocus > 0:
    layers.append(RandomDefocus(defocus, seed=layer_seed(5), dtype="float32",
                                name="defocus"))
  if background_offset > 0:
    layers.append(RandomBackgroundOffset(background_offset, seed=layer_seed(6),
                                         dtype="float32", name="background_offset"))
  if gain > 0 or gamma > 0:
    layers.append(RandomGainGamma(gain, gamma, seed=layer_seed(7), dtype="float32",
                                  name="gain_gamma"))
  if shot_noise > 0 or read_noise > 0:
    layers.append(RandomSensorNoise(shot_noise, read_noise, seed=layer_seed(8),
                                    dtype="float32", name="sensor_noise"))
  if grain > 0:
    layers.append(RandomGrain(grain, seed=layer_seed(10), dtype="float32",
                              name="grain"))
  if brightness > 0:
    layers.append(keras.layers.RandomBrightness(
        brightness, value_range=(0, 255), seed=layer_seed(2), dtype="float32",
        name="brightness"))
  if contrast > 0:
    layers.append(keras.layers.RandomContrast(
        contrast, value_range=(0, 255), seed=layer_seed(3), dtype="float32",
        name="contrast"))
  if color_jitter > 0:
    layers.append(RandomColorJitter(color_jitter, color_jitter, color_jitter,
                                    seed=layer_seed(13), dtype="float32",
                                    name="color_jitter"))
  if randaugment > 0:
    layers.append(LevelRandAugment(randaugment, randaugment_magnitude,
                                   seed=layer_seed(14), dtype="float32",
                                   name="randaugment"))
  if erasing > 0:
    layers.append(RandomErasing(erasing, seed=layer_seed(4), dtype="float32",
                                name="erasing"))
  if not layers:
    # Keras cannot build an empty Sequential.
    layers.append(keras.layers.Identity(name="identity"))
  return keras.Sequential(layers, name="augment")
