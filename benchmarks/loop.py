"""The training loop's step rate against a bare loop of the same model and batch.

  loop   the trainer's loop (hep2tf/training/loop.py): `Loop` and `train_epoch` with
         the run's callbacks (trainer.make_callbacks: NaN guard, history, summaries,
         best model, ...), `--log_every` steps a call, the loss and confusion matrix
         summed on the device and read by the host once a call
  bare   a tf.function doing only the forward pass, the backward pass and
         apply_gradients (`training.precision.bare_step`, what the precision probe
         times), called once a step: no metrics, no callbacks, one read of the
         optimizer's step counter at the end

Both train the same compiled model (the trainer's make_models: augmentation in the
step, the run's precision) on the same batches, taken from the run's reader and held
in memory, so the figure is the loop's cost and not the reader's. After one warm-up
of each (tracing), `repeats` rounds time `steps` steps of each back to back, which
goes first alternating; the figure is the median loop rate over the median bare
rate, the note gives the spread of the rounds' ratios. The per-epoch work
(validation, epoch-end callbacks, the checkpoint) is not a step and is left out.
"""

from __future__ import annotations

import os
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from benchmarks import common
from hep2tf.training import loop as loop_lib
from hep2tf.training import precision
from hep2tf.training import trainer
from hep2tf.config.train import TrainConfig


def cached_batches(dataset: tf.data.Dataset, steps: int) -> tf.data.Dataset:
  """`steps` batches of `dataset`, held in memory and repeated."""
  images, labels = [], []
  for x, y in dataset.take(steps):
    images.append(x.numpy())
    labels.append(y.numpy())
  return tf.data.Dataset.from_tensor_slices(
      (np.stack(images), np.stack(labels))).repeat().prefetch(2)


def time_bare(step, iterator, optimizer, steps: int) -> float:
  """Seconds for `steps` bare steps, to the end of the last (its counter read)."""
  start = time.perf_counter()
  for _ in range(steps):
    step(*next(iterator))
  int(optimizer.iterations.numpy())
  return time.perf_counter() - start


def time_loop(runner: loop_lib.Loop, iterator, callback_list, steps: int,
              log_every: int) -> float:
  """Seconds for `steps` steps of the trainer's loop (one train_epoch)."""
  start = time.perf_counter()
  _, done, _ = loop_lib.train_epoch(runner, iterator, callback_list, steps, log_every)
  seconds = time.perf_counter() - start
  if done != steps:
    raise RuntimeError(f"the loop stopped after {done} of {steps} steps")
  return seconds


def measure(config: TrainConfig, work_dir: str, *, steps: int, repeats: int) -> dict:
  """Rates (steps/s) of the loop and the bare step, round by round."""
  from benchmarks import training   # the trainer's setup steps
  config, data, built = training.setup(config)
  strategy = tf.distribute.get_strategy()
  model = built.train_model
  dataset = cached_batches(data.train_ds, steps)
  run = training.fresh_run(config, os.path.join(work_dir, "loop_run"))
  callbacks = trainer.make_callbacks(config, run, built, data, strategy)
  callback_list = keras.callbacks.CallbackList(callbacks, model=model,
                                               epochs=1, steps=steps)
  runner = loop_lib.Loop(strategy, model, global_batch_size=config.batch_size,
                         class_weight=data.class_weight,
                         jit_compile=config.jit_compile)
  loop_iterator = iter(strategy.experimental_distribute_dataset(dataset))
  bare_iterator = iter(dataset)
  step = precision.bare_step(model)
  model.stop_training = False
  callback_list.on_train_begin()
  callback_list.on_epoch_begin(0)
  time_bare(step, bare_iterator, model.optimizer, 2)              # warm-up: tracing
  time_loop(runner, loop_iterator, callback_list, 2, config.log_every)
  bare, loop = [], []
  for round_ in range(repeats):
    # Alternating which goes first, so that a drift in the machine's load does not
    # favour one.
    for which in (("bare", "loop") if round_ % 2 == 0 else ("loop", "bare")):
      if which == "bare":
        bare.append(steps / time_bare(step, bare_iterator, model.optimizer, steps))
      else:
        loop.append(steps / time_loop(runner, loop_iterator, callback_list, steps,
                                      config.log_every))
  keras.backend.clear_session()
  keras.mixed_precision.set_global_policy("float32")
  return {"bare": bare, "loop": loop, "batch_size": config.batch_size,
          "log_every": config.log_every}


def run(config: TrainConfig, work_dir: str, *, steps: int = 100,
        repeats: int = 5) -> list[common.Figure]:
  """The figure: median loop rate over median bare rate, in images/s."""
  rates = measure(config, work_dir, steps=steps, repeats=repeats)
  batch = rates["batch_size"]
  ratios = [a / b for a, b in zip(rates["loop"], rates["bare"])]
  chunk = min(rates["log_every"] or steps, steps)
  return [common.Figure(
      "training loop vs bare step", "images/s",
      statistics.median(rates["loop"]) * batch,
      statistics.median(rates["bare"]) * batch, target=">= 0.95",
      baseline_name="tf.function of forward, backward, apply_gradients; same model, "
                    "same batches in memory; no metrics, no callbacks",
      note=f"batch {batch}, {repeats} rounds of {steps} steps each, back to back; "
           f"host sync every {chunk} steps; ratio per round median "
           f"{statistics.median(ratios):.3f}, min {min(ratios):.3f}, max "
           f"{max(ratios):.3f}")]
