"""The tf.data reader over a records folder.

`create_split` is the whole pipeline, in one order:

  shards -> interleave -> [class-balanced sampling] -> parse + decode (+ mask, resize)
  -> [cache] -> [repeat] -> shuffle -> batch -> float32 + one-hot -> [mixup / cutmix]
  -> prefetch

The host only decodes and batches. Rotations, flips, colour jitter and normalisation
run inside the compiled training step (`augment.build_augmenter` and the model's own
first layers); mixup and cutmix run here because they change the labels.

Records are parsed only through `hep2tf.data.schema`. The folder is a
`records.Records`, opened once by the caller: its `info` (hep2tf.json) says what the
records hold, its `shards` and `num_examples` what to read and how much there is.
`create_split` returns a `Split`: the dataset with its size and batches per pass.

Pixels: records hold uint8 or uint16 PNG (one dtype per dataset,
`DatasetInfo.pixels`). Each decoded image is masked and resized by `preprocess.fit`
and stays in that dtype up to batching; `preprocess.to_model_input` then gives the
models' float32 input, `stored * 255 / white_level` (see `hep2tf.data.intensity`):
8-bit records exactly as before, 16-bit ones with every level kept as a distinct
float. predict and the SavedModel use the same `hep2tf.data.preprocess`.

Settings (benchmarks/reader.py, streaming vs decode-only as trained): every shard
open, one record from each in turn (cycle_length = shards, block_length=1) so the
shards mix before the shuffle; AUTOTUNE parallelism for interleave, decode, batch
and the batch map; order deterministic when seeded or evaluating (as promised; the
example shuffle already randomises training); per-example parse (parse_example on
batches needs a per-image decode loop, which cost more); META_KEYS carried only
`with_meta`.
"""

from __future__ import annotations

import collections
import dataclasses
import math

import tensorflow as tf
from absl import logging

from hep2tf.data import folds
from hep2tf.data import mixing
from hep2tf.data import preprocess
from hep2tf.data import schema
from hep2tf.data.records import DatasetInfo, Records
from hep2tf.errors import InputError

META_KEYS = (schema.ID, schema.FILE_NAME, schema.GROUP, schema.INTENSITY)
# cache="auto" keeps a split in memory when its decoded examples fit this budget (TFDS
# advises caching sets under about 1 GB). The full synthetic HEp-2 set, 13,596 78x78
# grey cells, is about 85 MB decoded; C-NMC at 256x256 RGB (~10,000 cells) is 2 GB and
# streams. Pass cache=True to cache beyond it on a machine with the memory.
CACHE_BUDGET_BYTES = 1 << 30
# Per decoded example beyond its pixels: label, id, file name, group, intensity.
_EXAMPLE_OVERHEAD_BYTES = 256


@dataclasses.dataclass(frozen=True)
class Split:
  """A split as `create_split` reads it.

  num_examples: examples in one pass (the fold's when a fold is read); steps: the
  batches of one pass, floor(num_examples / batch) when the last partial batch is
  dropped, else ceil. With `repeat` the dataset is endless and these describe an
  epoch.
  """

  dataset: tf.data.Dataset
  num_examples: int
  steps: int


