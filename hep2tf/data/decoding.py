"""Reading one image file with Pillow and pypng: the steps under `images.load_image`.

`read_bytes` reads a file (InputError when unreadable or empty); `open_header` opens
the header only and rejects decompression bombs and empty images before anything is
decoded; `decode` then decodes the whole image (a truncated file fails here).
`sample_kind` tells uint8, uint16 and float sources apart (and refuses multi-page and
48-bit TIFF); `deep_values` and `read_png16` keep every level of a deeper source;
`to_uint8` maps any 8-bit Pillow mode to grey or RGB (alpha composited on black);
`binarise` turns a mask into 0/255; `orientation` / `orient` apply a file's EXIF
orientation; `resize` pads or stretches 8- and 16-bit arrays.
No TensorFlow here: this runs in the converter's worker processes.
"""

from __future__ import annotations

import io
import os
import warnings

import numpy as np
import png   # pypng: 16-bit RGB PNG, which Pillow reads and writes only as 8 bits
from PIL import Image, ImageFile

from hep2tf.data import dihedral
from hep2tf.errors import InputError

DEFAULT_MAX_MEGAPIXELS = 50.0   # larger declared sizes are refused before decoding

# A truncated file must fail the full decode rather than come back half black.
ImageFile.LOAD_TRUNCATED_IMAGES = False

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour types of IHDR that are already what a record stores.
_PNG_COLOUR_TYPE = {1: 0, 3: 2}
_MODES_16 = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def sample_kind(image: Image.Image, data: bytes, path) -> str:
  """The sample type of a decoded-or-opened image; InputError for what we refuse."""
  frames = getattr(image, "n_frames", 1)
  if frames > 1:
    raise InputError(
        f"multi-page image ({frames} pages; a z-stack, channels or a time series?): "
        "hep2tf reads one plane per cell; save the plane you want as its own file",
        file=path)
  if data.startswith(_PNG_SIGNATURE) and data[24] == 16:
    return "uint16"
  if image.mode in _MODES_16:
    return "uint16"
  if image.mode == "F":
    return "float"
  bits = getattr(image, "tag_v2", {}).get(258) if image.format == "TIFF" else None
  if bits and max(np.atleast_1d(bits)) > 8:
    raise InputError(f"{max(np.atleast_1d(bits))}-bit {image.mode} TIFF: Pillow "
                     "would narrow it to 8 bits; save it as 16-bit PNG (RGB) or "
                     "one 16-bit grey TIFF per channel", file=path)
  return "uint8"


def deep_values(image: Image.Image, data: bytes, channels: int,
                path) -> np.ndarray:
  """A uint16 or float source -> (H, W, channels) uint16 or float64, values kept."""
  if data.startswith(_PNG_SIGNATURE) and data[24] == 16 and data[25] != 0:
    values = read_png16(data, path).astype(np.float64)
    if values.shape[-1] in (2, 4):   # alpha: composite on black, as for 8 bits
      values = values[..., :-1] * values[..., -1:] / 65535.0
  elif image.mode == "F":
    values = np.asarray(image, dtype=np.float64)
    if not np.isfinite(values).all():
      raise InputError("float image with NaN or infinite pixels", file=path)
  else:
    values = np.asarray(image).astype(np.float64)
    if values.min() < 0 or values.max() > 65535:
      raise InputError(f"{image.mode} pixels outside the 16-bit range "
                       f"({values.min():g}..{values.max():g})", file=path)
  if values.ndim == 2:
    values = values[..., None]
  if channels == 1 and values.shape[-1] == 3:
    # ITU-R 601 luma, the weights of Pillow's own RGB -> L conversion.
    values = values @ np.array([0.299, 0.587, 0.114])[:, None]
  elif channels == 3 and values.shape[-1] == 1:
    values = np.repeat(values, 3, axis=-1)
  if image.mode == "F":
    return values
  return np.rint(values).astype(np.uint16)


def read_png16(data: bytes, path) -> np.ndarray:
  """16-bit PNG of any colour type -> uint16 (H, W, planes), with pypng."""
  try:
    width, height, rows, info = png.Reader(bytes=data).asDirect()
    array = np.vstack([np.asarray(row, np.uint16) for row in rows])
  except (png.Error, ValueError) as e:
    raise InputError(f"cannot decode the 16-bit PNG ({e})", file=path) from None
  return array.reshape(height, width, info["planes"])


def read_bytes(path: str | os.PathLike) -> bytes:
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise InputError(f"cannot read the file ({e.strerror or e})", file=path) from None
  if not data:
    raise InputError("the file is empty (0 bytes)", file=path)
  return data


def decode(data: bytes, path, max_megapixels: float) -> Image.Image:
  """Opens (header only), checks the declared size, then decodes everything."""
  image = open_header(data, path, max_megapixels)
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      image.load()
  except Exception as e:
    raise InputError(f"cannot decode the image, truncated or corrupt "
                     f"({type(e).__name__}: {e})", file=path) from None
  return image


