"""THE dihedral group of a square: the 8 rotations by quarter turns and flips.

One numbering, used everywhere an image is turned or flipped: the converter's offline
copies (`splits.add_dihedral_copies` picks ids, `images.load_image` applies them), a
file's EXIF orientation (`decoding.orient`), the training step's random turns and
flips (`augment_layers.RandomDihedral`, `RandomQuarterTurn`) and test-time
augmentation (`augment.dihedral`).

Element k in 0..7: k % 4 quarter turns counter-clockwise (the direction of `np.rot90`
and `tf.image.rot90`), then a left-right flip if k >= 4; k = 0 is the identity.
`ELEMENTS[k]` writes element k as three steps applied in this order: a transpose
(rows become columns), an up-down flip, a left-right flip, each done or not. numpy
(`transform`, here) and TensorFlow (`augment_layers.dihedral_steps`) both apply
those steps from this table, so the two cannot drift apart
(tests/data/test_dihedral.py).

No TensorFlow here: this runs in the converter's worker processes.
"""

from __future__ import annotations

import numpy as np

NUM_ELEMENTS = 8

# k -> (transpose, flip up-down, flip left-right), applied in that order.
ELEMENTS = (
    (False, False, False),   # 0 identity
    (True, True, False),     # 1 a quarter turn counter-clockwise
    (False, True, True),     # 2 a half turn
    (True, False, True),     # 3 three quarter turns (a quarter turn clockwise)
    (False, False, True),    # 4 a left-right flip
    (True, True, True),      # 5 a quarter turn, then a left-right flip
    (False, True, False),    # 6 an up-down flip (a half turn, then left-right)
    (True, False, False),    # 7 a transpose (three quarter turns, then left-right)
)

# The elements that keep an image's height and width (no transpose): all that a batch
# of non-square images can take.
SHAPE_KEEPING = tuple(k for k, steps in enumerate(ELEMENTS) if not steps[0])

# EXIF orientation (1..8) -> the element that shows the image as viewers do (what
# Pillow's ImageOps.exif_transpose does; 1 is upright).
EXIF_ORIENTATION = {1: 0, 2: 4, 3: 2, 4: 6, 5: 7, 6: 3, 7: 5, 8: 1}


def check(k: int) -> int:
  """k itself if it names an element (0..7); ValueError otherwise."""
  if not 0 <= k < NUM_ELEMENTS:
    raise ValueError(f"dihedral id must be in 0..7, got {k}")
  return k


def transform(array: np.ndarray, k: int) -> np.ndarray:
  """Element k (0..7) applied to an (H, W[, C]) array; H and W swap for odd k."""
  transpose, up_down, left_right = ELEMENTS[check(k)]
  out = np.swapaxes(array, 0, 1) if transpose else array
  if up_down:
    out = out[::-1]
  if left_right:
    out = out[:, ::-1]
  return np.ascontiguousarray(out)
