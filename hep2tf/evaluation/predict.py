"""Predictions of a run's model: the library of `python -m hep2tf.predict`.

`predict_files` classifies image files, read exactly as the converter read the run's
records (`load_for_model`), with optional test-time augmentation, the run's fitted
temperature, an abstention threshold and one attribution overlay per file. What the
command writes is described in hep2tf/predict.py.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from hep2tf import figures, models, rundir, storage
from hep2tf.data import augment, images, intensity
from hep2tf.evaluation import calibration, explain, plots


# --- The run's model over a dataset (evaluate) ------------------------------------


def load_run_model(model_dir: str, checkpoint: str = "best"):
  """The run's best (or final) model; FileNotFoundError before its first epoch."""
  path = rundir.RunDir(model_dir).model_file(checkpoint)
  if not storage.exists(path):
    raise FileNotFoundError(f"{path} does not exist; has the run finished an epoch?")
  return models.load_model(path)


def tta_transforms(height: int, width: int) -> list[int]:
  """Dihedral ids that keep the image shape: all 8 when square, else 4."""
  return list(range(8)) if height == width else [0, 2, 4, 6]


def predict_logits(model, dataset, tta: bool = False, keep_images: int = 0):
  """Runs the model's logits over (images, labels, meta) batches.

  Returns (y_true ids, logits (V, N, K) float64 with one slice per TTA view, meta dict
  of numpy str arrays, the first `keep_images` images as uint8 or None).
  """
  logits_model = calibration.logits_model(model)
  y_true, logits, meta, kept = [], [], {}, []
  for batch, labels, batch_meta in dataset:
    if sum(len(k) for k in kept) < keep_images:
      kept.append(batch.numpy().astype("uint8"))
    ks = tta_transforms(batch.shape[1], batch.shape[2]) if tta else [0]
    logits.append(np.stack([
        logits_model(augment.dihedral(batch, k) if k else batch,
                     training=False).numpy().astype(np.float64) for k in ks]))
    y_true.append(np.argmax(labels.numpy(), axis=1))
    for key, value in batch_meta.items():
      meta.setdefault(key, []).append(value.numpy().astype(str))
  shown = np.concatenate(kept)[:keep_images] if kept else None
  return (np.concatenate(y_true), np.concatenate(logits, axis=1),
          {k: np.concatenate(v) for k, v in meta.items()}, shown)


def view_probabilities(logits, temperature: float = 1.0) -> np.ndarray:
  """Probabilities (N, K): softmax(logits / T) per view, averaged over the views."""
  return calibration.softmax(logits, temperature).mean(axis=0)


def predict_dataset(model, dataset, tta: bool = False, keep_images: int = 0,
                    temperature: float = 1.0):
  """Runs the model over (images, labels, meta) batches.

  Returns (y_true ids, probabilities (N, K) at `temperature`, meta dict of numpy str
  arrays), and with keep_images > 0 also the first `keep_images` images (uint8) as a
  fourth item.
  """
  y_true, logits, meta, shown = predict_logits(model, dataset, tta, keep_images)
  result = (y_true, view_probabilities(logits, temperature), meta)
  return result + (shown,) if keep_images else result


def run_temperature(model_dir: str, checkpoint: str) -> float | None:
  """The stored temperature when it was fitted for this checkpoint, else None."""
  stored = calibration.read_run_calibration(model_dir)
  if (stored.get("temperature") is None
      or stored.get("checkpoint", "best") != checkpoint):
    return None
  return float(stored["temperature"])


# --- Image files (predict) ---------------------------------------------------------


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
  run = rundir.RunDir(model_dir).read_config()
  class_names = run["class_names"]
  model = load_run_model(model_dir, checkpoint)
  logits_model = calibration.logits_model(model)
  temperature = run_temperature(model_dir, checkpoint) or 1.0
  if min_confidence is None:
    min_confidence = calibration.read_run_calibration(model_dir).get("min_confidence")
  if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
    raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
  input_shape = run["input_shape"]
  pixels = run_pixels(run)
  ks = tta_transforms(input_shape[0], input_shape[1]) if tta else [0]
  probs, overlays = [], []
  for start in range(0, len(files), batch_size):
    names = files[start:start + batch_size]
    batch = np.stack([load_for_model(f, input_shape, pixels) for f in names])
    logits = np.stack([logits_model(augment.dihedral(batch, k) if k else batch,
                                    training=False).numpy() for k in ks])
    p = view_probabilities(logits, temperature)
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
    figures.save_figure(plots.attribution_overlay_figure(batch[i], maps[i], title),
                        path)
    paths.append(path)
  return paths
