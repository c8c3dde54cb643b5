"""Tests of the source layout readers on tiny layouts written in tmp_path."""

import os

import numpy as np
import pytest
from PIL import Image

from hep2tf.data import sources
from hep2tf.errors import InputError, Rejects


def _image(path, mode="L", size=4):
  """Writes a tiny image (format from the extension) and returns its path."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  channels = 1 if mode == "L" else 3
  pixels = np.full((size, size, channels), 7, np.uint8).squeeze()
  Image.fromarray(pixels, mode).save(path)
  return path


def _write(path, text, encoding="utf-8", newline="\n"):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", encoding=encoding, newline="") as f:
    f.write(text.replace("\n", newline))
  return path


# ---------------------------------------------------------------- ICPR 2014

_ROWS_2014 = [("1", "Homogeneous", "positive", "s1"),
              ("2", "Speckled", "intermediate", "s1"),
              ("3", "Nucleolar", "positive", "s2"),
              ("4", "Centromere", "intermediate", "s2"),
              ("5", "NuMem", "positive", "s3")]


def _icpr2014(root, rows=_ROWS_2014, header="Image ID,Image class,Intensity,Specimen",
              image_dir="", masks=True, csv_text=None):
  """The synthetic generator's layout: gt_training.csv with images flat beside it."""
  lines = [header] + [",".join(r) for r in rows]
  _write(os.path.join(root, "gt_training.csv"),
         csv_text if csv_text is not None else "\n".join(lines) + "\n")
  for r in rows:
    name = r[0].zfill(5)
    _image(os.path.join(root, image_dir, f"{name}.png"))
    if masks:
      _image(os.path.join(root, image_dir, f"{name}_Mask.png"))
  return str(root)


def test_icpr2014_flat_like_the_generator(tmp_path):
  source = sources.read_source("icpr2014", _icpr2014(tmp_path))
  ex = source.examples
  assert source.name == "icpr2014" and source.channels == 1
  assert source.class_names == list(sources.ICPR2014_CLASSES)  # Golgi absent, listed
  assert list(ex.columns) == list(sources.COLUMNS)
  assert list(ex["id"]) == ["00001", "00002", "00003", "00004", "00005"]
  assert list(ex["label"]) == ["Homogeneous", "Speckled", "Nucleolar",
                               "Centromere", "NuMem"]
  assert ex.loc[1, "path"] == str(tmp_path / "00002.png")
  assert ex.loc[1, "mask_path"] == str(tmp_path / "00002_Mask.png")
  assert list(ex["intensity"])[:2] == ["positive", "intermediate"]
  assert list(ex["group"]) == ["s1", "s1", "s2", "s2", "s3"]
  assert set(ex["split"]) == {""}
  assert all(isinstance(v, str) for v in ex.to_numpy().ravel())


def test_icpr2014_images_subfolder_no_masks_minimal_header(tmp_path):
  rows = [(i, c) for i, c, _, _ in _ROWS_2014]
  _icpr2014(tmp_path, rows, header="Image ID,Image class", image_dir="images",
            masks=False)
  ex = sources.read_icpr2014(tmp_path).examples
  assert len(ex) == 5
  assert ex.loc[0, "path"] == str(tmp_path / "images" / "00001.png")
  assert set(ex["mask_path"]) == {""} and set(ex["group"]) == {""}


def test_icpr2014_split_folders(tmp_path):
  _write(tmp_path / "gt_training.csv",
         "Image ID,Image class\n1,Homogeneous\n2,Golgi\n3,Speckled\n")
  _image(str(tmp_path / "training" / "00001.png"))
  _image(str(tmp_path / "training" / "00001_Mask.png"))
  _image(str(tmp_path / "validation" / "00002.png"))
  _image(str(tmp_path / "test" / "00003.png"))
  ex = sources.read_icpr2014(tmp_path).examples
  assert list(ex["split"]) == ["train", "validation", "test"]
  assert ex.loc[0, "mask_path"].endswith(os.path.join("training", "00001_Mask.png"))
  assert ex.loc[2, "mask_path"] == ""


