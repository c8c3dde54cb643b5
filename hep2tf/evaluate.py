"""Evaluates a run on a split, in the terms this field reports.

  python -m hep2tf.evaluate --model_dir=RUN --split=test [--tta] [--calibrate]
      [--min_confidence=0.9] [--explain_cells=24]

Prints the table (per-class precision/recall/F1/specificity/support, macro and weighted
averages, ACA, MCA, the confusion matrix; ROC-AUC and positive-class F1 for binary
tasks; specimen/patient accuracy by voting when groups are known), then how far the
probabilities can be trusted: ECE (15 bins) before and after temperature scaling,
accuracy at 90% and 95% coverage, scores by intensity and by specimen, the
specimen-level vote table and the checks on the attribution maps. Writes
RUN/eval/<split>/ metrics.json, predictions.csv, specimen_votes.csv,
confusion_matrix.png, predictions.png, reliability.png, coverage_accuracy.png,
attributions.png, learning_curves.png and TensorBoard events of all of them.

--calibrate fits a temperature on the run's validation split, keeps it in
RUN/calibration.json and re-exports RUN/export with it; from then on evaluate, predict
and the SavedModel apply it. --min_confidence=P writes the coverage and accuracy that P
gives on the validation split into RUN/calibration.json.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pandas as pd
from absl import app, flags

from hep2tf import (augment, calibration, errors, explain, export, folds, intensity,
                    input_pipeline, metrics, plots, schema, storage, summaries,
                    trainer)


def define_flags() -> None:
  """Defines the command-line flags (once; importing this module defines none)."""
  flags.DEFINE_string("model_dir", None, "Run directory made by hep2tf.train.")
  flags.DEFINE_string("split", "test", "Split of the run's records to evaluate.")
  flags.DEFINE_boolean("tta", False, "Average over the 8 dihedral transforms (4 for non-square inputs).")
  flags.DEFINE_enum("checkpoint", "best", ["best", "final"], "best: best validation MCA; final: the last epoch.")
  flags.DEFINE_string("records_dir", None, "Evaluate on these records instead of the run's own (same classes).")
  flags.DEFINE_integer("batch_size", 128, "Batch size for inference.")
  flags.DEFINE_boolean("calibrate", False, "Fit a temperature on the validation split, "
                       "store it in the run and re-export the SavedModel with it.")
  flags.DEFINE_float("min_confidence", None, "Abstention threshold P: write the "
                     "coverage it gives on the validation split into the run.")
  flags.DEFINE_integer("explain_cells", explain.DEFAULT_CELLS, "Cells to explain with "
                       "attribution maps (0: none); each costs a few dozen passes.")

FLAGS = flags.FLAGS


GRID_IMAGES = 36  # cells in the grid of predictions with ground truth


def read_run_config(model_dir: str) -> dict:
  path = os.path.join(model_dir, trainer.CONFIG_FILE)
  if not storage.exists(path):
    raise FileNotFoundError(f"{model_dir} is not a hep2tf run directory "
                            f"({trainer.CONFIG_FILE} is missing)")
  with storage.open_file(path) as f:
    return json.load(f)


def load_run_model(model_dir: str, checkpoint: str = "best"):
  name = trainer.BEST_MODEL if checkpoint == "best" else trainer.FINAL_MODEL
  path = os.path.join(model_dir, name)
  if not storage.exists(path):
    raise FileNotFoundError(f"{path} does not exist; has the run finished an epoch?")
  return trainer.load_model(path)


def tta_transforms(height: int, width: int) -> list[int]:
  """Dihedral ids that keep the image shape: all 8 when square, else 4."""
  return list(range(8)) if height == width else [0, 2, 4, 6]


def predict_logits(model, dataset, tta: bool = False, keep_images: int = 0):
  """Runs the model's logits over (images, labels, meta) batches.

  Returns (y_true ids, logits (V, N, K) float64 with one slice per TTA view, meta dict
  of numpy str arrays, the first `keep_images` images as uint8 or None).
  """
  logits_model = calibration.logits_model(model)
  y_true, logits, meta, kept = [], [], {}, []
  for images, labels, batch_meta in dataset:
    if sum(len(k) for k in kept) < keep_images:
      kept.append(images.numpy().astype("uint8"))
    ks = tta_transforms(images.shape[1], images.shape[2]) if tta else [0]
    logits.append(np.stack([
        logits_model(augment.dihedral(images, k) if k else images,
                     training=False).numpy().astype(np.float64) for k in ks]))
    y_true.append(np.argmax(labels.numpy(), axis=1))
    for key, value in batch_meta.items():
      meta.setdefault(key, []).append(value.numpy().astype(str))
  shown = np.concatenate(kept)[:keep_images] if kept else None
  return (np.concatenate(y_true), np.concatenate(logits, axis=1),
          {k: np.concatenate(v) for k, v in meta.items()}, shown)


def view_probabilities(logits, temperature: float = 1.0) -> np.ndarray:
  """Probabilities (N, K): softmax(logits / T) per view, averaged over the views."""
  return calibration.softmax(logits, temperature).mean(axis=0)


def predict_dataset(model, dataset, tta: bool = False, keep_images: int = 0,
                    temperature: float = 1.0):
  """Runs the model over (images, labels, meta) batches.

  Returns (y_true ids, probabilities (N, K) at `temperature`, meta dict of numpy str
  arrays), and with keep_images > 0 also the first `keep_images` images (uint8) as a
  fourth item.
  """
  y_true, logits, meta, shown = predict_logits(model, dataset, tta, keep_images)
  result = (y_true, view_probabilities(logits, temperature), meta)
  return result + (shown,) if keep_images else result


def validation_dataset(run: dict, batch_size: int, with_meta: bool = True):
  """The run's own validation data: its eval split, or its held-out fold."""
  config = run.get("config", {})
  image_size = tuple(run["image_size"]) if run.get("image_size") else None
  split, fold = config.get("eval_split", "validation"), None
  if config.get("num_folds"):
    split = config.get("train_split", "train")
    fold = folds.FoldSpec(index=config["fold"], num_folds=config["num_folds"],
                          holdout=True, seed=config.get("seed", 0),
                          by_group=config.get("fold_by_group", True))
  return split, input_pipeline.create_split(
      run["records_dir"], split, batch_size=batch_size, training=False, fold=fold,
      image_size=image_size, apply_mask=run.get("apply_mask", False),
      with_meta=with_meta)


