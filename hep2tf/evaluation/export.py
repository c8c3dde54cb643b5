"""SavedModel export whose serving signature takes encoded image bytes.

The signature `serving_default` takes a batch of encoded images (PNG, JPEG, BMP or GIF
bytes; tf.string, shape [N]) and returns `probabilities` (float32 [N, K]), `class_id`
(int64 [N]) and `class_name` (string [N]). Decoding, the channel mapping, the
dataset's intensity mapping (`hep2tf.data.intensity.PixelSpec`, baked in as constants)
and the aspect-preserving pad to the model's input size happen inside the graph, so
TensorFlow Serving needs nothing from hep2tf.

When the run has a fitted temperature T (`python -m hep2tf.evaluate --calibrate`,
which re-exports), the signature returns softmax(logits / T), the calibrated
probabilities; the SavedModel keeps T as the variable `temperature`.

Bit depth: PNG is decoded as uint16, so a 16-bit PNG (grey or 48-bit RGB) keeps every
bit, and the converter's rules follow: 16-bit values as they are, 8-bit ones x 257 in a
set with deeper sources (or as they are in an 8-bit set), then the recorded rescaling,
then `stored * 255 / white_level`. TIFF is not among TensorFlow's decoders; convert a
TIFF with the hep2tf.predict command line, which reads it as the converter does.
"""

from __future__ import annotations


import keras
import tensorflow as tf

from hep2tf import atomic, storage
from hep2tf.data import intensity
from hep2tf.evaluation import calibration


def decode_for_model(encoded: tf.Tensor, channels: int,
                     image_size: tuple[int, int],
                     pixels: intensity.PixelSpec | None = None) -> tf.Tensor:
  """Encoded image bytes (scalar string) -> the model's float32 (H, W, channels).

  Matches the records and the reader: values by the PixelSpec's rules (module
  docstring), images of another size resized with aspect-preserving black padding
  and rounded as the converter rounds, then `stored * 255 / white_level`.
  """
  pixels = pixels or intensity.PixelSpec()
  image = tf.io.decode_image(encoded, channels=channels, dtype=tf.uint16,
                             expand_animations=False)
  # decode_image with dtype=uint16 widens 8-bit data by 257 (exactly); only a PNG
  # whose IHDR says 16 bits holds deeper values.
  deep_file = tf.logical_and(
      tf.equal(tf.strings.substr(encoded, 0, 8), b"\x89PNG\r\n\x1a\n"),
      tf.equal(tf.strings.substr(encoded, 24, 1), b"\x10"))
  values = tf.cast(image, tf.float32)
  if not pixels.deep:
    values = tf.where(deep_file, values, tf.round(values / 257.0))
  if pixels.intensity == "rescale":
    values = _rescale(values, *pixels.rescale_range)
  elif pixels.intensity == "rescale_per_image":
    values = _rescale(values, _percentile(values, pixels.percentiles[0]),
                      _percentile(values, pixels.percentiles[1]))
  height, width = image_size
  shape = tf.shape(values)
  values = tf.cond(
      tf.logical_and(tf.equal(shape[0], height), tf.equal(shape[1], width)),
      lambda: values,
      lambda: tf.round(tf.image.resize_with_pad(values, height, width)))
  values.set_shape((height, width, channels))
  if pixels.white_level != 255:
    values = values * (255.0 / pixels.white_level)
  return values


def _rescale(values: tf.Tensor, lo, hi) -> tf.Tensor:
  """`intensity.rescale` in TensorFlow: [lo, hi] onto 0..255, rounded, clipped."""
  lo = tf.cast(lo, tf.float32)
  hi = tf.cast(hi, tf.float32)
  scaled = tf.round((values - lo) * (255.0 / tf.maximum(hi - lo, 1e-12)))
  return tf.where(hi > lo, tf.clip_by_value(scaled, 0.0, 255.0),
                  tf.zeros_like(values))


def _percentile(values: tf.Tensor, q: float) -> tf.Tensor:
  """numpy's default (linear) percentile of all values."""
  flat = tf.sort(tf.reshape(values, [-1]))
  position = (q / 100.0) * tf.cast(tf.size(flat) - 1, tf.float32)
  below = tf.cast(tf.floor(position), tf.int32)
  above = tf.minimum(below + 1, tf.size(flat) - 1)
  weight = position - tf.floor(position)
  return flat[below] * (1.0 - weight) + flat[above] * weight


def export_serving(model: keras.Model, path: str, *, class_names, channels: int,
                   image_size: tuple[int, int], temperature: float = 1.0,
                   pixels: intensity.PixelSpec | None = None) -> str:
  """Writes the SavedModel at `path` atomically (`atomic.staged_dir`).

  `temperature` divides the logits before the softmax (1.0: the model's own output).
  `pixels`: the records' PixelSpec (default 8-bit), applied inside the signature.
  """
  names = tf.constant(list(class_names))
  logits_model = calibration.logits_model(model)
  scale = tf.Variable(float(temperature), trainable=False, dtype=tf.float32,
                      name="temperature")

  def serve(encoded):
    images = tf.map_fn(lambda e: decode_for_model(e, channels, image_size, pixels),
                       encoded,
                       fn_output_signature=tf.TensorSpec(
                           (image_size[0], image_size[1], channels), tf.float32))
    logits = tf.cast(logits_model(images, training=False), tf.float32)
    probabilities = tf.nn.softmax(logits / scale, axis=-1)
    class_id = tf.argmax(probabilities, axis=1)
    return {"probabilities": probabilities, "class_id": class_id,
            "class_name": tf.gather(names, class_id)}

  archive = keras.export.ExportArchive()
  archive.track(logits_model)
  archive.temperature = scale
  archive.add_endpoint(name="serving_default", fn=serve,
                       input_signature=[tf.TensorSpec([None], tf.string)])
  if not storage.is_local(path):
    # No folder rename on object stores: replaced in place (storage.py).
    storage.rmtree(path, ignore_errors=True)
    archive.write_out(path, verbose=False)
    return path
  with atomic.staged_dir(path) as staging:
    archive.write_out(str(staging), verbose=False)
  return path
