"""The augment section of a training run: what changes each training image inside the
compiled step (hep2tf.data.augment, augment_layers) and what mixes batches on the host
(hep2tf.data.mixing)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from hep2tf.config.core import flag


@dataclasses.dataclass
class AugmentConfig:
  """Augmentation of the training split only; the flags of the augment section."""

  SECTION: ClassVar[str] = "augment"

  # Geometry and photometry (inside the compiled training step).
  rotation: bool = flag(True, "Random rotation by an arbitrary angle.")
  rot90: bool = flag(True, "Random 90-degree turns.")
  flips: bool = flag(True, "Random flips.")
  brightness: float = flag(
      0.0, "Random brightness change, as a fraction of full scale.")
  contrast: float = flag(0.0, "Random contrast change factor.")
  erasing: float = flag(0.0, "Probability of random erasing.")
  # Specimen-level augmentation (what differs between slides and microscopes).
  defocus: float = flag(
      0.0, "Specimen augmentation: random Gaussian blur per image, sigma up to this "
      "many pixels (0: off).")
  gain: float = flag(
      0.0, "Specimen augmentation: exposure factor per image, log-uniform in "
      "[1/(1+gain), 1+gain] (0: off).")
  gamma: float = flag(
      0.0, "Specimen augmentation: gamma per image, log-uniform in [1/(1+gamma), "
      "1+gamma] (0: off).")
  background_offset: float = flag(
      0.0, "Specimen augmentation: background added per image, up to this fraction of"
      " the image's level (its 99th percentile; 0: off).")
  shot_noise: float = flag(
      0.0, "Specimen augmentation: signal-dependent (shot) noise of variance k*L*x, L "
      "the image's level, k up to this (a pixel at the level gets a relative noise of"
      " sqrt(k); 0: off).")
  read_noise: float = flag(
      0.0, "Specimen augmentation: Gaussian read noise, std up to this fraction of the"
      " image's level (0: off).")
  grain: float = flag(
      0.0, "Specimen augmentation: spatially correlated noise (grains 0.5-1.5 px), "
      "std up to this fraction of the image's level (0: off).")
  zoom: float = flag(
      0.0, "Random zoom in or out by up to this fraction (texture scale: "
      "magnification and cell size; 0: off).")
  # Batches mixed on the host (they change the labels).
  # The ImageNet-style recipes' augmentation (hep2tf/data/augment_recipes.py).
  resized_crop: float = flag(
      0.0, "Random resized crop: the smallest fraction of the image area a crop keeps "
      "(aspect 3/4..4/3), resized back to the input size; 0.08 in ImageNet recipes "
      "(0: off).")
  color_jitter: float = flag(
      0.0, "Colour jitter as torchvision's: brightness, contrast and saturation (RGB "
      "only) each by a factor in [1-x, 1+x] per image; 0.4 in timm recipes (0: off).")
  randaugment: int = flag(
      0, "RandAugment (Keras' layer, at each image's own level): operations applied,"
      " drawn per batch; 2 in the recipes (0: off).")
  randaugment_magnitude: float = flag(
      0.3, "RandAugment strength in (0, 1] (Keras' factor; its default 0.5 turns a "
      "cell up to 180 degrees and shifts it up to half its frame).")
  mixup: float = flag(0.0, "Mixup alpha (0: off).")
  cutmix: float = flag(0.0, "CutMix alpha (0: off).")
