"""Transfer between cell datasets: train on one set, start another from its run."""

import csv
import os

import numpy as np
import pytest

from hep2tf import models, rundir
from hep2tf.convert import create
from hep2tf.convert.plan import ConvertConfig
from hep2tf.data import synth
from hep2tf.data.records import Records
from hep2tf.training import build, trainer
from hep2tf.config.train import TrainConfig

TINY = dict(epochs=1, batch_size=8, steps_per_epoch=1, image_summary_every=0,
            shuffle_buffer=64)
SUBSET = ("Homogeneous", "Centromere", "NuMem")


def _records(root, seed, classes=None):
  """A synthetic set drawn with `seed` -> records; with `classes`, a generic CSV of
  only those classes (a dataset with other class names and count)."""
  source = root / f"src{seed}"
  csv_path = synth.generate(source, 120, seed=seed, image_size=32, num_specimens=12)
  if classes is None:
    create.create_records(ConvertConfig("icpr2014", str(source), output_dir=str(
        root / f"rec{seed}"), group_split=False, num_workers=1, num_shards=1,
        progress=False))
    return str(root / f"rec{seed}")
  with open(csv_path) as f:
    rows = [r for r in csv.DictReader(f) if r["Image class"] in classes]
  with open(source / "subset.csv", "w", newline="") as f:
    out = csv.writer(f)
    out.writerow(["path", "label", "specimen"])
    out.writerows([f"{int(r['Image ID']):05d}.png", r["Image class"].lower(),
                   r["Specimen"]] for r in rows)
  create.create_records(ConvertConfig(
      "csv", str(source), output_dir=str(root / f"subset{seed}"),
      csv_path="subset.csv", group_column="specimen", layout_option=("channels=1",),
      group_split=False, num_workers=1, num_shards=1, progress=False))
  return str(root / f"subset{seed}")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
  """Run A: one step on the seed-1 set (six classes)."""
  root = tmp_path_factory.mktemp("transfer")
  records = _records(root, seed=1)
  run_dir = str(root / "run_a")
  trainer.train_and_evaluate(TrainConfig(records_dir=records, seed=1, **TINY),
                             run_dir)
  return root, run_dir


def _weights(model, name):
  return [np.asarray(w) for w in model.get_layer(name).get_weights()]


def _build(records, weights, seed):
  config = TrainConfig(records_dir=records, weights=weights, seed=seed,
                       **TINY)
  info = Records.open(records).info
  shape = tuple(info.image_shape) + (info.channels,)
  _, model, _ = build.build_models(config, shape, len(info.class_names))
  return config, model


def test_other_classes_keep_the_backbone_and_rebuild_the_head(pretrained):
  root, run_a = pretrained
  records_b = _records(root, seed=2, classes=SUBSET)
  assert Records.open(records_b).info.class_names == sorted(
      c.lower() for c in SUBSET)
  source = models.load_model(os.path.join(run_a, rundir.BEST_MODEL))
  config, model = _build(records_b, run_a, seed=2)
  _, scratch = _build(records_b, "none", seed=2)
  # At step 0, before any training: conv and dense layers are run A's ...
  for name in ("conv1", "conv5", "fc1", "fc2"):
    for mine, theirs, fresh in zip(_weights(model, name), _weights(source, name),
                                   _weights(scratch, name)):
      np.testing.assert_array_equal(mine, theirs)
      assert not np.array_equal(fresh, theirs)
  # ... and the head is new, sized for three classes.
  assert model.output_shape[-1] == 3 and source.output_shape[-1] == 6
  # The fine-tuning run itself trains and reports on the new classes.
  report = trainer.train_and_evaluate(config, str(root / "run_b"))
  assert len(report["class_names"]) == 3 and 0.0 <= report["mca"] <= 1.0


def test_same_classes_copy_every_layer(pretrained):
  root, run_a = pretrained
  records_c = _records(root, seed=3)
  source = models.load_model(os.path.join(run_a, rundir.BEST_MODEL))
  _, model = _build(records_c, run_a, seed=3)
  layers = [layer.name for layer in source.layers if layer.get_weights()]
  assert len(layers) >= 8
  for name in layers:
    for mine, theirs in zip(_weights(model, name), _weights(source, name)):
      np.testing.assert_array_equal(mine, theirs)
