"""Training library: `train_and_evaluate(config, model_dir)` and its steps.

`python -m hep2tf.train` maps its flags onto a `TrainConfig` and calls this. The run
directory layout is in docs/ARCHITECTURE.md. A killed run resumes from its last
completed epoch when the same command runs again.

A run is these steps, in this order; each is public, so the benchmarks and tests call
the trainer's own code instead of copying it:

  open_run                  the run directory, prepared once, with RUN/flags.txt
  setup_execution           seeds, determinism and the precision policy
  open_data                 the records: their info, training and validation data
  plan_epochs               epochs raised to --min_steps
  make_models               the training and inference models, compiled
  outputs.write_run_config  RUN/config.json
  make_callbacks            NaN guard, history, summaries, best model, schedule, ...
  fit                       the phases (frozen backbone first, when asked), resumable
  outputs.save_models       final and best model, SavedModel, learning curves
  final_evaluation          the best model on the validation data
  outputs.write_report      HParams, final metrics and RUN/complete.json, last
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

from hep2tf import atomic, errors, models, rundir
from hep2tf.data import folds, reader
from hep2tf.data.records import DatasetInfo, Records
from hep2tf.evaluation import metrics, predict
from hep2tf.training import build, distribute, loop, outputs, precision, summaries
from hep2tf.config import train as config_lib
from hep2tf.training.callbacks import BestModel, NaNGuard
from hep2tf.config.train import TrainConfig


class TrainingError(RuntimeError):
  """The run stopped for a reason the user must act on (NaN loss, corrupt shard)."""


@dataclasses.dataclass
class TrainData:
  """The records as a run reads them (`open_data`)."""

  records: Records                       # opened once; info, shards, manifest
  image_size: tuple[int, int] | None     # --image_size; None: the records' own
  input_shape: tuple[int, int, int]
  train_ds: tf.data.Dataset              # repeated, shuffled, sharded across workers
  val_ds: tf.data.Dataset                # one pass, its length stated
  num_train: int
  num_val: int
  steps_per_epoch: int
  class_weight: dict[int, float] | None  # loss weights by class id, or None

  @property
  def info(self) -> DatasetInfo:
    return self.records.info

  @property
  def class_names(self) -> list[str]:
    return list(self.info.class_names)


@dataclasses.dataclass
class Models:
  """What `make_models` builds: the compiled training model (augmenter + model), the
  inference model it trains (saved, exported, evaluated) and the augmenter."""

  train_model: keras.Model
  model: keras.Model
  augmenter: keras.Model


# --- The run ------------------------------------------------------------------------


def train_and_evaluate(config: TrainConfig, model_dir: str,
                       force_unlock: bool = False) -> dict:
  """Trains a model on the records and evaluates it on the eval split.

  Returns the eval-split report of `metrics.classification_report` for the best
  checkpoint, plus `epochs_run`, `train_seconds` and `mixed_precision` (the policy
  it ran). The chief holds the folder (`RunDir.held`: RunLocked when another run
  does, `force_unlock` takes it; a run that never started leaves no folder). A
  full disk raises errors.NoSpaceError naming model_dir.
  """
  # The strategy first: multi-worker collectives must be set up before any op runs.
  distribute.split_cpu(config.cpu_devices)
  strategy = distribute.make_strategy(config.distribution, config.tpu)
  if not distribute.is_chief(strategy):
    return _train(config, model_dir, strategy)
  try:
    with rundir.RunDir(model_dir).held(force_unlock):
      return _train(config, model_dir, strategy)
  except Exception as e:
    if not errors.is_no_space(e):
      raise
    raise errors.no_space(e, model_dir, kept="the last finished epoch is kept: "
                          "free some space and resume") from None


def _train(config: TrainConfig, model_dir: str,
           strategy: tf.distribute.Strategy) -> dict:
  run = open_run(config, model_dir, strategy)
  config = dataclasses.replace(config, overwrite=False)  # open_run did what it asks
  # The precision policy is Keras-global; it is the run's, so it ends with the run.
  previous_policy = keras.mixed_precision.global_policy()
  try:
    records = Records.open(config.records_dir)   # parsed once, for both steps
    precision = setup_execution(config, records)
    data = open_data(config, records)
    config = plan_epochs(config, data.steps_per_epoch)
    built = make_models(config, data, strategy)
    outputs.write_run_config(run, config, data, precision)
    callbacks = make_callbacks(config, run, built, data, strategy)
    train_seconds = fit(config, strategy, built, data, callbacks, run,
                        restore_from=rundir.RunDir(model_dir))
    if not distribute.is_chief(strategy):
      # The chief writes the run's outputs; another worker only reports.
      report = final_evaluation(built.model, data)
      report.update(epochs_run=len(run.read_history().get("epoch", [])),
                    train_seconds=train_seconds, mixed_precision=precision[0])
      return report
    best = outputs.save_models(run, built.model, data)
    report = final_evaluation(best, data)
    return outputs.write_report(run, config, report, train_seconds, precision[0])
  finally:
    keras.mixed_precision.set_global_policy(previous_policy)
    if run.path != model_dir:
      shutil.rmtree(run.path, ignore_errors=True)


def open_run(config: TrainConfig, model_dir: str,
             strategy: tf.distribute.Strategy) -> rundir.RunDir:
  """The run directory this process writes.

  On the chief: `model_dir`, prepared once (a finished run is replaced only with
  config.overwrite; an unfinished one resumes) and given RUN/flags.txt. Other workers
  compute the same things but write them to a scratch folder, which
  train_and_evaluate removes; they resume from the chief's checkpoints
  (hep2tf/training/loop.py).
  """
  if not distribute.is_chief(strategy):
    return rundir.RunDir(tempfile.mkdtemp(prefix="hep2tf-worker-"))
  run = rundir.RunDir(model_dir)
  run.prepare(config.overwrite)
  atomic.write(run.flags_file, config_lib.flagfile_text(config, run.path))
  return run


def setup_execution(config: TrainConfig, records: Records | None = None
                    ) -> tuple[str, str]:
  """The precision policy, seeds and determinism; returns (policy, reason).
  `records`: the run's records, when open (the `auto` probe reads their shape)."""
  # First: measuring `auto` builds models, which draws random numbers.
  policy, reason = precision.resolve(config, records)
  keras.utils.set_random_seed(config.seed)
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()
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


