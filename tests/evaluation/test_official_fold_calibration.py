"""evaluate --calibrate / --min_confidence on a cross-validation trial fit on the fold
that trial held out, also when the folds are the dataset's own (sweep
--folds=official): never on made folds, which hold the trial's training cells."""

import json
import os
import shutil

import pandas as pd

from hep2tf import rundir
from hep2tf.config.run import read_run_config
from hep2tf.config.train import TrainConfig
from hep2tf.data import folds
from hep2tf.data.records import MANIFEST, Records
from hep2tf.evaluation import calibration, evaluate
from hep2tf.training import sweep, trainer

SHARES = (0.6, 0.25, 0.15)   # official folds of unequal sizes: made folds are not


def _with_official_folds(records_dir, out):
  """A copy of the records whose training split has official folds fold_0..2 (as
  C-NMC ships them), of SHARES of its cells; returns {fold name: ids}."""
  shutil.copytree(records_dir, out)
  path = os.path.join(out, MANIFEST)
  manifest = pd.read_csv(path, dtype=str, keep_default_na=False)
  ids = sorted(set(manifest.loc[manifest["split"] == "train", "id"]))
  cuts = [0, round(SHARES[0] * len(ids)), round((SHARES[0] + SHARES[1]) * len(ids)),
          len(ids)]
  fold_of = {i: f"fold_{k}" for k in range(3) for i in ids[cuts[k]:cuts[k + 1]]}
  manifest["fold"] = manifest["id"].map(fold_of).fillna("")
  manifest.to_csv(path, index=False)
  return {f"fold_{k}": set(ids[cuts[k]:cuts[k + 1]]) for k in range(3)}


def test_calibrate_on_an_official_fold_trial_fits_on_exactly_its_held_out_fold(
    tiny_records, tmp_path):
  official = _with_official_folds(tiny_records[0], str(tmp_path / "records"))
  base = TrainConfig(records_dir=str(tmp_path / "records"), model="cnn", epochs=1,
                     steps_per_epoch=2, batch_size=16, cnn_filters="4,4,8,8,8",
                     dense_units=8, shuffle_buffer=64, image_summary_every=0,
                     mixed_precision="float32")
  num_folds, base = sweep.resolve_folds("official", base)
  trial = next(t for t in sweep.make_trials(base, {}, str(tmp_path / "sweep"),
                                            num_folds) if t.fold == 1)
  trainer.train_and_evaluate(trial.config, trial.run_dir)

  # The held-out data evaluate fits on: exactly fold_1's cells.
  run = read_run_config(rundir.RunDir(trial.run_dir))
  records = Records.open(run.records_dir)
  split, dataset = evaluate.validation_dataset(run, records, batch_size=32)
  seen = {i.decode() for _, _, meta in dataset for i in meta["id"].numpy()}
  assert split == "train" and seen == official["fold_1"]
  made = folds.FoldSpec(1, 3, holdout=True, seed=base.seed)   # what leaked before
  assert records.num_examples("train", made) != len(official["fold_1"])

  evaluate.evaluate_run(trial.run_dir, "test", calibrate=True, min_confidence=0.5,
                        write=False)
  with open(os.path.join(trial.run_dir, calibration.CALIBRATION_FILE)) as f:
    fitted = json.load(f)
  assert fitted["split"] == "train"
  assert fitted["num_examples"] == len(official["fold_1"])
  assert fitted["min_confidence_split"] == "train"
