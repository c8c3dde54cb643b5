"""The metadata of a records folder, written beside the shards.

`summarise` makes the `WriteSummary` of what was written (split and class counts,
shards, bytes, the PixelSpec with its white level, the pixel warnings);
`write_tfds_metadata` writes dataset_info.json and features.json so that
`tfds.builder_from_directory` loads the folder; `write_tables` writes manifest.csv,
class_counts.json, hep2tf.json (`Records.write_info`: what the reader and trainer
need) and rejects.csv.
The local writer and the Beam pipeline write the same files through these, and
publish a folder on a URL (`atomic.publish_dir`, not atomic there) with
`PUBLISH_LAST` copied last: a reader waits for hep2tf.json.
"""

from __future__ import annotations

import dataclasses
import json

import tensorflow_datasets as tfds

from hep2tf.convert import samples, stages
from hep2tf.data import intensity
from hep2tf.data import schema
from hep2tf.data.records import (CLASS_COUNTS, FILENAME_TEMPLATE, INFO_FILE,
                                 MANIFEST, REJECTS, DatasetInfo, Records)

# Copied after every other file where a folder cannot be renamed into place.
PUBLISH_LAST = (REJECTS, "dataset_info.json", INFO_FILE)


@dataclasses.dataclass
class WriteSummary:
  """What `write_records` wrote: per split counts, class counts, shards and bytes."""
  output_dir: str
  name: str
  class_names: list[str]
  splits: dict[str, int]
  class_counts: dict[str, dict[str, int]]
  shards: dict[str, int]
  num_bytes: dict[str, int]
  image_shape: list[int] | None
  num_rejected: int = 0
  # Set with the metadata: the layout's notes (sources.Source.notes) and whether no
  # group (specimen, patient, slide) is in two splits (False also when some image
  # has no group).
  notes: list[str] = dataclasses.field(default_factory=list)
  group_disjoint: bool | None = None
  pixels: intensity.PixelSpec = dataclasses.field(default_factory=intensity.PixelSpec)
  warnings: list[str] = dataclasses.field(default_factory=list)
  # What the splitter had to give up (splits.assign_splits' attrs["split_notes"]).
  split_notes: list[str] = dataclasses.field(default_factory=list)
  # Where the conversion's time went (`stages.Stages`), when the writer timed it.
  stages: stages.Stages | None = None

  def table(self) -> str:
    """A plain-text table: one line per split with images, classes, shards, bytes."""
    width = max([len(c) for c in self.class_names] + [7])
    head = f"{'split':<11}{'images':>8}  " + "  ".join(
        f"{c:>{width}}" for c in self.class_names) + f"{'shards':>8}{'MiB':>9}"
    lines = [head, "-" * len(head)]
    for split, count in self.splits.items():
      counts = "  ".join(f"{self.class_counts[split].get(c, 0):>{width}}"
                         for c in self.class_names)
      lines.append(f"{split:<11}{count:>8}  {counts}{self.shards[split]:>8}"
                   f"{self.num_bytes[split] / 2**20:>9.2f}")
    return "\n".join(lines)

def summarise(output_dir, name, class_names, manifest, shard_lengths, num_bytes,
              image_shape, num_rejected,
              pixels: intensity.PixelSpec | None = None) -> WriteSummary:
  pixels = pixels or intensity.PixelSpec()
  if pixels.dtype == "uint16":
    pixels = dataclasses.replace(
        pixels, white_level=intensity.white_level(int(manifest["max_value"].max())))
  splits, counts = {}, {}
  for split in shard_lengths:
    rows = manifest[manifest["split"] == split]
    splits[split] = len(rows)
    per_class = rows["label"].value_counts()
    counts[split] = {c: int(per_class.get(c, 0)) for c in class_names}
  return WriteSummary(str(output_dir), name, class_names, splits, counts,
                      {s: len(v) for s, v in shard_lengths.items()}, num_bytes,
                      image_shape, num_rejected, pixels=pixels,
                      warnings=samples.pixel_warnings(manifest, pixels))


def write_tfds_metadata(staging, source, summary, shard_lengths, has_mask, image_shape):
  """dataset_info.json and features.json, so tfds.builder_from_directory loads it."""
  # A split whose every image was rejected has only empty shards: leave it out.
  for split, lengths in list(shard_lengths.items()):
    if sum(lengths) == 0:
      for path in staging.glob(f"{source.name}-{split}.tfrecord-*"):
        path.unlink()
      del shard_lengths[split]
  features = schema.make_features(source.class_names, source.channels, has_mask,
                                  tuple(image_shape) if image_shape else (None, None),
                                  dtype=summary.pixels.dtype)
  split_infos = [tfds.core.SplitInfo(name=split, shard_lengths=lengths,
                                     num_bytes=summary.num_bytes[split])
                 for split, lengths in shard_lengths.items()]
  tfds.folder_dataset.write_metadata(
      data_dir=str(staging), features=features, split_infos=split_infos,
      filename_template=FILENAME_TEMPLATE, check_data=False,
      description=_description(summary))


def _description(summary: WriteSummary) -> str:
  sizes = ", ".join(f"{s} {n}" for s, n in summary.splits.items())
  lines = [f"{summary.name}: single-cell images written by hep2tf.",
           f"Classes (label ids in this order): {', '.join(summary.class_names)}.",
           f"Split sizes: {sizes}.",
           f"Pixels: {summary.pixels.describe()}"]
  for split, counts in summary.class_counts.items():
    lines.append(f"{split} per class: " +
                 ", ".join(f"{c} {n}" for c, n in counts.items()) + ".")
  return "\n".join(lines)


def write_tables(staging, source, summary, manifest, has_mask, balance,
                 augment_copies, seed, dataset, data_dir, rejects):
  manifest.to_csv(staging / MANIFEST, index=False)
  summary.notes = list(getattr(source, "notes", []))
  summary.group_disjoint = bool((manifest["group"] != "").all() and (
      manifest.groupby("group")["split"].nunique() == 1).all())
  counts = dict(summary.class_counts, balance=balance, augment_copies=augment_copies)
  (staging / CLASS_COUNTS).write_text(json.dumps(counts, indent=2) + "\n")
  shape = summary.image_shape
  Records.write_info(staging, DatasetInfo(
      name=summary.name, class_names=summary.class_names, channels=source.channels,
      image_shape=None if shape is None else tuple(shape), has_mask=has_mask,
      positive_class=source.positive_class, splits=summary.splits,
      class_counts=summary.class_counts, balance=balance,
      augment_copies=augment_copies, seed=seed, dataset=dataset,
      data_dir=str(data_dir), pixels=summary.pixels,
      split_notes=summary.split_notes, group_disjoint=summary.group_disjoint,
      layout_notes=summary.notes, warnings=summary.warnings))
  if len(rejects):
    rejects.write_csv(staging / REJECTS)
