"""The local conversion and its printed outcome.

`create_records(config)` is the library behind `python -m hep2tf.create_records`:
`plan.prepare_examples` reads the source layout (drawing the synthetic HEp-2 set for
the default dataset), makes the splits and the copies, and `writer.write_records`
writes the records folder. The converter's flags are the fields of
`hep2tf.config.convert.ConvertConfig` (shared with `python -m hep2tf.beam_pipeline`).
`report_outcome` prints what a conversion wrote and returns the exit code
(hep2tf.errors: 0 done; 2 bad input, nothing published; 3 done, some inputs skipped);
`convert_and_report` runs a conversion and does that (both command lines' main).
"""

from __future__ import annotations

import sys
from typing import Callable

from absl import logging

from hep2tf import errors
from hep2tf.convert import metadata
from hep2tf.convert import plan
from hep2tf.convert import stages
from hep2tf.convert import writer
from hep2tf.data.records import REJECTS


def create_records(config: plan.ConvertConfig
                   ) -> tuple[metadata.WriteSummary, errors.Rejects]:
  """Source -> splits -> balance -> dihedral copies -> records folder.

  Returns the writer's summary (its `stages`: CPU and wall seconds per stage) and
  what was skipped. Raises InputError for bad input (nothing is published then).
  """
  timing = stages.Stages()
  with timing.timed("read layout, hash, split"):
    prepared = plan.prepare_examples(config)
  summary = writer.write_records(prepared, timing=timing)
  logging.info("Conversion CPU time by stage: %s", timing.describe())
  return summary, prepared.rejects


def convert_and_report(
    convert: Callable[[], tuple[metadata.WriteSummary, errors.Rejects]]) -> int:
  """Runs `convert` (a conversion returning its summary and rejects) and prints its
  outcome; returns the exit code. Bad input is one line on stderr, exit 2."""
  try:
    summary, rejects = convert()
  except errors.InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return errors.EXIT_INPUT_ERROR
  return report_outcome(summary, rejects)


def report_outcome(summary: metadata.WriteSummary, rejects: errors.Rejects) -> int:
  """Prints where the records are and what is in them; returns the exit code."""
  print(f"Records in {summary.output_dir} ({summary.name}, classes "
        f"{', '.join(summary.class_names)}; image shape {summary.image_shape}):")
  print(summary.table())
  for note in summary.notes:
    print(f"note: {note}")
  if summary.group_disjoint is False:
    print("note: the splits are not known to be specimen/patient/slide-disjoint "
          "(some images have no group, or a group is in two splits); hep2tf.json "
          "says group_disjoint: false")
  print(f"Pixels: {summary.pixels.describe()}")
  for warning in summary.warnings:
    print(f"warning: {warning}", file=sys.stderr)
  for note in summary.split_notes:
    print(f"split note: {note}")
  if len(rejects):
    # A string join, so object-store outputs (gs://...) keep their scheme.
    print(f"{len(rejects)} inputs skipped, listed in "
          f"{str(summary.output_dir).rstrip('/')}/{REJECTS}", file=sys.stderr)
    return errors.EXIT_SKIPPED
  return errors.EXIT_OK
