"""Source layouts -> one table of examples.

Each reader turns a dataset folder, as users download it, into a `Source`: the class
names (label-id order), the channel count and a `pandas.DataFrame` with one row per
source image (columns `COLUMNS`, all str, "" where unknown). `read_source(layout,
data_dir, **options)` is the single entry point; `LAYOUTS` maps the layout names that
`create_records --dataset=NAME` accepts to the readers: ICPR 2014, folder and csv
here, ICPR 2012 in `icpr2012.py`, C-NMC in `cnmc.py`, all built on
`common.py`.

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

import inspect
import os
import re
from typing import Callable, Iterable, Sequence

from hep2tf.errors import InputError, Rejects
# Source, COLUMNS and the class constants are re-exported: they are this module's API.
from hep2tf.data.sources.common import (CNMC_CLASSES, COLUMNS, ICPR2012_CLASSES,
    ICPR2014_CLASSES, IMAGE_EXTENSIONS, Source, _CLASS_COLUMNS, _Folder,
    _ID_COLUMNS, _INTENSITY_COLUMNS, _Problems, _Resolver, _SHOW, _SPECIMEN_COLUMNS,
    _best_folder, _check_root, _class_lookup, _find_file, _finish, _icpr_id,
    _image_and_mask, _is_image, _key, _listing, _normal_split, _read_table, _snake,
    _subdirs)
from hep2tf.data.sources.cnmc import read_cnmc
from hep2tf.data.sources.icpr2012 import read_icpr2012


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
