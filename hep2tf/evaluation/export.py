"""SavedModel export whose serving signature takes encoded image bytes.

The signature `serving_default` takes a batch of encoded images (PNG, JPEG, BMP or GIF
bytes; tf.string, shape [N]) and returns `probabilities` (float32 [N, K]), `class_id`
(int64 [N]) and `class_name` (string [N]). Decoding, the channel mapping, the
dataset's intensity mapping (`hep2tf.data.intensity.PixelSpec`, baked in as constants)
and the aspect-preserving pad to the model's input size happen inside the graph
(`hep2tf.data.preprocess`, the reader's and predict's pixel path), so TensorFlow
Serving needs nothing from hep2tf.

When the run has a fitted temperature T (`python -m hep2tf.evaluate --calibrate`,
which re-exports), the signature returns softmax(logits / T), the calibrated
probabilities; the SavedModel keeps T as the variable `temperature`.

Bit depth: PNG is decoded as uint16, so a 16-bit PNG (grey or 48-bit RGB) keeps every
bit, and the converter's rules follow (`preprocess.stored_from_encoded`): 16-bit
values as they are, 8-bit ones x 257 in a set with deeper sources (or as they are in
an 8-bit set), then the recorded rescaling; then `preprocess.model_input`. TIFF is
not among TensorFlow's decoders; convert a TIFF with the hep2tf.predict command
line, which reads it as the converter does.
"""

from __future__ import annotations


import keras
import tensorflow as tf

from hep2tf import atomic, storage
from hep2tf.data import intensity, preprocess
from hep2tf.evaluation import calibration


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

  pixel_spec = pixels or intensity.PixelSpec()

  def model_input(encoded_image):
    stored = preprocess.stored_from_encoded(encoded_image, channels, pixel_spec)
    return preprocess.model_input(stored, pixel_spec, image_size)

  def serve(encoded):
    images = tf.map_fn(model_input, encoded, fn_output_signature=tf.TensorSpec(
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
