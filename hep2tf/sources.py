"""Source layouts -> one table of examples.

Each reader turns a dataset folder, as users download it, into a `Source`: the class
names (label-id order), the channel count and a `pandas.DataFrame` with one row per
source image (columns `COLUMNS`, all str, "" where unknown). `read_source(layout,
data_dir, **options)` is the single entry point; `LAYOUTS` maps the layout names that
`create_records --dataset=NAME` accepts to the readers.

Images are never opened here (that is `images.py`): a reader only checks that the files
exist and that no path leaves the data folder, symlinks included.

Readers' keyword options are the layout options (`create_records --layout_option
KEY=VALUE`); text values such as "false" are accepted for every option.

Problems with one row (unknown class, missing file, duplicate id, a path that climbs
out) raise `InputError` with `on_error="fail"`, or are added to `rejects` and the row
dropped with `on_error="skip"`. Problems with the layout itself (no CSV, wrong header,
wrong separator, empty file, nothing found) always raise. Rows of a CSV are named by
their 1-based data row (the header is not counted) and, in the reason, the file line.
"""

from __future__ import annotations

import csv
import dataclasses
import inspect
import os
import re
from typing import Callable, Iterable, Mapping, Sequence

import pandas as pd
from absl import logging

from hep2tf.errors import InputError, Rejects

# `fold`: the dataset's own cross-validation fold (C-NMC fold_0..2), else "".
COLUMNS = ("id", "path", "label", "mask_path", "intensity", "group", "split", "fold")

IMAGE_EXTENSIONS = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")

ICPR2014_CLASSES = ("Homogeneous", "Speckled", "Nucleolar", "Centromere", "NuMem",
                    "Golgi")
ICPR2012_CLASSES = ("homogeneous", "coarse_speckled", "fine_speckled", "nucleolar",
                    "centromere", "cytoplasmatic")
CNMC_CLASSES = ("hem", "all")

# Folder and column spellings seen in the wild, keyed by `_key` (lower, alphanumeric).
_SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "validation", "valid": "validation", "validation": "validation",
    "test": "test", "testing": "test",
}
_CLASS_ALIASES = {"nuclearmembrane": "NuMem", "cytoplasmic": "cytoplasmatic"}
_ID_COLUMNS = ("imageid", "id", "cellid", "image")
_CLASS_COLUMNS = ("imageclass", "class", "pattern", "label")
_INTENSITY_COLUMNS = ("intensity",)
_SPECIMEN_COLUMNS = ("specimen", "specimenid", "specimenno", "specimennumber")
_SEPARATORS = (",", ";", "\t")
_SHOW = 8     # folder entries listed in an error message


@dataclasses.dataclass
class Source:
  """One dataset as a table of examples.

  name: dataset name, snake_case. class_names: canonical order = label ids.
  channels: 1 or 3. examples: DataFrame with `COLUMNS` (str, "" where unknown).
  positive_class: the positive class of a binary set, else None.
  notes: what the reader decided about the layout (which fold became validation,
  what was skipped, why a split cannot be kept apart by slide), one sentence each;
  the converter prints them and records them in hep2tf.json.
  """
  name: str
  class_names: list[str]
  channels: int
  examples: pd.DataFrame
  positive_class: str | None = None
  notes: list[str] = dataclasses.field(default_factory=list)


# ---------------------------------------------------------------- small helpers


_NOT_ALNUM = re.compile(r"[^0-9a-z]")


def _key(text: str) -> str:
  """Lower-case alphanumeric form used to match names loosely."""
  return _NOT_ALNUM.sub("", text.lower())


def _listing(directory: str) -> str:
  """A few entries of a folder, for error messages."""
  try:
    names = sorted(os.listdir(directory))
  except OSError as e:
    return f"(cannot list: {e.strerror})"
  if not names:
    return "(empty folder)"
  more = f", ... ({len(names)} entries)" if len(names) > _SHOW else ""
  return ", ".join(names[:_SHOW]) + more


def _check_root(data_dir: str | os.PathLike) -> tuple[str, str]:
  """Returns (absolute data folder, its real path); raises if it is not a folder."""
  root = os.path.abspath(os.fspath(data_dir))
  if not os.path.isdir(root):
    raise InputError("data folder not found or not a folder", file=root)
  return root, os.path.realpath(root)


def _inside(real_root: str, real_path: str) -> bool:
  return real_path == real_root or real_path.startswith(
      real_root.rstrip(os.sep) + os.sep)


def _subdirs(directory: str) -> list[str]:
  """Non-hidden subfolders of a folder, sorted by name."""
  try:
    entries = list(os.scandir(directory))
  except OSError:
    return []
  return sorted(e.name for e in entries
                if not e.name.startswith(".") and e.is_dir())


