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
from hep2tf.config.evaluate import ADAPT_MODES, EvaluateConfig
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


def fit_on_validation(config: EvaluateConfig, run: RunConfig, records: Records,
                      model) -> None:
  """--calibrate and --min_confidence: fit on the validation split, store in the run.

  The validation data are the run's own: `records` (the folder being evaluated) when
  it is the run's records folder, else that folder, opened here."""
  if storage.abspath(records.path) != storage.abspath(run.records_dir):
    records = Records.open(run.records_dir)
  split, dataset = validation_dataset(run, records, config.batch_size)
  y_val, logits, _, _ = predict.predict_logits(model, dataset)
  if config.calibrate:
    _store_temperature(config, run, model, split, y_val, logits[0])
  if config.min_confidence is not None:
    t = calibration.run_temperature(config.model_dir, config.checkpoint)
    at = calibration.coverage_at(calibration.softmax(logits[0], t), y_val,
                                 config.min_confidence)
    calibration.update_run_calibration(config.model_dir,
                                       min_confidence=config.min_confidence,
                                       min_confidence_split=split,
                                       min_confidence_coverage=at["coverage"],
                                       min_confidence_accuracy=at["accuracy"])


def _store_temperature(config: EvaluateConfig, run: RunConfig, model, split: str,
                       y_val, logits) -> None:
  """The temperature fitted on validation, into RUN/calibration.json (and into the
  export, when it serves this checkpoint)."""
  t = calibration.fit_temperature(logits, y_val)
  raw, scaled = calibration.softmax(logits), calibration.softmax(logits, t)
  calibration.update_run_calibration(
      config.model_dir, temperature=t, checkpoint=config.checkpoint, split=split,
      num_examples=int(len(y_val)),
      nll=[calibration.negative_log_likelihood(logits, y_val),
           calibration.negative_log_likelihood(logits, y_val, t)],
      ece=[calibration.expected_calibration_error(raw, y_val),
           calibration.expected_calibration_error(scaled, y_val)])
  if config.checkpoint == "best":
    # The export serves the best model; it now answers with calibrated probabilities.
    height, width, channels = run.input_shape
    export.export_serving(model, rundir.RunDir(config.model_dir).export_dir,
                          class_names=run.class_names, channels=channels,
                          image_size=(height, width), temperature=t,
                          pixels=run.pixels)


def evaluate_run(config: EvaluateConfig | str, split: str | None = None, *,
                 write: bool = True, **fields) -> dict:
  """Evaluates a run's model on a split and (with write) stores the results.

  Args:
    config: the evaluate section (`EvaluateConfig`, as `python -m hep2tf.evaluate`
      reads it: the run directory, split, tta, checkpoint, records_dir, batch_size,
      calibrate, min_confidence, explain_cells, adapt); or the run directory, with
      `split` and the section's other fields by name (`evaluate_run(run, "test",
      tta=True)`; `adapt_to` is `adapt`'s earlier name).
    write: store the results in RUN/eval/<split>/.

  With `calibrate` / `min_confidence` it first fits on the run's validation split and
  stores the result in the run (see the module docstring). Class scores are computed
  from the probabilities in effect: calibrated when the run has a temperature for this
  checkpoint (argmax, and so MCA/ACA, is unchanged by it).

  Returns the dict of `metrics.classification_report` plus `split`, `tta`,
  `checkpoint`, `records_dir`, the keys of `calibration.calibration_report`,
  `by_intensity`, `by_specimen`, `abstention` (when a threshold is set) and
  `explanations` (when `explain_cells` > 0).

  `adapt="specimen"` / `"split"`: cells are predicted with BatchNorm statistics
  re-estimated from their specimen's cells, or from the whole split's (`adapt`;
  unsupervised).
  """
  config = _evaluate_config(config, split, fields)
  run = read_run_config(rundir.RunDir(config.model_dir))
  records_dir = config.records_dir or run.records_dir
  records = Records.open(records_dir)
  info = records.info
  if list(info.class_names) != list(run.class_names):
    raise ValueError(f"{records_dir} has classes {info.class_names}, the run was "
                     f"trained on {list(run.class_names)}")
  model = predict.load_run_model(config.model_dir, config.checkpoint)
  if config.calibrate or config.min_confidence is not None:
    fit_on_validation(config, run, records, model)

  def dataset():
    return reader.create_split(
        records, config.split, batch_size=config.batch_size, training=False,
        image_size=run.image_size, apply_mask=run.apply_mask, with_meta=True).dataset

  y_true, logits, meta, shown = _predict(config, model, dataset())
  report, probs = score_split(config.model_dir, run, y_true, logits, meta, context={
      "split": config.split, "tta": config.tta, "checkpoint": config.checkpoint,
      "adapt": config.adapt, "records_dir": storage.abspath(records_dir),
      "split_notes": info.split_notes,
      # Whether the converter could keep every specimen/patient/slide in one split.
      "group_disjoint": info.group_disjoint})
  scored = results.Scored(y_true, probs, meta)
  explained = None
  if config.explain_cells > 0:
    explained = explain_split(model, dataset(), records, config, run.image_size,
                              scored)
    report["explanations"] = explained["summary"]
  if write:
    results.write_results(config.model_dir, config.split, report, scored, shown,
                          explained)
  return report


