"""images.py: lossless loading, conversions, resizing, masks and bad files."""

import hashlib
import io
import struct
import subprocess
import sys
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from hep2tf.data import images
from hep2tf.errors import InputError


def _save(path, array, mode=None, **kwargs):
  Image.fromarray(array, mode=mode).save(path, **kwargs)
  return path


def _grey(h=6, w=5):
  return (np.arange(h * w, dtype=np.uint8).reshape(h, w) * 7)


def test_8bit_grey_png_keeps_the_source_bytes(tmp_path):
  path = _save(tmp_path / "a.png", _grey())
  loaded = images.load_image(path, 1)
  data = path.read_bytes()
  assert loaded.png == data
  assert loaded.sha256 == hashlib.sha256(data).hexdigest()
  assert (loaded.height, loaded.width, loaded.mask_png) == (6, 5, None)


def test_grey_to_rgb_and_rgb_to_grey(tmp_path):
  grey = _save(tmp_path / "g.png", _grey())
  rgb_of_grey = images.decode_png(images.load_image(grey, 3).png)
  assert rgb_of_grey.shape == (6, 5, 3)
  np.testing.assert_array_equal(rgb_of_grey[..., 1], _grey())
  colour = np.zeros((4, 4, 3), np.uint8)
  colour[..., 1] = 200
  rgb = _save(tmp_path / "c.png", colour)
  grey_of_rgb = images.decode_png(images.load_image(rgb, 1).png)
  assert grey_of_rgb.shape == (4, 4, 1)
  # ITU-R 601 luminance of pure green 200: 0.587 * 200.
  assert abs(int(grey_of_rgb[0, 0, 0]) - 117) <= 1


@pytest.mark.parametrize("suffix", ["png", "tif"])
def test_16bit_keeps_its_values_never_divided_by_257(tmp_path, suffix):
  values = np.array([[0, 257, 1000], [30000, 65535, 128]], np.uint16)
  path = tmp_path / f"w.{suffix}"
  Image.fromarray(values).save(path)
  # Default spec (8-bit set): a deeper file keeps its counts (prediction time).
  out = images.decode_png(images.load_image(path, 1).png)[..., 0]
  assert out.dtype == np.uint16
  np.testing.assert_array_equal(out, values)


def test_rgba_is_composited_on_black(tmp_path):
  rgba = np.zeros((2, 2, 4), np.uint8)
  rgba[..., 0] = 200
  rgba[..., 3] = [[255, 0], [128, 51]]
  path = _save(tmp_path / "a.png", rgba)
  out = images.decode_png(images.load_image(path, 3).png)
  np.testing.assert_array_equal(out[..., 0], [[200, 0], [100, 40]])


def test_palette_cmyk_jpeg_and_bmp_convert(tmp_path):
  palette = Image.fromarray(_grey()).convert("P")
  palette.save(tmp_path / "p.png")
  out = images.decode_png(images.load_image(tmp_path / "p.png", 1).png)
  np.testing.assert_array_equal(out[..., 0], _grey())
  Image.new("CMYK", (8, 4), (0, 255, 255, 0)).save(tmp_path / "c.jpg")
  red = images.decode_png(images.load_image(tmp_path / "c.jpg", 3).png)
  assert red.shape == (4, 8, 3) and red[0, 0, 0] > 200 and red[0, 0, 1] < 60
  _save(tmp_path / "b.bmp", np.full((3, 7, 3), 90, np.uint8))
  bmp = images.load_image(tmp_path / "b.bmp", 3)
  assert bmp.png.startswith(b"\x89PNG") and (bmp.height, bmp.width) == (3, 7)


def test_resize_pad_keeps_aspect_and_stretch_fills(tmp_path):
  path = _save(tmp_path / "wide.png", np.full((10, 20), 200, np.uint8))
  padded = images.decode_png(images.load_image(path, 1, image_size=(20, 20)).png)
  assert padded.shape == (20, 20, 1)
  assert padded[0, 10, 0] == 0 and padded[10, 10, 0] == 200   # black bars above
  stretched = images.decode_png(
      images.load_image(path, 1, image_size=(20, 20), resize="stretch").png)
  assert stretched.min() == 200


