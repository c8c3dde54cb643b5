"""Draws the synthetic HEp-2 set (hep2tf.data.synth) into a folder.

  python -m hep2tf.synth --output_dir=data/synth_hep2 --num_images=13596 --seed=0
  python -m hep2tf.synth --profile=stress --num_images=3000 --output_dir=data/stress
  python -m hep2tf.synth --layout=icpr2012 --num_images=720 --output_dir=data/icpr2012

--layout writes the cells in another public layout (icpr2012, cnmc, binary:
hep2tf/data/synth/layouts.py), stand-ins for sets hep2tf reads but cannot ship.

A folder that already holds the same ICPR 2014-layout set is left as it is.
"""

from __future__ import annotations

import pathlib
import sys
from typing import Sequence

from absl import app
from absl import flags

from hep2tf import errors
from hep2tf.config import cli, core
from hep2tf.config.convert import SynthConfig
from hep2tf.data import synth
from hep2tf.data.synth import layouts


# SynthConfig's fields (hep2tf/config/convert.py).
SECTIONS = (SynthConfig,)


def define_flags() -> None:
  """Defines the command-line flags; called by `run` only, so importing this module
  (e.g. from create_records, which has flags of the same names) defines none."""
  core.define_flags(SECTIONS)


FLAGS = flags.FLAGS


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    print(_write(pathlib.Path(FLAGS.output_dir)))
  except (FileExistsError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(errors.EXIT_INPUT_ERROR)


def _write(folder: pathlib.Path) -> str:
  """Writes the set the flags ask for; returns what to print."""
  if FLAGS.layout != "icpr2014":
    layouts.write_layout(folder, FLAGS.layout, FLAGS.num_images, FLAGS.seed,
                         FLAGS.image_size, FLAGS.overwrite)
    return (f"{folder}: wrote {FLAGS.num_images} synthetic cells in the "
            f"{FLAGS.layout} layout")
  was_there = synth.matches(folder, FLAGS.num_images, FLAGS.seed, FLAGS.image_size,
                            FLAGS.num_specimens, FLAGS.profile)
  csv_path = synth.generate(folder, FLAGS.num_images, FLAGS.seed, FLAGS.image_size,
                            FLAGS.num_specimens, FLAGS.num_workers, FLAGS.overwrite,
                            FLAGS.profile)
  verb = "already holds" if was_there else "wrote"
  counts = ", ".join(f"{k} {v}"
                     for k, v in synth.class_counts(FLAGS.num_images).items())
  return (f"{folder}: {verb} {FLAGS.num_images} synthetic HEp-2 cells ({counts}); "
          f"labels in {csv_path}")


def run() -> None:
  cli.run(main, SECTIONS, __doc__,
          interrupted="nothing was published (the folder is as it was)")


if __name__ == "__main__":
  run()
