"""convert/beam.py: the DirectRunner writes what the local converter writes."""

import collections
import json
import os
import pathlib
import shutil

import pytest

pytest.importorskip("apache_beam")

import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402
from absl import flags  # noqa: E402

from hep2tf import beam_pipeline  # noqa: E402
from hep2tf import create_records  # noqa: E402
from hep2tf import errors, storage  # noqa: E402
from hep2tf.config import core  # noqa: E402
from hep2tf.config.convert import BeamConfig  # noqa: E402
from hep2tf.convert import beam  # noqa: E402
from hep2tf.convert import create  # noqa: E402
from hep2tf.convert.plan import ConvertConfig  # noqa: E402
from hep2tf.data import schema  # noqa: E402
from hep2tf.data.records import (  # noqa: E402
    CLASS_COUNTS, INFO_FILE, MANIFEST, REJECTS, Records)

DIRECT = ["--runner=DirectRunner"]
# Oversampling, copies and two shards per split: every part of the plan is exercised.
OPTIONS = dict(balance="oversample", augment_copies=1, seed=3, num_shards=2)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  """A 60-cell synthetic set converted twice: locally and with the DirectRunner."""
  root = tmp_path_factory.mktemp("beam")
  data = root / "data"
  local, _ = create.create_records(ConvertConfig(
      data_dir=str(data), output_dir=str(root / "local"), synth_num_images=60,
      num_workers=1, progress=False, **OPTIONS))
  summary, _ = beam.convert_records(ConvertConfig(
      data_dir=str(data), output_dir=str(root / "beam"), synth_num_images=60,
      num_workers=1, **OPTIONS), DIRECT)
  return root, local, summary


def shard_records(folder: pathlib.Path) -> dict[str, list[tuple]]:
  """Shard file name -> its records in order, as (split, id, label, sha256, ...)."""
  meta = json.loads((folder / INFO_FILE).read_text())
  has_mask = meta["has_mask"]
  out = {}
  for path in sorted(folder.glob("*.tfrecord-*")):
    split = path.name.split("-")[1].split(".")[0]
    rows = []
    for serialized in tf.data.TFRecordDataset(str(path)):
      # Compared parsed: protobuf map order makes equal examples differ in bytes.
      raw = tf.io.parse_single_example(serialized, schema.feature_spec(has_mask))
      parsed = schema.parse_example(serialized, meta["channels"], has_mask)
      rows.append((split, parsed[schema.ID].numpy().decode(),
                   int(parsed[schema.LABEL]), parsed[schema.SHA256].numpy().decode(),
                   int(parsed[schema.DIHEDRAL]), raw[schema.IMAGE].numpy(),
                   raw[schema.MASK].numpy() if has_mask else None))
    out[path.name] = rows
  return out


def test_direct_runner_writes_the_local_converters_records(converted):
  root, local, summary = converted
  assert summary.splits == local.splits and summary.shards == local.shards
  assert summary.class_counts == local.class_counts
  assert sum(summary.splits.values()) > 60   # copies and oversampling were written
  ours, theirs = shard_records(root / "beam"), shard_records(root / "local")
  assert list(ours) == list(theirs) and len(ours) == 2 * len(local.splits)
  # The same records in the same shards, in the same order, with the same pixels.
  assert ours == theirs
  # (split, id, label, sha256, dihedral), counted: oversampling repeats some.
  keys = collections.Counter(r[:5] for rows in ours.values() for r in rows)
  assert keys == collections.Counter(r[:5] for rows in theirs.values() for r in rows)
  assert sum(keys.values()) == sum(local.splits.values())
  assert any(key[4] != 0 for key in keys)
  for name in (MANIFEST, CLASS_COUNTS, INFO_FILE,
               "dataset_info.json", "features.json"):
    assert (root / "beam" / name).read_bytes() == (root / "local" / name).read_bytes()
  assert not list(root.glob(".beam.*")), "the staging folder was left behind"


def test_beam_records_load_without_hep2tf(converted):
  root, local, _ = converted
  builder = tfds.builder_from_directory(str(root / "beam"))
  assert {s: builder.info.splits[s].num_examples for s in local.splits} == local.splits
  record = next(iter(tfds.as_numpy(builder.as_dataset(split="train"))))
  assert record["image"].shape == (78, 78, 1)
  assert Records.open(root / "beam").verify() == []


def test_existing_output_is_refused_before_running(converted, tmp_path):
  root, _, _ = converted
  with pytest.raises(errors.InputError, match="overwrite"):
    beam.convert_records(ConvertConfig(
        data_dir=str(root / "data"), synth_num_images=60,
        output_dir=str(root / "local")), DIRECT)


def run_main(argv, beam_args):
  """beam_pipeline.main with these flags (before `--`) and Beam options (after)."""
  if "dataset" not in flags.FLAGS:
    create_records.define_flags()
  if "runner" not in flags.FLAGS:
    core.define_flags([BeamConfig])
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["beam_pipeline"] + argv)
  return beam_pipeline.main(["beam_pipeline"] + beam_args)


def test_bad_image_fails_or_is_skipped(converted, tmp_path, capsys):
  root, _, _ = converted
  data = tmp_path / "data"
  shutil.copytree(root / "data", data)
  broken = data / "00007.png"
  broken.write_bytes(broken.read_bytes()[:100])   # truncated: hashes, fails to decode
  common = [f"--data_dir={data}", "--synth_num_images=60", "--num_workers=1"]
  out = tmp_path / "rec"
  code = run_main(common + [f"--output_dir={out}"], DIRECT)
  assert code == errors.EXIT_INPUT_ERROR
  assert "00007.png" in capsys.readouterr().err
  assert not out.exists() and not list(tmp_path.glob(".rec.*"))
  code = run_main(common + [f"--output_dir={out}", "--on_error=skip"], DIRECT)
  assert code == errors.EXIT_SKIPPED
  meta = json.loads((out / INFO_FILE).read_text())
  assert sum(meta["splits"].values()) == 59
  assert "00007.png" in (out / REJECTS).read_text()


def test_a_gfile_url_gets_the_local_writers_folder(converted):
  """The one publish on a URL: the same files, the staging prefix gone."""
  root, _, _ = converted
  parent = f"ram://beam_publish_{os.getpid()}"
  beam.convert_records(ConvertConfig(
      data_dir=str(root / "data"), output_dir=f"{parent}/rec", synth_num_images=60,
      num_workers=1, **OPTIONS), DIRECT)
  assert storage.listdir(parent) == ["rec"]
  names = sorted(storage.listdir(f"{parent}/rec"))
  assert names == sorted(path.name for path in (root / "beam").iterdir())
  for name in (MANIFEST, CLASS_COUNTS, INFO_FILE, "dataset_info.json"):
    with storage.open_file(f"{parent}/rec/{name}", "rb") as f:
      assert f.read() == (root / "local" / name).read_bytes(), name
