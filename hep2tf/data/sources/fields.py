"""Whole fields as a source of cells (`read_fields`, layout `fields`).

Registered in `sources.LAYOUTS` as `fields`: the layout of `hep2tf.data.fields`
(specimens.csv, one folder of field images per specimen, optional `_mask` files).
Unlike the other readers this one opens images: every field is read once, its cells
found (`fields.field_labels`, `fields.find_cells`) and each cell cut out as a
`cell_size` window with its own mask; the windows are written as lossless files (PNG
of the field's own bit depth, float TIFF for float fields) into a hidden cells
folder, `DIR/.hep2tf_cells/<specimen>/<field>_<id>.png` beside `_mask.png`, which is
rebuilt atomically on every conversion. The table then points at those windows, so
everything after it (pre-scan, intensity, splitting by specimen, shards, samples.png)
is the converter's as for any layout. A cell's id is `<specimen>/<field>/<label id>`.
"""

from __future__ import annotations

import os

import numpy as np
from absl import logging
from PIL import Image

from hep2tf import atomic
from hep2tf.data import fields, images
from hep2tf.data.sources.common import (check_root, CLASS_COLUMNS, finish_source,
                                        folder_listing, ICPR2012_CLASSES,
                                        ICPR2014_CLASSES, INTENSITY_COLUMNS, match_key,
                                        Problems, Source, SPECIMEN_COLUMNS)
from hep2tf.data.sources.tables import read_table
from hep2tf.errors import InputError, Rejects

CELLS_DIR = ".hep2tf_cells"
MITOTIC_SPINDLE = "MitoticSpindle"
# I3A 2014 Task 2's seven specimen classes, then ICPR 2012's: a pattern spelt like one
# of these (loosely: case, spaces, underscores) takes its spelling and place.
KNOWN_PATTERNS = ICPR2014_CLASSES + (MITOTIC_SPINDLE,) + ICPR2012_CLASSES


def read_fields(data_dir: str | os.PathLike, *, on_error: str = "fail",
                rejects: Rejects | None = None, name: str = "fields",
                config: fields.FieldsConfig | None = None,
                cells_dir: str | None = None) -> Source:
  """Cells of the fields under `data_dir`, labelled by their specimen's pattern.

  specimens.csv needs `specimen` and `pattern` columns (`class`/`label` also do),
  `intensity` optional. Specimen folders not in the CSV are skipped (a note says
  which); a specimen of the CSV without a folder, a field that cannot be read or a
  mask of another size is a row problem (InputError, or skipped with on_error=skip).
  Class names: the patterns present, in KNOWN_PATTERNS' order where known, then
  others sorted. Returns channels 1.
  """
  root, _ = check_root(data_dir)
  config = config or fields.FieldsConfig()
  problems = Problems(on_error, rejects)
  specimens = _read_specimens(root, problems)
  found = fields.list_fields(root)
  unlabelled = sorted(set(found) - set(specimens))
  notes = []
  if unlabelled:
    notes.append(f"{len(unlabelled)} specimen folders are not in {fields.SPECIMENS_CSV}"
                 f" and were skipped: {', '.join(unlabelled[:8])}")
  target = cells_dir or os.path.join(root, CELLS_DIR)
  rows, counts = [], {"fields": 0, "mask": 0, "segmented": 0, "edge": 0, "small": 0}
  try:
    with atomic.staged_dir(target) as staging:
      for specimen, (pattern, intensity, row) in specimens.items():
        if specimen not in found:
          problems(f"specimen {specimen!r} has no folder in {root} (it holds: "
                   f"{folder_listing(root)})",
                   os.path.join(root, fields.SPECIMENS_CSV), row)
          continue
        os.makedirs(staging / specimen)
        for field, path, mask in found[specimen]:
          cells = _cut_field(path, mask, config, staging / specimen, problems, counts)
          rows += [dict(id=f"{specimen}/{field}/{cell}",
                        path=os.path.join(target, specimen, image),
                        mask_path=os.path.join(target, specimen, cell_mask),
                        label=pattern, intensity=intensity, group=specimen,
                        split="", fold="") for cell, image, cell_mask in cells]
  except OSError as e:
    raise InputError(f"cannot write the cut-out cells ({e.strerror or e}); give "
                     "another folder with --layout_option cells_dir=PATH",
                     file=target) from None
  notes.append(f"{len(rows)} cells cut from {counts['fields']} fields "
               f"({counts['mask']} with masks, {counts['segmented']} segmented) as "
               f"{config.cell_size}-pixel windows into {target}; dropped "
               f"{counts['edge']} touching the edge, {counts['small']} under "
               f"{config.min_area} pixels")
  if counts["segmented"]:
    notes.append(f"segmented by {config.segment_config()}")
  class_names = _class_names({r["label"] for r in rows} or {"none"})
  return finish_source(name, class_names, 1, rows,
                       os.path.join(root, fields.SPECIMENS_CSV), problems, notes=notes)