# --- The data -----------------------------------------------------------------------


def create_dataset(config: TrainConfig, records: Records, split: str, training: bool,
                   image_size: tuple[int, int] | None,
                   fold: folds.FoldSpec | None = None) -> reader.Split:
  """A split as the run reads it, with its length: for training repeated, shuffled
  and mixed as configured; otherwise one pass in order."""
  return reader.create_split(
      records, split, batch_size=config.batch_size, fold=fold,
      training=training, image_size=image_size, apply_mask=config.apply_mask,
      shuffle_buffer=config.shuffle_buffer, seed=config.seed,
      balanced=config.balanced_sampling and training,
      mixup_alpha=config.mixup if training else 0.0,
      cutmix_alpha=config.cutmix if training else 0.0,
      repeat=training, cache=_cache_option(config.cache),
      deterministic=config.deterministic or None)


def open_data(config: TrainConfig, records: Records | None = None) -> TrainData:
  """The records of `config` (`records`, when open already): their info, the
  training and validation datasets, their sizes, the steps of an epoch and the class
  weights of the loss."""
  records = records or Records.open(config.records_dir)
  info = records.info
  image_size = (config.image_size, config.image_size) if config.image_size else None
  if image_size is None and info.image_shape is None:
    raise ValueError(f"{config.records_dir}: images vary in size; "
                     "set --image_size to train on them")
  height, width = image_size or tuple(info.image_shape)

  train = create_dataset(config, records, config.train_split, True, image_size,
                         folds.run_fold(config, holdout=False))
  train_ds = distribute.shard_by_file(train.dataset,
                                      len(records.shards(config.train_split)))
  val = create_dataset(config, records, config.validation_split, False, image_size,
                       folds.run_fold(config, holdout=True))
  # tf.data cannot know the split's length (interleave, filters); stating it lets
  # Keras plan each validation pass instead of running into the end of the data.
  val_ds = val.dataset.apply(tf.data.experimental.assert_cardinality(val.steps))
  # Training batches drop the remainder: a pass is floor(n / batch) steps.
  steps_per_epoch = config.steps_per_epoch or max(1, train.steps)
  return TrainData(records, image_size, (height, width, info.channels), train_ds,
                   val_ds, train.num_examples, val.num_examples, steps_per_epoch,
                   _class_weight(config, info))


def _class_weight(config: TrainConfig, info: DatasetInfo) -> dict[int, float] | None:
  class_names = list(info.class_names)
  train_counts = info.class_counts.get(config.train_split, {})
  if not build.use_class_weights(config, train_counts, class_names):
    return None
  if not config.class_weights:
    logging.info("training split is imbalanced (%s; largest over smallest > %g): "
                 "weighting the loss by class", train_counts,
                 config.auto_class_weights)
  return build.class_weights(train_counts, class_names)


def plan_epochs(config: TrainConfig, steps_per_epoch: int) -> TrainConfig:
  """`config` with its epochs raised where they are under --min_steps (logged)."""
  epochs = build.train_epochs(config, steps_per_epoch)
  if epochs != config.epochs:
    logging.info("%d epochs of %d steps are under --min_steps=%d: training %d "
                 "epochs instead", config.epochs, steps_per_epoch, config.min_steps,
                 epochs)
    config = dataclasses.replace(config, epochs=epochs)
  return config


# --- The models and what watches them ----------------------------------------------


def make_models(config: TrainConfig, data: TrainData,
                strategy: tf.distribute.Strategy) -> Models:
  """The models of `config` for `data`, built and compiled under `strategy`."""
  with strategy.scope():
    train_model, model, augmenter = build.build_models(config, data.input_shape,
                                                       len(data.class_names))
    build.compile_model(train_model, config, data.steps_per_epoch)
  return Models(train_model, model, augmenter)


