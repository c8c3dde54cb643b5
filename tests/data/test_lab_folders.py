"""Lab folders as they really are (issue 30): spellings, OS junk, empty and
unreadable class folders, links, the same bytes under two labels, EXIF orientation.
Every layout is a few tiny images written in tmp_path; faults a root user cannot
cause (an unreadable folder) are injected into the listing."""

import errno
import io
import os
import unicodedata

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageOps

from hep2tf.data import decoding, images, sources, splits
from hep2tf.data.sources import files
from hep2tf.errors import InputError, Rejects


def _image(path, value=7, size=4):
  """A tiny grey PNG whose bytes differ by `value`."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.full((size, size), value, np.uint8)).save(path)
  return str(path)


def _folder(root, counts):
  """root/<class>/<i>.png, with distinct bytes for every file."""
  value = 0
  for label, count in counts.items():
    for i in range(count):
      value += 1
      _image(os.path.join(root, label, f"{i}.png"), value)
  return str(root)


# ---------------------------------------------------------------- spellings


def test_csv_spellings_are_one_class_named_by_the_most_frequent(tmp_path):
  rows = ["path,label"]
  for i, label in enumerate(["Golgi"] * 3 + ["GOLGI", "golgi", "NuMem", "numem"]):
    _image(tmp_path / f"{i}.png", i + 1)
    rows.append(f"{i}.png,{label}")
  (tmp_path / "cells.csv").write_text("\n".join(rows) + "\n")
  source = sources.read_csv(tmp_path)
  assert source.class_names == ["Golgi", "NuMem"]
  assert list(source.examples["label"]).count("Golgi") == 5
  merged = [n for n in source.notes if "label spellings" in n]
  assert len(merged) == 2
  assert "'Golgi' x3, 'GOLGI' x1, 'golgi' x1 are one class 'Golgi'" in merged[0]


def test_folder_spellings_merge_across_splits_and_trailing_spaces(tmp_path):
  _folder(tmp_path / "train", {"Golgi": 3, "golgi ": 1, "NuMem": 2})
  _folder(tmp_path / "test", {"GOLGI": 1, "NuMem": 1})
  source = sources.read_folder(tmp_path)
  assert source.class_names == ["Golgi", "NuMem"]
  counts = source.examples.groupby(["split", "label"]).size().to_dict()
  assert counts == {("test", "Golgi"): 1, ("test", "NuMem"): 1,
                    ("train", "Golgi"): 4, ("train", "NuMem"): 2}
  assert any("'golgi ' x1" in n and "one class 'Golgi'" in n for n in source.notes)


def test_unicode_nfc_spellings_merge_and_look_alikes_stay_apart(tmp_path):
  composed = unicodedata.normalize("NFC", "Centromère")
  decomposed = unicodedata.normalize("NFD", "Centromère")
  rows = ["path,label"]
  labels = [composed, composed, decomposed, "fine_speckled", "fine speckled"]
  for i, label in enumerate(labels):
    _image(tmp_path / f"{i}.png", i + 1)
    rows.append(f"{i}.png,{label}")
  (tmp_path / "cells.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
  source = sources.read_csv(tmp_path)
  assert source.class_names == [composed, "fine speckled", "fine_speckled"]
  alike = [n for n in source.notes if "look alike" in n]
  assert len(alike) == 1 and "'fine speckled' and 'fine_speckled'" in alike[0]


def test_fixed_class_names_take_the_spellings_of_their_class(tmp_path):
  for i in range(3):
    _image(tmp_path / f"{i}.png", i + 1)
  (tmp_path / "cells.csv").write_text("path,label\n0.png,golgi\n1.png, GOLGI\n"
                                      "2.png,Speckled\n")
  source = sources.read_csv(tmp_path, class_names="Speckled,Golgi")
  assert source.class_names == ["Speckled", "Golgi"]
  assert list(source.examples["label"]) == ["Golgi", "Golgi", "Speckled"]


# ---------------------------------------------------------------- OS junk


def test_os_junk_is_never_a_class_nor_an_image(tmp_path):
  _folder(tmp_path, {"cat": 2, "dog": 2})
  _image(tmp_path / "__MACOSX" / "cat" / "._0.png", 99)
  _image(tmp_path / "cat" / "._0.png", 98)
  _image(tmp_path / ".thumbnails" / "0.png", 97)
  _image(tmp_path / "dog" / ".cache" / "0.png", 96)
  for junk in ("cat/.DS_Store", "cat/Thumbs.db", "dog/desktop.ini"):
    (tmp_path / junk).write_bytes(b"\x00junk")
  source = sources.read_folder(tmp_path)
  assert source.class_names == ["cat", "dog"]
  assert sorted(source.examples["id"]) == ["cat/0.png", "cat/1.png", "dog/0.png",
                                           "dog/1.png"]
  assert any("ignored __MACOSX/" in n for n in source.notes)


def test_the_csv_layout_ignores_a_zip_tools_copy_of_the_table(tmp_path):
  _image(tmp_path / "a.png")
  (tmp_path / "cells.csv").write_text("path,label\na.png,x\n")
  (tmp_path / "._cells.csv").write_bytes(b"\x00\x05\x16\x07 mac resource fork")
  assert list(sources.read_csv(tmp_path).examples["label"]) == ["x"]


# ---------------------------------------------------------------- empty, unreadable


def test_an_empty_class_folder_stops_or_is_left_out(tmp_path):
  _folder(tmp_path, {"cat": 2, "dog": 2})
  (tmp_path / "bird").mkdir()
  (tmp_path / "bird" / "notes.txt").write_text("to do")
  with pytest.raises(InputError) as stop:
    sources.read_folder(tmp_path)
  assert stop.value.file == str(tmp_path / "bird")
  assert "class folder holds no image files" in stop.value.reason
  rejects = Rejects()
  source = sources.read_folder(tmp_path, on_error="skip", rejects=rejects)
  assert source.class_names == ["cat", "dog"]
  assert [e.file for e in rejects.errors] == [str(tmp_path / "bird")]
  assert f"class 'bird' left out ({tmp_path / 'bird'}): class folder holds no " \
      "image files" in " ".join(source.notes)


def test_an_unreadable_class_folder_stops_or_is_left_out(tmp_path, monkeypatch):
  _folder(tmp_path, {"cat": 2, "dog": 2})
  locked = str(tmp_path / "dog")
  real_list = files.list_dir

  def list_dir(path):
    if path == locked:   # what chmod 000 gives a user who is not root
      raise PermissionError(errno.EACCES, "Permission denied", path)
    return real_list(path)

  monkeypatch.setattr(files, "list_dir", list_dir)
  with pytest.raises(InputError,
                     match="dog: cannot list this class folder .Permission denied"):
    sources.read_folder(tmp_path)
  rejects = Rejects()
  source = sources.read_folder(tmp_path, on_error="skip", rejects=rejects)
  assert source.class_names == ["cat"]
  assert rejects.errors[0].file == locked
  assert f"class 'dog' left out ({locked}): cannot list this class folder" in (
      " ".join(source.notes))


def test_an_unreadable_subfolder_is_named_and_the_class_kept(tmp_path, monkeypatch):
  _folder(tmp_path, {"cat": 2, "dog": 1})
  _image(tmp_path / "cat" / "day2" / "0.png", 50)
  locked = str(tmp_path / "cat" / "day2")
  real_list = files.list_dir
  monkeypatch.setattr(files, "list_dir", lambda p: (_ for _ in ()).throw(
      PermissionError(errno.EACCES, "Permission denied", p)) if p == locked
      else real_list(p))
  rejects = Rejects()
  source = sources.read_folder(tmp_path, on_error="skip", rejects=rejects)
  assert source.class_names == ["cat", "dog"] and len(source.examples) == 3
  assert [(e.file, e.reason) for e in rejects.errors] == [
      (locked, "cannot list this folder (Permission denied)")]


# ---------------------------------------------------------------- links


def test_a_link_back_to_the_data_folder_is_no_class(tmp_path):
  data = tmp_path / "data"
  _folder(data, {"cat": 3, "dog": 3})
  os.symlink(data, data / "self")
  os.symlink(data / "cat", data / "dog" / "loop")      # a second path to cat/
  os.symlink(data / "dog", data / "dog" / "again")     # a loop
  os.symlink(data / "cat" / "0.png", data / "cat" / "copy.png")   # same label
  source = sources.read_folder(data)
  assert source.class_names == ["cat", "dog"]
  assert len(source.examples) == 6
  note = next(n for n in source.notes if n.startswith("skipped 4 link"))
  for link in ("self ->", "dog/loop ->", "dog/again ->", "cat/copy.png ->"):
    assert link in note


def test_links_inside_are_followed_and_outside_rejected(tmp_path):
  data = tmp_path / "data"
  _folder(data, {"cat": 1, "dog": 1})
  _image(data / "store" / "extra" / "x.png", 60)   # not a class: store/ is linked
  os.rename(data / "store", tmp_path / "store")
  os.symlink(tmp_path / "store" / "extra", data / "cat" / "extra")
  rejects = Rejects()
  source = sources.read_folder(data, on_error="skip", rejects=rejects)
  assert len(source.examples) == 2
  assert "outside the data folder" in rejects.errors[0].reason
  os.makedirs(data / "shared")
  _image(data / "shared" / "y.png", 61)
  os.replace(data / "shared", data / "cat" / "shared")
  os.symlink(data / "cat" / "shared", data / "dog" / "shared_link")
  source = sources.read_folder(data, on_error="skip", rejects=Rejects())
  assert sorted(source.examples["id"]) == ["cat/0.png", "cat/shared/y.png",
                                           "dog/0.png"]


def test_a_file_linked_under_another_label_is_in_doubt(tmp_path):
  data = tmp_path / "data"
  _folder(data, {"cat": 2, "dog": 2})
  os.symlink(data / "cat" / "0.png", data / "dog" / "maybe.png")
  source = sources.read_folder(data)
  assert len(source.examples) == 5     # kept twice: the content check decides
  rejects = Rejects()
  table = splits.assign_splits(source.examples, on_error="skip", rejects=rejects)
  assert len(table) == 3 and len(rejects) == 1
  assert "cat/0.png (cat)" in rejects.errors[0].reason
  assert "dog/maybe.png (dog)" in rejects.errors[0].reason


# ---------------------------------------------------------------- same bytes


def test_the_same_bytes_under_two_labels_are_one_reject(tmp_path):
  a = _image(tmp_path / "golgi" / "a.png", 5)
  b = _image(tmp_path / "speckled" / "b.png", 5)     # the same bytes as a
  c = _image(tmp_path / "speckled" / "c.png", 6)
  table = pd.DataFrame(dict(id=["a", "b", "c"], path=[a, b, c],
                            label=["golgi", "speckled", "speckled"], mask_path="",
                            intensity="", group="", split=""))
  with pytest.raises(InputError) as stop:
    splits.assign_splits(table, validation_fraction=0, test_fraction=0)
  assert f"{a} (golgi); {b} (speckled)" in stop.value.reason
  assert "under 2 labels" in stop.value.reason
  rejects = Rejects()
  kept = splits.assign_splits(table, validation_fraction=0, test_fraction=0,
                              on_error="skip", rejects=rejects)
  assert list(kept["path"]) == [c] and len(rejects) == 1


def test_a_csv_naming_one_file_under_two_labels_keeps_neither(tmp_path):
  _image(tmp_path / "a.png", 1)
  _image(tmp_path / "b.png", 2)
  (tmp_path / "cells.csv").write_text("path,label\na.png,x\nb.png,y\na.png,y\n")
  rejects = Rejects()
  source = sources.read_csv(tmp_path, on_error="skip", rejects=rejects)
  assert list(source.examples["path"]) == [str(tmp_path / "b.png")]
  assert len(rejects) == 1 and rejects.errors[0].row == 3
  assert "labelled 'y' here and 'x' there: both rows left out" in (
      rejects.errors[0].reason)


# ---------------------------------------------------------------- EXIF


def _with_orientation(path, pixels, value, fmt):
  image = Image.fromarray(pixels)
  exif = image.getexif()
  exif[0x0112] = value
  image.save(path, format=fmt, exif=exif.tobytes(), **(
      {"quality": 100} if fmt == "JPEG" else {}))
  return str(path)


@pytest.mark.parametrize("value", range(1, 9))
def test_exif_orientation_is_applied_as_viewers_do(tmp_path, value):
  pixels = (np.arange(6 * 10, dtype=np.uint8).reshape(6, 10) * 4)
  path = _with_orientation(tmp_path / "cell.png", pixels, value, "PNG")
  upright = np.asarray(ImageOps.exif_transpose(Image.open(path)))
  loaded = images.load_image(path, 1)
  stored = images.decode_png(loaded.png)[..., 0]
  np.testing.assert_array_equal(stored, upright)
  assert (loaded.height, loaded.width) == upright.shape


def test_a_camera_jpeg_with_orientation_6_is_stored_upright(tmp_path):
  pixels = np.zeros((8, 16, 3), np.uint8)
  pixels[:, :8] = 255    # bright left half, as the sensor saw it
  path = _with_orientation(tmp_path / "cell.jpg", pixels, 6, "JPEG")
  assert decoding.orientation(Image.open(path)) == 6
  stored = images.decode_png(images.load_image(path, 3).png)
  assert stored.shape == (16, 8, 3)
  # Turned clockwise: the sensor's left half is now the top half.
  assert stored[:8].mean() > 200 and stored[8:].mean() < 50
  assert images.decode_png(images.load_image(
      path, 3).png).tobytes() == stored.tobytes()


def test_an_upright_8bit_png_keeps_its_bytes_but_a_turned_one_does_not(tmp_path):
  pixels = np.arange(12, dtype=np.uint8).reshape(3, 4)
  plain = _image(tmp_path / "plain.png", 3)
  assert images.load_image(plain, 1).png == open(plain, "rb").read()
  turned = _with_orientation(tmp_path / "turned.png", pixels, 8, "PNG")
  loaded = images.load_image(turned, 1)
  assert loaded.png != open(turned, "rb").read()
  assert (loaded.height, loaded.width) == (4, 3)
  buffer = io.BytesIO(loaded.png)
  assert decoding.orientation(Image.open(buffer)) == 1