def _is_image(name: str) -> bool:
  return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _normal_split(name: str) -> str | None:
  return _SPLIT_ALIASES.get(_key(name))


def _boolean(value: bool | str, option: str) -> bool:
  """A layout option given as a bool or as text (--layout_option key=value)."""
  if isinstance(value, bool):
    return value
  text = _key(str(value))
  if text in ("true", "yes", "1"):
    return True
  if text in ("false", "no", "0"):
    return False
  raise InputError(f"option {option} must be true or false, got {value!r}")


def _snake(text: str, default: str) -> str:
  name = re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")
  return name or default


class _Problems:
  """Raises row-level problems, or collects them and lets the caller drop the row."""

  def __init__(self, on_error: str, rejects: Rejects | None):
    if on_error not in ("fail", "skip"):
      raise InputError(f"on_error must be 'fail' or 'skip', got {on_error!r}")
    self.on_error = on_error
    self.rejects = rejects if rejects is not None else Rejects()
    self.count = 0

  def __call__(self, reason: str, file: str, row: int | None = None,
               line: int | None = None) -> None:
    if line is not None:
      reason = f"{reason} (line {line})"
    error = InputError(reason, file=file, row=row)
    if self.on_error == "fail":
      raise error
    self.rejects.add(error)
    self.count += 1


def _frame(rows: list[dict[str, str]], where: str) -> pd.DataFrame:
  """The examples table; raises when nothing is left to convert."""
  if not rows:
    raise InputError("no usable examples found (all rows were rejected or none "
                     "matched the layout)", file=where)
  frame = pd.DataFrame(rows, columns=list(COLUMNS)).fillna("")
  return frame.astype(str).reset_index(drop=True)


# ---------------------------------------------------------------- CSV reading


@dataclasses.dataclass
class _Table:
  """A CSV read as text: stripped header and rows of (data row, line, values)."""
  path: str
  separator: str
  header: list[str]
  rows: list[tuple[int, int, list[str]]]

  def column(self, aliases: Sequence[str]) -> int | None:
    """Index of the first header cell whose `_key` is one of `aliases`, else None."""
    keys = [_key(h) for h in self.header]
    for alias in aliases:
      if alias in keys:
        return keys.index(alias)
    return None

  def require(self, aliases: Sequence[str], expected: str) -> int:
    """Like `column`, but a missing column is a structural InputError."""
    index = self.column(aliases)
    if index is None:
      raise _header_error(self, expected)
    return index


def _header_error(table: _Table, expected: str) -> InputError:
  reason = (f"expected columns {expected} separated by {table.separator!r}; "
            f"found header {table.header!r}")
  others = [s for s in _SEPARATORS
            if s != table.separator and s in table.header[0]]
  if len(table.header) == 1 and others:
    reason += (f" (one column containing {others[0]!r}: wrong separator? the file "
               f"seems to be separated by {others[0]!r})")
  return InputError(reason, file=table.path)


def _open_text(path: str):
  """Opens a CSV as text: UTF-8 (a BOM is dropped), else Windows-1252."""
  try:
    with open(path, encoding="utf-8-sig") as f:
      f.read()
    return open(path, encoding="utf-8-sig", newline="")
  except UnicodeDecodeError:
    logging.warning("%s is not UTF-8; reading it as Windows-1252", path)
    return open(path, encoding="cp1252", newline="")


def _sniff(line: str) -> str:
  counts = [(line.count(s), s) for s in _SEPARATORS]
  best = max(counts, key=lambda c: c[0])
  return best[1] if best[0] else ","


def _read_table(path: str, separator: str | None,
                problems: _Problems) -> _Table:
  """Reads a CSV as stripped text cells; raises for a missing or empty file.

  `separator` None sniffs `,`, `;` or tab from the header line. Blank lines are
  skipped; a row with more non-empty cells than the header is a row problem.
  """
  if not os.path.isfile(path):
    raise InputError("CSV file not found", file=path)
  with _open_text(path) as f:
    text = f.read()
  lines = text.splitlines()
  first = next((l for l in lines if l.strip()), None)
  if first is None:
    raise InputError("the file is empty (expected a header line and data rows)",
                     file=path)
  separator = separator or _sniff(first)
  reader = csv.reader(lines, delimiter=separator)
  header: list[str] | None = None
  rows, row = [], 0
  for values in reader:
    values = [v.strip() for v in values]
    if not any(values):
      continue
    if header is None:
      header = values
      continue
    line, row = reader.line_num, row + 1
    extra = [v for v in values[len(header):] if v]
    if extra:
      problems(f"{len(values)} cells but the header has {len(header)} columns",
               path, row, line)
      continue
    values = (values + [""] * len(header))[:len(header)]
    rows.append((row, line, values))
  table = _Table(path, separator, header or [], rows)
  if not rows and not problems.count:
    raise InputError(f"no data rows below the header {table.header!r}", file=path)
  return table


