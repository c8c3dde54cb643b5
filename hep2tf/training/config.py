"""TrainConfig: everything a training run needs, declared once with its help text.

Each field is one train flag: its type, default and help (and, for an enum, its
choices) live here, and everything else derives from them:

  define_flags(flag_values)       the absl flags of `python -m hep2tf.train` (and of
                                  the sweep, whose base configuration they are)
  config_from_flags(flag_values)  parsed flags -> TrainConfig
  config_from_flagfile(path)      a train flagfile -> TrainConfig (the benchmarks)
  parse_value(name, text)         one value as its flag parses it (sweep grids)
  flag_lines / flagfile_text      TrainConfig -> `--name=value` lines, as absl writes
                                  and reads them (RUN/flags.txt)
"""

from __future__ import annotations

import dataclasses
import typing

from absl import flags

from hep2tf import hardware
from hep2tf.training import distribute

# Flags defined by define_flags belong to the module that calls it (hep2tf.train),
# so `--help` lists them there, not here.
flags.disclaim_key_flags()


def flag(default, help: str, *, choices: typing.Sequence[str] | None = None):
  """A TrainConfig field that is a flag: its default, its help and, for an enum flag,
  its choices."""
  metadata = {"help": help}
  if choices is not None:
    metadata["choices"] = tuple(choices)
  return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass
class TrainConfig:
  """Everything a run needs; the train flags are generated from these fields."""

  # Data.
  records_dir: str = flag(
      "records/synthetic_hep2", "Records folder made by create_records.")
  train_split: str = flag("train", "Split to train on.")
  eval_split: str = flag(
      "validation", "Split for per-epoch validation and the best checkpoint.")
  image_size: int = flag(
      0, "Side the images are resized (with padding) to; 0 keeps the records' size.")
  apply_mask: bool = flag(
      False, "Zero the background outside the cell mask (records with masks).")
  balanced_sampling: bool = flag(
      False, "Sample training batches with equal class frequencies.")
  shuffle_buffer: int = flag(8192, "Examples in the shuffle buffer.")
  cache: str = flag(
      "auto", "Keep decoded examples in memory after the first epoch. auto: when a "
      "split's decoded size fits reader.CACHE_BUDGET_BYTES (1 GiB); logged.",
      choices=("auto", "true", "false"))
  # Model.
  model: str = flag(
      "cnn", "Model name: cnn, alexnet or a Keras Applications backbone (resnet50, "
      "efficientnetv2_b0, convnext_tiny, ...).")
  weights: str = flag(
      "none", "none, imagenet, a .keras/.weights.h5 file, or an earlier run directory.")
  dropout: float = flag(0.5, "Dropout rate before the dense layers / head.")
  weight_decay: float = flag(5e-4, "L2 weight decay on kernels, added to the loss.")
  batch_norm: bool = flag(False, "BatchNorm after each conv (cnn, alexnet).")
  bn_momentum: float = flag(
      0.99, "cnn: momentum of the BatchNorm moving statistics (lower follows the "
      "weights sooner in a short run).")
  normalization: str = flag(
      "per_image", "Input normalisation inside the model.",
      choices=("per_image", "dataset", "none"))
  freeze_epochs: int = flag(
      0, "Backbones: epochs with the backbone frozen before fine-tuning all of it.")
  # cnn widths: narrower than the seed study's (models.cnn.FILTERS, 1024), so the
  # default job fits 10 minutes on a 2-core AVX2 CPU; configs/cnn_seed.flags has those.
  cnn_filters: str = flag(
      "16,32,64,64,128", "cnn: filters of the 5 conv layers, comma separated (the seed"
      " study's: 32,64,128,256,512).")
  dense_units: int = flag(
      128, "cnn: units of each of the two dense layers (the seed study's: 1024).")
  cnn_head: str = flag(
      "flatten", "cnn: flatten the last feature map into fc1 (the seed study's) or "
      "average each filter over the cell first (avg: global average pooling).",
      choices=("flatten", "avg"))
  # Augmentation (inside the compiled training step).
  rotation: bool = flag(True, "Random rotation by an arbitrary angle.")
  rot90: bool = flag(True, "Random 90-degree turns.")
  flips: bool = flag(True, "Random flips.")
  brightness: float = flag(
      0.0, "Random brightness change, as a fraction of full scale.")
  contrast: float = flag(0.0, "Random contrast change factor.")
  erasing: float = flag(0.0, "Probability of random erasing.")
  # Specimen-level augmentation (what differs between slides and microscopes).
  defocus: float = flag(
      0.0, "Specimen augmentation: random Gaussian blur per image, sigma up to this "
      "many pixels (0: off).")
  gain: float = flag(
      0.0, "Specimen augmentation: exposure factor per image, log-uniform in "
      "[1/(1+gain), 1+gain] (0: off).")
  gamma: float = flag(
      0.0, "Specimen augmentation: gamma per image, log-uniform in [1/(1+gamma), "
      "1+gamma] (0: off).")
  background_offset: float = flag(
      0.0, "Specimen augmentation: background added per image, up to this fraction of"
      " the image's level (its 99th percentile; 0: off).")
  shot_noise: float = flag(
      0.0, "Specimen augmentation: signal-dependent (shot) noise of variance k*L*x, L "
      "the image's level, k up to this (a pixel at the level gets a relative noise of"
      " sqrt(k); 0: off).")
  read_noise: float = flag(
      0.0, "Specimen augmentation: Gaussian read noise, std up to this fraction of the"
      " image's level (0: off).")
  grain: float = flag(
      0.0, "Specimen augmentation: spatially correlated noise (grains 0.5-1.5 px), "
      "std up to this fraction of the image's level (0: off).")
  zoom: float = flag(
      0.0, "Random zoom in or out by up to this fraction (texture scale: "
      "magnification and cell size; 0: off).")
  mixup: float = flag(0.0, "Mixup alpha (0: off).")
  cutmix: float = flag(0.0, "CutMix alpha (0: off).")
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
  # Cross-validation (hep2tf.sweep runs these): hold out fold `fold` of `num_folds`
  # of the training split for validation; 0 folds uses eval_split.
  num_folds: int = flag(
      0, "Hold out one of this many folds of the training split (stratified, grouped "
      "by specimen/patient) for validation; 0 validates on --eval_split.")
  fold: int = flag(0, "Which fold to hold out (0 .. num_folds - 1).")
  fold_by_group: bool = flag(
      True, "Keep each specimen/patient in one fold when groups are known.")
  fold_column: str = flag(
      "", "Manifest column whose values are the folds: 'fold' for a dataset's own "
      "folds (C-NMC fold_0..2, sorted to 0..num_folds - 1); empty: folds are made "
      "(stratified, grouped).")
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
      choices=distribute.STRATEGIES)
  tpu: str = flag(
      "", "TPU name or address for --distribution=tpu ('' = the attached one).")
  cpu_devices: int = flag(
      0, "Split the CPU into this many logical devices (to try mirrored training "
      "without GPUs).")
  training_loop: str = flag(
      "auto", "fit: Keras Model.fit; custom: hep2tf's own loop "
      "(hep2tf/training/loop.py), which also runs under multi_worker; auto: custom "
      "(the same step time as fit on the smoke config).",
      choices=("auto", "fit", "custom"))


