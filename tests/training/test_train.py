"""One whole train -> evaluate -> predict -> export on tiny records (STYLE.md 9)."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from hep2tf import hardware, rundir
from hep2tf.data import records
from hep2tf.evaluation import evaluate, predict
from hep2tf.training import build, summaries, trainer
from hep2tf.config.train import TrainConfig

from tests.conftest import REPO

SMOKE = dict(model="cnn", epochs=2, batch_size=16, learning_rate=1e-3,
             shuffle_buffer=256, image_summary_every=1)


def smoke_config(records_dir, **overrides):
  return TrainConfig(records_dir=records_dir, **{**SMOKE, **overrides})


@pytest.fixture(scope="module")
def finished_run(tiny_records, tmp_path_factory):
  records_dir, source_dir = tiny_records
  run = str(tmp_path_factory.mktemp("run") / "cnn")
  report = trainer.train_and_evaluate(smoke_config(records_dir), run)
  return run, report, records_dir, source_dir


def event_tags(folder):
  """{plugin name: set of tags} of the event files directly in `folder`."""
  tags = {}
  for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        plugin = value.metadata.plugin_data.plugin_name or "legacy"
        tags.setdefault(plugin, set()).add(value.tag)
  return tags


def test_run_directory_holds_models_history_and_report(finished_run):
  run, report, _, _ = finished_run
  for name in ("best.keras", "model.keras", "config.json", "history.csv",
               "complete.json", "learning_curves.png", "export/saved_model.pb",
               "train.log"):
    assert os.path.getsize(os.path.join(run, name)) > 0, name
  history = pd.read_csv(os.path.join(run, "history.csv"))
  assert list(history["epoch"]) == [0, 1]
  assert {"loss", "val_loss", "mca", "val_mca", "accuracy"} <= set(history.columns)
  assert 0.0 <= report["mca"] <= 1.0 and report["epochs_run"] == 2
  # The precision policy the run resolved, and why, beside the model's config.
  with open(os.path.join(run, "config.json")) as f:
    config = json.load(f)
  assert config["mixed_precision"] in hardware.POLICIES
  assert config["mixed_precision"] == hardware.resolve_precision("auto")[0]
  assert config["mixed_precision_reason"].startswith("auto:")
  assert config["config"]["train"]["mixed_precision"] == "auto"
  assert report["mixed_precision"] == config["mixed_precision"]
  # The policy was the run's: the process is back to float32 afterwards.
  assert keras.mixed_precision.global_policy().name == "float32"
  # The resume state goes once the run is finished.
  assert not os.path.exists(os.path.join(run, "checkpoints"))


def test_tensorboard_shows_scalars_images_text_and_hparams(finished_run):
  run, _, _, _ = finished_run
  train = event_tags(os.path.join(run, "train"))
  validation = event_tags(os.path.join(run, "validation"))
  root = event_tags(run)
  train_scalars = train["scalars"]
  assert {"loss", "accuracy", "mca", "learning_rate", "recall_golgi"} <= train_scalars
  assert {"loss", "accuracy", "mca", "recall_homogeneous"} <= validation["scalars"]
  assert "augmented_batch" in train["images"]
  assert {"confusion_matrix", "predictions"} <= validation["images"]
  assert {"classification_report", "per_class_recall"} <= validation["text"]
  assert "hparams" in root and "hparams/val_mca" in root["scalars"]
  assert "run" in root["text"]      # how it ran: the precision policy and why


def test_finished_run_is_not_overwritten_silently(finished_run):
  run, _, records_dir, _ = finished_run
  with pytest.raises(FileExistsError, match="overwrite"):
    trainer.train_and_evaluate(smoke_config(records_dir), run)


def test_overwrite_starts_afresh_even_from_a_killed_run(tmp_path):
  """A killed run left in --model_dir must not be resumed under --overwrite: its
  checkpoints were made with other settings (a resume would mix the two silently)."""
  killed = tmp_path / "killed"
  (killed / "checkpoints").mkdir(parents=True)
  (killed / "history.csv").write_text("epoch,loss\n0,1.0\n")
  rundir.RunDir(str(killed)).prepare(overwrite=True)
  assert killed.is_dir() and not any(killed.iterdir())
  # Without overwrite an unfinished run is kept, to resume.
  (killed / "history.csv").write_text("epoch,loss\n0,1.0\n")
  rundir.RunDir(str(killed)).prepare(overwrite=False)
  assert (killed / "history.csv").exists()
  (killed / "complete.json").write_text("{}")
  with pytest.raises(FileExistsError, match="overwrite"):
    rundir.RunDir(str(killed)).prepare(overwrite=False)


def test_evaluate_writes_field_metrics(finished_run):
  run, _, _, _ = finished_run
  report = evaluate.evaluate_run(run, "test")
  out = os.path.join(run, "eval", "test")
  with open(os.path.join(out, "metrics.json")) as f:
    stored = json.load(f)
  assert {"aca", "mca", "per_class", "confusion_matrix", "class_names"} <= set(stored)
  assert stored["group_disjoint"] is False   # tiny_records: specimens split at random
  assert stored["mca"] == pytest.approx(report["mca"])
  cm = np.asarray(stored["confusion_matrix"])
  predictions = pd.read_csv(os.path.join(out, "predictions.csv"))
  assert cm.sum() == len(predictions) > 0
  from PIL import Image
  for name in ("confusion_matrix.png", "predictions.png", "learning_curves.png"):
    with Image.open(os.path.join(out, name)) as image:
      width, height = image.size
      assert width >= 300 and height >= 300, name
      assert np.asarray(image.convert("L")).std() > 5, name  # not a blank image
  # TTA averages dihedral views: a different computation, same shape of result.
  tta = evaluate.evaluate_run(run, "test", tta=True, write=False)
  assert np.asarray(tta["confusion_matrix"]).sum() == cm.sum()


def test_training_step_randomises_orientation_and_inference_is_deterministic(
    tiny_records):
  records_dir, _ = tiny_records
  config = smoke_config(records_dir)
  train_model, model, augmenter = build.build_models(config, (78, 78, 1), 6)
  rng = np.random.default_rng(0)
  images = np.zeros((8, 78, 78, 1), np.float32)
  images[:, 10:30, 5:60] = 200.0     # an asymmetric bar in every image
  images += rng.uniform(0, 5, images.shape).astype(np.float32)
  augmented = augmenter(images, training=True).numpy()
  changed = [not np.allclose(a, images[0], atol=1e-3) for a in augmented]
  assert sum(changed) >= 6
  assert not all(np.allclose(augmented[0], a, atol=1e-3) for a in augmented[1:])
  first = model(images, training=False).numpy()
  np.testing.assert_array_equal(first, model(images, training=False).numpy())
  np.testing.assert_allclose(train_model(images, training=False).numpy(), first,
                             rtol=1e-6, atol=1e-6)


def test_predict_and_saved_model_agree_with_evaluate(finished_run):
  run, report, _, source_dir = finished_run
  # The same weights in two graphs: float32 agrees to 1e-4; bfloat16 (auto on a CPU
  # with native bfloat16) rounds each layer to 8 bits of mantissa.
  atol = 1e-4 if report["mixed_precision"] == "float32" else 2e-3
  evaluate.evaluate_run(run, "test")
  predictions = pd.read_csv(os.path.join(run, "eval", "test", "predictions.csv"))
  files = [os.path.join(source_dir, name) for name in predictions["file_name"]]
  frame = predict.predict_files(run, files)
  assert list(frame["class"]) == list(predictions["predicted"])
  served = tf.saved_model.load(os.path.join(run, "export"))
  serve = served.signatures["serving_default"]
  encoded = tf.constant([open(f, "rb").read() for f in files[:16]])
  out = serve(encoded)
  names = [n.decode() for n in out["class_name"].numpy()]
  assert names == list(predictions["predicted"][:16])
  np.testing.assert_allclose(out["probabilities"].numpy(),
                             frame[[c for c in frame.columns if c.startswith("p_")]]
                             .to_numpy()[:16], atol=atol)


def test_nan_loss_stops_with_a_clear_message(tiny_records, tmp_path):
  records_dir, _ = tiny_records
  run = str(tmp_path / "nan")
  config = smoke_config(records_dir, optimizer="sgd", learning_rate=1e12,
                        epochs=3, image_summary_every=0)
  with pytest.raises(trainer.TrainingError, match="NaN"):
    trainer.train_and_evaluate(config, run)
  assert not os.path.exists(os.path.join(run, "complete.json"))
  # The epoch that went NaN was not backed up for resuming.
  assert not os.path.exists(os.path.join(run, "checkpoints", "main",
                                         "latest.weights.h5"))
  assert tf.train.latest_checkpoint(os.path.join(run, "checkpoints", "main")) is None


def _train_command(records_dir, run, *extra):
  return [sys.executable, "-m", "hep2tf.train",
          f"--flagfile={os.path.join(REPO, 'configs', 'smoke.flags')}",
          f"--records_dir={records_dir}", f"--model_dir={run}",
          "--image_summary_every=0", *extra]


def _history_rows(run):
  path = os.path.join(run, "history.csv")
  try:
    return len(pd.read_csv(path))
  except (FileNotFoundError, pd.errors.EmptyDataError):
    return 0


def test_killed_run_resumes_from_last_completed_epoch(tiny_records, tmp_path):
  records_dir, _ = tiny_records
  run = str(tmp_path / "killed")
  command = _train_command(records_dir, run, "--epochs=6", "--batch_size=8")
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
  process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 300
    while _history_rows(run) < 2 and process.poll() is None and time.time() < deadline:
      time.sleep(0.1)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
  finally:
    process.kill()
    process.wait()
  assert not os.path.exists(os.path.join(run, "complete.json"))
  done_before = _history_rows(run)
  result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
  log = result.stdout + result.stderr
  assert "Epoch 1/6" not in log and f"Epoch {done_before + 1}/6" in log
  history = pd.read_csv(os.path.join(run, "history.csv"))
  assert sorted(set(history["epoch"])) == list(range(6))
  with open(os.path.join(run, "complete.json")) as f:
    assert json.load(f)["epochs"] == 6
  with open(os.path.join(run, "flags.txt")) as f:
    assert "--epochs=6" in f.read()


def test_deterministic_runs_give_identical_metrics(tiny_records, tmp_path):
  records_dir, _ = tiny_records
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
  histories = []
  for name in ("a", "b"):
    run = str(tmp_path / name)
    command = _train_command(records_dir, run, "--deterministic", "--seed=7",
                             "--epochs=1", "--steps_per_epoch=4")
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    histories.append(pd.read_csv(os.path.join(run, "history.csv")))
  pd.testing.assert_frame_equal(histories[0], histories[1])


def test_corrupt_shard_stops_training_with_the_shard_named(tiny_records, tmp_path):
  import shutil
  records_dir, _ = tiny_records
  broken = str(tmp_path / "records")
  shutil.copytree(records_dir, broken)
  shard = sorted(glob.glob(os.path.join(broken, "*-train.tfrecord-*")))[0]
  with open(shard, "r+b") as f:
    f.seek(os.path.getsize(shard) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0xFF]))
  config = smoke_config(broken, epochs=1, image_summary_every=0)
  with pytest.raises(trainer.TrainingError) as info:
    trainer.train_and_evaluate(config, str(tmp_path / "run"))
  message = str(info.value)
  assert os.path.basename(shard) in message and "corrupt" in message


def test_a_training_run_parses_hep2tf_json_once(tiny_records, tmp_path,
                                                monkeypatch):
  """One records folder, one parse: the trainer opens the folder as a `Records`
  and hands that object to the reader, the folds and the shard checks.

  Before issue 18 every step took the path and parsed hep2tf.json again (8 parses in
  a plain run). `records.read_info` is the only function that parses the file, so
  counting its calls over a whole (two-step) run catches a step that opens the
  folder again from the path instead of using the object it was given.
  """
  records_dir, _ = tiny_records
  parsed = []
  read_info = records.read_info
  monkeypatch.setattr(records, "read_info",
                      lambda path: parsed.append(path) or read_info(path))
  trainer.train_and_evaluate(smoke_config(records_dir, epochs=1, steps_per_epoch=2),
                             str(tmp_path / "run"))
  assert parsed == [records_dir]


def test_calibrate_explain_abstain_through_evaluate_predict_and_export(finished_run,
                                                                       tmp_path):
  run, _, _, source_dir = finished_run
  report = evaluate.evaluate_run(run, "test", calibrate=True, min_confidence=0.25,
                                 explain_cells=6)
  with open(os.path.join(run, "calibration.json")) as f:
    stored = json.load(f)
  temperature = stored["temperature"]
  assert temperature > 0 and report["temperature"] == pytest.approx(temperature)
  assert stored["split"] == "validation" and 0 <= stored["min_confidence_coverage"] <= 1
  out = os.path.join(run, "eval", "test")
  with open(os.path.join(out, "metrics.json")) as f:
    metrics_json = json.load(f)
  for key in ("ece", "ece_calibrated", "temperature", "coverage_accuracy",
              "accuracy_at_coverage", "by_intensity", "by_specimen", "explanations"):
    assert metrics_json[key] is not None, key
  # Intensity and specimen come from the records: the synthetic set has both.
  assert set(metrics_json["by_intensity"]) == {"intermediate", "positive"}
  predictions = pd.read_csv(os.path.join(out, "predictions.csv"))
  assert sum(s["num_examples"] for s in metrics_json["by_specimen"].values()) == len(
      predictions)
  assert len(metrics_json["group"]["table"]) == len(metrics_json["by_specimen"])
  assert len(metrics_json["coverage_accuracy"]) == 20
  explanations = metrics_json["explanations"]
  assert explanations["num_cells"] == 6 and explanations["mask_lift"] > 0
  assert explanations["intensity_lift"] > 1.0
  assert (predictions["uncertain"] == (predictions["confidence"] < 0.25)).all()
  from PIL import Image
  for name in ("reliability.png", "coverage_accuracy.png", "attributions.png"):
    with Image.open(os.path.join(out, name)) as image:
      assert np.asarray(image.convert("L")).std() > 5, name
  tags = event_tags(out)
  assert {"reliability", "coverage_accuracy", "attributions"} <= tags["images"]
  assert {"ece", "explanations/mask_lift"} <= tags["scalars"]

  # predict and the re-exported SavedModel apply the same temperature.
  # float32 agrees to 1e-4; bfloat16 (auto on a CPU with native bfloat16) rounds each
  # layer to 8 bits of mantissa, and the batches differ between these paths.
  atol = 1e-4 if finished_run[1]["mixed_precision"] == "float32" else 2e-3
  files = [os.path.join(source_dir, name) for name in predictions["file_name"][:5]]
  frame = predict.predict_files(run, files, explain_dir=str(tmp_path / "why"))
  assert list(frame["uncertain"]) == list(frame["confidence"] < 0.25)  # stored P
  probs = frame[[c for c in frame.columns if c.startswith("p_")]].to_numpy()
  np.testing.assert_allclose(probs, predictions[[c for c in predictions.columns
                                                 if c.startswith("p_")]][:5], atol=atol)
  assert len(os.listdir(tmp_path / "why")) == 5
  assert all(os.path.getsize(p) > 0 for p in frame["explanation"])
  served = tf.saved_model.load(os.path.join(run, "export"))
  out_served = served.signatures["serving_default"](
      tf.constant([open(f, "rb").read() for f in files]))
  np.testing.assert_allclose(out_served["probabilities"].numpy(), probs, atol=atol)
  # Both are the best model's own probabilities, scaled by 1 / T in log space.
  model = predict.load_run_model(run)
  batch = np.stack([predict.load_for_model(f, model.input_shape[1:]) for f in files])
  log_raw = np.log(model(batch, training=False).numpy().astype(np.float64))
  scaled = np.exp(log_raw / temperature)
  np.testing.assert_allclose(probs, scaled / scaled.sum(1, keepdims=True), atol=atol)
def test_min_confidence_alone_uses_the_models_own_probabilities(finished_run,
                                                                 tmp_path):
  run = str(tmp_path / "run")
  shutil.copytree(finished_run[0], run,
                  ignore=shutil.ignore_patterns("calibration.json", "eval"))
  report = evaluate.evaluate_run(run, "validation", min_confidence=0.5, write=False)
  assert report["temperature"] is None and report["ece_calibrated"] is None
  assert report["abstention"]["min_confidence"] == 0.5
  assert 0 <= report["abstention"]["validation_coverage"] <= 1


def test_cnn_widths_are_config_fields(tiny_records):
  records_dir, _ = tiny_records
  config = smoke_config(records_dir, cnn_filters="4,8,8,16,24", dense_units=32)
  _, model, _ = build.build_models(config, (78, 78, 1), 6)
  assert [model.get_layer(f"conv{i}").filters for i in range(1, 6)] == [4, 8, 8, 16, 24]
  assert model.get_layer("fc1").units == model.get_layer("fc2").units == 32
  seed = build.build_models(smoke_config(records_dir, cnn_filters="32,64,128,256,512",
                                         dense_units=1024), (78, 78, 1), 6)[1]
  assert seed.get_layer("conv5").filters == 512 and seed.get_layer("fc2").units == 1024
  # The widths are the cnn's alone; other models keep their own hparams.
  alexnet = build.model_hparams(smoke_config(records_dir, model="alexnet_small"))
  assert "filters" not in alexnet and "backbone_trainable" not in alexnet
  assert "backbone_trainable" in build.model_hparams(smoke_config(
      records_dir, model="resnet50"))
  for bad in ("4,8,8,16", "4,8,x,16,24", "4,8,0,16,24"):
    with pytest.raises(ValueError, match="cnn_filters"):
      build.build_models(smoke_config(records_dir, cnn_filters=bad), (78, 78, 1), 6)


def test_recipe_models_take_their_config_fields(tiny_records):
  records_dir, _ = tiny_records
  resnet = build.build_models(smoke_config(records_dir, model="resnet18",
                                           resnet_stem="imagenet", bn_momentum=0.9),
                              (78, 78, 1), 6)[1]
  assert "stem_pool" in [layer.name for layer in resnet.layers]
  assert resnet.get_layer("stage3_block1_2_bn").momentum == 0.9
  assert "stem" not in build.model_hparams(smoke_config(records_dir,
                                                        model="coatnet_mini"))
  # A from-scratch model asked for ImageNet weights is refused by name, not silently
  # trained from scratch.
  with pytest.raises(ValueError, match="alexnet is trained from scratch"):
    build.build_models(smoke_config(records_dir, model="alexnet",
                                    weights="imagenet"), (78, 78, 1), 6)
  _, _, augmenter = build.build_models(smoke_config(
      records_dir, randaugment=2, color_jitter=0.4, resized_crop=0.3), (78, 78, 1), 6)
  assert {"randaugment", "color_jitter", "resized_crop"} <= {
      layer.name for layer in augmenter.layers}


def test_cnn_bn_has_batch_norm_and_the_head_is_a_config_field(tiny_records):
  records_dir, _ = tiny_records
  names = lambda model: [layer.name for layer in model.layers]
  plain = build.build_models(smoke_config(records_dir, model="cnn"), (78, 78, 1), 6)[1]
  assert "bn1" not in names(plain) and "flatten" in names(plain)
  # The registered variant keeps its batch norm when --batch_norm is left false.
  bn = build.build_models(smoke_config(records_dir, model="cnn_bn", batch_norm=False),
                          (78, 78, 1), 6)[1]
  assert {"bn1", "bn5"} <= set(names(bn))
  avg = build.build_models(smoke_config(records_dir, cnn_head="avg"), (78, 78, 1), 6)[1]
  assert "avg_pool" in names(avg) and "flatten" not in names(avg)
  assert avg.get_layer("fc1").kernel.shape[0] == avg.get_layer("conv5").filters
  with pytest.raises(ValueError, match="head"):
    build.build_models(smoke_config(records_dir, cnn_head="max"), (78, 78, 1), 6)


def test_progress_is_a_bar_on_a_terminal_and_a_line_per_epoch_otherwise():
  import io

  class Terminal(io.StringIO):
    def isatty(self):
      return True

  assert trainer.fit_verbosity(Terminal()) == 1
  assert trainer.fit_verbosity(io.StringIO()) == 2


def test_a_run_written_by_5ad9eb9_still_evaluates_and_predicts(finished_run,
                                                                 tmp_path):
  """RUN/config.json as hep2tf 5ad9eb9 wrote it (no version, a flat config; checked
  in from a smoke run of that commit) is read typed: evaluate and predict give what
  they give with this version's config.json."""
  run, _, records_dir, source_dir = finished_run
  old = str(tmp_path / "old")
  # Its calibration.json too (an earlier test may have fitted a temperature).
  shutil.copytree(run, old, ignore=shutil.ignore_patterns("eval"))
  shutil.copy(os.path.join(REPO, "tests", "data", "config_5ad9eb9.json"),
              os.path.join(old, rundir.CONFIG_FILE))
  with open(os.path.join(old, rundir.CONFIG_FILE)) as f:
    assert "version" not in json.load(f)
  now = evaluate.evaluate_run(run, "test", write=False)
  then = evaluate.evaluate_run(old, "test", records_dir=records_dir, write=False)
  assert then["mca"] == now["mca"] and then["num_examples"] == now["num_examples"]
  files = [p for p in sorted(glob.glob(os.path.join(source_dir, "*.png")))
           if "_Mask" not in p][:4]
  np.testing.assert_allclose(
      predict.predict_files(old, files).filter(like="p_").to_numpy(),
      predict.predict_files(run, files).filter(like="p_").to_numpy(), atol=1e-6)


