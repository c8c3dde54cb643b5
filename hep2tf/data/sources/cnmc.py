"""C-NMC 2019 leukaemia cells from the top folder as Kaggle or TCIA ship it
(`read_cnmc`).

Registered in `sources.LAYOUTS` as `cnmc`: the official folds give train/validation,
the labelled preliminary test set gives test, the unlabelled final set is skipped.
"""

from __future__ import annotations


import dataclasses
import os
import re
from typing import Mapping, Sequence


from hep2tf.data.sources.common import (check_root, CNMC_CLASSES, finish_source,
                                        folder_listing, is_image_name, is_os_junk,
                                        list_subdirs, match_key, normal_split,
                                        option_bool, Problems, Source)
from hep2tf.data.sources.files import Folder, Resolver
from hep2tf.data.sources.tables import open_text, read_table
from hep2tf.errors import InputError, Rejects


_FOLD_RE = re.compile(r"fold_?(\d+)")
_CNMC_DEPTH = 4   # folders below data_dir searched for the parts of the layout


def read_cnmc(data_dir: str | os.PathLike, *, on_error: str = "fail",
              rejects: Rejects | None = None,
              fold_as_split: bool | str | Mapping[str, str] = "official",
              test_csv: str | None = None, include_test: bool | str = True,
              name: str = "cnmc") -> Source:
  """C-NMC 2019 leukaemia cells (binary: all = ALL = positive, hem = normal).

  Reads the top folder as it ships, Kaggle (`training_data/fold_0/all/*.bmp`,
  `validation_data/`, `testing_data/`) or TCIA (`C-NMC_training_data/fold_0/...`,
  the test images one folder deeper): the parts are found by their content, up to
  four folders below data_dir, not by their paths.
  - Training: `fold_N/all|hem/*.bmp`. The subject (group) is the second `_` field of
    the file name, upper-cased (`UID_h3_...` and `UID_H3_...` are one subject); the
    fold (`fold_0`) is kept per row.
  - fold_as_split: "official" (default; or true): the last fold -> validation, the
    others -> train; "train" (or false): every fold -> train, so validation is carved
    by subject, or none with validation_fraction 0 (for `sweep --folds=official`);
    or a mapping "fold_0=train,fold_1=train,fold_2=test".
  - include_test: the labelled preliminary test set -> test. Its CSV
    `Patient_ID,new_names,labels` (1 = ALL, 0 = hem) is found by its header (or is
    `test_csv`, relative to data_dir); its `N.bmp` images are the image folder
    nearest the CSV that holds the files it names.
  - Other image folders (the unlabelled final test set) are skipped with a note.
  """
  root, real_root = check_root(data_dir)
  problems = Problems(on_error, rejects)
  resolver = Resolver(root, real_root)
  scan = _cnmc_scan(root)
  if not scan.folds:
    raise InputError("expected the C-NMC layout: fold_0/ fold_1/ fold_2/ folders "
                     f"with all/ and hem/ inside; found: {folder_listing(root)}",
                     file=root)
  names = sorted({_fold_name(f) for f, _ in scan.folds},
                 key=lambda f: int(f.split("_")[1]))
  fold_splits = _fold_splits(fold_as_split, names)
  rows, seen = [], {}
  for fold, fold_dir in scan.folds:
    rows += _cnmc_fold(fold_dir, _fold_name(fold), fold_splits[_fold_name(fold)],
                       resolver, problems, seen)
  notes = [_fold_note(fold_splits)]
  claimed = set()
  if option_bool(include_test, "include_test"):
    test_rows, test_dir = _cnmc_test(root, resolver, problems, test_csv, scan, seen)
    rows += test_rows
    claimed.add(test_dir)
    if test_dir is None:
      notes.append("C-NMC: no labelled test CSV (Patient_ID,new_names,labels) "
                   "found, so no test split comes from the layout")
  for directory, count in scan.image_dirs:
    if directory not in claimed:
      notes.append(f"C-NMC: skipped {count} images in {directory}: no labels "
                   "for them here (the final test phase ships unlabelled); classify "
                   "them with python -m hep2tf.predict")
  return finish_source(name, list(CNMC_CLASSES), 3, rows, root, problems,
                       positive_class="all", notes=notes)


