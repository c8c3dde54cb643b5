"""What a `--weights` file is, told from its first bytes before Keras reads it.

`check_weights_file(path)` returns when `path` looks like what its name says (a
`.keras` zip holding config.json, an HDF5 `.h5` / `.weights.h5`) and otherwise
raises an InputError that names what the file is instead: a zip without a model, an
image, a SavedModel, text, an empty file. Keras' own message for a `.keras` file that
is not a zip is "File not found", for a file that exists. No TensorFlow here.
"""

from __future__ import annotations

import os
import zipfile

from hep2tf.errors import InputError

EXPECTED = "a .keras file, a .weights.h5 file or a hep2tf run directory"
SAVED_MODEL = (f"a TensorFlow SavedModel folder (a run's export/), not a weights "
               f"file; --weights takes {EXPECTED}")
_MAGIC = (
    (b"\x89HDF\r\n\x1a\n", "an HDF5 file (Keras .h5 / .weights.h5)"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"BM", "a BMP image"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x08\x01\x12", "a protocol buffer (a TensorFlow saved_model.pb?)"),
)


def describe(path: str) -> str:
  """What the local file `path` is, from its first bytes ("an HDF5 file", ...)."""
  with open(path, "rb") as f:
    head = f.read(64)
  if not head:
    return "an empty file (0 bytes)"
  for magic, what in _MAGIC:
    if head.startswith(magic):
      return what
  try:
    text = head.decode("utf-8")
  except UnicodeDecodeError:
    return f"not a known format (it starts with bytes {head[:8].hex(' ')})"
  return f"a text file starting {text.splitlines()[0][:40]!r}"


def check_weights_file(path: str) -> None:
  """Raises InputError(file=path) naming what `path` is when it is not a Keras
  weights file of the kind its name says; `path` is a local file."""
  if os.path.isdir(path):
    if os.path.exists(os.path.join(path, "saved_model.pb")):
      raise InputError(SAVED_MODEL, file=path)
    return
  what = describe(path)
  if path.endswith(".keras"):
    if not what.startswith("a zip archive"):
      raise InputError(f"not a Keras .keras file: it is {what} (a .keras file is a "
                       "zip archive holding config.json and model.weights.h5)",
                       file=path)
    with zipfile.ZipFile(path) as archive:
      names = archive.namelist()
    if "config.json" not in names:
      shown = ", ".join(names[:5]) or "nothing"
      raise InputError(f"a zip archive, but not a Keras .keras file: it holds "
                       f"{shown} and no config.json", file=path)
  elif path.endswith(".h5"):
    if not what.startswith("an HDF5 file"):
      raise InputError(f"not a Keras .weights.h5 file: it is {what}", file=path)
  else:
    raise InputError(f"--weights takes {EXPECTED}; this is {what}", file=path)