@dataclasses.dataclass(frozen=True)
class ReadOptions:
  """How `create_split` reads a split.

  batch_size: examples per batch.
  training: shuffle shards and examples; allows balancing and mixing.
  image_size: (height, width) to resize to, keeping the aspect ratio and padding
    with 0 (`preprocess.fit`, as predict and the SavedModel resize); None keeps the
    stored size, which must then be the same for all images.
  apply_mask: multiply each image by its mask (background to 0); the records must
    hold masks.
  shuffle_buffer: examples in the shuffle buffer (training only). Decoded images sit
    in it in the records' dtype (uint8 or uint16).
  seed: seeds every random choice (shard order, sampling, shuffle, mixing).
  balanced: training only; draws classes with equal probability from per-class
    streams (`sample_from_datasets`), repeating the rarer classes. Without `repeat`
    an epoch is still the split's number of examples.
  mixup_alpha, cutmix_alpha: training only; `mixing.mix_batch` on each batch.
  repeat: repeat forever (the trainer then sets steps_per_epoch).
  cache: keep decoded examples in memory after the first epoch; not with `balanced`.
    "auto": when `decoded_bytes` of the split fits `cache_budget_bytes`, unbalanced
    (logged). Cached or not, the batches are the same: the shard order is drawn
    once per pipeline, and the example shuffle (after the cache) varies it per epoch.
  cache_budget_bytes: the memory budget of cache="auto".
  with_meta: add a third element, a dict of tf.string (N,) under `META_KEYS` (id,
    file_name, group, intensity), to trace predictions back to source files. For
    evaluation: Keras fit would read a third element as sample weights.
  deterministic: reproducible element order (with `seed` when training); default
    True for evaluation, for training True if `seed` is given.
  drop_remainder: drop the last partial batch; default `training`.
  fold: a `folds.FoldSpec`: only that cross-validation fold (holdout) or all but it.
  """

  batch_size: int
  training: bool
  image_size: tuple[int, int] | None = None
  apply_mask: bool = False
  shuffle_buffer: int = 4096
  seed: int | None = None
  balanced: bool = False
  mixup_alpha: float = 0.0
  cutmix_alpha: float = 0.0
  repeat: bool = False
  cache: bool | str = False
  cache_budget_bytes: int = CACHE_BUDGET_BYTES
  with_meta: bool = False
  deterministic: bool | None = None
  drop_remainder: bool | None = None
  fold: folds.FoldSpec | None = None

  @property
  def mixing(self) -> bool:
    return self.mixup_alpha > 0 or self.cutmix_alpha > 0

  def resolved(self, records: Records, split: str) -> ReadOptions:
    """These options with cache, deterministic and drop_remainder decided, checked
    against the records: ValueError or InputError for combinations that cannot
    work, before anything is read."""
    cache = self.cache
    if cache == "auto":
      cache = resolve_cache(records, split, self.image_size, self.balanced,
                            self.cache_budget_bytes)
    elif not isinstance(cache, bool):
      raise ValueError(f"cache must be True, False or 'auto', got {cache!r}")
    options = dataclasses.replace(
        self, cache=cache,
        deterministic=(self.seed is not None or not self.training
                       if self.deterministic is None else self.deterministic),
        drop_remainder=(self.training if self.drop_remainder is None
                        else self.drop_remainder))
    options.check(records)
    return options

  def check(self, records: Records) -> None:
    """Rejects option combinations that cannot work with `records`."""
    info = records.info
    if self.batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
    if not self.training and (self.balanced or self.mixing):
      raise ValueError("balanced sampling, mixup and cutmix are for training only")
    if self.balanced and self.cache is True:
      raise ValueError("cache with balanced sampling would freeze one draw; "
                       "use one or the other")
    if self.apply_mask and not info.has_mask:
      raise InputError("apply_mask was asked for but these records hold no masks",
                       file=records.path)
    if self.image_size is None and info.image_shape is None:
      raise InputError("image sizes vary in these records, so they cannot be "
                       "batched as they are; pass an image_size", file=records.path)


def create_split(records: Records, split: str, options: ReadOptions | None = None,
                 **fields) -> Split:
  """The tf.data pipeline of one split, with its size.

  Args:
    records: the records folder (`Records.open`).
    split: "train", "validation", "test", ...
    options: a `ReadOptions`; `fields`, its fields as keywords, replace those of
      `options` (`create_split(records, "train", batch_size=64, training=True)`).

  Returns:
    A `Split`, whose dataset yields (images, labels) or (images, labels, meta):
    images float32, (N, H, W, C), `preprocess.to_model_input` of the stored
    values (in [0, 255], 255 being the dataset's white level); labels one-hot
    (mixed when mixing) float32 (N, K).
  """
  options = (dataclasses.replace(options, **fields) if options is not None
             else ReadOptions(**fields)).resolved(records, split)
  files = records.shards(split)
  num_examples = _split_size(records, split, options.fold, files)
  seeds = _SeedSequence(options.seed)
  serialized = _read(records, split, files, options, num_examples, seeds)
  examples = _examples(serialized, records.info, options, seeds)
  batches = _batches(examples, records.info, options, seeds)
  steps = (num_examples // options.batch_size if options.drop_remainder
           else math.ceil(num_examples / options.batch_size))
  return Split(batches, num_examples, steps)


