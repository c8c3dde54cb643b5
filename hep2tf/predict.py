"""Classifies image files with a trained run and writes a CSV.

  python -m hep2tf.predict --model_dir=RUN [--output=predictions.csv] FILES...

One row per file: file, class, then the probability of each class. Images are read
exactly as the converter reads them (hep2tf.images: 16-bit scaled, RGBA composited,
channels mapped, resized with black padding to the model's input).
"""

from __future__ import annotations

import io
import sys

import numpy as np
import pandas as pd
from absl import app, flags
from PIL import Image

from hep2tf import errors, evaluate, images, storage


def define_flags() -> None:
  """Defines the command-line flags (once; importing this module defines none)."""
  flags.DEFINE_string("model_dir", None, "Run directory made by hep2tf.train.")
  flags.DEFINE_string("output", "-", "CSV to write; - writes to standard output.")
  flags.DEFINE_enum("checkpoint", "best", ["best", "final"], "Which model of the run.")
  flags.DEFINE_boolean("tta", False, "Average over the dihedral transforms.")
  flags.DEFINE_integer("batch_size", 64, "Batch size for inference.")

FLAGS = flags.FLAGS


def load_for_model(path: str, input_shape) -> np.ndarray:
  """One image file -> float32 (H, W, C) in [0, 255], as the converter stores it."""
  height, width, channels = input_shape
  with storage.local_copy(path) as local:  # images.py opens local files
    loaded = images.load_image(local, channels, image_size=(height, width),
                               resize="pad")
  array = np.asarray(Image.open(io.BytesIO(loaded.png)), dtype=np.float32)
  if array.ndim == 2:
    array = array[..., np.newaxis]
  return array


def predict_files(model_dir: str, files, *, checkpoint: str = "best",
                  tta: bool = False, batch_size: int = 64) -> pd.DataFrame:
  """Returns a DataFrame with columns file, class, p_<class> for each class."""
  run = evaluate.read_run_config(model_dir)
  class_names = run["class_names"]
  model = evaluate.load_run_model(model_dir, checkpoint)
  input_shape = run["input_shape"]
  probs = []
  for start in range(0, len(files), batch_size):
    batch = np.stack([load_for_model(f, input_shape)
                      for f in files[start:start + batch_size]])
    if tta:
      from hep2tf import augment
      ks = evaluate.tta_transforms(input_shape[0], input_shape[1])
      probs.append(np.mean([model(augment.dihedral(batch, k), training=False).numpy()
                            for k in ks], axis=0))
    else:
      probs.append(model(batch, training=False).numpy())
  probs = np.concatenate(probs) if probs else np.zeros((0, len(class_names)))
  frame = pd.DataFrame({"file": list(files),
                        "class": [class_names[i] for i in probs.argmax(axis=1)]})
  for k, name in enumerate(class_names):
    frame[f"p_{name}"] = probs[:, k]
  return frame


def main(argv):
  files = argv[1:]
  if not FLAGS.model_dir:
    raise app.UsageError("--model_dir is required")
  if not files:
    raise app.UsageError("name the image files to classify")
  try:
    frame = predict_files(FLAGS.model_dir, files, checkpoint=FLAGS.checkpoint,
                          tta=FLAGS.tta, batch_size=FLAGS.batch_size)
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