def test_load_options_object_and_its_fields_by_name_agree(tmp_path):
  path = _save(tmp_path / "wide.png", np.arange(200, dtype=np.uint8).reshape(10, 20))
  options = images.LoadOptions(image_size=(12, 12), resize="stretch")
  by_object = images.load_image(path, 1, options, dihedral_id=3)
  by_name = images.load_image(path, 1, image_size=(12, 12), resize="stretch",
                              dihedral_id=3)
  assert by_object.png == by_name.png and (by_object.height, by_object.width) == (
      12, 12)
  # A field by name goes over the object's.
  assert images.load_image(path, 1, options, image_size=None).width == 20
  with pytest.raises(TypeError):
    images.load_image(path, 1, image_sise=(12, 12))
  with pytest.raises(ValueError, match="resize must be one of"):
    images.LoadOptions(resize="crop")


def test_mask_is_binarised_resized_and_applied(tmp_path):
  image = _save(tmp_path / "i.png", np.full((8, 8), 100, np.uint8))
  mask = np.zeros((8, 8), np.uint8)
  mask[2:6, 2:6] = 1                              # a 0/1 mask
  mask_path = _save(tmp_path / "m.png", mask)
  loaded = images.load_image(image, 1, mask_path=mask_path, apply_mask=True,
                             image_size=(16, 16))
  out = images.decode_png(loaded.png)[..., 0]
  m = images.decode_png(loaded.mask_png)[..., 0]
  assert set(np.unique(m)) == {0, 255} and m.shape == (16, 16)
  assert out[0, 0] == 0 and out[8, 8] == 100
  np.testing.assert_array_equal(out > 0, m > 0)


@pytest.mark.parametrize("content, words", [
    (b"", "empty"),
    (b"hello, I am text\n", "not a readable image"),
])
def test_empty_and_text_files_are_input_errors(tmp_path, content, words):
  path = tmp_path / "bad.png"
  path.write_bytes(content)
  with pytest.raises(InputError, match=words) as info:
    images.load_image(path, 1)
  assert info.value.file == str(path)


def test_truncated_png_fails_the_full_decode(tmp_path):
  noise = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
  data = io.BytesIO()
  Image.fromarray(noise).save(data, format="PNG")
  path = tmp_path / "cut.png"
  path.write_bytes(data.getvalue()[:len(data.getvalue()) // 2])
  with pytest.raises(InputError, match="truncated or corrupt"):
    images.load_image(path, 1)


def test_unreadable_tiff_is_an_input_error(tmp_path):
  path = tmp_path / "bad.tif"
  path.write_bytes(b"II*\x00" + b"\xff" * 40)
  with pytest.raises(InputError):
    images.load_image(path, 1)


def _png_header_only(width, height):
  def chunk(kind, body):
    return (struct.pack(">I", len(body)) + kind + body +
            struct.pack(">I", zlib.crc32(kind + body)))
  ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
          chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [100000, 8000])   # Pillow's own limit, and ours
def test_decompression_bomb_is_rejected_without_allocating(tmp_path, side):
  path = tmp_path / "bomb.png"
  path.write_bytes(_png_header_only(side, side))
  tracemalloc.start()
  try:
    with pytest.raises(InputError, match="decompression bomb"):
      images.load_image(path, 1)
    _, peak = tracemalloc.get_traced_memory()
  finally:
    tracemalloc.stop()
  assert peak < 5 * 2**20     # decoding 8000x8000 would need 64 MB


def test_limit_is_configurable(tmp_path):
  path = _save(tmp_path / "a.png", np.zeros((100, 100), np.uint8))
  with pytest.raises(InputError, match="megapixels"):
    images.load_image(path, 1, max_megapixels=0.005)
  assert images.load_image(path, 1, max_megapixels=0.01).width == 100


def test_images_module_does_not_import_tensorflow():
  # Worker processes import it; TensorFlow would cost seconds and memory in each.
  code = "import sys, hep2tf.data.images; print('tensorflow' in sys.modules)"
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True)
  assert out.stdout.strip() == "False"
