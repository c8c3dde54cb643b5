"""Training library: `train_and_evaluate(config, model_dir)`.

`python -m hep2tf.train` maps its flags onto a `TrainConfig` and calls this. The run
directory layout is in docs/ARCHITECTURE.md. A killed run resumes from its last
completed epoch when the same command runs again.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import tempfile
import time

import keras
import tensorflow as tf
from absl import logging

from hep2tf import atomic, figures, hardware, models, rundir, storage
from hep2tf.data import folds, reader
from hep2tf.data.records import Records
from hep2tf.evaluation import export, metrics, plots, predict
from hep2tf.training import build, distribute, loop, summaries
from hep2tf.training.callbacks import BestModel, NaNGuard, SafeBackupAndRestore
from hep2tf.training.config import TrainConfig


class TrainingError(RuntimeError):
  """The run stopped for a reason the user must act on (NaN loss, corrupt shard)."""


# --- The run ------------------------------------------------------------------------


def setup_execution(config: TrainConfig) -> tuple[str, str]:
  """Seeds, determinism and the precision policy; returns (policy, reason)."""
  keras.utils.set_random_seed(config.seed)
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()
  policy, reason = hardware.resolve_precision(config.mixed_precision)
  keras.mixed_precision.set_global_policy(policy)
  logging.info("Precision: %s (%s)", policy, reason)
  return policy, reason


def fit_verbosity(stream=None) -> int:
  """Keras fit's verbose: a progress bar with ETA on a terminal (1), one line per
  epoch otherwise (2), so a log file does not fill with carriage returns."""
  stream = sys.stdout if stream is None else stream
  isatty = getattr(stream, "isatty", None)
  return 1 if isatty is not None and isatty() else 2


def _cache_option(value: str) -> bool | str:
  """The --cache flag (auto | true | false) as create_split takes it."""
  value = str(value).strip().lower()
  if value in ("true", "1", "yes"):
    return True
  if value in ("false", "0", "no"):
    return False
  if value == "auto":
    return "auto"
  raise ValueError(f"--cache={value!r}: expected auto, true or false")


def train_and_evaluate(config: TrainConfig, model_dir: str) -> dict:
  """Trains a model on the records and evaluates it on the eval split.

  Returns the eval-split report of `metrics.classification_report` for the best
  checkpoint, plus `epochs_run`, `train_seconds` and `mixed_precision` (the policy
  it ran).
  """
  # The strategy first: multi-worker collectives must be set up before any op runs.
  distribute.split_cpu(config.cpu_devices)
  strategy = distribute.make_strategy(config.distribution, config.tpu)
  chief = distribute.is_chief(strategy)
  restore_root = os.path.join(model_dir, rundir.CHECKPOINT_DIR)
  if chief:
    rundir.prepare_run_dir(model_dir, config.overwrite)
    run_dir = model_dir
    backup_root = restore_root
  else:
    # Other workers compute the same things but write them to a scratch folder;
    # they resume from the chief's checkpoints (hep2tf/training/loop.py).
    run_dir = tempfile.mkdtemp(prefix="hep2tf-worker-")
    backup_root = os.path.join(run_dir, rundir.CHECKPOINT_DIR)
  # The precision policy is Keras-global; it is the run's, so it ends with the run.
  previous_policy = keras.mixed_precision.global_policy()
  try:
    return _train(config, strategy, run_dir, backup_root, restore_root)
  finally:
    keras.mixed_precision.set_global_policy(previous_policy)
    if not chief:
      shutil.rmtree(run_dir, ignore_errors=True)


def _train(config: TrainConfig, strategy, model_dir: str, backup_root: str,
           restore_root: str) -> dict:
  policy, policy_reason = setup_execution(config)
  records = Records.open(config.records_dir)
  info = records.info
  class_names = list(info.class_names)

  image_size = (config.image_size, config.image_size) if config.image_size else None
  if image_size is None and info.image_shape is None:
    raise ValueError(f"{config.records_dir}: images vary in size; "
                     "set --image_size to train on them")
  height, width = image_size or tuple(info.image_shape)
  input_shape = (height, width, info.channels)

  # Cross-validation: fold `fold` of the training split is held out for validation.
  def fold_spec(holdout):
    if not config.num_folds:
      return None
    return folds.FoldSpec(index=config.fold, num_folds=config.num_folds,
                          holdout=holdout, seed=config.seed,
                          by_group=config.fold_by_group,
                          column=config.fold_column)

  def dataset(split, training, fold=None):
    return reader.create_split(
        records, split, batch_size=config.batch_size, fold=fold,
        training=training, image_size=image_size, apply_mask=config.apply_mask,
        shuffle_buffer=config.shuffle_buffer, seed=config.seed,
        balanced=config.balanced_sampling and training,
        mixup_alpha=config.mixup if training else 0.0,
        cutmix_alpha=config.cutmix if training else 0.0,
        repeat=training, cache=_cache_option(config.cache),
        deterministic=config.deterministic or None)

  train = dataset(config.train_split, True, fold_spec(holdout=False))
  train_ds = distribute.shard_by_file(train.dataset,
                                      len(records.shards(config.train_split)))
  if config.num_folds:
    val = dataset(config.train_split, False, fold_spec(holdout=True))
  else:
    val = dataset(config.eval_split, False)
  # tf.data cannot know the split's length (interleave, filters); stating it lets
  # Keras plan each validation pass instead of running into the end of the data.
  val_ds = val.dataset.apply(tf.data.experimental.assert_cardinality(val.steps))
  # Training batches drop the remainder, so a pass is floor(n / batch) steps.
  steps_per_epoch = config.steps_per_epoch or max(1, train.steps)
  epochs = build.train_epochs(config, steps_per_epoch)
  if epochs != config.epochs:
    logging.info("%d epochs of %d steps are under --min_steps=%d: training %d "
                 "epochs instead", config.epochs, steps_per_epoch, config.min_steps,
                 epochs)
    config = dataclasses.replace(config, epochs=epochs)
  train_counts = info.class_counts.get(config.train_split, {})
  weighted = build.use_class_weights(config, train_counts, class_names)
  if weighted and not config.class_weights:
    logging.info("training split is imbalanced (%s; largest over smallest > %g): "
                 "weighting the loss by class", train_counts,
                 config.auto_class_weights)

  with strategy.scope():
    train_model, model, augmenter = build.build_models(config, input_shape,
                                                       len(class_names))
    build.compile_model(train_model, config, class_names, steps_per_epoch)

  atomic.write_json(os.path.join(model_dir, rundir.CONFIG_FILE), {
      "model": config.model, "input_shape": list(input_shape),
      "class_names": class_names, "positive_class": info.positive_class,
      "records_dir": storage.abspath(config.records_dir),
      "image_size": list(image_size) if image_size else None,
      "apply_mask": config.apply_mask, "pixels": info.pixels.to_json(),
      "mixed_precision": policy, "mixed_precision_reason": policy_reason,
      "config": dataclasses.asdict(config)})
  summaries.write_run_text(model_dir,
                           {"mixed_precision": f"{policy} ({policy_reason})"})

  nan_guard = NaNGuard()
  callbacks = [
      nan_guard,
      summaries.HistoryCSV(os.path.join(model_dir, rundir.HISTORY_FILE)),
      summaries.ScalarSummaries(model_dir),
      BestModel(model_dir, model),
  ]
  if config.image_summary_every > 0 and distribute.is_chief(strategy):
    callbacks.append(summaries.ImageSummaries(
        model_dir, next(iter(train_ds)), augmenter,
        lambda: predict.predict_probabilities(model, val_ds, keep_images=36),
        class_names,
        every=config.image_summary_every, num_epochs=config.epochs,
        positive_class=info.positive_class))
  if config.schedule == "plateau":
    callbacks.append(keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss", factor=0.3, patience=2, min_lr=config.learning_rate * 1e-3))
  if config.early_stopping_patience > 0:
    callbacks.append(keras.callbacks.EarlyStopping(
        monitor="val_mca", mode="max", patience=config.early_stopping_patience))

  weights = build.class_weights(train_counts, class_names) if weighted else None

  def fit(epochs, backup_dir, initial_epoch=0):
    # Each phase backs up on its own: the optimizer of the unfrozen phase has other
    # variables than the frozen one's. A finished phase restores and runs no epoch.
    if loop.uses_custom(config.training_loop, config.distribution):
      loop.fit(strategy, train_model, train_ds, val_ds, epochs=epochs,
               initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
               global_batch_size=config.batch_size, class_weight=weights,
               recall_names=[f"recall_{build.metric_slug(c)}" for c in class_names],
               callbacks=callbacks,
               checkpoint_dir=os.path.join(backup_root, backup_dir),
               restore_dir=os.path.join(restore_root, backup_dir),
               chief=distribute.is_chief(strategy), jit_compile=config.jit_compile,
               verbose=fit_verbosity())
      return
    backup = SafeBackupAndRestore(os.path.join(backup_root, backup_dir),
                                  delete_checkpoint=False)
    train_model.fit(
        train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=initial_epoch,
        callbacks=[backup] + callbacks, verbose=fit_verbosity(), shuffle=False,
        steps_per_epoch=steps_per_epoch, class_weight=weights)

  start = time.time()
  try:
    frozen = min(config.freeze_epochs, config.epochs)
    if frozen:
      fit(frozen, "frozen")
      if not nan_guard.where:
        # Unfreeze (BatchNorm stays in inference mode); the optimizer starts anew.
        with strategy.scope():
          models.set_backbone_trainable(model, True)
          build.compile_model(train_model, config, class_names, steps_per_epoch)
    if not nan_guard.where:
      fit(config.epochs, "main", initial_epoch=frozen)
  except tf.errors.DataLossError as e:
    problems = records.check_shards(config.train_split)
    problems += records.check_shards(config.eval_split)
    raise TrainingError(
        "the records are corrupt: " + "; ".join(map(str, problems or [e.message]))
        + f". Re-create them with python -m hep2tf.create_records --overwrite "
        f"(verify with --verify={config.records_dir})") from None
  train_seconds = time.time() - start
  if nan_guard.where:
    epoch, batch = nan_guard.where
    raise TrainingError(
        f"loss became NaN or infinite at epoch {epoch}, batch {batch}; training "
        f"stopped. The last good checkpoint is kept ({model_dir}/{rundir.BEST_MODEL}, "
        f"and {model_dir}/{rundir.CHECKPOINT_DIR} to resume). Lower --learning_rate or "
        "check the input.")

  if not distribute.is_chief(strategy):
    # The chief writes the run's outputs; another worker only reports.
    y_true, probs, _ = predict.predict_probabilities(model, val_ds)
    report = metrics.classification_report(y_true, probs, class_names,
                                           positive_class=info.positive_class)
    report.update(epochs_run=len(rundir.read_history(model_dir).get("epoch", [])),
                  train_seconds=train_seconds, mixed_precision=policy)
    return report

  # --- Outputs of a finished run --------------------------------------------------
  atomic.save_model(model, os.path.join(model_dir, rundir.FINAL_MODEL))
  best_path = os.path.join(model_dir, rundir.BEST_MODEL)
  if not storage.exists(best_path):
    atomic.save_model(model, best_path)
  best = models.load_model(best_path)
  export.export_serving(best, os.path.join(model_dir, rundir.EXPORT_DIR),
                        class_names=class_names, channels=info.channels,
                        image_size=(height, width), pixels=info.pixels)
  history = rundir.read_history(model_dir)
  if history:
    figures.save_figure(plots.learning_curves_figure(history),
                        os.path.join(model_dir, "learning_curves.png"))

  y_true, probs, _ = predict.predict_probabilities(best, val_ds)
  report = metrics.classification_report(y_true, probs, class_names,
                                         positive_class=info.positive_class)
  hparams = {k: v for k, v in dataclasses.asdict(config).items()
             if k not in ("records_dir", "overwrite", "image_summary_every")}
  summaries.write_hparams(model_dir, hparams, ["hparams/val_mca", "hparams/val_aca"])
  summaries.write_final_metrics(
      model_dir, {"hparams/val_mca": report["mca"], "hparams/val_aca": report["aca"]},
      step=len(history.get("epoch", [])) if history else config.epochs)
  epochs_run = len(history.get("epoch", [])) if history else 0
  report.update(epochs_run=epochs_run, train_seconds=train_seconds,
                mixed_precision=policy)
  atomic.write_json(os.path.join(model_dir, rundir.COMPLETE_FILE),
                    {"epochs": epochs_run, "val_mca": report["mca"],
                     "val_aca": report["aca"], "train_seconds": train_seconds})
  storage.rmtree(backup_root, ignore_errors=True)
  return report
