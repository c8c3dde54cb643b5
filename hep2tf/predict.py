"""Classifies image files with a trained run and writes a CSV.

  python -m hep2tf.predict --model_dir=RUN [--output=predictions.csv]
      [--min_confidence=0.9] [--explain --explain_dir=DIR] FILES...

One row per file: file, status ("ok", or why the file could not be read: every other
file is still predicted, that row has no class, and the command exits with 3), class,
confidence (the top probability), uncertain (with --min_confidence: True where the
confidence is below it, so a person should read the cell), then the probability of
each class. When the run has a fitted temperature
(`python -m hep2tf.evaluate --calibrate`) the probabilities are calibrated. With
--explain, one PNG per input in --explain_dir shows the cell beside its SmoothGrad
map for the predicted class (hep2tf.evaluation.explain), named in the column
`explanation`. Images are read exactly as the converter read the run's records
(hep2tf.data.images with the records' PixelSpec: 16-bit values kept or rescaled as
recorded, RGBA composited, channels mapped, resized with black padding to the model's
input), then mapped as the reader maps them (stored * 255 / white_level).
"""

from __future__ import annotations

import sys

from absl import app, flags

from hep2tf import atomic, console, errors
from hep2tf.evaluation import predict


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


def main(argv):
  files = argv[1:]
  if not FLAGS.model_dir:
    raise app.UsageError("--model_dir is required")
  if not files:
    raise app.UsageError("name the image files to classify")
  try:
    frame = predict.predict_files(
        FLAGS.model_dir, files, checkpoint=FLAGS.checkpoint, tta=FLAGS.tta,
        batch_size=FLAGS.batch_size, min_confidence=FLAGS.min_confidence,
        explain_dir=FLAGS.explain_dir if FLAGS.explain else None)
  except (errors.InputError, FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(errors.EXIT_INPUT_ERROR)
  bad = int((frame["status"] != "ok").sum())
  if FLAGS.output == "-":
    frame.to_csv(sys.stdout, index=False, float_format="%.6f")
  else:
    try:
      atomic.write(FLAGS.output, frame.to_csv(index=False, float_format="%.6f"))
    except OSError as e:
      if errors.is_no_space(e):
        raise errors.no_space(e, FLAGS.output) from None
      raise
    print(f"{len(frame) - bad} predictions written to {FLAGS.output}")
  if bad:
    print(f"{bad} of {len(frame)} files could not be read; their rows say why in "
          f"the status column", file=sys.stderr)
    sys.exit(errors.EXIT_SKIPPED)


def run():
  define_flags()
  console.run(main, interrupted="no predictions were written")


if __name__ == "__main__":
  run()
