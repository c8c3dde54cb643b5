"""The generic layouts: a folder per class (`read_folder`) and a CSV that names each
image's path and label (`read_csv`), registered in `sources.LAYOUTS` as `folder` and
`csv`.
"""

from __future__ import annotations


import os
import re
from collections import Counter
from typing import Iterable, Sequence


from hep2tf.data.sources.common import (check_root, finish_source, folder_listing,
                                        IMAGE_EXTENSIONS, is_inside, is_os_junk,
                                        match_key, normal_split, Problems, SHOW_ENTRIES,
                                        snake_name, Source)
from hep2tf.data.sources.files import list_dir, Resolver, Walk
from hep2tf.data.sources.labels import (clean_label, label_key, look_alike_notes,
                                        merge_spellings)
from hep2tf.data.sources.tables import read_table
from hep2tf.errors import InputError, Rejects


# ---------------------------------------------------------------- generic folder


def read_folder(data_dir: str | os.PathLike, *, on_error: str = "fail",
                rejects: Rejects | None = None, channels: int = 3,
                name: str | None = None) -> Source:
  """A folder per class: `root/<class>/*` or `root/<split>/<class>/*`.

  Split folders train/training, val/valid/validation, test/testing become train,
  validation, test. Image files (png, bmp, jpg, jpeg, tif, tiff, any case) are
  collected below each class folder; other files are ignored, and OS junk
  (`__MACOSX`, `.DS_Store`, `._*`, `Thumbs.db`, `desktop.ini`, hidden names) is
  neither a class nor an image. Class names are the folder names, spellings equal
  after Unicode NFC, case folding and stripping merged into one class named by its
  most frequent spelling (`labels.merge_spellings`), sorted; `channels` is 1 or 3
  (default 3). Links inside data_dir are followed, each folder and file read once
  (`files.Walk`: a loop or a second path is skipped and noted); links leaving it
  are rejected. An empty or unreadable class folder is a problem: the conversion
  stops naming it, or (skip) the class is left out and the notes say so.
  """
  root, real_root = check_root(data_dir)
  problems = Problems(on_error, rejects)
  channels = _channels(channels)
  walk = Walk(root, real_root, visited={real_root})
  class_dirs, notes = _class_dirs(root, walk, problems)
  rows, empty = [], {}
  for class_dir, label, split in class_dirs:
    paths, found = walk.images(class_dir, label)
    if not paths and not found:
      found = [(class_dir, "class folder holds no image files ("
                f"{', '.join(IMAGE_EXTENSIONS)}); found: {folder_listing(class_dir)}")]
    found = [(path, reason.replace("this folder", "this class folder")
              if path == class_dir else reason) for path, reason in found]
    if not paths:
      empty.setdefault(label, (class_dir, found[0][1]))
    for path, reason in found:
      problems(reason, path)
    rows += [dict(id=os.path.relpath(p, root).replace(os.sep, "/"), path=p,
                  label=label, mask_path="", intensity="", group="", split=split)
             for p in paths]
  if not rows and not problems.count:
    raise InputError("no image files (" + ", ".join(IMAGE_EXTENSIONS) + ") in the "
                     f"class folders; found: {folder_listing(class_dirs[0][0])}",
                     file=root)
  class_names, label_notes = _merge_labels(rows)
  kept = {label_key(c) for c in class_names}
  notes += label_notes + [
      f"class {clean_label(label)!r} left out ({folder}): {reason}"
      for label, (folder, reason) in empty.items() if label_key(label) not in kept]
  if walk.skipped:
    notes.append(_skipped_note(walk.skipped, root))
  return finish_source(name or snake_name(os.path.basename(root), "folder"),
                       class_names, channels, rows, root, problems, notes=notes)