# ---------------------------------------------------------------- file finding


@dataclasses.dataclass
class _Folder:
  """One folder listed once: lower-case name -> name, and which names are links."""
  path: str
  names: dict[str, str]
  links: set[str]
  split: str = ""

  @classmethod
  def scan(cls, path: str, split: str = "") -> "_Folder":
    names, links = {}, set()
    try:
      entries = list(os.scandir(path))
    except OSError:
      entries = []
    for e in entries:
      if e.is_file():
        names[e.name.lower()] = e.name
        if e.is_symlink():
          links.add(e.name)
    return cls(path, names, links, split)


class _Resolver:
  """Turns file names into checked absolute paths, caching folder real paths."""

  def __init__(self, root: str, real_root: str):
    self.root, self.real_root = root, real_root
    self._real_dirs: dict[str, str] = {}

  def _real_dir(self, directory: str) -> str:
    if directory not in self._real_dirs:
      self._real_dirs[directory] = os.path.realpath(directory)
    return self._real_dirs[directory]

  def escapes(self, path: str, is_link: bool | None = None) -> bool:
    """Whether `path` (absolute, normalised) resolves outside the data folder."""
    real = os.path.join(self._real_dir(os.path.dirname(path)),
                        os.path.basename(path))
    if is_link is None:
      is_link = os.path.islink(real)
    if is_link:
      real = os.path.realpath(real)
    return not _inside(self.real_root, real)

  def in_folder(self, folder: _Folder, name: str) -> tuple[str | None, str]:
    """(absolute path or None, problem) of file `name` in a listed folder."""
    if not name or name != os.path.basename(name) or name in (".", ".."):
      target = os.path.normpath(os.path.join(folder.path, name))
      if self.escapes(target):
        return None, f"{name!r} climbs out of the data folder {self.root}"
      return None, f"{name!r} is a path, expected a plain file name"
    actual = folder.names.get(name.lower())
    if actual is None:
      return None, f"image file {name} not found in {folder.path}"
    path = os.path.join(folder.path, actual)
    if self.escapes(path, actual in folder.links):
      return None, (f"{path} resolves to {os.path.realpath(path)}, outside the "
                    f"data folder {self.root}")
    return path, ""

  def relative(self, value: str, bases: Sequence[str]) -> tuple[str | None, str]:
    """(absolute path or None, problem) of a path written in a CSV."""
    value = value.replace("\\", "/") if os.sep == "/" else value
    candidates = ([value] if os.path.isabs(value)
                  else [os.path.join(b, value) for b in dict.fromkeys(bases)])
    candidates = [os.path.normpath(c) for c in candidates]
    inside = [c for c in candidates if not self.escapes(c)]
    if not inside:
      return None, (f"path {value!r} climbs out of the data folder {self.root}"
                    " (after following symlinks)")
    for candidate in inside:
      if os.path.isfile(candidate):
        return candidate, ""
    return None, f"image file {value!r} not found (looked in {', '.join(bases)})"


def _find_file(root: str, names: Sequence[str], depth: int = 2) -> list[str]:
  """Files below `root` (at most `depth` folders down) whose name is in `names`."""
  wanted = {n.lower() for n in names}
  found = []
  for directory, dirs, files in os.walk(root):
    level = os.path.relpath(directory, root).count(os.sep) + (directory != root)
    dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if level < depth else []
    found += [os.path.join(directory, f) for f in sorted(files)
              if f.lower() in wanted]
  return found


def _best_folder(candidates: Iterable[str], wanted: set[str]) -> _Folder | None:
  """The candidate folder holding most of the `wanted` (lower-case) file names."""
  best, hits = None, 0
  for path in dict.fromkeys(candidates):
    folder = _Folder.scan(path)
    count = len(wanted.intersection(folder.names))
    if count > hits:
      best, hits = folder, count
  return best


def _class_lookup(class_names: Sequence[str]) -> dict[str, str]:
  """`_key` of each spelling (aliases included) -> canonical class name."""
  lookup = {k: c for k, c in _CLASS_ALIASES.items() if c in class_names}
  lookup.update({_key(c): c for c in class_names})
  return lookup


