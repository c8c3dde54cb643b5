"""Errors about bad input, and the report of what was skipped.

Every problem with a user's data is an `InputError` that names the file, the row (when
it comes from a table) and the reason. With `--on_error=fail` the first one stops the
run before anything is published; with `--on_error=skip` they are collected in a
`Rejects` and written beside the records. A full disk is a `NoSpaceError` naming the
path and the space left there (`is_no_space` recognises it in Python's and
TensorFlow's errors alike).
"""

from __future__ import annotations

import csv
import dataclasses
import errno
import os
import shutil

# Exit codes of the command-line tools, so scripts can tell the outcomes apart.
EXIT_OK = 0
EXIT_INPUT_ERROR = 2        # bad input and --on_error=fail: nothing was published
EXIT_SKIPPED = 3            # finished, but some inputs were skipped (see rejects.csv)
EXIT_NO_SPACE = 4           # the disk is full: nothing was published
EXIT_INTERRUPTED = 130      # Ctrl-C (128 + SIGINT, as shells report it)


class InputError(ValueError):
  """A problem with the user's input, naming where it is and why."""

  def __init__(self, reason: str, file: str | os.PathLike | None = None,
               row: int | None = None):
    self.reason = reason
    self.file = os.fspath(file) if file is not None else None
    self.row = row
    super().__init__(self.describe())

  def describe(self) -> str:
    where = self.file or "<input>"
    if self.row is not None:
      where += f", row {self.row}"
    return f"{where}: {self.reason}"


@dataclasses.dataclass
class Rejects:
  """Inputs skipped under --on_error=skip."""

  errors: list[InputError] = dataclasses.field(default_factory=list)

  def add(self, error: InputError) -> None:
    self.errors.append(error)

  def __len__(self) -> int:
    return len(self.errors)

  def write_csv(self, path: str | os.PathLike) -> None:
    """Writes file,row,reason for each rejected input."""
    with open(path, "w", newline="", encoding="utf-8") as f:
      writer = csv.writer(f)
      writer.writerow(["file", "row", "reason"])
      for e in self.errors:
        writer.writerow([e.file or "", "" if e.row is None else e.row, e.reason])


class NoSpaceError(OSError):
  """No space left on the device while writing `path`; nothing was published."""

  def __init__(self, path: str | os.PathLike,
               kept: str = "nothing was published"):
    self.path = os.fspath(path)
    free = free_bytes(self.path)
    self.free = free
    there = f"{_size(free)} free there" if free is not None else "free space unknown"
    super().__init__(errno.ENOSPC, f"no space left on the device writing "
                     f"{self.path} ({there}); {kept}")

  def __str__(self) -> str:
    return self.strerror


def is_no_space(error: BaseException) -> bool:
  """Whether `error` is a full disk: an OSError with errno ENOSPC, or a TensorFlow
  error (which carries only the text) saying so."""
  if isinstance(error, OSError) and error.errno == errno.ENOSPC:
    return True
  return "No space left on device" in str(error)


def no_space(error: BaseException, path: str | os.PathLike | None = None,
             kept: str = "nothing was published") -> NoSpaceError:
  """`error` (a full disk) as a NoSpaceError naming `path` (what was being made)
  and what is `kept`; without a path, the file the error names (Python's
  `filename`, or TensorFlow's "PATH; No space left on device"), else the current
  folder."""
  if isinstance(error, NoSpaceError):
    return error
  if path is None:
    text = str(error)
    named = text.split("; No space left")[0] if "; No space left" in text else ""
    path = getattr(error, "filename", None) or named.strip() or os.getcwd()
  return NoSpaceError(path, kept)


def free_bytes(path: str | os.PathLike) -> int | None:
  """Free bytes on the disk holding `path` (its nearest existing folder); None for
  URLs and when it cannot be told."""
  path = os.path.abspath(os.fspath(path)) if "://" not in os.fspath(path) else ""
  while path and not os.path.isdir(path):
    parent = os.path.dirname(path)
    path = "" if parent == path else parent
  try:
    return shutil.disk_usage(path).free if path else None
  except OSError:
    return None


def _size(count: int) -> str:
  value = float(count)
  for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
    if value < 1024 or unit == "TiB":
      return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
    value /= 1024
  return f"{count} B"
