"""Evaluates a run on a split: the library of `python -m hep2tf.evaluate`.

`evaluate_run` loads the run's model, optionally fits the temperature and the
abstention threshold on the run's validation data (`fit_on_validation`, kept in
RUN/calibration.json), predicts the split (`hep2tf.evaluation.predict`), scores it
(`metrics`, `calibration`, subgroup and specimen scores), explains a selection of cells
(`explain_split`) and writes RUN/eval/<split>/ (`write_results`). What the command
prints and writes is described in hep2tf/evaluate.py.
"""

from __future__ import annotations

import numpy as np

from hep2tf import rundir, storage
from hep2tf.config.evaluate import ADAPT_MODES
from hep2tf.config.run import RunConfig, read_run_config
from hep2tf.data import folds, reader, schema
from hep2tf.data.records import Records
from hep2tf.evaluation import (adapt, calibration, explain, export, metrics, predict,
                               results)


GRID_IMAGES = 36  # cells in the grid of predictions with ground truth


def validation_dataset(run: RunConfig, records: Records, batch_size: int,
                       with_meta: bool = True):
  """The run's own validation data (`records`: the run's records folder): its eval
  split, or the fold it held out (`folds.run_fold`, as the trainer chose it).
  Returns (split name, dataset)."""
  split = run.train.validation_split
  return split, reader.create_split(
      records, split, batch_size=batch_size, training=False,
      fold=folds.run_fold(run.train, holdout=True), image_size=run.image_size,
      apply_mask=run.apply_mask, with_meta=with_meta).dataset


def fit_on_validation(model_dir: str, run: RunConfig, records: Records, model,
                      checkpoint: str, *, calibrate: bool,
                      min_confidence: float | None, batch_size: int) -> None:
  """--calibrate and --min_confidence: fit on the validation split, store in the run.

  The validation data are the run's own: `records` (the folder being evaluated) when
  it is the run's records folder, else that folder, opened here."""
  if storage.abspath(records.path) != storage.abspath(run.records_dir):
    records = Records.open(run.records_dir)
  split, dataset = validation_dataset(run, records, batch_size)
  y_val, logits, _, _ = predict.predict_logits(model, dataset)
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
      height, width, channels = run.input_shape
      export.export_serving(model, rundir.RunDir(model_dir).export_dir,
                            class_names=run.class_names, channels=channels,
                            image_size=(height, width), temperature=t,
                            pixels=run.pixels)
  if min_confidence is not None:
    t = calibration.run_temperature(model_dir, checkpoint)
    at = calibration.coverage_at(calibration.softmax(logits[0], t), y_val,
                                 min_confidence)
    calibration.update_run_calibration(model_dir, min_confidence=min_confidence,
                                       min_confidence_split=split,
                                       min_confidence_coverage=at["coverage"],
                                       min_confidence_accuracy=at["accuracy"])


