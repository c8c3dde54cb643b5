"""The record schema: feature keys, the TFDS features, encode and parse.

This is the only module that spells a feature key. The converter (`writer.py`) encodes
with `encode_example`; the reader (`reader.py`) parses with `parse_example`.
The serialised bytes are those of `tfds.features.FeaturesDict.serialize_example`, so a
records folder also loads with `tfds.builder_from_directory` without hep2tf.

One example:

  IMAGE      encoded PNG bytes, uint8 or uint16 (one dtype per dataset, named in
             hep2tf.json and features.json), shape (H, W, channels)
  LABEL      int64 class id (ClassLabel with the dataset's class names)
  ID         source id as the dataset names it ("00001")
  FILE_NAME  source file, relative to the data folder
  SHA256     hex digest of the source file's bytes
  INTENSITY  "positive" / "intermediate" / ... or ""
  GROUP      specimen or patient id, or ""
  DIHEDRAL   0..7, the offline dihedral transform applied (0 = the source as is)
  MASK       encoded PNG bytes, uint8, shape (H, W, 1); only when the dataset has masks
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from tensorflow_datasets.core import example_serializer

IMAGE = "image"
LABEL = "label"
ID = "id"
FILE_NAME = "file_name"
SHA256 = "sha256"
INTENSITY = "intensity"
GROUP = "group"
DIHEDRAL = "dihedral"
MASK = "mask"

TEXT_KEYS = (ID, FILE_NAME, SHA256, INTENSITY, GROUP)


def make_features(class_names: Sequence[str], channels: int,
                  has_mask: bool = False,
                  image_shape: tuple[int | None, int | None] = (None, None),
                  dtype: str = "uint8") -> tfds.features.FeaturesDict:
  """The TFDS features of one dataset.

  Args:
    class_names: label names, in label-id order.
    channels: 1 (grey) or 3 (RGB).
    has_mask: whether every example carries a MASK.
    image_shape: (height, width) when all images share it, else (None, None).
    dtype: "uint8" or "uint16", the images' sample type (masks are always uint8).
  """
  height, width = image_shape
  features = {
      IMAGE: tfds.features.Image(shape=(height, width, channels),
                                 dtype=np.dtype(dtype), encoding_format="png"),
      LABEL: tfds.features.ClassLabel(names=list(class_names)),
      ID: tfds.features.Text(),
      FILE_NAME: tfds.features.Text(),
      SHA256: tfds.features.Text(),
      INTENSITY: tfds.features.Text(),
      GROUP: tfds.features.Text(),
      DIHEDRAL: tfds.features.Scalar(dtype=np.int64),
  }
  if has_mask:
    features[MASK] = tfds.features.Image(shape=(height, width, 1),
                                         encoding_format="png")
  return tfds.features.FeaturesDict(features)


def encode_example(features: tfds.features.FeaturesDict,
                   example: Mapping[str, object]) -> bytes:
  """Serialises one example to `tf.train.Example` bytes.

  Args:
    features: from `make_features`.
    example: IMAGE (and MASK) as PNG bytes (kept as they are) or uint8 arrays (encoded
      here); LABEL as int id or class name; the text keys as str (missing ones become
      ""); DIHEDRAL as int (missing: 0).
  """
  values = dict(example)
  for key in TEXT_KEYS:
    values[key] = str(values.get(key, "") or "")
  values.setdefault(DIHEDRAL, 0)
  for key in (IMAGE, MASK):
    if isinstance(values.get(key), (bytes, bytearray)):
      values[key] = _BytesImage(bytes(values[key]))
  # FeaturesDict.serialize_example leaves the order of the feature map to the
  # process, so the same example could give other bytes in another run;
  # deterministic serialisation keeps "same seed, same bytes" true.
  serializer = example_serializer.ExampleSerializer(features.get_serialized_info())
  proto = serializer.get_tf_example(features.encode_example(values))
  return proto.SerializeToString(deterministic=True)


class _BytesImage:
  """A file-like wrapper so tfds.features.Image stores PNG bytes without re-encoding."""

  def __init__(self, data: bytes):
    self._data = data

  def read(self) -> bytes:
    return self._data


def feature_spec(has_mask: bool = False) -> dict[str, tf.io.FixedLenFeature]:
  """The `tf.io.parse_example` spec of the records."""
  spec = {
      IMAGE: tf.io.FixedLenFeature([], tf.string),
      LABEL: tf.io.FixedLenFeature([], tf.int64),
      DIHEDRAL: tf.io.FixedLenFeature([], tf.int64, default_value=0),
  }
  for key in TEXT_KEYS:
    spec[key] = tf.io.FixedLenFeature([], tf.string, default_value="")
  if has_mask:
    spec[MASK] = tf.io.FixedLenFeature([], tf.string)
  return spec


def parse_example(serialized: tf.Tensor, channels: int,
                  has_mask: bool = False, dtype: str = "uint8") -> dict[str, tf.Tensor]:
  """Parses one serialised example into tensors; works eagerly and inside tf.data.

  Returns a dict with IMAGE as `dtype` (H, W, channels; a 16-bit PNG decoded with
  dtype uint16 keeps every bit), LABEL as int64, the text keys as tf.string, DIHEDRAL
  as int64 and, when `has_mask`, MASK as uint8 (H, W, 1).
  """
  parsed = tf.io.parse_single_example(serialized, feature_spec(has_mask))
  parsed[IMAGE] = tf.io.decode_png(parsed[IMAGE], channels=channels,
                                   dtype=tf.dtypes.as_dtype(dtype))
  if has_mask:
    parsed[MASK] = tf.io.decode_png(parsed[MASK], channels=1, dtype=tf.uint8)
  return parsed


def parse_label(serialized: tf.Tensor) -> tf.Tensor:
  """Just the LABEL (int64) of a serialised example: cheap, no image decoding."""
  spec = {LABEL: feature_spec()[LABEL]}
  return tf.io.parse_single_example(serialized, spec)[LABEL]
