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
"""

from __future__ import annotations

import sys
from typing import Sequence

from absl import app
from absl import flags

from hep2tf import console, errors
from hep2tf.convert import create
from hep2tf.convert import plan
from hep2tf.data import fields
from hep2tf.data import images
from hep2tf.data import intensity
from hep2tf.data import sources
from hep2tf.data import splits
from hep2tf.data import synth
from hep2tf.data.records import Records


def define_flags() -> None:
  """Defines the converter's flags, grouped by stage (plan.ConvertConfig's fields;
  create.config_from_flags maps them)."""
  _define_source_flags()
  _define_split_flags()
  _define_image_flags()
  fields.define_flags(flags.FLAGS)


def _define_source_flags() -> None:
  # Source.
  flags.DEFINE_string("dataset", plan.SYNTHETIC, "Source layout: synthetic, or "
                      f"one of {', '.join(sources.LAYOUTS)}.")
  flags.DEFINE_string("data_dir", None, "Folder of the source dataset (synthetic: "
                      f"where it is generated, default {plan.SYNTHETIC_DIR}).")
  flags.DEFINE_string("csv_path", None, "csv/icpr2014: the table, relative to "
                      "--data_dir (default: found there).")
  flags.DEFINE_string("path_column", None, "csv: column with the image path.")
  flags.DEFINE_string("label_column", None, "csv: column with the class name.")
  flags.DEFINE_string("group_column", None, "csv: column with specimen/patient.")
  flags.DEFINE_string("split_column", None, "csv: column with train/validation/test.")
  flags.DEFINE_string("csv_separator", None, "csv: separator (default: sniffed).")
  flags.DEFINE_multi_string(
      "layout_option", [], "KEY=VALUE: an option of the --dataset layout, e.g. "
      "cnmc: fold_as_split=official|train|fold_0=train,... , include_test=false, "
      "test_csv=PATH; icpr2012: cells_csv=PATH; folder: channels=1; csv: "
      "class_names=a,b. Repeat for more.")
  # Synthetic.
  flags.DEFINE_integer("synth_num_images", plan.DEFAULT_SET_IMAGES,
                       "synthetic: cells to draw (the default set: "
                       f"{plan.DEFAULT_SET_IMAGES:,}; ICPR 2014's size: 13,596).")
  flags.DEFINE_integer("synth_num_specimens", None, "synthetic: specimens (wells) "
                       "to spread the cells over (default: "
                       f"{plan.DEFAULT_SET_SPECIMENS} for the "
                       f"{plan.DEFAULT_SET_IMAGES:,}-cell default set, else ICPR "
                       "2014's 83 scaled to the cells).")
  flags.DEFINE_integer("synth_seed", 0, "synthetic: seed of the drawing.")
  flags.DEFINE_enum("synth_profile", "default", list(synth.PROFILES),
                    "synthetic: default, or stress (specimen shift: its test "
                    "specimens are out of focus, dimmer and noisier; the split "
                    "comes from its folders; into data/ and records/"
                    f"{plan.SYNTHETIC_NAME}_stress).")
  # Output.
  flags.DEFINE_string("output_dir", None, "Records folder (default records/<name>).")
  flags.DEFINE_string("name", None, "Dataset name, snake_case (default: the "
                      f"layout's; {plan.SYNTHETIC_NAME} for synthetic).")
  flags.DEFINE_boolean("overwrite", False, "Replace an existing records folder.")


def _define_split_flags() -> None:
  # Splits, balance, offline augmentation.
  flags.DEFINE_float("validation_fraction", None,
                     "Fraction of all examples for validation when splits are made "
                     f"(default {splits.DEFAULT_VALIDATION_FRACTION}; the synthetic "
                     f"default set: {plan.DEFAULT_SET_FRACTIONS[0]}).")
  flags.DEFINE_float("test_fraction", None,
                     "Fraction of all examples for test when splits are made "
                     f"(default {splits.DEFAULT_TEST_FRACTION}; the synthetic "
                     f"default set: {plan.DEFAULT_SET_FRACTIONS[1]}).")
  flags.DEFINE_boolean("group_split", True, "Keep each specimen/patient in one "
                       "split when groups are known.")
  flags.DEFINE_enum("small_groups", "carve", list(splits.SMALL_GROUP_MODES),
                    "When some class has too few specimens/patients for grouped "
                    "train/validation/test (fewer than 3): carve validation from "
                    "the training cells of training groups (said at conversion and "
                    "recorded in hep2tf.json as not group-disjoint), or fail.")
  flags.DEFINE_enum("balance", "none", list(splits.BALANCE_MODES),
                    "Equal class counts in train by over- or undersampling.")
  flags.DEFINE_integer("augment_copies", 0, "Extra dihedral copies (0..7) of each "
                       "train image, written offline.")
  flags.DEFINE_integer("seed", 0, "Seed of splits, balance, copies and shuffling.")


def _define_image_flags() -> None:
  # Images.
  flags.DEFINE_string("image_size", None, "Resize to 'S' or 'H,W' (default: keep).")
  flags.DEFINE_enum("resize", "pad", list(images.RESIZE_MODES),
                    "pad: keep the aspect ratio, black borders; stretch: do not.")
  flags.DEFINE_boolean("apply_mask", False, "Zero the background outside the mask.")
  flags.DEFINE_float("max_megapixels", images.DEFAULT_MAX_MEGAPIXELS,
                     "Reject images declaring more pixels (decompression bombs).")
  flags.DEFINE_enum("intensity", "keep", list(intensity.INTENSITY_MODES),
                    "keep: lossless (sources deeper than 8 bits stored as 16-bit "
                    "PNG); rescale: 8 bits by the training split's percentiles "
                    "(recorded); rescale_per_image: 8 bits by each image's own.")
  flags.DEFINE_string("rescale_percentiles", "1,99.8", "LOW,HIGH percentiles "
                      "mapped to 0 and 255 by the rescale modes.")
  # Run.
  flags.DEFINE_integer("num_workers", None, "Image loading processes (default: all "
                       "cores).")
  flags.DEFINE_integer("num_shards", None, "Shards per split (default: 8 for big "
                       "splits, fewer for small ones).")
  flags.DEFINE_enum("on_error", "fail", ["fail", "skip"], "On a bad input: stop "
                    "and publish nothing, or skip it and list it in rejects.csv.")
  flags.DEFINE_string("verify", None, "Verify this records folder and exit.")


def main(argv: Sequence[str]) -> int:
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
  try:
    summary, rejects = create.create_records(create.config_from_flags(FLAGS))
  except errors.InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return errors.EXIT_INPUT_ERROR
  return create.report_outcome(summary, rejects)


def run() -> None:
  define_flags()
  console.run(main, interrupted=(
      "nothing was published (the records folder is as it was)"))


if __name__ == "__main__":
  run()