def test_icpr2014_csv_hygiene_bom_crlf_whitespace_variants(tmp_path):
  text = ("\ufeff Image ID , Image Class , INTENSITY , Specimen ID \n"
          " 1 , homogeneous , Positive , 7 \n\n"
          "00002,  GOLGI  ,intermediate,8\n")
  _write(tmp_path / "gt_training.csv", text, newline="\r\n")
  _image(str(tmp_path / "00001.png"))
  _image(str(tmp_path / "00002.png"))
  ex = sources.read_icpr2014(tmp_path).examples
  assert list(ex["id"]) == ["00001", "00002"]
  assert list(ex["label"]) == ["Homogeneous", "Golgi"]
  assert list(ex["intensity"]) == ["positive", "intermediate"]
  assert list(ex["group"]) == ["7", "8"]


@pytest.mark.parametrize("text, expect", [
    ("", "empty"),
    ("\n  \n", "empty"),
    ("Image ID,Image class\n", "no data rows"),
    ("Image ID;Image class\n1;Homogeneous\n", "wrong separator"),
    ("ID number,Pattern name\n1,Homogeneous\n", "found header"),
])
def test_icpr2014_structural_problems_always_raise(tmp_path, text, expect):
  _write(tmp_path / "gt_training.csv", text)
  _image(str(tmp_path / "00001.png"))
  with pytest.raises(InputError) as e:
    sources.read_source("icpr2014", tmp_path, on_error="skip", rejects=Rejects())
  assert expect in str(e.value)
  assert e.value.file.endswith("gt_training.csv")


def test_icpr2014_wrong_separator_lists_the_header_found(tmp_path):
  _write(tmp_path / "gt_training.csv", "Image ID;Image class\n1;Homogeneous\n")
  with pytest.raises(InputError, match=r"found header \['Image ID;Image class'\]"):
    sources.read_icpr2014(tmp_path)


def _bad_2014(tmp_path, cell_id, label="Homogeneous"):
  rows = [("1", "Homogeneous"), ("2", "Speckled"), (cell_id, label)]
  _icpr2014(tmp_path, rows[:2], header="Image ID,Image class", masks=False,
            csv_text="Image ID,Image class\n" + "".join(
                f"{i},{c}\n" for i, c in rows))
  return str(tmp_path / "gt_training.csv")


@pytest.mark.parametrize("cell_id, label, reason", [
    ("3", "Mitotic", "unknown class 'Mitotic'"),
    ("9", "Golgi", "00009.png not found"),
    ("00001", "Golgi", "duplicate Image ID 00001"),
    ("../outside", "Golgi", "climbs out of the data folder"),
    ("/etc/passwd", "Golgi", "climbs out of the data folder"),
])
def test_icpr2014_row_problems_name_file_and_row(tmp_path, cell_id, label, reason):
  csv_path = _bad_2014(tmp_path, cell_id, label)
  with pytest.raises(InputError) as e:
    sources.read_icpr2014(tmp_path)
  assert reason in e.value.reason
  assert e.value.file == csv_path and e.value.row == 3
  assert "(line 4)" in e.value.reason


def test_icpr2014_symlink_outside_is_rejected(tmp_path):
  data, outside = tmp_path / "data", tmp_path / "elsewhere"
  _bad_2014(data, "3")
  os.symlink(_image(str(outside / "secret.png")), data / "00003.png")
  with pytest.raises(InputError, match="outside the data folder") as e:
    sources.read_icpr2014(data)
  assert e.value.row == 3


def test_icpr2014_skip_collects_rejects_and_drops_rows(tmp_path):
  _write(tmp_path / "gt_training.csv",
         "Image ID,Image class\n1,Homogeneous\n2,Mitotic\n3,Golgi\n1,Golgi\n"
         "../x,Golgi\n")
  _image(str(tmp_path / "00001.png"))
  _image(str(tmp_path / "00002.png"))
  rejects = Rejects()
  source = sources.read_source("icpr2014", tmp_path, on_error="skip",
                               rejects=rejects)
  assert list(source.examples["id"]) == ["00001"]
  assert [e.row for e in rejects.errors] == [2, 3, 4, 5]
  rejects.write_csv(tmp_path / "rejects.csv")
  assert "Mitotic" in (tmp_path / "rejects.csv").read_text()


