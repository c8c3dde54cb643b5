"""The local conversion and the converter's flags.

`create_records(config)` is the library behind `python -m hep2tf.create_records`:
`plan.prepare_examples` reads the source layout (drawing the synthetic HEp-2 set for
the default dataset), makes the splits and the copies, and `writer.write_records`
writes the records folder. `config_from_flags` turns the converter's flags (shared
with `python -m hep2tf.beam_pipeline`) into a `plan.ConvertConfig`, with
`source_options`, `parse_image_size` and `parse_percentiles`; `report_outcome`
prints what a conversion wrote and returns the exit code (hep2tf.errors: 0 done;
2 bad input, nothing published; 3 done, some inputs skipped).
"""

from __future__ import annotations

import sys

from hep2tf import errors
from hep2tf.convert import metadata
from hep2tf.convert import plan
from hep2tf.convert import writer
from hep2tf.data import fields, intensity
from hep2tf.data.records import REJECTS


_NAMED_OPTIONS = {"csv_path": "csv_path", "path_column": "path_column",
                  "label_column": "label_column", "group_column": "group_column",
                  "split_column": "split_column", "separator": "csv_separator"}


def source_options(flag_values) -> dict:
  """The layout's options from the flags: the named ones plus --layout_option.

  Raises InputError for a --layout_option without '=' or one that repeats a key.
  """
  options = {key: flag_values[flag].value for key, flag in _NAMED_OPTIONS.items()}
  given = fields.given_flags(flag_values)
  if flag_values.dataset == "fields":
    options["config"] = fields.FieldsConfig(**given)
  elif given:
    raise errors.InputError(f"--{', --'.join(given)} apply to --dataset=fields only")
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


def config_from_flags(flag_values) -> plan.ConvertConfig:
  """The converter's flags (hep2tf/create_records.py) as a ConvertConfig.

  Raises InputError for a bad --layout_option, --image_size or
  --rescale_percentiles.
  """
  f = flag_values
  return plan.ConvertConfig(
      f.dataset, f.data_dir, source_options=source_options(f),
      output_dir=f.output_dir, name=f.name, overwrite=f.overwrite,
      synth_num_images=f.synth_num_images,
      synth_num_specimens=f.synth_num_specimens, synth_seed=f.synth_seed,
      synth_profile=f.synth_profile, validation_fraction=f.validation_fraction,
      test_fraction=f.test_fraction, group_split=f.group_split,
      small_groups=f.small_groups, balance=f.balance,
      augment_copies=f.augment_copies, seed=f.seed,
      image_size=parse_image_size(f.image_size), resize=f.resize,
      apply_mask=f.apply_mask, max_megapixels=f.max_megapixels,
      intensity_mode=f.intensity,
      percentiles=parse_percentiles(f.rescale_percentiles),
      num_workers=f.num_workers, num_shards=f.num_shards, on_error=f.on_error)


def create_records(config: plan.ConvertConfig
                   ) -> tuple[metadata.WriteSummary, errors.Rejects]:
  """Source -> splits -> balance -> dihedral copies -> records folder.

  Returns the writer's summary and what was skipped. Raises InputError for bad
  input (nothing is published then).
  """
  prepared = plan.prepare_examples(config)
  return writer.write_records(prepared), prepared.rejects


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
