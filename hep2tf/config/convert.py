"""The convert section: every option of a conversion (`python -m
hep2tf.create_records`, `python -m hep2tf.beam_pipeline`), one field per flag; and
BeamConfig, the runner that `beam_pipeline` converts on.

ConvertConfig is what both writers take (hep2tf/convert/plan.py); its fields are the
converter's flags, with the same names, so a flag and the field it sets cannot drift.
`source_options` gathers the layout's options (the csv flags and --layout_option)
for `sources.read_source`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import ClassVar

from hep2tf import errors
from hep2tf.config.core import TextParser, flag, setting
from hep2tf.data import fields as fields_layout
from hep2tf.data import images, sources, splits, synth
from hep2tf.data.synth import layouts as synth_layouts
from hep2tf.data import intensity as intensity_lib

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
ON_ERROR = ("fail", "skip")
RUNNERS = ("auto", "direct", "dask")    # hep2tf.convert.runners.pipeline_args


class ImageSizeParser(TextParser):
  """'96' -> (96, 96); '96,128' (or '96x128') -> (height, width); '' -> None."""

  def parse(self, argument):
    if argument is None or argument == "":
      return None
    if isinstance(argument, (tuple, list)):
      parts = list(argument)
    else:
      try:
        parts = [int(p) for p in str(argument).replace("x", ",").split(",")]
      except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1:
      raise ValueError(f"expected 'S' or 'H,W', got {argument!r}")
    return (int(parts[0]), int(parts[-1]))

  def serialize(self, value) -> str:
    return "" if value is None else f"{value[0]},{value[1]}"


class PercentilesParser(TextParser):
  """'1,99.8' -> (1.0, 99.8), with 0 <= LOW < HIGH <= 100."""

  def parse(self, argument):
    parts = (argument if isinstance(argument, (tuple, list))
             else str(argument).split(","))
    try:
      pair = tuple(float(p) for p in parts)
      if len(pair) != 2:
        raise ValueError("two numbers")
      return intensity_lib.check_mode("keep", pair)
    except ValueError as e:
      raise ValueError(f"expected 'LOW,HIGH' with 0 <= LOW < HIGH <= 100, got "
                       f"{argument!r} ({e})") from None

  def serialize(self, value) -> str:
    return f"{value[0]:g},{value[1]:g}"


# The layout options that have flags of their own: option -> field.
NAMED_OPTIONS = {"csv_path": "csv_path", "path_column": "path_column",
                 "label_column": "label_column", "group_column": "group_column",
                 "split_column": "split_column", "separator": "csv_separator"}


def _fields_options() -> type:
  """The fields layout's options (`data.fields.FieldsConfig`, which declares them) as
  flags of the convert section. Each defaults to None, so a flag not given takes
  FieldsConfig's default (or, for predict --fields, the run's cell size), and the
  converter can name the fields options given to another layout."""
  specs = [(f.name, type(f.default) | None,
            flag(None, f"{f.metadata['help']} (default {f.default})"))
           for f in dataclasses.fields(fields_layout.FieldsConfig)]

  def given(self) -> dict:
    """The fields options that were set (name -> value)."""
    return {name: getattr(self, name) for name, _, _ in specs
            if getattr(self, name) is not None}

  options = dataclasses.make_dataclass(
      "FieldsOptions", specs, frozen=True, kw_only=True,
      namespace={"SECTION": "fields", "given": given,
                 "__doc__": "The fields layout's options (create_records "
                            "--dataset=fields, predict --fields)."})
  options.__module__ = __name__
  return options


FieldsOptions = _fields_options()


@dataclasses.dataclass(frozen=True)
class ConvertSection:
  """Every option of a conversion but the fields layout's; each field is the
  converter's flag of that name."""

  SECTION: ClassVar[str] = "convert"

  # Source: a layout of sources.LAYOUTS, or "synthetic" (drawn into data_dir).
  dataset: str = flag(SYNTHETIC, "Source layout: synthetic, or one of "
                      f"{', '.join(sources.LAYOUTS)}.")
  data_dir: str | None = flag(None, "Folder of the source dataset (synthetic: where "
                              f"it is generated, default {SYNTHETIC_DIR}).")
  _: dataclasses.KW_ONLY
  csv_path: str | None = flag(None, "csv/icpr2014: the table, relative to --data_dir "
                              "(default: found there).")
  path_column: str | None = flag(None, "csv: column with the image path.")
  label_column: str | None = flag(None, "csv: column with the class name.")
  group_column: str | None = flag(None, "csv: column with specimen/patient.")
  split_column: str | None = flag(None, "csv: column with train/validation/test.")
  csv_separator: str | None = flag(None, "csv: separator (default: sniffed).")
  layout_option: tuple[str, ...] = flag(
      (), "KEY=VALUE: an option of the --dataset layout, e.g. cnmc: "
      "fold_as_split=official|train|fold_0=train,... , include_test=false, "
      "test_csv=PATH; icpr2012: cells_csv=PATH; folder: channels=1; csv: "
      "class_names=a,b. Repeat for more.")
  # The synthetic set (dataset="synthetic").
  synth_num_images: int = flag(
      DEFAULT_SET_IMAGES, f"synthetic: cells to draw (the default set: "
      f"{DEFAULT_SET_IMAGES:,}; ICPR 2014's size: 13,596).")
  synth_num_specimens: int | None = flag(
      None, "synthetic: specimens (wells) to spread the cells over (default: "
      f"{DEFAULT_SET_SPECIMENS} for the {DEFAULT_SET_IMAGES:,}-cell default set, else "
      "ICPR 2014's 83 scaled to the cells).")
  synth_seed: int = flag(0, "synthetic: seed of the drawing.")
  synth_profile: str = flag(
      "default", "synthetic: default, or stress (specimen shift: its test specimens "
      "are out of focus, dimmer and noisier; the split comes from its folders; into "
      f"data/ and records/{SYNTHETIC_NAME}_stress).", choices=synth.PROFILES)
  # Output: the records folder, replaced only on overwrite.
  output_dir: str | None = flag(None, "Records folder (default records/<name>).")
  name: str | None = flag(None, "Dataset name, snake_case (default: the layout's; "
                          f"{SYNTHETIC_NAME} for synthetic).")
  overwrite: bool = flag(False, "Replace an existing records folder.")
  # Splits (None: see plan.default_set_options), balance, offline dihedral copies.
  validation_fraction: float | None = flag(
      None, "Fraction of all examples for validation when splits are made (default "
      f"{splits.DEFAULT_VALIDATION_FRACTION}; the synthetic default set: "
      f"{DEFAULT_SET_FRACTIONS[0]}).")
  test_fraction: float | None = flag(
      None, "Fraction of all examples for test when splits are made (default "
      f"{splits.DEFAULT_TEST_FRACTION}; the synthetic default set: "
      f"{DEFAULT_SET_FRACTIONS[1]}).")
  group_split: bool = flag(True, "Keep each specimen/patient in one split when groups "
                           "are known.")
  small_groups: str = flag(
      "carve", "When some class has too few specimens/patients for grouped "
      "train/validation/test (fewer than 3): carve validation from the training "
      "cells of training groups (said at conversion and recorded in hep2tf.json as "
      "not group-disjoint), or fail.", choices=splits.SMALL_GROUP_MODES)
  balance: str = flag("none", "Equal class counts in train by over- or "
                      "undersampling.", choices=splits.BALANCE_MODES)
  augment_copies: int = flag(0, "Extra dihedral copies (0..7) of each train image, "
                             "written offline.")
  seed: int = flag(0, "Seed of splits, balance, copies and shuffling.")
  # Images: see images.load_image and intensity.
  image_size: tuple[int, int] | None = flag(
      None, "Resize to 'S' or 'H,W' (default: keep).", parser=ImageSizeParser())
  resize: str = flag("pad", "pad: keep the aspect ratio, black borders; stretch: do "
                     "not.", choices=images.RESIZE_MODES)
  apply_mask: bool = flag(False, "Zero the background outside the mask.")
  max_megapixels: float = flag(images.DEFAULT_MAX_MEGAPIXELS, "Reject images "
                               "declaring more pixels (decompression bombs).")
  intensity: str = flag(
      "keep", "keep: lossless (sources deeper than 8 bits stored as 16-bit PNG); "
      "rescale: 8 bits by the training split's percentiles (recorded); "
      "rescale_per_image: 8 bits by each image's own.",
      choices=intensity_lib.INTENSITY_MODES)
  rescale_percentiles: tuple[float, float] = flag(
      intensity_lib.DEFAULT_PERCENTILES, "LOW,HIGH percentiles mapped to 0 and 255 "
      "by the rescale modes.", parser=PercentilesParser())
  # Run: loading processes (None: all cores), shards per split (None: by size),
  # on a bad input "fail" (publish nothing) or "skip" (list it in rejects.csv).
  num_workers: int | None = flag(None, "Image loading processes (default: all "
                                 "cores).")
  num_shards: int | None = flag(None, "Shards per split (default: 8 for big splits, "
                                "fewer for small ones).")
  on_error: str = flag("fail", "On a bad input: stop and publish nothing, or skip it "
                       "and list it in rejects.csv.", choices=ON_ERROR)
  progress: bool = setting(True, "Show a progress bar while writing.")

  @property
  def workers(self) -> int:
    """Processes that load images (and draw the synthetic set)."""
    return self.num_workers or os.cpu_count() or 1


