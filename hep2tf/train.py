"""Trains a model on converted records.

  python -m hep2tf.train --flagfile=configs/cnn.flags --model_dir=runs/cnn

Flags on the command line override the flagfile. The resolved flags are written to
RUN/flags.txt. Running the same command again after an interruption resumes from the
last completed epoch.
"""

from __future__ import annotations

import dataclasses
import os
import sys

from absl import app, flags, logging

from hep2tf import atomic, errors, hardware, rundir, storage
from hep2tf.training import distribute, trainer
from hep2tf.training.config import TrainConfig

_D = TrainConfig()


def define_flags() -> None:
  """Defines the command-line flags (once; importing this module defines none)."""
  # Data.
  flags.DEFINE_string("records_dir", _D.records_dir, "Records folder made by create_records.")
  flags.DEFINE_string("train_split", _D.train_split, "Split to train on.")
  flags.DEFINE_string("eval_split", _D.eval_split, "Split for per-epoch validation and the best checkpoint.")
  flags.DEFINE_integer("image_size", _D.image_size, "Side the images are resized (with padding) to; 0 keeps the records' size.")
  flags.DEFINE_boolean("apply_mask", _D.apply_mask, "Zero the background outside the cell mask (records with masks).")
  flags.DEFINE_boolean("balanced_sampling", _D.balanced_sampling, "Sample training batches with equal class frequencies.")
  flags.DEFINE_integer("shuffle_buffer", _D.shuffle_buffer, "Examples in the shuffle buffer.")
  flags.DEFINE_enum("cache", _D.cache, ["auto", "true", "false"], "Keep decoded examples in memory after the first epoch. auto: when a split's decoded size fits reader.CACHE_BUDGET_BYTES (1 GiB); logged.")
  # Model.
  flags.DEFINE_string("model", _D.model, "Model name: cnn, alexnet or a Keras Applications backbone (resnet50, efficientnetv2_b0, convnext_tiny, ...).")
  flags.DEFINE_string("weights", _D.weights, "none, imagenet, a .keras/.weights.h5 file, or an earlier run directory.")
  flags.DEFINE_float("dropout", _D.dropout, "Dropout rate before the dense layers / head.")
  flags.DEFINE_float("weight_decay", _D.weight_decay, "L2 weight decay on kernels, added to the loss.")
  flags.DEFINE_boolean("batch_norm", _D.batch_norm, "BatchNorm after each conv (cnn, alexnet).")
  flags.DEFINE_enum("normalization", _D.normalization, ["per_image", "dataset", "none"], "Input normalisation inside the model.")
  flags.DEFINE_string("cnn_filters", _D.cnn_filters, "cnn: filters of the 5 conv layers, comma separated (the seed study's: 32,64,128,256,512).")
  flags.DEFINE_enum("cnn_head", _D.cnn_head, ["flatten", "avg"], "cnn: flatten the last feature map into fc1 (the seed study's) or average each filter over the cell first (avg: global average pooling).")
  flags.DEFINE_integer("dense_units", _D.dense_units, "cnn: units of each of the two dense layers (the seed study's: 1024).")
  flags.DEFINE_integer("freeze_epochs", _D.freeze_epochs, "Backbones: epochs with the backbone frozen before fine-tuning all of it.")
  # Augmentation.
  flags.DEFINE_boolean("rotation", _D.rotation, "Random rotation by an arbitrary angle.")
  flags.DEFINE_boolean("rot90", _D.rot90, "Random 90-degree turns.")
  flags.DEFINE_boolean("flips", _D.flips, "Random flips.")
  flags.DEFINE_float("brightness", _D.brightness, "Random brightness change, as a fraction of full scale.")
  flags.DEFINE_float("contrast", _D.contrast, "Random contrast change factor.")
  flags.DEFINE_float("erasing", _D.erasing, "Probability of random erasing.")
  flags.DEFINE_float("defocus", _D.defocus, "Specimen augmentation: random Gaussian blur per image, sigma up to this many pixels (0: off).")
  flags.DEFINE_float("gain", _D.gain, "Specimen augmentation: exposure factor per image, log-uniform in [1/(1+gain), 1+gain] (0: off).")
  flags.DEFINE_float("gamma", _D.gamma, "Specimen augmentation: gamma per image, log-uniform in [1/(1+gamma), 1+gamma] (0: off).")
  flags.DEFINE_float("background_offset", _D.background_offset, "Specimen augmentation: background added per image, up to this many DN of 255 (0: off).")
  flags.DEFINE_float("shot_noise", _D.shot_noise, "Specimen augmentation: signal-dependent (shot) noise of variance k*x, k up to this (DN per photon; 0: off).")
  flags.DEFINE_float("read_noise", _D.read_noise, "Specimen augmentation: Gaussian read noise, std up to this many DN (0: off).")
  flags.DEFINE_float("mixup", _D.mixup, "Mixup alpha (0: off).")
  flags.DEFINE_float("cutmix", _D.cutmix, "CutMix alpha (0: off).")
  # Optimisation.
  flags.DEFINE_enum("optimizer", _D.optimizer, ["sgd", "adam", "adamw"], "Optimiser.")
  flags.DEFINE_float("learning_rate", _D.learning_rate, "Peak learning rate (for the global batch).")
  flags.DEFINE_float("momentum", _D.momentum, "SGD momentum (Nesterov).")
  flags.DEFINE_float("adamw_weight_decay", _D.adamw_weight_decay, "AdamW decoupled weight decay.")
  flags.DEFINE_enum("schedule", _D.schedule, ["constant", "cosine", "plateau"], "Learning-rate schedule.")
  flags.DEFINE_integer("warmup_epochs", _D.warmup_epochs, "Linear warm-up epochs (cosine).")
  flags.DEFINE_float("label_smoothing", _D.label_smoothing, "Label smoothing of the cross-entropy.")
  flags.DEFINE_boolean("class_weights", _D.class_weights, "Weight the loss by inverse class frequency.")
  flags.DEFINE_float("auto_class_weights", _D.auto_class_weights, "Weight the loss by inverse class frequency when the training split is imbalanced: its largest class has more than this many times the cells of its smallest (3 is the usual rule; 0: off). Logged when it applies.")
  flags.DEFINE_integer("epochs", _D.epochs, "Epochs.")
  flags.DEFINE_integer("min_steps", _D.min_steps, "Train at least this many optimisation steps: when --epochs passes over a small training split are fewer, epochs are raised to ceil(min_steps / steps per epoch), and the log says so (0: off).")
  flags.DEFINE_integer("batch_size", _D.batch_size, "Batch size.")
  flags.DEFINE_integer("steps_per_epoch", _D.steps_per_epoch, "Steps per epoch; 0 is one pass over the training split.")
  flags.DEFINE_integer("early_stopping_patience", _D.early_stopping_patience, "Stop after this many epochs without a better validation MCA (0: off).")
  # Cross-validation (hep2tf.sweep runs these).
  flags.DEFINE_integer("num_folds", _D.num_folds, "Hold out one of this many folds of the training split (stratified, grouped by specimen/patient) for validation; 0 validates on --eval_split.")
  flags.DEFINE_integer("fold", _D.fold, "Which fold to hold out (0 .. num_folds - 1).")
  flags.DEFINE_boolean("fold_by_group", _D.fold_by_group, "Keep each specimen/patient in one fold when groups are known.")
  flags.DEFINE_string("fold_column", _D.fold_column, "Manifest column whose values are the folds: 'fold' for a dataset's own folds (C-NMC fold_0..2, sorted to 0..num_folds - 1); empty: folds are made (stratified, grouped).")
  # Execution.
  flags.DEFINE_string("model_dir", None, "Run directory (checkpoints, TensorBoard, exports).")
  flags.DEFINE_enum("mixed_precision", _D.mixed_precision, list(hardware.CHOICES), "Precision policy. auto: mixed_float16 on GPUs of compute capability >= 7.0, mixed_bfloat16 on CPUs with native bfloat16 (avx512_bf16/amx_bf16, not capped by ONEDNN_MAX_CPU_ISA), float32 otherwise; the choice and its reason go to RUN/config.json. none = float32.")
  flags.DEFINE_boolean("jit_compile", _D.jit_compile, "Compile the step with XLA.")
  flags.DEFINE_integer("seed", _D.seed, "Random seed.")
  flags.DEFINE_boolean("deterministic", _D.deterministic, "Deterministic ops and input order (slower).")
  flags.DEFINE_integer("image_summary_every", _D.image_summary_every, "Epochs between image summaries (0: none).")
  flags.DEFINE_boolean("overwrite", _D.overwrite, "Replace a finished run in --model_dir.")
  # Distribution.
  flags.DEFINE_enum("distribution", _D.distribution, list(distribute.STRATEGIES), "default: one device; mirrored: all local GPUs; multi_worker: the cluster in TF_CONFIG (worker 0 or the chief writes the run); tpu. --batch_size is the global batch, split across replicas; --learning_rate is for that global batch: scale it linearly when you scale the batch with the number of replicas.")
  flags.DEFINE_string("tpu", _D.tpu, "TPU name or address for --distribution=tpu ('' = the attached one).")
  flags.DEFINE_enum("training_loop", _D.training_loop, ["auto", "fit", "custom"], "fit: Keras Model.fit; custom: hep2tf's own loop (hep2tf/training/loop.py), which also runs under multi_worker; auto: custom (the same step time as fit on the smoke config).")
  flags.DEFINE_integer("cpu_devices", _D.cpu_devices, "Split the CPU into this many logical devices (to try mirrored training without GPUs).")


