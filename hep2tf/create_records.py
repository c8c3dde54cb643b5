"""Convert a source dataset into sharded TFRecords: python -m hep2tf.create_records.

With no flags it builds the embedded default: it draws the synthetic HEp-2 set into
data/synthetic_hep2 (reused when it already matches) and writes records/synthetic_hep2.

  python -m hep2tf.create_records
  python -m hep2tf.create_records --dataset=icpr2014 --data_dir=/data/icpr2014 \\
      --balance=oversample --augment_copies=3 --image_size=96
  python -m hep2tf.create_records --dataset=csv --data_dir=/data/cells \\
      --csv_path=cells.csv --path_column=file --label_column=class \\
      --group_column=patient
  python -m hep2tf.create_records --dataset=cnmc --data_dir=/data/C-NMC_Leukemia \\
      --layout_option fold_as_split=train --validation_fraction=0
  python -m hep2tf.create_records --dataset=fields --data_dir=/data/fields \\
      --cell_size=78 --edge_cells=drop
  python -m hep2tf.create_records --verify=records/synthetic_hep2

Exit codes (hep2tf.errors): 0 done; 2 bad input, nothing published (the reason on
stderr); 3 done, but some inputs were skipped (see rejects.csv beside the records).
The flags are ConvertConfig's fields (hep2tf/config/convert.py, where their help is);
`--help` lists them.
"""

from __future__ import annotations

import sys
from typing import Sequence

from absl import app
from absl import flags

from hep2tf import errors
from hep2tf.config import cli, core
from hep2tf.config.convert import ConvertConfig, VerifyConfig


# The converter's flags: every field of ConvertConfig (hep2tf/config/convert.py),
# and --verify.
SECTIONS = (ConvertConfig, VerifyConfig)


def define_flags() -> None:
  """Defines the converter's flags on the global FLAGS (once; importing this module
  defines none)."""
  core.define_flags(SECTIONS)


def main(argv: Sequence[str]) -> int:
  from hep2tf.convert import create
  from hep2tf.data.records import Records
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  FLAGS = flags.FLAGS
  if FLAGS.verify:
    try:
      problems = Records.open(FLAGS.verify).verify()
    except errors.InputError as e:
      problems = [str(e)]
    for problem in problems:
      print(problem, file=sys.stderr)
    print(f"{FLAGS.verify}: {'OK' if not problems else f'{len(problems)} problems'}")
    return errors.EXIT_INPUT_ERROR if problems else errors.EXIT_OK
  return create.convert_and_report(
      lambda: create.create_records(core.from_flags(ConvertConfig, FLAGS)))


def run() -> None:
  cli.run(main, SECTIONS, __doc__, interrupted=(
      "nothing was published (the records folder is as it was)"))


if __name__ == "__main__":
  run()
