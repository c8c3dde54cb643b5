"""Load, validate and convert one source image to lossless 8-bit PNG bytes.

This module runs in the converter's worker processes, so it imports no TensorFlow: only
Pillow and numpy. One call of `load_image` reads a file once, hashes its bytes, checks
the declared size against a decompression-bomb limit before decoding anything, decodes
the whole image (a truncated file fails here, not later in training) and returns PNG
bytes of the requested channels:

- a PNG that already is 8-bit grey (channels=1) or 8-bit RGB (channels=3) keeps its
  source bytes when nothing else is asked (no resize, mask, dihedral transform);
- 16-bit grey (PNG or TIFF) is scaled from the full 16-bit range: x / 257, rounded;
- RGBA / LA are composited on black (the IIF background); palette, CMYK, YCbCr and
  1-bit images are converted; grey becomes RGB by repeating, RGB grey by luminance.

Every problem is an `InputError` naming the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import warnings

import numpy as np
from PIL import Image, ImageFile

from hep2tf.errors import InputError

# A truncated file must fail the full decode rather than come back half black.
ImageFile.LOAD_TRUNCATED_IMAGES = False

DEFAULT_MAX_MEGAPIXELS = 50.0
RESIZE_MODES = ("pad", "stretch")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour types of IHDR that are already what a record stores.
_PNG_COLOUR_TYPE = {1: 0, 3: 2}


@dataclasses.dataclass(frozen=True)
class LoadedImage:
  """One image ready for a record.

  png: encoded 8-bit PNG (H, W, channels); mask_png: encoded 0/255 PNG (H, W, 1) or
  None; height, width: of the encoded image; sha256: hex digest of the source file.
  """
  png: bytes
  mask_png: bytes | None
  height: int
  width: int
  sha256: str


def file_sha256(path: str | os.PathLike) -> str:
  """Hex sha256 of a file's bytes; InputError when it cannot be read."""
  return hashlib.sha256(_read_bytes(path)).hexdigest()


def dihedral(array: np.ndarray, k: int) -> np.ndarray:
  """Dihedral transform k in 0..7 of an (H, W[, C]) array.

  k % 4 quarter turns counter-clockwise (np.rot90), then a left-right flip if k >= 4;
  k = 0 is the identity.
  """
  if not 0 <= k <= 7:
    raise ValueError(f"dihedral id must be in 0..7, got {k}")
  out = np.rot90(array, k % 4)
  if k >= 4:
    out = np.fliplr(out)
  return np.ascontiguousarray(out)


def load_image(path: str | os.PathLike, channels: int, *,
               image_size: tuple[int, int] | None = None, resize: str = "pad",
               mask_path: str | os.PathLike | None = None,
               apply_mask: bool = False, dihedral_id: int = 0,
               max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> LoadedImage:
  """Reads one source image (and its mask) into record-ready PNG bytes.

  Args:
    path: image file (PNG, BMP, JPEG, TIFF; 8- or 16-bit; grey, RGB, RGBA, palette...).
    channels: 1 or 3, the channels of the output.
    image_size: (height, width) to resize to, or None to keep the source size.
    resize: "pad" keeps the aspect ratio and pads with black; "stretch" does not.
    mask_path: a mask of the same size (any non-background value is foreground).
    apply_mask: zero the image outside the mask.
    dihedral_id: 0..7, see `dihedral`; applied after resizing, to image and mask.
    max_megapixels: files declaring more pixels are rejected before decoding.

  Returns:
    A LoadedImage. Raises InputError(file=path) for anything unreadable or too big.
  """
  if channels not in (1, 3):
    raise ValueError(f"channels must be 1 or 3, got {channels}")
  if resize not in RESIZE_MODES:
    raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
  if apply_mask and not mask_path:
    raise InputError("apply_mask needs a mask, and this image has none", file=path)
  data = _read_bytes(path)
  sha256 = hashlib.sha256(data).hexdigest()
  image = _decode(data, path, max_megapixels)

  keep_source = (image_size is None and not apply_mask and dihedral_id == 0
                 and _is_record_png(data, channels))
  pixels = None if keep_source else _to_uint8(image, channels, path)
  shape = (image.height, image.width)
  mask = None
  mask_source = None
  if mask_path:
    mask_data = _read_bytes(mask_path)
    mask_image = _decode(mask_data, mask_path, max_megapixels)
    mask = _binarise(mask_image)
    if (_is_record_png(mask_data, 1) and
        np.array_equal(mask, np.asarray(mask_image))):
      mask_source = mask_data   # already a 0/255 grey PNG: keep its bytes too
    if mask.shape != shape:
      raise InputError(f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                       f"{shape[1]}x{shape[0]}", file=mask_path)
  if image_size is not None:
    pixels = _resize(pixels, image_size, resize, Image.BILINEAR)
    if mask is not None:
      # Nearest keeps the mask binary; resizing the same way keeps it aligned.
      mask = _resize(mask, image_size, resize, Image.NEAREST)
  if apply_mask:
    pixels = pixels * (mask > 0)[..., None].astype(np.uint8)
  if dihedral_id:
    pixels = dihedral(pixels, dihedral_id)
    mask = None if mask is None else dihedral(mask, dihedral_id)
  if mask is None:
    mask_png = None
  elif mask_source is not None and image_size is None and dihedral_id == 0:
    mask_png = mask_source
  else:
    mask_png = encode_png(mask)
  if keep_source:
    return LoadedImage(data, mask_png, shape[0], shape[1], sha256)
  return LoadedImage(encode_png(pixels), mask_png, pixels.shape[0],
                     pixels.shape[1], sha256)


def encode_png(pixels: np.ndarray) -> bytes:
  """uint8 (H, W), (H, W, 1) or (H, W, 3) -> PNG bytes (deterministic)."""
  if pixels.ndim == 3 and pixels.shape[2] == 1:
    pixels = pixels[..., 0]
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format="PNG", compress_level=6)
  return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
  """PNG bytes -> uint8 array (H, W, C); for tests and the dihedral check."""
  array = np.asarray(Image.open(io.BytesIO(data)))
  return array[..., None] if array.ndim == 2 else array


