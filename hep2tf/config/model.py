"""The model section of a training run: which network, its weights and its shape
(hep2tf.models)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from hep2tf.config.core import flag


@dataclasses.dataclass
class ModelConfig:
  """The network a run trains; the flags of the model section."""

  SECTION: ClassVar[str] = "model"

  model: str = flag(
      "cnn", "Model name: from scratch cnn, cnn_bn, alexnet, alexnet_small, resnet18, "
      "resnet34, coatnet_mini; or a Keras Applications backbone (resnet50, "
      "efficientnetv2_b0, convnext_base, ...).")
  weights: str = flag(
      "none", "none, imagenet, a .keras/.weights.h5 file, or an earlier run directory.")
  dropout: float = flag(0.5, "Dropout rate before the dense layers / head.")
  weight_decay: float = flag(5e-4, "L2 weight decay on kernels, added to the loss.")
  batch_norm: bool = flag(False, "BatchNorm after each conv (cnn, alexnet).")
  bn_momentum: float = flag(
      0.99, "cnn, resnet18/34: momentum of the BatchNorm moving statistics (lower "
      "follows the weights sooner in a short run).")
  resnet_stem: str = flag(
      "auto", "resnet18/resnet34 stem: small (one 3x3 stride-2 conv), imagenet (7x7 "
      "stride-2 conv + max-pool) or auto (imagenet from 160 px up).",
      choices=("auto", "small", "imagenet"))
  normalization: str = flag(
      "per_image", "Input normalisation inside the model.",
      choices=("per_image", "dataset", "none"))
  freeze_epochs: int = flag(
      0, "Backbones: epochs with the backbone frozen before fine-tuning all of it.")
  # cnn widths: narrower than the seed study's (models.cnn.FILTERS, 1024), so the
  # default job fits 10 minutes on a 2-core AVX2 CPU; configs/seeds/cnn_cnmc.flags
  # has the seed's.
  cnn_filters: str = flag(
      "16,32,64,64,128", "cnn: filters of the 5 conv layers, comma separated (the seed"
      " study's: 32,64,128,256,512).")
  dense_units: int = flag(
      128, "cnn: units of each of the two dense layers (the seed study's: 1024).")
  cnn_head: str = flag(
      "flatten", "cnn: flatten the last feature map into fc1 (the seed study's) or "
      "average each filter over the cell first (avg: global average pooling).",
      choices=("flatten", "avg"))