# ---------------------------------------------------------------- ICPR 2014


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
  root, real_root = _check_root(data_dir)
  problems = _Problems(on_error, rejects)
  path = _locate_csv(root, csv_path, "gt_training.csv",
                     "the ICPR 2014 layout: gt_training.csv with 'Image ID,Image "
                     "class' and the cell images 00001.png ...")
  table = _read_table(path, ",", problems)
  expected = "'Image ID,Image class' (optionally Intensity, Specimen)"
  id_col = table.require(_ID_COLUMNS, expected)
  class_col = table.require(_CLASS_COLUMNS, expected)
  intensity_col = table.column(_INTENSITY_COLUMNS)
  specimen_col = table.column(_SPECIMEN_COLUMNS)

  ids = [_icpr_id(values[id_col], 5) for _, _, values in table.rows]
  folders = _icpr2014_folders(root, os.path.dirname(path),
                              {f"{i}.png".lower() for i in ids})
  resolver = _Resolver(root, real_root)
  classes = _class_lookup(ICPR2014_CLASSES)
  rows, first_line = [], {}
  for (row, line, values), cell_id in zip(table.rows, ids):
    if not cell_id:
      problems("empty Image ID", path, row, line)
      continue
    if cell_id in first_line:
      problems(f"duplicate Image ID {cell_id} (first at line "
               f"{first_line[cell_id]})", path, row, line)
      continue
    first_line[cell_id] = line
    label = classes.get(_key(values[class_col]))
    if label is None:
      problems(f"unknown class {values[class_col]!r}; expected one of "
               f"{', '.join(ICPR2014_CLASSES)}", path, row, line)
      continue
    image, mask, problem = _image_and_mask(resolver, folders, cell_id, "_Mask")
    if problem:
      problems(problem, path, row, line)
      continue
    rows.append(dict(
        id=cell_id, path=image.path, label=label, mask_path=mask,
        intensity=values[intensity_col].lower() if intensity_col is not None else "",
        group=values[specimen_col] if specimen_col is not None else "",
        split=image.split))
  return _finish(name, list(ICPR2014_CLASSES), 1, rows, path, problems)


@dataclasses.dataclass
class _Found:
  path: str
  split: str


def _image_and_mask(resolver: _Resolver, folders: list[_Folder], cell_id: str,
                    mask_suffix: str) -> tuple[_Found | None, str, str]:
  """Finds `<id>.png` in exactly one folder and its mask beside it, if any."""
  file_name = f"{cell_id}.png"
  if len(folders) == 1 or file_name != os.path.basename(file_name):
    image, problem = resolver.in_folder(folders[0], file_name)
    found = [(folders[0], image)] if image else []
  else:
    found, problem = [], ""
    for folder in folders:
      if file_name.lower() in folder.names:
        image, problem = resolver.in_folder(folder, file_name)
        if problem:
          return None, "", problem
        found.append((folder, image))
    if not found:
      places = ", ".join(f.path for f in folders)
      problem = f"image file {file_name} not found in {places}"
  if problem:
    return None, "", problem
  if len(found) > 1:
    places = " and ".join(f.path for f, _ in found)
    return None, "", f"image file {file_name} found in both {places}"
  folder, image = found[0]
  mask_name = f"{cell_id}{mask_suffix}.png"
  mask = ""
  if mask_name.lower() in folder.names:
    mask, problem = resolver.in_folder(folder, mask_name)
    if problem:
      return None, "", f"mask: {problem}"
  return _Found(image, folder.split), mask, ""


def _icpr_id(value: str, digits: int) -> str:
  """The file stem of an ICPR id: numbers zero-padded ('7' and '7.0' -> '00007')."""
  value = value.strip()
  if value.lower().endswith(".png"):
    value = value[:-4]
  if re.fullmatch(r"\d+(\.0*)?", value):
    value = str(int(float(value))).zfill(digits)
  return value


def _locate_csv(root: str, csv_path: str | None, file_name: str,
                expected: str) -> str:
  """The layout's CSV: `csv_path` (relative to root) or the only `file_name` found."""
  if csv_path:
    path = csv_path if os.path.isabs(csv_path) else os.path.join(root, csv_path)
    if not os.path.isfile(path):
      raise InputError("CSV file not found", file=path)
    return path
  found = _find_file(root, [file_name])
  if not found:
    raise InputError(f"expected {expected}; found no {file_name} in the folder or "
                     f"two folders down. The folder contains: {_listing(root)}",
                     file=root)
  # The shallowest one wins: a copy inside a subfolder is usually a backup.
  found.sort(key=lambda p: (p.count(os.sep), p))
  return found[0]