def _predict(config: EvaluateConfig, model, dataset) -> tuple:
  """(labels, logits, meta, the grid's images) of the split, with BatchNorm
  statistics re-estimated per specimen or split when `config.adapt` asks."""
  if config.adapt == "none":
    return predict.predict_logits(model, dataset, tta=config.tta,
                                  keep_images=GRID_IMAGES)
  check_adaptable(model)
  return adapt.predict_logits_by_group(model, dataset, tta=config.tta,
                                       keep_images=GRID_IMAGES, unit=config.adapt)


def _evaluate_config(config: EvaluateConfig | str, split: str | None,
                     fields: dict) -> EvaluateConfig:
  """The EvaluateConfig of `evaluate_run`'s arguments, its values checked."""
  if not isinstance(config, EvaluateConfig):
    if "adapt_to" in fields:
      fields = {**fields, "adapt": fields.pop("adapt_to")}
    # Called by name, evaluate_run explains no cells unless asked (as it always has).
    fields = {"explain_cells": 0, **fields}
    config = EvaluateConfig(model_dir=config, **({"split": split} if split else {}),
                            **fields)
  elif split is not None or fields:
    raise TypeError("evaluate_run takes an EvaluateConfig alone, or a run directory "
                    "and fields by name")
  if config.min_confidence is not None and not 0.0 <= config.min_confidence <= 1.0:
    raise ValueError(f"min_confidence must be in [0, 1], got {config.min_confidence}")
  if config.adapt not in ADAPT_MODES:
    raise ValueError(f"adapt must be one of {ADAPT_MODES}, got {config.adapt!r}")
  return config


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


def explain_split(model, dataset, records: Records, config: EvaluateConfig,
                  image_size, scored: results.Scored) -> dict:
  """Attribution maps of a selection (`config.explain_cells`) of right and wrong
  cells of `config.split`, and their checks."""
  y_true, probs, meta = scored
  index = explain.select_cells(y_true, probs, config.explain_cells)
  names = [str(n) for n in meta[schema.FILE_NAME][index]]
  images = explain.gather_images(dataset, names)
  masks = explain.read_masks(records, config.split, names, image_size)
  y_pred = probs.argmax(axis=1)
  maps, summary = explain.attribution_checks(model, images, y_pred[index], masks)
  return {"summary": summary, "images": images, "maps": maps, "masks": masks,
          "y_true": y_true[index], "y_pred": y_pred[index], "probs": probs[index]}
