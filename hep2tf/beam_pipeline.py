"""Record conversion as an Apache Beam pipeline: python -m hep2tf.beam_pipeline.

The same conversion as `python -m hep2tf.create_records`, for sets too big for one
machine; how the pipeline works is in hep2tf/convert/beam.py.

  python -m hep2tf.beam_pipeline --data_dir=data/synthetic_hep2 \\
      --output_dir=records/synthetic_hep2 -- --runner=DirectRunner \\
      --direct_num_workers=2 --direct_running_mode=multi_processing
  python -m hep2tf.beam_pipeline --data_dir=data/synthetic_hep2 \\
      --output_dir=records/synthetic_hep2 --runner=dask \\
      --dask_address=tcp://scheduler:8786

Flags before `--` are those of `create_records` but --verify (--num_workers only sets
the processes drawing the synthetic set and pre-scanning the sources on the
launcher, and the workers of a local Dask cluster), and --runner / --dask_address;
what follows `--` are Beam pipeline options (--runner, --project, --flink_master,
...). See docs/CLUSTER.md for cluster runners. The source images must be readable
at the same paths on the launcher and on every worker (a shared filesystem).
Install with `pip install -e .[beam]` (`.[dask]` for --runner=dask). Exit codes as
create_records', and 1 when the runner fails (a worker died): nothing published.
"""

from __future__ import annotations

import sys
from typing import Sequence

from absl import flags

from hep2tf.config import cli, core
from hep2tf.config.convert import BeamConfig, ConvertConfig

# The converter's flags (ConvertConfig's fields, as create_records has them) and
# the runner's.
SECTIONS = (ConvertConfig, BeamConfig)
EXIT_PIPELINE_FAILED = 1


def main(argv: Sequence[str]) -> int:
  # absl stops parsing at "--": what follows are Beam's own pipeline options.
  from hep2tf.convert import beam, create, runners

  def convert():
    runner = core.from_flags(BeamConfig, flags.FLAGS)
    args = runners.pipeline_args(runner.runner, runner.dask_address, argv[1:])
    return beam.convert_records(core.from_flags(ConvertConfig, flags.FLAGS), args)

  try:
    return create.convert_and_report(convert)
  except runners.PipelineError as e:
    print(f"error: {e}; nothing was published", file=sys.stderr)
    return EXIT_PIPELINE_FAILED


def run() -> None:
  cli.run(main, SECTIONS, __doc__, interrupted=(
      "nothing was published (the records folder is as it was)"))


if __name__ == "__main__":
  run()