def test_predict_keeps_going_past_bad_files_and_says_why(finished_run, tmp_path):
  run, _, records_dir, source_dir = finished_run
  manifest = pd.read_csv(os.path.join(records_dir, "manifest.csv"))
  good = [os.path.join(source_dir, n) for n in manifest["file_name"][:3]]
  truncated = tmp_path / "truncated.png"
  truncated.write_bytes(open(good[0], "rb").read()[:60])
  text = tmp_path / "notes.png"
  text.write_text("not an image")
  files = [good[0], str(truncated), good[1], str(tmp_path / "missing.png"),
           str(text), good[2]]
  frame = predict.predict_files(run, files, batch_size=2)
  assert list(frame.columns[:4]) == ["file", "status", "class", "confidence"]
  assert list(frame["status"] == "ok") == [True, False, True, False, False, True]
  assert "cannot decode the image, truncated or corrupt" in frame["status"][1]
  assert frame["status"][3] == "file not found"
  assert frame["status"][4].startswith("not a readable image")
  bad = frame[frame["status"] != "ok"]
  assert (bad["class"] == "").all() and bad["confidence"].isna().all()
  # The good files get what they get on their own.
  alone = predict.predict_files(run, good)
  p = [c for c in frame.columns if c.startswith("p_")]
  np.testing.assert_allclose(frame[frame["status"] == "ok"][p].to_numpy(),
                             alone[p].to_numpy(), atol=1e-5)
  assert list(frame[frame["status"] == "ok"]["class"]) == list(alone["class"])
  # The command writes every row and exits with "some inputs skipped".
  out = tmp_path / "predictions.csv"
  env = {**os.environ, "PYTHONPATH": REPO}
  result = subprocess.run([sys.executable, "-m", "hep2tf.predict",
                           f"--model_dir={run}", f"--output={out}", *files],
                          cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
  assert result.returncode == 3, result.stderr[-2000:]
  assert "3 predictions written to" in result.stdout
  assert result.stderr.strip().splitlines()[-1] == (
      "3 of 6 files could not be read; their rows say why in the status column")
  written = pd.read_csv(out, keep_default_na=False)
  assert list(written["status"] == "ok") == [True, False, True, False, False, True]


def test_one_short_line_per_epoch_and_the_class_table_in_the_log(tmp_path, capsys):
  classes = ["Homogeneous", "Speckled", "coarse speckled"]
  names = [f"recall_{build.metric_slug(c)}" for c in classes]
  line = summaries.EpochLine(str(tmp_path), classes, names, num_epochs=20)
  logs = {"loss": 0.5123, "accuracy": 0.9, "mca": 0.88, "val_loss": 0.61,
          "val_accuracy": 0.861, "val_mca": 0.842,
          **dict(zip(names, [0.95, 0.9, 0.8])),
          **{f"val_{n}": v for n, v in zip(names, [0.93, 0.61, 0.99])}}
  line.on_epoch_begin(2)
  line.on_epoch_end(2, logs)
  out = capsys.readouterr().out.splitlines()
  assert len(out) == 1 and len(out[0]) <= 88
  assert out[0].startswith("Epoch 3/20  loss 0.512  val acc 0.861  MCA 0.842  "
                           "lowest Speckled 0.61  0s  ETA ")
  log = (tmp_path / summaries.LOG_FILE).read_text()
  assert log.startswith("Epoch 3/20 (")
  assert "val_mca 0.8420" in log and "recall_speckled" not in log
  assert "coarse speckled        0.8000             0.9900" in log
  line.on_epoch_begin(3)
  line.on_epoch_end(3, logs)
  assert (tmp_path / summaries.LOG_FILE).read_text().count("Epoch ") == 2
  assert "per_class_recall" in event_tags(tmp_path / "validation")["text"]
