"""Evaluates a run on a split, in the terms this field reports.

  python -m hep2tf.evaluate --model_dir=RUN --split=test [--tta]

Prints the table (per-class precision/recall/F1/specificity/support, macro and weighted
averages, ACA, MCA, the confusion matrix; ROC-AUC and positive-class F1 for binary
tasks; specimen/patient accuracy by voting when groups are known) and writes
RUN/eval/<split>/ metrics.json, predictions.csv, confusion_matrix.png and
learning_curves.png.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pandas as pd
from absl import app, flags

from hep2tf import augment, errors, input_pipeline, metrics, plots, schema, trainer


def define_flags() -> None:
  """Defines the command-line flags (once; importing this module defines none)."""
  flags.DEFINE_string("model_dir", None, "Run directory made by hep2tf.train.")
  flags.DEFINE_string("split", "test", "Split of the run's records to evaluate.")
  flags.DEFINE_boolean("tta", False, "Average over the 8 dihedral transforms (4 for non-square inputs).")
  flags.DEFINE_enum("checkpoint", "best", ["best", "final"], "best: best validation MCA; final: the last epoch.")
  flags.DEFINE_string("records_dir", None, "Evaluate on these records instead of the run's own (same classes).")
  flags.DEFINE_integer("batch_size", 128, "Batch size for inference.")

FLAGS = flags.FLAGS


GRID_IMAGES = 36  # cells in the grid of predictions with ground truth


def read_run_config(model_dir: str) -> dict:
  path = os.path.join(model_dir, trainer.CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{model_dir} is not a hep2tf run directory "
                            f"({trainer.CONFIG_FILE} is missing)")
  with open(path) as f:
    return json.load(f)


def load_run_model(model_dir: str, checkpoint: str = "best"):
  name = trainer.BEST_MODEL if checkpoint == "best" else trainer.FINAL_MODEL
  path = os.path.join(model_dir, name)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path} does not exist; has the run finished an epoch?")
  return trainer.load_model(path)


def tta_transforms(height: int, width: int) -> list[int]:
  """Dihedral ids that keep the image shape: all 8 when square, else 4."""
  return list(range(8)) if height == width else [0, 2, 4, 6]


def predict_dataset(model, dataset, tta: bool = False, keep_images: int = 0):
  """Runs the model over (images, labels, meta) batches.

  Returns (y_true ids, probabilities (N, K), meta dict of numpy str arrays), and with
  keep_images > 0 also the first `keep_images` images (uint8) as a fourth item.
  """
  y_true, probs, meta, kept = [], [], {}, []
  for images, labels, batch_meta in dataset:
    if sum(len(k) for k in kept) < keep_images:
      kept.append(images.numpy().astype("uint8"))
    if tta:
      ks = tta_transforms(images.shape[1], images.shape[2])
      p = np.mean([model(augment.dihedral(images, k), training=False).numpy()
                   for k in ks], axis=0)
    else:
      p = model(images, training=False).numpy()
    probs.append(p)
    y_true.append(np.argmax(labels.numpy(), axis=1))
    for key, value in batch_meta.items():
      meta.setdefault(key, []).append(value.numpy().astype(str))
  result = (np.concatenate(y_true), np.concatenate(probs),
            {k: np.concatenate(v) for k, v in meta.items()})
  if keep_images:
    result += (np.concatenate(kept)[:keep_images] if kept else None,)
  return result


def evaluate_run(model_dir: str, split: str = "test", *, tta: bool = False,
                 checkpoint: str = "best", records_dir: str | None = None,
                 batch_size: int = 128, write: bool = True) -> dict:
  """Evaluates a run's model on a split and (with write) stores the results.

  Returns the dict of `metrics.classification_report` plus `split`, `tta`,
  `checkpoint` and `records_dir`.
  """
  run = read_run_config(model_dir)
  records_dir = records_dir or run["records_dir"]
  info = input_pipeline.load_info(records_dir)
  if list(info.class_names) != list(run["class_names"]):
    raise ValueError(f"{records_dir} has classes {info.class_names}, the run was "
                     f"trained on {run['class_names']}")
  model = load_run_model(model_dir, checkpoint)
  image_size = tuple(run["image_size"]) if run.get("image_size") else None
  dataset = input_pipeline.create_split(
      records_dir, split, batch_size=batch_size, training=False,
      image_size=image_size, apply_mask=run.get("apply_mask", False), with_meta=True)
  y_true, probs, meta, shown = predict_dataset(model, dataset, tta=tta,
                                               keep_images=GRID_IMAGES)
  groups = meta.get(schema.GROUP)
  report = metrics.classification_report(
      y_true, probs, run["class_names"], groups=groups,
      positive_class=run.get("positive_class"))
  report.update(split=split, tta=tta, checkpoint=checkpoint,
                records_dir=os.path.abspath(records_dir), split_notes=info.split_notes)
  # Beside the training's validation MCA of the best checkpoint, when it is known.
  complete = os.path.join(model_dir, trainer.COMPLETE_FILE)
  if (checkpoint == "best" and os.path.exists(complete)
      and split != run.get("config", {}).get("eval_split", "validation")):
    with open(complete) as f:
      report["val_test_gap"] = metrics.val_test_gap(json.load(f)["val_mca"],
                                                    report["mca"])
  if write:
    write_results(model_dir, split, report, y_true, probs, meta, shown)
  return report


def write_results(model_dir, split, report, y_true, probs, meta, shown=None) -> str:
  out = os.path.join(model_dir, "eval", split)
  os.makedirs(out, exist_ok=True)
  class_names = report["class_names"]
  tmp = os.path.join(out, f".metrics.json.tmp-{os.getpid()}")
  with open(tmp, "w") as f:
    json.dump(report, f, indent=2)
  os.replace(tmp, os.path.join(out, "metrics.json"))
  frame = pd.DataFrame({
      "file_name": meta.get(schema.FILE_NAME), "id": meta.get(schema.ID),
      "group": meta.get(schema.GROUP), "true": [class_names[i] for i in y_true],
      "predicted": [class_names[i] for i in probs.argmax(axis=1)]})
  for k, name in enumerate(class_names):
    frame[f"p_{name}"] = probs[:, k]
  frame.to_csv(os.path.join(out, "predictions.csv"), index=False)
  plots.save_figure(
      plots.confusion_matrix_figure(np.asarray(report["confusion_matrix"]),
                                    class_names),
      os.path.join(out, "confusion_matrix.png"))
  if shown is not None and len(shown):
    n = len(shown)
    plots.save_figure(
        plots.prediction_grid_figure(shown, y_true[:n], probs[:n].argmax(axis=1),
                                     class_names, probs=probs[:n]),
        os.path.join(out, "predictions.png"))
  history = trainer.read_history(model_dir)
  if history:
    plots.save_figure(plots.learning_curves_figure(history),
                      os.path.join(out, "learning_curves.png"))
  return out


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  if not FLAGS.model_dir:
    raise app.UsageError("--model_dir is required")
  try:
    report = evaluate_run(FLAGS.model_dir, FLAGS.split, tta=FLAGS.tta,
                          checkpoint=FLAGS.checkpoint, records_dir=FLAGS.records_dir,
                          batch_size=FLAGS.batch_size)
  except (errors.InputError, FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(errors.EXIT_INPUT_ERROR)
  title = f"{FLAGS.model_dir} on {FLAGS.split}" + (" (TTA)" if FLAGS.tta else "")
  print(metrics.format_report(report, title=title))
  print(f"{FLAGS.split}: MCA {report['mca']:.4f}  ACA {report['aca']:.4f}")
  gap = report.get("val_test_gap")
  if gap:
    print(f"validation MCA {gap['validation_mca']:.4f}, gap {gap['gap']:+.4f}"
          + (f"  WARNING: {gap['warning']}" if gap["warning"] else ""))
  for note in report["split_notes"]:
    print(f"split note (from the converter): {note}")
  print(f"written to {os.path.join(FLAGS.model_dir, 'eval', FLAGS.split)}")


def run():
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