def _icpr2014_folders(root: str, csv_dir: str, wanted: set[str]) -> list[_Folder]:
  """Where the images are: split folders if they hold them, else the best flat one."""
  bases = list(dict.fromkeys([csv_dir, root]))
  split_dirs = [(os.path.join(b, d), _normal_split(d))
                for b in bases for d in _subdirs(b) if _normal_split(d)]
  split_folders = []
  for path, split in split_dirs:
    inner = [path] + [os.path.join(path, d) for d in _subdirs(path)]
    best = _best_folder(inner, wanted)
    if best is not None:
      best.split = split
      split_folders.append(best)
  if split_folders:
    return split_folders
  candidates = bases + [os.path.join(b, d) for b in bases for d in _subdirs(b)]
  best = _best_folder(candidates, wanted)
  if best is None:
    example = sorted(wanted)[0] if wanted else "00001.png"
    raise InputError(f"none of the {len(wanted)} images named in the CSV (e.g. "
                     f"{example}) is beside it, in a subfolder or in training/ "
                     f"validation/ test/ folders. The CSV folder contains: "
                     f"{_listing(csv_dir)}", file=csv_dir)
  return [best]


def _finish(name: str, class_names: list[str], channels: int,
            rows: list[dict[str, str]], where: str, problems: _Problems,
            positive_class: str | None = None,
            notes: Sequence[str] = ()) -> Source:
  examples = _frame(rows, where)
  logging.info("read %d examples from %s (%d rejected)", len(examples), where,
               problems.count)
  for note in notes:
    logging.info("%s", note)
  return Source(name=name, class_names=class_names, channels=channels,
                examples=examples, positive_class=positive_class, notes=list(notes))


# ---------------------------------------------------------------- ICPR 2012


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
  root, real_root = _check_root(data_dir)
  problems = _Problems(on_error, rejects)
  resolver = _Resolver(root, real_root)
  splits = _icpr2012_split_dirs(root)
  base = os.path.dirname(splits[0][1])
  slide_files = _icpr2012_cells_csvs(root, base, [d for _, d in splits], cells_csv)
  slides = _icpr2012_slides(slide_files, problems)
  rows = []
  for folder_name, split_dir in splits:
    split = _normal_split(folder_name)
    csv_name = "training" if split == "train" else "test"
    base = os.path.dirname(split_dir)
    gt_path = _first_file([split_dir, base], f"gt_{csv_name}.csv")
    if gt_path is None:
      raise InputError(f"expected gt_{csv_name}.csv ('ID;pattern') in {split_dir} "
                       f"or {base}; found: {_listing(split_dir)}", file=split_dir)
    table = _read_table(gt_path, ";", problems)
    id_col = table.require(_ID_COLUMNS, "'ID;pattern'")
    class_col = table.require(_CLASS_COLUMNS, "'ID;pattern'")
    intensities = _icpr2012_intensities(
        _first_file([split_dir, base], f"{csv_name}.csv"), problems)
    folder = _Folder.scan(split_dir, split)
    classes = _class_lookup(ICPR2012_CLASSES)
    first_line = {}
    for row, line, values in table.rows:
      cell_id = _icpr_id(values[id_col], 3)
      if not cell_id:
        problems("empty ID", gt_path, row, line)
        continue
      if cell_id in first_line:
        problems(f"duplicate ID {cell_id} (first at line {first_line[cell_id]})",
                 gt_path, row, line)
        continue
      first_line[cell_id] = line
      label = classes.get(_key(values[class_col]))
      if label is None:
        problems(f"unknown class {values[class_col]!r}; expected one of "
                 f"{', '.join(ICPR2012_CLASSES)}", gt_path, row, line)
        continue
      image, mask, problem = _image_and_mask(resolver, [folder], cell_id, "_mask")
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
  return _finish(name, list(ICPR2012_CLASSES), 3, rows, root, problems,
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
                     problems: _Problems) -> dict[tuple[str, str], str]:
  """(split, cell id) -> source slide, from cells.csv read by column position."""
  expected = ("8 columns: contest id; training/test; source image (1-28); "
              "intensity; ...; pattern; ...")
  slides: dict[tuple[str, str], str] = {}
  for path in paths:
    table = _read_table(path, ";", problems)
    if len(table.header) < 3:
      raise _header_error(table, expected)
    for row, line, values in table.rows:
      key = (_normal_split(values[1]), _icpr_id(values[0], 3))
      slide = _icpr_id(values[2], 1)
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
  for base in [root] + [os.path.join(root, d) for d in _subdirs(root)]:
    found = [(d, os.path.join(base, d)) for d in _subdirs(base)
             if _key(d) in ("training", "train", "test")]
    found.sort(key=lambda f: _normal_split(f[0]) == "test")   # training first
    if found:
      return found
  raise InputError("expected the ICPR 2012 layout: training/ and test/ folders of "
                   "001.png cells with gt_training.csv / gt_test.csv ('ID;pattern'); "
                   f"found: {_listing(root)}", file=root)


