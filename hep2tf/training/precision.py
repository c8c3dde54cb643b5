"""The run's precision policy: `auto` measured on the run's own step where it matters.

`hardware.resolve_precision` decides from the machine's facts; on a CPU whose flags
say mixed_bfloat16 it also takes a probe, and keeps bfloat16 only where the probe
finds it faster (hardware.py says why and how the answer is cached). The probe here
builds the run's training model (augmenter -> model, its loss and optimiser) for the
records' input shape under the policy asked, and times its compiled step on random
batches of the run's batch size: forward, backward, update (`bare_step`), no data
pipeline, metrics or callbacks.

  policy, reason = precision.resolve(config)     # before seeding: the probe builds
                                                 # models and draws random numbers

Under several workers (TF_CONFIG) `auto` is decided from the flags alone, so that
every worker runs the same policy.
"""

from __future__ import annotations

import dataclasses
import json
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from hep2tf import hardware
from hep2tf.config import core
from hep2tf.config.augment import AugmentConfig
from hep2tf.config.model import ModelConfig
from hep2tf.config.train import TrainConfig
from hep2tf.data.records import Records
from hep2tf.training import build, distribute

WARMUP_STEPS = 3
TIMED_STEPS = 8


def bare_step(train_model: keras.Model):
  """A compiled training step of a compiled model: forward, loss (with the model's
  regularisation losses), backward and the optimizer's update; returns the loss."""
  loss_fn, optimizer = train_model.loss, train_model.optimizer

  @tf.function
  def step(images, labels):
    with tf.GradientTape() as tape:
      probs = train_model(images, training=True)
      loss = tf.reduce_mean(tf.cast(loss_fn(labels, probs), tf.float32))
      if train_model.losses:
        loss += tf.add_n([tf.cast(l, tf.float32) for l in train_model.losses])
      scaled = optimizer.scale_loss(loss)
    grads = tape.gradient(scaled, train_model.trainable_variables)
    optimizer.apply_gradients(zip(grads, train_model.trainable_variables))
    return loss

  return step


def resolve(config: TrainConfig, records: Records | None = None) -> tuple[str, str]:
  """(policy, reason) of `config.mixed_precision`, measuring where `auto` needs it;
  `records`: the run's records folder when it is open already."""
  if (config.mixed_precision or "auto").strip().lower() != "auto":
    return hardware.resolve_precision(config.mixed_precision)
  if distribute.num_workers() > 1:
    # Each worker would measure its own machine, and they could disagree.
    policy, reason = hardware.resolve_precision("auto")
    return policy, f"{reason}; not measured: several workers (TF_CONFIG) must agree"
  try:
    input_shape, num_classes = _input_of(config, records)
  except Exception:  # noqa: BLE001  the trainer reports unreadable records itself
    return hardware.resolve_precision("auto")
  key = json.dumps({"tensorflow": tf.__version__, "input": input_shape,
                    "classes": num_classes, "batch": config.batch_size,
                    **_signature(config)}, sort_keys=True)
  probe = StepProbe(config, input_shape, num_classes)
  try:
    return hardware.resolve_precision("auto", probe=probe, probe_key=key)
  finally:
    probe.close()


class StepProbe:
  """policy -> training images/s of `config`'s step on this machine.

  Each policy's model is built and traced once, at its first call; later calls
  only time it again (hardware measures the policies in turn, three times).
  """

  def __init__(self, config: TrainConfig, input_shape: tuple[int, int, int],
               num_classes: int, *, steps: int = TIMED_STEPS):
    self.config = dataclasses.replace(config, weights="none")
    self.input_shape = tuple(input_shape)
    self.num_classes = num_classes
    self.steps = steps
    self._steps: dict = {}
    rng = np.random.default_rng(0)
    batch = config.batch_size
    self._images = tf.constant(rng.uniform(0, 255, (batch, *self.input_shape)),
                               tf.float32)
    self._labels = tf.one_hot(rng.integers(0, num_classes, batch), num_classes)

  def __call__(self, policy: str) -> float:
    step = self._steps.get(policy) or self._build(policy)
    start = time.perf_counter()
    for _ in range(self.steps):
      loss = step(self._images, self._labels)
    float(loss)
    rate = self.steps * self.config.batch_size / (time.perf_counter() - start)
    logging.info("Precision probe: %s %.0f images/s", policy, rate)
    return rate

  def _build(self, policy: str):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
      train_model, _, _ = build.build_models(self.config, self.input_shape,
                                             self.num_classes)
      train_model.compile(
          optimizer=build.make_optimizer(self.config, steps_per_epoch=100),
          loss=keras.losses.CategoricalCrossentropy())
    finally:
      keras.mixed_precision.set_global_policy(previous)
    step = self._steps[policy] = bare_step(train_model)
    for _ in range(WARMUP_STEPS):
      step(self._images, self._labels)
    return step

  def close(self) -> None:
    """Drops the probe's models (the run builds its own afterwards)."""
    self._steps.clear()
    keras.backend.clear_session()


def _input_of(config: TrainConfig, records: Records | None = None
              ) -> tuple[tuple[int, int, int], int]:
  info = (records or Records.open(config.records_dir)).info
  if config.image_size:
    height = width = config.image_size
  else:
    height, width = info.image_shape
  return (int(height), int(width), int(info.channels)), len(info.class_names)


def _signature(config: TrainConfig) -> dict:
  """The fields that make one model's step cost what it costs."""
  sections = core.to_json(config)
  return {name: sections[core.section_name(section)]
          for name, section in (("model", ModelConfig), ("augment", AugmentConfig))}
