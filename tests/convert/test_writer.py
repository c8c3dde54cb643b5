"""convert/writer.py: records that TFDS reads, deterministic bytes, atomic publishing,
verify."""

import json
import os
import struct

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from hep2tf.convert import plan, writer
from hep2tf.data.records import INFO_FILE, MANIFEST, REJECTS, Records
from hep2tf.data.sources import Source
from hep2tf.errors import InputError

CLASSES = ["Homogeneous", "Golgi"]


def _dataset(folder, n=24, size=12):
  """n grey PNG cells with masks, two classes, fixed splits; returns the Source."""
  folder.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(0)
  rows = []
  for i in range(n):
    path, mask = folder / f"{i:05d}.png", folder / f"{i:05d}_Mask.png"
    Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(path)
    Image.fromarray(np.full((size, size), 255, np.uint8)).save(mask)
    rows.append({"id": f"{i:05d}", "path": str(path), "label": CLASSES[i % 2],
                 "mask_path": str(mask), "intensity": "positive",
                 "group": f"s{i % 4}", "split": ["train", "train", "test"][i % 3]})
  return Source("tiny", CLASSES, 1, pd.DataFrame(rows), None)


def _write(source, out, split_notes=(), **kwargs):
  kwargs = dict(dict(progress=False, num_workers=1), **kwargs)
  config = plan.ConvertConfig(source.name, output_dir=str(out), **kwargs)
  return writer.write_records(plan.Prepared(source, source.examples, config,
                                            split_notes=list(split_notes)))


def _shard_bytes(folder):
  return {p.name: p.read_bytes() for p in sorted(folder.iterdir())
          if ".tfrecord-" in p.name}


def test_tfds_reads_the_records_and_labels_match_the_manifest(tmp_path):
  source = _dataset(tmp_path / "data")
  summary = _write(source, tmp_path / "rec", num_shards=2)
  assert summary.splits == {"train": 16, "test": 8}
  assert summary.image_shape == [12, 12]
  builder = tfds.builder_from_directory(str(tmp_path / "rec"))
  assert builder.info.features["label"].names == CLASSES
  records = list(tfds.as_numpy(builder.as_dataset(split="train")))
  assert len(records) == 16
  manifest = pd.read_csv(tmp_path / "rec" / MANIFEST, dtype=str,
                         keep_default_na=False)
  by_id = manifest.set_index("id")
  for record in records:
    assert record["image"].shape == (12, 12, 1) and record["mask"].shape == (12, 12, 1)
    source_id = record["id"].decode()
    assert CLASSES[record["label"]] == by_id.loc[source_id, "label"]
    assert record["file_name"].decode() == f"{source_id}.png"
    original = np.asarray(Image.open(tmp_path / "data" / f"{source_id}.png"))
    np.testing.assert_array_equal(record["image"][..., 0], original)
  assert set(manifest["shard"]) == {f"tiny-{s}.tfrecord-0000{k}-of-00002"
                                    for s in ("train", "test") for k in (0, 1)}
  meta = json.loads((tmp_path / "rec" / INFO_FILE).read_text())
  assert set(meta) == {"name", "class_names", "channels", "image_shape", "has_mask",
                       "positive_class", "splits", "class_counts", "balance",
                       "augment_copies", "seed", "dataset", "data_dir",
                       "group_disjoint", "layout_notes", "pixels", "warnings",
                       "split_notes"}
  assert meta["pixels"]["dtype"] == "uint8" and meta["pixels"]["white_level"] == 255
  assert meta["split_notes"] == []
  assert meta["class_counts"]["test"] == {"Homogeneous": 4, "Golgi": 4}
  assert "Golgi" in builder.info.description


def test_split_notes_reach_hep2tf_json_locally_and_through_a_url(tmp_path):
  source = _dataset(tmp_path / "src")
  notes = ["validation carved from training groups"]
  for out in (str(tmp_path / "local"), "ram://hep2tf-writer-notes/out"):
    _write(source, out, split_notes=notes)
    with tf.io.gfile.GFile(f"{out}/{INFO_FILE}") as f:
      assert json.load(f)["split_notes"] == notes, out


def test_same_seed_same_bytes_whatever_the_workers(tmp_path):
  source = _dataset(tmp_path / "data")
  source.examples["dihedral"] = [i % 8 for i in range(len(source.examples))]
  _write(source, tmp_path / "one", seed=5, num_workers=1)
  _write(source, tmp_path / "two", seed=5, num_workers=2)
  _write(source, tmp_path / "other", seed=6, num_workers=1)
  one = _shard_bytes(tmp_path / "one")
  assert one == _shard_bytes(tmp_path / "two")
  assert one != _shard_bytes(tmp_path / "other")
  # samples.png too: with workers it is drawn in a thread once every split is settled.
  assert _samples(tmp_path / "one") == _samples(tmp_path / "two")