def _class_dirs(root: str, walk: Walk, problems: Problems
                ) -> tuple[list[tuple[str, str, str]], list[str]]:
  """(class folder, label as written, split) of the layout, real folders before
  links, each read once; and a note on the OS junk folders ignored."""
  try:
    entries = list_dir(root)
  except OSError as e:
    raise InputError(f"cannot list the data folder ({e.strerror or e})",
                     file=root) from None
  junk = [e.name for e in entries if is_os_junk(e.name)
          and not e.name.startswith(".") and e.is_dir()]
  notes = [f"ignored {', '.join(n + '/' for n in junk)} (operating-system or "
           "zip-tool files, not a class)"] if junk else []
  top = [e for e in entries if not is_os_junk(e.name) and e.is_dir()]
  split_named = [e for e in top if normal_split(e.name)]
  if split_named and len(split_named) != len(top):
    others = [e.name for e in top if e not in split_named]
    raise InputError(f"expected root/<class>/* or root/<split>/<class>/*; found "
                     f"split folders ({', '.join(e.name for e in split_named)}) "
                     f"beside other folders ({', '.join(others[:SHOW_ENTRIES])})",
                     file=root)
  if split_named:
    candidates = []
    for split in split_named:
      if not walk.enter(split.path):
        continue
      try:
        inner = list_dir(split.path)
      except OSError as e:
        problems(f"cannot list this split folder ({e.strerror or e})", split.path)
        continue
      candidates += [(c, normal_split(split.name)) for c in inner
                     if not is_os_junk(c.name) and c.is_dir()]
  else:
    candidates = [(e, "") for e in top]
  if not candidates and not problems.count:
    raise InputError("expected a folder per class (root/<class>/* or "
                     f"root/<split>/<class>/*); found: {folder_listing(root)}",
                     file=root)
  class_dirs = []
  for entry, split in sorted(candidates, key=lambda c: (c[0].is_symlink(), c[1],
                                                        c[0].name)):
    real = os.path.realpath(entry.path)
    if not is_inside(walk.real_root, real):
      problems(f"folder resolves to {real}, outside the data folder {root}",
               entry.path)
    elif walk.enter(entry.path):
      class_dirs.append((entry.path, entry.name, split))
  return sorted(class_dirs, key=lambda c: (c[2], c[1])), notes