def evaluate_run(model_dir: str, split: str = "test", *, tta: bool = False,
                 checkpoint: str = "best", records_dir: str | None = None,
                 batch_size: int = 128, write: bool = True, calibrate: bool = False,
                 min_confidence: float | None = None,
                 explain_cells: int = 0, adapt_to: str = "none") -> dict:
  """Evaluates a run's model on a split and (with write) stores the results.

  With `calibrate` / `min_confidence` it first fits on the run's validation split and
  stores the result in the run (see the module docstring). Class scores are computed
  from the probabilities in effect: calibrated when the run has a temperature for this
  checkpoint (argmax, and so MCA/ACA, is unchanged by it).

  Returns the dict of `metrics.classification_report` plus `split`, `tta`,
  `checkpoint`, `records_dir`, the keys of `calibration.calibration_report`,
  `by_intensity`, `by_specimen`, `abstention` (when a threshold is set) and
  `explanations` (when `explain_cells` > 0).

  `adapt_to="specimen"` / `"split"`: cells are predicted with BatchNorm statistics
  re-estimated from their specimen's cells, or from the whole split's (`adapt`;
  unsupervised).
  """
  if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
    raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
  if adapt_to not in ADAPT_MODES:
    raise ValueError(f"adapt must be one of {ADAPT_MODES}, got {adapt_to!r}")
  run = read_run_config(rundir.RunDir(model_dir))
  records_dir = records_dir or run.records_dir
  records = Records.open(records_dir)
  info = records.info
  if list(info.class_names) != list(run.class_names):
    raise ValueError(f"{records_dir} has classes {info.class_names}, the run was "
                     f"trained on {list(run.class_names)}")
  model = predict.load_run_model(model_dir, checkpoint)
  if calibrate or min_confidence is not None:
    fit_on_validation(model_dir, run, records, model, checkpoint, calibrate=calibrate,
                      min_confidence=min_confidence, batch_size=batch_size)
  image_size = run.image_size

  def dataset():
    return reader.create_split(
        records, split, batch_size=batch_size, training=False,
        image_size=image_size, apply_mask=run.apply_mask, with_meta=True).dataset

  if adapt_to != "none":
    check_adaptable(model)
    y_true, logits, meta, shown = adapt.predict_logits_by_group(
        model, dataset(), tta=tta, keep_images=GRID_IMAGES, unit=adapt_to)
  else:
    y_true, logits, meta, shown = predict.predict_logits(model, dataset(), tta=tta,
                                                         keep_images=GRID_IMAGES)
  report, probs = score_split(model_dir, run, y_true, logits, meta, context={
      "split": split, "tta": tta, "checkpoint": checkpoint, "adapt": adapt_to,
      "records_dir": storage.abspath(records_dir), "split_notes": info.split_notes,
      # Whether the converter could keep every specimen/patient/slide in one split.
      "group_disjoint": info.group_disjoint})
  explained = None
  if explain_cells > 0:
    explained = explain_split(model, dataset(), records, split, image_size,
                              y_true, probs, meta, explain_cells)
    report["explanations"] = explained["summary"]
  if write:
    results.write_results(model_dir, split, report, y_true, probs, meta, shown,
                          explained)
  return report


def check_adaptable(model) -> None:
  """--adapt needs BatchNorm statistics to re-estimate."""
  if not adapt.has_batch_norm(model):
    raise ValueError("--adapt re-estimates BatchNorm statistics, and this "
                     "run's model has none (train with --batch_norm, or a backbone)")


def score_split(model_dir: str, run: RunConfig, y_true, logits, meta,
                context: dict) -> tuple[dict, np.ndarray]:
  """Scores a split's logits (`predict.predict_logits`) at the run's temperature.

  `context` holds the keys that follow the class scores in the report; its `split`
  and `checkpoint` choose the temperature and whether a val-test gap is reported.
  Returns (report, the probabilities in effect): `metrics.classification_report`,
  `context`, `val_test_gap` (when the run's validation MCA is known), the keys of
  `calibration.calibration_report`, `by_intensity`, `by_specimen` and `abstention`
  (when the run has a threshold).
  """
  split, checkpoint = context["split"], context["checkpoint"]
  temperature = calibration.run_temperature(model_dir, checkpoint, default=None)
  raw = predict.view_probabilities(logits)
  scaled = (None if temperature is None
            else predict.view_probabilities(logits, temperature))
  probs = raw if scaled is None else scaled
  class_names = list(run.class_names)
  report = metrics.classification_report(
      y_true, probs, class_names, groups=meta.get(schema.GROUP),
      positive_class=run.positive_class)
  report.update(context)
  # Beside the training's validation MCA of the best checkpoint, when it is known.
  run_dir = rundir.RunDir(model_dir)
  if (checkpoint == "best" and run_dir.is_complete()
      and split != run.train.eval_split):
    report["val_test_gap"] = metrics.val_test_gap(run_dir.read_complete()["val_mca"],
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
  return report, probs


def explain_split(model, dataset, records: Records, split, image_size, y_true,
                  probs, meta, count: int) -> dict:
  """Attribution maps of a selection of right and wrong cells, and their checks."""
  index = explain.select_cells(y_true, probs, count)
  names = [str(n) for n in meta[schema.FILE_NAME][index]]
  images = explain.gather_images(dataset, names)
  masks = explain.read_masks(records, split, names, image_size)
  y_pred = probs.argmax(axis=1)
  maps, summary = explain.attribution_checks(model, images, y_pred[index], masks)
  return {"summary": summary, "images": images, "maps": maps, "masks": masks,
          "y_true": y_true[index], "y_pred": y_pred[index], "probs": probs[index]}
