"""Errors about bad input, and the report of what was skipped.

Every problem with a user's data is an `InputError` that names the file, the row (when
it comes from a table) and the reason. With `--on_error=fail` the first one stops the
run before anything is published; with `--on_error=skip` they are collected in a
`Rejects` and written beside the records.
"""

from __future__ import annotations

import csv
import dataclasses
import os

# Exit codes of the command-line tools, so scripts can tell the outcomes apart.
EXIT_OK = 0
EXIT_INPUT_ERROR = 2        # bad input and --on_error=fail: nothing was published
EXIT_SKIPPED = 3            # finished, but some inputs were skipped (see rejects.csv)


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