def _read_bytes(path: str | os.PathLike) -> bytes:
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise InputError(f"cannot read the file ({e.strerror or e})", file=path) from None
  if not data:
    raise InputError("the file is empty (0 bytes)", file=path)
  return data


def _decode(data: bytes, path, max_megapixels: float) -> Image.Image:
  """Opens (header only), checks the declared size, then decodes everything."""
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
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      image.load()
  except Exception as e:
    raise InputError(f"cannot decode the image, truncated or corrupt "
                     f"({type(e).__name__}: {e})", file=path) from None
  return image


def _is_record_png(data: bytes, channels: int) -> bool:
  """True for an 8-bit PNG whose IHDR colour type is already the record's."""
  if not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
    return False
  bit_depth, colour_type = data[24], data[25]
  return bit_depth == 8 and colour_type == _PNG_COLOUR_TYPE[channels]


def _to_uint8(image: Image.Image, channels: int, path) -> np.ndarray:
  """Any Pillow mode -> uint8 (H, W, channels)."""
  mode = image.mode
  if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
    wide = np.asarray(image).astype(np.float64)
    if wide.min() < 0 or wide.max() > 65535:
      raise InputError(f"{mode} pixels outside the 16-bit range", file=path)
    grey = np.rint(wide / 257.0).astype(np.uint8)
    return _grey_to(grey, channels)
  if mode == "F":
    values = np.asarray(image, dtype=np.float64)
    # Float images come as [0, 1] or as 16-bit counts; both map to the full 8 bits.
    scale = 255.0 if values.max() <= 1.0 else 255.0 / 65535.0
    grey = np.rint(np.clip(values * scale, 0, 255)).astype(np.uint8)
    return _grey_to(grey, channels)
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


def _binarise(image: Image.Image) -> np.ndarray:
  """Mask -> uint8 (H, W) of 0/255; foreground is above half the mask's maximum."""
  if image.mode not in ("L", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
    image = image.convert("L")
  values = np.asarray(image).astype(np.float64)
  top = values.max()
  if top <= 0:
    return np.zeros(values.shape, np.uint8)
  # Half the maximum works for 0/1, 0/255 and 16-bit 0/65535 masks alike.
  return np.where(values > top / 2, 255, 0).astype(np.uint8)


def _resize(pixels: np.ndarray, image_size: tuple[int, int], mode: str,
            resample) -> np.ndarray:
  """uint8 (H, W[, C]) -> image_size, stretched or padded with black."""
  target_h, target_w = image_size
  height, width = pixels.shape[:2]
  if (height, width) == (target_h, target_w):
    return pixels
  squeeze = pixels.ndim == 3 and pixels.shape[2] == 1
  image = Image.fromarray(pixels[..., 0] if squeeze else pixels)
  if mode == "stretch":
    out = np.asarray(image.resize((target_w, target_h), resample))
  else:
    scale = min(target_h / height, target_w / width)
    new_h = max(1, min(target_h, round(height * scale)))
    new_w = max(1, min(target_w, round(width * scale)))
    inner = np.asarray(image.resize((new_w, new_h), resample))
    out = np.zeros((target_h, target_w) + inner.shape[2:], np.uint8)
    top, left = (target_h - new_h) // 2, (target_w - new_w) // 2
    out[top:top + new_h, left:left + new_w] = inner
  return out[..., None] if squeeze else out
