"""The train section (optimisation, length, execution, distribution) and TrainConfig,
everything a training run needs: its data, model, augment and train sections.

  TrainConfig                     the config of `python -m hep2tf.train` (and the
                                  base of a sweep): one field per train flag
  TrainOutput                     --model_dir, the train command's own flag
  config_from_flagfile(path)      a train flagfile -> TrainConfig (the benchmarks)
  parse_value(name, text)         one value as its train flag parses it (sweep grids)
  flag_lines / flagfile_text      TrainConfig -> `--name=value` lines, as absl writes
                                  and reads them (RUN/flags.txt)
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from hep2tf import hardware
from hep2tf.config import core
from hep2tf.config.augment import AugmentConfig
from hep2tf.config.data import DataConfig
from hep2tf.config.core import flag
from hep2tf.config.model import ModelConfig

# tf.distribute strategies by name (hep2tf/training/distribute.py makes them).
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


@dataclasses.dataclass
class FitConfig:
  """How the model is fitted and where it runs; the flags of the train section."""

  SECTION: ClassVar[str] = "train"

  # Optimisation.
  optimizer: str = flag("adam", "Optimiser.", choices=("sgd", "adam", "adamw"))
  learning_rate: float = flag(1e-3, "Peak learning rate (for the global batch).")
  momentum: float = flag(0.9, "SGD momentum (Nesterov).")
  adamw_weight_decay: float = flag(1e-4, "AdamW decoupled weight decay.")
  schedule: str = flag(
      "constant", "Learning-rate schedule.", choices=("constant", "cosine", "plateau"))
  warmup_epochs: int = flag(0, "Linear warm-up epochs (cosine).")
  label_smoothing: float = flag(0.0, "Label smoothing of the cross-entropy.")
  class_weights: bool = flag(False, "Weight the loss by inverse class frequency.")
  auto_class_weights: float = flag(
      0.0, "Weight the loss by inverse class frequency when the training split is "
      "imbalanced: its largest class has more than this many times the cells of its "
      "smallest (3 is the usual rule; 0: off). Logged when it applies.")
  epochs: int = flag(10, "Epochs.")
  min_steps: int = flag(
      0, "Train at least this many optimisation steps: when --epochs passes over a "
      "small training split are fewer, epochs are raised to ceil(min_steps / steps per"
      " epoch), and the log says so (0: off).")
  batch_size: int = flag(64, "Batch size.")
  steps_per_epoch: int = flag(
      0, "Steps per epoch; 0 is one pass over the training split.")
  early_stopping_patience: int = flag(
      0, "Stop after this many epochs without a better validation MCA (0: off).")
  # Execution.
  mixed_precision: str = flag(
      "auto", "Precision policy. auto: mixed_float16 on GPUs of compute capability >= "
      "7.0, mixed_bfloat16 on CPUs with native bfloat16 (avx512_bf16/amx_bf16, not "
      "capped by ONEDNN_MAX_CPU_ISA), float32 otherwise; the choice and its reason go "
      "to RUN/config.json. none = float32.", choices=hardware.CHOICES)
  jit_compile: bool = flag(False, "Compile the step with XLA.")
  seed: int = flag(0, "Random seed.")
  deterministic: bool = flag(False, "Deterministic ops and input order (slower).")
  image_summary_every: int = flag(5, "Epochs between image summaries (0: none).")
  overwrite: bool = flag(False, "Start afresh: remove the run in --model_dir, "
                         "finished or killed (without it a finished run is an error "
                         "and a killed one resumes).")
  # Distribution (hep2tf/training/distribute.py): the batch size is global.
  distribution: str = flag(
      "default", "default: one device; mirrored: all local GPUs; multi_worker: the "
      "cluster in TF_CONFIG (worker 0 or the chief writes the run); tpu. --batch_size "
      "is the global batch, split across replicas; --learning_rate is for that global "
      "batch: scale it linearly when you scale the batch with the number of replicas.",
      choices=STRATEGIES)
  tpu: str = flag(
      "", "TPU name or address for --distribution=tpu ('' = the attached one).")
  cpu_devices: int = flag(
      0, "Split the CPU into this many logical devices (to try mirrored training "
      "without GPUs).")
  log_every: int = flag(
      50, "Training steps per host sync: the loop runs this many steps in one call, "
      "summing the loss and confusion matrix on the device, then the host reads them "
      "(per-step callbacks, the progress bar, the NaN stop: a non-finite loss ends "
      "the call at its step); capped at an epoch's steps, 0: once an epoch.")

  # Removed flags that old flagfiles, RUN/flags.txt and config.json still name.
  RETIRED: ClassVar[dict[str, core.Retired]] = {
      "training_loop": core.Retired(
          "hep2tf trains with its own loop (hep2tf/training/loop.py) under every "
          "strategy and no longer with Keras fit, so --training_loop is gone: remove "
          "it (auto and custom, that loop, are read and ignored)",
          accepted=("auto", "custom")),
  }


@dataclasses.dataclass
class TrainConfig(FitConfig, AugmentConfig, ModelConfig, DataConfig):
  """Everything a run needs: the fields of its data, model, augment and train
  sections (config.dropout reads the same whichever section holds it); the train
  flags are generated from them."""

  SECTIONS: ClassVar[tuple[type, ...]] = (DataConfig, ModelConfig, AugmentConfig,
                                          FitConfig)


@dataclasses.dataclass
class TrainOutput:
  """The train command's own flags (not part of the run's config)."""

  SECTION: ClassVar[str] = "train"

  model_dir: str | None = flag(
      None, "Run directory (checkpoints, TensorBoard, exports).")
  force_unlock: bool = flag(
      False, "Take the run directory's lock (RUN/lock.json) even when it names a "
      "holder that may be alive: for a run known to be gone whose lock is not yet "
      "stale (another host's lock goes stale after hep2tf.runlock.STALE_MINUTES "
      "without a heartbeat).")


# Not written into flags.txt: it names the run directory it reproduces.
_NOT_WRITTEN = ("overwrite",)


def config_from_flagfile(path: str, **overrides) -> TrainConfig:
  """A TrainConfig from a train flagfile (as `--flagfile=PATH` reads it; it may
  include flagfiles and name --model_dir), with `overrides` (field: value) applied.
  ValueError names a flag that is not a train flag or a value that does not parse."""
  return core.read_flagfile(TrainConfig, path, also=(TrainOutput,), **overrides)


def parse_value(name: str, text: str):
  """`text` parsed as the train flag `name` parses it (types, enum choices);
  KeyError for a name that is not a train flag, ValueError for a bad value."""
  return core.parse_value(TrainConfig, name, text)


def flag_lines(config: TrainConfig, model_dir: str | None = None) -> list[str]:
  """`--name=value` lines (`--name` / `--noname` for booleans) that reproduce
  `config`, in field order, `--model_dir` last when given; `overwrite` is left out
  (a flagfile says what a run is, not what to do to an earlier one)."""
  lines = core.flag_lines(config, skip=_NOT_WRITTEN)
  return lines + ([f"--model_dir={model_dir}"] if model_dir is not None else [])


def flagfile_text(config: TrainConfig, model_dir: str) -> str:
  """RUN/flags.txt: the resolved flags of the run in `model_dir`."""
  lines = ["# Resolved flags of this run: python -m hep2tf.train --flagfile=THIS"]
  return "\n".join(lines + flag_lines(config, model_dir)) + "\n"
