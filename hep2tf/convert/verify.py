"""Reading a records folder back: `verify_records` (`create_records --verify`).

Every shard named by dataset_info.json must exist, every record must pass its CRC and
parse and decode with `schema.parse_example`, and the record counts must match the
metadata and the manifest.
"""

from __future__ import annotations

import json
import os
import pathlib

import pandas as pd
import tensorflow as tf

from hep2tf.data import schema
from hep2tf.data.records import INFO_FILE, MANIFEST, shard_file_name

def verify_records(records_dir: str | os.PathLike) -> list[str]:
  """Reads every record of every shard; returns the problems found (empty: fine).

  Checks that each shard named by dataset_info.json exists, that every record passes
  its CRC and parses and decodes with `schema.parse_example`, and that the record
  counts match the metadata and manifest. A problem names the shard and record index.
  """
  folder = pathlib.Path(records_dir)
  problems = []
  try:
    info = json.loads((folder / "dataset_info.json").read_text())
    meta = json.loads((folder / INFO_FILE).read_text())
  except (OSError, ValueError) as e:
    return [f"{folder}: cannot read the metadata ({e})"]
  name = meta["name"]
  for split_info in info.get("splits", []):
    split = split_info["name"]
    lengths = [int(n) for n in split_info.get("shardLengths", [])]
    for shard, expected in enumerate(lengths):
      file_name = shard_file_name(name, split, shard, len(lengths))
      path = folder / file_name
      if not path.exists():
        problems.append(f"{file_name}: missing")
        continue
      count, problem = _read_shard(path, meta["channels"], meta["has_mask"],
                                   (meta.get("pixels") or {}).get("dtype", "uint8"))
      if problem:
        problems.append(f"{file_name}: record {count}: {problem}")
      elif count != expected:
        problems.append(f"{file_name}: {count} records, metadata says {expected}")
    if sum(lengths) != meta["splits"].get(split):
      problems.append(f"split {split}: {sum(lengths)} records in dataset_info.json, "
                      f"{meta['splits'].get(split)} in {INFO_FILE}")
  try:
    manifest = pd.read_csv(folder / MANIFEST, dtype=str, keep_default_na=False)
    for split, count in meta["splits"].items():
      listed = int((manifest["split"] == split).sum())
      if listed != count:
        problems.append(f"{MANIFEST}: {listed} rows for {split}, expected {count}")
  except (OSError, ValueError, KeyError) as e:
    problems.append(f"{MANIFEST}: cannot read ({e})")
  return problems


def _read_shard(path: pathlib.Path, channels: int, has_mask: bool,
                dtype: str = "uint8"):
  """(records read, problem or None) for one shard."""
  count = 0
  iterator = iter(tf.data.TFRecordDataset(str(path)))
  while True:
    try:
      serialized = next(iterator)
    except StopIteration:
      return count, None
    except tf.errors.DataLossError as e:
      return count, f"corrupted (CRC or framing): {e.message.splitlines()[0]}"
    try:
      schema.parse_example(serialized, channels, has_mask, dtype)
    except (tf.errors.InvalidArgumentError, ValueError) as e:
      message = getattr(e, "message", str(e)).splitlines()[0]
      return count, f"does not parse or decode: {message}"
    count += 1
