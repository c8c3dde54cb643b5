"""Input layers the models put in front of themselves: normalisation and scaling.

Every model takes float32 images in [0, 255], shape (N, H, W, C), and normalises them
inside itself, so a saved model needs no preprocessing code beside it. Records of
any bit depth reach them in that range: 16-bit records as `stored * 255 /
white_level` (`reader.to_model_input`), a float in which every 16-bit level
stays distinct. The layers here are registered as Keras serialisables (package
"hep2tf"), so a `.keras` file holding them loads with
`keras.saving.load_model(path, safe_mode=True)` once `hep2tf.models` is imported.

IIF images are dark: most pixels are background and a nucleus may sit at 10 to 30% of
full scale. Fed as they are, activations have a variance near 1e-3 while BatchNorm's
moving variance starts at 1.0, and a net can fit the training set yet predict one
class in inference mode. Hence the default is `PerImageStandardization`.

The layers are built with dtype "float32" by the models, so under a mixed precision
policy the statistics are still computed in float32.
"""

from __future__ import annotations

import math
from typing import Sequence

import keras
from keras import ops

NORMALIZATIONS = ("per_image", "dataset", "none")


@keras.saving.register_keras_serializable(package="hep2tf")
class PerImageStandardization(keras.layers.Layer):
  """(x - mean) / max(std, epsilon), per image and per channel.

  Input and output: (N, H, W, C) float. `epsilon` is in input units (pixel values in
  [0, 255]); it keeps an almost flat image from having its noise blown up.
  """

  def __init__(self, epsilon: float = 1.0, **kwargs):
    super().__init__(**kwargs)
    self.epsilon = float(epsilon)

  def call(self, images):
    mean = ops.mean(images, axis=(1, 2), keepdims=True)
    std = ops.std(images, axis=(1, 2), keepdims=True)
    return (images - mean) / ops.maximum(std, self.epsilon)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "epsilon": self.epsilon}


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

  def __init__(self, upper_percentile: float = 99.5, **kwargs):
    super().__init__(**kwargs)
    if not 50.0 < upper_percentile <= 100.0:
      raise ValueError(
          f"ContrastStretch: upper_percentile must be in (50, 100], "
          f"got {upper_percentile}")
    self.upper_percentile = float(upper_percentile)

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
    scale = 255.0 / ops.maximum(high - low, 1e-3)
    low = ops.reshape(low, (-1, 1, 1, 1))
    scale = ops.reshape(scale, (-1, 1, 1, 1))
    return ops.clip((images - low) * scale, 0.0, 255.0)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "upper_percentile": self.upper_percentile}


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
    return PerImageStandardization(dtype="float32", name="normalize")
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
