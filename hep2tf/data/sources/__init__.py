"""Source layouts -> one table of examples.

Each reader turns a dataset folder, as users download it, into a `Source`: the class
names (label-id order), the channel count and a `pandas.DataFrame` with one row per
source image (columns `COLUMNS`, all str, "" where unknown). `read_source(layout,
data_dir, **options)` is the single entry point; `LAYOUTS` maps the layout names that
`create_records --dataset=NAME` accepts to the readers, one module per layout
family:

  icpr2014.py   ICPR 2014 / I3A Task 1 (and the synthetic set)
  icpr2012.py   ICPR 2012 (MIVIA), grouped by slide from cells.csv
  cnmc.py       C-NMC 2019 from the top folder (Kaggle or TCIA)
  generic.py    a folder per class (`folder`) and a CSV naming path and label (`csv`)
  fields.py     whole microscope fields (`fields`): cells found, cut out and labelled
                by their specimen's pattern (the one reader that opens images)
  common.py     the `Source` they return, `COLUMNS` and the shared helpers;
                tables.py (CSV reading), files.py (finding files, the link-aware
                walk of class folders) and labels.py (spellings of one class
                merged, look-alikes named) below them

Images are never opened here (that is `images.py`), except by the fields reader, which
must find the cells: a reader only checks that the files exist and that no path leaves
the data folder, symlinks included. OS junk (`__MACOSX`, `.DS_Store`, `._*`,
`Thumbs.db`, `desktop.ini`, hidden names) is never a class, an image or a layout's
table.

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
from typing import Callable


from hep2tf.data.sources.cnmc import read_cnmc
from hep2tf.data.sources.fields import read_fields
# Source, COLUMNS and the class constants are re-exported: they are this package's API.
from hep2tf.data.sources.common import (CNMC_CLASSES, COLUMNS, ICPR2012_CLASSES,
                                        ICPR2014_CLASSES, IMAGE_EXTENSIONS, Source)
from hep2tf.data.sources.generic import read_csv, read_folder
from hep2tf.data.sources.icpr2012 import read_icpr2012
from hep2tf.data.sources.icpr2014 import read_icpr2014
from hep2tf.errors import InputError, Rejects


__all__ = ["CNMC_CLASSES", "COLUMNS", "ICPR2012_CLASSES", "ICPR2014_CLASSES",
           "IMAGE_EXTENSIONS", "LAYOUTS", "Source", "read_cnmc", "read_csv",
           "read_fields", "read_folder", "read_icpr2012", "read_icpr2014",
           "read_source"]


LAYOUTS: dict[str, Callable[..., Source]] = {
    "icpr2014": read_icpr2014,
    "icpr2012": read_icpr2012,
    "cnmc": read_cnmc,
    "folder": read_folder,
    "csv": read_csv,
    "fields": read_fields,
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
