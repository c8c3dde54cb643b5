"""Convert a source dataset into sharded TFRecords: python -m hep2tf.create_records.

With no flags it builds the embedded default: it draws the synthetic HEp-2 set into
data/synthetic_hep2 (reused when it already matches) and writes records/synthetic_hep2.

  python -m hep2tf.create_records
  python -m hep2tf.create_records --dataset=icpr2014 --data_dir=/data/icpr2014 \\
      --balance=oversample --augment_copies=3 --image_size=96
  python -m hep2tf.create_records --dataset=csv --data_dir=/data/cells \\
      --csv_path=cells.csv --path_column=file --label_column=class --group_column=patient
  python -m hep2tf.create_records --dataset=cnmc --data_dir=/data/C-NMC_Leukemia \\
      --layout_option fold_as_split=train --validation_fraction=0
  python -m hep2tf.create_records --verify=records/synthetic_hep2

Exit codes (hep2tf.errors): 0 done; 2 bad input, nothing published (the reason on
stderr); 3 done, but some inputs were skipped (see rejects.csv beside the records).
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

from absl import app
from absl import flags
from absl import logging

from hep2tf import errors
from hep2tf import images
from hep2tf import intensity
from hep2tf import sources
from hep2tf import splits
from hep2tf import storage
from hep2tf import synth
from hep2tf import writer

SYNTHETIC = "synthetic"
SYNTHETIC_NAME = "synthetic_hep2"
SYNTHETIC_DIR = "data/synthetic_hep2"
SYNTHETIC_IMAGE_SIZE = 78
# The embedded default set (synthetic, no size flag): sized for the default job
# (configs/cnn.flags, 10 minutes on the slowest CPU class) while its test split,
# grouped by specimen, keeps >= 2,000 cells and >= 2 specimens of every class.
# ICPR 2014's proportion (83 specimens for 13,596 cells) would give Golgi, the rarest
# class, 2 specimens here; 110 (about 65 cells each) give it 6, and a 30% test split
# takes at least two of them.
DEFAULT_SET_IMAGES = 7200
DEFAULT_SET_SPECIMENS = 110
DEFAULT_SET_FRACTIONS = (0.14, 0.30)  # validation, test


def define_flags() -> None:
  """Defines the converter's flags, grouped by stage."""
  # Source.
  flags.DEFINE_string("dataset", SYNTHETIC, "Source layout: synthetic, or one of "
                      f"{', '.join(sources.LAYOUTS)}.")
  flags.DEFINE_string("data_dir", None, "Folder of the source dataset (synthetic: "
                      f"where it is generated, default {SYNTHETIC_DIR}).")
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
  flags.DEFINE_integer("synth_num_images", DEFAULT_SET_IMAGES,
                       "synthetic: cells to draw (the default set: "
                       f"{DEFAULT_SET_IMAGES:,}; ICPR 2014's size: 13,596).")
  flags.DEFINE_integer("synth_num_specimens", None, "synthetic: specimens (wells) "
                       "to spread the cells over (default: "
                       f"{DEFAULT_SET_SPECIMENS} for the {DEFAULT_SET_IMAGES:,}-cell "
                       "default set, else ICPR 2014's 83 scaled to the cells).")
  flags.DEFINE_integer("synth_seed", 0, "synthetic: seed of the drawing.")
  flags.DEFINE_enum("synth_profile", "default", list(synth.PROFILES),
                    "synthetic: default, or stress (specimen shift: its test "
                    "specimens are out of focus, dimmer and noisier; the split "
                    "comes from its folders; into data/ and records/"
                    f"{SYNTHETIC_NAME}_stress).")
  # Output.
  flags.DEFINE_string("output_dir", None, "Records folder (default records/<name>).")
  flags.DEFINE_string("name", None, "Dataset name, snake_case (default: the "
                      f"layout's; {SYNTHETIC_NAME} for synthetic).")
  flags.DEFINE_boolean("overwrite", False, "Replace an existing records folder.")
  # Splits, balance, offline augmentation.
  flags.DEFINE_float("validation_fraction", None,
                     "Fraction of all examples for validation when splits are made "
                     f"(default {splits.DEFAULT_VALIDATION_FRACTION}; the synthetic "
                     f"default set: {DEFAULT_SET_FRACTIONS[0]}).")
  flags.DEFINE_float("test_fraction", None,
                     "Fraction of all examples for test when splits are made "
                     f"(default {splits.DEFAULT_TEST_FRACTION}; the synthetic "
                     f"default set: {DEFAULT_SET_FRACTIONS[1]}).")
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


