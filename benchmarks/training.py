"""Training: images/s of the trainer's loop as it runs a run, against the same loop
on cached batches.

  real     the trainer's own steps (trainer.open_data, plan_epochs, make_models:
           the real reader, repeated and shuffled, augmentation in the model), its
           loop (hep2tf/training/loop.fit: the checkpoint for resume) and every
           callback it passes (make_callbacks: NaN guard, history.csv, TensorBoard
           scalars and images, best model, schedule)
  cached   the same model and loop on the same batches held in memory, no callbacks

Each run has one warm-up epoch (tracing, autotuning) and then timed epochs of
`steps` steps. Work done once per epoch (the checkpoint, summaries, CSV) would weigh
more in a short epoch than in a real one, so two clocks, first and last in the
callback list, split each epoch into its steps and its per-epoch work, and the
figure projects both onto a real epoch (one pass over the training split).
Validation is not part of a training step: both validate on one batch, counted in
the per-epoch work.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time

import keras
import tensorflow as tf

from benchmarks import common
from benchmarks import yardstick
from hep2tf import hardware
from hep2tf import rundir
from hep2tf.training import loop, trainer
from hep2tf.training import precision as run_precision
from hep2tf.config.train import TrainConfig


class Clock(keras.callbacks.Callback):
  """Records perf_counter() at each epoch begin, at the end of each epoch's last
  steps (its last batch hook) and at train end."""

  def __init__(self):
    super().__init__()
    self.begins, self.steps_ends = [], []
    self.finished = None

  def on_epoch_begin(self, epoch, logs=None):
    self.begins.append(time.perf_counter())
    self.steps_ends.append(None)

  def on_train_batch_end(self, batch, logs=None):
    self.steps_ends[-1] = time.perf_counter()

  def on_train_end(self, logs=None):
    self.finished = time.perf_counter()


def projected_rate(first: Clock, last: Clock, steps: int, real_steps: int,
                   batch_size: int) -> tuple[float, float, float]:
  """(images/s over a real epoch, seconds per step, seconds of per-epoch work).

  Uses every epoch after the first; `first` and `last` are the first and last
  callbacks of the list, so last.begin -> first's last batch hook is the steps
  alone, and an epoch runs to the next one's first.begin (the checkpoint included).
  """
  epochs = range(1, len(first.begins))
  ends = first.begins[1:] + [first.finished]
  step_seconds = sum(first.steps_ends[e] - last.begins[e] for e in epochs)
  total_seconds = sum(ends[e] - first.begins[e] for e in epochs)
  per_step = step_seconds / (steps * len(epochs))
  per_epoch = (total_seconds - step_seconds) / len(epochs)
  images = real_steps * batch_size
  return common.rate(images, per_step * real_steps + per_epoch), per_step, per_epoch


def setup(config: TrainConfig
          ) -> tuple[TrainConfig, trainer.TrainData, trainer.Models]:
  """The trainer's own steps up to its callbacks: execution (seed, precision), the
  records' datasets, the epochs (--min_steps) and the compiled models. Returns the
  config as the trainer runs it, the data and the models."""
  trainer.setup_execution(config)
  data = trainer.open_data(config)
  config = trainer.plan_epochs(config, data.steps_per_epoch)
  built = trainer.make_models(config, data, tf.distribute.get_strategy())
  return config, data, built


def fresh_run(config: TrainConfig, model_dir: str) -> rundir.RunDir:
  """An empty run directory, opened as the trainer opens one (RUN/flags.txt)."""
  shutil.rmtree(model_dir, ignore_errors=True)
  return trainer.open_run(config, model_dir, tf.distribute.get_strategy())


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


def loop_rate(config: TrainConfig, work_dir: str, *, cached: bool, steps: int,
             epochs: int) -> dict:
  """Trains `epochs` epochs of `steps` steps with the trainer's loop; returns the
  projected rate and its parts."""
  config, data, built = setup(config)
  strategy = tf.distribute.get_strategy()
  # Keras quietly drops jit_compile when a layer does not support XLA.
  no_jit = [layer.name for layer in built.train_model._flatten_layers()
            if not layer.supports_jit]
  first, last = Clock(), Clock()
  run = fresh_run(config, os.path.join(work_dir, "loop_run"))
  if cached:
    from benchmarks import loop as loop_benchmark
    dataset = loop_benchmark.cached_batches(data.train_ds, steps)
    callbacks = [first, last]
  else:
    dataset = data.train_ds
    callbacks = ([first] + trainer.make_callbacks(config, run, built, data, strategy)
                 + [last])
  plan = loop.FitPlan(
      epochs=epochs, steps_per_epoch=steps, global_batch_size=config.batch_size,
      recall_names=trainer.recall_names(data),
      checkpoint_dir=os.path.join(run.checkpoint_dir, "main"),
      restore_dir=os.path.join(run.checkpoint_dir, "main"), chief=True,
      class_weight=data.class_weight, jit_compile=config.jit_compile,
      log_every=config.log_every)
  loop.fit(strategy, built.train_model, dataset, data.val_ds.take(1), plan,
           callbacks)
  rate, per_step, per_epoch = projected_rate(first, last, steps, data.steps_per_epoch,
                                             config.batch_size)
  keras.backend.clear_session()
  return {"rate": rate, "per_step": per_step, "per_epoch": per_epoch,
          "real_steps": data.steps_per_epoch,
          "xla": bool(built.train_model.jit_compile), "no_jit": no_jit,
          "forward_flops": forward_flops_per_image(built.model)}


def run(config: TrainConfig, work_dir: str, *, steps: int = 20,
        epochs: int = 3) -> list[common.Figure]:
  """The training figures for `config` (its precision and XLA setting as given)."""
  epochs = max(2, epochs)

  def measure(variant: TrainConfig, cached: bool = False) -> dict:
    return loop_rate(variant, work_dir, cached=cached, steps=steps, epochs=epochs)

  precision, _ = run_precision.resolve(config)   # as the trainer resolves it
  real = measure(config)
  cached = measure(config, cached=True)
  how = (f"{precision}, batch {config.batch_size}; {epochs - 1} timed epochs of "
         f"{steps} steps projected onto a real epoch of {real['real_steps']} steps")
  figures = [common.Figure(
      "training loop overhead: real reader + callbacks vs cached", "images/s",
      real["rate"], cached["rate"], target=">= 0.9",
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
        "training with XLA vs without", "images/s", with_xla["rate"], without["rate"],
        baseline_name="without jit_compile", note=how))
  else:
    figures.append(common.Figure(
        "training with XLA vs without", "images/s", None, without["rate"],
        baseline_name="without jit_compile",
        note=f"Keras ran the step without XLA: layers {with_xla['no_jit']} do not "
             "support jit_compile"))
  auto, _ = hardware.resolve_precision("auto")   # is there a fast low precision?
  mixed = None if auto == "float32" else auto
  if mixed is None:
    figures.append(common.Figure(
        "training mixed precision vs float32", "images/s", None, real["rate"],
        baseline_name="float32", note="no fast low precision on this hardware"))
  else:
    low_policy = precision if precision != "float32" else mixed
    other = measure(dataclasses.replace(
        config, mixed_precision="float32" if precision != "float32" else mixed))
    low, full = (real, other) if precision != "float32" else (other, real)
    figures.append(common.Figure(
        f"training {low_policy} vs float32", "images/s", low["rate"], full["rate"],
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
