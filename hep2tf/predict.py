"""Classifies image files with a trained run and writes a CSV.

  python -m hep2tf.predict --model_dir=RUN [--output=predictions.csv]
      [--min_confidence=0.9] [--explain --explain_dir=DIR] FILES...

One row per file: file, class, confidence (the top probability), uncertain (with
--min_confidence: True where the confidence is below it, so a person should read the
cell), then the probability of each class. When the run has a fitted temperature
(`python -m hep2tf.evaluate --calibrate`) the probabilities are calibrated. With
--explain, one PNG per input in --explain_dir shows the cell beside its SmoothGrad
map for the predicted class (hep2tf.explain), named in the column `explanation`.
Images are read exactly as the converter read the run's records (hep2tf.images with
the records' PixelSpec: 16-bit values kept or rescaled as recorded, RGBA composited,
channels mapped, resized with black padding to the model's input), then mapped as the
reader maps them (stored * 255 / white_level).
"""

from __future__ import annotations

import io
import os
import sys

import numpy as np
import pandas as pd
from absl import app, flags
from PIL import Image

from hep2tf import (augment, calibration, errors, evaluate, explain, images, intensity,
                    plots, storage)


def define_flags() -> None:
  """Defines the command-line flags (once; importing this module defines none)."""
  flags.DEFINE_string("model_dir", None, "Run directory made by hep2tf.train.")
  flags.DEFINE_string("output", "-", "CSV to write; - writes to standard output.")
  flags.DEFINE_enum("checkpoint", "best", ["best", "final"], "Which model of the run.")
  flags.DEFINE_boolean("tta", False, "Average over the dihedral transforms.")
  flags.DEFINE_integer("batch_size", 64, "Batch size for inference.")
  flags.DEFINE_float("min_confidence", None, "Mark rows whose top probability is below "
                     "this as uncertain (default: the run's stored threshold, if any).")
  flags.DEFINE_boolean("explain", False, "Write one attribution overlay per input.")
  flags.DEFINE_string("explain_dir", "explanations", "Folder for the --explain PNGs.")

FLAGS = flags.FLAGS


def load_for_model(path: str, input_shape,
                   pixels: intensity.PixelSpec | None = None) -> np.ndarray:
  """One image file -> the model's float32 (H, W, C), as converter and reader do.

  `pixels`: the run's records' PixelSpec (default: 8-bit records).
  """
  height, width, channels = input_shape
  pixels = pixels or intensity.PixelSpec()
  with storage.local_copy(path) as local:  # images.py opens local files
    loaded = images.load_image(local, channels, image_size=(height, width),
                               resize="pad", pixel_spec=pixels)
  array = images.decode_png(loaded.png).astype(np.float32)
  return array * np.float32(255.0 / pixels.white_level)


def run_pixels(run: dict) -> intensity.PixelSpec:
  """The PixelSpec a run was trained with; runs that predate it had 8-bit records."""
  return intensity.PixelSpec.from_json(run.get("pixels"))


def predict_files(model_dir: str, files, *, checkpoint: str = "best",
                  tta: bool = False, batch_size: int = 64,
                  min_confidence: float | None = None,
                  explain_dir: str | None = None) -> pd.DataFrame:
  """Returns a DataFrame with columns file, class, confidence, uncertain (only with a
  threshold: the argument, else the run's stored one), explanation (only with
  `explain_dir`), then p_<class> for each class."""
  run = evaluate.read_run_config(model_dir)
  class_names = run["class_names"]
  model = evaluate.load_run_model(model_dir, checkpoint)
  logits_model = calibration.logits_model(model)
  temperature = evaluate.run_temperature(model_dir, checkpoint) or 1.0
  if min_confidence is None:
    min_confidence = calibration.read_run_calibration(model_dir).get("min_confidence")
  if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
    raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
  input_shape = run["input_shape"]
  pixels = run_pixels(run)
  ks = evaluate.tta_transforms(input_shape[0], input_shape[1]) if tta else [0]
  probs, overlays = [], []
  for start in range(0, len(files), batch_size):
    names = files[start:start + batch_size]
    batch = np.stack([load_for_model(f, input_shape, pixels) for f in names])
    logits = np.stack([logits_model(augment.dihedral(batch, k) if k else batch,
                                    training=False).numpy() for k in ks])
    p = evaluate.view_probabilities(logits, temperature)
    probs.append(p)
    if explain_dir:
      overlays += write_overlays(model, batch, p, names, start, class_names,
                                 explain_dir)
  probs = np.concatenate(probs) if probs else np.zeros((0, len(class_names)))
  frame = pd.DataFrame({"file": list(files),
                        "class": [class_names[i] for i in probs.argmax(axis=1)],
                        "confidence": probs.max(axis=1)})
  if min_confidence is not None:
    frame["uncertain"] = frame["confidence"] < min_confidence
  if explain_dir:
    frame["explanation"] = overlays
  for k, name in enumerate(class_names):
    frame[f"p_{name}"] = probs[:, k]
  return frame


def write_overlays(model, batch, probs, names, start: int, class_names,
                   explain_dir: str) -> list[str]:
  """One PNG per image: the cell and its SmoothGrad map for the predicted class."""
  storage.makedirs(explain_dir)
  predicted = probs.argmax(axis=1)
  maps = explain.smoothgrad(model, batch, predicted)
  paths = []
  for i, name in enumerate(names):
    stem = os.path.splitext(os.path.basename(name))[0]
    # The row number keeps inputs of the same name in different folders apart.
    path = os.path.join(explain_dir, f"{start + i:05d}_{stem}.png")
    title = (f"{os.path.basename(name)}: {class_names[predicted[i]]} "
             f"(p = {probs[i, predicted[i]]:.2f})")
    plots.save_figure(plots.attribution_overlay_figure(batch[i], maps[i], title), path)
    paths.append(path)
  return paths


def main(argv):
  files = argv[1:]
  if not FLAGS.model_dir:
    raise app.UsageError("--model_dir is required")
  if not files:
    raise app.UsageError("name the image files to classify")
  try:
    frame = predict_files(FLAGS.model_dir, files, checkpoint=FLAGS.checkpoint,
                          tta=FLAGS.tta, batch_size=FLAGS.batch_size,
                          min_confidence=FLAGS.min_confidence,
                          explain_dir=FLAGS.explain_dir if FLAGS.explain else None)
  except (errors.InputError, FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(errors.EXIT_INPUT_ERROR)
  if FLAGS.output == "-":
    frame.to_csv(sys.stdout, index=False, float_format="%.6f")
  else:
    storage.write_atomic(FLAGS.output, frame.to_csv(index=False, float_format="%.6f"))
    print(f"{len(frame)} predictions written to {FLAGS.output}")


def run():
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
