"""RUN/config.json, typed: what evaluate, predict and the export need to know of a run.

The trainer writes a `RunConfig` (`to_json`, with VERSION); evaluate and predict read
it back (`read_run_config`) as the same typed object, its TrainConfig included. An
unknown key, or a value of the wrong type, is an InputError naming the file and the
key. Files without a version are those of runs trained before sections
(hep2tf 5ad9eb9: a flat "config", the model name and apply_mask beside it); they are
read as they are, so those runs still evaluate and predict.
"""

from __future__ import annotations

import dataclasses

from hep2tf.config import core
from hep2tf.config.train import TrainConfig
from hep2tf.data.intensity import PixelSpec
from hep2tf.errors import InputError

VERSION = 2
# Keys of version-less files that the typed config holds elsewhere (config.model,
# config.apply_mask); read and checked, not kept twice.
_LEGACY_KEYS = ("model", "apply_mask")


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """A run's config.json: the resolved TrainConfig and what the data made of it."""

  train: TrainConfig
  input_shape: tuple[int, int, int]        # (height, width, channels) of the model
  class_names: tuple[str, ...]
  records_dir: str                          # absolute
  pixels: PixelSpec = PixelSpec()          # the records' PixelSpec
  positive_class: str | None = None
  image_size: tuple[int, int] | None = None   # --image_size, or None: the records'
  mixed_precision: str = "float32"          # the policy the run resolved
  mixed_precision_reason: str = ""

  @property
  def model(self) -> str:
    return self.train.model

  @property
  def apply_mask(self) -> bool:
    return self.train.apply_mask

  def to_json(self) -> dict:
    return {"version": VERSION, "input_shape": list(self.input_shape),
            "class_names": list(self.class_names),
            "positive_class": self.positive_class, "records_dir": self.records_dir,
            "image_size": list(self.image_size) if self.image_size else None,
            "pixels": self.pixels.to_json(), "mixed_precision": self.mixed_precision,
            "mixed_precision_reason": self.mixed_precision_reason,
            "config": core.to_json(self.train)}

  @classmethod
  def from_json(cls, raw: dict, where: str) -> RunConfig:
    """The RunConfig of a config.json's contents (`where`: the file, for errors)."""
    if not isinstance(raw, dict):
      raise InputError("not a run config (expected a JSON object)", file=where)
    raw = dict(raw)
    version = raw.pop("version", None)
    if version not in (None, VERSION):
      raise InputError(f"config.json version {version!r}; this hep2tf reads "
                       f"version {VERSION} and files without a version", file=where)
    legacy = {k: raw.pop(k) for k in _LEGACY_KEYS if version is None and k in raw}
    known = {f.name for f in dataclasses.fields(cls)} - {"train"} | {"config"}
    unknown = sorted(set(raw) - known)
    if unknown:
      raise InputError(f"unknown key {unknown[0]!r} in a run's config.json",
                       file=where)
    for key in ("config", "input_shape", "class_names", "records_dir"):
      if key not in raw:
        raise InputError(f"a run's config.json without {key!r}", file=where)
    train = core.from_json(TrainConfig, raw.pop("config"), where)
    for key, value in legacy.items():
      if value != getattr(train, key):
        raise InputError(f"{key!r} is {value!r} but config.{key} is "
                         f"{getattr(train, key)!r}", file=where)
    values = {key: core.check_value(cls, key, value, where)
              for key, value in raw.items() if key != "pixels"}
    pixels = PixelSpec.from_json(raw.get("pixels"))
    return cls(train=train, pixels=pixels, **values)


def read_run_config(run) -> RunConfig:
  """The typed config.json of a run directory (a `hep2tf.rundir.RunDir`)."""
  return RunConfig.from_json(run.read_config(), run.config_file)
