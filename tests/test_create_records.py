"""create_records.py: flags -> source -> splits -> writer, counts and exit codes."""

import json

import pandas as pd
import pytest
import tensorflow_datasets as tfds
from absl import flags

from hep2tf import create_records
from hep2tf import errors
from hep2tf import writer


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
  """A tiny synthetic set (60 cells, 12 specimens), drawn once for this file."""
  folder = tmp_path_factory.mktemp("synth") / "data"
  summary, _ = create_records.create_records(
      data_dir=str(folder), output_dir=str(folder.parent / "first"),
      synth_num_images=60, num_workers=1, progress=False)
  return folder, summary


def test_default_pipeline_keeps_specimens_and_hashes_apart(synthetic):
  folder, summary = synthetic
  assert summary.name == "synthetic_hep2" and sum(summary.splits.values()) == 60
  manifest = pd.read_csv(f"{summary.output_dir}/{writer.MANIFEST}", dtype=str,
                         keep_default_na=False)
  assert (manifest.groupby("group")["split"].nunique() == 1).all()
  assert (manifest.groupby("sha256")["split"].nunique() == 1).all()
  builder = tfds.builder_from_directory(summary.output_dir)
  record = next(iter(tfds.as_numpy(builder.as_dataset(split="train"))))
  assert record["image"].shape == (78, 78, 1)


def test_balance_and_copies_give_the_promised_counts(synthetic, tmp_path):
  folder, first = synthetic
  summary, _ = create_records.create_records(
      data_dir=str(folder), output_dir=str(tmp_path / "rec"), synth_num_images=60,
      balance="undersample", augment_copies=2, image_size=(32, 32), num_workers=1,
      progress=False)
  smallest = min(first.class_counts["train"].values())
  assert set(summary.class_counts["train"].values()) == {smallest * 3}
  assert summary.image_shape == [32, 32]
  meta = json.loads((tmp_path / "rec" / writer.HEP2TF_JSON).read_text())
  assert meta["balance"] == "undersample" and meta["augment_copies"] == 2
  assert meta["splits"]["train"] == smallest * 3 * 6
  counts = json.loads((tmp_path / "rec" / writer.CLASS_COUNTS).read_text())
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
  table = pd.read_csv(f"{summary.output_dir}/{writer.MANIFEST}", dtype=str)
  table["path"] = table["file_name"]
  table.loc[3, "path"] = "missing.png"
  table[["path", "label", "group"]].to_csv(folder / "cells.csv", index=False)
  out = tmp_path / "rec"
  code = _run_main([f"--dataset=csv", f"--data_dir={folder}",
                    "--csv_path=cells.csv", "--group_column=group",
                    "--on_error=skip", f"--output_dir={out}", "--name=cells",
                    "--num_workers=1"])
  assert code == errors.EXIT_SKIPPED
  assert "missing.png" in (out / writer.REJECTS).read_text()
  assert sum(json.loads((out / writer.HEP2TF_JSON).read_text())["splits"].values()) == 59


def test_image_size_flag():
  assert create_records.parse_image_size("96") == (96, 96)
  assert create_records.parse_image_size("96,128") == (96, 128)
  assert create_records.parse_image_size(None) is None
  with pytest.raises(errors.InputError):
    create_records.parse_image_size("big")
