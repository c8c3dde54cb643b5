"""Reading a records folder's shards back, record by record, to find damage.

`Records.check_shards` (the trainer, when reading fails) and `Records.verify`
(`create_records --verify`) do the bookkeeping; the reading is here:
`damaged_records` finds the records of a split that are corrupt (CRC or framing) or
do not parse and decode as a hep2tf example; `read_shard` reads one shard to its end
or to its first bad record. Both decode through `hep2tf.data.schema`, as the reader
does.
"""

from __future__ import annotations

import tensorflow as tf

from hep2tf.data import schema
from hep2tf.data.dataset_info import DatasetInfo
from hep2tf.errors import InputError


def damaged_records(info: DatasetInfo, shards: list[str]) -> list[InputError]:
  """Reads every record of `shards` and reports the ones that are damaged.

  A flipped byte or a truncated file makes TFRecordDataset raise a bare
  `tf.errors.DataLossError` in the middle of training; this names the shard and the
  index (0-based, within the shard) of the first bad record, and also finds records
  whose bytes are intact but which do not parse or decode, or whose label is out of
  range.

  Returns:
    One InputError per problem, with `file` the shard path and `row` the record
    index, sorted; empty when the shards read cleanly.
  """
  problems, readable = [], []
  for shard in shards:
    count, error = _readable_records(shard)
    readable.append(count)
    if error is not None:
      problems.append(InputError(
          f"corrupt record (damaged bytes; the rest of the shard is unreadable): "
          f"{error.message.splitlines()[0]}", file=shard, row=count))
  for shard_index, row in _undecodable_records(info, shards, readable):
    problems.append(InputError(
        "record does not parse or decode as a hep2tf example, or its label is "
        "not one of class_names", file=shards[shard_index], row=row))
  return sorted(problems, key=lambda p: (p.file, p.row))


def read_shard(path: str, info: DatasetInfo) -> tuple[int, str | None]:
  """(records read, problem or None) for one shard: every record must pass its CRC
  and parse and decode with `schema.parse_example`; reading stops at the first that
  does not."""
  count = 0
  iterator = iter(tf.data.TFRecordDataset(path))
  while True:
    try:
      serialized = next(iterator)
    except StopIteration:
      return count, None
    except tf.errors.DataLossError as e:
      return count, f"corrupted (CRC or framing): {e.message.splitlines()[0]}"
    try:
      schema.parse_example(serialized, info.channels, info.has_mask,
                           info.pixels.dtype)
    except (tf.errors.InvalidArgumentError, ValueError) as e:
      message = getattr(e, "message", str(e)).splitlines()[0]
      return count, f"does not parse or decode: {message}"
    count += 1


def _readable_records(shard: str, chunk: int = 256
                      ) -> tuple[int, tf.errors.DataLossError | None]:
  """How many records of `shard` read before the first DataLossError, and the error."""
  count = 0
  try:
    # Whole chunks are fast to count; the record index is then found within the
    # chunk that failed.
    for records in tf.data.TFRecordDataset(shard).batch(chunk):
      count += int(records.shape[0])
    return count, None
  except tf.errors.DataLossError:
    pass
  try:
    for _ in tf.data.TFRecordDataset(shard).skip(count).take(chunk):
      count += 1
  except tf.errors.DataLossError as e:
    return count, e
  raise AssertionError(f"{shard}: a read error did not happen again")  # unreachable


def _undecodable_records(info: DatasetInfo, shards: list[str],
                         readable: list[int]) -> list[tuple[int, int]]:
  """(shard index, record index) of the readable records that fail to decode."""
  def records_of(shard_index, path, count):
    records = tf.data.TFRecordDataset(path).take(count).enumerate()
    return records.map(lambda row, serialized: (shard_index, row, serialized))

  def decode(shard_index, row, serialized):
    example = schema.parse_example(serialized, info.channels, info.has_mask,
                                   info.pixels.dtype)
    # Return something computed from every decoded tensor, or graph pruning would
    # skip the decoding whose errors are the point.
    sizes = [tf.size(example[key]) for key in (schema.IMAGE, schema.MASK)
             if key in example]
    label_ok = tf.debugging.assert_less(
        example[schema.LABEL], tf.constant(info.num_classes, tf.int64))
    with tf.control_dependencies([label_ok]):
      return shard_index, row, tf.add_n(sizes)

  every = tf.data.Dataset.from_tensor_slices(
      (tf.range(len(shards), dtype=tf.int64), shards,
       tf.constant(readable, tf.int64)))
  decoded = every.flat_map(records_of).map(
      decode, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors()
  good = set()
  for shard_index, row, _ in decoded.batch(1024).as_numpy_iterator():
    good.update(zip(shard_index.tolist(), row.tolist()))
  return [(s, r) for s, count in enumerate(readable) for r in range(count)
          if (s, r) not in good]
