"""create_records.py: flags -> source -> splits -> writer, counts and exit codes."""

import json
import os
import pathlib

import pandas as pd
import pytest
import tensorflow_datasets as tfds
from absl import flags

from hep2tf import create_records, errors
from hep2tf.convert import create
from hep2tf.convert.plan import DEFAULT_SET_IMAGES, ConvertConfig, default_set_options
from hep2tf.data import splits, synth
from hep2tf.data.records import CLASS_COUNTS, INFO_FILE, MANIFEST, REJECTS


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
  """A tiny synthetic set (60 cells, 12 specimens), drawn once for this file."""
  folder = tmp_path_factory.mktemp("synth") / "data"
  summary, _ = create.create_records(ConvertConfig(
      data_dir=str(folder), output_dir=str(folder.parent / "first"),
      synth_num_images=60, num_workers=1, progress=False))
  return folder, summary


def test_default_pipeline_keeps_specimens_and_hashes_apart(synthetic):
  folder, summary = synthetic
  assert summary.name == "synthetic_hep2" and sum(summary.splits.values()) == 60
  manifest = pd.read_csv(f"{summary.output_dir}/{MANIFEST}", dtype=str,
                         keep_default_na=False)
  # 12 specimens, 2 per class: too few for three grouped splits. Specimens keep
  # train and test apart; validation is carved from training specimens, and says so.
  outer = manifest[manifest["split"] != "validation"]
  assert (outer.groupby("group")["split"].nunique() == 1).all()
  assert (manifest.groupby("sha256")["split"].nunique() == 1).all()
  assert set(summary.splits) == {"train", "validation", "test"}
  for split in ("train", "validation", "test"):
    assert all(summary.class_counts[split][c] > 0 for c in summary.class_names), split
  train_groups = set(manifest[manifest["split"] == "train"]["group"])
  assert set(manifest[manifest["split"] == "validation"]["group"]) <= train_groups
  meta = json.loads((pathlib.Path(summary.output_dir) / INFO_FILE
                     ).read_text())
  assert any("Golgi has 2 groups" in n for n in meta["split_notes"])
  assert any("NOT group-disjoint" in n for n in meta["split_notes"])
  builder = tfds.builder_from_directory(summary.output_dir)
  record = next(iter(tfds.as_numpy(builder.as_dataset(split="train"))))
  assert record["image"].shape == (78, 78, 1)


def test_small_grouped_set_can_stop_instead(synthetic, tmp_path):
  folder, _ = synthetic
  with pytest.raises(errors.InputError, match="--small_groups=carve"):
    create.create_records(ConvertConfig(
        data_dir=str(folder), output_dir=str(tmp_path / "rec"), synth_num_images=60,
        small_groups="fail", num_workers=1, progress=False))
  assert not (tmp_path / "rec").exists()


def test_balance_and_copies_give_the_promised_counts(synthetic, tmp_path):
  folder, first = synthetic
  summary, _ = create.create_records(ConvertConfig(
      data_dir=str(folder), output_dir=str(tmp_path / "rec"), synth_num_images=60,
      balance="undersample", augment_copies=2, image_size=(32, 32), num_workers=1,
      progress=False))
  smallest = min(first.class_counts["train"].values())
  assert set(summary.class_counts["train"].values()) == {smallest * 3}
  assert summary.image_shape == [32, 32]
  meta = json.loads((tmp_path / "rec" / INFO_FILE).read_text())
  assert meta["balance"] == "undersample" and meta["augment_copies"] == 2
  assert meta["splits"]["train"] == smallest * 3 * 6
  counts = json.loads((tmp_path / "rec" / CLASS_COUNTS).read_text())
  assert counts["train"] == summary.class_counts["train"]
  for split in ("validation", "test"):
    assert counts.get(split, {}) == first.class_counts.get(split, {})


def _run_main(argv):
  if "dataset" not in flags.FLAGS:
    create_records.define_flags()
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["create_records"] + argv)
  return create_records.main(["create_records"])


def test_main_exit_codes(synthetic, tmp_path, capsys):
  folder, summary = synthetic
  common = [f"--data_dir={folder}", "--synth_num_images=60", "--num_workers=1"]
  assert _run_main(common + [f"--output_dir={summary.output_dir}"]) == (
      errors.EXIT_INPUT_ERROR)
  assert "--overwrite" in capsys.readouterr().err
  assert _run_main([f"--verify={summary.output_dir}"]) == errors.EXIT_OK
  # A csv source with one missing image: skipped, listed, exit code says so.
  table = pd.read_csv(f"{summary.output_dir}/{MANIFEST}", dtype=str)
  table["path"] = table["file_name"]
  table.loc[3, "path"] = "missing.png"
  table[["path", "label", "group"]].to_csv(folder / "cells.csv", index=False)
  out = tmp_path / "rec"
  code = _run_main(["--dataset=csv", f"--data_dir={folder}",
                    "--csv_path=cells.csv", "--group_column=group",
                    "--on_error=skip", f"--output_dir={out}", "--name=cells",
                    "--num_workers=1"])
  assert code == errors.EXIT_SKIPPED
  assert "missing.png" in (out / REJECTS).read_text()
  assert sum(json.loads((out / INFO_FILE).read_text())["splits"].values()) == 59


