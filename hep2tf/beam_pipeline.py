"""Record conversion as an Apache Beam pipeline: python -m hep2tf.beam_pipeline.

The same conversion as `python -m hep2tf.create_records`, for sets too big for one
machine; how the pipeline works is in hep2tf/convert/beam.py.

  python -m hep2tf.beam_pipeline --data_dir=data/synthetic_hep2 \\
      --output_dir=records/synthetic_hep2 -- --runner=DirectRunner \\
      --direct_num_workers=2 --direct_running_mode=multi_processing

Flags before `--` are those of `create_records` (--num_workers only sets the processes
drawing the synthetic set); what follows `--` are Beam pipeline options (--runner,
--project, --flink_master, ...). See docs/CLUSTER.md for cluster runners. The source
images must be readable at the same paths on the launcher and on every worker (a
shared filesystem). Install with `pip install -e .[beam]`.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

from absl import app
from absl import flags

from hep2tf import create_records
from hep2tf import errors
from hep2tf.convert import beam
from hep2tf.convert import create
from hep2tf.convert import metadata


def run_conversion(flag_values, pipeline_args: Sequence[str]
                   ) -> tuple[metadata.WriteSummary, errors.Rejects]:
  """create_records' flags plus Beam pipeline options -> records folder."""
  f = flag_values
  options = create.source_options(f)
  source, examples, data_dir, rejects = beam.prepare_examples(
      f.dataset, f.data_dir, name=f.name, source_options=options,
      synth_num_images=f.synth_num_images,
      synth_num_specimens=f.synth_num_specimens, synth_seed=f.synth_seed,
      validation_fraction=f.validation_fraction, test_fraction=f.test_fraction,
      group_split=f.group_split, balance=f.balance,
      augment_copies=f.augment_copies, seed=f.seed, on_error=f.on_error,
      num_workers=f.num_workers or os.cpu_count() or 1)
  output_dir = f.output_dir or os.path.join("records", source.name)
  summary = beam.convert(
      source, examples, output_dir, pipeline_args=pipeline_args, data_dir=data_dir,
      dataset=f.dataset, num_shards=f.num_shards, seed=f.seed,
      overwrite=f.overwrite, on_error=f.on_error,
      image_size=create.parse_image_size(f.image_size), resize=f.resize,
      apply_mask=f.apply_mask, max_megapixels=f.max_megapixels, balance=f.balance,
      augment_copies=f.augment_copies, rejects=rejects,
      intensity_mode=f.intensity,
      percentiles=create.parse_percentiles(f.rescale_percentiles),
      num_workers=f.num_workers or os.cpu_count() or 1)
  return summary, rejects


def main(argv: Sequence[str]) -> int:
  # absl stops parsing at "--": what follows are Beam's own pipeline options.
  pipeline_args = list(argv[1:]) or ["--runner=DirectRunner"]
  if flags.FLAGS.verify:
    raise app.UsageError("--verify: use python -m hep2tf.create_records --verify")
  try:
    summary, rejects = run_conversion(flags.FLAGS, pipeline_args)
  except errors.InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return errors.EXIT_INPUT_ERROR
  return create.report_outcome(summary, rejects)


def run() -> None:
  create_records.define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