def open_header(data: bytes, path, max_megapixels: float) -> Image.Image:
  """Opens the header only and checks the declared size."""
  try:
    with warnings.catch_warnings():
      # Our own limit below decides; Pillow's warning would only be noise.
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      image = Image.open(io.BytesIO(data))
  except Image.DecompressionBombError as e:
    raise InputError(f"rejected as a decompression bomb: {e}", file=path) from None
  except Exception as e:  # Pillow raises many types for a file that is no image.
    raise InputError(f"not a readable image ({type(e).__name__}: {e})",
                     file=path) from None
  width, height = image.size
  if width * height > max_megapixels * 1e6:
    raise InputError(
        f"declares {width}x{height} pixels, more than the limit of "
        f"{max_megapixels:g} megapixels (a decompression bomb?)", file=path)
  if width == 0 or height == 0:
    raise InputError(f"declares an empty image ({width}x{height})", file=path)
  return image


def is_record_png(data: bytes, channels: int) -> bool:
  """True for an 8-bit PNG whose IHDR colour type is already the record's."""
  if not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
    return False
  bit_depth, colour_type = data[24], data[25]
  return bit_depth == 8 and colour_type == _PNG_COLOUR_TYPE[channels]


def to_uint8(image: Image.Image, channels: int, path) -> np.ndarray:
  """Any 8-bit Pillow mode -> uint8 (H, W, channels); deeper ones: `deep_values`."""
  mode = image.mode
  if mode == "P":
    image = image.convert("RGBA" if "transparency" in image.info else "RGB")
  elif mode == "PA":
    image = image.convert("RGBA")
  elif mode == "1":
    image = image.convert("L")
  elif mode not in ("L", "LA", "RGB", "RGBA"):
    try:
      image = image.convert("RGB")   # CMYK, YCbCr, LAB, HSV ...
    except Exception as e:
      raise InputError(f"cannot convert mode {mode} to RGB ({e})", file=path) from None
  if image.mode in ("RGBA", "LA"):
    image = _on_black(image)
  if image.mode == "L":
    return _grey_to(np.asarray(image), channels)
  if channels == 1:
    return np.asarray(image.convert("L"))[..., None]
  return np.asarray(image)


def _on_black(image: Image.Image) -> Image.Image:
  """Composites an image with alpha on black: colour * alpha / 255, rounded."""
  array = np.asarray(image).astype(np.uint32)
  colour, alpha = array[..., :-1], array[..., -1:]
  out = ((colour * alpha + 127) // 255).astype(np.uint8)
  return Image.fromarray(out[..., 0] if out.shape[-1] == 1 else out)


def _grey_to(grey: np.ndarray, channels: int) -> np.ndarray:
  grey = grey[..., None]
  return np.repeat(grey, 3, axis=-1) if channels == 3 else grey


_EXIF_ORIENTATION = 0x0112


def orientation(image: Image.Image) -> int:
  """The EXIF orientation (1..8) of a decoded image; 1 when it has none."""
  try:
    with warnings.catch_warnings():   # Pillow warns of a damaged EXIF block
      warnings.simplefilter("ignore")
      value = image.getexif().get(_EXIF_ORIENTATION, 1)
  except Exception:  # a damaged EXIF block: the pixels are still the image
    return 1
  return value if value in dihedral.EXIF_ORIENTATION else 1


def orient(pixels: np.ndarray, value: int) -> np.ndarray:
  """Applies EXIF orientation `value` to an (H, W[, C]) array, so it is stored the
  way viewers show it (a camera's JPEG with orientation 6 is turned upright)."""
  element = dihedral.EXIF_ORIENTATION.get(value, 0)
  return dihedral.transform(pixels, element) if element else pixels


def binarise(image: Image.Image) -> np.ndarray:
  """Mask -> uint8 (H, W) of 0/255; foreground is above half the mask's maximum."""
  if image.mode not in ("L", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
    image = image.convert("L")
  values = np.asarray(image).astype(np.float64)
  top = values.max()
  if top <= 0:
    return np.zeros(values.shape, np.uint8)
  # Half the maximum works for 0/1, 0/255 and 16-bit 0/65535 masks alike.
  return np.where(values > top / 2, 255, 0).astype(np.uint8)


def resize(pixels: np.ndarray, image_size: tuple[int, int], mode: str,
           resample) -> np.ndarray:
  """uint8 or uint16 (H, W[, C]) -> image_size, stretched or padded with black."""
  target_h, target_w = image_size
  height, width = pixels.shape[:2]
  if (height, width) == (target_h, target_w):
    return pixels
  if pixels.dtype == np.uint16:
    # Pillow resizes 16-bit only as 32-bit float planes: one channel at a time.
    planes = pixels if pixels.ndim == 3 else pixels[..., None]
    out = np.stack([resize(planes[..., c].astype(np.float32), image_size, mode,
                           resample) for c in range(planes.shape[-1])], axis=-1)
    out = np.rint(out).astype(pixels.dtype)
    return out if pixels.ndim == 3 else out[..., 0]
  squeeze = pixels.ndim == 3 and pixels.shape[2] == 1
  image = Image.fromarray(pixels[..., 0] if squeeze else pixels)
  if mode == "stretch":
    out = np.asarray(image.resize((target_w, target_h), resample))
  else:
    scale = min(target_h / height, target_w / width)
    new_h = max(1, min(target_h, round(height * scale)))
    new_w = max(1, min(target_w, round(width * scale)))
    inner = np.asarray(image.resize((new_w, new_h), resample))
    out = np.zeros((target_h, target_w) + inner.shape[2:], inner.dtype)
    top, left = (target_h - new_h) // 2, (target_w - new_w) // 2
    out[top:top + new_h, left:left + new_w] = inner
  return out[..., None] if squeeze else out