def _manifest(records_dir):
  import pandas as pd
  return pd.read_csv(os.path.join(records_dir, "manifest.csv"), dtype=str)


def test_sigkill_mid_write_leaves_previous_dataset_and_rerun_completes(tmp_path):
  import glob
  import signal
  import subprocess
  import sys
  import time

  import tensorflow_datasets as tfds

  from hep2tf.data import synth

  source = tmp_path / "source"
  synth.generate(source, num_images=600, seed=5)
  out = tmp_path / "records"
  create.create_records(ConvertConfig(
      "icpr2014", str(source), output_dir=str(out), num_workers=1, progress=False,
      group_split=False))
  before = _manifest(out)
  command = [sys.executable, "-m", "hep2tf.create_records", "--dataset=icpr2014",
             f"--data_dir={source}", f"--output_dir={out}", "--overwrite",
             "--seed=1", "--num_workers=1", "--group_split=false",
             "--augment_copies=7"]
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
  process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  staging = str(tmp_path / ".records.tmp-*")
  try:
    deadline = time.time() + 300
    # Kill once the new shards are being written into the staging folder.
    while (not glob.glob(os.path.join(staging, "*.tfrecord-*"))
           and process.poll() is None and time.time() < deadline):
      time.sleep(0.02)
    assert process.poll() is None, "the converter finished before it was killed"
    os.kill(process.pid, signal.SIGKILL)
  finally:
    process.kill()
    process.wait()
  # What is published is the previous complete dataset, untouched.
  assert _manifest(out).equals(before)
  builder = tfds.builder_from_directory(str(out))
  assert builder.info.splits["train"].num_examples == (before["split"] == "train").sum()
  result = subprocess.run(command, env=env, capture_output=True, text=True,
                          timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  after = _manifest(out)
  assert (after["dihedral"] != "0").any() and not after.equals(before)
  assert not glob.glob(staging), "the killed run's staging folder was left behind"


def test_stress_profile_keeps_its_specimen_split(tmp_path):
  summary, _ = create.create_records(ConvertConfig(
      data_dir=str(tmp_path / "data"), output_dir=str(tmp_path / "rec"),
      synth_num_images=60, synth_profile="stress", num_workers=1, progress=False))
  assert summary.name == "synthetic_hep2_stress"
  assert set(summary.splits) == {"train", "validation", "test"}
  manifest = pd.read_csv(f"{summary.output_dir}/{MANIFEST}", dtype=str,
                         keep_default_na=False)
  # The folders give the split, by specimen; the converter keeps it as it is.
  assert (manifest.groupby("group")["split"].nunique() == 1).all()
  test_files = {f"{i}.png" for i in manifest[manifest["split"] == "test"]["id"]}
  assert test_files == {p.name for p in (tmp_path / "data" / "test").glob("?????.png")}
  assert summary.split_notes == []


def test_default_set_options_fill_only_what_is_left_none():
  default = DEFAULT_SET_IMAGES
  assert default_set_options("synthetic", default, "default", None,
                                    None, None) == (110, 0.14, 0.30)
  assert default_set_options("synthetic", default, "default", 50,
                                    0.1, 0.25) == (50, 0.1, 0.25)
  # Any other size, profile or layout: the generator's rule and the usual fractions.
  for args in (("synthetic", 60, "default"), ("synthetic", default, "stress"),
               ("icpr2014", default, "default")):
    assert default_set_options(*args, None, None, None) == (
        None, 0.16, 0.2)


def test_default_set_test_split_holds_2000_cells_and_two_specimens_per_class():
  """The default job's promise, checked on the plan and the real split code (no
  pixels are drawn): a grouped test split of >= 2,000 cells with >= 2 specimens of
  every class, and every class in every split."""
  specimens, val, test = default_set_options(
      "synthetic", DEFAULT_SET_IMAGES, "default", None, None, None)
  plan = pd.DataFrame(synth.make_plan(DEFAULT_SET_IMAGES, seed=0,
                                      num_specimens=specimens))
  table = pd.DataFrame({"id": plan["image_id"].astype(str), "path": "",
                        "label": plan["label"], "group": plan["specimen"].astype(str),
                        "split": "", "sha256": plan["image_id"].astype(str)})
  made = splits.assign_splits(table, validation_fraction=val, test_fraction=test)
  assert made.attrs["split_notes"] == []
  assert (made["split"] == "test").sum() >= 2000
  per_class = made.groupby(["split", "label"])["group"].nunique().unstack()
  assert per_class.loc["test"].min() >= 2, per_class
  assert per_class.notna().all().all() and per_class.min().min() >= 1