FLAGS = flags.FLAGS


def check_paths(config: TrainConfig, model_dir: str) -> None:
  """Rejects path flags that cannot be right, before anything is written."""
  if not storage.isdir(config.records_dir):
    raise FileNotFoundError(f"--records_dir={config.records_dir} is not a folder; "
                            "make records with python -m hep2tf.create_records")
  if storage.exists(model_dir) and not storage.isdir(model_dir):
    raise ValueError(f"--model_dir={model_dir} is a file, not a run directory")
  if storage.is_local(model_dir) and storage.is_local(config.records_dir):
    same = os.path.realpath(model_dir) == os.path.realpath(config.records_dir)
  else:
    same = model_dir.rstrip("/") == config.records_dir.rstrip("/")
  if same:
    raise ValueError("--model_dir must not be the records folder")
  if config.weights not in ("none", "", "imagenet") and not storage.exists(config.weights):
    raise FileNotFoundError(f"--weights={config.weights}: no such file or run "
                            "directory (expected none, imagenet, a .keras/.weights.h5 "
                            "file or an earlier run)")


def config_from_flags() -> TrainConfig:
  return TrainConfig(**{f.name: FLAGS[f.name].value
                        for f in dataclasses.fields(TrainConfig)})


def write_flagfile(path: str) -> None:
  """The resolved train flags, as a flagfile that reproduces the run."""
  names = [f.name for f in dataclasses.fields(TrainConfig)
           if f.name != "overwrite"] + ["model_dir"]
  lines = ["# Resolved flags of this run: python -m hep2tf.train --flagfile=THIS"]
  lines += [FLAGS[name].serialize() for name in names]
  atomic.write(path, "\n".join(lines) + "\n")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.model_dir:
    raise app.UsageError("--model_dir is required")
  config = config_from_flags()
  try:
    check_paths(config, FLAGS.model_dir)
    if config.distribution != "multi_worker" or distribute.is_chief_task():
      rundir.prepare_run_dir(FLAGS.model_dir, config.overwrite)
      config.overwrite = False  # prepare_run_dir did what overwrite asks
      write_flagfile(os.path.join(FLAGS.model_dir, "flags.txt"))
    report = trainer.train_and_evaluate(config, FLAGS.model_dir)
  except (trainer.TrainingError, errors.InputError, FileExistsError,
          FileNotFoundError, ValueError) as e:
    logging.error("%s", e)
    print(f"error: {e}", file=sys.stderr)
    sys.exit(errors.EXIT_INPUT_ERROR)
  print(f"{config.eval_split}: MCA {report['mca']:.4f}  ACA {report['aca']:.4f}  "
        f"({report['epochs_run']} epochs, {report['train_seconds']:.0f} s, "
        f"{report['mixed_precision']}); "
        f"run in {FLAGS.model_dir}")


def run():
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