def _first_file(folders: Sequence[str], file_name: str) -> str | None:
  for folder in folders:
    listed = _Folder.scan(folder)
    if file_name.lower() in listed.names:
      return os.path.join(folder, listed.names[file_name.lower()])
  return None


def _icpr2012_intensities(path: str | None, problems: _Problems) -> dict[str, str]:
  """ID -> intensity from `training.csv` / `test.csv`, or {} when there is none."""
  if path is None:
    return {}
  table = _read_table(path, ";", problems)
  expected = "'ID;intensity;width;height'"
  id_col = table.require(_ID_COLUMNS, expected)
  intensity_col = table.require(_INTENSITY_COLUMNS, expected)
  return {_icpr_id(v[id_col], 3): v[intensity_col].lower() for _, _, v in table.rows}


# ---------------------------------------------------------------- C-NMC 2019


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
  root, real_root = _check_root(data_dir)
  problems = _Problems(on_error, rejects)
  resolver = _Resolver(root, real_root)
  scan = _cnmc_scan(root)
  if not scan.folds:
    raise InputError("expected the C-NMC layout: fold_0/ fold_1/ fold_2/ folders "
                     f"with all/ and hem/ inside; found: {_listing(root)}",
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
  if _boolean(include_test, "include_test"):
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
  return _finish(name, list(CNMC_CLASSES), 3, rows, root, problems,
                 positive_class="all", notes=notes)


def _cnmc_fold(fold_dir: str, fold: str, split: str, resolver: _Resolver,
               problems: _Problems, seen: dict[str, str]) -> list[dict[str, str]]:
  """Rows of one fold folder's all/ and hem/ images."""
  classes = {_key(d): d for d in _subdirs(fold_dir)}
  if not set(classes) & set(CNMC_CLASSES):
    raise InputError(f"expected all/ and hem/ inside {os.path.basename(fold_dir)}; "
                     f"found: {_listing(fold_dir)}", file=fold_dir)
  rows = []
  for label in CNMC_CLASSES:
    if label not in classes:
      continue
    folder = _Folder.scan(os.path.join(fold_dir, classes[label]))
    for file_name in sorted(folder.names.values()):
      if not _is_image(file_name):
        continue
      path, problem = resolver.in_folder(folder, file_name)
      cell_id = os.path.splitext(file_name)[0]
      fields = cell_id.split("_")
      if not problem and len(fields) < 2:
        problem = (f"file name {file_name} does not read as UID_<subject>_..., so "
                   "the subject is unknown")
      if not problem and _key(fields[-1]) in CNMC_CLASSES and _key(
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
                  if f.lower().endswith(".csv")]
    count = sum(_is_image(f) for f in files)
    if count:
      scan.image_dirs.append((directory, count))
    scan.folds += [(d, os.path.join(directory, d)) for d in sorted(dirs)
                   if _FOLD_RE.fullmatch(d.lower())]
    # Fold folders are read by _cnmc_fold: never walk into them.
    dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not
                     _FOLD_RE.fullmatch(d.lower())) if level < _CNMC_DEPTH else []
  return scan


def _fold_name(text: str) -> str:
  """'fold_0', 'Fold0', '0' -> 'fold_0'; other text is returned as given."""
  match = _FOLD_RE.fullmatch(_key(text).replace("fold", "fold_", 1)) or re.fullmatch(
      r"(\d+)", text.strip())
  return f"fold_{int(match.group(1))}" if match else text


