"""Draws the synthetic HEp-2 set (hep2tf.data.synth) into a folder.

  python -m hep2tf.synth --output_dir=data/synth_hep2 --num_images=13596 --seed=0
  python -m hep2tf.synth --profile=stress --num_images=3000 --output_dir=data/stress

A folder that already holds the same set is left as it is.
"""

from __future__ import annotations

import pathlib
from typing import Sequence

from absl import app
from absl import flags

from hep2tf import console
from hep2tf.data import synth


def define_flags() -> None:
  """Defines the command-line flags; called by `run` only, so importing this module
  (e.g. from create_records, which has flags of the same names) defines none."""
  flags.DEFINE_string("output_dir", "data/synth_hep2", "Folder to write the set into.")
  flags.DEFINE_integer("num_images", synth.DEFAULT_NUM_IMAGES,
                       "Cells to draw (13,596 as in ICPR 2014 Task 1).")
  flags.DEFINE_integer("seed", 0, "Random seed; the same seed gives the same bytes.")
  flags.DEFINE_integer("image_size", 78, "Side of the square images, pixels.")
  flags.DEFINE_integer("num_specimens", None,
                       "Specimens (wells); default scales 83 to --num_images.")
  flags.DEFINE_integer("num_workers", 1, "Processes drawing in parallel.")
  flags.DEFINE_bool("overwrite", False, "Replace an existing, different output_dir.")
  flags.DEFINE_enum("profile", "default", list(synth.PROFILES),
                    "default: the embedded set; stress: specimen shift, with "
                    "training/ validation/ test/ folders whose test specimens are "
                    "out of focus, dimmer and noisier (small: --num_images=3000).")


FLAGS = flags.FLAGS


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  folder = pathlib.Path(FLAGS.output_dir)
  was_there = synth.matches(folder, FLAGS.num_images, FLAGS.seed, FLAGS.image_size,
                            FLAGS.num_specimens, FLAGS.profile)
  csv_path = synth.generate(folder, FLAGS.num_images, FLAGS.seed, FLAGS.image_size,
                            FLAGS.num_specimens, FLAGS.num_workers, FLAGS.overwrite,
                            FLAGS.profile)
  verb = "already holds" if was_there else "wrote"
  counts = ", ".join(f"{k} {v}"
                     for k, v in synth.class_counts(FLAGS.num_images).items())
  print(f"{folder}: {verb} {FLAGS.num_images} synthetic HEp-2 cells ({counts}); "
        f"labels in {csv_path}")


def run() -> None:
  define_flags()
  console.run(main, interrupted="nothing was published (the folder is as it was)")


if __name__ == "__main__":
  run()