def make_callbacks(config: TrainConfig, run: rundir.RunDir, built: Models,
                   data: TrainData, strategy: tf.distribute.Strategy
                   ) -> list[keras.callbacks.Callback]:
  """The callbacks of every fit phase, in order: the NaN guard first (the loop asks
  it whether to go on), history.csv, scalar summaries, the best model, the epoch's
  line, then image summaries, the plateau schedule and early stopping where
  configured. The resume state is the loop's own (loop.fit's checkpoints)."""
  callbacks = [
      NaNGuard(), summaries.HistoryCSV(run.history_file),
      summaries.ScalarSummaries(run.path), BestModel(run, built.model),
      summaries.EpochLine(run.path, data.class_names, recall_names(data),
                          config.epochs)]
  if config.image_summary_every > 0 and distribute.is_chief(strategy):
    callbacks.append(summaries.ImageSummaries(
        run.path, next(iter(data.train_ds)), built.augmenter,
        lambda: predict.predict_probabilities(built.model, data.val_ds,
                                              keep_images=36),
        data.class_names,
        every=config.image_summary_every, num_epochs=config.epochs,
        positive_class=data.info.positive_class))
  if config.schedule == "plateau":
    callbacks.append(keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss", factor=0.3, patience=2, min_lr=config.learning_rate * 1e-3))
  if config.early_stopping_patience > 0:
    callbacks.append(keras.callbacks.EarlyStopping(
        monitor="val_mca", mode="max", patience=config.early_stopping_patience))
  return callbacks


# --- Training -----------------------------------------------------------------------


def fit(config: TrainConfig, strategy: tf.distribute.Strategy, built: Models,
        data: TrainData, callbacks: list[keras.callbacks.Callback],
        run: rundir.RunDir, restore_from: rundir.RunDir | None = None) -> float:
  """Trains: --freeze_epochs with the backbone frozen, then the rest with all of it.

  Resumes from the checkpoints in `restore_from` (default: `run`; another worker
  restores from the chief's). Returns the seconds it trained. Raises TrainingError
  when the loss went NaN (make_callbacks' guard stopped it) or a shard is corrupt.
  """
  nan_guard = next(c for c in callbacks if isinstance(c, NaNGuard))
  restore_from = restore_from or run
  start = time.time()
  try:
    frozen = min(config.freeze_epochs, config.epochs)
    if frozen:
      _fit_phase(config, strategy, built, data, callbacks, run, restore_from,
                 "frozen", frozen)
      if not nan_guard.where:
        # Unfreeze (BatchNorm stays in inference mode); the optimizer starts anew.
        with strategy.scope():
          models.set_backbone_trainable(built.model, True)
          build.compile_model(built.train_model, config, data.steps_per_epoch)
    if not nan_guard.where:
      _fit_phase(config, strategy, built, data, callbacks, run, restore_from,
                 "main", config.epochs, initial_epoch=frozen)
  except tf.errors.DataLossError as e:
    problems = data.records.check_shards(config.train_split)
    problems += data.records.check_shards(config.eval_split)
    raise TrainingError(
        "the records are corrupt: " + "; ".join(map(str, problems or [e.message]))
        + f". Re-create them with python -m hep2tf.create_records --overwrite "
        f"(verify with --verify={config.records_dir})") from None
  if nan_guard.where:
    epoch, batch = nan_guard.where
    raise TrainingError(
        f"loss became NaN or infinite at epoch {epoch}, batch {batch}; training "
        f"stopped. The last good checkpoint is kept ({run.best_model}, "
        f"and {run.checkpoint_dir} to resume). Lower --learning_rate or "
        "check the input.")
  return time.time() - start


def _fit_phase(config, strategy, built, data, callbacks, run, restore_from,
               phase: str, epochs: int, initial_epoch: int = 0) -> None:
  # Each phase checkpoints on its own: the optimizer of the unfrozen phase has other
  # variables than the frozen one's. A finished phase restores and runs no epoch.
  plan = loop.FitPlan(
      epochs=epochs, initial_epoch=initial_epoch,
      steps_per_epoch=data.steps_per_epoch, global_batch_size=config.batch_size,
      class_weight=data.class_weight, recall_names=recall_names(data),
      checkpoint_dir=os.path.join(run.checkpoint_dir, phase),
      restore_dir=os.path.join(restore_from.checkpoint_dir, phase),
      chief=distribute.is_chief(strategy), jit_compile=config.jit_compile,
      log_every=config.log_every, verbose=fit_verbosity())
  loop.fit(strategy, built.train_model, data.train_ds, data.val_ds, plan, callbacks)


def recall_names(data: TrainData) -> list[str]:
  """The logs' names of the per-class recalls, in class order."""
  return [f"recall_{build.metric_slug(c)}" for c in data.class_names]


# --- Outputs of a finished run ------------------------------------------------------


def final_evaluation(model: keras.Model, data: TrainData) -> dict:
  """`metrics.classification_report` of `model` on the run's validation data."""
  y_true, probs, _ = predict.predict_probabilities(model, data.val_ds)
  return metrics.classification_report(y_true, probs, data.class_names,
                                       positive_class=data.info.positive_class)
