"""Matplotlib figures without pyplot, as PNG bytes or PNG files.

Figures are `matplotlib.figure.Figure` objects drawn by the Agg canvas
(`new_figure`), never through pyplot, so they work headless and leave the user's
pyplot backend and figure registry alone. `figure_to_png` turns one into PNG bytes
(for `tf.summary.image`) and `save_figure` writes one atomically; both close the
figure. Used by the evaluation's plots (hep2tf.evaluation.plots) and by the
converter's samples.png (hep2tf.convert.samples).
"""

from __future__ import annotations

import io
import os
import sys

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from hep2tf import atomic


def new_figure(figsize: tuple[float, float],
               layout: str | None = "constrained") -> Figure:
  """An empty figure of `figsize` inches on an Agg canvas; constrained layout unless
  `layout` says otherwise (None: the caller places the axes)."""
  fig = Figure(figsize=figsize, layout=layout)
  FigureCanvasAgg(fig)
  return fig


def _close(fig: Figure) -> None:
  # Only a figure made through pyplot is held in its registry; ours are not.
  if "matplotlib.pyplot" in sys.modules:
    sys.modules["matplotlib.pyplot"].close(fig)


def figure_to_png(fig: Figure, dpi: int = 100) -> bytes:
  """PNG bytes of a figure at `dpi` (figsize x dpi pixels); closes the figure."""
  buffer = io.BytesIO()
  try:
    fig.savefig(buffer, format="png", dpi=dpi)
  finally:
    _close(fig)
  return buffer.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> None:
  """Writes a figure as PNG to `path` atomically (temp file, then rename); closes it."""
  save_png(figure_to_png(fig, dpi=dpi), path)


def save_png(data: bytes, path: str | os.PathLike) -> None:
  """Writes PNG bytes to `path` atomically (temp file, then rename)."""
  atomic.write(path, data)
