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

import types

import keras

from hep2tf.data.augment_layers import (RandomDihedral, RandomErasing,
                                        RandomQuarterTurn)
from hep2tf.data.augment_layers import dihedral  # noqa: F401  (TTA calls augment's)
from hep2tf.data.augment_recipes import (LevelRandAugment, RandomColorJitter,
                                         RandomResizedCrop)
from hep2tf.data.specimen_layers import (RandomBackgroundOffset, RandomDefocus,
                                         RandomGainGamma, RandomGrain,
                                         RandomSensorNoise)

# The augment section's fields that the stack reads, at the defaults AugmentConfig
# (hep2tf.config.augment) gives them; tests/data/test_augment.py checks that the two
# agree, since this layer cannot import the config package.
STACK_DEFAULTS = {
    "resized_crop": 0.0, "rotation": True, "zoom": 0.0, "rot90": True,
    "flips": True, "defocus": 0.0, "background_offset": 0.0, "gain": 0.0,
    "gamma": 0.0, "shot_noise": 0.0, "read_noise": 0.0, "grain": 0.0,
    "brightness": 0.0, "contrast": 0.0, "color_jitter": 0.0, "randaugment": 0,
    "randaugment_magnitude": 0.3, "erasing": 0.0,
}


def build_augmenter(config: object | None = None, /, *, seed: int | None = None,
                    rotation_fill: str = "constant", **fields) -> keras.Sequential:
  """The training-time augmentation stack, a Sequential named "augment".

  Order: random resized crop, arbitrary-angle rotation (full circle, background
  filled with 0 because IIF background is dark), zoom, the dihedral group (quarter
  turns and flips), then the specimen-level layers in the order of image formation
  (defocus, background offset, gain and gamma, sensor noise, grain), brightness,
  contrast, colour jitter, RandAugment, random erasing (timm's order for the recipe
  layers). Each part is left out when switched off; with everything off the
  Sequential is the identity.

  Args:
    config: the augment section: an `AugmentConfig` (hep2tf.config.augment) or any
      object holding its fields (a TrainConfig); None takes `STACK_DEFAULTS`, the
      section's defaults. Its help says what each field does: rotation (keras
      RandomRotation over the full circle), rot90 and flips (with both, the whole
      dihedral group), zoom, brightness (a fraction of the 0..255 range, an absolute
      shift), contrast, erasing, the specimen-level defocus, gain, gamma,
      background_offset, shot_noise, read_noise and grain (fractions of each
      image's level), resized_crop, color_jitter, randaugment and
      randaugment_magnitude; 0 (or False) switches a part off.
    seed: base seed; each layer gets its own derived seed.
    rotation_fill: RandomRotation's fill_mode ("constant", "reflect", "wrap",
      "nearest"); "constant" fills with 0.
    **fields: fields of the section by name, over `config`'s (as in
      `build_augmenter(brightness=0.2, seed=0)`); an unknown name is a TypeError.

  Always call it with an explicit `training=` (Keras' fit and predict do): Keras' own
  random layers default to training=True when called bare, this module's to False.
  The layers compute in float32 even under a mixed-precision policy, so
  interpolation is not rounded to bfloat16.
  """
  unknown = sorted(set(fields) - set(STACK_DEFAULTS))
  if unknown:
    raise TypeError(f"build_augmenter has no field {', '.join(unknown)}; its fields: "
                    f"{', '.join(STACK_DEFAULTS)}")
  settings = types.SimpleNamespace(**{
      name: fields.get(name, default if config is None else getattr(config, name))
      for name, default in STACK_DEFAULTS.items()})

  def layer_seed(offset: int) -> int | None:
    return None if seed is None else seed + offset

  layers = (_geometry_layers(settings, rotation_fill, layer_seed)
            + _specimen_layers(settings, layer_seed)
            + _photometric_layers(settings, layer_seed))
  if not layers:
    # Keras cannot build an empty Sequential.
    layers.append(keras.layers.Identity(name="identity"))
  return keras.Sequential(layers, name="augment")


def _geometry_layers(s, rotation_fill: str, layer_seed) -> list:
  """Resized crop, rotation, zoom, then quarter turns and flips."""
  layers = []
  if s.resized_crop > 0:
    layers.append(RandomResizedCrop((s.resized_crop, 1.0), seed=layer_seed(12),
                                    dtype="float32", name="resized_crop"))
  if s.rotation:
    layers.append(keras.layers.RandomRotation(
        factor=1.0, fill_mode=rotation_fill, fill_value=0.0,
        seed=layer_seed(0), dtype="float32", name="rotation"))
  if s.zoom > 0:
    layers.append(keras.layers.RandomZoom(
        height_factor=(-s.zoom, s.zoom), fill_mode="constant", fill_value=0.0,
        seed=layer_seed(9), dtype="float32", name="zoom"))
  if s.rot90 and s.flips:
    layers.append(RandomDihedral(seed=layer_seed(1), dtype="float32",
                                 name="dihedral"))
  elif s.rot90:
    layers.append(RandomQuarterTurn(seed=layer_seed(1), dtype="float32",
                                    name="rot90"))
  elif s.flips:
    layers.append(keras.layers.RandomFlip("horizontal_and_vertical",
                                          seed=layer_seed(1), dtype="float32",
                                          name="flips"))
  return layers


def _specimen_layers(s, layer_seed) -> list:
  """What differs between slides and microscopes, in the order of image formation."""
  layers = []
  if s.defocus > 0:
    layers.append(RandomDefocus(s.defocus, seed=layer_seed(5), dtype="float32",
                                name="defocus"))
  if s.background_offset > 0:
    layers.append(RandomBackgroundOffset(s.background_offset, seed=layer_seed(6),
                                         dtype="float32", name="background_offset"))
  if s.gain > 0 or s.gamma > 0:
    layers.append(RandomGainGamma(s.gain, s.gamma, seed=layer_seed(7),
                                  dtype="float32", name="gain_gamma"))
  if s.shot_noise > 0 or s.read_noise > 0:
    layers.append(RandomSensorNoise(s.shot_noise, s.read_noise, seed=layer_seed(8),
                                    dtype="float32", name="sensor_noise"))
  if s.grain > 0:
    layers.append(RandomGrain(s.grain, seed=layer_seed(10), dtype="float32",
                              name="grain"))
  return layers


def _photometric_layers(s, layer_seed) -> list:
  """Brightness, contrast, colour jitter, RandAugment, then random erasing."""
  layers = []
  if s.brightness > 0:
    layers.append(keras.layers.RandomBrightness(
        s.brightness, value_range=(0, 255), seed=layer_seed(2), dtype="float32",
        name="brightness"))
  if s.contrast > 0:
    layers.append(keras.layers.RandomContrast(
        s.contrast, value_range=(0, 255), seed=layer_seed(3), dtype="float32",
        name="contrast"))
  if s.color_jitter > 0:
    layers.append(RandomColorJitter(s.color_jitter, s.color_jitter, s.color_jitter,
                                    seed=layer_seed(13), dtype="float32",
                                    name="color_jitter"))
  if s.randaugment > 0:
    layers.append(LevelRandAugment(s.randaugment, s.randaugment_magnitude,
                                   seed=layer_seed(14), dtype="float32",
                                   name="randaugment"))
  if s.erasing > 0:
    layers.append(RandomErasing(s.erasing, seed=layer_seed(4), dtype="float32",
                                name="erasing"))
  return layers
