"""ICPR 2014 / I3A Task 1 cells as the contest released them (`read_icpr2014`).

Registered in `sources.LAYOUTS` as `icpr2014` (the synthetic set is written in this
layout too): gt_training.csv beside or above the images, which lie flat or in
training/ validation/ test/ folders that then give the split.
"""

from __future__ import annotations


import os

from hep2tf.data.sources.common import (check_root, CLASS_COLUMNS, finish_source,
                                        folder_listing, GroundTruth, ICPR2014_CLASSES,
                                        icpr_id, ID_COLUMNS, INTENSITY_COLUMNS,
                                        list_subdirs, normal_split, Problems, Source,
                                        SPECIMEN_COLUMNS)
from hep2tf.data.sources.files import (best_folder, find_files, Folder, image_and_mask,
                                       Resolver)
from hep2tf.data.sources.tables import read_table
from hep2tf.errors import InputError, Rejects


def read_icpr2014(data_dir: str | os.PathLike, *, on_error: str = "fail",
                  rejects: Rejects | None = None, csv_path: str | None = None,
                  name: str = "icpr2014") -> Source:
  """ICPR 2014 / I3A Task 1 cells.

  Expects `gt_training.csv` (in data_dir or up to two folders down, or `csv_path`),
  comma separated, header `Image ID,Image class` plus optional intensity and specimen
  columns (matched loosely: `Intensity`, `Specimen ID`, `SpecimenID` ...). IDs are
  zero-padded to 5 digits for the file names (`00001.png`); masks `00001_Mask.png`
  beside the image when present. Images lie flat beside the CSV or in one subfolder,
  or in `training/` `validation/` `test/` folders, which then give the split.
  Returns 6 classes in the contest's order, channels 1.
  """
  root, real_root = check_root(data_dir)
  problems = Problems(on_error, rejects)
  path = _locate_csv(root, csv_path, "gt_training.csv",
                     "the ICPR 2014 layout: gt_training.csv with 'Image ID,Image "
                     "class' and the cell images 00001.png ...")
  table = read_table(path, ",", problems)
  expected = "'Image ID,Image class' (optionally Intensity, Specimen)"
  id_col = table.require(ID_COLUMNS, expected)
  class_col = table.require(CLASS_COLUMNS, expected)
  intensity_col = table.column(INTENSITY_COLUMNS)
  specimen_col = table.column(SPECIMEN_COLUMNS)

  ids = [icpr_id(values[id_col], 5) for _, _, values in table.rows]
  folders = _icpr2014_folders(root, os.path.dirname(path),
                              {f"{i}.png".lower() for i in ids})
  resolver = Resolver(root, real_root)
  truth = GroundTruth(ICPR2014_CLASSES, path, problems, id_name="Image ID")
  rows = []
  for (row, line, values), cell_id in zip(table.rows, ids):
    label = truth.label(cell_id, values[class_col], row, line)
    if label is None:
      continue
    image, mask, problem = image_and_mask(resolver, folders, cell_id, "_Mask")
    if problem:
      problems(problem, path, row, line)
      continue
    rows.append(dict(
        id=cell_id, path=image.path, label=label, mask_path=mask,
        intensity=values[intensity_col].lower() if intensity_col is not None else "",
        group=values[specimen_col] if specimen_col is not None else "",
        split=image.split))
  return finish_source(name, list(ICPR2014_CLASSES), 1, rows, path, problems)


def _locate_csv(root: str, csv_path: str | None, file_name: str,
                expected: str) -> str:
  """The layout's CSV: `csv_path` (relative to root) or the only `file_name` found."""
  if csv_path:
    path = csv_path if os.path.isabs(csv_path) else os.path.join(root, csv_path)
    if not os.path.isfile(path):
      raise InputError("CSV file not found", file=path)
    return path
  found = find_files(root, [file_name])
  if not found:
    raise InputError(f"expected {expected}; found no {file_name} in the folder or "
                     f"two folders down. The folder contains: {folder_listing(root)}",
                     file=root)
  # The shallowest one wins: a copy inside a subfolder is usually a backup.
  found.sort(key=lambda p: (p.count(os.sep), p))
  return found[0]


def _icpr2014_folders(root: str, csv_dir: str, wanted: set[str]) -> list[Folder]:
  """Where the images are: split folders if they hold them, else the best flat one."""
  bases = list(dict.fromkeys([csv_dir, root]))
  split_dirs = [(os.path.join(b, d), normal_split(d))
                for b in bases for d in list_subdirs(b) if normal_split(d)]
  split_folders = []
  for path, split in split_dirs:
    inner = [path] + [os.path.join(path, d) for d in list_subdirs(path)]
    best = best_folder(inner, wanted)
    if best is not None:
      best.split = split
      split_folders.append(best)
  if split_folders:
    return split_folders
  candidates = bases + [os.path.join(b, d) for b in bases for d in list_subdirs(b)]
  best = best_folder(candidates, wanted)
  if best is None:
    example = sorted(wanted)[0] if wanted else "00001.png"
    raise InputError(f"none of the {len(wanted)} images named in the CSV (e.g. "
                     f"{example}) is beside it, in a subfolder or in training/ "
                     f"validation/ test/ folders. The CSV folder contains: "
                     f"{folder_listing(csv_dir)}", file=csv_dir)
  return [best]