def _samples(folder) -> bytes:
  return (folder / "samples.png").read_bytes()


def test_samples_drawn_early_when_a_split_lacks_cells(tmp_path, monkeypatch):
  """18 cells: the test split has 3 of each class, fewer than the picture holds, so
  it is settled only when its last row is written; the picture is the same."""
  import threading
  from hep2tf.convert import samples
  drawn_in = []
  draw = samples.draw_samples

  def recording(*args, **kwargs):
    drawn_in.append(threading.current_thread() is threading.main_thread())
    return draw(*args, **kwargs)

  monkeypatch.setattr(samples, "draw_samples", recording)
  source = _dataset(tmp_path / "data", n=18)
  _write(source, tmp_path / "one", seed=5, num_workers=1)
  _write(source, tmp_path / "two", seed=5, num_workers=2)
  assert drawn_in == [True, False]   # one worker: at the end; two: in the thread
  assert _samples(tmp_path / "one") == _samples(tmp_path / "two")


def test_dihedral_copies_are_transformed(tmp_path):
  source = _dataset(tmp_path / "data", n=3)
  source.examples["dihedral"] = [0, 1, 5]
  _write(source, tmp_path / "rec")
  builder = tfds.builder_from_directory(str(tmp_path / "rec"))
  for split in ("train", "test"):
    for record in tfds.as_numpy(builder.as_dataset(split=split)):
      original = np.asarray(Image.open(tmp_path / "data" / (record["id"].decode()
                                                            + ".png")))
      k = int(record["dihedral"])
      expected = np.rot90(original, k % 4)
      expected = np.fliplr(expected) if k >= 4 else expected
      np.testing.assert_array_equal(record["image"][..., 0], expected)


def test_existing_output_needs_overwrite_and_is_replaced(tmp_path):
  source = _dataset(tmp_path / "data")
  _write(source, tmp_path / "rec", num_shards=1)
  with pytest.raises(InputError, match="overwrite"):
    _write(source, tmp_path / "rec", num_shards=1)
  _write(source, tmp_path / "rec", num_shards=3, overwrite=True)
  names = set(_shard_bytes(tmp_path / "rec"))
  assert "tiny-train.tfrecord-00002-of-00003" in names and len(names) == 6
  assert sorted(os.listdir(tmp_path)) == ["data", "rec"]


def test_bad_image_under_fail_leaves_nothing_and_keeps_the_old(tmp_path):
  source = _dataset(tmp_path / "data")
  (tmp_path / "data" / "00007.png").write_bytes(b"not an image")
  with pytest.raises(InputError, match="00007.png"):
    _write(source, tmp_path / "rec", num_workers=2)
  assert sorted(os.listdir(tmp_path)) == ["data"]
  (tmp_path / "rec").mkdir()
  (tmp_path / "rec" / "previous").write_text("old dataset")
  with pytest.raises(InputError):
    _write(source, tmp_path / "rec", overwrite=True)
  assert os.listdir(tmp_path / "rec") == ["previous"]
  assert sorted(os.listdir(tmp_path)) == ["data", "rec"]


def test_skip_writes_rejects_csv_and_counts_what_is_left(tmp_path):
  source = _dataset(tmp_path / "data")
  (tmp_path / "data" / "00003.png").write_bytes(b"")
  summary = _write(source, tmp_path / "rec", on_error="skip")
  assert summary.num_rejected == 1 and sum(summary.splits.values()) == 23
  rejects = pd.read_csv(tmp_path / "rec" / REJECTS)
  assert rejects["file"][0].endswith("00003.png") and "empty" in rejects["reason"][0]
  assert Records.open(tmp_path / "rec").verify() == []


def test_verify_names_the_shard_and_record_of_a_flipped_byte(tmp_path):
  source = _dataset(tmp_path / "data")
  _write(source, tmp_path / "rec", num_shards=1)
  assert Records.open(tmp_path / "rec").verify() == []
  shard = tmp_path / "rec" / "tiny-train.tfrecord-00000-of-00001"
  data = bytearray(shard.read_bytes())
  offset = 0
  for _ in range(5):   # TFRecord framing: 8-byte length, 4-byte CRC, data, CRC
    offset += 16 + struct.unpack("<Q", data[offset:offset + 8])[0]
  data[offset + 12 + 40] ^= 0xFF
  shard.write_bytes(bytes(data))
  problems = Records.open(tmp_path / "rec").verify()
  assert len(problems) == 1
  assert problems[0].startswith("tiny-train.tfrecord-00000-of-00001: record 5:")


def test_shard_counts_by_split_size():
  assert plan.num_shards_for(10) == 1
  assert plan.num_shards_for(1000) == 3
  assert plan.num_shards_for(8701) == 8
  assert plan.num_shards_for(3, num_shards=8) == 3