def fit_on_validation(model_dir: str, run: dict, model, checkpoint: str, *,
                      calibrate: bool, min_confidence: float | None,
                      batch_size: int) -> None:
  """--calibrate and --min_confidence: fit on the validation split, store in the run."""
  split, dataset = validation_dataset(run, batch_size)
  y_val, logits, _, _ = predict_logits(model, dataset)
  if calibrate:
    t = calibration.fit_temperature(logits[0], y_val)
    raw, scaled = calibration.softmax(logits[0]), calibration.softmax(logits[0], t)
    calibration.update_run_calibration(
        model_dir, temperature=t, checkpoint=checkpoint, split=split,
        num_examples=int(len(y_val)),
        nll=[calibration.negative_log_likelihood(logits[0], y_val),
             calibration.negative_log_likelihood(logits[0], y_val, t)],
        ece=[calibration.expected_calibration_error(raw, y_val),
             calibration.expected_calibration_error(scaled, y_val)])
    if checkpoint == "best":
      # The export serves the best model; it now answers with calibrated probabilities.
      height, width, channels = run["input_shape"]
      export.export_serving(model, os.path.join(model_dir, trainer.EXPORT_DIR),
                            class_names=run["class_names"], channels=channels,
                            image_size=(height, width), temperature=t,
                            pixels=intensity.PixelSpec.from_json(run.get("pixels")))
  if min_confidence is not None:
    t = run_temperature(model_dir, checkpoint)
    at = calibration.coverage_at(calibration.softmax(logits[0], t), y_val,
                                 min_confidence)
    calibration.update_run_calibration(model_dir, min_confidence=min_confidence,
                                       min_confidence_split=split,
                                       min_confidence_coverage=at["coverage"],
                                       min_confidence_accuracy=at["accuracy"])