_DEFINE = {str: flags.DEFINE_string, int: flags.DEFINE_integer,
           float: flags.DEFINE_float, bool: flags.DEFINE_boolean}
# Not a field: flags.txt names the run directory it reproduces.
_NOT_WRITTEN = ("overwrite",)


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines one flag per TrainConfig field: DEFINE_enum where the field declares
  choices, else the DEFINE of its type, with the field's default and help."""
  types = typing.get_type_hints(TrainConfig)
  for field in dataclasses.fields(TrainConfig):
    help_text, choices = field.metadata["help"], field.metadata.get("choices")
    if choices:
      flags.DEFINE_enum(field.name, field.default, list(choices), help_text,
                        flag_values=flag_values)
    else:
      _DEFINE[types[field.name]](field.name, field.default, help_text,
                                 flag_values=flag_values)


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> TrainConfig:
  """The TrainConfig of parsed flags (define_flags defined them)."""
  return TrainConfig(**{f.name: flag_values[f.name].value
                        for f in dataclasses.fields(TrainConfig)})


def _own_flags() -> flags.FlagValues:
  """The train flags on a FlagValues of their own (the global FLAGS untouched)."""
  flag_values = flags.FlagValues()
  define_flags(flag_values)
  return flag_values


def config_from_flagfile(path: str, **overrides) -> TrainConfig:
  """A TrainConfig from a train flagfile (as `--flagfile=PATH` reads it), with
  `overrides` (field: value) applied. ValueError names a flag that is not a train
  flag or a value that does not parse."""
  flag_values = _own_flags()
  try:
    flag_values(["train", f"--flagfile={path}"])
  except flags.Error as e:
    raise ValueError(f"{path}: {e}") from None
  return dataclasses.replace(config_from_flags(flag_values), **overrides)


def parse_value(name: str, text: str):
  """`text` parsed as the train flag `name` parses it (types, enum choices);
  KeyError for a name that is not a train flag, ValueError for a bad value."""
  if name not in {f.name for f in dataclasses.fields(TrainConfig)}:
    raise KeyError(name)
  return _own_flags()[name].parser.parse(text)


def flag_lines(config: TrainConfig, model_dir: str | None = None) -> list[str]:
  """`--name=value` lines (`--name` / `--noname` for booleans) that reproduce
  `config`, in field order, `--model_dir` last when given; `overwrite` is left out
  (a flagfile says what a run is, not what to do to an earlier one)."""
  flag_values = _own_flags()
  lines = []
  for field in dataclasses.fields(TrainConfig):
    if field.name in _NOT_WRITTEN:
      continue
    flag_values[field.name].value = getattr(config, field.name)
    lines.append(flag_values[field.name].serialize())
  if model_dir is not None:
    lines.append(f"--model_dir={model_dir}")
  return lines


def flagfile_text(config: TrainConfig, model_dir: str) -> str:
  """RUN/flags.txt: the resolved flags of the run in `model_dir`."""
  lines = ["# Resolved flags of this run: python -m hep2tf.train --flagfile=THIS"]
  return "\n".join(lines + flag_lines(config, model_dir)) + "\n"