@dataclasses.dataclass(frozen=True)
class ConvertConfig(FieldsOptions, ConvertSection):
  """Every option of a conversion (what both writers take): the convert section and
  the fields layout's options."""

  SECTIONS: ClassVar[tuple[type, ...]] = (ConvertSection, FieldsOptions)

  @property
  def source_options(self) -> dict:
    """The layout's options for sources.read_source: the named ones, each
    --layout_option KEY=VALUE, and for --dataset=fields its FieldsConfig.
    InputError for a --layout_option without '=' or one that repeats a key, a fields
    option given to another layout, or a bad fields option."""
    options = {key: getattr(self, name) for key, name in NAMED_OPTIONS.items()}
    given = self.given()
    if self.dataset == "fields":
      options["config"] = fields_layout.FieldsConfig(**given)
    elif given:
      raise errors.InputError(f"--{', --'.join(given)} apply to --dataset=fields only")
    for text in self.layout_option:
      key, sep, value = text.partition("=")
      key = key.strip()
      if not sep or not key:
        raise errors.InputError(f"--layout_option must read KEY=VALUE, got {text!r}")
      if options.get(key) is not None:
        raise errors.InputError(f"--layout_option {key} is given twice (or also by "
                                f"--{NAMED_OPTIONS.get(key, key)})")
      options[key] = value.strip()
    return options