def read_specimens(data_dir: str | os.PathLike) -> dict[str, tuple[str, str, int]]:
  """{specimen: (pattern, intensity, data row)} from DIR/specimens.csv; InputError for
  a missing file, a wrong header or a bad row (what `predict --fields` reads)."""
  return _read_specimens(os.path.abspath(os.fspath(data_dir)), Problems("fail", None))


def _read_specimens(root: str, problems: Problems) -> dict[str, tuple[str, str, int]]:
  """{specimen: (pattern, intensity, data row)} from specimens.csv."""
  path = os.path.join(root, fields.SPECIMENS_CSV)
  if not os.path.isfile(path):
    raise InputError(f"the fields layout needs {fields.SPECIMENS_CSV} (specimen,"
                     f"pattern[,intensity]) beside the specimen folders; the folder "
                     f"holds: {folder_listing(root)}", file=root)
  table = read_table(path, None, problems)
  expected = "'specimen,pattern' (optionally intensity)"
  specimen_col = table.require(SPECIMEN_COLUMNS, expected)
  pattern_col = table.require(CLASS_COLUMNS, expected)
  intensity_col = table.column(INTENSITY_COLUMNS)
  out = {}
  for row, line, values in table.rows:
    specimen, pattern = values[specimen_col], canonical_pattern(values[pattern_col])
    if not specimen or not pattern:
      problems("empty specimen or pattern", path, row, line)
    elif specimen in out:
      problems(f"specimen {specimen!r} listed twice", path, row, line)
    else:
      out[specimen] = (pattern, values[intensity_col].lower()
                       if intensity_col is not None else "", row)
  return out


def canonical_pattern(text: str) -> str:
  """A pattern's canonical spelling: 'mitotic spindle' -> 'MitoticSpindle', 'numem'
  -> 'NuMem'; unknown names are kept as written (stripped)."""
  # The first spelling wins: ICPR 2014's 'Homogeneous' before ICPR 2012's.
  lookup = {match_key(p): p for p in reversed(KNOWN_PATTERNS)}
  lookup.update({"nuclearmembrane": "NuMem", "mitotic": MITOTIC_SPINDLE,
                 "cytoplasmic": "cytoplasmatic"})
  return lookup.get(match_key(text), text.strip())


def _class_names(patterns: set[str]) -> list[str]:
  known = [p for p in KNOWN_PATTERNS if p in patterns]
  return known + sorted(patterns - set(known))


def _cut_field(path: str, mask: str | None, config: fields.FieldsConfig, where,
               problems: Problems, counts: dict) -> list[tuple[int, str, str]]:
  """Cuts one field's cells into `where`; returns (id, image file, mask file) of each
  ([] for a field that cannot be read)."""
  stem = os.path.splitext(os.path.basename(path))[0]
  try:
    values = fields.read_field(path)
    labels, how = fields.field_labels(values, mask, config)
  except InputError as e:
    problems(e.reason, e.file or path)
    return []
  cells, dropped = fields.find_cells(labels, config)
  counts["fields"] += 1
  counts[how] += 1
  counts["edge"] += dropped["edge"]
  counts["small"] += dropped["small"]
  fill = fields.background_level(values, labels)
  out = []
  for cell in cells:
    window = fields.cut_window(values, cell, config.cell_size, fill)
    name = f"{stem}_{cell.id:04d}"
    if window.dtype.kind == "f":   # float fields: float TIFF, as lossless as PNG
      Image.fromarray(window.astype(np.float32)).save(where / f"{name}.tif")
      image = f"{name}.tif"
    else:
      (where / f"{name}.png").write_bytes(images.encode_png(window))
      image = f"{name}.png"
    (where / f"{name}_mask.png").write_bytes(
        images.encode_png(fields.cell_mask(labels, cell, config.cell_size)))
    out.append((cell.id, image, f"{name}_mask.png"))
  logging.debug("%s: %d cells (%s)", path, len(cells), how)
  return out
