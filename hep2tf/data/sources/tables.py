"""CSV tables of the source layouts, read as text.

`read_table` reads a CSV as stripped text cells (separator sniffed from `,`, `;` or
tab; a BOM and CRLF handled; UTF-8, else Windows-1252) with rows numbered for
messages: a row's 1-based data row (the header is not counted) and its file line.
`Table.column` / `require` find a column by its loose spelling (`common.match_key`).
"""

from __future__ import annotations


import csv
import dataclasses
import os
from typing import Sequence


from absl import logging

from hep2tf.data.sources.common import match_key, Problems
from hep2tf.errors import InputError


_SEPARATORS = (",", ";", "\t")


@dataclasses.dataclass
class Table:
  """A CSV read as text: stripped header and rows of (data row, line, values)."""
  path: str
  separator: str
  header: list[str]
  rows: list[tuple[int, int, list[str]]]

  def column(self, aliases: Sequence[str]) -> int | None:
    """Index of the first header cell whose `match_key` is one of `aliases`, or
    None."""
    keys = [match_key(h) for h in self.header]
    for alias in aliases:
      if alias in keys:
        return keys.index(alias)
    return None

  def require(self, aliases: Sequence[str], expected: str) -> int:
    """Like `column`, but a missing column is a structural InputError."""
    index = self.column(aliases)
    if index is None:
      raise header_error(self, expected)
    return index


def header_error(table: Table, expected: str) -> InputError:
  reason = (f"expected columns {expected} separated by {table.separator!r}; "
            f"found header {table.header!r}")
  others = [s for s in _SEPARATORS
            if s != table.separator and s in table.header[0]]
  if len(table.header) == 1 and others:
    reason += (f" (one column containing {others[0]!r}: wrong separator? the file "
               f"seems to be separated by {others[0]!r})")
  return InputError(reason, file=table.path)


def open_text(path: str):
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


def read_table(path: str, separator: str | None,
                problems: Problems) -> Table:
  """Reads a CSV as stripped text cells; raises for a missing or empty file.

  `separator` None sniffs `,`, `;` or tab from the header line. Blank lines are
  skipped; a row with more non-empty cells than the header is a row problem.
  """
  if not os.path.isfile(path):
    raise InputError("CSV file not found", file=path)
  with open_text(path) as f:
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
  table = Table(path, separator, header or [], rows)
  if not rows and not problems.count:
    raise InputError(f"no data rows below the header {table.header!r}", file=path)
  return table