def test_icpr2014_extra_cells_and_windows_encoding(tmp_path):
  _write(tmp_path / "gt_training.csv",
         "Image ID,Image class,Specimen\n1,Homogeneous,Zürich,,\n2,Golgi,a,b\n"
         "3,NuMem,c\n", encoding="cp1252")
  for i in ("00001", "00002", "00003"):
    _image(str(tmp_path / f"{i}.png"))
  rejects = Rejects()
  ex = sources.read_icpr2014(tmp_path, on_error="skip", rejects=rejects).examples
  assert list(ex["group"]) == ["Zürich", "c"]   # trailing empty cells are fine
  assert len(rejects) == 1 and rejects.errors[0].row == 2
  assert "4 cells but the header has 3 columns (line 3)" in rejects.errors[0].reason


def test_icpr2014_all_rows_rejected_raises(tmp_path):
  _write(tmp_path / "gt_training.csv", "Image ID,Image class\n1,Mitotic\n")
  _image(str(tmp_path / "00001.png"))
  with pytest.raises(InputError, match="no usable examples"):
    sources.read_icpr2014(tmp_path, on_error="skip")


def test_icpr2014_on_an_empty_or_foreign_folder(tmp_path):
  with pytest.raises(InputError, match=r"found no gt_training.csv.*\(empty folder\)"):
    sources.read_icpr2014(tmp_path)
  _icpr2012(tmp_path)
  with pytest.raises(InputError, match="wrong separator"):
    sources.read_icpr2014(tmp_path)


# ---------------------------------------------------------------- ICPR 2012


def _icpr2012(root):
  """training/ (3 cells, masks) and test/ (2 cells); gt CSVs at the root."""
  _write(os.path.join(root, "gt_training.csv"),
         "ID;pattern\n1;homogeneous\n2;coarse_speckled\n3;cytoplasmatic\n")
  _write(os.path.join(root, "training", "training.csv"),
         "ID;intensity;width;height\n1;positive;40;40\n2;intermediate;50;50\n"
         "3;positive;60;60\n")
  _write(os.path.join(root, "test", "gt_test.csv"),
         "ID;pattern\n004;fine speckled\n5;Nucleolar\n")
  for split, ids in (("training", ("001", "002", "003")), ("test", ("004", "005"))):
    for i in ids:
      _image(os.path.join(root, split, f"{i}.png"), "RGB")
      _image(os.path.join(root, split, f"{i}_mask.png"))
  return str(root)


def test_icpr2012_layout(tmp_path):
  source = sources.read_source("icpr2012", _icpr2012(tmp_path))
  ex = source.examples
  assert source.channels == 3 and source.class_names[1] == "coarse_speckled"
  assert list(ex["id"]) == ["001", "002", "003", "004", "005"]
  assert list(ex["split"]) == ["train"] * 3 + ["test"] * 2
  assert list(ex["label"]) == ["homogeneous", "coarse_speckled", "cytoplasmatic",
                               "fine_speckled", "nucleolar"]
  assert list(ex["intensity"]) == ["positive", "intermediate", "positive", "", ""]
  assert ex.loc[3, "mask_path"] == str(tmp_path / "test" / "004_mask.png")


def test_icpr2012_on_icpr2014_folders(tmp_path):
  _icpr2014(tmp_path)
  with pytest.raises(InputError, match=r"training/ and test/.*found: 00001.png"):
    sources.read_icpr2012(tmp_path)
  os.makedirs(tmp_path / "training")
  with pytest.raises(InputError, match="wrong separator"):
    sources.read_icpr2012(tmp_path)


def test_icpr2012_missing_ground_truth(tmp_path):
  _image(str(tmp_path / "test" / "001.png"))
  with pytest.raises(InputError, match="expected gt_test.csv"):
    sources.read_icpr2012(tmp_path)


# ---------------------------------------------------------------- C-NMC


def _cnmc(root):
  """Three folds of all/hem BMPs, plus the preliminary test set and its CSV."""
  files = {"fold_0": ["UID_57_29_1_all", "UID_H10_43_1_hem"],
           "fold_1": ["UID_58_1_2_all", "UID_H11_2_1_hem"],
           "fold_2": ["UID_59_3_3_all", "UID_H12_9_9_hem"]}
  for fold, names in files.items():
    for n in names:
      _image(os.path.join(root, "training_data", fold, n.rsplit("_", 1)[1],
                          f"{n}.bmp"), "RGB")
  _write(os.path.join(root, "validation_data", "labels.csv"),
         "Patient_ID,new_names,labels\nUID_60_1_1_all.bmp,1.bmp,1\n"
         "UID_H20_1_1_hem.bmp,2.bmp,0\n")
  for n in ("1", "2"):
    _image(os.path.join(root, "validation_data", "images", f"{n}.bmp"), "RGB")
  return str(root)