def run_temperature(model_dir: str, checkpoint: str) -> float | None:
  """The stored temperature when it was fitted for this checkpoint, else None."""
  stored = calibration.read_run_calibration(model_dir)
  if stored.get("temperature") is None or stored.get("checkpoint", "best") != checkpoint:
    return None
  return float(stored["temperature"])


def evaluate_run(model_dir: str, split: str = "test", *, tta: bool = False,
                 checkpoint: str = "best", records_dir: str | None = None,
                 batch_size: int = 128, write: bool = True, calibrate: bool = False,
                 min_confidence: float | None = None,
                 explain_cells: int = 0) -> dict:
  """Evaluates a run's model on a split and (with write) stores the results.

  With `calibrate` / `min_confidence` it first fits on the run's validation split and
  stores the result in the run (see the module docstring). Class scores are computed
  from the probabilities in effect: calibrated when the run has a temperature for this
  checkpoint (argmax, and so MCA/ACA, is unchanged by it).

  Returns the dict of `metrics.classification_report` plus `split`, `tta`,
  `checkpoint`, `records_dir`, the keys of `calibration.calibration_report`,
  `by_intensity`, `by_specimen`, `abstention` (when a threshold is set) and
  `explanations` (when `explain_cells` > 0).
  """
  if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
    raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
  run = read_run_config(model_dir)
  records_dir = records_dir or run["records_dir"]
  info = input_pipeline.load_info(records_dir)
  if list(info.class_names) != list(run["class_names"]):
    raise ValueError(f"{records_dir} has classes {info.class_names}, the run was "
                     f"trained on {run['class_names']}")
  model = load_run_model(model_dir, checkpoint)
  if calibrate or min_confidence is not None:
    fit_on_validation(model_dir, run, model, checkpoint, calibrate=calibrate,
                      min_confidence=min_confidence, batch_size=batch_size)
  image_size = tuple(run["image_size"]) if run.get("image_size") else None

  def dataset():
    return input_pipeline.create_split(
        records_dir, split, batch_size=batch_size, training=False,
        image_size=image_size, apply_mask=run.get("apply_mask", False),
        with_meta=True)

  y_true, logits, meta, shown = predict_logits(model, dataset(), tta=tta,
                                               keep_images=GRID_IMAGES)
  temperature = run_temperature(model_dir, checkpoint)
  raw = view_probabilities(logits)
  scaled = None if temperature is None else view_probabilities(logits, temperature)
  probs = raw if scaled is None else scaled
  class_names = run["class_names"]
  report = metrics.classification_report(
      y_true, probs, class_names, groups=meta.get(schema.GROUP),
      positive_class=run.get("positive_class"))
  report.update(split=split, tta=tta, checkpoint=checkpoint,
                records_dir=storage.abspath(records_dir), split_notes=info.split_notes)
  # Whether the converter could keep every specimen/patient/slide in one split.
  report["group_disjoint"] = info.group_disjoint
  # Beside the training's validation MCA of the best checkpoint, when it is known.
  complete = os.path.join(model_dir, trainer.COMPLETE_FILE)
  if (checkpoint == "best" and storage.exists(complete)
      and split != run.get("config", {}).get("eval_split", "validation")):
    with storage.open_file(complete) as f:
      report["val_test_gap"] = metrics.val_test_gap(json.load(f)["val_mca"],
                                                    report["mca"])
  report.update(calibration.calibration_report(raw, y_true, scaled, temperature))
  report["by_intensity"] = metrics.subgroup_report(
      y_true, probs, meta.get(schema.INTENSITY, [""] * len(y_true)), class_names)
  report["by_specimen"] = metrics.subgroup_report(
      y_true, probs, meta.get(schema.GROUP, [""] * len(y_true)), class_names)
  stored = calibration.read_run_calibration(model_dir)
  if stored.get("min_confidence") is not None:
    report["abstention"] = {
        **calibration.coverage_at(probs, y_true, stored["min_confidence"]),
        "validation_coverage": stored.get("min_confidence_coverage")}
  explained = None
  if explain_cells > 0:
    explained = explain_split(model, dataset(), records_dir, split, image_size,
                              y_true, probs, meta, explain_cells)
    report["explanations"] = explained["summary"]
  if write:
    write_results(model_dir, split, report, y_true, probs, meta, shown, explained)
  return report


