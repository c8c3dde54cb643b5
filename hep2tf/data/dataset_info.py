"""DatasetInfo: what a records folder holds, the contents of its hep2tf.json.

`to_json` and `from_json` are the pair behind `records.Records.write_info` and
`records.read_info` (the one parse of the file). It sits below `records` and
`integrity`, which both take it. No TensorFlow here.
"""

from __future__ import annotations

import dataclasses

from hep2tf.data import intensity


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """What a records folder holds: the contents of its hep2tf.json."""

  name: str
  class_names: list[str]
  channels: int
  image_shape: tuple[int, int] | None   # None when image sizes vary
  has_mask: bool = False
  positive_class: str | None = None
  splits: dict[str, int] = dataclasses.field(default_factory=dict)
  class_counts: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
  balance: str | None = None       # what the converter did: none/oversample/undersample
  augment_copies: int = 0
  seed: int | None = None
  dataset: str | None = None
  data_dir: str | None = None
  pixels: intensity.PixelSpec = dataclasses.field(default_factory=intensity.PixelSpec)
  # What the converter's splitter gave up, e.g. a validation split carved from the
  # training groups of a small grouped set; [] when the splits are group-disjoint.
  split_notes: list[str] = dataclasses.field(default_factory=list)
  # Whether no group (specimen, patient, slide) is in two splits; None when unknown.
  group_disjoint: bool | None = None
  # What the source reader decided about the layout, and the pixel warnings.
  layout_notes: list[str] = dataclasses.field(default_factory=list)
  warnings: list[str] = dataclasses.field(default_factory=list)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def to_json(self) -> dict:
    """The hep2tf.json object, in the order the file has always had."""
    return {
        "name": self.name, "class_names": list(self.class_names),
        "channels": self.channels,
        "image_shape": None if self.image_shape is None else list(self.image_shape),
        "has_mask": self.has_mask, "positive_class": self.positive_class,
        "splits": self.splits, "class_counts": self.class_counts,
        "balance": self.balance, "augment_copies": self.augment_copies,
        "seed": self.seed, "dataset": self.dataset, "data_dir": self.data_dir,
        "group_disjoint": self.group_disjoint, "layout_notes": self.layout_notes,
        "pixels": self.pixels.to_json(), "warnings": self.warnings,
        "split_notes": self.split_notes}

  @classmethod
  def from_json(cls, raw: dict) -> DatasetInfo:
    """The inverse of `to_json`; keys added since a folder was written default."""
    shape = raw.get("image_shape")
    return cls(
        name=str(raw["name"]),
        class_names=[str(c) for c in raw["class_names"]],
        channels=int(raw["channels"]),
        image_shape=None if shape is None else (int(shape[0]), int(shape[1])),
        has_mask=bool(raw.get("has_mask", False)),
        positive_class=raw.get("positive_class"),
        splits={str(k): int(v) for k, v in raw["splits"].items()},
        class_counts=raw.get("class_counts") or {},
        balance=raw.get("balance"),
        augment_copies=int(raw.get("augment_copies") or 0),
        seed=raw.get("seed"),
        dataset=raw.get("dataset"),
        data_dir=raw.get("data_dir"),
        pixels=intensity.PixelSpec.from_json(raw.get("pixels")),
        split_notes=[str(n) for n in raw.get("split_notes") or []],
        group_disjoint=raw.get("group_disjoint"),
        layout_notes=[str(n) for n in raw.get("layout_notes") or []],
        warnings=[str(w) for w in raw.get("warnings") or []],
    )