def _cnmc_fold(fold_dir: str, fold: str, split: str, resolver: Resolver,
               problems: Problems, seen: dict[str, str]) -> list[dict[str, str]]:
  """Rows of one fold folder's all/ and hem/ images."""
  classes = {match_key(d): d for d in list_subdirs(fold_dir)}
  if not set(classes) & set(CNMC_CLASSES):
    raise InputError(f"expected all/ and hem/ inside {os.path.basename(fold_dir)}; "
                     f"found: {folder_listing(fold_dir)}", file=fold_dir)
  rows = []
  for label in CNMC_CLASSES:
    if label not in classes:
      continue
    folder = Folder.scan(os.path.join(fold_dir, classes[label]))
    for file_name in sorted(folder.names.values()):
      if not is_image_name(file_name):
        continue
      path, problem = resolver.in_folder(folder, file_name)
      cell_id = os.path.splitext(file_name)[0]
      fields = cell_id.split("_")
      if not problem and len(fields) < 2:
        problem = (f"file name {file_name} does not read as UID_<subject>_..., so "
                   "the subject is unknown")
      if not problem and match_key(fields[-1]) in CNMC_CLASSES and match_key(
          fields[-1]) != label:
        problem = f"file name says {fields[-1]!r} but the file is in {label}/"
      if not problem and cell_id in seen:
        problem = f"duplicate image {cell_id} (also {seen[cell_id]})"
      if problem:
        problems(problem, os.path.join(folder.path, file_name))
        continue
      seen[cell_id] = path
      rows.append(dict(id=cell_id, path=path, label=label, mask_path="",
                       intensity="", group=fields[1].upper(), split=split,
                       fold=fold))
  return rows


@dataclasses.dataclass
class _CnmcScan:
  """What one walk of a C-NMC top folder found."""
  folds: list[tuple[str, str]]        # (folder name, path) of fold_N folders
  csvs: list[str]
  image_dirs: list[tuple[str, int]]   # other folders holding images, with a count


def _cnmc_scan(root: str) -> _CnmcScan:
  scan = _CnmcScan([], [], [])
  for directory, dirs, files in os.walk(root):
    level = os.path.relpath(directory, root).count(os.sep) + (directory != root)
    scan.csvs += [os.path.join(directory, f) for f in sorted(files)
                  if f.lower().endswith(".csv") and not is_os_junk(f)]
    count = sum(is_image_name(f) for f in files)
    if count:
      scan.image_dirs.append((directory, count))
    scan.folds += [(d, os.path.join(directory, d)) for d in sorted(dirs)
                   if _FOLD_RE.fullmatch(d.lower())]
    # Fold folders are read by _cnmc_fold: never walk into them.
    dirs[:] = sorted(d for d in dirs if not is_os_junk(d) and not
                     _FOLD_RE.fullmatch(d.lower())) if level < _CNMC_DEPTH else []
  return scan


def _fold_name(text: str) -> str:
  """'fold_0', 'Fold0', '0' -> 'fold_0'; other text is returned as given."""
  match = (_FOLD_RE.fullmatch(match_key(text).replace("fold", "fold_", 1))
           or re.fullmatch(r"(\d+)", text.strip()))
  return f"fold_{int(match.group(1))}" if match else text


def _fold_splits(value: bool | str | Mapping[str, str],
                 folds: list[str]) -> dict[str, str]:
  """fold name -> split, from the `fold_as_split` option (see read_cnmc)."""
  if value is None or value is True or (isinstance(value, str) and match_key(value) in (
      "official", "default", "true", "yes", "1")):
    return {f: ("validation" if f == folds[-1] else "train") for f in folds}
  if value is False or (isinstance(value, str) and match_key(value) in (
      "train", "false", "no", "0", "none")):
    return {f: "train" for f in folds}
  if isinstance(value, str):
    pairs = [re.split(r"[=:]", p, maxsplit=1) for p in value.split(",") if p.strip()]
    if any(len(p) != 2 for p in pairs):
      raise InputError("fold_as_split must be official, train or a mapping like "
                       f"'fold_0=train,fold_1=train,fold_2=validation'; got {value!r}")
    value = dict(pairs)
  mapping = {}
  for fold, split in value.items():
    if normal_split(split) is None:
      raise InputError(f"fold_as_split: {split!r} is not a split (train, "
                       "validation, test)")
    if _fold_name(fold) not in folds:
      raise InputError(f"fold_as_split names {fold!r}; the folds found are "
                       f"{', '.join(folds)}")
    mapping[_fold_name(fold)] = normal_split(split)
  missing = [f for f in folds if f not in mapping]
  if missing:
    raise InputError(f"fold_as_split names no split for {', '.join(missing)}; "
                     f"it maps {sorted(mapping)}")
  return mapping


