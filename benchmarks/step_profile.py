"""Where a training step's time goes, by op group, from a TensorFlow profile.

  python -m benchmarks.step_profile --records_dir=records/synthetic_hep2
  python -m benchmarks.step_profile --records_dir=R --mixed_precision=float32

The step is the trainer's model (`configs/cnn.flags` unless --config says otherwise:
augmenter -> model, its loss, regularisation and optimizer) on batches held in
memory, run as one compiled step: forward, backward, update, nothing else. It is
timed for `--steps` steps, then traced for a few more with `tf.profiler`. Every
TensorFlow op the trace shows is put in one group by the layer that made it (the
op's name scope names the layer; a `gradient_tape/` prefix marks the backward pass):

  convolutions     Conv2D / DepthwiseConv2D layers, forward and backward
  batch norm       BatchNormalization layers
  dense            Dense layers
  other layers     pooling, activations, dropout, input normalisation, ...
  augmentation     the augmenter's layers (forward only: nothing to train)
  loss             the loss
  optimiser        the optimizer's update of every variable
  other            ops outside any layer: the L2 terms, gradient sums, casts

"host" is the share of a step's wall time the Python thread spent outside the
compiled function (dispatch, the loop; with batches in memory, nothing else). The
rest is split between the groups by their op time (summed over the intra-op threads,
which run ops side by side); a group's milliseconds are its share of the median
step.
"""

from __future__ import annotations

import collections
import glob
import os
import re
import shutil
import statistics
import tempfile
import time
from typing import Sequence

from benchmarks import common

GROUPS = ("convolutions", "batch norm", "dense", "other layers", "augmentation",
          "loss", "optimiser", "other")
ROWS = GROUPS + ("host",)
_SUFFIX = re.compile(r"_\d+$")


def layer_groups(train_model, augmenter) -> dict[str, str]:
  """{layer name: group} for every layer of the training model."""
  import keras
  kinds = ((keras.layers.BatchNormalization, "batch norm"),
           ((keras.layers.Conv2D, keras.layers.DepthwiseConv2D), "convolutions"),
           (keras.layers.Dense, "dense"))
  groups = {}
  augmenting = {id(layer) for layer in augmenter._flatten_layers()}
  for layer in train_model._flatten_layers(include_self=False):
    if id(layer) in augmenting:
      groups[layer.name] = "augmentation"
      continue
    for kind, group in kinds:
      if isinstance(layer, kind):
        groups[layer.name] = group
        break
    else:
      if not isinstance(layer, keras.Model):
        groups[layer.name] = "other layers"
  return groups


def op_group(op_name: str, groups: dict[str, str], optimizer_name: str,
             loss_name: str) -> str:
  """The group of one op from its full name ("a/b/c" scopes, last the op)."""
  scopes = [_SUFFIX.sub("", s) for s in op_name.split("/")[:-1]]
  if scopes and scopes[0] == "gradient_tape":
    scopes = scopes[1:]
  if scopes and scopes[0] == _SUFFIX.sub("", optimizer_name):
    return "optimiser"
  for scope in reversed(scopes):   # the innermost layer wins
    if scope in groups:
      return groups[scope]
  if scopes and scopes[0] == loss_name:
    return "loss"
  return "other"


def op_times(trace_dir: str) -> tuple[dict[str, float], float]:
  """({op name: seconds} of the TensorFlow ops in a profiler trace, summed over the
  compute threads; seconds the Python thread spent inside compiled functions)."""
  from tensorflow.tsl.profiler.protobuf import xplane_pb2
  paths = sorted(glob.glob(os.path.join(trace_dir, "**", "*.xplane.pb"),
                           recursive=True))
  if not paths:
    raise RuntimeError(f"no profiler trace under {trace_dir}")
  space = xplane_pb2.XSpace()
  with open(paths[-1], "rb") as f:
    space.ParseFromString(f.read())
  times: dict[str, float] = collections.Counter()
  inside = 0.0
  for plane in space.planes:
    if not plane.name.startswith("/host:CPU"):
      continue
    names = plane.event_metadata
    for line in plane.lines:
      if not line.name.startswith(("tf_", "tf_numa")):   # the calling thread
        inside += sum(e.duration_ps * 1e-12 for e in line.events
                      if names[e.metadata_id].name == "KernelAndDeviceFunc::Run")
      if not line.name.startswith("tf_Compute"):
        continue
      for event in line.events:
        name = names[event.metadata_id].name
        # "scope/op:OpType"; executor and runtime events are "Class::Method".
        if ":" in name and "::" not in name:
          times[name.rsplit(":", 1)[0]] += event.duration_ps * 1e-12
  return dict(times), inside


