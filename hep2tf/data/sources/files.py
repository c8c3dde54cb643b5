"""Finding the image files of a source layout without leaving its data folder.

`Folder.scan` lists a folder once (lower-case name -> name, which names are links);
`Resolver` turns file names from a listing or a CSV into checked absolute paths, and
refuses any that resolve outside the data folder (symlinks followed);
`image_and_mask` finds a cell's image in exactly one of several folders and its mask
beside it; `find_files` and `best_folder` locate a layout's CSV and image folder.
"""

from __future__ import annotations


import dataclasses
import os
from typing import Iterable, Sequence


from hep2tf.data.sources.common import IMAGE_EXTENSIONS, is_inside, is_os_junk


@dataclasses.dataclass
class Folder:
  """One folder listed once: lower-case name -> name, and which names are links."""
  path: str
  names: dict[str, str]
  links: set[str]
  split: str = ""

  @classmethod
  def scan(cls, path: str, split: str = "") -> "Folder":
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


class Resolver:
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
    return not is_inside(self.real_root, real)

  def in_folder(self, folder: Folder, name: str) -> tuple[str | None, str]:
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


def find_files(root: str, names: Sequence[str], depth: int = 2) -> list[str]:
  """Files below `root` (at most `depth` folders down) whose name is in `names`."""
  wanted = {n.lower() for n in names}
  found = []
  for directory, dirs, files in os.walk(root):
    level = os.path.relpath(directory, root).count(os.sep) + (directory != root)
    dirs[:] = sorted(d for d in dirs if not is_os_junk(d)) if level < depth else []
    found += [os.path.join(directory, f) for f in sorted(files)
              if f.lower() in wanted]
  return found


def best_folder(candidates: Iterable[str], wanted: set[str]) -> Folder | None:
  """The candidate folder holding most of the `wanted` (lower-case) file names."""
  best, hits = None, 0
  for path in dict.fromkeys(candidates):
    folder = Folder.scan(path)
    count = len(wanted.intersection(folder.names))
    if count > hits:
      best, hits = folder, count
  return best


@dataclasses.dataclass
class _Found:
  path: str
  split: str


def image_and_mask(resolver: Resolver, folders: list[Folder], cell_id: str,
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


# ---------------------------------------------------------------- walking folders


def list_dir(path: str) -> list[os.DirEntry]:
  """A folder's entries sorted by name; OSError (PermissionError, ...) when it
  cannot be listed. The one listing of the folder layout's walk."""
  with os.scandir(path) as entries:
    return sorted(entries, key=lambda e: e.name)


@dataclasses.dataclass
class Walk:
  """Image files below class folders, each real folder and file read once.

  Links that stay inside the data folder are followed; a link to a folder already
  read (a loop, or a second path to it) and a second path to a file already found
  under the same label are skipped and listed in `skipped` ("link -> target"). A
  file reached under two labels is kept twice: the content check of the splits
  rejects both (the label is in doubt). Real entries of a folder are read before
  its links, so the real name of a place is the one kept. OS junk is never read.
  """
  root: str
  real_root: str
  visited: set[str] = dataclasses.field(default_factory=set)   # real folders
  files: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
  skipped: list[str] = dataclasses.field(default_factory=list)

  def enter(self, path: str) -> bool:
    """Marks folder `path` read; False (and listed in `skipped`) when it is a link
    to a folder read before."""
    real = os.path.realpath(path)
    if real in self.visited:
      self.skipped.append(f"{path} -> {real}")
      return False
    self.visited.add(real)
    return True

  def images(self, folder: str, label: str
             ) -> tuple[list[str], list[tuple[str, str]]]:
    """(image paths, problems as (path, reason)) below `folder`, in name order."""
    found, problems, stack = [], [], [folder]
    while stack:
      directory = stack.pop()
      try:
        entries = list_dir(directory)
      except OSError as e:
        problems.append((directory, f"cannot list this folder ({e.strerror or e})"))
        continue
      subdirs = []
      for entry in sorted(entries, key=lambda e: (e.is_symlink(), e.name)):
        if is_os_junk(entry.name):
          continue
        problem = self._outside(entry)
        if problem:
          problems.append((entry.path, problem))
        elif _is_dir(entry):
          if entry.is_symlink() and not self.enter(entry.path):
            continue
          self.visited.add(os.path.realpath(entry.path))
          subdirs.append(entry.path)
        elif entry.name.lower().endswith(IMAGE_EXTENSIONS) and self._new_file(
            entry, label):
          found.append(entry.path)
      stack.extend(reversed(subdirs))
    return found, problems

  def _outside(self, entry: os.DirEntry) -> str:
    if not entry.is_symlink():
      return ""
    real = os.path.realpath(entry.path)
    if not is_inside(self.real_root, real):
      return f"resolves to {real}, outside the data folder {self.root}"
    if not os.path.exists(real):
      return f"a link to {real}, which does not exist"
    return ""

  def _new_file(self, entry: os.DirEntry, label: str) -> bool:
    real = os.path.realpath(entry.path)
    first = self.files.setdefault(real, (entry.path, label))
    if first[0] != entry.path and first[1] == label:
      self.skipped.append(f"{entry.path} -> {first[0]}")
      return False
    return True


def _is_dir(entry: os.DirEntry) -> bool:
  try:
    return entry.is_dir()
  except OSError:
    return False
