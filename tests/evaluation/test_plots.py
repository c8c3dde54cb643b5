"""Tests of hep2tf.evaluation.plots (and hep2tf.figures): each figure renders headless
to a PNG of the expected size."""

import io
import os
import stat
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from hep2tf import figures
from hep2tf.errors import InputError
from hep2tf.evaluation import plots

NAMES = ["Homogeneous", "Speckled", "Nucleolar", "Centromere", "NuMem", "Golgi"]


def _decode(png: bytes) -> Image.Image:
  assert png.startswith(b"\x89PNG")
  image = Image.open(io.BytesIO(png))
  image.load()
  return image


def _not_blank(image: Image.Image) -> bool:
  pixels = np.asarray(image.convert("L"))
  return pixels.min() < pixels.max()


def test_confusion_matrix_png_has_figsize_times_dpi():
  cm = np.array([[50, 3, 0, 0, 1, 0], [4, 40, 2, 0, 0, 0], [0, 1, 30, 0, 0, 2],
                 [0, 0, 0, 45, 0, 0], [2, 0, 0, 0, 20, 0], [0, 0, 3, 0, 0, 0]])
  fig = plots.confusion_matrix_figure(cm, NAMES, figsize=(6, 5))
  texts = [t.get_text() for t in fig.axes[0].texts]
  assert "50\n93%" in texts  # 50 of 54 Homogeneous cells
  assert "0\n0%" in texts
  image = _decode(figures.figure_to_png(fig, dpi=50))
  assert image.size == (300, 250)
  assert _not_blank(image)


def test_confusion_matrix_counts_mode_and_default_size():
  fig = plots.confusion_matrix_figure([[3, 1], [0, 0]], ["hem", "all"], normalize=False)
  width, height = fig.get_size_inches()
  image = _decode(figures.figure_to_png(fig, dpi=40))
  assert image.size == (round(width * 40), round(height * 40))
  with pytest.raises(InputError, match="class names"):
    plots.confusion_matrix_figure(np.zeros((3, 3)), ["a", "b"])


def test_learning_curves_from_dict_and_dataframe():
  history = {"loss": [1.2, 0.8, 0.6], "val_loss": [1.3, 1.0, 0.9],
             "accuracy": [0.4, 0.6, 0.7], "val_accuracy": [0.35, 0.5, 0.6],
             "mca": [0.3, 0.5, 0.6], "val_mca": [0.3, 0.45, 0.55],
             "learning_rate": [1e-3, 1e-3, 1e-4]}
  fig = plots.learning_curves_figure(history, figsize=(4, 3))
  loss_ax, score_ax = fig.axes
  assert {line.get_label() for line in loss_ax.lines} == {"train loss", "val loss"}
  styles = {line.get_label(): line.get_linestyle() for line in score_ax.lines}
  assert styles == {"train accuracy": "-", "val accuracy": "--",
                    "train mca": "-", "val mca": "--"}
  assert list(score_ax.lines[0].get_xdata()) == [1, 2, 3]
  image = _decode(figures.figure_to_png(fig, dpi=100))
  assert image.size == (400, 300) and _not_blank(image)

  frame = pd.DataFrame(history).assign(epoch=[4, 5, 6])  # CSVLogger: 0-based
  fig = plots.learning_curves_figure(frame)
  assert list(fig.axes[0].lines[0].get_xdata()) == [5, 6, 7]
  figures.figure_to_png(fig)
  with pytest.raises(InputError):
    plots.learning_curves_figure({})


@pytest.mark.parametrize("shape,dtype", [((9, 20, 20), np.uint8),
                                         ((9, 20, 20, 1), np.float32),
                                         ((9, 16, 24, 3), np.uint8)])
def test_prediction_grid_marks_wrong_in_red(shape, dtype):
  rng = np.random.default_rng(0)
  images = (rng.random(shape) * (255 if dtype == np.uint8 else 1)).astype(dtype)
  y_true = np.arange(9) % 6
  y_pred = y_true.copy()
  y_pred[[2, 5]] = 0
  probs = np.full((9, 6), 0.1)
  probs[np.arange(9), y_pred] = 0.5
  fig = plots.prediction_grid_figure(images, y_true, y_pred, NAMES, probs=probs,
                                     figsize=(4.5, 5))
  titles = [ax.title for ax in fig.axes]
  assert len(titles) == 9
  assert titles[0].get_text() == "Homogene. / Homogene. (0.50)"
  red = [i for i, t in enumerate(titles) if t.get_color() == "red"]
  assert red == [2, 5]
  image = _decode(figures.figure_to_png(fig, dpi=80))
  assert image.size == (360, 400) and _not_blank(image)