def explain_split(model, dataset, records_dir, split, image_size, y_true, probs,
                  meta, count: int) -> dict:
  """Attribution maps of a selection of right and wrong cells, and their checks."""
  index = explain.select_cells(y_true, probs, count)
  names = [str(n) for n in meta[schema.FILE_NAME][index]]
  images = explain.gather_images(dataset, names)
  masks = explain.read_masks(records_dir, split, names, image_size)
  y_pred = probs.argmax(axis=1)
  maps, summary = explain.attribution_checks(model, images, y_pred[index], masks)
  return {"summary": summary, "images": images, "maps": maps, "masks": masks,
          "y_true": y_true[index], "y_pred": y_pred[index], "probs": probs[index]}


def write_results(model_dir, split, report, y_true, probs, meta, shown=None,
                  explained=None) -> str:
  """Writes RUN/eval/<split>/ (see the module docstring) and its TensorBoard events."""
  out = os.path.join(model_dir, "eval", split)
  storage.makedirs(out)
  class_names = report["class_names"]
  storage.write_atomic(os.path.join(out, "metrics.json"), json.dumps(report, indent=2))
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
  storage.write_atomic(os.path.join(out, "predictions.csv"),
                       frame.to_csv(index=False))
  if report.get("group", {}).get("table"):
    storage.write_atomic(os.path.join(out, "specimen_votes.csv"),
                         pd.DataFrame(report["group"]["table"]).to_csv(index=False))
  figures = {
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
    figures["predictions"] = plots.prediction_grid_figure(
        shown, y_true[:n], probs[:n].argmax(axis=1), class_names, probs=probs[:n])
  if explained is not None and len(explained["images"]):
    figures["attributions"] = plots.attribution_grid_figure(
        explained["images"], explained["maps"], explained["y_true"],
        explained["y_pred"], class_names, probs=explained["probs"],
        masks=explained["masks"], method=explained["summary"]["method"])
  history = trainer.read_history(model_dir)
  if history:
    figures["learning_curves"] = plots.learning_curves_figure(history)
  pngs = {name: plots.figure_to_png(fig) for name, fig in figures.items()}
  for name, png in pngs.items():
    plots.save_png(png, os.path.join(out, f"{name}.png"))
  summaries.write_evaluation(out, report, pngs,
                             metrics.format_report(report) + metrics.format_trust(report),
                             step=len(history.get("epoch", [])) if history else 0)
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.model_dir:
    raise app.UsageError("--model_dir is required")
  try:
    report = evaluate_run(FLAGS.model_dir, FLAGS.split, tta=FLAGS.tta,
                          checkpoint=FLAGS.checkpoint, records_dir=FLAGS.records_dir,
                          batch_size=FLAGS.batch_size, calibrate=FLAGS.calibrate,
                          min_confidence=FLAGS.min_confidence,
                          explain_cells=FLAGS.explain_cells)
  except (errors.InputError, FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(errors.EXIT_INPUT_ERROR)
  title = f"{FLAGS.model_dir} on {FLAGS.split}" + (" (TTA)" if FLAGS.tta else "")
  print(metrics.format_report(report, title=title))
  print(metrics.format_trust(report))
  print(f"{FLAGS.split}: MCA {report['mca']:.4f}  ACA {report['aca']:.4f}")
  if report.get("group_disjoint") is False:
    print("note: the records' splits are not specimen/patient/slide-disjoint "
          "(group_disjoint: false in hep2tf.json); these figures may be optimistic")
  gap = report.get("val_test_gap")
  if gap:
    print(f"validation MCA {gap['validation_mca']:.4f}, gap {gap['gap']:+.4f}"
          + (f"  WARNING: {gap['warning']}" if gap["warning"] else ""))
  for note in report["split_notes"]:
    print(f"split note (from the converter): {note}")
  print(f"written to {os.path.join(FLAGS.model_dir, 'eval', FLAGS.split)}")


def run():
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