def _fold_note(fold_splits: dict[str, str]) -> str:
  by_split: dict[str, list[str]] = {}
  for fold, split in fold_splits.items():
    by_split.setdefault(split, []).append(fold)
  parts = "; ".join(f"{', '.join(f)} -> {s}" for s, f in by_split.items())
  return (f"C-NMC: the official folds give the splits: {parts} (change with "
          "--layout_option fold_as_split=...)")


def _cnmc_test(root: str, resolver: Resolver, problems: Problems,
               test_csv: str | None, scan: _CnmcScan,
               seen: dict[str, str]) -> tuple[list[dict[str, str]], str | None]:
  """(rows, image folder) of the labelled preliminary test set; ([], None): none."""
  wanted = ("patientid", "newnames", "labels")
  if test_csv:
    candidates = [test_csv if os.path.isabs(test_csv)
                  else os.path.join(root, test_csv)]
  else:
    candidates = [c for c in scan.csvs if _csv_has_columns(c, wanted)]
    if not candidates:
      return [], None
    if len(candidates) > 1:
      raise InputError(f"found several test CSVs ({', '.join(candidates)}); "
                       "choose one with --layout_option test_csv=PATH", file=root)
  path = candidates[0]
  table = read_table(path, None, problems)
  expected = "'Patient_ID,new_names,labels'"
  patient_col, name_col, label_col = (table.require([w], expected) for w in wanted)
  names = [_bmp_name(v[name_col]) for _, _, v in table.rows]
  folder = _cnmc_test_folder(path, scan, {n.lower() for n in names})
  if folder is None:
    raise InputError(f"no image folder below {root} holds the test images the CSV "
                     f"names (e.g. {names[0]})", file=path)
  rows = []
  for (row, line, values), file_name in zip(table.rows, names):
    label = {"1": "all", "0": "hem", "all": "all", "hem": "hem"}.get(
        values[label_col].lower())
    cell_id = os.path.splitext(file_name)[0]
    subject = re.match(r"UID_([^_]+)_", values[patient_col], re.IGNORECASE)
    said = os.path.splitext(values[patient_col])[0].rsplit("_", 1)[-1].lower()
    problem = ""
    if label is None:
      problem = f"unknown label {values[label_col]!r}; expected 1 (ALL) or 0 (hem)"
    elif said in CNMC_CLASSES and said != label:
      problem = (f"Patient_ID {values[patient_col]!r} says {said} but labels says "
                 f"{values[label_col]} ({label})")
    elif cell_id in seen:
      problem = f"duplicate image {file_name} (also {seen[cell_id]})"
    image = None
    if not problem:
      image, problem = resolver.in_folder(folder, file_name)
    if problem:
      problems(problem, path, row, line)
      continue
    seen[cell_id] = image
    rows.append(dict(id=cell_id, path=image, label=label, mask_path="",
                     intensity="", split="test", fold="",
                     group=(subject.group(1) if subject
                            else values[patient_col]).upper()))
  return rows, folder.path


def _cnmc_test_folder(csv_path: str, scan: _CnmcScan,
                      wanted: set[str]) -> Folder | None:
  """The image folder holding most of `wanted`; ties: the size of the CSV, nearest.

  The unlabelled final set is also named 1.bmp, 2.bmp, ... (more of them), so the
  number of files and the distance from the CSV decide between the two.
  """
  csv_dir = os.path.dirname(csv_path)
  best, best_score = None, None
  for directory, count in scan.image_dirs:
    folder = Folder.scan(directory)
    hits = len(wanted.intersection(folder.names))
    distance = os.path.relpath(directory, csv_dir).count(os.sep) + (
        directory != csv_dir)
    score = (-hits, abs(count - len(wanted)), distance, directory)
    if hits and (best_score is None or score < best_score):
      best, best_score = folder, score
  return best


def _bmp_name(value: str) -> str:
  return value if os.path.splitext(value)[1] else f"{value}.bmp"


def _csv_has_columns(path: str, keys: Sequence[str]) -> bool:
  try:
    with open_text(path) as f:
      first = f.readline()
  except OSError:
    return False
  header = {match_key(c) for c in re.split(r"[,;\t]", first)}
  return set(keys) <= header
