"""The training step's profile by op group (benchmarks/step_profile.py)."""

from __future__ import annotations

import os

import pytest

from benchmarks import step_profile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GROUPS = {"conv1": "convolutions", "bn1": "batch norm", "fc1": "dense",
          "pool1": "other layers", "rotation": "augmentation"}


@pytest.mark.parametrize("op, group", [
    ("train_model_1/cnn_1/conv1_1/convolution", "convolutions"),
    ("gradient_tape/train_model_1/cnn_1/conv1_1/convolution/Conv2DBackpropInput",
     "convolutions"),
    ("train_model_1/cnn_1/bn1_1/moments/mean", "batch norm"),
    ("train_model_1/augment_1/rotation_1/ImageProjectiveTransformV3", "augmentation"),
    ("gradient_tape/train_model_1/cnn_1/pool1_1/MaxPool/MaxPoolGrad", "other layers"),
    ("adam/AssignAddVariableOp_3", "optimiser"),
    ("categorical_crossentropy/softmax_cross_entropy", "loss"),
    ("AddN_10", "other"),
    ("gradient_tape/Mul_8", "other"),
])
def test_op_group_from_the_op_name(op, group):
  assert step_profile.op_group(op, GROUPS, "adam", "categorical_crossentropy") == group


def test_profile_of_the_trainers_step(tiny_records):
  from hep2tf.config.train import config_from_flagfile
  records_dir, _ = tiny_records
  config = config_from_flagfile(os.path.join(REPO, "configs", "cnn.flags"),
                                records_dir=records_dir, mixed_precision="float32",
                                batch_size=8, min_steps=0)
  result = step_profile.profile(config, steps=2, repeats=2, traced_steps=2)
  assert len(result["step_ms"]) == 2 and min(result["step_ms"]) > 0
  shares = result["shares"]
  assert set(shares) == set(step_profile.ROWS)
  assert sum(shares.values()) == pytest.approx(1.0)
  # The CNN's step is mostly its convolutions; it has augmentation and batch norm.
  assert shares["convolutions"] > 0.1
  assert shares["augmentation"] > 0 and shares["batch norm"] > 0
  assert shares["other"] < 0.2, shares
  figures = step_profile.figures(result)
  assert [f.name for f in figures] == [f"train step: {g}" for g in step_profile.ROWS]
