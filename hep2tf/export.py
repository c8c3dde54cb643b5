"""SavedModel export whose serving signature takes encoded image bytes.

The signature `serving_default` takes a batch of encoded images (PNG, JPEG, BMP or GIF
bytes; tf.string, shape [N]) and returns `probabilities` (float32 [N, K]), `class_id`
(int64 [N]) and `class_name` (string [N]). Decoding, the channel mapping and the
aspect-preserving pad to the model's input size happen inside the graph, so TensorFlow
Serving needs nothing from hep2tf.
"""

from __future__ import annotations

import os
import shutil

import keras
import tensorflow as tf

from hep2tf import storage


def decode_for_model(encoded: tf.Tensor, channels: int,
                     image_size: tuple[int, int]) -> tf.Tensor:
  """Encoded image bytes (scalar string) -> float32 (H, W, channels) in [0, 255].

  Matches the records: 16-bit images are scaled from their full range to 8 bits,
  and images of another size are resized with aspect-preserving black padding.
  """
  image = tf.io.decode_image(encoded, channels=channels, dtype=tf.uint16,
                             expand_animations=False)
  # decode_image with dtype=uint16 scales 8-bit data up by 257, so dividing by 257
  # gives back the 8-bit values exactly and maps 16-bit data over the full range.
  image = tf.round(tf.cast(image, tf.float32) / 257.0)
  height, width = image_size
  shape = tf.shape(image)
  image = tf.cond(
      tf.logical_and(tf.equal(shape[0], height), tf.equal(shape[1], width)),
      lambda: image,
      lambda: tf.round(tf.clip_by_value(
          tf.image.resize_with_pad(image, height, width), 0.0, 255.0)))
  image.set_shape((height, width, channels))
  return image


def export_serving(model: keras.Model, path: str, *, class_names, channels: int,
                   image_size: tuple[int, int]) -> str:
  """Writes the SavedModel at `path` atomically (a tmp folder renamed into place)."""
  names = tf.constant(list(class_names))

  def serve(encoded):
    images = tf.map_fn(lambda e: decode_for_model(e, channels, image_size), encoded,
                       fn_output_signature=tf.TensorSpec(
                           (image_size[0], image_size[1], channels), tf.float32))
    probabilities = tf.cast(model(images, training=False), tf.float32)
    class_id = tf.argmax(probabilities, axis=1)
    return {"probabilities": probabilities, "class_id": class_id,
            "class_name": tf.gather(names, class_id)}

  archive = keras.export.ExportArchive()
  archive.track(model)
  archive.add_endpoint(name="serving_default", fn=serve,
                       input_signature=[tf.TensorSpec([None], tf.string)])
  if not storage.is_local(path):
    # No folder rename on object stores: replaced in place (storage.py).
    storage.rmtree(path, ignore_errors=True)
    archive.write_out(path, verbose=False)
    return path
  tmp = f"{path}.tmp-{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  archive.write_out(tmp, verbose=False)
  if os.path.exists(path):
    shutil.rmtree(path)
  os.replace(tmp, path)
  return path