def _fold_splits(value: bool | str | Mapping[str, str],
                 folds: list[str]) -> dict[str, str]:
  """fold name -> split, from the `fold_as_split` option (see read_cnmc)."""
  if value is None or value is True or (isinstance(value, str) and _key(value) in (
      "official", "default", "true", "yes", "1")):
    return {f: ("validation" if f == folds[-1] else "train") for f in folds}
  if value is False or (isinstance(value, str) and _key(value) in (
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
    if _normal_split(split) is None:
      raise InputError(f"fold_as_split: {split!r} is not a split (train, "
                       "validation, test)")
    if _fold_name(fold) not in folds:
      raise InputError(f"fold_as_split names {fold!r}; the folds found are "
                       f"{', '.join(folds)}")
    mapping[_fold_name(fold)] = _normal_split(split)
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


def _cnmc_test(root: str, resolver: _Resolver, problems: _Problems,
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
  table = _read_table(path, None, problems)
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
                      wanted: set[str]) -> _Folder | None:
  """The image folder holding most of `wanted`; ties: the size of the CSV, nearest.

  The unlabelled final set is also named 1.bmp, 2.bmp, ... (more of them), so the
  number of files and the distance from the CSV decide between the two.
  """
  csv_dir = os.path.dirname(csv_path)
  best, best_score = None, None
  for directory, count in scan.image_dirs:
    folder = _Folder.scan(directory)
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
    with _open_text(path) as f:
      first = f.readline()
  except OSError:
    return False
  header = {_key(c) for c in re.split(r"[,;\t]", first)}
  return set(keys) <= header


# ---------------------------------------------------------------- generic folder


def read_folder(data_dir: str | os.PathLike, *, on_error: str = "fail",
                rejects: Rejects | None = None, channels: int = 3,
                name: str | None = None) -> Source:
  """A folder per class: `root/<class>/*` or `root/<split>/<class>/*`.

  Split folders train/training, val/valid/validation, test/testing become train,
  validation, test. Image files (png, bmp, jpg, jpeg, tif, tiff, any case) are
  collected below each class folder; other files and hidden ones are ignored. Class
  names are the sorted folder names; `channels` is 1 or 3 (default 3). Symlinked
  files are followed when they stay inside data_dir; symlinked subfolders below a
  class folder are not walked.
  """
  root, real_root = _check_root(data_dir)
  problems = _Problems(on_error, rejects)
  channels = _channels(channels)
  resolver = _Resolver(root, real_root)
  top = _subdirs(root)
  split_named = [d for d in top if _normal_split(d)]
  if split_named and len(split_named) != len(top):
    others = [d for d in top if d not in split_named]
    raise InputError(f"expected root/<class>/* or root/<split>/<class>/*; found "
                     f"split folders ({', '.join(split_named)}) beside other "
                     f"folders ({', '.join(others[:_SHOW])})", file=root)
  if split_named:
    class_dirs = [(os.path.join(root, s, c), c, _normal_split(s))
                  for s in split_named for c in _subdirs(os.path.join(root, s))]
  else:
    class_dirs = [(os.path.join(root, c), c, "") for c in top]
  if not class_dirs:
    raise InputError("expected a folder per class (root/<class>/* or "
                     f"root/<split>/<class>/*); found: {_listing(root)}", file=root)
  rows = []
  for class_dir, label, split in class_dirs:
    if resolver.escapes(class_dir):
      problems(f"folder resolves to {os.path.realpath(class_dir)}, outside the "
               f"data folder {root}", class_dir)
      continue
    for directory, dirs, files in os.walk(class_dir):
      dirs[:] = sorted(d for d in dirs if not d.startswith("."))
      for file_name in sorted(files):
        if not _is_image(file_name):
          continue
        path = os.path.join(directory, file_name)
        if resolver.escapes(path):
          problems(f"resolves to {os.path.realpath(path)}, outside the data "
                   f"folder {root}", path)
          continue
        rows.append(dict(id=os.path.relpath(path, root).replace(os.sep, "/"),
                         path=path, label=label, mask_path="", intensity="",
                         group="", split=split))
  if not rows and not problems.count:
    raise InputError("no image files (" + ", ".join(IMAGE_EXTENSIONS) + ") in the "
                     f"class folders; found: {_listing(class_dirs[0][0])}",
                     file=root)
  class_names = sorted({label for _, label, _ in class_dirs})
  return _finish(name or _snake(os.path.basename(root), "folder"), class_names,
                 channels, rows, root, problems)


def _channels(value: int | str) -> int:
  if str(value) not in ("1", "3"):
    raise InputError(f"channels must be 1 or 3, got {value!r}")
  return int(value)


# ---------------------------------------------------------------- generic CSV


def read_csv(data_dir: str | os.PathLike, *, on_error: str = "fail",
             rejects: Rejects | None = None, csv_path: str | None = None,
             path_column: str = "path", label_column: str = "label",
             group_column: str | None = None, split_column: str | None = None,
             mask_column: str | None = None, intensity_column: str | None = None,
             separator: str | None = None,
             class_names: Sequence[str] | str | None = None, channels: int = 3,
             name: str | None = None) -> Source:
  """A CSV naming an image path and a label per row.

  `csv_path` (relative to data_dir; default: the only *.csv in data_dir) is read with
  `separator` (default: sniffed among `,` `;` tab). Column names (matched
  case-insensitively) are given by the *_column options; group, split, mask and
  intensity are optional. Paths are relative to the CSV's folder or to data_dir and
  must stay inside data_dir. Class names are sorted (numerically when all labels are
  integers) unless `class_names` (a list or "a,b,c") fixes them.
  """
  root, real_root = _check_root(data_dir)
  problems = _Problems(on_error, rejects)
  channels = _channels(channels)
  path = _generic_csv_path(root, csv_path)
  if separator is not None:
    separator = {"tab": "\t", "\\t": "\t"}.get(separator, separator)
  table = _read_table(path, separator, problems)
  wanted = {"path": path_column, "label": label_column, "group": group_column,
            "split": split_column, "mask_path": mask_column,
            "intensity": intensity_column}
  expected = ", ".join(repr(c) for c in wanted.values() if c)
  columns = {field: table.require([_key(column)], expected)
             for field, column in wanted.items() if column}
  fixed = _class_list(class_names)
  resolver = _Resolver(root, real_root)
  bases = [os.path.dirname(path), root]
  rows, first_line = [], {}
  for row, line, values in table.rows:
    cell = {f: values[i] for f, i in columns.items()}
    problem = ""
    image, mask = None, ""
    if not cell["path"]:
      problem = "empty path"
    elif not cell["label"]:
      problem = "empty label"
    elif fixed is not None and cell["label"] not in fixed:
      problem = (f"unknown class {cell['label']!r}; expected one of "
                 f"{', '.join(fixed)}")
    if not problem:
      image, problem = resolver.relative(cell["path"], bases)
    if not problem and image in first_line:
      problem = f"duplicate path {cell['path']!r} (first at line {first_line[image]})"
    if not problem and cell.get("mask_path"):
      mask, problem = resolver.relative(cell["mask_path"], bases)
      problem = f"mask: {problem}" if problem else ""
    split = _normal_split(cell.get("split", "")) or ""
    if not problem and cell.get("split") and not split:
      problem = (f"unknown split {cell['split']!r}; expected train, validation or "
                 "test")
    if problem:
      problems(problem, path, row, line)
      continue
    first_line[image] = line
    rows.append(dict(id=os.path.relpath(image, root).replace(os.sep, "/"),
                     path=image, label=cell["label"], mask_path=mask or "",
                     intensity=cell.get("intensity", "").lower(),
                     group=cell.get("group", ""), split=split))
  names = fixed if fixed is not None else _sorted_labels(r["label"] for r in rows)
  return _finish(name or _snake(os.path.splitext(os.path.basename(path))[0], "csv"),
                 names, channels, rows, path, problems)


def _generic_csv_path(root: str, csv_path: str | None) -> str:
  if csv_path:
    inside = os.path.join(root, csv_path)
    path = inside if os.path.isfile(inside) or not os.path.isfile(csv_path) \
        else os.path.abspath(csv_path)
    if not os.path.isfile(path):
      raise InputError("CSV file not found", file=path)
    return path
  found = sorted(f for f in os.listdir(root) if f.lower().endswith(".csv"))
  if len(found) != 1:
    raise InputError(f"expected exactly one .csv file in the data folder (or the "
                     f"csv_path option); found {len(found)}: {_listing(root)}",
                     file=root)
  return os.path.join(root, found[0])


def _class_list(value: Sequence[str] | str | None) -> list[str] | None:
  if value is None:
    return None
  names = value.split(",") if isinstance(value, str) else list(value)
  names = [n.strip() for n in names if n.strip()]
  if len(set(names)) != len(names) or not names:
    raise InputError(f"class_names must be distinct and not empty, got {value!r}")
  return names


def _sorted_labels(labels: Iterable[str]) -> list[str]:
  unique = set(labels)
  if all(re.fullmatch(r"-?\d+", l) for l in unique):
    return sorted(unique, key=int)
  return sorted(unique)


# ---------------------------------------------------------------- entry point


LAYOUTS: dict[str, Callable[..., Source]] = {
    "icpr2014": read_icpr2014,
    "icpr2012": read_icpr2012,
    "cnmc": read_cnmc,
    "folder": read_folder,
    "csv": read_csv,
}


def read_source(layout: str, data_dir: str | os.PathLike, *, on_error: str = "fail",
                rejects: Rejects | None = None, **options) -> Source:
  """Reads `data_dir` with the reader registered as `layout` in `LAYOUTS`.

  Options whose value is None count as not given, so callers can pass flags that
  default to None. An unknown layout or an option the layout does not take is an
  InputError. Returns the `Source`; row-level problems go to `rejects` when
  `on_error="skip"`.
  """
  if layout not in LAYOUTS:
    raise InputError(f"unknown dataset layout {layout!r}; known: "
                     f"{', '.join(LAYOUTS)}")
  reader = LAYOUTS[layout]
  options = {k: v for k, v in options.items() if v is not None}
  takes = [p for p in inspect.signature(reader).parameters
           if p not in ("data_dir", "on_error", "rejects")]
  unknown = sorted(set(options) - set(takes))
  if unknown:
    raise InputError(f"layout {layout!r} takes no option {', '.join(unknown)}; it "
                     f"takes {', '.join(takes)}")
  return reader(data_dir, on_error=on_error, rejects=rejects, **options)