def _read(records: Records, split: str, files: list[str], options: ReadOptions,
          num_examples: int, seeds: _SeedSequence) -> tf.data.Dataset:
  """The split's serialised records in reading order: the shards interleaved
  (shuffled once when training), only the fold's examples, class-balanced when
  asked (endless with `repeat`, else `num_examples` of them)."""
  fold = options.fold
  keep_fold = (None if fold is None
               else folds.fold_predicate(records.fold_of(split, fold), fold))

  def read() -> tf.data.Dataset:
    shards = tf.data.Dataset.from_tensor_slices(files)
    if options.training:
      # One shard order per pipeline, not per epoch: a cache would freeze the first
      # epoch's order anyway, and the same order uncached gives the same batches.
      # The example shuffle after the cache reshuffles every epoch.
      shards = shards.shuffle(len(files), seed=seeds.next(),
                              reshuffle_each_iteration=False)
    # Every shard open at once, one record from each in turn (block_length=1): the
    # examples of all shards mix before the shuffle buffer, and a parallel
    # interleave reads ahead in all of them.
    serialized = shards.interleave(
        tf.data.TFRecordDataset, cycle_length=len(files), block_length=1,
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=options.deterministic)
    if keep_fold is not None:
      serialized = serialized.filter(keep_fold)
    return serialized

  if not options.balanced:
    return read()
  serialized = _balanced(records, split, read, seed=seeds.next())
  return serialized if options.repeat else serialized.take(num_examples)


def _examples(serialized: tf.data.Dataset, info: DatasetInfo, options: ReadOptions,
              seeds: _SeedSequence) -> tf.data.Dataset:
  """Serialised records -> decoded examples, [cached], [repeated], [shuffled]."""
  examples = serialized.map(
      lambda serialized: _decode(serialized, info, options.image_size,
                                 options.apply_mask, options.with_meta),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=options.deterministic)
  if options.cache:
    examples = examples.cache()
  if options.repeat and not options.balanced:
    examples = examples.repeat()
  if options.training:
    examples = examples.shuffle(options.shuffle_buffer, seed=seeds.next(),
                                reshuffle_each_iteration=True)
  return examples


def _batches(examples: tf.data.Dataset, info: DatasetInfo, options: ReadOptions,
             seeds: _SeedSequence) -> tf.data.Dataset:
  """Examples -> model-input batches, [mixed], prefetched, with the options'
  determinism."""
  autotune = tf.data.AUTOTUNE
  batches = examples.batch(options.batch_size, drop_remainder=options.drop_remainder,
                           num_parallel_calls=autotune,
                           deterministic=options.deterministic)
  batches = batches.map(
      lambda example: _to_model_inputs(example, info, options.with_meta),
      num_parallel_calls=autotune, deterministic=options.deterministic)
  if options.mixing:
    batches = _mixed(batches, options.mixup_alpha, options.cutmix_alpha,
                     seed=seeds.next())
  batches = batches.prefetch(autotune)
  tf_options = tf.data.Options()
  tf_options.deterministic = options.deterministic
  return batches.with_options(tf_options)


def _split_size(records: Records, split: str, fold: folds.FoldSpec | None,
                files: list[str]) -> int:
  """Examples of the split (or fold), from the metadata; by reading the shards only
  when hep2tf.json does not list the split."""
  if split not in records.info.splits and fold is None:
    return _count(files)
  return records.num_examples(split, fold)


def decoded_bytes(info: DatasetInfo, split: str,
                  image_size: tuple[int, int] | None = None) -> int | None:
  """Estimated memory of `split`'s decoded examples (uint8 pixels plus a little per
  example); None when the metadata lacks the split's size or the image size."""
  count = info.splits.get(split)
  shape = image_size or info.image_shape
  if not count or shape is None:
    return None
  return count * (shape[0] * shape[1] * info.channels + _EXAMPLE_OVERHEAD_BYTES)


def resolve_cache(records: Records, split: str, image_size, balanced: bool,
                  budget: int) -> bool:
  """cache="auto": cache a split whose decoded size fits `budget`; logs why."""
  size = decoded_bytes(records.info, split, image_size)
  if balanced:
    cache, why = False, "balanced sampling draws anew each epoch"
  elif size is None:
    cache, why = False, "its decoded size is unknown"
  else:
    cache = size <= budget
    why = (f"decoded ~{size / 2**20:.0f} MiB {'within' if cache else 'over'} the "
           f"{budget / 2**20:.0f} MiB budget")
  logging.info("Reader: split %r of %s %s (%s)", split, records.path,
               "cached in memory" if cache else "streamed", why)
  return cache


