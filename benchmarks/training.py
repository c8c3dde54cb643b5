"""Training: images/s of Keras fit as the trainer runs it, against fit on cached
batches.

  real     build_models + compile_model on the real reader (create_split,
           repeated, shuffled), augmentation in the model, and every callback the
           trainer passes to fit (backup for resume, NaN guard, CSV log, TensorBoard
           scalars and images, best model)
  cached   the same model on the same batches held in memory, no callbacks

Each fit runs one warm-up epoch (tracing, autotuning) and then timed epochs of
`steps` steps. Callbacks that act once per epoch (backup, summaries, CSV) would weigh
more in a short epoch than in a real one, so two clocks, first and last in the
callback list, split each epoch into its steps and its per-epoch callback work, and
the figure projects both onto a real epoch (one pass over the training split).
Validation is not part of a training step and is left out of both.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time

import keras
import numpy as np
import tensorflow as tf

from benchmarks import common
from benchmarks import data
from benchmarks import yardstick
from hep2tf import hardware
from hep2tf import rundir
from hep2tf.data import reader
from hep2tf.evaluation import predict
from hep2tf.training import summaries, trainer
from hep2tf.training.build import build_models, compile_model
from hep2tf.training.callbacks import BestModel, NaNGuard, SafeBackupAndRestore
from hep2tf.training.config import TrainConfig

_TRUE = ("true", "1", "yes")


def load_config(flagfile: str, **overrides) -> TrainConfig:
  """A TrainConfig from a train flagfile (`--name=value` lines, `#` comments).

  The trainer's own flag parser is not used because importing hep2tf.train defines
  its flags globally, which would clash with the benchmark's. Values are converted
  to the type of the field's default; `--noname` sets a bool to False.
  """
  fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
  defaults = TrainConfig()
  values = {}
  with open(flagfile, encoding="utf-8") as f:
    for line in f:
      line = line.strip()
      if not line.startswith("--"):
        continue
      name, sep, text = line[2:].partition("=")
      if not sep and name in fields:
        values[name] = True
      elif not sep and name.startswith("no") and name[2:] in fields:
        values[name[2:]] = False
      elif name in fields:
        kind = type(getattr(defaults, name))
        values[name] = text.lower() in _TRUE if kind is bool else kind(text)
      else:
        raise ValueError(f"{flagfile}: unknown train flag --{name}")
  values.update(overrides)
  return TrainConfig(**values)


class Clock(keras.callbacks.Callback):
  """Records perf_counter() at each epoch begin and end, and at train end."""

  def __init__(self):
    super().__init__()
    self.begins, self.ends = [], []

  def on_epoch_begin(self, epoch, logs=None):
    self.begins.append(time.perf_counter())

  def on_epoch_end(self, epoch, logs=None):
    self.ends.append(time.perf_counter())


def projected_rate(first: Clock, last: Clock, steps: int, real_steps: int,
                   batch_size: int) -> tuple[float, float, float]:
  """(images/s over a real epoch, seconds per step, seconds of per-epoch callbacks).

  Uses every epoch after the first; `first` and `last` are the first and last
  callbacks of the list, so last.begin -> first.end is the steps alone.
  """
  epochs = range(1, len(first.ends))
  step_seconds = sum(first.ends[e] - last.begins[e] for e in epochs)
  total_seconds = sum(last.ends[e] - first.begins[e] for e in epochs)
  per_step = step_seconds / (steps * len(epochs))
  per_epoch = (total_seconds - step_seconds) / len(epochs)
  images = real_steps * batch_size
  return common.rate(images, per_step * real_steps + per_epoch), per_step, per_epoch


def train_dataset(config: TrainConfig, inputs: data.Inputs,
                  repeat: bool = True) -> tf.data.Dataset:
  """The training split exactly as train_and_evaluate reads it."""
  return reader.create_split(
      inputs.records, inputs.train_split, batch_size=config.batch_size,
      training=True, shuffle_buffer=config.shuffle_buffer, seed=config.seed,
      balanced=config.balanced_sampling, repeat=repeat,
      mixup_alpha=config.mixup, cutmix_alpha=config.cutmix).dataset


def eval_dataset(config: TrainConfig, inputs: data.Inputs) -> tf.data.Dataset:
  return reader.create_split(inputs.records, inputs.eval_split,
                             batch_size=config.batch_size, training=False).dataset


def build(config: TrainConfig, inputs: data.Inputs, real_steps: int):
  """(training model, inference model, augmenter), compiled as the trainer does."""
  trainer.setup_execution(config)
  shape = (data.IMAGE_SIZE, data.IMAGE_SIZE, 1)
  train_model, model, augmenter = build_models(config, shape,
                                               len(inputs.class_names))
  compile_model(train_model, config, list(inputs.class_names), real_steps)
  return train_model, model, augmenter


def trainer_callbacks(config: TrainConfig, model_dir: str, model, augmenter,
                      train_ds, val_ds, class_names) -> list[keras.callbacks.Callback]:
  """The callbacks train_and_evaluate gives fit, in its order."""
  callbacks = [
      SafeBackupAndRestore(os.path.join(model_dir, rundir.CHECKPOINT_DIR),
                           delete_checkpoint=False),
      NaNGuard(),
      keras.callbacks.CSVLogger(os.path.join(model_dir, rundir.HISTORY_FILE)),
      summaries.ScalarSummaries(model_dir),
      BestModel(model_dir, model),
  ]
  if config.image_summary_every > 0:
    callbacks.append(summaries.ImageSummaries(
        model_dir, next(iter(train_ds)), augmenter,
        lambda: predict.predict_probabilities(model, val_ds, keep_images=36),
        list(class_names),
        every=config.image_summary_every, num_epochs=config.epochs))
  return callbacks


def forward_flops_per_image(model: keras.Model) -> float:
  """Multiply-adds x 2 of the convolutions and dense layers of one forward pass."""
  flops = 0.0
  for layer in model._flatten_layers():
    if isinstance(layer, keras.layers.Conv2D):
      _, height, width, out = layer.output.shape
      kh, kw, fan_in, _ = layer.kernel.shape
      flops += 2.0 * height * width * kh * kw * fan_in * out
    elif isinstance(layer, keras.layers.Dense):
      fan_in, out = layer.kernel.shape
      flops += 2.0 * fan_in * out
  return flops


def real_steps_per_epoch(config: TrainConfig, inputs: data.Inputs) -> int:
  num_train = inputs.records.num_examples(inputs.train_split)
  return max(1, num_train // config.batch_size)


def fit_rate(config: TrainConfig, inputs: data.Inputs, work_dir: str, *,
             cached: bool, steps: int, epochs: int) -> dict:
  """Trains `epochs` epochs of `steps` steps; returns the projected rate and parts."""
  real_steps = real_steps_per_epoch(config, inputs)
  train_model, model, augmenter = build(config, inputs, real_steps)
  # Keras quietly drops jit_compile when a layer does not support XLA.
  no_jit = [layer.name for layer in train_model._flatten_layers()
            if not layer.supports_jit]
  train_ds = train_dataset(config, inputs)
  first, last = Clock(), Clock()
  if cached:
    images, labels = [], []
    for x, y in train_ds.take(steps):
      images.append(x.numpy())
      labels.append(y.numpy())
    dataset = tf.data.Dataset.from_tensor_slices(
        (np.stack(images), np.stack(labels))).cache().repeat().prefetch(2)
    callbacks = [first, last]
  else:
    dataset = train_ds
    model_dir = os.path.join(work_dir, "fit_run")
    shutil.rmtree(model_dir, ignore_errors=True)
    os.makedirs(model_dir)
    val_ds = eval_dataset(config, inputs)
    callbacks = [first] + trainer_callbacks(
        config, model_dir, model, augmenter, train_ds, val_ds,
        inputs.class_names) + [last]
  train_model.fit(dataset, epochs=epochs, steps_per_epoch=steps, callbacks=callbacks,
                  verbose=0)
  rate, per_step, per_epoch = projected_rate(first, last, steps, real_steps,
                                             config.batch_size)
  keras.backend.clear_session()
  return {"rate": rate, "per_step": per_step, "per_epoch": per_epoch,
          "real_steps": real_steps, "xla": bool(train_model.jit_compile),
          "no_jit": no_jit, "forward_flops": forward_flops_per_image(model)}


def run(config: TrainConfig, inputs: data.Inputs, work_dir: str, *,
        steps: int = 20, epochs: int = 3) -> list[common.Figure]:
  """The training figures for `config` (its precision and XLA setting as given)."""
  epochs = max(2, epochs)

  def measure(variant: TrainConfig, cached: bool = False) -> dict:
    return fit_rate(variant, inputs, work_dir, cached=cached, steps=steps,
                    epochs=epochs)

  precision, _ = hardware.resolve_precision(config.mixed_precision)
  real = measure(config)
  cached = measure(config, cached=True)
  how = (f"{precision}, batch {config.batch_size}; {epochs - 1} timed epochs of "
         f"{steps} steps projected onto a real epoch of {real['real_steps']} steps")
  figures = [common.Figure(
      "fit overhead: real reader + callbacks vs cached", "images/s", real["rate"],
      cached["rate"], target=">= 0.9",
      baseline_name="same model, same batches cached in memory, no callbacks",
      note=f"{how}; per step {real['per_step'] * 1e3:.0f} vs "
           f"{cached['per_step'] * 1e3:.0f} ms, per-epoch callbacks "
           f"{real['per_epoch']:.2f} s")]
  figures.append(roofline(cached, config.batch_size, precision))
  if precision != "float32":
    # float32 is what a CPU without native bfloat16 runs (the AVX2 class).
    cached32 = measure(dataclasses.replace(config, mixed_precision="float32"),
                       cached=True)
    figures.append(roofline(cached32, config.batch_size, "float32"))
  xla = measure(dataclasses.replace(config, jit_compile=not config.jit_compile))
  with_xla, without = (xla, real) if not config.jit_compile else (real, xla)
  if with_xla["xla"]:
    figures.append(common.Figure(
        "fit with XLA vs without", "images/s", with_xla["rate"], without["rate"],
        baseline_name="fit without jit_compile", note=how))
  else:
    figures.append(common.Figure(
        "fit with XLA vs without", "images/s", None, without["rate"],
        baseline_name="fit without jit_compile",
        note=f"Keras ran the step without XLA: layers {with_xla['no_jit']} do not "
             "support jit_compile"))
  auto, _ = hardware.resolve_precision("auto")
  mixed = None if auto == "float32" else auto
  if mixed is None:
    figures.append(common.Figure(
        "fit mixed precision vs float32", "images/s", None, real["rate"],
        baseline_name="float32", note="no fast low precision on this hardware"))
  else:
    low_policy = precision if precision != "float32" else mixed
    other = measure(dataclasses.replace(
        config, mixed_precision="float32" if precision != "float32" else mixed))
    low, full = (real, other) if precision != "float32" else (other, real)
    figures.append(common.Figure(
        f"fit {low_policy} vs float32", "images/s", low["rate"], full["rate"],
        baseline_name="float32", note=how.replace(precision, "policy as named", 1)))
  keras.mixed_precision.set_global_policy("float32")
  return figures


def roofline(cached: dict, batch_size: int, precision: str) -> common.Figure:
  """The training step's FLOP rate over a same-precision matmul's, same process.

  The step's FLOPs are 3x the forward convolutions and dense layers (backward: the
  gradients of inputs and of weights); pooling, activations, augmentation and the
  optimizer are not counted, so they lower the ratio, as they lower the speed.
  """
  forward = cached["forward_flops"]
  step_gflops = 3 * forward * batch_size / cached["per_step"] / 1e9
  dtype = {"mixed_bfloat16": tf.bfloat16, "mixed_float16": tf.float16}.get(
      precision, tf.float32)
  matmul = yardstick.matmul_gflops(dtype)
  return common.Figure(
      f"training step FLOP rate vs matmul, {precision}", "GFLOP/s", step_gflops,
      matmul,
      target=">= 0.5", baseline_name=f"2048x2048 {dtype.name} matmul, same process",
      note=f"{precision}; {3 * forward / 1e9:.3f} GFLOP per image (3x forward conv "
           f"+ dense), batch {batch_size}, cached batches, no callbacks")
