"""Predictions of a run's model: the library of `python -m hep2tf.predict`.

`iterate_logits` is the one prediction loop, with test-time augmentation (the
dihedral views of each batch, averaged as probabilities by `view_probabilities` at
the run's temperature): the trainer's validation scores (`predict_probabilities`),
evaluate (`predict_logits`) and `predict_files` all run through it.
`predict_files` classifies image files, read exactly as the converter read the run's
records (`load_for_model`), with optional test-time augmentation, the run's fitted
temperature, an abstention threshold and one attribution overlay per file. What the
command writes is described in hep2tf/predict.py.
"""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import pandas as pd
from hep2tf import figures, models, rundir, storage
from hep2tf.config.evaluate import PredictConfig
from hep2tf.config.run import read_run_config
from hep2tf.data import augment, dihedral, images, intensity, preprocess
from hep2tf.evaluation import calibration, explain, plots
from hep2tf.errors import InputError


# --- The run's model over a dataset (evaluate) ------------------------------------


def load_run_model(model_dir: str, checkpoint: str = "best"):
  """The run's best (or final) model; FileNotFoundError before its first epoch."""
  path = rundir.RunDir(model_dir).model_file(checkpoint)
  if not storage.exists(path):
    raise FileNotFoundError(f"{path} does not exist; has the run finished an epoch?")
  return models.load_model(path)


def tta_transforms(height: int, width: int) -> list[int]:
  """Dihedral ids that keep the image shape: all 8 when square, else 4."""
  return (list(range(dihedral.NUM_ELEMENTS)) if height == width
          else list(dihedral.SHAPE_KEEPING))


def iterate_logits(model, batches, tta: bool = False) -> Iterator[tuple]:
  """THE prediction loop: the model's logits over `batches`, batch by batch.

  Each batch is images (N, H, W, C), or a tuple (images, one-hot labels) or
  (images, labels, meta dict) as `reader.create_split` yields them. With `tta`
  every batch is also seen in each shape-keeping dihedral view (`tta_transforms`).
  Yields (images, logits (V, N, K) float64 with one slice per view, labels or None,
  meta or {}), so that callers can use a batch's images before the next one loads.
  """
  logits_model = calibration.logits_model(model)
  for element in batches:
    batch, labels, meta = _unpack(element)
    ks = tta_transforms(batch.shape[1], batch.shape[2]) if tta else [0]
    logits = np.stack([
        logits_model(augment.dihedral(batch, k) if k else batch,
                     training=False).numpy().astype(np.float64) for k in ks])
    yield batch, logits, labels, meta


def _unpack(element) -> tuple:
  """images | (images, labels) | (images, labels, meta) -> (images, labels or None,
  meta or {})."""
  if not isinstance(element, tuple):
    return element, None, {}
  batch, labels, *meta = element
  return batch, labels, meta[0] if meta else {}


def predict_logits(model, dataset, tta: bool = False, keep_images: int = 0):
  """Runs the model's logits over (images, labels[, meta]) batches (`iterate_logits`).

  Returns (y_true ids, logits (V, N, K) float64 with one slice per TTA view, meta dict
  of numpy str arrays, the first `keep_images` images as uint8 or None).
  """
  y_true, logits, meta, kept = [], [], {}, []
  for batch, batch_logits, labels, batch_meta in iterate_logits(model, dataset, tta):
    if sum(len(k) for k in kept) < keep_images:
      kept.append(np.asarray(batch).astype("uint8"))
    logits.append(batch_logits)
    y_true.append(np.argmax(np.asarray(labels), axis=1))
    for key, value in batch_meta.items():
      meta.setdefault(key, []).append(value.numpy().astype(str))
  shown = np.concatenate(kept)[:keep_images] if kept else None
  return (np.concatenate(y_true), np.concatenate(logits, axis=1),
          {k: np.concatenate(v) for k, v in meta.items()}, shown)


def view_probabilities(logits, temperature: float = 1.0) -> np.ndarray:
  """Probabilities (N, K): softmax(logits / T) per view, averaged over the views."""
  return calibration.softmax(logits, temperature).mean(axis=0)


def predict_probabilities(model, dataset, *, tta: bool = False,
                          temperature: float = 1.0, keep_images: int = 0):
  """(y_true ids, probabilities (N, K) at `temperature`, the first `keep_images`
  images as uint8 or None) over (images, labels[, meta]) batches: the trainer's
  validation scores and image summaries."""
  y_true, logits, _, shown = predict_logits(model, dataset, tta, keep_images)
  return y_true, view_probabilities(logits, temperature), shown


# --- Image files (predict) ---------------------------------------------------------


def load_for_model(path: str, input_shape,
                   pixels: intensity.PixelSpec | None = None) -> np.ndarray:
  """One image file -> the model's float32 (H, W, C), as converter and reader do:
  the values the converter would store for it (`images.load_image` with the run's
  PixelSpec), then the reader's `preprocess.model_input` (resize to the model's
  size, `stored * 255 / white_level`).

  `pixels`: the run's records' PixelSpec (default: 8-bit records).
  """
  height, width, channels = input_shape
  pixels = pixels or intensity.PixelSpec()
  if not storage.exists(path):
    raise InputError("file not found", file=path)
  with storage.local_copy(path) as local:  # images.py opens local files
    loaded = images.load_image(local, channels, pixel_spec=pixels)
  stored = images.decode_png(loaded.png)
  return preprocess.model_input(stored, pixels, (height, width)).numpy()


