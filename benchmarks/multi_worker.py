"""Step time of the custom loop (hep2tf/training/loop.py) against Keras fit, and of 2
local workers (MultiWorkerMirroredStrategy) against 1 process.

  python -m benchmarks.multi_worker --records_dir=RECORDS [--steps=20] [--output=F]

All on the smoke configuration (the 5-conv CNN, global batch 16, augmentation in the
step). Three figures:
  1. fit vs custom loop, one process, the default strategy: alternating rounds of
     `--steps` steps each in the same process, median seconds per step;
  2. 1 process vs 2 worker processes on this machine with the same global batch
     (8 per worker): median seconds per step of the custom loop;
  3. the communication per step: the same 2 workers all-reducing tensors the size of
     the model's gradients (what each step sends), median seconds per all-reduce.
On one machine with 2 cores, 2 workers share the cores, so (2) is no speed-up; it is
the overhead a step pays for synchronising, which on separate machines is (3).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

from absl import app, flags


def define_flags() -> None:
  """Defines the command-line flags (when run; importing this module defines none)."""
  flags.DEFINE_string("records_dir", None, "Records to train on (e.g. the smoke set).")
  flags.DEFINE_integer("steps", 20, "Timed steps per round.")
  flags.DEFINE_integer("rounds", 3, "Alternating rounds of fit and the custom loop.")
  flags.DEFINE_string("output", "", "JSON file for the figures ('' prints only).")
  flags.DEFINE_enum("role", "main", ["main", "worker"], "Internal: worker processes.")
  flags.DEFINE_string("worker_output", "",
                      "Internal: where worker 0 writes its times.")


FLAGS = flags.FLAGS

BATCH = 16


def _setup(strategy):
  """The trainer's own steps: its training data and compiled model."""
  from hep2tf.training import trainer
  from hep2tf.config.train import TrainConfig
  config = TrainConfig(records_dir=FLAGS.records_dir, model="cnn",
                       batch_size=BATCH, shuffle_buffer=256, seed=0)
  trainer.setup_execution(config)
  data = trainer.open_data(config)
  built = trainer.make_models(config, data, strategy)
  return built.train_model, data.train_ds


def _median(values):
  values = sorted(values)
  return values[len(values) // 2]


def _time_custom(strategy, train_model, train_ds, steps):
  from hep2tf.training import loop
  runner = loop.Loop(strategy, train_model, global_batch_size=BATCH)
  iterator = iter(strategy.experimental_distribute_dataset(train_ds))
  runner.train_steps(iterator, 3)
  times = []
  for _ in range(steps):
    # One step a call (--log_every=1), the way fit's per-step times are taken.
    start = time.perf_counter()
    runner.train_steps(iterator, 1)
    times.append(time.perf_counter() - start)
  return runner, iterator, times


def _time_fit(train_model, train_ds, steps):
  import keras

  class Timer(keras.callbacks.Callback):
    def __init__(self):
      super().__init__()
      self.times = []

    def on_train_batch_begin(self, batch, logs=None):
      self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
      float(logs["loss"])  # the NaN guard syncs like this every step
      self.times.append(time.perf_counter() - self._start)

  timer = Timer()
  train_model.fit(train_ds, epochs=1, steps_per_epoch=steps + 3, verbose=0,
                  callbacks=[timer])
  return timer.times[3:]


def _allreduce_times(strategy, train_model, repeats):
  import tensorflow as tf
  grads = [tf.zeros_like(v) for v in train_model.trainable_variables]

  @tf.function
  def reduce():
    def fn():
      return tf.distribute.get_replica_context().all_reduce(
          tf.distribute.ReduceOp.SUM, grads)
    return strategy.run(fn)

  reduce()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    out = reduce()
    float(tf.reduce_sum(strategy.experimental_local_results(out[0])[0]))
    times.append(time.perf_counter() - start)
  return times


def worker_main():
  import tensorflow as tf
  from hep2tf.training import distribute
  strategy = tf.distribute.MultiWorkerMirroredStrategy()
  train_model, train_ds = _setup(strategy)
  _, _, times = _time_custom(strategy, train_model, train_ds, FLAGS.steps)
  reduce_times = _allreduce_times(strategy, train_model, FLAGS.steps)
  if distribute.is_chief_task():
    params = sum(int(v.numpy().size) for v in train_model.trainable_variables)
    with open(FLAGS.worker_output, "w") as f:
      json.dump({"step_seconds": _median(times),
                 "allreduce_seconds": _median(reduce_times),
                 "gradient_megabytes": params * 4 / 1e6}, f)


def _two_workers(steps) -> dict:
  ports = []
  for _ in range(2):
    with socket.socket() as s:
      s.bind(("127.0.0.1", 0))
      ports.append(s.getsockname()[1])
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  out = tempfile.mktemp(suffix=".json")
  processes = []
  try:
    for index in range(2):
      env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": json.dumps(
          {"cluster": cluster, "task": {"type": "worker", "index": index}})}
      processes.append(subprocess.Popen(
          [sys.executable, "-m", "benchmarks.multi_worker", "--role=worker",
           f"--records_dir={FLAGS.records_dir}", f"--steps={steps}",
           f"--worker_output={out}"], env=env, stdout=subprocess.DEVNULL,
          stderr=subprocess.DEVNULL, start_new_session=True))
    for p in processes:
      p.wait(timeout=1200)
    with open(out) as f:
      return json.load(f)
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
        p.wait()


def main(argv):
  del argv
  if FLAGS.role == "worker":
    worker_main()
    return
  import tensorflow as tf
  strategy = tf.distribute.get_strategy()
  fit_times, custom_times = [], []
  for _ in range(FLAGS.rounds):
    # Fresh models each round, so neither path inherits the other's warm state.
    train_model, train_ds = _setup(strategy)
    fit_times += _time_fit(train_model, train_ds, FLAGS.steps)
    train_model, train_ds = _setup(strategy)
    custom_times += _time_custom(strategy, train_model, train_ds, FLAGS.steps)[2]
  fit_step, custom_step = _median(fit_times), _median(custom_times)
  two = _two_workers(FLAGS.steps)
  results = {
      "fit_step_seconds": fit_step, "custom_step_seconds": custom_step,
      "custom_over_fit": custom_step / fit_step,
      "one_process_step_seconds": custom_step,
      "two_workers_step_seconds": two["step_seconds"],
      "two_over_one": two["step_seconds"] / custom_step,
      "allreduce_seconds_per_step": two["allreduce_seconds"],
      "gradient_megabytes": two["gradient_megabytes"],
      "global_batch": BATCH, "steps": FLAGS.steps, "rounds": FLAGS.rounds,
      "cores": os.cpu_count(), "tensorflow": tf.__version__,
  }
  print(json.dumps(results, indent=2))
  if FLAGS.output:
    with open(FLAGS.output, "w") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  define_flags()
  flags.mark_flag_as_required("records_dir")
  app.run(main)
