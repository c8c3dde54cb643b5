"""The registry of model builders by name (`register`), below the model modules.

Each model module registers its builders with `@register(name)` when it is imported;
`hep2tf.models` imports them all and looks builders up here (`REGISTRY`), so no
model module imports the package that imports it.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, TypeVar

import keras

Builder = Callable[..., keras.Model]
Options = TypeVar("Options")

REGISTRY: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
  """Decorator: registers `build(input_shape, num_classes, **hparams)` as `name`."""

  def decorate(builder: Builder) -> Builder:
    if name in REGISTRY:
      raise ValueError(f"model {name!r} is registered twice")
    REGISTRY[name] = builder
    return builder

  return decorate


def is_weights_path(weights: object) -> bool:
  """Whether a `weights` hparam names a file or run directory (not none/imagenet)."""
  return weights is not None and str(weights).lower() not in ("none", "", "imagenet")


def read_hparams(options_class: type[Options], model: str, hparams: dict) -> Options:
  """A model's hparams as its options dataclass, `options_class(**hparams)`;
  TypeError naming the model and the hparams it takes for an unknown one."""
  known = {f.name for f in dataclasses.fields(options_class)}
  unknown = sorted(set(hparams) - known)
  if unknown:
    raise TypeError(f"{model} has no hparam {', '.join(map(repr, unknown))}; its "
                    f"hparams: {', '.join(sorted(known))}")
  return options_class(**hparams)
