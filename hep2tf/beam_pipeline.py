"""Record conversion as an Apache Beam pipeline: python -m hep2tf.beam_pipeline.

The same conversion as `python -m hep2tf.create_records`, for sets too big for one
machine; how the pipeline works is in hep2tf/convert/beam.py.

  python -m hep2tf.beam_pipeline --data_dir=data/synthetic_hep2 \\
      --output_dir=records/synthetic_hep2 -- --runner=DirectRunner \\
      --direct_num_workers=2 --direct_running_mode=multi_processing

Flags before `--` are those of `create_records` but --verify (--num_workers only sets
the processes drawing the synthetic set and pre-scanning the sources on the
launcher); what follows
`--` are Beam pipeline options (--runner, --project, --flink_master, ...). See
docs/CLUSTER.md for cluster runners. The source images must be readable at the same
paths on the launcher and on every worker (a shared filesystem). Install with
`pip install -e .[beam]`.
"""

from __future__ import annotations

import sys
from typing import Sequence

from absl import flags

from hep2tf import errors
from hep2tf.config import cli, core
from hep2tf.config.convert import ConvertConfig

# The converter's flags (ConvertConfig's fields, as create_records has them).
SECTIONS = (ConvertConfig,)


def main(argv: Sequence[str]) -> int:
  # absl stops parsing at "--": what follows are Beam's own pipeline options.
  from hep2tf.convert import beam
  from hep2tf.convert import create
  pipeline_args = list(argv[1:]) or list(beam.DIRECT)
  try:
    summary, rejects = beam.convert_records(
        core.from_flags(ConvertConfig, flags.FLAGS), pipeline_args)
  except errors.InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return errors.EXIT_INPUT_ERROR
  return create.report_outcome(summary, rejects)


def run() -> None:
  cli.run(main, SECTIONS, __doc__, interrupted=(
      "nothing was published (the records folder is as it was)"))


if __name__ == "__main__":
  run()