@dataclasses.dataclass(frozen=True)
class VerifyConfig:
  """`create_records --verify=DIR`: check a records folder instead of converting."""

  SECTION: ClassVar[str] = "convert"

  verify: str | None = flag(None, "Verify this records folder and exit.")


@dataclasses.dataclass(frozen=True)
class BeamConfig:
  """`python -m hep2tf.beam_pipeline`: the Beam runner (other Beam options follow
  `--`)."""

  SECTION: ClassVar[str] = "beam"

  runner: str = flag(
      "auto", "auto: the --runner among the Beam options after `--` (the "
      "DirectRunner when they name none); direct: Beam's DirectRunner; dask: Beam's "
      "DaskRunner on a dask.distributed cluster (pip install -e .[dask]).",
      choices=RUNNERS)
  dask_address: str | None = flag(
      None, "With --runner=dask: the Dask scheduler, e.g. tcp://host:8786 (default: "
      "a local cluster of --num_workers worker processes, closed at the end).")


@dataclasses.dataclass(frozen=True)
class SynthConfig:
  """`python -m hep2tf.synth`: draw the synthetic HEp-2 set into a folder."""

  SECTION: ClassVar[str] = "synth"

  output_dir: str = flag("data/synth_hep2", "Folder to write the set into.")
  num_images: int = flag(synth.DEFAULT_NUM_IMAGES,
                         "Cells to draw (13,596 as in ICPR 2014 Task 1).")
  seed: int = flag(0, "Random seed; the same seed gives the same bytes.")
  image_size: int = flag(78, "Side of the square images, pixels.")
  num_specimens: int | None = flag(
      None, "Specimens (wells); default scales 83 to --num_images.")
  num_workers: int = flag(1, "Processes drawing in parallel.")
  overwrite: bool = flag(False, "Replace an existing, different output_dir.")
  profile: str = flag(
      "default", "default: the embedded set; stress: specimen shift, with training/ "
      "validation/ test/ folders whose test specimens are out of focus, dimmer and "
      "noisier (small: --num_images=3000).", choices=synth.PROFILES)
  layout: str = flag(
      "icpr2014", "icpr2014: the embedded set's layout; icpr2012, cnmc, binary: the "
      "same cells in another public layout (--profile and --num_specimens apply to "
      "icpr2014 only).", choices=("icpr2014", *synth_layouts.LAYOUTS))