def test_cnmc_folds_groups_and_test_set(tmp_path):
  source = sources.read_source("cnmc", _cnmc(tmp_path))
  ex = source.examples.set_index("id")
  assert source.class_names == ["hem", "all"] and source.positive_class == "all"
  assert len(ex) == 8
  assert ex.loc["UID_57_29_1_all", "group"] == "57"
  assert ex.loc["UID_H10_43_1_hem", "label"] == "hem"
  assert ex.loc["UID_H10_43_1_hem", "group"] == "H10"
  assert ex.loc["1", "label"] == "all" and ex.loc["2", "group"] == "H20"
  # The official folds give train / validation by default; the fold is kept.
  assert ex.loc["UID_57_29_1_all", "split"] == "train"
  assert ex.loc["UID_59_3_3_all", "split"] == "validation"
  assert ex.loc["UID_59_3_3_all", "fold"] == "fold_2"
  assert set(ex.loc[["1", "2"], "split"]) == {"test"}
  assert set(ex.loc[["1", "2"], "fold"]) == {""}


def test_cnmc_fold_as_split(tmp_path):
  _cnmc(tmp_path)
  ex = sources.read_cnmc(tmp_path, fold_as_split="train",
                         include_test="false").examples.set_index("id")
  assert set(ex["split"]) == {"train"} and len(ex) == 6
  assert sorted(set(ex["fold"])) == ["fold_0", "fold_1", "fold_2"]
  ex = sources.read_cnmc(tmp_path, include_test=False,
                         fold_as_split="fold_0=test,fold_1=train,fold_2=train"
                         ).examples.set_index("id")
  assert ex.loc["UID_57_29_1_all", "split"] == "test"
  with pytest.raises(InputError, match="names no split for fold_2"):
    sources.read_cnmc(tmp_path, fold_as_split={"fold_0": "train", "fold_1": "val"})


def test_cnmc_misfiled_image_and_empty_folder(tmp_path):
  with pytest.raises(InputError, match="fold_0/ fold_1/ fold_2/"):
    sources.read_cnmc(tmp_path)
  _cnmc(tmp_path)
  wrong = _image(str(tmp_path / "training_data" / "fold_0" / "hem" /
                     "UID_61_1_1_all.bmp"), "RGB")
  with pytest.raises(InputError, match="file name says 'all'") as e:
    sources.read_cnmc(tmp_path)
  assert e.value.file == wrong
  rejects = Rejects()
  assert len(sources.read_cnmc(tmp_path, on_error="skip",
                               rejects=rejects).examples) == 8
  assert len(rejects) == 1


# ---------------------------------------------------------------- folder


def test_folder_per_class(tmp_path):
  _image(str(tmp_path / "b_class" / "x.PNG"))
  _image(str(tmp_path / "b_class" / "deep" / "y.tif"))
  _image(str(tmp_path / "a_class" / "x.jpg"), "RGB")
  _write(tmp_path / "a_class" / "notes.txt", "not an image")
  source = sources.read_source("folder", tmp_path, channels=1)
  ex = source.examples
  assert source.class_names == ["a_class", "b_class"] and source.channels == 1
  assert sorted(ex["id"]) == ["a_class/x.jpg", "b_class/deep/y.tif", "b_class/x.PNG"]
  assert set(ex["split"]) == {""}


def test_folder_with_split_folders(tmp_path):
  for split in ("training", "val", "Test"):
    for label in ("cat", "dog"):
      _image(str(tmp_path / split / label / "1.bmp"), "RGB")
  ex = sources.read_folder(tmp_path).examples
  assert len(ex) == 6
  assert sorted(set(ex["split"])) == ["test", "train", "validation"]


