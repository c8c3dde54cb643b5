"""Input layers the models put in front of themselves: normalisation and scaling.

Every model takes float32 images in [0, 255], shape (N, H, W, C), and normalises them
inside itself, so a saved model needs no preprocessing code beside it. Records of
any bit depth reach them in that range: 16-bit records as `stored * 255 /
white_level` (`preprocess.to_model_input`), a float in which every 16-bit level
stays distinct. The layers here are registered as Keras serialisables (package
"hep2tf"), so a `.keras` file holding them loads with
`keras.saving.load_model(path, safe_mode=True)` once `hep2tf.models` is imported.

IIF images are dark: most pixels are background and a nucleus may sit at 10 to 30% of
full scale. Fed as they are, activations have a variance near 1e-3 while BatchNorm's
moving variance starts at 1.0, and a net can fit the training set yet predict one
class in inference mode. Hence the default is `PerImageStandardization`.

How a pixel was stored must not matter: in a set that mixes sources one may span 0.04
to 0.56 of the input's 0..255 units (8-bit data in a 16-bit container) and another 2
to 254. So the models' first layers are scale-invariant: `PerImageStandardization`
and `ContrastStretch` floor their divisor at a fraction of each image's own level
(`relative_floor`), not at a count of 0..255 units. An image whose spread is below
that fraction of its level (a flat image with a little noise) keeps its noise small
instead of having it blown up to unit variance; the same cell at 1/257 of the scale
reaches the next layer unchanged. Models saved before this have `relative_floor` 0 in
their config and keep their absolute floor.

The layers are built with dtype "float32" by the models, so under a mixed precision
policy the statistics are still computed in float32.
"""

from __future__ import annotations

import math
from typing import Sequence

import keras
from keras import ops

NORMALIZATIONS = ("per_image", "dataset", "none")
# The divisor floors of the scale-invariant input layers, as a fraction of each
# image's own level (its mean for PerImageStandardization, its upper percentile for
# ContrastStretch), and a last absolute floor far below any stored level (a 16-bit
# level is 255 / 65535 = 0.0039 of these units).
RELATIVE_FLOOR = 0.02
ABSOLUTE_FLOOR = 1e-6


@keras.saving.register_keras_serializable(package="hep2tf")
class PerImageStandardization(keras.layers.Layer):
  """(x - mean) / max(std, relative_floor * |mean|, epsilon), per image and channel.

  Input and output: (N, H, W, C) float. With `relative_floor` > 0 the output does not
  depend on the input's scale: x and x / 257 give the same result. The floor keeps an
  almost flat image (spread below `relative_floor` of its level) from having its
  noise blown up. `epsilon` is an absolute floor in input units; saved models of
  earlier versions have epsilon 1.0 and relative_floor 0.
  """

  def __init__(self, epsilon: float = 1.0, relative_floor: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    if epsilon <= 0 or relative_floor < 0:
      raise ValueError(f"PerImageStandardization: epsilon must be > 0 and "
                       f"relative_floor >= 0, got {epsilon}, {relative_floor}")
    self.epsilon = float(epsilon)
    self.relative_floor = float(relative_floor)

  def call(self, images):
    mean = ops.mean(images, axis=(1, 2), keepdims=True)
    std = ops.std(images, axis=(1, 2), keepdims=True)
    floor = ops.maximum(self.relative_floor * ops.abs(mean), self.epsilon)
    return (images - mean) / ops.maximum(std, floor)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "epsilon": self.epsilon,
            "relative_floor": self.relative_floor}


@keras.saving.register_keras_serializable(package="hep2tf")
class Rescale(keras.layers.Layer):
  """(x - mean) / std with fixed statistics, e.g. computed over the training split.

  `mean` and `std` are a number or one number per channel, in input units.
  """

  def __init__(self, mean: float | Sequence[float] = 0.0,
               std: float | Sequence[float] = 1.0, **kwargs):
    super().__init__(**kwargs)
    self.mean = _as_list(mean)
    self.std = _as_list(std)
    if any(s <= 0 for s in self.std):
      raise ValueError(f"Rescale: std must be positive, got {self.std}")

  def call(self, images):
    mean = ops.convert_to_tensor(self.mean, dtype=images.dtype)
    std = ops.convert_to_tensor(self.std, dtype=images.dtype)
    return (images - mean) / std

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "mean": self.mean, "std": self.std}