def _merge_labels(rows: list[dict[str, str]],
                  fixed: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
  """Renames the rows' labels to their class (`labels.merge_spellings`); returns
  (sorted class names, or `fixed`; notes on merged spellings and look-alikes)."""
  mapping, notes = merge_spellings(Counter(r["label"] for r in rows), fixed)
  for r in rows:
    r["label"] = mapping.get(r["label"], r["label"])
  names = list(fixed) if fixed is not None else _sorted_labels(
      r["label"] for r in rows)
  return names, notes + look_alike_notes(names)


def _skipped_note(skipped: list[str], root: str) -> str:
  shown = [os.path.relpath(s.split(" -> ")[0], root) + " -> " + s.split(" -> ")[1]
           for s in skipped[:SHOW_ENTRIES]]
  more = f", ... ({len(skipped)} in all)" if len(skipped) > SHOW_ENTRIES else ""
  return (f"skipped {len(skipped)} link(s) to a folder or file already read (a loop, "
          f"or a second path to it): {', '.join(shown)}{more}")


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
  must stay inside data_dir (links are followed). Labels equal after Unicode NFC,
  case folding and stripping are one class named by its most frequent spelling
  (`labels.merge_spellings`; notes say which spellings were merged, and which
  classes only look alike). Class names are sorted (numerically when all labels are
  integers) unless `class_names` (a list or "a,b,c") fixes them. A file named by two
  rows is a problem of the second; under two labels both rows are left out.
  """
  root, real_root = check_root(data_dir)
  problems = Problems(on_error, rejects)
  channels = _channels(channels)
  path = _generic_csv_path(root, csv_path)
  if separator is not None:
    separator = {"tab": "\t", "\\t": "\t"}.get(separator, separator)
  table = read_table(path, separator, problems)
  wanted = {"path": path_column, "label": label_column, "group": group_column,
            "split": split_column, "mask_path": mask_column,
            "intensity": intensity_column}
  expected = ", ".join(repr(c) for c in wanted.values() if c)
  columns = {field: table.require([match_key(column)], expected)
             for field, column in wanted.items() if column}
  fixed = _class_list(class_names)
  resolver = Resolver(root, real_root)
  bases = [os.path.dirname(path), root]
  rows, first = [], {}
  for row, line, values in table.rows:
    cell = {f: values[i] for f, i in columns.items()}
    example, problem = _csv_example(cell, root, resolver, bases, fixed)
    if not problem:
      problem = _csv_duplicate(example, cell["path"], line, first, rows)
    if problem:
      problems(problem, path, row, line)
      continue
    first[os.path.realpath(example["path"])] = (line, len(rows), example["label"])
    rows.append(example)
  names, notes = _merge_labels([r for r in rows if r is not None], fixed)
  stem = os.path.splitext(os.path.basename(path))[0]
  return finish_source(name or snake_name(stem, "csv"), names, channels,
                       [r for r in rows if r is not None], path, problems, notes=notes)


def _csv_example(cell: dict[str, str], root: str, resolver: Resolver,
                 bases: list[str], fixed: list[str] | None
                 ) -> tuple[dict[str, str] | None, str]:
  """(the example row of one CSV row, "") or (None, the problem)."""
  if not cell["path"]:
    return None, "empty path"
  if not cell["label"]:
    return None, "empty label"
  if fixed is not None and label_key(cell["label"]) not in map(label_key, fixed):
    return None, (f"unknown class {cell['label']!r}; expected one of "
                  f"{', '.join(fixed)}")
  image, problem = resolver.relative(cell["path"], bases)
  if problem:
    return None, problem
  mask = ""
  if cell.get("mask_path"):
    mask, problem = resolver.relative(cell["mask_path"], bases)
    if problem:
      return None, f"mask: {problem}"
  split = normal_split(cell.get("split", "")) or ""
  if cell.get("split") and not split:
    return None, (f"unknown split {cell['split']!r}; expected train, validation or "
                  "test")
  return dict(id=os.path.relpath(image, root).replace(os.sep, "/"), path=image,
              label=cell["label"], mask_path=mask or "",
              intensity=cell.get("intensity", "").lower(),
              group=cell.get("group", ""), split=split), ""


def _csv_duplicate(example: dict[str, str], written: str, line: int,
                   first: dict[str, tuple[int, int, str]],
                   rows: list[dict[str, str] | None]) -> str:
  """The problem of a row naming a file an earlier row named ("" if none). Under
  another label both rows are left out (the earlier one is set to None here)."""
  real = os.path.realpath(example["path"])
  if real not in first:
    return ""
  line0, index, label0 = first[real]
  if label_key(label0) != label_key(example["label"]):
    rows[index] = None
    return (f"the file of line {line0} again, labelled {example['label']!r} here and "
            f"{label0!r} there: both rows left out (the label is in doubt)")
  if rows[index] is not None and rows[index]["path"] != example["path"]:
    return f"the file of line {line0} again, through a link ({written!r})"
  return f"duplicate path {written!r} (first at line {line0})"


def _generic_csv_path(root: str, csv_path: str | None) -> str:
  if csv_path:
    inside = os.path.join(root, csv_path)
    path = inside if os.path.isfile(inside) or not os.path.isfile(csv_path) \
        else os.path.abspath(csv_path)
    if not os.path.isfile(path):
      raise InputError("CSV file not found", file=path)
    return path
  found = sorted(f for f in os.listdir(root)
                 if f.lower().endswith(".csv") and not is_os_junk(f))
  if len(found) != 1:
    raise InputError(f"expected exactly one .csv file in the data folder (or the "
                     f"csv_path option); found {len(found)}: {folder_listing(root)}",
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