def test_folder_mismatches(tmp_path):
  with pytest.raises(InputError, match="empty folder"):
    sources.read_folder(tmp_path)
  _image(str(tmp_path / "train" / "cat" / "1.png"))
  _image(str(tmp_path / "dog" / "1.png"))
  with pytest.raises(InputError, match="split folders"):
    sources.read_folder(tmp_path)
  with pytest.raises(InputError, match="channels must be 1 or 3"):
    sources.read_folder(tmp_path / "dog", channels=4)


def test_folder_symlink_outside(tmp_path):
  data = tmp_path / "data"
  _image(str(data / "cat" / "1.png"))
  os.symlink(_image(str(tmp_path / "secret" / "2.png")), data / "cat" / "2.png")
  with pytest.raises(InputError, match="outside the data folder"):
    sources.read_folder(data)


# ---------------------------------------------------------------- generic CSV


def test_csv_generic_with_options(tmp_path):
  _image(str(tmp_path / "img" / "a.png"))
  _image(str(tmp_path / "img" / "b.png"))
  _image(str(tmp_path / "img" / "b_mask.png"))
  _write(tmp_path / "meta" / "cells.tsv",
         "File\tDiagnosis\tPatient\tFold\tMask\n"
         "../img/a.png\tsick\tp1\ttraining\t\n"
         "img/b.png\thealthy\tp2\tval\timg/b_mask.png\n")
  source = sources.read_source(
      "csv", tmp_path, csv_path="meta/cells.tsv", path_column="file",
      label_column="Diagnosis", group_column="patient", split_column="fold",
      mask_column="mask", intensity_column=None)
  ex = source.examples
  assert source.class_names == ["healthy", "sick"] and source.name == "cells"
  assert list(ex["path"]) == [str(tmp_path / "img" / "a.png"),
                              str(tmp_path / "img" / "b.png")]
  assert list(ex["split"]) == ["train", "validation"]
  assert list(ex["group"]) == ["p1", "p2"]
  assert ex.loc[1, "mask_path"] == str(tmp_path / "img" / "b_mask.png")


def test_csv_class_names_and_row_problems(tmp_path):
  _image(str(tmp_path / "a.png"))
  _write(tmp_path / "labels.csv",
         "path;label\na.png;2\na.png;2\n../x.png;2\nmissing.png;2\na.png;7\n")
  rejects = Rejects()
  source = sources.read_csv(tmp_path, class_names="10,2", on_error="skip",
                            rejects=rejects)
  assert source.class_names == ["10", "2"] and len(source.examples) == 1
  reasons = [e.reason for e in rejects.errors]
  assert "duplicate path" in reasons[0] and "climbs out" in reasons[1]
  assert "not found" in reasons[2] and "unknown class '7'" in reasons[3]
  assert [e.row for e in rejects.errors] == [2, 3, 4, 5]


def test_csv_missing_column_lists_header(tmp_path):
  _write(tmp_path / "labels.csv", "filename,label\na.png,x\n")
  with pytest.raises(InputError, match=r"'path'.*found header \['filename', 'label'\]"):
    sources.read_csv(tmp_path)


# ---------------------------------------------------------------- entry point


def test_read_source_checks_layout_and_options(tmp_path):
  assert set(sources.LAYOUTS) == {"icpr2014", "icpr2012", "cnmc", "folder", "csv",
                                  "fields"}
  with pytest.raises(InputError, match="unknown dataset layout"):
    sources.read_source("imagenet", tmp_path)
  with pytest.raises(InputError, match="takes no option fold_as_split"):
    sources.read_source("folder", tmp_path, fold_as_split=True)
  with pytest.raises(InputError, match="not found or not a folder"):
    sources.read_source("folder", tmp_path / "nope", csv_path=None)
  with pytest.raises(InputError, match="on_error"):
    sources.read_source("folder", tmp_path, on_error="ignore")


def test_icpr2014_reads_the_synthetic_generator(tmp_path):
  synth = pytest.importorskip("hep2tf.data.synth")
  synth.generate(tmp_path / "synth", num_images=12, seed=0)
  source = sources.read_source("icpr2014", tmp_path / "synth")
  ex = source.examples
  assert len(ex) == 12 and (ex["mask_path"] != "").all()
  assert set(ex["intensity"]) <= {"positive", "intermediate"}
  assert (ex["group"] != "").all() and ex["id"].str.fullmatch(r"\d{5}").all()
