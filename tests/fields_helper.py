"""A test helper: tiny fields layouts composed from hep2tf.data.synth cells.

`make_fields` writes DIR/specimens.csv and DIR/<specimen>/field<k>.png (+ _mask.png)
with `hep2tf.data.synth.fields.write_fields` at toy size: 192 x 192 fields of 48-pixel
cells, a few cells each, so a whole layout is drawn in well under a second.
"""

from __future__ import annotations

import pathlib

from hep2tf.data.synth import fields as synth_fields

SIZE = 192
CELL = 48


def make_fields(root, num_specimens: int = 4, *, seed: int = 0, fields: int = 2,
                masks: bool = True, bits: int = 8, num_cells: int = 6, dead: int = 0,
                patterns=("Homogeneous", "Centromere")) -> pathlib.Path:
  """A fields layout under `root` (a new folder); returns it."""
  return synth_fields.write_fields(
      root, num_specimens, seed=seed, fields_per_specimen=fields, masks=masks,
      height=SIZE, width=SIZE, cell_size=CELL, num_cells=num_cells, dead=dead,
      bits=bits, patterns=patterns)
