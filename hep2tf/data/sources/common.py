"""What every source reader shares: the example table and the small helpers.

`Source` and `COLUMNS` define a reader's output (see `hep2tf.data.sources`); the
helpers match names loosely (`match_key`), list folders for messages, check the data
folder, read layout options given as text, and collect or raise row-level problems
(`Problems`). CSV reading is in `tables.py`, file finding in `files.py`; the readers
are `icpr2014.py`, `icpr2012.py`, `cnmc.py` and `generic.py`.
"""

from __future__ import annotations


import dataclasses
import os
import re
from typing import Sequence


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

# Folder and column spellings seen in the wild, keyed by `match_key` (lower case,
# alphanumeric).
_SPLIT_ALIASES = {
    "train": "train", "training": "train",
    "val": "validation", "valid": "validation", "validation": "validation",
    "test": "test", "testing": "test",
}
_CLASS_ALIASES = {"nuclearmembrane": "NuMem", "cytoplasmic": "cytoplasmatic"}
ID_COLUMNS = ("imageid", "id", "cellid", "image")
CLASS_COLUMNS = ("imageclass", "class", "pattern", "label")
INTENSITY_COLUMNS = ("intensity",)
SPECIMEN_COLUMNS = ("specimen", "specimenid", "specimenno", "specimennumber")
SHOW_ENTRIES = 8     # folder entries listed in an error message
# What operating systems and zip tools leave in a folder: never a class, never an image
# (hidden names, starting with ".", are junk too: .DS_Store, ._x.png, .Trashes).
OS_JUNK = ("__macosx", "thumbs.db", "ehthumbs.db", "desktop.ini", "$recycle.bin",
           "system volume information")


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


def match_key(text: str) -> str:
  """Lower-case alphanumeric form used to match names loosely."""
  return _NOT_ALNUM.sub("", text.lower())


def folder_listing(directory: str) -> str:
  """A few entries of a folder, for error messages."""
  try:
    names = sorted(os.listdir(directory))
  except OSError as e:
    return f"(cannot list: {e.strerror})"
  if not names:
    return "(empty folder)"
  more = f", ... ({len(names)} entries)" if len(names) > SHOW_ENTRIES else ""
  return ", ".join(names[:SHOW_ENTRIES]) + more


def check_root(data_dir: str | os.PathLike) -> tuple[str, str]:
  """Returns (absolute data folder, its real path); raises if it is not a folder."""
  root = os.path.abspath(os.fspath(data_dir))
  if not os.path.isdir(root):
    raise InputError("data folder not found or not a folder", file=root)
  return root, os.path.realpath(root)


def is_inside(real_root: str, real_path: str) -> bool:
  return real_path == real_root or real_path.startswith(
      real_root.rstrip(os.sep) + os.sep)


def is_os_junk(name: str) -> bool:
  """Whether a file or folder name is operating-system or zip-tool litter
  (`__MACOSX`, `.DS_Store`, `._x.png`, `Thumbs.db`, `desktop.ini`, hidden names)."""
  return name.startswith(".") or name.lower() in OS_JUNK


def list_subdirs(directory: str) -> list[str]:
  """Subfolders of a folder that are not OS junk (`is_os_junk`), sorted by name."""
  try:
    entries = list(os.scandir(directory))
  except OSError:
    return []
  return sorted(e.name for e in entries if not is_os_junk(e.name) and e.is_dir())


def is_image_name(name: str) -> bool:
  return not is_os_junk(name) and name.lower().endswith(IMAGE_EXTENSIONS)


def normal_split(name: str) -> str | None:
  return _SPLIT_ALIASES.get(match_key(name))


def option_bool(value: bool | str, option: str) -> bool:
  """A layout option given as a bool or as text (--layout_option key=value)."""
  if isinstance(value, bool):
    return value
  text = match_key(str(value))
  if text in ("true", "yes", "1"):
    return True
  if text in ("false", "no", "0"):
    return False
  raise InputError(f"option {option} must be true or false, got {value!r}")


def snake_name(text: str, default: str) -> str:
  name = re.sub(r"[^0-9a-z]+", "_", text.lower()).strip("_")
  return name or default


class Problems:
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


def class_lookup(class_names: Sequence[str]) -> dict[str, str]:
  """`match_key` of each spelling (aliases included) -> canonical class name."""
  lookup = {k: c for k, c in _CLASS_ALIASES.items() if c in class_names}
  lookup.update({match_key(c): c for c in class_names})
  return lookup


class GroundTruth:
  """The checks every row of an ICPR ground-truth table gets: an ID, not one seen
  before in the table, a known class. `label` returns the row's class name, or
  reports the problem (`Problems`) and returns None."""

  def __init__(self, class_names: Sequence[str], path: str, problems: Problems,
               id_name: str = "ID"):
    self.class_names = list(class_names)
    self.classes = class_lookup(class_names)
    self.path = path
    self.problems = problems
    self.id_name = id_name
    self.first_line: dict[str, int] = {}

  def label(self, cell_id: str, class_text: str, row: int, line: int) -> str | None:
    if not cell_id:
      self.problems(f"empty {self.id_name}", self.path, row, line)
      return None
    if cell_id in self.first_line:
      self.problems(f"duplicate {self.id_name} {cell_id} (first at line "
                    f"{self.first_line[cell_id]})", self.path, row, line)
      return None
    self.first_line[cell_id] = line
    label = self.classes.get(match_key(class_text))
    if label is None:
      self.problems(f"unknown class {class_text!r}; expected one of "
                    f"{', '.join(self.class_names)}", self.path, row, line)
    return label


def icpr_id(value: str, digits: int) -> str:
  """The file stem of an ICPR id: numbers zero-padded ('7' and '7.0' -> '00007')."""
  value = value.strip()
  if value.lower().endswith(".png"):
    value = value[:-4]
  if re.fullmatch(r"\d+(\.0*)?", value):
    value = str(int(float(value))).zfill(digits)
  return value


def finish_source(name: str, class_names: list[str], channels: int,
                  rows: list[dict[str, str]], where: str, problems: Problems,
                  positive_class: str | None = None,
                  notes: Sequence[str] = ()) -> Source:
  """The Source a reader returns: its rows (read at `where`) as the example table,
  logged with the rejected count and the reader's notes."""
  examples = _frame(rows, where)
  logging.info("read %d examples from %s (%d rejected)", len(examples), where,
               problems.count)
  for note in notes:
    logging.info("%s", note)
  return Source(name=name, class_names=class_names, channels=channels,
                examples=examples, positive_class=positive_class, notes=list(notes))
