"""Class labels as people type them: one class per spelling family, look-alikes named.

Used by the folder and csv layouts (`generic.py`); icpr2014's wider alias rule
(`common.class_lookup`) stays as it is.

  label_key(label)        the form two spellings of one class share: Unicode NFC,
                          case folded, surrounding whitespace stripped
  merge_spellings(counts) spelling -> class name, each family named by its most
                          frequent spelling, and a note per family that had more
                          than one (or a spelling with stray spaces)
  look_alike_notes(names) a note per set of classes that differ only in spaces,
                          punctuation, underscores or accents: kept apart, never
                          merged silently
"""

from __future__ import annotations

import re
import unicodedata
from typing import Iterable, Mapping, Sequence

_NOT_WORD = re.compile(r"[\W_]+")


def label_key(label: str) -> str:
  """Equal for spellings of one class: NFC, case folded, whitespace stripped."""
  text = unicodedata.normalize("NFC", str(label).strip())
  return unicodedata.normalize("NFC", text.casefold())


def clean_label(label: str) -> str:
  """A spelling as a class name: NFC, surrounding whitespace stripped."""
  return unicodedata.normalize("NFC", str(label).strip())


def merge_spellings(counts: Mapping[str, int],
                    fixed: Sequence[str] | None = None
                    ) -> tuple[dict[str, str], list[str]]:
  """Maps each spelling to its class name; returns (mapping, notes).

  counts: each label as written -> how many images carry it. Spellings equal under
  `label_key` are one class, named by the most frequent spelling (ties: the first in
  sorted order), cleaned by `clean_label`. With `fixed` class names, a family takes
  the fixed name of its key; spellings of no fixed name are left out of the mapping
  (the caller rejects them). Notes say which spellings were merged, with counts.
  """
  families: dict[str, list[str]] = {}
  for label in sorted(counts):
    families.setdefault(label_key(label), []).append(label)
  named = {label_key(n): n for n in fixed} if fixed is not None else None
  mapping, notes = {}, []
  for key, spellings in families.items():
    if named is not None:
      if key not in named:
        continue
      name = named[key]
    else:
      name = clean_label(max(spellings, key=lambda s: counts[s]))
    mapping.update({s: name for s in spellings})
    if spellings != [name]:
      total = sum(counts[s] for s in spellings)
      listed = ", ".join(f"{s!r} x{counts[s]}" for s in
                         sorted(spellings, key=lambda s: (-counts[s], s)))
      notes.append(f"label spellings {listed} are one class {name!r} ({total} "
                   "images; equal after Unicode NFC, case folding and stripping "
                   "surrounding spaces)")
  return mapping, notes


def _loose_key(label: str) -> str:
  decomposed = unicodedata.normalize("NFKD", label_key(label))
  plain = "".join(c for c in decomposed if not unicodedata.combining(c))
  return _NOT_WORD.sub("", plain)


def look_alike_notes(class_names: Iterable[str]) -> list[str]:
  """A note for each set of classes that differ only in spaces, punctuation,
  underscores or accents (`fine_speckled`, `fine speckled`): they stay apart."""
  families: dict[str, list[str]] = {}
  for name in class_names:
    families.setdefault(_loose_key(name), []).append(name)
  return [f"classes {' and '.join(repr(n) for n in sorted(names))} look alike "
          "(they differ only in spaces, punctuation, underscores or accents) and "
          "are kept apart; if they are one class, give them one spelling"
          for names in families.values() if len(names) > 1]
