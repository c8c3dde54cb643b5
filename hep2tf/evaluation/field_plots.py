"""The overlay of one field: its cells outlined in their predicted class's colour.

`field_view` keeps what the overlay needs of a field once the field itself is gone
(a display copy at most VIEW_SIDE pixels a side, each cell's outline), so that
`predict --fields` holds one field in memory at a time and draws a specimen's
overlays after its vote; `overlay_figure` draws it: the field stretched for display,
each cell's outline in its class's colour (dashed where the cell was below
--min_confidence and left out of the vote), a legend, and the specimen's answer in
the title.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np
from matplotlib import lines
from skimage import measure

from hep2tf import figures

VIEW_SIDE = 1024
_COLOURS = ("#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4",
            "#42d4f4", "#f032e6", "#bfef45", "#fabed4")


@dataclasses.dataclass
class FieldView:
  """A display copy of a field (uint8, at `scale` of the field's size) and each cell's
  outline as (y, x) points in field pixels."""
  image: np.ndarray
  scale: float
  outlines: list[np.ndarray]


def field_view(values: np.ndarray, labels: np.ndarray, cells) -> FieldView:
  """The field's display copy (0.5-99.5th percentile stretched, subsampled to at
  most VIEW_SIDE a side) and the outline of each of `cells` (fields.Cell)."""
  step = max(1, int(np.ceil(max(values.shape[:2]) / VIEW_SIDE)))
  small = np.asarray(values[::step, ::step], np.float64)
  low, high = np.percentile(small, (0.5, 99.5))
  image = np.clip((small - low) / max(high - low, 1e-12) * 255, 0, 255)
  outlines = []
  for cell in cells:
    top, left, bottom, right = cell.bbox
    y0, x0 = max(0, top - 1), max(0, left - 1)
    patch = labels[y0:bottom + 1, x0:right + 1] == cell.id
    contours = measure.find_contours(patch.astype(np.float32), 0.5)
    outline = max(contours, key=len) if contours else np.zeros((0, 2))
    outlines.append(outline + [y0, x0])
  return FieldView(image.astype(np.uint8), 1.0 / step, outlines)


def class_colour(index: int) -> str:
  return _COLOURS[index % len(_COLOURS)]


def overlay_figure(view: FieldView, predicted: Sequence[int], voted: Sequence[bool],
                   class_names: Sequence[str], title: str):
  """The overlay Figure: outlines coloured by predicted class id, solid where the cell
  voted, dashed where it did not; a legend of the classes present."""
  height, width = view.image.shape[:2]
  fig = figures.new_figure((7.5, 7.5 * height / width + 0.6))
  ax = fig.add_subplot()
  ax.imshow(view.image, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
  for outline, k, vote in zip(view.outlines, predicted, voted):
    if len(outline):
      ax.plot(outline[:, 1] * view.scale, outline[:, 0] * view.scale,
              color=class_colour(int(k)), linewidth=1.2,
              linestyle="-" if vote else "--")
  present = sorted(set(int(k) for k in predicted))
  handles = [lines.Line2D([], [], color=class_colour(k), label=class_names[k])
             for k in present]
  if not all(voted):
    handles.append(lines.Line2D([], [], color="white", linestyle="--",
                                label="below --min_confidence"))
  if handles:
    ax.legend(handles=handles, loc="upper right", fontsize=7, framealpha=0.7)
  ax.set_title(title, fontsize=9)
  ax.set_axis_off()
  return fig
