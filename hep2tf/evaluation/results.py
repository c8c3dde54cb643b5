"""What an evaluation writes: RUN/eval/<split>/ and its TensorBoard events.

`write_results` writes metrics.json, predictions.csv, specimen_votes.csv and the
figures (confusion matrix, predictions, reliability, coverage-accuracy, attributions,
learning curves) of one evaluation; `write_evaluation` writes the same to TensorBoard
(scalars, the figures as images, the plain-text report). `png_to_image` turns PNG
bytes into the tensor `tf.summary.image` takes (the trainer's summaries use it too).
"""

from __future__ import annotations

import math
import os
from typing import Mapping, NamedTuple

import numpy as np
import pandas as pd
import tensorflow as tf

from hep2tf import atomic, figures, rundir, storage
from hep2tf.data import schema
from hep2tf.evaluation import formatting, plots


class Scored(NamedTuple):
  """A split's labels, probabilities in effect and meta (`predict.predict_logits`)."""
  y_true: np.ndarray
  probs: np.ndarray
  meta: dict


def write_results(model_dir, split, report, scored: Scored, shown=None,
                  explained=None) -> str:
  """Writes RUN/eval/<split>/ (see the module docstring) and its TensorBoard events."""
  y_true, probs, meta = scored
  run = rundir.RunDir(model_dir)
  out = run.eval_dir(split)
  storage.makedirs(out)
  class_names = report["class_names"]
  atomic.write_json(os.path.join(out, rundir.EVAL_METRICS), report)
  frame = pd.DataFrame({
      "file_name": meta.get(schema.FILE_NAME), "id": meta.get(schema.ID),
      "group": meta.get(schema.GROUP), "intensity": meta.get(schema.INTENSITY),
      "true": [class_names[i] for i in y_true],
      "predicted": [class_names[i] for i in probs.argmax(axis=1)],
      "confidence": probs.max(axis=1)})
  if report.get("abstention"):
    frame["uncertain"] = probs.max(axis=1) < report["abstention"]["min_confidence"]
  for k, name in enumerate(class_names):
    frame[f"p_{name}"] = probs[:, k]
  atomic.write(os.path.join(out, "predictions.csv"), frame.to_csv(index=False))
  if report.get("group", {}).get("table"):
    atomic.write(os.path.join(out, "specimen_votes.csv"),
                 pd.DataFrame(report["group"]["table"]).to_csv(index=False))
  drawn = {
      "confusion_matrix": plots.confusion_matrix_figure(
          np.asarray(report["confusion_matrix"]), class_names),
      "reliability": plots.reliability_figure(
          report["reliability"], report.get("reliability_calibrated"),
          ece=report["ece"], ece_calibrated=report.get("ece_calibrated"),
          temperature=report.get("temperature")),
      "coverage_accuracy": plots.coverage_accuracy_figure(
          report["coverage_accuracy"], report["aca"],
          (report.get("abstention") or {}).get("min_confidence")),
  }
  if shown is not None and len(shown):
    n = len(shown)
    drawn["predictions"] = plots.prediction_grid_figure(
        shown, y_true[:n], probs[:n].argmax(axis=1), class_names, probs=probs[:n])
  if explained is not None and len(explained["images"]):
    drawn["attributions"] = plots.attribution_grid_figure(
        explained["images"], explained["maps"], explained["y_true"],
        explained["y_pred"], class_names, probs=explained["probs"],
        masks=explained["masks"], method=explained["summary"]["method"])
  history = run.read_history()
  if history:
    drawn["learning_curves"] = plots.learning_curves_figure(history)
  pngs = {name: figures.figure_to_png(fig) for name, fig in drawn.items()}
  for name, png in pngs.items():
    figures.save_png(png, os.path.join(out, f"{name}.png"))
  write_evaluation(out, report, pngs,
                   formatting.format_report(report) + formatting.format_trust(report),
                   step=len(history.get("epoch", [])) if history else 0)
  return out


def write_evaluation(log_dir: str, report: Mapping[str, object],
                     pngs: Mapping[str, bytes], text: str, step: int = 0) -> None:
  """Writes one evaluation to TensorBoard: scalars of `report`, the PNG figures as
  images and the plain-text report."""
  scalars = {"mca": report.get("mca"), "aca": report.get("aca"),
             "ece": report.get("ece"), "ece_calibrated": report.get("ece_calibrated"),
             "temperature": report.get("temperature")}
  for coverage, value in (report.get("accuracy_at_coverage") or {}).items():
    scalars[f"accuracy_at_coverage_{coverage}"] = value
  for key, value in (report.get("explanations") or {}).items():
    if key in ("mask_lift", "intensity_lift", "randomisation_rank_corr"):
      scalars[f"explanations/{key}"] = value
  for intensity, scores in (report.get("by_intensity") or {}).items():
    scalars[f"by_intensity/{intensity}/mca"] = scores["mca"]
  writer = tf.summary.create_file_writer(log_dir)
  with writer.as_default(step=step):
    for name, value in scalars.items():
      if value is not None and math.isfinite(float(value)):
        tf.summary.scalar(name, float(value))
    for name, png in pngs.items():
      tf.summary.image(name, png_to_image(png))
    tf.summary.text("report", "```\n" + text + "\n```")
  writer.flush()
  writer.close()


def png_to_image(png: bytes) -> tf.Tensor:
  """PNG bytes -> a (1, H, W, 4) uint8 batch for `tf.summary.image`."""
  return tf.io.decode_png(png, channels=4)[tf.newaxis]
