"""The generic layouts: a folder per class (`read_folder`) and a CSV that names each
image's path and label (`read_csv`), registered in `sources.LAYOUTS` as `folder` and
`csv`.
"""

from __future__ import annotations


import os
import re
from typing import Iterable, Sequence


from hep2tf.data.sources.common import (_check_root, _finish, IMAGE_EXTENSIONS,
                                        _is_image, _key, _listing, _normal_split,
                                        _Problems, _SHOW, _snake, Source, _subdirs)
from hep2tf.data.sources.files import _Resolver
from hep2tf.data.sources.tables import _read_table
from hep2tf.errors import InputError, Rejects


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