def test_prediction_grid_limits_images_and_checks_lengths():
  images = np.zeros((50, 8, 8), np.uint8)
  labels = np.zeros(50, int)
  fig = plots.prediction_grid_figure(images, labels, labels, NAMES, max_images=10)
  assert len(fig.axes) == 10
  assert "(" not in fig.axes[0].get_title()  # no probabilities, no (p)
  figures.figure_to_png(fig)
  with pytest.raises(InputError, match="labels"):
    plots.prediction_grid_figure(images, labels[:3], labels, NAMES)


def test_save_figure_is_atomic_and_leaves_pyplot_alone(tmp_path):
  fig = plots.confusion_matrix_figure([[1, 0], [0, 1]], ["a", "b"], figsize=(2, 2))
  path = tmp_path / "cm.png"
  figures.save_figure(fig, path, dpi=30)
  assert _decode(path.read_bytes()).size == (60, 60)
  assert os.listdir(tmp_path) == ["cm.png"]  # no temp file left behind
  assert stat.S_IMODE(path.stat().st_mode) == 0o644
  with pytest.raises(FileNotFoundError):
    figures.save_figure(plots.confusion_matrix_figure([[1]], ["a"]),
                        tmp_path / "missing" / "x.png")
  assert "matplotlib.pyplot" not in sys.modules or not sys.modules[
      "matplotlib.pyplot"].get_fignums()


def test_reliability_and_coverage_figures():
  from hep2tf.evaluation import calibration
  rng = np.random.default_rng(0)
  logits = rng.normal(0, 3, (200, 4))
  y_true = rng.integers(0, 4, 200)
  raw, scaled = calibration.softmax(logits), calibration.softmax(logits, 3.0)
  fig = plots.reliability_figure(
      calibration.reliability_bins(raw, y_true), calibration.reliability_bins(
          scaled, y_true), ece=0.3, ece_calibrated=0.05, temperature=3.0)
  labels = fig.axes[0].get_legend_handles_labels()[1]
  assert "model (ECE 0.300)" in labels and "scaled, T = 3.00 (ECE 0.050)" in labels
  image = _decode(figures.figure_to_png(fig, dpi=60))
  assert image.size == (330, 330) and _not_blank(image)
  rows = calibration.coverage_accuracy(raw, y_true)
  fig = plots.coverage_accuracy_figure(rows, 0.25, min_confidence=0.5)
  line = fig.axes[0].lines[0]
  assert list(line.get_xdata()) == [r["coverage"] for r in rows]
  assert _not_blank(_decode(figures.figure_to_png(fig, dpi=50)))
  with pytest.raises(InputError):
    plots.coverage_accuracy_figure([])


def test_attribution_grid_and_overlay():
  rng = np.random.default_rng(0)
  images = rng.uniform(0, 50, (5, 24, 24, 1)).astype(np.float32)
  maps = rng.normal(size=(5, 24, 24))
  masks = np.zeros((5, 24, 24), bool)
  masks[:, 6:18, 6:18] = True
  y_true = np.array([0, 1, 2, 3, 4])
  y_pred = np.array([0, 1, 0, 3, 4])
  fig = plots.attribution_grid_figure(images, maps, y_true, y_pred, NAMES,
                                      masks=masks, figsize=(5, 5))
  titles = [ax.get_title() for ax in fig.axes]
  assert len(titles) == 5
  assert [ax.title.get_color() for ax in fig.axes].count("red") == 1
  image = _decode(figures.figure_to_png(fig, dpi=60))
  assert image.size == (300, 300) and _not_blank(image)
  with pytest.raises(InputError, match="maps"):
    plots.attribution_grid_figure(images, maps[:2], y_true, y_pred, NAMES)
  fig = plots.attribution_overlay_figure(images[0], maps[0], "00001.png: Golgi")
  assert fig._suptitle.get_text() == "00001.png: Golgi"
  assert _not_blank(_decode(figures.figure_to_png(fig, dpi=40)))
