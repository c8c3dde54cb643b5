"""The conversion plan, one for both writers: what to convert, in which order, and
what each record holds.

The local writer (`convert/writer.py`, behind `create.create_records`) and the Beam
pipeline (`convert/beam.py`) share everything up to "write these bytes to this
shard" through this module:

  ConvertConfig      every option of a conversion (the converter's flags;
                     hep2tf/config/convert.py)
  prepare_examples   source -> splits -> balance -> dihedral copies (a `Prepared`),
                     drawing the synthetic HEp-2 set first for the default dataset
  check_inputs       what both refuse before loading an image
  shard_plan         the write order: per split a seeded shuffle cut into shards
  load_options       how every image is loaded (`loading.load_task`)
  make_record        one loaded image -> (serialised example, manifest row)
  RecordMaker        one plan row -> its record, loaded and encoded in a worker

So the same config and seed give the same records, shards and manifest whichever
writer runs.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import re
import time
from typing import Iterable, NamedTuple

import numpy as np
import pandas as pd
from absl import logging

from hep2tf import errors, storage
from hep2tf.config.convert import (DEFAULT_SET_FRACTIONS, DEFAULT_SET_IMAGES,
                                   DEFAULT_SET_SPECIMENS, SYNTHETIC, SYNTHETIC_DIR,
                                   SYNTHETIC_IMAGE_SIZE, SYNTHETIC_NAME, ConvertConfig)
from hep2tf.convert import loading
from hep2tf.data import intensity, schema, sources, splits, synth

SPLIT_ORDER = ("train", "validation", "test")
MAX_SHARDS = 8
# Fewer shards for small splits: below this many records a shard buys no interleaving.
MIN_RECORDS_PER_SHARD = 256


@dataclasses.dataclass
class Prepared:
  """A conversion ready to write: the example table (split and dihedral set), its
  source, the config it was made with, and what earlier stages skipped."""
  source: sources.Source
  examples: pd.DataFrame
  config: ConvertConfig
  rejects: errors.Rejects = dataclasses.field(default_factory=errors.Rejects)
  # What the splitter gave up (splits.assign_splits' attrs["split_notes"]).
  split_notes: list[str] = dataclasses.field(default_factory=list)

  @property
  def output_dir(self) -> str:
    return os.fspath(self.config.output_dir
                     or os.path.join("records", self.source.name))

  @property
  def data_dir(self) -> pathlib.Path:
    """The folder manifest file names are relative to (default: the images')."""
    if self.config.data_dir:
      return pathlib.Path(self.config.data_dir).absolute()
    return common_dir(self.examples["path"])


# ---------------------------------------------------------------------------
# The example table.


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


def prepare_examples(config: ConvertConfig) -> Prepared:
  """Source -> splits -> balance -> dihedral copies: the table either writer writes.

  Draws the synthetic set first for dataset="synthetic" (reused when it matches).
  The returned config has the defaults filled in (data folder, name, the default
  set's specimens and fractions). Raises InputError for bad input, and before
  splitting when the records folder exists and overwrite is off.
  """
  specimens, validation, test = default_set_options(
      config.dataset, config.synth_num_images, config.synth_profile,
      config.synth_num_specimens, config.validation_fraction, config.test_fraction)
  config = _locate_source(dataclasses.replace(
      config, synth_num_specimens=specimens, validation_fraction=validation,
      test_fraction=test))
  rejects = errors.Rejects()
  layout = "icpr2014" if config.dataset == SYNTHETIC else config.dataset
  source = sources.read_source(layout, config.data_dir, on_error=config.on_error,
                               rejects=rejects, name=config.name,
                               **config.source_options)
  prepared = Prepared(source, source.examples, config, rejects)
  # Fail before hashing and splitting; the writers check again before publishing.
  check_output(prepared.output_dir, config.overwrite)
  examples = splits.assign_splits(
      source.examples, validation_fraction=validation, test_fraction=test,
      seed=config.seed, by_group=config.group_split, on_error=config.on_error,
      rejects=rejects, small_groups=config.small_groups)
  prepared.split_notes = list(examples.attrs.get("split_notes", []))
  examples = splits.balance(examples, config.balance, seed=config.seed)
  prepared.examples = splits.add_dihedral_copies(examples, config.augment_copies,
                                                 seed=config.seed)
  return prepared


def _locate_source(config: ConvertConfig) -> ConvertConfig:
  """The config with its source folder (and synthetic name) filled in; draws the
  synthetic set when the folder does not hold it yet."""
  if config.dataset == SYNTHETIC:
    suffix = "" if config.synth_profile == "default" else f"_{config.synth_profile}"
    config = dataclasses.replace(config,
                                 data_dir=config.data_dir or SYNTHETIC_DIR + suffix,
                                 name=config.name or SYNTHETIC_NAME + suffix)
    if not synth.matches(config.data_dir, config.synth_num_images, config.synth_seed,
                         SYNTHETIC_IMAGE_SIZE, config.synth_num_specimens,
                         profile=config.synth_profile):
      logging.info("Drawing %d synthetic cells into %s", config.synth_num_images,
                   config.data_dir)
      try:
        synth.generate(config.data_dir, config.synth_num_images,
                       seed=config.synth_seed, image_size=SYNTHETIC_IMAGE_SIZE,
                       num_specimens=config.synth_num_specimens,
                       num_workers=config.workers, overwrite=True,
                       profile=config.synth_profile)
      except OSError as e:
        if errors.is_no_space(e):   # drawn in a hidden sibling, removed whole
          raise errors.no_space(e, config.data_dir) from None
        raise
    return config
  csv_path = config.csv_path
  if not config.data_dir and config.dataset == "csv" and csv_path:
    # --csv_path alone: the paths in it are relative to its folder.
    return dataclasses.replace(
        config, data_dir=os.path.dirname(os.path.abspath(csv_path)))
  if not config.data_dir:
    raise errors.InputError(f"--data_dir is needed for --dataset={config.dataset}")
  return config


# ---------------------------------------------------------------------------
# Checks and the write order.


def check_output(output_dir, overwrite: bool) -> None:
  """InputError when the records folder exists and may not be replaced."""
  if not overwrite and storage.exists(output_dir):
    raise errors.InputError("the records folder exists; pass --overwrite to replace "
                            "it", file=output_dir)


def check_inputs(prepared: Prepared) -> bool:
  """What both writers refuse before loading an image; returns whether every
  example has a mask. ValueError for a bad name or on_error, InputError for an
  existing output, unknown labels, or apply_mask without masks."""
  source, examples, config = prepared.source, prepared.examples, prepared.config
  if not re.fullmatch(r"[a-z][a-z0-9_]*", source.name):
    raise ValueError(f"dataset name must be snake_case, got {source.name!r}")
  if config.on_error not in ("fail", "skip"):
    raise ValueError(f"on_error must be fail or skip, got {config.on_error!r}")
  check_output(prepared.output_dir, config.overwrite)
  class_names = list(source.class_names)
  unknown = sorted(set(examples["label"]) - set(class_names))
  if unknown:
    raise errors.InputError(f"labels {unknown} are not among the classes "
                            f"{class_names}")
  masks = examples.get("mask_path", pd.Series("", index=examples.index))
  has_mask = bool(len(examples)) and bool((masks.fillna("").astype(str) != "").all())
  if config.apply_mask and not has_mask:
    raise errors.InputError("apply_mask needs a mask for every image, and some "
                            "have none")
  return has_mask


def num_shards_for(num_examples: int, num_shards: int | None = None) -> int:
  """Shards for one split: `num_shards` if given, else up to 8, >= 256 records each."""
  if num_shards is not None:
    if num_shards < 1:
      raise ValueError(f"num_shards must be >= 1, got {num_shards}")
    return max(1, min(num_shards, num_examples))
  return max(1, min(MAX_SHARDS, num_examples // MIN_RECORDS_PER_SHARD))


def shard_plan(examples: pd.DataFrame, seed: int,
               num_shards: int | None) -> pd.DataFrame:
  """The write order: per split a seeded shuffle cut into contiguous shards
  (columns `shard`, `num_shards` added; `dihedral` an int, 0 when absent)."""
  parts = []
  extra = sorted(set(examples["split"]) - set(SPLIT_ORDER))
  for split_index, split in enumerate(list(SPLIT_ORDER) + extra):
    rows = examples[examples["split"] == split]
    if rows.empty:
      continue
    rng = np.random.default_rng([seed, split_index])
    rows = rows.iloc[rng.permutation(len(rows))]
    count = num_shards_for(len(rows), num_shards)
    shard = np.repeat(np.arange(count),
                      [len(c) for c in np.array_split(np.arange(len(rows)), count)])
    parts.append(rows.assign(shard=shard, num_shards=count))
  if not parts:
    raise errors.InputError("no examples to write")
  out = pd.concat(parts, ignore_index=True)
  if "dihedral" not in out.columns:
    out["dihedral"] = 0
  out["dihedral"] = out["dihedral"].fillna(0).astype(int)
  return out


# ---------------------------------------------------------------------------
# Loading and encoding.


def prescan(prepared: Prepared, order: pd.DataFrame) -> intensity.PixelSpec:
  """The dataset's PixelSpec from the sources in the write order (loading.prescan)."""
  config = prepared.config
  return loading.prescan(order, prepared.source.channels, config.intensity,
                         config.rescale_percentiles, config.max_megapixels,
                         config.workers)


def load_options(prepared: Prepared, pixels: intensity.PixelSpec) -> dict:
  """The options every image is loaded with (`loading.load_task`)."""
  config = prepared.config
  return dict(channels=prepared.source.channels, image_size=config.image_size,
              resize=config.resize, apply_mask=config.apply_mask,
              max_megapixels=config.max_megapixels, pixel_spec=pixels)


def make_record(row: dict, loaded, *, features, pixels: intensity.PixelSpec,
                has_mask: bool, data_dir: pathlib.Path) -> tuple[bytes, dict]:
  """One row of the write order and its image -> (serialised example, manifest row).

  `loaded` is what `loading.load_one` returned: a LoadedImage, or (reason, file)
  for a bad input. The manifest row holds manifest.csv's columns in their order;
  `shard` and `index` are None, for the writer to fill in (`dict(row, shard=...,
  index=...)` keeps the order). Raises InputError for a bad input or an image whose
  bit depth changed after the pre-scan.
  """
  if isinstance(loaded, tuple):
    raise errors.InputError(loaded[0], file=loaded[1])
  loading.check_dtype(loaded, pixels, row["path"])
  relative = relative_file_name(row["path"], data_dir)
  dihedral = int(row["dihedral"])
  example = {schema.IMAGE: loaded.png, schema.LABEL: row["label"],
             schema.ID: row["id"], schema.FILE_NAME: relative,
             schema.SHA256: loaded.sha256, schema.INTENSITY: row.get("intensity"),
             schema.GROUP: row.get("group"), schema.DIHEDRAL: dihedral}
  if has_mask:
    example[schema.MASK] = loaded.mask_png
  manifest = {"id": row["id"], "file_name": relative, "sha256": loaded.sha256,
              "split": row["split"], "shard": None, "index": None,
              "label": row["label"], "group": row.get("group", "") or "",
              "intensity": row.get("intensity", "") or "", "dihedral": dihedral,
              "fold": row.get("fold", "") or "", **loaded.stats}
  return schema.encode_example(features, example), manifest


class Made(NamedTuple):
  """What `RecordMaker` made of one row: the record, or why not.

  record: serialised example, or None for a bad input; manifest: its manifest row
  (`make_record`), or {"reason", "file"} of the InputError (which pickles lossily);
  shape: (height, width) stored; seconds: CPU seconds (load, encode) in the worker.
  """
  record: bytes | None
  manifest: dict
  shape: tuple[int, int] | None
  seconds: tuple[float, float]


@dataclasses.dataclass(frozen=True)
class RecordMaker:
  """One plan row -> `Made`: the image loaded and the example serialised, in the
  worker, so the parent process only writes bytes. Small and picklable (the TFDS
  features are made once per process, `_features`)."""
  class_names: tuple[str, ...]
  channels: int
  has_mask: bool
  load_options: dict
  data_dir: pathlib.Path

  def __call__(self, row: dict) -> Made:
    start = time.process_time()
    loaded = loading.load_one(loading.load_task(row, self.has_mask,
                                                self.load_options))
    loaded_at = time.process_time()
    pixels = self.load_options["pixel_spec"]
    features = _features(self.class_names, self.channels, self.has_mask,
                         pixels.dtype)
    try:
      record, manifest = make_record(row, loaded, features=features, pixels=pixels,
                                     has_mask=self.has_mask, data_dir=self.data_dir)
    except errors.InputError as e:
      return Made(None, {"reason": e.reason, "file": e.file}, None,
                  (loaded_at - start, time.process_time() - loaded_at))
    return Made(record, manifest, (loaded.height, loaded.width),
                (loaded_at - start, time.process_time() - loaded_at))


@functools.lru_cache(maxsize=8)
def _features(class_names: tuple[str, ...], channels: int, has_mask: bool,
              dtype: str):
  return schema.make_features(class_names, channels, has_mask, dtype=dtype)


def common_dir(paths: Iterable[str]) -> pathlib.Path:
  folders = [os.path.dirname(os.path.abspath(p)) for p in paths]
  return pathlib.Path(os.path.commonpath(folders)) if folders else pathlib.Path.cwd()


def relative_file_name(path: str, data_dir: pathlib.Path) -> str:
  relative = os.path.relpath(os.path.abspath(path), data_dir)
  return pathlib.PurePath(relative).as_posix()