@keras.saving.register_keras_serializable(package="hep2tf")
class ContrastStretch(keras.layers.Layer):
  """Maps each image's [min, upper percentile] linearly onto [0, 255], then clips.

  Pretrained backbones expect photographs that use the whole range; a dark IIF cell
  would reach them as a nearly black image. The upper end is a percentile rather than
  the maximum so that a few hot pixels do not decide the scale. Statistics are over
  the whole image (all channels), which keeps the colour balance of RGB input.
  Input and output: (N, H, W, C) float.
  """

  def __init__(self, upper_percentile: float = 99.5, relative_floor: float = 0.0,
               **kwargs):
    super().__init__(**kwargs)
    if not 50.0 < upper_percentile <= 100.0:
      raise ValueError(
          f"ContrastStretch: upper_percentile must be in (50, 100], "
          f"got {upper_percentile}")
    if relative_floor < 0:
      raise ValueError(f"ContrastStretch: relative_floor must be >= 0, got "
                       f"{relative_floor}")
    self.upper_percentile = float(upper_percentile)
    self.relative_floor = float(relative_floor)

  def call(self, images):
    shape = ops.shape(images)
    flat = ops.reshape(images, (shape[0], -1))
    low = ops.min(flat, axis=1)
    size = math.prod(images.shape[1:]) if None not in images.shape[1:] else None
    if self.upper_percentile >= 100.0 or size is None:
      high = ops.max(flat, axis=1)
    else:
      # The k-th largest value is the percentile; top_k avoids sorting the image.
      k = max(1, int(round(size * (100.0 - self.upper_percentile) / 100.0)))
      high = ops.top_k(flat, k, sorted=True)[0][:, -1]
    # The span is floored at a fraction of the image's own level (scale-invariant;
    # saved models of earlier versions: relative_floor 0, an absolute 1e-3).
    floor = (ops.maximum(self.relative_floor * ops.abs(high), ABSOLUTE_FLOOR)
             if self.relative_floor > 0 else 1e-3)
    scale = 255.0 / ops.maximum(high - low, floor)
    low = ops.reshape(low, (-1, 1, 1, 1))
    scale = ops.reshape(scale, (-1, 1, 1, 1))
    return ops.clip((images - low) * scale, 0.0, 255.0)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "upper_percentile": self.upper_percentile,
            "relative_floor": self.relative_floor}


@keras.saving.register_keras_serializable(package="hep2tf")
class ApplicationPreprocess(keras.layers.Layer):
  """The input scaling a Keras Applications backbone expects, as a layer.

  `application` names a module of `keras.applications` ("resnet50", "densenet", ...);
  its own `preprocess_input` is applied to RGB input in [0, 255] (caffe: BGR and mean
  subtraction; tf: [-1, 1]; torch: ImageNet mean and std; identity for the nets that
  rescale inside themselves). Storing the module name, not the function, keeps the
  layer loadable with safe_mode=True.
  """

  def __init__(self, application: str, **kwargs):
    super().__init__(**kwargs)
    module = getattr(keras.applications, application, None)
    if module is None or not hasattr(module, "preprocess_input"):
      raise ValueError(
          f"ApplicationPreprocess: keras.applications has no module "
          f"{application!r} with a preprocess_input")
    self.application = application
    self._preprocess = module.preprocess_input

  def call(self, images):
    return self._preprocess(images)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "application": self.application}


def normalization_layer(normalization: str = "per_image",
                        mean: float | Sequence[float] | None = None,
                        std: float | Sequence[float] | None = None
                        ) -> keras.layers.Layer | None:
  """The first layer of a from-scratch model, or None for "none".

  Args:
    normalization: "per_image" (default), "dataset" (needs `mean` and `std`, in
      pixel units, e.g. from the training split) or "none".
    mean, std: a number or one per channel; only for "dataset".
  """
  if normalization == "per_image":
    return PerImageStandardization(epsilon=ABSOLUTE_FLOOR,
                                   relative_floor=RELATIVE_FLOOR, dtype="float32",
                                   name="normalize")
  if normalization == "dataset":
    if mean is None or std is None:
      raise ValueError('normalization="dataset" needs the mean and std hparams')
    return Rescale(mean, std, dtype="float32", name="normalize")
  if normalization == "none":
    return None
  raise ValueError(f"normalization must be one of {NORMALIZATIONS}, "
                   f"got {normalization!r}")


def l2_regularizer(weight_decay: float) -> keras.regularizers.Regularizer | None:
  """L2 penalty `weight_decay / 2 * sum(w ** 2)`, None when weight_decay is 0.

  The halving follows `tf.nn.l2_loss`, so the gradient gains `weight_decay * w`, as in
  the SGD weight decay of the reference studies (5e-4).
  """
  if weight_decay < 0:
    raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
  return keras.regularizers.L2(weight_decay / 2) if weight_decay else None


def softmax_head(features, num_classes: int, weight_decay: float):
  """Dense "logits" then a float32 softmax "probs", so mixed precision keeps a float32
  output. Layer names are stable because `load_pretrained` matches layers by name."""
  logits = keras.layers.Dense(
      num_classes, kernel_initializer="glorot_uniform",
      kernel_regularizer=l2_regularizer(weight_decay), name="logits")(features)
  return keras.layers.Activation("softmax", dtype="float32", name="probs")(logits)


def check_scratch_weights(weights: object, model_name: str) -> None:
  """Raises ValueError for weights="imagenet" on a model that has no such weights."""
  if isinstance(weights, str) and weights.lower() == "imagenet":
    raise ValueError(
        f"{model_name} is trained from scratch and has no imagenet weights; use "
        f"weights=none, a .keras/.weights.h5 file, or an earlier run directory")


def _as_list(value: float | Sequence[float]) -> list[float]:
  if isinstance(value, (int, float)):
    return [float(value)]
  return [float(v) for v in value]
