"""What a TrainConfig turns into before the first step.

`build_models` gives the inference model of the zoo (hep2tf.models), the augmenter
(hep2tf.data.augment) and the training model that chains them, so augmentation runs
inside the compiled step and is absent from the saved model; `compile_model` adds the
optimizer and learning-rate schedule (`make_optimizer`, `make_learning_rate`) and the
loss (the metrics are the loop's, hep2tf/training/loop.py); `use_class_weights` /
`class_weights` and `train_epochs` decide the loss weighting and the number of epochs
from the training split.
"""

from __future__ import annotations

import math
import re

import keras
from absl import logging

from hep2tf import models
from hep2tf.data import augment
from hep2tf.config.train import TrainConfig


# The from-scratch models whose batch norm is optional (--batch_norm).
BATCH_NORM_OPTIONAL = ("cnn", "cnn_bn", "alexnet", "alexnet_small")


def metric_slug(name: str) -> str:
  return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()


def model_hparams(config: TrainConfig) -> dict:
  """The hparams each model family takes (backbones normalise on their own)."""
  hparams = dict(dropout=config.dropout, weight_decay=config.weight_decay,
                 weights="imagenet" if config.weights == "imagenet" else None)
  if config.model in models.backbones.BACKBONES:
    hparams.update(backbone_trainable=config.freeze_epochs == 0)
    return hparams
  # From scratch: weights=imagenet reaches the model, which refuses it by name.
  hparams.update(normalization=config.normalization)
  if config.model in BATCH_NORM_OPTIONAL:
    # cnn_bn is the cnn with batch_norm=True: --batch_norm adds it, never removes it.
    hparams.update(batch_norm=config.batch_norm or config.model == "cnn_bn")
  if config.model in ("cnn", "cnn_bn"):
    hparams.update(filters=parse_widths(config.cnn_filters),
                   dense_units=config.dense_units, head=config.cnn_head,
                   bn_momentum=config.bn_momentum)
  if config.model in ("resnet18", "resnet34"):
    hparams.update(stem=config.resnet_stem, bn_momentum=config.bn_momentum)
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
  elif config.weights != "imagenet":
    logging.info("%s: random initialisation, trained from scratch (--weights=none)",
                 config.model)
  augmenter = augment.build_augmenter(
      rotation=config.rotation, rot90=config.rot90, flips=config.flips,
      zoom=config.zoom, brightness=config.brightness, contrast=config.contrast,
      erasing=config.erasing, defocus=config.defocus, gain=config.gain,
      gamma=config.gamma, background_offset=config.background_offset,
      shot_noise=config.shot_noise, read_noise=config.read_noise,
      grain=config.grain, resized_crop=config.resized_crop,
      color_jitter=config.color_jitter, randaugment=config.randaugment,
      randaugment_magnitude=config.randaugment_magnitude, seed=config.seed)
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
                  steps_per_epoch: int) -> None:
  """The optimizer and loss the loop trains `train_model` with (its metrics are the
  loop's own); Keras's compile also says whether XLA can compile the step."""
  train_model.compile(
      optimizer=make_optimizer(config, steps_per_epoch),
      loss=keras.losses.CategoricalCrossentropy(
          label_smoothing=config.label_smoothing),
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
