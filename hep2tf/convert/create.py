"""The local conversion: source -> splits -> balance -> dihedral copies -> records.

`create_records` is the library behind `python -m hep2tf.create_records` (and the
Beam pipeline's launcher shares its helpers): it reads the source layout
(`hep2tf.data.sources`), makes the splits (`hep2tf.data.splits`) and hands the
example table to `hep2tf.convert.writer`. With the default dataset it first draws
the synthetic HEp-2 set (`hep2tf.data.synth`). `source_options`, `parse_image_size`
and `parse_percentiles` turn the converter's flags into its arguments;
`report_outcome` prints what a conversion wrote and returns the exit code
(hep2tf.errors: 0 done; 2 bad input, nothing published; 3 done, some inputs skipped).
"""

from __future__ import annotations

import os
import sys

from absl import logging

from hep2tf import errors
from hep2tf import storage
from hep2tf.convert import metadata
from hep2tf.convert import writer
from hep2tf.data import images
from hep2tf.data import intensity
from hep2tf.data import sources
from hep2tf.data import splits
from hep2tf.data import synth
from hep2tf.data.records import REJECTS

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
                   ) -> tuple[metadata.WriteSummary, errors.Rejects]:
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
