"""Load, validate and convert one source image to lossless PNG bytes (8 or 16 bits).

This module runs in the converter's worker processes, so it imports no TensorFlow: only
Pillow and numpy. One call of `load_image` reads a file once, hashes its bytes, checks
the declared size against a decompression-bomb limit before decoding anything, decodes
the whole image (a truncated file fails here, not later in training) and returns PNG
bytes of the requested channels:

- a PNG that already is 8-bit grey (channels=1) or 8-bit RGB (channels=3) keeps its
  source bytes when nothing else is asked (no resize, mask, dihedral transform);
- deeper sources (12/16-bit PNG or TIFF, 48-bit RGB PNG, float32 TIFF) become what the
  dataset's `intensity.PixelSpec` says: by default uint16 holding exactly the source
  values (never x / 257); 48-bit PNG is read with pypng, as Pillow narrows it to 8 bits;
- a multi-page TIFF (a z-stack, channels or a time series) is an InputError: which
  page is the cell is the user's call, not ours;
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
import png   # pypng: 16-bit RGB PNG, which Pillow reads and writes only as 8 bits
from PIL import Image, ImageFile

from hep2tf.data import intensity
from hep2tf.errors import InputError

# A truncated file must fail the full decode rather than come back half black.
ImageFile.LOAD_TRUNCATED_IMAGES = False

DEFAULT_MAX_MEGAPIXELS = 50.0
RESIZE_MODES = ("pad", "stretch")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour types of IHDR that are already what a record stores.
_PNG_COLOUR_TYPE = {1: 0, 3: 2}
_MODES_16 = ("I;16", "I;16L", "I;16B", "I;16N", "I")


@dataclasses.dataclass(frozen=True)
class LoadedImage:
  """One image ready for a record.

  png: encoded PNG (H, W, channels), uint8 or uint16 as the PixelSpec says; mask_png:
  encoded 0/255 PNG (H, W, 1) or None; height, width: of the encoded image; sha256:
  hex digest of the source file; stats: `intensity.image_stats` of the stored pixels.
  """
  png: bytes
  mask_png: bytes | None
  height: int
  width: int
  sha256: str
  stats: dict | None = None


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
               max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
               pixel_spec: intensity.PixelSpec | None = None) -> LoadedImage:
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
    pixel_spec: the dataset's PixelSpec (default: 8-bit, values kept).

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
  spec = pixel_spec or intensity.PixelSpec()
  kind = _kind(image, data, path)

  keep_source = (image_size is None and not apply_mask and dihedral_id == 0
                 and kind == "uint8" and spec.intensity == "keep"
                 and not spec.deep and _is_record_png(data, channels))
  if keep_source:
    pixels = None
  elif kind == "uint8":
    pixels = intensity.to_storage(_to_uint8(image, channels, path), kind, spec, path)
  else:
    pixels = intensity.to_storage(_deep_values(image, data, channels, path), kind,
                                  spec, path)
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
    pixels = pixels * (mask > 0)[..., None].astype(pixels.dtype)
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
    return LoadedImage(data, mask_png, shape[0], shape[1], sha256,
                       intensity.image_stats(np.asarray(image)))
  return LoadedImage(encode_png(pixels), mask_png, pixels.shape[0],
                     pixels.shape[1], sha256, intensity.image_stats(pixels))


def encode_png(pixels: np.ndarray) -> bytes:
  """uint8 or uint16 (H, W), (H, W, 1) or (H, W, 3) -> PNG bytes (deterministic).

  Pillow writes 8-bit and 16-bit grey; 16-bit RGB (48-bit) goes through pypng, as
  Pillow has no such mode.
  """
  if pixels.ndim == 3 and pixels.shape[2] == 1:
    pixels = pixels[..., 0]
  buffer = io.BytesIO()
  if pixels.dtype == np.uint16 and pixels.ndim == 3:
    height, width, planes = pixels.shape
    writer = png.Writer(width, height, greyscale=planes == 1, bitdepth=16,
                        compression=6)
    writer.write_array(buffer, pixels.reshape(-1))
  else:
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=6)
  return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
  """PNG bytes -> uint8 or uint16 array (H, W, C), every bit kept."""
  if data[24:25] == b"\x10":
    array = _read_png16(data, "png")
  else:
    array = np.asarray(Image.open(io.BytesIO(data)))
  return array[..., None] if array.ndim == 2 else array


# ---------------------------------------------------------------------------
# Deep (more than 8-bit) sources and the pre-scan's per-file steps.


def probe_kind(path, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> str | None:
  """"uint8", "uint16" or "float" from the file's header; None if unreadable."""
  try:
    data = _read_bytes(path)
    return _kind(_open(data, path, max_megapixels), data, path)
  except InputError:
    return None


