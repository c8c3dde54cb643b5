"""ICPR 2012 HEp-2 cells as the MIVIA contest download ships them (`read_icpr2012`).

Registered in `sources.LAYOUTS` as `icpr2012`; the cells are grouped by source slide
from the contest's `cells.csv` when it is there.
"""

from __future__ import annotations


import os
from typing import Sequence


from hep2tf.data.sources.common import (check_root, CLASS_COLUMNS, finish_source,
                                        folder_listing, GroundTruth, ICPR2012_CLASSES,
                                        icpr_id, ID_COLUMNS, INTENSITY_COLUMNS,
                                        list_subdirs, match_key, normal_split, Problems,
                                        Source)
from hep2tf.data.sources.files import Folder, image_and_mask, Resolver
from hep2tf.data.sources.tables import header_error, read_table
from hep2tf.errors import InputError, Rejects


def read_icpr2012(data_dir: str | os.PathLike, *, on_error: str = "fail",
                  rejects: Rejects | None = None, cells_csv: str | None = None,
                  name: str = "icpr2012") -> Source:
  """ICPR 2012 HEp-2 cells.

  Expects `training/` and/or `test/` (in data_dir or one folder down) with cells
  `001.png` and masks `001_mask.png`; semicolon CSVs `gt_training.csv` (`ID;pattern`)
  and optional `training.csv` (`ID;intensity;width;height`), `gt_test.csv` and
  `test.csv` likewise, at the root or inside the split folders. The split comes from
  the folder (training -> train, test -> test). Returns 6 classes, channels 3.

  The group is the cell's source slide (1-28), read from the contest's `cells.csv`
  (`;`, a header row, columns by position: contest id, training/test, source image,
  intensity, ...), found beside the split folders or inside them, or given as
  `cells_csv` (relative to data_dir). Without it the slides are unknown and a note
  says that validation carved from training is not slide-disjoint.
  """
  root, real_root = check_root(data_dir)
  problems = Problems(on_error, rejects)
  resolver = Resolver(root, real_root)
  splits = _icpr2012_split_dirs(root)
  base = os.path.dirname(splits[0][1])
  slide_files = _icpr2012_cells_csvs(root, base, [d for _, d in splits], cells_csv)
  slides = _icpr2012_slides(slide_files, problems)
  rows = []
  for folder_name, split_dir in splits:
    split = normal_split(folder_name)
    csv_name = "training" if split == "train" else "test"
    base = os.path.dirname(split_dir)
    gt_path = _first_file([split_dir, base], f"gt_{csv_name}.csv")
    if gt_path is None:
      raise InputError(f"expected gt_{csv_name}.csv ('ID;pattern') in {split_dir} "
                       f"or {base}; found: {folder_listing(split_dir)}", file=split_dir)
    table = read_table(gt_path, ";", problems)
    id_col = table.require(ID_COLUMNS, "'ID;pattern'")
    class_col = table.require(CLASS_COLUMNS, "'ID;pattern'")
    intensities = _icpr2012_intensities(
        _first_file([split_dir, base], f"{csv_name}.csv"), problems)
    folder = Folder.scan(split_dir, split)
    truth = GroundTruth(ICPR2012_CLASSES, gt_path, problems)
    for row, line, values in table.rows:
      cell_id = icpr_id(values[id_col], 3)
      label = truth.label(cell_id, values[class_col], row, line)
      if label is None:
        continue
      image, mask, problem = image_and_mask(resolver, [folder], cell_id, "_mask")
      slide = slides.get((split, cell_id), "")
      if not problem and slide_files and not slide:
        problem = (f"cell {cell_id} of {folder_name}/ has no row in "
                   f"{' or '.join(slide_files)}, so its slide is unknown")
      if problem:
        problems(problem, gt_path, row, line)
        continue
      rows.append(dict(id=cell_id, path=image.path, label=label, mask_path=mask,
                       intensity=intensities.get(cell_id, ""), group=slide,
                       split=split))
  return finish_source(name, list(ICPR2012_CLASSES), 3, rows, root, problems,
                       notes=_icpr2012_notes(rows, slide_files, base))


