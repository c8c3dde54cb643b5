"""What a run writes besides its checkpoints: RUN/config.json when it starts; the
final and best models, the SavedModel, the learning curves, the HParams and final
metrics, and RUN/complete.json (last) when it has finished. trainer.py calls these
steps (docs/ARCHITECTURE.md has the run directory).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import keras

from hep2tf import atomic, figures, models, rundir, storage
from hep2tf.config.run import RunConfig
from hep2tf.evaluation import export, plots
from hep2tf.training import summaries
from hep2tf.config.train import TrainConfig

if TYPE_CHECKING:
  from hep2tf.training.trainer import TrainData


def write_run_config(run: rundir.RunDir, config: TrainConfig, data: TrainData,
                     precision: tuple[str, str]) -> None:
  """RUN/config.json (a `RunConfig`: what evaluate, predict and the export need to
  know of the run) and the run's text summary in TensorBoard."""
  policy, reason = precision
  run.write_config(RunConfig(
      train=config, input_shape=tuple(data.input_shape),
      class_names=tuple(data.class_names), records_dir=storage.abspath(
          config.records_dir), pixels=data.info.pixels,
      positive_class=data.info.positive_class, image_size=data.image_size,
      mixed_precision=policy, mixed_precision_reason=reason).to_json())
  summaries.write_run_text(run.path, {"mixed_precision": f"{policy} ({reason})"})


def save_models(run: rundir.RunDir, model: keras.Model,
                data: TrainData) -> keras.Model:
  """The final model, the best one (the final one when no epoch was best), the
  SavedModel of the best and the learning curves; returns the best model."""
  atomic.save_model(model, run.final_model)
  if not storage.exists(run.best_model):
    atomic.save_model(model, run.best_model)
  best = models.load_model(run.best_model)
  height, width, channels = data.input_shape
  export.export_serving(best, run.export_dir, class_names=data.class_names,
                        channels=channels, image_size=(height, width),
                        pixels=data.info.pixels)
  history = run.read_history()
  if history:
    figures.save_figure(plots.learning_curves_figure(history), run.learning_curves)
  return best


def write_report(run: rundir.RunDir, config: TrainConfig, report: dict,
                 train_seconds: float, policy: str) -> dict:
  """HParams and final metrics for TensorBoard, then RUN/complete.json (the run is
  finished once it exists) and the resume checkpoints removed. Returns `report` with
  epochs_run, train_seconds and mixed_precision."""
  history = run.read_history()
  hparams = {k: v for k, v in dataclasses.asdict(config).items()
             if k not in ("records_dir", "overwrite", "image_summary_every")}
  summaries.write_hparams(run.path, hparams, ["hparams/val_mca", "hparams/val_aca"])
  summaries.write_final_metrics(
      run.path, {"hparams/val_mca": report["mca"], "hparams/val_aca": report["aca"]},
      step=len(history.get("epoch", [])) if history else config.epochs)
  epochs_run = len(history.get("epoch", [])) if history else 0
  report.update(epochs_run=epochs_run, train_seconds=train_seconds,
                mixed_precision=policy)
  run.write_complete({"epochs": epochs_run, "val_mca": report["mca"],
                      "val_aca": report["aca"], "train_seconds": train_seconds})
  storage.rmtree(run.checkpoint_dir, ignore_errors=True)
  return report
