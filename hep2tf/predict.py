"""Classifies image files, or whole fields, with a trained run.

  python -m hep2tf.predict --model_dir=RUN [--output=predictions.csv]
      [--min_confidence=0.9] [--explain --explain_dir=DIR] FILES...
  python -m hep2tf.predict --model_dir=RUN --fields=DIR --output_dir=OUT
      [--min_confidence=0.5] [--min_cells=3] [--tta]

With --fields, DIR is a fields layout (DIR/<specimen>/<field>.png, optional
_mask.png and specimens.csv; see hep2tf.data.fields): every cell is found, cut and
classified, and each specimen answered by the vote of hep2tf.evaluation.votes;
OUT/specimens.csv, OUT/cells.csv and one overlay PNG per field are written (and
OUT/metrics.json where specimens.csv gives patterns). Exit code 3 when a field could
not be read (named in OUT/rejects.csv; the rest of its specimen still voted).

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

from hep2tf import atomic, errors
from hep2tf.config import cli, core
from hep2tf.config.convert import FieldsOptions
from hep2tf.config.evaluate import PredictConfig
from hep2tf.config.run import read_run_config
from hep2tf.data import fields as data_fields


# PredictConfig's fields (hep2tf/config/evaluate.py) and, for --fields, the fields
# layout's options (hep2tf/config/convert.py).
SECTIONS = (PredictConfig, FieldsOptions)


def define_flags() -> None:
  """Defines the command-line flags on the global FLAGS (once; importing this module
  defines none)."""
  core.define_flags(SECTIONS)


FLAGS = flags.FLAGS


def main(argv):
  from hep2tf.evaluation import predict
  files = argv[1:]
  if not FLAGS.model_dir:
    raise app.UsageError("--model_dir is required")
  if FLAGS.fields:
    return predict_fields(files)
  if not files:
    raise app.UsageError("name the image files to classify")
  try:
    frame = predict.predict_files(core.from_flags(PredictConfig, FLAGS), files)
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


def predict_fields(files) -> int:
  from hep2tf import rundir
  from hep2tf.evaluation import fields
  if files or not FLAGS.output_dir:
    raise app.UsageError("--fields takes --output_dir=OUT and no file names")
  try:
    run = read_run_config(rundir.RunDir(FLAGS.model_dir))
    given = core.from_flags(FieldsOptions, FLAGS).given()
    config = data_fields.FieldsConfig(**{"cell_size": run.input_shape[0], **given})
    table, rejects, report = fields.predict_fields(
        FLAGS.model_dir, FLAGS.fields, FLAGS.output_dir, checkpoint=FLAGS.checkpoint,
        tta=FLAGS.tta, batch_size=FLAGS.batch_size,
        min_confidence=FLAGS.min_confidence, min_cells=FLAGS.min_cells,
        config=config)
  except (errors.InputError, FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return errors.EXIT_INPUT_ERROR
  print(table[["specimen", "pattern", "confidence", "cells", "voted"]
              + (["true_pattern"] if "true_pattern" in table else [])].to_string(
                  index=False))
  print(f"{len(table)} specimens written to {FLAGS.output_dir}/specimens.csv "
        "(cells.csv, overlays/ beside it)")
  if report is not None:
    print(f"specimen accuracy {report['aca']:.4f}, MCA {report['mca']:.4f} over "
          f"{report['num_specimens']} labelled specimens ({report['answered']} "
          "answered); metrics.json")
  for error in rejects.errors:
    print(f"skipped: {error}", file=sys.stderr)
  return fields.exit_code(rejects)


def run():
  cli.run(main, SECTIONS, __doc__,
          interrupted="nothing half-written was published")


if __name__ == "__main__":
  run()