def _icpr2012_cells_csvs(root: str, base: str, split_dirs: Sequence[str],
                         cells_csv: str | None) -> list[str]:
  """The cells.csv files: the option's, else those beside or in the split folders."""
  if cells_csv:
    path = cells_csv if os.path.isabs(cells_csv) else os.path.join(root, cells_csv)
    if not os.path.isfile(path):
      raise InputError("cells.csv not found", file=path)
    return [path]
  found = [_first_file([folder], "cells.csv")
           for folder in dict.fromkeys([base, root, *split_dirs])]
  return [f for f in found if f]


def _icpr2012_slides(paths: Sequence[str],
                     problems: Problems) -> dict[tuple[str, str], str]:
  """(split, cell id) -> source slide, from cells.csv read by column position."""
  expected = ("8 columns: contest id; training/test; source image (1-28); "
              "intensity; ...; pattern; ...")
  slides: dict[tuple[str, str], str] = {}
  for path in paths:
    table = read_table(path, ";", problems)
    if len(table.header) < 3:
      raise header_error(table, expected)
    for row, line, values in table.rows:
      key = (normal_split(values[1]), icpr_id(values[0], 3))
      slide = icpr_id(values[2], 1)
      problem = ""
      if key[0] is None:
        problem = f"column 2 is {values[1]!r}; expected training or test"
      elif not slide.isdigit():
        problem = f"column 3 (source image) is {values[2]!r}; expected a number 1-28"
      elif slides.get(key, slide) != slide:
        problem = (f"cell {key[1]} ({values[1]}) is listed again with another "
                   f"slide ({slides[key]}, now {slide})")
      if problem:
        problems(problem, path, row, line)
        continue
      slides[key] = slide
  return slides


def _icpr2012_notes(rows: list[dict[str, str]], slide_files: list[str],
                    base: str) -> list[str]:
  if not slide_files:
    return [f"ICPR 2012: no cells.csv in {base}, so the source slide of each cell "
            "is unknown: validation carved from training is NOT slide-disjoint "
            "(it shares slides with train, so its MCA is optimistic). Put the "
            "contest's cells.csv beside training/ and test/ to group by slide."]
  by_split: dict[str, set[str]] = {}
  for r in rows:
    by_split.setdefault(r["split"], set()).add(r["group"])
  notes = ["ICPR 2012: cells grouped by source slide from "
           f"{', '.join(slide_files)} (" + ", ".join(
               f"{s}: {len(g)} slides" for s, g in by_split.items()) + ")"]
  shared = set.intersection(*by_split.values()) if len(by_split) > 1 else set()
  if shared:
    notes.append(f"ICPR 2012: slides {', '.join(sorted(shared, key=int))} have "
                 "cells in both training/ and test/ of the contest's split")
  return notes


def _icpr2012_split_dirs(root: str) -> list[tuple[str, str]]:
  """(folder name, path) of the training/ and test/ folders, here or one level down."""
  for base in [root] + [os.path.join(root, d) for d in list_subdirs(root)]:
    found = [(d, os.path.join(base, d)) for d in list_subdirs(base)
             if match_key(d) in ("training", "train", "test")]
    found.sort(key=lambda f: normal_split(f[0]) == "test")   # training first
    if found:
      return found
  raise InputError("expected the ICPR 2012 layout: training/ and test/ folders of "
                   "001.png cells with gt_training.csv / gt_test.csv ('ID;pattern'); "
                   f"found: {folder_listing(root)}", file=root)


def _first_file(folders: Sequence[str], file_name: str) -> str | None:
  for folder in folders:
    listed = Folder.scan(folder)
    if file_name.lower() in listed.names:
      return os.path.join(folder, listed.names[file_name.lower()])
  return None


def _icpr2012_intensities(path: str | None, problems: Problems) -> dict[str, str]:
  """ID -> intensity from `training.csv` / `test.csv`, or {} when there is none."""
  if path is None:
    return {}
  table = read_table(path, ";", problems)
  expected = "'ID;intensity;width;height'"
  id_col = table.require(ID_COLUMNS, expected)
  intensity_col = table.require(INTENSITY_COLUMNS, expected)
  return {icpr_id(v[id_col], 3): v[intensity_col].lower() for _, _, v in table.rows}
