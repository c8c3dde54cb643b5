"""Tests of hep2tf.data.reader on tiny records written in the test."""

import dataclasses
import os
import struct

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from hep2tf.data import reader, schema  # noqa: E402
from hep2tf.data.records import (  # noqa: E402
    DatasetInfo, Records, parse_shard_name, shard_file_name)
from hep2tf.errors import InputError  # noqa: E402

CLASSES = ["homogeneous", "speckled", "golgi"]


def example_image(index, size, channels):
  """An image that encodes its index and is never all zero."""
  rng = np.random.default_rng(index)
  image = rng.integers(1, 256, size=(*size, channels), dtype=np.uint8)
  image[0, 0, 0] = index % 256
  return image


def write_records(folder, per_class, *, split="train", name="tiny", size=(8, 8),
                  channels=1, has_mask=False, num_shards=4, extra_splits=None):
  """Writes `per_class[c]` examples of class c, round-robin over shards + hep2tf.json.

  Returns the opened `Records` and {id: (label, image, mask)} of what was written.
  """
  os.makedirs(folder, exist_ok=True)
  features = schema.make_features(CLASSES, channels, has_mask, size)
  written = {}
  labels = [c for c, n in enumerate(per_class) for _ in range(n)]
  paths = [os.path.join(folder, shard_file_name(name, split, i, num_shards))
           for i in range(num_shards)]
  writers = [tf.io.TFRecordWriter(p) for p in paths]
  for index, label in enumerate(labels):
    image = example_image(index, size, channels)
    mask = np.zeros((*size, 1), np.uint8)
    mask[:, : size[1] // 2] = 255          # left half is the cell
    example = {schema.IMAGE: image, schema.LABEL: label, schema.ID: f"{index:05d}",
               schema.FILE_NAME: f"{split}/{index:05d}.png",
               schema.GROUP: f"specimen{index % 3}", schema.INTENSITY: "positive"}
    if has_mask:
      example[schema.MASK] = mask
    writers[index % num_shards].write(schema.encode_example(features, example))
    written[f"{index:05d}"] = (label, image, mask)
  for w in writers:
    w.close()
  Records.write_info(folder, DatasetInfo(
      name=name, class_names=CLASSES, channels=channels, image_shape=size,
      has_mask=has_mask, splits={split: len(labels), **(extra_splits or {})},
      class_counts={split: {c: n for c, n in zip(CLASSES, per_class)}},
      seed=0, dataset="test", data_dir="/nowhere"))
  return Records.open(folder), written


def ids_of(dataset):
  return [i.decode() for _, _, meta in dataset.as_numpy_iterator()
          for i in meta[schema.ID]]


# ---------------------------------------------------------------- metadata


def test_open_reads_info_and_split_sizes(tmp_path):
  records, _ = write_records(tmp_path, [3, 2, 1])
  info = records.info
  assert info.class_names == CLASSES and info.num_classes == 3
  assert info.image_shape == (8, 8) and info.channels == 1
  assert records.num_examples("train") == 6 and records.path == str(tmp_path)


def test_info_survives_write_and_read(tmp_path):
  """to_json / from_json are a pair: every field comes back as it was written."""
  info = DatasetInfo(name="x", class_names=["a", "b"], channels=3,
                     image_shape=(5, 7), has_mask=True, positive_class="b",
                     splits={"train": 4}, class_counts={"train": {"a": 1, "b": 3}},
                     balance="oversample", augment_copies=2, seed=9, dataset="d",
                     data_dir="/src", split_notes=["n"], group_disjoint=False,
                     layout_notes=["layout"], warnings=["w"])
  Records.write_info(tmp_path, info)
  assert Records.open(tmp_path).info == info


def test_shard_names_are_made_and_parsed_as_a_pair():
  name = shard_file_name("hep2-set", "train", 3, 8)
  assert name == "hep2-set-train.tfrecord-00003-of-00008"
  assert parse_shard_name(name) == ("hep2-set", "train", 3, 8)
  assert parse_shard_name("manifest.csv") is None


def test_missing_metadata_names_the_folder(tmp_path):
  with pytest.raises(InputError, match="hep2tf.json") as e:
    Records.open(tmp_path)
  assert e.value.file == str(tmp_path)


def test_unknown_split_names_existing_splits(tmp_path):
  records, _ = write_records(tmp_path, [2, 2, 2])
  with pytest.raises(InputError, match=r"'test'.*\['train'\]"):
    records.shards("test")
  with pytest.raises(InputError, match="'test'"):
    records.num_examples("test")


def test_shard_files_sorted_and_incomplete_set_rejected(tmp_path):
  records, _ = write_records(tmp_path, [4, 4, 4], num_shards=4)
  files = records.shards("train")
  assert [os.path.basename(f)[-14:] for f in files] == [
      f"{i:05d}-of-00004" for i in range(4)]
  os.remove(files[2])
  with pytest.raises(InputError, match="incomplete"):
    Records.open(tmp_path).shards("train")


def test_split_carries_its_size_and_steps(tmp_path):
  records, _ = write_records(tmp_path, [4, 3, 3])      # 10 examples
  train = reader.create_split(records, "train", batch_size=4, training=True)
  assert (train.num_examples, train.steps) == (10, 2)
  assert len(list(train.dataset)) == 2
  evaluation = reader.create_split(records, "train", batch_size=4, training=False)
  assert (evaluation.num_examples, evaluation.steps) == (10, 3)
  assert len(list(evaluation.dataset)) == 3


# ---------------------------------------------------------------- reading


def test_reads_back_images_labels_and_meta(tmp_path):
  records, written = write_records(tmp_path, [5, 3, 2], channels=3, num_shards=3)
  ds = reader.create_split(records, "train", batch_size=4, training=False,
                           with_meta=True).dataset
  seen = 0
  for images, labels, meta in ds.as_numpy_iterator():
    assert images.dtype == np.float32 and images.shape[1:] == (8, 8, 3)
    assert labels.dtype == np.float32 and labels.shape[1] == 3
    for image, label, id_, group in zip(images, labels, meta[schema.ID],
                                        meta[schema.GROUP]):
      want_label, want_image, _ = written[id_.decode()]
      np.testing.assert_array_equal(label, np.eye(3)[want_label])
      np.testing.assert_array_equal(image, want_image.astype(np.float32))
      assert group.decode() == f"specimen{int(id_) % 3}"
      seen += 1
  assert seen == 10
  assert set(meta) == set(reader.META_KEYS)


def test_eval_covers_every_example_exactly_once(tmp_path):
  records, written = write_records(tmp_path, [7, 5, 3], num_shards=4)
  ds = reader.create_split(records, "train", batch_size=4, training=False,
                           with_meta=True).dataset
  ids = ids_of(ds)
  assert sorted(ids) == sorted(written)        # 15 = 3 full batches + 3: kept
  shuffled = reader.create_split(records, "train", batch_size=4,
                                 training=True, seed=1, with_meta=True,
                                 drop_remainder=False).dataset
  assert sorted(ids_of(shuffled)) == sorted(written)


def test_training_drops_remainder_and_repeats(tmp_path):
  records, _ = write_records(tmp_path, [4, 3, 3])
  ds = reader.create_split(records, "train", batch_size=4, training=True,
                           seed=0).dataset
  assert [int(x.shape[0]) for x, _ in ds] == [4, 4]
  endless = reader.create_split(records, "train", batch_size=4,
                                training=True, seed=0, repeat=True).dataset
  assert len(list(endless.take(7))) == 7


def test_balanced_sampling_equalises_classes(tmp_path):
  records, _ = write_records(tmp_path, [40, 8, 4], num_shards=2)
  ds = reader.create_split(records, "train", batch_size=32, training=True,
                           balanced=True, repeat=True, seed=3,
                           shuffle_buffer=64).dataset
  counts = np.zeros(3)
  for _, labels in ds.take(20):
    counts += labels.numpy().sum(axis=0)
  freq = counts / counts.sum()
  np.testing.assert_allclose(freq, 1 / 3, atol=0.06)
  one_epoch = reader.create_split(records, "train", batch_size=4,
                                  training=True, balanced=True, seed=3,
                                  drop_remainder=False).dataset
  assert sum(int(x.shape[0]) for x, _ in one_epoch) == 52


def test_resize_with_pad(tmp_path):
  records, _ = write_records(tmp_path, [2, 1, 1], size=(8, 8))
  ds = reader.create_split(records, "train", batch_size=4, training=False,
                           image_size=(12, 6)).dataset
  images, _ = next(iter(ds))
  images = images.numpy()
  assert images.shape == (4, 12, 6, 1)
  # 8x8 scaled to 6x6 sits in the middle rows; 3 rows of padding above and below.
  assert np.all(images[:, :3] == 0) and np.all(images[:, 9:] == 0)
  assert np.all(images[:, 3:9] > 0)


def test_mask_application_zeroes_background(tmp_path):
  records, written = write_records(tmp_path, [2, 2, 0], has_mask=True)
  ds = reader.create_split(records, "train", batch_size=4, training=False,
                           apply_mask=True, with_meta=True).dataset
  images, _, meta = next(iter(ds.as_numpy_iterator()))
  for image, id_ in zip(images, meta[schema.ID]):
    _, original, _ = written[id_.decode()]
    assert np.all(image[:, 4:] == 0)                   # background (right half)
    np.testing.assert_array_equal(image[:, :4], original[:, :4])


def test_mask_requested_without_masks_is_an_input_error(tmp_path):
  records, _ = write_records(tmp_path, [2, 2, 2])
  with pytest.raises(InputError, match="no masks"):
    reader.create_split(records, "train", batch_size=2, training=False,
                        apply_mask=True)


def test_deterministic_mode_repeats_the_order(tmp_path):
  records, written = write_records(tmp_path, [10, 8, 6], num_shards=4)

  def order():
    ds = reader.create_split(
        records, "train", batch_size=4, training=True, seed=11,
        deterministic=True, with_meta=True, shuffle_buffer=32).dataset
    return ids_of(ds)

  first, second = order(), order()
  assert first == second
  assert first != sorted(first)           # it is shuffled, though
  assert len(set(first)) == len(first) and set(first) <= set(written)


def test_read_options_object_reads_as_its_keywords(tmp_path):
  records, _ = write_records(tmp_path, [10, 8, 6], num_shards=4)
  options = reader.ReadOptions(batch_size=4, training=True, seed=11,
                               with_meta=True, shuffle_buffer=32)
  by_keywords = reader.create_split(records, "train", batch_size=4, training=True,
                                    seed=11, with_meta=True, shuffle_buffer=32)
  by_object = reader.create_split(records, "train", options)
  assert ids_of(by_object.dataset) == ids_of(by_keywords.dataset)
  assert (by_object.num_examples, by_object.steps) == (24, 6)
  # Keywords replace the object's fields; the object itself is left as it was.
  other_seed = reader.create_split(records, "train", options, seed=12)
  assert ids_of(other_seed.dataset) != ids_of(by_object.dataset)
  assert options.seed == 11 and options.deterministic is None
  with pytest.raises(TypeError):
    reader.create_split(records, "train", options, batch_sise=4)


def test_mixup_in_pipeline_keeps_label_rows_summing_to_one(tmp_path):
  records, _ = write_records(tmp_path, [6, 5, 5])
  ds = reader.create_split(records, "train", batch_size=8, training=True,
                           seed=2, mixup_alpha=0.4, cutmix_alpha=1.0).dataset
  soft = False
  for images, labels in ds.as_numpy_iterator():
    assert images.shape == (8, 8, 8, 1)
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, atol=1e-6)
    soft |= bool(np.any((labels > 0) & (labels < 1)))
  assert soft


