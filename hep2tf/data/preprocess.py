"""THE pixel path: stored pixels -> the model's input, for the reader, predict and the
SavedModel alike.

  model_input(stored, pixels, image_size, mask)   the one function: `fit` then
                                                  `to_model_input`
  fit(image, image_size, mask)                    mask, then resize with black
                                                  padding, rounded, in the image's
                                                  dtype (the reader does this per
                                                  example, before its shuffle buffer)
  to_model_input(images, pixels)                  float32, stored * 255 / white_level
  stored_from_encoded(encoded, channels, pixels)  encoded file bytes -> stored values
                                                  inside a graph (the SavedModel):
                                                  the converter's rules
                                                  (`intensity.to_storage`)

"Stored" is what the records hold: uint8 or uint16 values after the dataset's
intensity mapping (`intensity.PixelSpec`). The model-input contract: float32
(N, H, W, C) where 255 is the records' white level (docs/ARCHITECTURE.md, bit depth).
The reader calls `fit` on each decoded record and `to_model_input` on each batch;
`predict` calls `model_input` on what `images.load_image` stores for a file; the
SavedModel on `stored_from_encoded` of the request's bytes. So an image gives the
same input, and the same probabilities, whichever of the three reads it.
"""

from __future__ import annotations

import tensorflow as tf

from hep2tf.data import intensity

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def fit(image: tf.Tensor, image_size: tuple[int, int] | None = None,
        mask: tf.Tensor | None = None) -> tf.Tensor:
  """One stored image (H, W, C) masked and resized to `image_size`.

  `mask` (H, W, 1), any non-zero value foreground, zeroes the background before
  resizing, so both share the geometry. The resize keeps the aspect ratio and pads
  with black (`tf.image.resize_with_pad`, bilinear), then rounds; an integer image
  comes back in its dtype (clipped to it), a float one as float32.
  """
  if mask is not None:
    image = image * tf.cast(mask > 0, image.dtype)
  if image_size is None:
    return image
  resized = tf.round(tf.image.resize_with_pad(image, image_size[0], image_size[1]))
  if not image.dtype.is_integer:
    return resized
  return tf.cast(tf.clip_by_value(resized, 0.0, image.dtype.max), image.dtype)


def to_model_input(images: tf.Tensor, pixels: intensity.PixelSpec) -> tf.Tensor:
  """Stored pixels (uint8/uint16 or their values as float, any shape) -> the models'
  float32 input: `stored * 255 / white_level`, the identity for 8-bit records; for
  16-bit ones a float in which every stored level stays distinct."""
  images = tf.cast(images, tf.float32)
  if pixels.white_level == 255:
    return images
  return images * tf.constant(255.0 / pixels.white_level, tf.float32)


def model_input(stored, pixels: intensity.PixelSpec,
                image_size: tuple[int, int] | None = None,
                mask=None) -> tf.Tensor:
  """One stored image (H, W, C), or a batch of them, -> the model's float32 input:
  `fit` (mask, resize to the model's size) then `to_model_input`."""
  stored = tf.convert_to_tensor(stored)
  if stored.shape.rank == 4:
    return tf.map_fn(lambda image: model_input(image, pixels, image_size, mask),
                     stored, fn_output_signature=tf.float32)
  return to_model_input(fit(stored, image_size, mask), pixels)


def stored_from_encoded(encoded: tf.Tensor, channels: int,
                        pixels: intensity.PixelSpec) -> tf.Tensor:
  """Encoded image bytes (PNG, JPEG, BMP, GIF; a scalar string) -> the values the
  converter would store for them (float32 (H, W, channels), integral), in a graph.

  The rules of `intensity.to_storage`, in TensorFlow: PNG is decoded as uint16, so
  a 16-bit file keeps every bit; its values are kept, 8-bit ones are x 257 in a deep
  set and as they are in an 8-bit one; then the recorded rescaling, computed in
  float64 as numpy computes it, so the rounding is the same.
  """
  image = tf.io.decode_image(encoded, channels=channels, dtype=tf.uint16,
                             expand_animations=False)
  # decode_image with dtype=uint16 widens 8-bit data by 257 (exactly); only a PNG
  # whose IHDR says 16 bits holds deeper values.
  deep_file = tf.logical_and(
      tf.equal(tf.strings.substr(encoded, 0, 8), _PNG_SIGNATURE),
      tf.equal(tf.strings.substr(encoded, 24, 1), b"\x10"))
  values = tf.cast(image, tf.float64)
  if not pixels.deep:
    values = tf.where(deep_file, values, tf.round(values / 257.0))
  if pixels.intensity == "rescale":
    values = _rescale(values, *pixels.rescale_range)
  elif pixels.intensity == "rescale_per_image":
    values = _rescale(values, _percentile(values, pixels.percentiles[0]),
                      _percentile(values, pixels.percentiles[1]))
  return tf.cast(values, tf.float32)


def _rescale(values: tf.Tensor, lo, hi) -> tf.Tensor:
  """`intensity.rescale`: [lo, hi] onto 0..255, rounded half to even, clipped; a
  flat range gives 0."""
  lo = tf.cast(lo, tf.float64)
  hi = tf.cast(hi, tf.float64)
  span = tf.where(hi > lo, hi - lo, tf.ones_like(hi))
  scaled = tf.round((values - lo) * (255.0 / span))
  return tf.where(hi > lo, tf.clip_by_value(scaled, 0.0, 255.0),
                  tf.zeros_like(values))


def _percentile(values: tf.Tensor, q: float) -> tf.Tensor:
  """numpy's default (linear) percentile of all values, step by step as numpy
  computes it (float64)."""
  flat = tf.sort(tf.reshape(values, [-1]))
  n = tf.cast(tf.size(flat), tf.float64)
  quantile = tf.constant(q / 100.0, tf.float64)
  position = tf.clip_by_value(n * quantile + (1.0 - quantile) - 1.0, 0.0, n - 1.0)
  below = tf.cast(tf.floor(position), tf.int32)
  above = tf.minimum(below + 1, tf.size(flat) - 1)
  weight = position - tf.floor(position)
  a, b = flat[below], flat[above]
  difference = b - a
  return tf.where(weight >= 0.5, b - difference * (1.0 - weight),
                  a + difference * weight)
