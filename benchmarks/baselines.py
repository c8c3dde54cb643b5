"""Baselines on hep2tf records: LBP + SVM, and a plain batch-norm CNN.

`run_baseline` is the classical one: multi-scale LBP histograms + an RBF SVM.

The texture baseline of the HEp-2 literature (rotation-invariant uniform local binary
patterns, Ojala et al. 2002, at radii 1, 2 and 3 with 8, 16 and 24 neighbours, fed to
an SVM), in numpy and scikit-learn only. It trains on the train split, chooses the
SVM's C by validation MCA, and reports validation MCA, test MCA and their gap:

  python -m benchmarks.baselines --records_dir=records/synthetic_hep2_stress

A deep recipe should beat it on the same split; on a set split by specimen a small
gap here and a large one for the network says the network learnt the specimens.

`run_plain_cnn` is what a careful user writes without hep2tf's recipe: a VGG-style
CNN (pairs of 3x3 convs with batch norm, max-pooling, global average pooling),
per-image standardisation, flips, rotation, contrast and Gaussian noise, Adam with a
cosine schedule, plain Keras fit on the decoded splits, the last epoch's weights
(`--baseline=plain_cnn`). The recipe should beat this one too.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Sequence

import numpy as np
from absl import app, flags

SCALES = ((8, 1.0), (16, 2.0), (24, 3.0))   # (neighbours P, radius R)
C_GRID = (1.0, 10.0, 100.0)


def lbp_riu2(images: np.ndarray, points: int, radius: float) -> np.ndarray:
  """Rotation-invariant uniform LBP codes of grey images (N, H, W) -> int (N, H, W).

  Each pixel compares its `points` neighbours on a circle of `radius` pixels
  (bilinear interpolation, edges replicated) with itself; a pattern with at most two
  0/1 transitions around the circle gets the number of neighbours >= the centre
  (0..P), any other pattern P + 1. So a flat patch is P, a bright spot 0.
  """
  images = np.asarray(images, np.float32)
  n, h, w = images.shape
  pad = int(np.ceil(radius)) + 1
  padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
  ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
  bits = np.empty((points, n, h, w), bool)
  for k in range(points):
    angle = 2 * np.pi * k / points
    y = ys - radius * np.sin(angle) + pad
    x = xs + radius * np.cos(angle) + pad
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = y - y0, x - x0
    sample = ((1 - fy) * (1 - fx) * padded[:, y0, x0]
              + (1 - fy) * fx * padded[:, y0, x0 + 1]
              + fy * (1 - fx) * padded[:, y0 + 1, x0]
              + fy * fx * padded[:, y0 + 1, x0 + 1])
    # A small tolerance, so interpolation round-off on flat patches reads as equal.
    bits[k] = sample >= images - 1e-3
  transitions = np.sum(bits != np.roll(bits, 1, axis=0), axis=0)
  ones = bits.sum(axis=0)
  return np.where(transitions <= 2, ones, points + 1)


def lbp_features(images: np.ndarray, scales=SCALES) -> np.ndarray:
  """Concatenated, normalised riu2 histograms over `scales`:
  (N, H, W[, 1]) -> (N, F)."""
  images = np.asarray(images)
  if images.ndim == 4:
    images = images.mean(axis=-1)
  parts = []
  for points, radius in scales:
    codes = lbp_riu2(images, points, radius).reshape(len(images), -1)
    hist = np.stack([np.bincount(c, minlength=points + 2) for c in codes])
    parts.append(hist / codes.shape[1])
  return np.concatenate(parts, axis=1).astype(np.float32)


def load_split(records, split: str, batch_size: int = 256):
  """(images float (N, H, W, C), label ids (N,)) of one split, in file order."""
  from hep2tf.data import reader
  images, labels = [], []
  for batch, onehot in reader.create_split(
      records, split, batch_size=batch_size, training=False).dataset:
    images.append(batch.numpy())
    labels.append(np.argmax(onehot.numpy(), axis=1))
  return np.concatenate(images), np.concatenate(labels)


def run_baseline(records_dir: str, train_split: str = "train",
                 eval_split: str = "validation", test_split: str = "test",
                 c_grid: Sequence[float] = C_GRID) -> dict:
  """LBP + SVM: fit on train, C by `eval_split` MCA, scored on both splits.

  Returns {"c", "validation_mca", "test_mca", "gap", "seconds", "test_report"}.
  """
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler
  from sklearn.svm import SVC

  from hep2tf.data.records import Records
  from hep2tf.evaluation import metrics
  start = time.time()
  records = Records.open(records_dir)
  class_names = records.info.class_names
  k = len(class_names)
  features = {}
  for split in (train_split, eval_split, test_split):
    images, labels = load_split(records, split)
    features[split] = (lbp_features(images), labels)
  x_train, y_train = features[train_split]
  best = None
  for c in c_grid:
    model = make_pipeline(StandardScaler(), SVC(C=c, class_weight="balanced"))
    model.fit(x_train, y_train)
    x_val, y_val = features[eval_split]
    val_mca = metrics.mean_class_accuracy(y_val, model.predict(x_val), k)
    if best is None or val_mca > best[1]:
      best = (c, val_mca, model)
  c, val_mca, model = best
  x_test, y_test = features[test_split]
  predicted = model.predict(x_test)
  test_mca = metrics.mean_class_accuracy(y_test, predicted, k)
  report = metrics.classification_report(y_test, predicted, class_names)
  return {"c": c, "validation_mca": val_mca, "test_mca": test_mca,
          "gap": val_mca - test_mca, "seconds": time.time() - start,
          "test_report": report}


PLAIN_WIDTHS = (32, 64, 128)


def plain_cnn(input_shape, num_classes: int, seed: int = 0):
  """The plain batch-norm CNN (`run_plain_cnn`), augmentation in front."""
  import keras
  import tensorflow as tf
  inputs = keras.Input(input_shape)
  x = keras.layers.RandomFlip("horizontal_and_vertical", seed=seed)(inputs)
  x = keras.layers.RandomRotation(0.5, fill_mode="constant", seed=seed)(x)
  x = keras.layers.RandomContrast(0.3, value_range=(0, 255), seed=seed)(x)
  x = keras.layers.Lambda(tf.image.per_image_standardization)(x)
  x = keras.layers.GaussianNoise(0.1, seed=seed)(x)
  for width in PLAIN_WIDTHS:
    for _ in range(2):
      x = keras.layers.Conv2D(width, 3, padding="same", use_bias=False)(x)
      x = keras.layers.BatchNormalization()(x)
      x = keras.layers.Activation("relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
  x = keras.layers.Conv2D(128, 3, padding="same", use_bias=False)(x)
  x = keras.layers.BatchNormalization()(x)
  x = keras.layers.Activation("relu")(x)
  x = keras.layers.GlobalAveragePooling2D()(x)
  x = keras.layers.Dropout(0.3)(x)
  outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
  return keras.Model(inputs, outputs, name="plain_bn_cnn")


def run_plain_cnn(records_dir: str, seed: int = 0, steps: int = 1200,
                  batch_size: int = 32) -> dict:
  """Trains `plain_cnn` for about `steps` steps; scores validation and test."""
  import keras
  from hep2tf.data.records import Records
  from hep2tf.evaluation import metrics
  start = time.time()
  keras.utils.set_random_seed(seed)
  records = Records.open(records_dir)
  class_names = records.info.class_names
  data = {split: load_split(records, split)
          for split in ("train", "validation", "test")}
  x_train, y_train = data["train"]
  epochs = max(1, round(steps * batch_size / len(x_train)))
  model = plain_cnn(x_train.shape[1:], len(class_names), seed)
  schedule = keras.optimizers.schedules.CosineDecay(
      1e-3, epochs * (len(x_train) // batch_size))
  model.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy")
  model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0,
            shuffle=True)
  out = {"seed": seed, "epochs": epochs}
  for split in ("validation", "test"):
    x, y = data[split]
    predicted = model.predict(x, verbose=0).argmax(axis=1)
    out[f"{split}_mca"] = metrics.mean_class_accuracy(y, predicted, len(class_names))
    if split == "test":
      out["test_report"] = metrics.classification_report(y, predicted, class_names)
  out.update(gap=out["validation_mca"] - out["test_mca"],
             seconds=time.time() - start)
  return out


def define_flags() -> None:
  """Defines the command-line flags (when run; importing this module defines none)."""
  flags.DEFINE_string("records_dir", "records/synthetic_hep2_stress",
                      "Records folder with train, validation and test splits.")
  flags.DEFINE_string("output", None, "Also write the result as JSON here.")
  flags.DEFINE_enum("baseline", "lbp_svm", ["lbp_svm", "plain_cnn"],
                    "lbp_svm: LBP + SVM; plain_cnn: the plain batch-norm CNN.")
  flags.DEFINE_integer("seed", 0, "plain_cnn: random seed.")


FLAGS = flags.FLAGS


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from hep2tf.evaluation import formatting
  if FLAGS.baseline == "plain_cnn":
    result = run_plain_cnn(FLAGS.records_dir, seed=FLAGS.seed)
    name = f"plain BN CNN (seed {FLAGS.seed}, {result['epochs']} epochs)"
  else:
    result = run_baseline(FLAGS.records_dir)
    name = f"LBP + SVM (C={result['c']:g})"
  print(formatting.format_report(result["test_report"],
                                 title=f"{name} on {FLAGS.records_dir}, test"))
  print(f"{name}: validation MCA {result['validation_mca']:.4f}, test MCA "
        f"{result['test_mca']:.4f}, gap {result['gap']:+.4f} "
        f"({result['seconds']:.0f} s)")
  if FLAGS.output:
    with open(FLAGS.output, "w") as f:
      json.dump(result, f, indent=2)
  return 0


if __name__ == "__main__":
  define_flags()
  sys.exit(app.run(main))
