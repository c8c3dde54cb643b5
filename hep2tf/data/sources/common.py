"""What every source reader shares: the example table, CSV reading, file finding.

`Source` and `COLUMNS` define a reader's output (see `sources.py`); the helpers read
CSVs as text (separator sniffed, BOM and CRLF handled, rows numbered for messages),
find image files without leaving the data folder (symlinks included) and collect or
raise row-level problems (`_Problems`). The readers live in `sources.py` (ICPR 2014,
folder, csv), `sources_icpr2012.py` and `sources_cnmc.py`.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import re
from typing import Iterable, Sequence

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