def array_for_model(values: np.ndarray, input_shape,
                    pixels: intensity.PixelSpec | None = None,
                    where: str = "") -> np.ndarray:
  """A grey window already in memory (uint8, uint16 or float (H, W)) -> the model's
  float32 (H, W, C): the steps of `load_for_model` after decoding (the records'
  storage mapping, then `preprocess.model_input`). `where` names it in errors."""
  height, width, channels = input_shape
  pixels = pixels or intensity.PixelSpec()
  kind = ("uint8" if values.dtype == np.uint8
          else "float" if values.dtype.kind == "f" else "uint16")
  planes = values[..., None] if values.ndim == 2 else values
  if channels == 3 and planes.shape[-1] == 1:
    planes = np.repeat(planes, 3, axis=-1)
  stored = intensity.to_storage(planes, kind, pixels, where)
  return preprocess.model_input(stored, pixels, (height, width)).numpy()


def predict_files(config: PredictConfig | str, files, **fields) -> pd.DataFrame:
  """A run's model on image files.

  Args:
    config: the predict section (`PredictConfig`, as `python -m hep2tf.predict`
      reads it: model_dir, checkpoint, tta, batch_size, min_confidence, explain,
      explain_dir); or the run directory, with those fields by name
      (`predict_files(run, files, batch_size=2)`; `explain_dir=DIR` alone also
      switches `explain` on).
    files: the image files (local paths or URLs).

  Returns a DataFrame with columns file, status, class, confidence, uncertain
  (only with a threshold: min_confidence, else the run's stored one), explanation
  (only with explain), then p_<class> for each class.

  Every file that can be read is predicted; one that cannot (missing, truncated,
  not an image) gets its reason in `status` ("ok" otherwise) and empty class,
  confidence and probabilities, so one bad file never costs the batch.
  """
  config = _predict_config(config, fields)
  model_dir, batch_size = config.model_dir, config.batch_size
  explain_dir = config.explain_dir if config.explain else None
  run = read_run_config(rundir.RunDir(model_dir))
  class_names = list(run.class_names)
  model = load_run_model(model_dir, config.checkpoint)
  temperature = calibration.run_temperature(model_dir, config.checkpoint)
  min_confidence = config.min_confidence
  if min_confidence is None:
    min_confidence = calibration.read_run_calibration(model_dir).get("min_confidence")
  if min_confidence is not None and not 0.0 <= min_confidence <= 1.0:
    raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
  files = list(files)
  status = ["ok"] * len(files)
  rows: list[list[int]] = []   # the file rows of each batch, as they are made
  batches = _good_batches(files, run.input_shape, run.pixels, batch_size, status,
                          rows)
  probs = np.full((len(files), len(class_names)), np.nan)
  overlays = [""] * len(files)
  for k, (batch, logits, _, _) in enumerate(iterate_logits(model, batches,
                                                           config.tta)):
    p = view_probabilities(logits, temperature)
    probs[rows[k]] = p
    if explain_dir:
      paths = write_overlays(model, batch, p, [files[i] for i in rows[k]], rows[k],
                             class_names, explain_dir)
      for i, path in zip(rows[k], paths):
        overlays[i] = path
  good = np.array([s == "ok" for s in status], bool)
  filled = np.where(good[:, None], probs, 0.0)
  frame = pd.DataFrame({"file": files, "status": status,
                        "class": [class_names[k] if g else "" for k, g in
                                  zip(filled.argmax(axis=1), good)],
                        "confidence": np.where(good, filled.max(axis=1), np.nan)})
  if min_confidence is not None:
    frame["uncertain"] = good & (frame["confidence"] < min_confidence)
  if explain_dir:
    frame["explanation"] = overlays
  for k, name in enumerate(class_names):
    frame[f"p_{name}"] = probs[:, k]
  return frame


def _predict_config(config: PredictConfig | str, fields: dict) -> PredictConfig:
  """The PredictConfig of `predict_files`' arguments."""
  if isinstance(config, PredictConfig):
    if fields:
      raise TypeError("predict_files takes a PredictConfig alone, or a run "
                      "directory and fields by name")
    return config
  explain = fields.get("explain", fields.get("explain_dir") is not None)
  if fields.get("explain_dir") is None:
    fields.pop("explain_dir", None)
  return PredictConfig(model_dir=config, **{**fields, "explain": explain})


def _good_batches(files, input_shape, pixels, batch_size: int, status: list,
                  rows: list) -> Iterator[np.ndarray]:
  """Batches of the files that load (`load_for_model`); a file that does not gets
  its reason in `status`; each batch's file rows are appended to `rows`."""
  batch, indices = [], []
  for i, path in enumerate(files):
    try:
      batch.append(load_for_model(path, input_shape, pixels))
      indices.append(i)
    except InputError as e:
      status[i] = e.reason
    if len(batch) == batch_size or (i == len(files) - 1 and batch):
      rows.append(indices)
      yield np.stack(batch)
      batch, indices = [], []


def write_overlays(model, batch, probs, names, rows, class_names,
                   explain_dir: str) -> list[str]:
  """One PNG per image: the cell and its SmoothGrad map for the predicted class;
  `rows` are the images' row numbers in the output (they prefix the names)."""
  storage.makedirs(explain_dir)
  predicted = probs.argmax(axis=1)
  maps = explain.smoothgrad(model, batch, predicted)
  paths = []
  for i, name in enumerate(names):
    stem = os.path.splitext(os.path.basename(name))[0]
    # The row number keeps inputs of the same name in different folders apart.
    path = os.path.join(explain_dir, f"{rows[i]:05d}_{stem}.png")
    title = (f"{os.path.basename(name)}: {class_names[predicted[i]]} "
             f"(p = {probs[i, predicted[i]]:.2f})")
    figures.save_figure(plots.attribution_overlay_figure(batch[i], maps[i], title),
                        path)
    paths.append(path)
  return paths
