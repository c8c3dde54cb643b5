"""Training library: `train_and_evaluate(config, model_dir)`.

`python -m hep2tf.train` maps its flags onto a `TrainConfig` and calls this. The run
directory layout is in docs/ARCHITECTURE.md. A killed run resumes from its last
completed epoch when the same command runs again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from hep2tf import (augment, distribute, export, folds, hardware, input_pipeline, loop,
                    metrics, models, plots, storage, summaries)

CONFIG_FILE = "config.json"
BEST_MODEL = "best.keras"
FINAL_MODEL = "model.keras"
COMPLETE_FILE = "complete.json"
BEST_STATE = "best.json"
HISTORY_FILE = "history.csv"
CHECKPOINT_DIR = "checkpoints"
EXPORT_DIR = "export"


@dataclasses.dataclass
class TrainConfig:
  """Everything a run needs; the train flags map one to one onto these fields."""

  # Data.
  records_dir: str = "records/synthetic_hep2"
  train_split: str = "train"
  eval_split: str = "validation"
  image_size: int = 0            # 0: the records' own size
  apply_mask: bool = False
  balanced_sampling: bool = False
  shuffle_buffer: int = 8192
  cache: str = "auto"            # auto | true | false (input_pipeline.create_split)
  # Model.
  model: str = "cnn"
  weights: str = "none"          # none | imagenet | a weights file | an earlier run
  dropout: float = 0.5
  weight_decay: float = 5e-4
  batch_norm: bool = False
  normalization: str = "per_image"
  freeze_epochs: int = 0         # backbones: epochs with the backbone frozen first
  # cnn widths: narrower than the seed study's (models.cnn.FILTERS, 1024), so the
  # default job fits 10 minutes on a 2-core AVX2 CPU; configs/cnn_seed.flags has those.
  cnn_filters: str = "16,32,64,64,128"  # one width per conv layer
  dense_units: int = 128                # fc1 and fc2
  cnn_head: str = "flatten"             # flatten (the seed's) or avg (global pooling)
  # Augmentation (inside the compiled training step).
  rotation: bool = True
  rot90: bool = True
  flips: bool = True
  brightness: float = 0.0
  contrast: float = 0.0
  erasing: float = 0.0
  # Specimen-level augmentation (what differs between slides and microscopes).
  defocus: float = 0.0           # max Gaussian blur sigma, pixels
  gain: float = 0.0              # exposure factor in [1 / (1 + gain), 1 + gain]
  gamma: float = 0.0             # gamma in [1 / (1 + gamma), 1 + gamma]
  background_offset: float = 0.0  # max added background, DN
  shot_noise: float = 0.0        # max DN per photon of added shot noise
  read_noise: float = 0.0        # max std of added read noise, DN
  mixup: float = 0.0
  cutmix: float = 0.0
  # Optimisation.
  optimizer: str = "adam"        # sgd | adam | adamw
  learning_rate: float = 1e-3
  momentum: float = 0.9
  adamw_weight_decay: float = 1e-4
  schedule: str = "constant"     # constant | cosine | plateau
  warmup_epochs: int = 0
  label_smoothing: float = 0.0
  class_weights: bool = False
  auto_class_weights: float = 0.0  # >0: class weights on when largest/smallest > this
  epochs: int = 10
  min_steps: int = 0             # epochs raised so that a run takes at least this
  batch_size: int = 64
  steps_per_epoch: int = 0       # 0: one pass over the training split
  early_stopping_patience: int = 0
  # Cross-validation (hep2tf.sweep): hold out fold `fold` of `num_folds` of the
  # training split for validation; 0 folds uses eval_split.
  num_folds: int = 0
  fold: int = 0
  fold_by_group: bool = True     # folds keep each specimen/patient in one fold
  fold_column: str = ""          # "fold": the dataset's own folds from the manifest
  # Execution.
  mixed_precision: str = "auto"  # hardware.CHOICES; auto: hardware.resolve_precision
  jit_compile: bool = False
  seed: int = 0
  deterministic: bool = False
  image_summary_every: int = 5
  overwrite: bool = False
  # Distribution (hep2tf/distribute.py): the batch size is global.
  distribution: str = "default"  # default | mirrored | multi_worker | tpu
  tpu: str = ""
  cpu_devices: int = 0           # >1: split the CPU into logical devices (testing)
  training_loop: str = "auto"    # auto (= custom) | fit | custom: hep2tf/loop.py


SCRATCH_MODELS = ("cnn", "cnn_bn", "alexnet", "alexnet_small")


class TrainingError(RuntimeError):
  """The run stopped for a reason the user must act on (NaN loss, corrupt shard)."""


# --- Building ---------------------------------------------------------------------


def _slug(name: str) -> str:
  return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()


def model_hparams(config: TrainConfig) -> dict:
  """The hparams each model family takes (backbones normalise on their own)."""
  hparams = dict(dropout=config.dropout, weight_decay=config.weight_decay)
  if config.model in SCRATCH_MODELS:
    # cnn_bn is the cnn with batch_norm=True: --batch_norm adds it, never removes it.
    hparams.update(batch_norm=config.batch_norm or config.model == "cnn_bn",
                   normalization=config.normalization)
  else:
    hparams.update(weights="imagenet" if config.weights == "imagenet" else None,
                   backbone_trainable=config.freeze_epochs == 0)
  if config.model in ("cnn", "cnn_bn"):
    hparams.update(filters=parse_widths(config.cnn_filters),
                   dense_units=config.dense_units, head=config.cnn_head)
  return hparams


def parse_widths(text: str) -> tuple[int, ...]:
  """"32,64,128,256,512" -> (32, 64, 128, 256, 512); one width per conv block."""
  try:
    widths = tuple(int(w) for w in str(text).split(","))
  except ValueError:
    widths = ()
  if len(widths) != len(models.cnn.KERNEL_SIZES) or min(widths, default=0) < 1:
    raise ValueError(f"--cnn_filters={text!r}: expected "
                     f"{len(models.cnn.KERNEL_SIZES)} positive integers, comma "
                     "separated (e.g. 32,64,128,256,512)")
  return widths


def build_models(config: TrainConfig, input_shape, num_classes: int
                 ) -> tuple[keras.Model, keras.Model, keras.Model]:
  """Returns (training model, inference model, augmenter).

  The training model is augmenter -> inference model, so augmentation runs inside the
  compiled step and is absent from the saved and exported inference model.
  """
  model = models.build_model(config.model, input_shape, num_classes,
                             **model_hparams(config))
  if config.weights not in ("none", "", "imagenet"):
    loaded = models.load_pretrained(model, config.weights)
    logging.info("Loaded %d layers from %s", len(loaded), config.weights)
  augmenter = augment.build_augmenter(
      rotation=config.rotation, rot90=config.rot90, flips=config.flips,
      brightness=config.brightness, contrast=config.contrast,
      erasing=config.erasing, defocus=config.defocus, gain=config.gain,
      gamma=config.gamma, background_offset=config.background_offset,
      shot_noise=config.shot_noise, read_noise=config.read_noise,
      seed=config.seed)
  inputs = keras.Input(shape=input_shape, name="image")
  outputs = model(augmenter(inputs))
  return keras.Model(inputs, outputs, name="train_model"), model, augmenter


def make_learning_rate(config: TrainConfig, steps_per_epoch: int):
  if config.schedule == "cosine":
    warmup = config.warmup_epochs * steps_per_epoch
    total = max(1, config.epochs * steps_per_epoch - warmup)
    if warmup:
      return keras.optimizers.schedules.CosineDecay(
          initial_learning_rate=config.learning_rate * 0.01, decay_steps=total,
          warmup_target=config.learning_rate, warmup_steps=warmup)
    return keras.optimizers.schedules.CosineDecay(config.learning_rate, total)
  if config.schedule in ("constant", "plateau"):
    return config.learning_rate
  raise ValueError(f"unknown schedule {config.schedule!r}: "
                   "expected constant, cosine or plateau")


def make_optimizer(config: TrainConfig, steps_per_epoch: int):
  lr = make_learning_rate(config, steps_per_epoch)
  if config.optimizer == "sgd":
    return keras.optimizers.SGD(lr, momentum=config.momentum, nesterov=True)
  if config.optimizer == "adam":
    return keras.optimizers.Adam(lr)
  if config.optimizer == "adamw":
    return keras.optimizers.AdamW(lr, weight_decay=config.adamw_weight_decay)
  raise ValueError(f"unknown optimizer {config.optimizer!r}: "
                   "expected sgd, adam or adamw")


def compile_model(train_model: keras.Model, config: TrainConfig,
                  class_names, steps_per_epoch: int) -> None:
  num_classes = len(class_names)
  train_model.compile(
      optimizer=make_optimizer(config, steps_per_epoch),
      loss=keras.losses.CategoricalCrossentropy(
          label_smoothing=config.label_smoothing),
      metrics=["accuracy", metrics.MeanClassAccuracy(num_classes, name="mca")]
      + [metrics.ClassRecall(k, name=f"recall_{_slug(name)}")
         for k, name in enumerate(class_names)],
      jit_compile=config.jit_compile)


def class_weights(counts: dict, class_names) -> dict[int, float]:
  """Inverse-frequency weights n / (K * n_k), classes absent from train weigh 0."""
  total = sum(counts.get(c, 0) for c in class_names)
  k = len(class_names)
  return {i: (total / (k * counts[c]) if counts.get(c) else 0.0)
          for i, c in enumerate(class_names)}


def train_epochs(config: TrainConfig, steps_per_epoch: int) -> int:
  """Epochs to run: config.epochs, raised where that is under config.min_steps
  optimisation steps, so one flagfile trains a 400-cell and a 13,596-cell set."""
  if config.min_steps <= 0 or config.epochs * steps_per_epoch >= config.min_steps:
    return config.epochs
  return math.ceil(config.min_steps / max(1, steps_per_epoch))


def use_class_weights(config: TrainConfig, counts: dict, class_names) -> bool:
  """Whether to weight the loss by class: --class_weights, or --auto_class_weights=R
  and the training split is imbalanced (its largest class more than R times its
  smallest). Balanced sampling already evens the classes, so it never adds weights."""
  if config.class_weights or config.auto_class_weights <= 0:
    return config.class_weights
  sizes = [counts.get(c, 0) for c in class_names]
  present = [n for n in sizes if n > 0]
  if config.balanced_sampling or len(present) < 2:
    return False
  return max(present) > config.auto_class_weights * min(present)


# --- Callbacks ----------------------------------------------------------------------


class NaNGuard(keras.callbacks.Callback):
  """Stops at the first non-finite loss and remembers where."""

  def __init__(self):
    super().__init__()
    self.where = None
    self._epoch = 0

  def on_train_batch_end(self, batch, logs=None):
    loss = (logs or {}).get("loss")
    if loss is not None and not math.isfinite(float(loss)):
      self.where = (self._epoch + 1, batch)
      self.model.stop_training = True

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch


class SafeBackupAndRestore(keras.callbacks.BackupAndRestore):
  """BackupAndRestore that never backs up an epoch whose loss went non-finite, so a
  resumed run starts from the last good state."""

  def on_epoch_end(self, epoch, logs=None):
    loss = (logs or {}).get("loss")
    if loss is not None and not math.isfinite(float(loss)):
      return
    super().on_epoch_end(epoch, logs)


def atomic_save(model: keras.Model, path: str) -> None:
  """Saves a .keras file so that a crash leaves the old file or the new, never half."""
  tmp = os.path.join(os.path.dirname(path), f".tmp-{os.getpid()}-" +
                     os.path.basename(path))
  model.save(tmp)
  storage.replace(tmp, path)


class BestModel(keras.callbacks.Callback):
  """Keeps the inference model of the epoch with the best validation MCA; the best
  value survives a resume (RUN/best.json)."""

  def __init__(self, model_dir: str, inference_model: keras.Model,
               monitor: str = "val_mca"):
    super().__init__()
    self._dir = model_dir
    self._inference_model = inference_model
    self._monitor = monitor
    self._state_path = os.path.join(model_dir, BEST_STATE)
    self.best = -math.inf
    if storage.exists(self._state_path):
      with storage.open_file(self._state_path) as f:
        self.best = json.load(f)["value"]

  def on_epoch_end(self, epoch, logs=None):
    value = (logs or {}).get(self._monitor)
    if value is None or not math.isfinite(float(value)):
      return
    if float(value) > self.best:
      self.best = float(value)
      atomic_save(self._inference_model, os.path.join(self._dir, BEST_MODEL))
      _write_json(self._state_path, {"monitor": self._monitor, "value": self.best,
                                     "epoch": epoch + 1})


def _write_json(path: str, obj) -> None:
  storage.write_atomic(path, json.dumps(obj, indent=2))


# --- The run ------------------------------------------------------------------------


def prepare_run_dir(model_dir: str, overwrite: bool) -> None:
  """A finished run is only replaced with overwrite; an unfinished one resumes."""
  if storage.exists(os.path.join(model_dir, COMPLETE_FILE)):
    if not overwrite:
      raise FileExistsError(
          f"{model_dir} holds a finished run; pass --overwrite to train it again "
          "or choose another --model_dir")
    storage.rmtree(model_dir)
  storage.makedirs(model_dir)


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


def _predict_split(model: keras.Model, dataset: tf.data.Dataset,
                   max_images: int = 36):
  """(y_true ids, probabilities, the first images) over a finite dataset."""
  y_true, probs, shown = [], [], []
  for images, labels in dataset:
    probs.append(model(images, training=False).numpy())
    y_true.append(np.argmax(labels.numpy(), axis=1))
    if sum(len(s) for s in shown) < max_images:
      shown.append(images.numpy())
  images = np.concatenate(shown)[:max_images].astype(np.uint8)
  return np.concatenate(y_true), np.concatenate(probs), images


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
  restore_root = os.path.join(model_dir, CHECKPOINT_DIR)
  if chief:
    prepare_run_dir(model_dir, config.overwrite)
    run_dir = model_dir
    backup_root = restore_root
  else:
    # Other workers compute the same things but write them to a scratch folder;
    # they resume from the chief's checkpoints (hep2tf/loop.py).
    run_dir = tempfile.mkdtemp(prefix="hep2tf-worker-")
    backup_root = os.path.join(run_dir, CHECKPOINT_DIR)
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
  info = input_pipeline.load_info(config.records_dir)
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
    return input_pipeline.create_split(
        config.records_dir, split, batch_size=config.batch_size, fold=fold,
        training=training, image_size=image_size, apply_mask=config.apply_mask,
        shuffle_buffer=config.shuffle_buffer, seed=config.seed,
        balanced=config.balanced_sampling and training,
        mixup_alpha=config.mixup if training else 0.0,
        cutmix_alpha=config.cutmix if training else 0.0,
        repeat=training, cache=_cache_option(config.cache),
        deterministic=config.deterministic or None)

  train_ds = distribute.shard_by_file(
      dataset(config.train_split, True, fold_spec(holdout=False)),
      len(input_pipeline.shard_files(config.records_dir, config.train_split)))
  if config.num_folds:
    val_ds = dataset(config.train_split, False, fold_spec(holdout=True))
    num_train = folds.fold_size(config.records_dir, config.train_split,
                                fold_spec(holdout=False))
    num_val = folds.fold_size(config.records_dir, config.train_split,
                              fold_spec(holdout=True))
  else:
    val_ds = dataset(config.eval_split, False)
    num_train = input_pipeline.num_examples(config.records_dir, config.train_split)
    num_val = input_pipeline.num_examples(config.records_dir, config.eval_split)
  # The reader cannot know the split's length (interleave, filters); stating it lets
  # Keras plan each validation pass instead of running into the end of the data.
  val_ds = val_ds.apply(tf.data.experimental.assert_cardinality(
      math.ceil(num_val / config.batch_size)))
  # Training batches drop the remainder, so a pass is floor(n / batch) steps.
  steps_per_epoch = config.steps_per_epoch or max(1, num_train // config.batch_size)
  epochs = train_epochs(config, steps_per_epoch)
  if epochs != config.epochs:
    logging.info("%d epochs of %d steps are under --min_steps=%d: training %d "
                 "epochs instead", config.epochs, steps_per_epoch, config.min_steps,
                 epochs)
    config = dataclasses.replace(config, epochs=epochs)
  train_counts = info.class_counts.get(config.train_split, {})
  weighted = use_class_weights(config, train_counts, class_names)
  if weighted and not config.class_weights:
    logging.info("training split is imbalanced (%s; largest over smallest > %g): "
                 "weighting the loss by class", train_counts,
                 config.auto_class_weights)

  with strategy.scope():
    train_model, model, augmenter = build_models(config, input_shape,
                                                 len(class_names))
    compile_model(train_model, config, class_names, steps_per_epoch)

  _write_json(os.path.join(model_dir, CONFIG_FILE), {
      "model": config.model, "input_shape": list(input_shape),
      "class_names": class_names, "positive_class": info.positive_class,
      "records_dir": storage.abspath(config.records_dir),
      "image_size": list(image_size) if image_size else None,
      "apply_mask": config.apply_mask, "pixels": info.pixels.to_json(),
      "mixed_precision": policy, "mixed_precision_reason": policy_reason,
      "config": dataclasses.asdict(config)})
  summaries.write_run_text(model_dir, {"mixed_precision": f"{policy} ({policy_reason})"})

  nan_guard = NaNGuard()
  callbacks = [
      nan_guard,
      summaries.HistoryCSV(os.path.join(model_dir, HISTORY_FILE)),
      summaries.ScalarSummaries(model_dir),
      BestModel(model_dir, model),
  ]
  if config.image_summary_every > 0 and distribute.is_chief(strategy):
    callbacks.append(summaries.ImageSummaries(
        model_dir, next(iter(train_ds)), augmenter,
        lambda: _predict_split(model, val_ds), class_names,
        every=config.image_summary_every, num_epochs=config.epochs,
        positive_class=info.positive_class))
  if config.schedule == "plateau":
    callbacks.append(keras.callbacks.ReduceLROnPlateau(
        monitor="val_loss", factor=0.3, patience=2, min_lr=config.learning_rate * 1e-3))
  if config.early_stopping_patience > 0:
    callbacks.append(keras.callbacks.EarlyStopping(
        monitor="val_mca", mode="max", patience=config.early_stopping_patience))

  weights = class_weights(train_counts, class_names) if weighted else None

  def fit(epochs, backup_dir, initial_epoch=0):
    # Each phase backs up on its own: the optimizer of the unfrozen phase has other
    # variables than the frozen one's. A finished phase restores and runs no epoch.
    if loop.uses_custom(config.training_loop, config.distribution):
      loop.fit(strategy, train_model, train_ds, val_ds, epochs=epochs,
               initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
               global_batch_size=config.batch_size, class_weight=weights,
               recall_names=[f"recall_{_slug(c)}" for c in class_names],
               callbacks=callbacks, checkpoint_dir=os.path.join(backup_root, backup_dir),
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
          compile_model(train_model, config, class_names, steps_per_epoch)
    if not nan_guard.where:
      fit(config.epochs, "main", initial_epoch=frozen)
  except tf.errors.DataLossError as e:
    problems = input_pipeline.check_shards(config.records_dir, config.train_split)
    problems += input_pipeline.check_shards(config.records_dir, config.eval_split)
    raise TrainingError(
        "the records are corrupt: " + "; ".join(map(str, problems or [e.message]))
        + f". Re-create them with python -m hep2tf.create_records --overwrite "
        f"(verify with --verify={config.records_dir})") from None
  train_seconds = time.time() - start
  if nan_guard.where:
    epoch, batch = nan_guard.where
    raise TrainingError(
        f"loss became NaN or infinite at epoch {epoch}, batch {batch}; training "
        f"stopped. The last good checkpoint is kept ({model_dir}/{BEST_MODEL}, and "
        f"{model_dir}/{CHECKPOINT_DIR} to resume). Lower --learning_rate or check "
        "the input.")

  if not distribute.is_chief(strategy):
    # The chief writes the run's outputs; another worker only reports.
    y_true, probs, _ = _predict_split(model, val_ds)
    report = metrics.classification_report(y_true, probs, class_names,
                                           positive_class=info.positive_class)
    report.update(epochs_run=len(read_history(model_dir).get("epoch", [])),
                  train_seconds=train_seconds, mixed_precision=policy)
    return report

  # --- Outputs of a finished run --------------------------------------------------
  atomic_save(model, os.path.join(model_dir, FINAL_MODEL))
  best_path = os.path.join(model_dir, BEST_MODEL)
  if not storage.exists(best_path):
    atomic_save(model, best_path)
  best = load_model(best_path)
  export.export_serving(best, os.path.join(model_dir, EXPORT_DIR),
                        class_names=class_names, channels=info.channels,
                        image_size=(height, width), pixels=info.pixels)
  history = read_history(model_dir)
  if history:
    plots.save_figure(plots.learning_curves_figure(history),
                      os.path.join(model_dir, "learning_curves.png"))

  y_true, probs, _ = _predict_split(best, val_ds)
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
  _write_json(os.path.join(model_dir, COMPLETE_FILE),
              {"epochs": epochs_run, "val_mca": report["mca"],
               "val_aca": report["aca"], "train_seconds": train_seconds})
  storage.rmtree(backup_root, ignore_errors=True)
  return report


def load_model(path: str) -> keras.Model:
  """Loads a hep2tf .keras model in Keras safe mode (no code from the file runs)."""
  import hep2tf.models  # noqa: F401  registers the custom layers
  return keras.saving.load_model(path, safe_mode=True, compile=False)


def read_history(model_dir: str) -> dict:
  """The run's per-epoch metrics (history.csv) as {column: list}; {} if none yet."""
  path = os.path.join(model_dir, HISTORY_FILE)
  if not storage.exists(path):
    return {}
  import pandas as pd
  with storage.open_file(path) as f:
    frame = pd.read_csv(f)
  # A resumed run may have logged an epoch twice; the later row is the one kept.
  frame = frame.drop_duplicates(subset="epoch", keep="last")
  return {k: frame[k].tolist() for k in frame.columns}
