"""Figures for reports and TensorBoard: confusion matrix, learning curves, predictions,
reliability diagram, coverage-accuracy curve and attribution maps.

Each function returns a `matplotlib.figure.Figure` made by `hep2tf.figures.new_figure`
(the Agg canvas, never pyplot); `hep2tf.figures.figure_to_png` turns one into PNG
bytes (for `tf.summary.image`) and `hep2tf.figures.save_figure` writes one
atomically.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from hep2tf import figures
from hep2tf.errors import InputError

# Base names of history columns drawn on the accuracy axis; "val_" marks validation.
_ACCURACY_KEYS = ("accuracy", "acc", "categorical_accuracy",
                  "sparse_categorical_accuracy", "mca")
_LOSS_KEY = "loss"
_VAL = "val_"


def _short(name: str, max_len: int) -> str:
  return name if len(name) <= max_len else name[:max_len - 1] + "."


# ----------------------------------------------------------------------------------
# confusion matrix


def confusion_matrix_figure(confusion_matrix, class_names: Sequence[str],
                            normalize: bool = True, *,
                            figsize: tuple[float, float] | None = None) -> Figure:
  """A confusion matrix as a heat map with counts and row percentages in the cells.

  Args:
    confusion_matrix: (K, K) counts, rows = true class, columns = predicted.
    class_names: the K class names (long ones are shortened on the axes).
    normalize: colour by the row fraction (recall per true class) rather than counts,
      so rare classes such as Golgi are as readable as common ones.
    figsize: inches; default grows with K.
  """
  cm = np.asarray(confusion_matrix, dtype=np.float64)
  num_classes = len(class_names)
  if cm.shape != (num_classes, num_classes):
    raise InputError(f"confusion matrix of shape {cm.shape} does not match "
                     f"{num_classes} class names")
  rows = cm.sum(axis=1, keepdims=True)
  fractions = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
  side = max(4.0, 1.0 + 0.9 * num_classes)
  fig = figures.new_figure(figsize or (side + 1.0, side))
  ax = fig.add_subplot()
  shown = fractions if normalize else cm
  image = ax.imshow(shown, cmap="Blues", vmin=0.0,
                    vmax=1.0 if normalize else max(cm.max(), 1.0))
  fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04,
               label="fraction of true class" if normalize else "count")
  # Dark cells get white text so that every number stays readable.
  threshold = (1.0 if normalize else max(cm.max(), 1.0)) / 2
  font = max(6, 11 - num_classes // 3)
  for i in range(num_classes):
    for j in range(num_classes):
      text = f"{int(cm[i, j])}\n{100 * fractions[i, j]:.0f}%"
      ax.text(j, i, text, ha="center", va="center", fontsize=font,
              color="white" if shown[i, j] > threshold else "black")
  labels = [_short(str(name), 14) for name in class_names]
  ax.set_xticks(range(num_classes), labels, rotation=45, ha="right")
  ax.set_yticks(range(num_classes), labels)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title("confusion matrix (rows: true, % of row)")
  return fig


# ----------------------------------------------------------------------------------
# learning curves


def _history_columns(history) -> dict[str, np.ndarray]:
  """Per-epoch columns of a Keras history dict, `History` or DataFrame, as arrays."""
  if hasattr(history, "history") and isinstance(history.history, Mapping):
    history = history.history  # a keras.callbacks.History
  if hasattr(history, "to_dict") and hasattr(history, "columns"):
    columns = {str(c): np.asarray(history[c], dtype=np.float64)
               for c in history.columns}
  elif isinstance(history, Mapping):
    columns = {str(k): np.asarray(v, dtype=np.float64).reshape(-1)
               for k, v in history.items()}
  else:
    raise InputError("history must be a dict or DataFrame, got "
                     f"{type(history).__name__}")
  if not columns or not any(len(v) for v in columns.values()):
    raise InputError("history has no epochs to plot")
  return columns


def learning_curves_figure(history, *,
                           figsize: tuple[float, float] = (8.0, 5.0)) -> Figure:
  """Loss and accuracy per epoch, train solid and validation dashed.

  Args:
    history: a dict of per-epoch lists, a DataFrame (as read from history.csv) or a
      `keras.callbacks.History`, with columns such as loss, val_loss, accuracy,
      val_accuracy, mca, val_mca. An `epoch` column (0-based, as Keras's CSVLogger
      writes it) sets the x axis; otherwise epochs are numbered from 1.
    figsize: inches.

  Returns:
    A figure with loss on the left axis and accuracy / MCA on a twin right axis.
  """
  columns = _history_columns(history)
  length = max(len(v) for v in columns.values())
  epochs = (columns.pop("epoch") + 1 if "epoch" in columns
            else np.arange(1, length + 1, dtype=np.float64))
  loss_keys = [k for k in (_LOSS_KEY, _VAL + _LOSS_KEY) if k in columns]
  accuracy_keys = [k for k in columns if k.removeprefix(_VAL) in _ACCURACY_KEYS]
  if not loss_keys and not accuracy_keys:
    raise InputError("history has neither loss nor accuracy columns: "
                     f"{sorted(columns)}")

  fig = figures.new_figure(figsize)
  loss_ax = fig.add_subplot()
  score_ax = loss_ax.twinx()
  colours = {}

  def draw(ax, key):
    base = key.removeprefix(_VAL)
    colour = colours.setdefault(base, f"C{len(colours)}")
    validation = key.startswith(_VAL)
    ax.plot(epochs[:len(columns[key])], columns[key], color=colour,
            linestyle="--" if validation else "-", marker="." if length < 30 else None,
            label=("val " if validation else "train ") + base)

  for key in loss_keys:
    draw(loss_ax, key)
  for key in accuracy_keys:
    draw(score_ax, key)
  loss_ax.set_xlabel("epoch")
  loss_ax.set_ylabel("loss")
  score_ax.set_ylabel("accuracy / MCA")
  score_ax.set_ylim(0.0, 1.02)
  loss_ax.grid(alpha=0.3)
  handles = loss_ax.get_legend_handles_labels()
  more = score_ax.get_legend_handles_labels()
  loss_ax.legend(handles[0] + more[0], handles[1] + more[1], loc="center right",
                 fontsize="small")
  loss_ax.set_title("learning curves (solid: train, dashed: validation)")
  return fig


# ----------------------------------------------------------------------------------
# prediction grid


def _display_image(image: np.ndarray) -> tuple[np.ndarray, str | None]:
  """(array imshow can draw, colour map) for one grey or RGB cell, uint8 or float."""
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] not in (3, 4)):
    raise InputError(f"an image must be (H, W), (H, W, 1) or (H, W, 3), "
                     f"got {image.shape}")
  image = image.astype(np.float64)
  # IIF cells are dark (a nucleus may sit at 10-30% of full scale): stretch each image
  # to its own range so the pattern is visible.
  low, high = np.nanmin(image), np.nanmax(image)
  image = (image - low) / (high - low) if high > low else np.zeros_like(image)
  return image, ("gray" if image.ndim == 2 else None)


def prediction_grid_figure(images, y_true, y_pred, class_names: Sequence[str],
                           probs=None, max_images: int = 36, *,
                           figsize: tuple[float, float] | None = None) -> Figure:
  """A grid of cells titled "true / pred (p)", wrong predictions in red.

  Args:
    images: (N, H, W), (N, H, W, 1) or (N, H, W, 3), uint8 or float in any range;
      each image is contrast-stretched to its own range for display.
    y_true, y_pred: int class ids (N,).
    class_names: the class names, in label-id order.
    probs: optional (N, K) probabilities; p is the probability of the predicted class.
    max_images: at most this many of the first images are drawn.
    figsize: inches; default 1.6 inches per cell.
  """
  y_true = np.asarray(y_true).reshape(-1)
  y_pred = np.asarray(y_pred).reshape(-1)
  if len(y_true) != len(images) or len(y_pred) != len(images):
    raise InputError(f"{len(images)} images but {len(y_true)} labels and "
                     f"{len(y_pred)} predictions")
  count = min(len(images), max_images)
  if count == 0:
    raise InputError("no images to draw")
  if probs is not None:
    probs = np.asarray(probs)
  cols = math.ceil(math.sqrt(count))
  rows = math.ceil(count / cols)
  fig = figures.new_figure(figsize or (1.6 * cols, 1.75 * rows))
  for i in range(count):
    ax = fig.add_subplot(rows, cols, i + 1)
    image, cmap = _display_image(images[i])
    ax.imshow(image, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_axis_off()
    true, pred = int(y_true[i]), int(y_pred[i])
    title = f"{_short(class_names[true], 9)} / {_short(class_names[pred], 9)}"
    if probs is not None:
      title += f" ({probs[i, pred]:.2f})"
    ax.set_title(title, fontsize=6.5, color="black" if true == pred else "red")
  return fig


# ----------------------------------------------------------------------------------
# calibration and abstention


def reliability_figure(bins, calibrated_bins=None, *, ece: float | None = None,
                       ece_calibrated: float | None = None,
                       temperature: float | None = None,
                       figsize: tuple[float, float] = (5.5, 5.5)) -> Figure:
  """Reliability diagram: accuracy per confidence bin against the diagonal.

  Args:
    bins: rows of `calibration.reliability_bins` (lower, upper, count, confidence,
      accuracy) of the model's own probabilities, drawn as bars.
    calibrated_bins: the same after temperature scaling, drawn as a line, or None.
    ece, ece_calibrated, temperature: shown in the legend when given.
  """
  if not bins:
    raise InputError("no bins to draw")
  fig = figures.new_figure(figsize)
  ax, hist = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
  width = bins[0]["upper"] - bins[0]["lower"]
  filled = [b for b in bins if b["count"]]
  label = "model" + (f" (ECE {ece:.3f})" if ece is not None else "")
  ax.bar([b["lower"] for b in filled], [b["accuracy"] for b in filled], width=width,
         align="edge", color="C0", alpha=0.7, edgecolor="C0", label=label)
  # The gap between accuracy and mean confidence is what ECE weighs.
  ax.bar([b["lower"] for b in filled],
         [b["confidence"] - b["accuracy"] for b in filled],
         bottom=[b["accuracy"] for b in filled], width=width, align="edge",
         color="none", edgecolor="C3", hatch="//", label="gap to confidence")
  if calibrated_bins:
    points = [b for b in calibrated_bins if b["count"]]
    label = f"scaled, T = {temperature:.2f}" if temperature is not None else "scaled"
    if ece_calibrated is not None:
      label += f" (ECE {ece_calibrated:.3f})"
    ax.plot([b["confidence"] for b in points], [b["accuracy"] for b in points],
            "o-", color="C2", label=label)
  ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1.02)
  ax.set_ylabel("accuracy")
  ax.legend(loc="upper left", fontsize="small")
  ax.set_title("reliability diagram (15 bins of confidence)")
  hist.bar([b["lower"] for b in bins], [b["count"] for b in bins], width=width,
           align="edge", color="C7")
  hist.set_xlabel("confidence (top probability)")
  hist.set_ylabel("cells")
  return fig


def coverage_accuracy_figure(rows, full_accuracy: float | None = None,
                             min_confidence: float | None = None, *,
                             figsize: tuple[float, float] = (5.5, 4.0)) -> Figure:
  """Accuracy on the most confident cells against the share of cells kept.

  Args:
    rows: `calibration.coverage_accuracy` rows (coverage, accuracy, min_confidence).
    full_accuracy: accuracy at full coverage, drawn as a horizontal line.
    min_confidence: a threshold to mark on the curve (the run's abstention setting).
  """
  if not rows:
    raise InputError("no coverage rows to draw")
  fig = figures.new_figure(figsize)
  ax = fig.add_subplot()
  coverage = [r["coverage"] for r in rows]
  ax.plot(coverage, [r["accuracy"] for r in rows], "o-", color="C0",
          label="accuracy on kept cells")
  if full_accuracy is not None:
    ax.axhline(full_accuracy, color="k", linestyle="--", linewidth=1,
               label=f"all cells ({full_accuracy:.3f})")
  if min_confidence is not None:
    kept = [r for r in rows if r["min_confidence"] >= min_confidence]
    if kept:
      last = kept[-1]
      ax.axvline(last["coverage"], color="C3", linestyle=":",
                 label=f"confidence >= {min_confidence:.2f}")
  for c in (0.90, 0.95):
    ax.axvline(c, color="C7", linewidth=0.5)
  low = min(r["accuracy"] for r in rows)
  ax.set_ylim(max(0.0, low - 0.05), 1.005)
  ax.set_xlim(0, 1.02)
  ax.set_xlabel("coverage (share of cells the model answers)")
  ax.set_ylabel("accuracy")
  ax.grid(alpha=0.3)
  ax.legend(loc="lower left", fontsize="small")
  ax.set_title("coverage-accuracy (abstain on the least confident)")
  return fig


# ----------------------------------------------------------------------------------
# attribution maps


def _draw_attribution(ax, image, attribution, mask=None) -> None:
  shown, cmap = _display_image(image)
  if shown.ndim == 3:
    shown = shown[..., :3].mean(axis=-1)
  ax.imshow(shown, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
  positive = np.clip(np.asarray(attribution, dtype=np.float64), 0.0, None)
  top = np.percentile(positive, 99.5) if positive.any() else 0.0
  if top > 0:
    heat = np.clip(positive / top, 0.0, 1.0)
    # Transparent where the map is 0, so the cell shows through.
    ax.imshow(np.ma.masked_less(heat, 0.05), cmap="inferno", vmin=0.0, vmax=1.0,
              alpha=0.6, interpolation="bilinear")
  if mask is not None and np.asarray(mask).any() and not np.asarray(mask).all():
    ax.contour(np.asarray(mask, dtype=float), levels=[0.5], colors="cyan",
               linewidths=0.6)
  ax.set_axis_off()


def attribution_grid_figure(images, attributions, y_true, y_pred,
                            class_names: Sequence[str], probs=None, masks=None,
                            method: str = "smoothgrad", *,
                            figsize: tuple[float, float] | None = None) -> Figure:
  """A grid of cells with their positive attribution overlaid (heat) and the cell
  mask outlined (cyan); titles "true / pred (p)", wrong predictions in red.

  Args:
    images: (N, H, W[, C]) cells.
    attributions: (N, H, W) maps (positive = evidence for the predicted class).
    y_true, y_pred: (N,) class ids.
    class_names: names in label-id order.
    probs: optional (N, K) probabilities.
    masks: optional (N, H, W) boolean cell masks.
    method: named in the title.
  """
  count = len(images)
  if count == 0:
    raise InputError("no images to draw")
  if len(attributions) != count or len(y_true) != count or len(y_pred) != count:
    raise InputError(f"{count} images but {len(attributions)} maps, {len(y_true)} "
                     f"labels and {len(y_pred)} predictions")
  cols = math.ceil(math.sqrt(count))
  rows = math.ceil(count / cols)
  fig = figures.new_figure(figsize or (1.7 * cols, 1.85 * rows + 0.3))
  for i in range(count):
    ax = fig.add_subplot(rows, cols, i + 1)
    _draw_attribution(ax, images[i], attributions[i],
                      None if masks is None else masks[i])
    true, pred = int(y_true[i]), int(y_pred[i])
    title = f"{_short(class_names[true], 9)} / {_short(class_names[pred], 9)}"
    if probs is not None:
      title += f" ({np.asarray(probs)[i, pred]:.2f})"
    ax.set_title(title, fontsize=6.5, color="black" if true == pred else "red")
  fig.suptitle(f"{method}: evidence for the predicted class (cyan: cell mask)",
               fontsize=8)
  return fig


def attribution_overlay_figure(image, attribution, title: str, *,
                               figsize: tuple[float, float] = (5.0, 2.8)) -> Figure:
  """One cell: the image beside the image with its attribution overlaid."""
  fig = figures.new_figure(figsize)
  left, right = fig.subplots(1, 2)
  shown, cmap = _display_image(image)
  left.imshow(shown, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
  left.set_axis_off()
  left.set_title("input (contrast stretched)", fontsize=7)
  _draw_attribution(right, image, attribution)
  right.set_title("evidence for the call", fontsize=7)
  fig.suptitle(title, fontsize=8)
  return fig
