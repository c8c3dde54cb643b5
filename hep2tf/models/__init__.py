"""The model zoo: models registered by name.

  model = build_model("cnn", (78, 78, 1), num_classes=6, dropout=0.5)
  model = build_model("resnet50", (78, 78, 1), 6, weights="imagenet", image_size=224)
  model = build_model("cnn", (78, 78, 1), 2, weights="runs/icpr2014_cnn")

Every model takes float32 images in [0, 255], shape (N, H, W, C) with C = 1 or 3, and
returns float32 class probabilities (N, num_classes); its first layers normalise.
Each is a function `build(input_shape, num_classes, **hparams) -> keras.Model`
registered with `@register(name)`; variants are `functools.partial` one-liners.

The `weights` hparam, common to all models:
  None / "none"  random initialisation;
  "imagenet"     Keras Applications backbones only; needs the network or the file in
                 the Keras cache (a clear RuntimeError says which file otherwise);
  a path         a `.weights.h5`, a `.keras` file or an earlier hep2tf run directory,
                 copied layer by layer where names and shapes match (`load_pretrained`).
"""

from __future__ import annotations

import keras

# The model modules register themselves on import (models.registry.register).
from hep2tf.models import alexnet, backbones, cnn, coatnet, resnet  # noqa: F401
from hep2tf.models.backbones import (  # noqa: F401
    load_pretrained, resolve_weights, set_backbone_trainable)
from hep2tf.models.layers import (  # noqa: F401
    ContrastStretch, PerImageStandardization, Rescale)
from hep2tf.models.registry import (  # noqa: F401
    REGISTRY, Builder, is_weights_path, register)


def list_models() -> list[str]:
  """The registered model names, sorted."""
  return sorted(REGISTRY)


def build_model(name: str, input_shape: tuple[int, int, int], num_classes: int,
                **hparams) -> keras.Model:
  """Builds the registered model `name`.

  Args:
    name: one of `list_models()`.
    input_shape: (height, width, channels), channels 1 or 3.
    num_classes: size of the softmax output.
    **hparams: the model's hyper-parameters; `weights` as in the module docstring.

  Returns:
    A functional `keras.Model` from float32 images in [0, 255] to float32
    probabilities. Raises ValueError for an unknown name.
  """
  if name not in REGISTRY:
    raise ValueError(f"unknown model {name!r}; known models: "
                     f"{', '.join(list_models())}")
  input_shape = tuple(input_shape)
  if len(input_shape) != 3 or input_shape[-1] not in (1, 3):
    raise ValueError(f"input_shape must be (height, width, 1 or 3), got {input_shape}")
  if num_classes < 2:
    raise ValueError(f"num_classes must be at least 2, got {num_classes}")
  model = REGISTRY[name](input_shape, num_classes, **hparams)
  weights = hparams.get("weights")
  if is_weights_path(weights):
    load_pretrained(model, weights)
  return model


def load_model(path: str) -> keras.Model:
  """Loads a hep2tf .keras model in Keras safe mode (no code from the file runs); the
  custom layers it may hold are registered by importing this package."""
  return keras.saving.load_model(path, safe_mode=True, compile=False)