_NAMED_OPTIONS = {"csv_path": "csv_path", "path_column": "path_column",
                  "label_column": "label_column", "group_column": "group_column",
                  "split_column": "split_column", "separator": "csv_separator"}


def source_options(flag_values) -> dict:
  """The layout's options from the flags: the named ones plus --layout_option.

  Raises InputError for a --layout_option without '=' or one that repeats a key.
  """
  options = {key: flag_values[flag].value for key, flag in _NAMED_OPTIONS.items()}
  for text in flag_values.layout_option or []:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
      raise errors.InputError(f"--layout_option must read KEY=VALUE, got {text!r}")
    if options.get(key) is not None:
      raise errors.InputError(f"--layout_option {key} is given twice (or also by "
                              f"--{_NAMED_OPTIONS.get(key, key)})")
    options[key] = value.strip()
  return options


def parse_image_size(text: str | None) -> tuple[int, int] | None:
  """'96' -> (96, 96); '96,128' -> (96, 128) as (height, width); None -> None."""
  if not text:
    return None
  try:
    parts = [int(p) for p in text.replace("x", ",").split(",")]
  except ValueError:
    parts = []
  if len(parts) not in (1, 2) or min(parts) < 1:
    raise errors.InputError(f"--image_size must be 'S' or 'H,W', got {text!r}")
  return (parts[0], parts[-1])


def default_set_options(dataset: str, synth_num_images: int, synth_profile: str,
                        synth_num_specimens: int | None,
                        validation_fraction: float | None,
                        test_fraction: float | None
                        ) -> tuple[int | None, float, float]:
  """(synth_num_specimens, validation_fraction, test_fraction), the ones left None
  filled in: the default set's (DEFAULT_SET_*) for the synthetic set of
  DEFAULT_SET_IMAGES cells, the generator's rule and splits' defaults otherwise."""
  default_set = (dataset == SYNTHETIC and synth_profile == "default"
                 and synth_num_images == DEFAULT_SET_IMAGES)
  if default_set:
    fractions = DEFAULT_SET_FRACTIONS
    if synth_num_specimens is None:
      synth_num_specimens = DEFAULT_SET_SPECIMENS
  else:
    fractions = (splits.DEFAULT_VALIDATION_FRACTION, splits.DEFAULT_TEST_FRACTION)
  if validation_fraction is None:
    validation_fraction = fractions[0]
  if test_fraction is None:
    test_fraction = fractions[1]
  return synth_num_specimens, validation_fraction, test_fraction


def create_records(dataset: str = SYNTHETIC, data_dir: str | None = None, *,
                   output_dir: str | None = None, name: str | None = None,
                   overwrite: bool = False, source_options: dict | None = None,
                   synth_num_images: int = DEFAULT_SET_IMAGES,
                   synth_num_specimens: int | None = None,
                   synth_seed: int = 0, synth_profile: str = "default",
                   validation_fraction: float | None = None,
                   test_fraction: float | None = None,
                   group_split: bool = True, small_groups: str = "carve",
                   balance: str = "none",
                   augment_copies: int = 0, seed: int = 0,
                   image_size: tuple[int, int] | None = None, resize: str = "pad",
                   apply_mask: bool = False,
                   max_megapixels: float = images.DEFAULT_MAX_MEGAPIXELS,
                   num_workers: int | None = None, num_shards: int | None = None,
                   on_error: str = "fail", progress: bool = True,
                   intensity_mode: str = "keep",
                   percentiles=intensity.DEFAULT_PERCENTILES
                   ) -> tuple[writer.WriteSummary, errors.Rejects]:
  """Source -> splits -> balance -> dihedral copies -> records folder.

  Args mirror the command-line flags; `source_options` go to `sources.read_source`
  (e.g. csv_path, path_column). Returns the writer's summary and what was skipped.
  Raises InputError for bad input (nothing is published then).
  """
  num_workers = num_workers or os.cpu_count() or 1
  synth_num_specimens, validation_fraction, test_fraction = default_set_options(
      dataset, synth_num_images, synth_profile, synth_num_specimens,
      validation_fraction, test_fraction)
  rejects = errors.Rejects()
  layout = dataset
  if dataset == SYNTHETIC:
    suffix = "" if synth_profile == "default" else f"_{synth_profile}"
    data_dir = data_dir or SYNTHETIC_DIR + suffix
    name = name or SYNTHETIC_NAME + suffix
    if not synth.matches(data_dir, synth_num_images, synth_seed,
                         SYNTHETIC_IMAGE_SIZE, synth_num_specimens,
                         profile=synth_profile):
      logging.info("Drawing %d synthetic cells into %s", synth_num_images, data_dir)
      synth.generate(data_dir, synth_num_images, seed=synth_seed,
                     image_size=SYNTHETIC_IMAGE_SIZE,
                     num_specimens=synth_num_specimens, num_workers=num_workers,
                     overwrite=True, profile=synth_profile)
    layout = "icpr2014"
  elif not data_dir and dataset == "csv" and (source_options or {}).get("csv_path"):
    # --csv_path alone: the paths in it are relative to its folder.
    data_dir = os.path.dirname(os.path.abspath(source_options["csv_path"]))
  elif not data_dir:
    raise errors.InputError(f"--data_dir is needed for --dataset={dataset}")
  source = sources.read_source(layout, data_dir, on_error=on_error, rejects=rejects,
                               name=name, **(source_options or {}))
  output_dir = output_dir or os.path.join("records", source.name)
  if storage.exists(output_dir) and not overwrite:
    # Fail before hashing and splitting; the writer checks again before publishing.
    raise errors.InputError("the records folder exists; pass --overwrite to replace "
                            "it", file=output_dir)
  examples = splits.assign_splits(
      source.examples, validation_fraction=validation_fraction,
      test_fraction=test_fraction, seed=seed, by_group=group_split,
      on_error=on_error, rejects=rejects, small_groups=small_groups)
  split_notes = list(examples.attrs.get("split_notes", []))
  examples = splits.balance(examples, balance, seed=seed)
  examples = splits.add_dihedral_copies(examples, augment_copies, seed=seed)
  summary = writer.write_records(
      source, examples, output_dir, num_shards=num_shards, num_workers=num_workers,
      seed=seed, overwrite=overwrite, on_error=on_error, image_size=image_size,
      resize=resize, apply_mask=apply_mask, progress=progress,
      max_megapixels=max_megapixels, balance=balance,
      augment_copies=augment_copies, data_dir=data_dir, dataset=dataset,
      rejects=rejects, intensity_mode=intensity_mode, percentiles=percentiles,
      split_notes=split_notes)
  return summary, rejects