def float_range_of(path, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS):
  """(min, max) of a float image's values; None if unreadable."""
  try:
    data = _read_bytes(path)
    values = _deep_values(_decode(data, path, max_megapixels), data, 1, path)
  except InputError:
    return None
  return float(values.min()), float(values.max())


def unit_histogram(path, channels: int, spec: intensity.PixelSpec,
                   max_megapixels: float = DEFAULT_MAX_MEGAPIXELS):
  """Counts of each value 0..65535 of an image in the dataset's unit; None if bad."""
  try:
    data = _read_bytes(path)
    image = _decode(data, path, max_megapixels)
    kind = _kind(image, data, path)
    values = (_to_uint8(image, channels, path) if kind == "uint8"
              else _deep_values(image, data, channels, path))
    units = intensity.unit_values(values, kind, spec, path)
  except InputError:
    return None
  return np.bincount(np.rint(units).astype(np.int64).reshape(-1), minlength=65536)


def _kind(image: Image.Image, data: bytes, path) -> str:
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


def _deep_values(image: Image.Image, data: bytes, channels: int,
                 path) -> np.ndarray:
  """A uint16 or float source -> (H, W, channels) uint16 or float64, values kept."""
  if data.startswith(_PNG_SIGNATURE) and data[24] == 16 and data[25] != 0:
    values = _read_png16(data, path).astype(np.float64)
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


def _read_png16(data: bytes, path) -> np.ndarray:
  """16-bit PNG of any colour type -> uint16 (H, W, planes), with pypng."""
  try:
    width, height, rows, info = png.Reader(bytes=data).asDirect()
    array = np.vstack([np.asarray(row, np.uint16) for row in rows])
  except (png.Error, ValueError) as e:
    raise InputError(f"cannot decode the 16-bit PNG ({e})", file=path) from None
  return array.reshape(height, width, info["planes"])


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
  image = _open(data, path, max_megapixels)
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", Image.DecompressionBombWarning)
      image.load()
  except Exception as e:
    raise InputError(f"cannot decode the image, truncated or corrupt "
                     f"({type(e).__name__}: {e})", file=path) from None
  return image


def _open(data: bytes, path, max_megapixels: float) -> Image.Image:
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


def _is_record_png(data: bytes, channels: int) -> bool:
  """True for an 8-bit PNG whose IHDR colour type is already the record's."""
  if not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
    return False
  bit_depth, colour_type = data[24], data[25]
  return bit_depth == 8 and colour_type == _PNG_COLOUR_TYPE[channels]


def _to_uint8(image: Image.Image, channels: int, path) -> np.ndarray:
  """Any 8-bit Pillow mode -> uint8 (H, W, channels); deeper ones: `_deep_values`."""
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
  """uint8 or uint16 (H, W[, C]) -> image_size, stretched or padded with black."""
  target_h, target_w = image_size
  height, width = pixels.shape[:2]
  if (height, width) == (target_h, target_w):
    return pixels
  if pixels.dtype == np.uint16:
    # Pillow resizes 16-bit only as 32-bit float planes: one channel at a time.
    planes = pixels if pixels.ndim == 3 else pixels[..., None]
    out = np.stack([_resize(planes[..., c].astype(np.float32), image_size, mode,
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
