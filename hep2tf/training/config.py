"""TrainConfig: everything a training run needs, one field per train flag.

`python -m hep2tf.train` defines one flag per field (hep2tf/train.py) and maps them
onto a TrainConfig; sweeps and the benchmarks build one directly. The flags generated
from these fields with their help text (issue 18) are planned for this module.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class TrainConfig:
  """Everything a run needs; the train flags map one to one onto these fields."""

  # Data.
  records_dir: str = "records/synthetic_hep2"
  train_split: str = "train"
  eval_split: str = "validation"
  image_size: int = 0            # 0: the records' own size
  apply_mask: bool = False
  balanced_sampling: bool = False
  shuffle_buffer: int = 8192
  cache: str = "auto"            # auto | true | false (reader.create_split)
  # Model.
  model: str = "cnn"
  weights: str = "none"          # none | imagenet | a weights file | an earlier run
  dropout: float = 0.5
  weight_decay: float = 5e-4
  batch_norm: bool = False
  normalization: str = "per_image"
  freeze_epochs: int = 0         # backbones: epochs with the backbone frozen first
  # cnn widths: narrower than the seed study's (models.cnn.FILTERS, 1024), so the
  # default job fits 10 minutes on a 2-core AVX2 CPU; configs/cnn_seed.flags has those.
  cnn_filters: str = "16,32,64,64,128"  # one width per conv layer
  dense_units: int = 128                # fc1 and fc2
  cnn_head: str = "flatten"             # flatten (the seed's) or avg (global pooling)
  # Augmentation (inside the compiled training step).
  rotation: bool = True
  rot90: bool = True
  flips: bool = True
  brightness: float = 0.0
  contrast: float = 0.0
  erasing: float = 0.0
  # Specimen-level augmentation (what differs between slides and microscopes).
  defocus: float = 0.0           # max Gaussian blur sigma, pixels
  gain: float = 0.0              # exposure factor in [1 / (1 + gain), 1 + gain]
  gamma: float = 0.0             # gamma in [1 / (1 + gamma), 1 + gamma]
  background_offset: float = 0.0  # max added background, DN
  shot_noise: float = 0.0        # max DN per photon of added shot noise
  read_noise: float = 0.0        # max std of added read noise, DN
  mixup: float = 0.0
  cutmix: float = 0.0
  # Optimisation.
  optimizer: str = "adam"        # sgd | adam | adamw
  learning_rate: float = 1e-3
  momentum: float = 0.9
  adamw_weight_decay: float = 1e-4
  schedule: str = "constant"     # constant | cosine | plateau
  warmup_epochs: int = 0
  label_smoothing: float = 0.0
  class_weights: bool = False
  auto_class_weights: float = 0.0  # >0: class weights on when largest/smallest > this
  epochs: int = 10
  min_steps: int = 0             # epochs raised so that a run takes at least this
  batch_size: int = 64
  steps_per_epoch: int = 0       # 0: one pass over the training split
  early_stopping_patience: int = 0
  # Cross-validation (hep2tf.sweep): hold out fold `fold` of `num_folds` of the
  # training split for validation; 0 folds uses eval_split.
  num_folds: int = 0
  fold: int = 0
  fold_by_group: bool = True     # folds keep each specimen/patient in one fold
  fold_column: str = ""          # "fold": the dataset's own folds from the manifest
  # Execution.
  mixed_precision: str = "auto"  # hardware.CHOICES; auto: hardware.resolve_precision
  jit_compile: bool = False
  seed: int = 0
  deterministic: bool = False
  image_summary_every: int = 5
  overwrite: bool = False
  # Distribution (hep2tf/training/distribute.py): the batch size is global.
  distribution: str = "default"  # default | mirrored | multi_worker | tpu
  tpu: str = ""
  cpu_devices: int = 0           # >1: split the CPU into logical devices (testing)
  training_loop: str = "auto"    # auto (= custom) | fit | custom: training/loop.py
