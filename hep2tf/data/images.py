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
  1-bit images are converted; grey becomes RGB by repeating, RGB grey by luminance;
- an EXIF orientation (a camera's JPEG, orientation 6) is applied to image and mask,
  so the cell is stored the way viewers show the file.

Every problem is an `InputError` naming the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os

import numpy as np
import png   # pypng: 16-bit RGB PNG, which Pillow reads and writes only as 8 bits
from PIL import Image

from hep2tf.data import decoding, dihedral, intensity
from hep2tf.errors import InputError

DEFAULT_MAX_MEGAPIXELS = decoding.DEFAULT_MAX_MEGAPIXELS
RESIZE_MODES = ("pad", "stretch")


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
  return hashlib.sha256(decoding.read_bytes(path)).hexdigest()


@dataclasses.dataclass(frozen=True)
class LoadOptions:
  """How every image of a conversion is read (`load_image`).

  image_size: (height, width) to resize to, or None to keep the source size.
  resize: "pad" keeps the aspect ratio and pads with black; "stretch" does not.
  apply_mask: zero the image outside its mask.
  max_megapixels: files declaring more pixels are rejected before decoding.
  pixel_spec: the dataset's PixelSpec (None: 8-bit, values kept).
  """
  image_size: tuple[int, int] | None = None
  resize: str = "pad"
  apply_mask: bool = False
  max_megapixels: float = DEFAULT_MAX_MEGAPIXELS
  pixel_spec: intensity.PixelSpec | None = None

  def __post_init__(self):
    if self.resize not in RESIZE_MODES:
      raise ValueError(f"resize must be one of {RESIZE_MODES}, got {self.resize!r}")


def load_image(path: str | os.PathLike, channels: int,
               options: LoadOptions | None = None, *,
               mask_path: str | os.PathLike | None = None, dihedral_id: int = 0,
               **settings) -> LoadedImage:
  """Reads one source image (and its mask) into record-ready PNG bytes.

  Args:
    path: image file (PNG, BMP, JPEG, TIFF; 8- or 16-bit; grey, RGB, RGBA, palette...).
    channels: 1 or 3, the channels of the output.
    options: the conversion's LoadOptions (default: source size, 8-bit, values kept).
    mask_path: a mask of the same size (any non-background value is foreground).
    dihedral_id: 0..7, an element of `hep2tf.data.dihedral`; applied after
      resizing, to image and mask.
    **settings: fields of LoadOptions by name, over `options`' (as
      `convert.plan.load_options` gives them); an unknown name is a TypeError.

  Returns:
    A LoadedImage. Raises InputError(file=path) for anything unreadable or too big.
  """
  if channels not in (1, 3):
    raise ValueError(f"channels must be 1 or 3, got {channels}")
  options = dataclasses.replace(options or LoadOptions(), **settings)
  if options.apply_mask and not mask_path:
    raise InputError("apply_mask needs a mask, and this image has none", file=path)
  data = decoding.read_bytes(path)
  sha256 = hashlib.sha256(data).hexdigest()
  image = decoding.decode(data, path, options.max_megapixels)
  spec = options.pixel_spec or intensity.PixelSpec()
  kind = decoding.sample_kind(image, data, path)
  turn = decoding.orientation(image)
  keep_source = (options.image_size is None and not options.apply_mask
                 and dihedral_id == 0 and kind == "uint8"
                 and spec.intensity == "keep" and turn == 1 and not spec.deep
                 and decoding.is_record_png(data, channels))
  pixels = None
  if not keep_source:   # upright, as a viewer shows the file
    pixels = decoding.orient(_stored(image, data, kind, spec, channels, path), turn)
  shape = (image.height, image.width) if pixels is None else pixels.shape[:2]
  mask, mask_png = (None, None) if not mask_path else _read_mask(
      mask_path, shape, options.max_megapixels)
  if options.image_size is not None or options.apply_mask or dihedral_id:
    pixels, mask = _fit(pixels, mask, options, dihedral_id)
  if options.image_size is not None or dihedral_id:
    mask_png = None   # resized or turned: encoded anew
  if mask is not None and mask_png is None:
    mask_png = encode_png(mask)
  if keep_source:
    return LoadedImage(data, mask_png, shape[0], shape[1], sha256,
                       intensity.image_stats(np.asarray(image)))
  return LoadedImage(encode_png(pixels), mask_png, pixels.shape[0],
                     pixels.shape[1], sha256, intensity.image_stats(pixels))


def _stored(image: Image.Image, data: bytes, kind: str, spec: intensity.PixelSpec,
            channels: int, path) -> np.ndarray:
  """The decoded image's values as the PixelSpec stores them."""
  values = (decoding.to_uint8(image, channels, path) if kind == "uint8"
            else decoding.deep_values(image, data, channels, path))
  return intensity.to_storage(values, kind, spec, path)


def _read_mask(mask_path, shape: tuple[int, int], max_megapixels: float
               ) -> tuple[np.ndarray, bytes | None]:
  """(the 0/255 mask, upright; its source bytes when they already are a 0/255 grey
  PNG, else None); InputError when its size is not the image's."""
  mask_data = decoding.read_bytes(mask_path)
  mask_image = decoding.decode(mask_data, mask_path, max_megapixels)
  mask_turn = decoding.orientation(mask_image)
  mask = decoding.orient(decoding.binarise(mask_image), mask_turn)
  if mask.shape != shape:
    raise InputError(f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                     f"{shape[1]}x{shape[0]}", file=mask_path)
  keep = (decoding.is_record_png(mask_data, 1) and mask_turn == 1 and
          np.array_equal(mask, np.asarray(mask_image)))
  return mask, mask_data if keep else None


def _fit(pixels: np.ndarray, mask: np.ndarray | None, options: LoadOptions,
         dihedral_id: int) -> tuple[np.ndarray, np.ndarray | None]:
  """Resized (image bilinear, mask nearest, the same way so they stay aligned),
  masked, then turned by `dihedral_id`."""
  if options.image_size is not None:
    pixels = decoding.resize(pixels, options.image_size, options.resize,
                             Image.BILINEAR)
    if mask is not None:
      # Nearest keeps the mask binary.
      mask = decoding.resize(mask, options.image_size, options.resize, Image.NEAREST)
  if options.apply_mask:
    pixels = pixels * (mask > 0)[..., None].astype(pixels.dtype)
  if dihedral_id:
    pixels = dihedral.transform(pixels, dihedral_id)
    mask = None if mask is None else dihedral.transform(mask, dihedral_id)
  return pixels, mask


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
    array = decoding.read_png16(data, "png")
  else:
    array = np.asarray(Image.open(io.BytesIO(data)))
  return array[..., None] if array.ndim == 2 else array