def test_training_only_options_rejected_for_eval(tmp_path):
  records, _ = write_records(tmp_path, [2, 2, 2])
  with pytest.raises(ValueError, match="training only"):
    reader.create_split(records, "train", batch_size=2, training=False,
                        balanced=True)


# ---------------------------------------------------------------- corruption


def record_offsets(path):
  """(start of data, length) of each record in a TFRecord file."""
  data = open(path, "rb").read()
  offsets, pos = [], 0
  while pos < len(data):
    (length,) = struct.unpack("<Q", data[pos:pos + 8])
    offsets.append((pos + 12, length))
    pos += 12 + length + 4
  return offsets


def test_check_shards_names_shard_and_record(tmp_path):
  records, _ = write_records(tmp_path, [6, 6, 6], num_shards=3)
  assert records.check_shards("train") == []
  shard = records.shards("train")[1]
  start, length = record_offsets(shard)[2]
  data = bytearray(open(shard, "rb").read())
  data[start + length // 2] ^= 0xFF
  open(shard, "wb").write(bytes(data))

  with pytest.raises(tf.errors.DataLossError):    # what the trainer would meet
    for _ in reader.create_split(records, "train", batch_size=4,
                                 training=False).dataset:
      pass
  problems = records.check_shards("train")
  assert len(problems) == 1
  assert problems[0].file == shard and problems[0].row == 2
  assert os.path.basename(shard) in str(problems[0])


def test_check_shards_finds_undecodable_image(tmp_path):
  records, _ = write_records(tmp_path, [2, 2, 2], num_shards=2)
  shard = records.shards("train")[0]
  features = schema.make_features(CLASSES, 1, False, (8, 8))
  serialized = [r.numpy() for r in tf.data.TFRecordDataset(shard)]
  serialized.insert(1, schema.encode_example(
      features, {schema.IMAGE: b"not a png", schema.LABEL: 0, schema.ID: "bad"}))
  with tf.io.TFRecordWriter(shard) as writer:
    for r in serialized:
      writer.write(r)
  problems = records.check_shards("train")
  assert [(p.file, p.row) for p in problems] == [(shard, 1)]
  assert "decode" in problems[0].reason


def test_balanced_without_class_counts_skips_empty_class(tmp_path):
  records, _ = write_records(tmp_path, [6, 0, 2])
  Records.write_info(tmp_path, dataclasses.replace(records.info, class_counts={}))
  ds = reader.create_split(Records.open(tmp_path), "train", batch_size=8, training=True,
                           balanced=True, repeat=True, seed=0).dataset
  counts = sum(labels.numpy().sum(axis=0) for _, labels in ds.take(4))
  assert counts[1] == 0 and abs(counts[0] - counts[2]) <= 10


def test_cache_gives_the_same_examples_each_epoch(tmp_path):
  records, written = write_records(tmp_path, [3, 3, 3])
  ds = reader.create_split(records, "train", batch_size=4, training=False,
                           cache=True, with_meta=True).dataset
  assert ids_of(ds) == ids_of(ds) and sorted(ids_of(ds)) == sorted(written)


def test_varying_sizes_need_image_size(tmp_path):
  features = schema.make_features(CLASSES, 1)
  path = tmp_path / "vary-test.tfrecord-00000-of-00001"
  with tf.io.TFRecordWriter(str(path)) as writer:
    for i, size in enumerate([(5, 9), (12, 7)]):
      writer.write(schema.encode_example(features, {
          schema.IMAGE: np.full((*size, 1), 50, np.uint8), schema.LABEL: i}))
  Records.write_info(tmp_path, DatasetInfo(
      name="vary", class_names=CLASSES, channels=1, image_shape=None,
      splits={"test": 2}))
  records = Records.open(tmp_path)
  with pytest.raises(InputError, match="image_size"):
    reader.create_split(records, "test", batch_size=2, training=False)
  ds = reader.create_split(records, "test", batch_size=2, training=False,
                           image_size=(10, 10)).dataset
  images, _ = next(iter(ds))
  assert images.shape == (2, 10, 10, 1)
  assert float(tf.reduce_max(images)) == 50.0


def test_cache_auto_caches_what_fits_the_budget(tmp_path):
  records, _ = write_records(tmp_path, [3, 3, 3])             # 9 examples of 8x8x1
  size = reader.decoded_bytes(records.info, "train")
  assert size == 9 * (8 * 8 + reader._EXAMPLE_OVERHEAD_BYTES)
  assert reader.decoded_bytes(records.info, "train", (16, 16)) > size
  assert reader.resolve_cache(records, "train", None, False, budget=size)
  assert not reader.resolve_cache(records, "train", None, False, budget=size - 1)
  assert not reader.resolve_cache(records, "train", None, True, budget=size)
  assert not reader.resolve_cache(records, "nosuch", None, False, budget=size)
  with pytest.raises(ValueError, match="auto"):
    reader.create_split(records, "train", batch_size=3, training=False,
                        cache="yes")


@pytest.mark.parametrize("repeat", [False, True])
def test_cached_and_streamed_give_the_same_batches(tmp_path, repeat):
  records, _ = write_records(tmp_path, [4, 3, 2], num_shards=3)

  def epochs(cache):
    ds = reader.create_split(
        records, "train", batch_size=3, training=True, seed=7, shuffle_buffer=4,
        cache=cache, with_meta=True, repeat=repeat, deterministic=True,
        cache_budget_bytes=1 << 20).dataset
    if repeat:    # three epochs' worth of one endless stream
      return ids_of(ds.take(9))
    return [ids_of(ds) for _ in range(3)]

  streamed, cached, auto = epochs(False), epochs(True), epochs("auto")
  assert cached == streamed == auto
  if not repeat:
    # Still shuffled anew each epoch, and every example once per epoch.
    assert streamed[0] != streamed[1] or streamed[1] != streamed[2]
    assert all(sorted(e) == sorted(streamed[0]) and len(e) == 9 for e in streamed)