def profile(config, *, steps: int = 20, repeats: int = 5,
            traced_steps: int = 10) -> dict:
  """Times and profiles the step of `config` (a TrainConfig); see the module doc.

  Returns {"policy", "batch_size", "step_ms": [per repeat], "compiled_ms",
  "groups": {group: ms per step}, "shares": {group: share}}.
  """
  import keras
  import tensorflow as tf
  from benchmarks import training
  from hep2tf.training import precision

  config, data, built = training.setup(config)
  batches = list(data.train_ds.take(4))
  step = precision.bare_step(built.train_model)
  for images, labels in batches[:2]:   # trace and warm up
    step(images, labels)

  def run(count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
      loss = step(*batches[i % len(batches)])
    float(loss)
    return (time.perf_counter() - start) / count

  step_ms = [1e3 * run(steps) for _ in range(repeats)]
  trace_dir = tempfile.mkdtemp(prefix="step_profile_")
  try:
    tf.profiler.experimental.start(trace_dir)
    traced_seconds = run(traced_steps)
    tf.profiler.experimental.stop()
    times, inside = op_times(trace_dir)
  finally:
    shutil.rmtree(trace_dir, ignore_errors=True)
  groups = layer_groups(built.train_model, built.augmenter)
  by_group = dict.fromkeys(GROUPS, 0.0)
  for name, seconds in times.items():
    by_group[op_group(name, groups, built.train_model.optimizer.name,
                      built.train_model.loss.name)] += seconds
  total = sum(by_group.values()) or 1.0
  median_ms = statistics.median(step_ms)
  # The trace slows the steps it records, so only shares are taken from it.
  host = max(0.0, 1.0 - inside / (traced_seconds * traced_steps))
  compiled_ms = median_ms * (1.0 - host)
  by_group = {g: v / total * (1.0 - host) for g, v in by_group.items()}
  by_group["host"] = host
  return {"policy": keras.mixed_precision.global_policy().name,
          "batch_size": config.batch_size, "step_ms": step_ms,
          "compiled_ms": compiled_ms, "shares": by_group,
          "groups": {g: median_ms * v for g, v in by_group.items()}}


def figures(result: dict) -> list[common.Figure]:
  """One figure per op group: its milliseconds against the whole step's."""
  step_ms = result["step_ms"]
  median = statistics.median(step_ms)
  note = (f"{result['policy']}, batch {result['batch_size']}, batches in memory; "
          f"step {median:.1f} ms median of {len(step_ms)} "
          f"(min {min(step_ms):.1f}, max {max(step_ms):.1f})")
  return [common.Figure(f"train step: {group}", "ms", result["groups"][group],
                        median, baseline_name="the whole compiled step",
                        note=note)
          for group in ROWS]


def run(config, *, steps: int = 20, repeats: int = 5) -> list[common.Figure]:
  """The op-group figures of `config`'s step, at its own precision policy."""
  return figures(profile(config, steps=steps, repeats=repeats))


def main(argv: Sequence[str]) -> None:
  from absl import flags
  from hep2tf.config.train import config_from_flagfile
  flag_values = flags.FLAGS
  overrides = {"records_dir": flag_values.records_dir}
  if flag_values.mixed_precision:
    overrides["mixed_precision"] = flag_values.mixed_precision
  config = config_from_flagfile(flag_values.config, **overrides)
  result = profile(config, steps=flag_values.steps, repeats=flag_values.repeats)
  print(common.format_table(figures(result)))
  print(figures(result)[0].note)


if __name__ == "__main__":
  from absl import app, flags
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  flags.DEFINE_string("config", "configs/cnn.flags", "Train flagfile.")
  flags.DEFINE_string("records_dir", "records/synthetic_hep2", "Records to read.")
  flags.DEFINE_string("mixed_precision", "", "Policy (default: the flagfile's).")
  flags.DEFINE_integer("steps", 20, "Steps per timed repeat.")
  flags.DEFINE_integer("repeats", 5, "Timed repeats.")
  app.run(main)