class _SeedSequence:
  """Distinct op seeds derived from one base seed (None stays None)."""

  def __init__(self, seed: int | None):
    self._seed = seed
    self._count = 0

  def next(self) -> int | None:
    if self._seed is None:
      return None
    self._count += 1
    return self._seed * 1000 + self._count


def _label_of(serialized: tf.Tensor) -> tf.Tensor:
  """Just the label of a serialised example: cheap, no image decoding."""
  spec = {schema.LABEL: schema.feature_spec()[schema.LABEL]}
  return tf.io.parse_single_example(serialized, spec)[schema.LABEL]


def _count(files: list[str]) -> int:   # when the metadata lacks the split's size
  return int(tf.data.TFRecordDataset(files).reduce(0, lambda n, _: n + 1))


def _count_labels(info: DatasetInfo, records: tf.data.Dataset) -> dict[str, int]:
  """{class name: count} by reading the labels, for metadata without class_counts."""
  labels = records.map(_label_of, num_parallel_calls=tf.data.AUTOTUNE).batch(4096)
  counts = collections.Counter()
  for batch in labels.as_numpy_iterator():
    counts.update(batch.tolist())
  return {name: counts.get(i, 0) for i, name in enumerate(info.class_names)}


def _balanced(records: Records, split: str, read,
              seed: int | None) -> tf.data.Dataset:
  """Equal-probability sampling over one endless stream per class.

  The streams filter serialised records by label before decoding, so each image is
  decoded only by its own class's stream. Classes without examples in the split are
  left out (sampling from an empty endless stream would hang); the counts come from
  the metadata, or from one pass over the labels when it lacks them.
  """
  info = records.info
  counts = info.class_counts.get(split) or _count_labels(info, read())
  streams = []
  for class_id, class_name in enumerate(info.class_names):
    if not counts.get(class_name):
      continue
    stream = read().filter(
        lambda serialized, c=class_id: tf.equal(_label_of(serialized), c))
    streams.append(stream.repeat())
  if not streams:
    raise InputError(f"split {split!r} has no examples to balance",
                     file=records.path)
  weights = [1.0 / len(streams)] * len(streams)
  return tf.data.Dataset.sample_from_datasets(streams, weights=weights, seed=seed)


def _decode(serialized: tf.Tensor, info: DatasetInfo,
            image_size: tuple[int, int] | None, apply_mask: bool,
            with_meta: bool = True) -> dict:
  """One record -> dict with the stored-dtype image (masked and resized as asked),
  the label and, `with_meta`, the META_KEYS strings (not carried otherwise: four
  strings per example through the shuffle buffer and the batch)."""
  # The mask is decoded only when used: a second PNG per example otherwise.
  example = schema.parse_example(serialized, info.channels,
                                 info.has_mask and apply_mask, info.pixels.dtype)
  # The stored dtype is kept up to batching, so the shuffle buffer holds a quarter
  # (uint8) or half (uint16) of float32's bytes.
  image = preprocess.fit(example[schema.IMAGE], image_size,
                         example[schema.MASK] if apply_mask else None)
  out = {schema.IMAGE: image, schema.LABEL: example[schema.LABEL]}
  if with_meta:
    out.update({key: example[key] for key in META_KEYS})
  return out


def _to_model_inputs(batch: dict, info: DatasetInfo, with_meta: bool):
  """A batch dict -> (images float32, one-hot labels float32[, meta])."""
  images = preprocess.to_model_input(batch[schema.IMAGE], info.pixels)
  labels = tf.one_hot(batch[schema.LABEL], info.num_classes, dtype=tf.float32)
  if with_meta:
    return images, labels, {key: batch[key] for key in META_KEYS}
  return images, labels


def _mixed(batches: tf.data.Dataset, mixup_alpha: float, cutmix_alpha: float,
           seed: int | None) -> tf.data.Dataset:
  """Mixup / cutmix per batch; seeded by (seed, batch index) when a seed is given."""
  def mix(index, element):
    batch_seed = None if seed is None else tf.stack(
        [tf.constant(seed, tf.int64), index])
    images, labels = mixing.mix_batch(element[0], element[1],
                                      mixup_alpha=mixup_alpha,
                                      cutmix_alpha=cutmix_alpha, seed=batch_seed)
    return (images, labels) + tuple(element[2:])

  return batches.enumerate().map(mix, num_parallel_calls=tf.data.AUTOTUNE)