def parse_percentiles(text: str) -> tuple[float, float]:
  """'1,99.8' -> (1.0, 99.8); InputError for anything else."""
  try:
    pair = tuple(float(p) for p in text.split(","))
    if len(pair) != 2:
      raise ValueError("two numbers")
    return intensity.check_mode("keep", pair)
  except ValueError as e:
    raise errors.InputError(f"--rescale_percentiles must be 'LOW,HIGH' with "
                            f"0 <= LOW < HIGH <= 100, got {text!r} ({e})") from None


def main(argv: Sequence[str]) -> int:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  FLAGS = flags.FLAGS
  if FLAGS.verify:
    problems = writer.verify_records(FLAGS.verify)
    for problem in problems:
      print(problem, file=sys.stderr)
    print(f"{FLAGS.verify}: {'OK' if not problems else f'{len(problems)} problems'}")
    return errors.EXIT_INPUT_ERROR if problems else errors.EXIT_OK
  try:
    options = source_options(FLAGS)
    summary, rejects = create_records(
        FLAGS.dataset, FLAGS.data_dir, output_dir=FLAGS.output_dir, name=FLAGS.name,
        overwrite=FLAGS.overwrite, source_options=options,
        synth_num_images=FLAGS.synth_num_images,
        synth_num_specimens=FLAGS.synth_num_specimens, synth_seed=FLAGS.synth_seed,
        synth_profile=FLAGS.synth_profile,
        validation_fraction=FLAGS.validation_fraction,
        test_fraction=FLAGS.test_fraction, group_split=FLAGS.group_split,
        small_groups=FLAGS.small_groups,
        balance=FLAGS.balance, augment_copies=FLAGS.augment_copies, seed=FLAGS.seed,
        image_size=parse_image_size(FLAGS.image_size), resize=FLAGS.resize,
        apply_mask=FLAGS.apply_mask, max_megapixels=FLAGS.max_megapixels,
        num_workers=FLAGS.num_workers, num_shards=FLAGS.num_shards,
        on_error=FLAGS.on_error, intensity_mode=FLAGS.intensity,
        percentiles=parse_percentiles(FLAGS.rescale_percentiles))
  except errors.InputError as e:
    print(f"error: {e}", file=sys.stderr)
    return errors.EXIT_INPUT_ERROR
  return report_outcome(summary, rejects)


def report_outcome(summary: writer.WriteSummary, rejects: errors.Rejects) -> int:
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
          f"{str(summary.output_dir).rstrip('/')}/{writer.REJECTS}", file=sys.stderr)
    return errors.EXIT_SKIPPED
  return errors.EXIT_OK


def run() -> None:
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
