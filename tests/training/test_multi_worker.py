"""MultiWorkerMirroredStrategy for real: 2 worker processes on 127.0.0.1, TF_CONFIG
made here, the custom loop of hep2tf/training/loop.py.

Every worker runs in its own process group; whatever happens, the groups are killed
in `finally`, and every wait has a timeout.
"""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from tests.conftest import REPO

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
TIMEOUT = 240  # seconds for one job of 2 workers; a hung collective fails the test


def _command(records_dir, run, *extra):
  return [sys.executable, "-m", "hep2tf.train",
          f"--flagfile={os.path.join(REPO, 'configs', 'smoke.flags')}",
          f"--records_dir={records_dir}", f"--model_dir={run}",
          "--image_summary_every=0", *extra]


def _free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _kill(process):
  if process.poll() is None:
    with contextlib.suppress(ProcessLookupError):
      os.killpg(process.pid, signal.SIGKILL)
  process.wait(timeout=30)


@contextlib.contextmanager
def _workers(command, log_dir, tag):
  """Starts 2 workers of one cluster running `command`; yields the processes; kills
  what is left of them on the way out. Logs go to log_dir/<tag>-<index>.log."""
  ports = _free_ports(2)
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  processes = []
  try:
    for index in range(2):
      env = {**ENV, "TF_CONFIG": json.dumps(
          {"cluster": cluster, "task": {"type": "worker", "index": index}})}
      log = open(os.path.join(log_dir, f"{tag}-{index}.log"), "w")
      processes.append(subprocess.Popen(
          command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
          start_new_session=True))
      log.close()
    yield processes
  finally:
    for process in processes:
      _kill(process)


def _wait_all(processes, log_dir, tag):
  deadline = time.time() + TIMEOUT
  for index, process in enumerate(processes):
    try:
      process.wait(timeout=max(1, deadline - time.time()))
    except subprocess.TimeoutExpired:
      pass
  for index, process in enumerate(processes):
    with open(os.path.join(log_dir, f"{tag}-{index}.log")) as f:
      log = f.read()
    assert process.returncode == 0, f"worker {index} ({process.returncode}):\n" + \
        log[-3000:]


def _log(log_dir, tag, index):
  with open(os.path.join(log_dir, f"{tag}-{index}.log")) as f:
    return f.read()


def test_two_workers_train_one_epoch_and_only_the_chief_writes(tiny_records,
                                                                tmp_path):
  records_dir, _ = tiny_records
  run = str(tmp_path / "mw")
  with _workers(_command(records_dir, run, "--distribution=multi_worker",
                         "--epochs=1", "--steps_per_epoch=3"),
                str(tmp_path), "a") as processes:
    _wait_all(processes, str(tmp_path), "a")
  written = set(os.listdir(run))
  assert {"best.keras", "model.keras", "history.csv", "complete.json", "flags.txt",
          "config.json", "export"} <= written
  # Nothing of the other worker's is left in the run (its scratch checkpoints lived
  # outside it) and the resume state is gone once the run is finished.
  assert "checkpoints" not in written
  assert not any(name.startswith(".tmp") or "workertemp" in name for name in written)
  history = pd.read_csv(os.path.join(run, "history.csv"))
  assert len(history) == 1 and np.isfinite(history["loss"]).all()
  assert np.isfinite(history["val_loss"]).all()
  for index in range(2):
    log = _log(str(tmp_path), "a", index)
    assert ("MultiWorkerMirroredStrategy with cluster_spec" in log
            and "num_workers = 2" in log)
    assert "1 epochs" in log
  # Only the chief's events: one writer per folder, train and validation.
  assert len(os.listdir(os.path.join(run, "train"))) == 1


@pytest.fixture(scope="module")
def one_shard_records(tiny_records, tmp_path_factory):
  """The tiny set as one shard per split: with fewer files than workers the input is
  sharded by example, so each global batch is the same examples as in one process."""
  from hep2tf.convert import create
  from hep2tf.convert.plan import ConvertConfig
  _, source_dir = tiny_records
  out = str(tmp_path_factory.mktemp("one_shard") / "records")
  create.create_records(ConvertConfig(
      data_dir=source_dir, output_dir=out, synth_num_images=180, synth_seed=3,
      group_split=False, num_workers=1, num_shards=1, progress=False))
  return out


FIXED_ORDER = ("--norotation", "--norot90", "--noflips", "--dropout=0",
               "--shuffle_buffer=1", "--seed=1", "--epochs=1", "--steps_per_epoch=4",
               "--optimizer=sgd", "--learning_rate=0.01", "--mixed_precision=float32")


def test_two_workers_end_with_the_weights_of_one_process(one_shard_records,
                                                         tmp_path):
  from hep2tf import models
  from hep2tf.training import build, trainer
  from hep2tf.config.train import TrainConfig
  records_dir = one_shard_records
  run = str(tmp_path / "mw")
  with _workers(_command(records_dir, run, "--distribution=multi_worker",
                         *FIXED_ORDER), str(tmp_path), "b") as processes:
    # The single-process run (the same loop) in this process, while the workers start.
    single = str(tmp_path / "single")
    config = TrainConfig(
        records_dir=records_dir, model="cnn", batch_size=16, image_summary_every=0,
        rotation=False, rot90=False, flips=False, dropout=0.0, shuffle_buffer=1,
        seed=1, epochs=1, steps_per_epoch=4, optimizer="sgd", learning_rate=0.01,
        mixed_precision="float32")
    trainer.train_and_evaluate(config, single)
    _wait_all(processes, str(tmp_path), "b")
  one = models.load_model(os.path.join(single, "model.keras")).get_weights()
  two = models.load_model(os.path.join(run, "model.keras")).get_weights()
  assert len(one) == len(two)
  for a, b in zip(one, two):
    if a.ndim > 1:  # kernels: each within 1e-4 relative
      assert np.linalg.norm(a - b) <= 1e-4 * np.linalg.norm(a)
  flat_one = np.concatenate([w.ravel() for w in one])
  flat_two = np.concatenate([w.ravel() for w in two])
  assert np.linalg.norm(flat_one - flat_two) <= 1e-4 * np.linalg.norm(flat_one)
  # Four SGD steps moved the weights far more than the tolerance: the check bites.
  init = build.build_models(config, (78, 78, 1), 6)[1]
  assert not np.allclose(flat_one, np.concatenate(
      [w.ravel() for w in init.get_weights()]), atol=1e-3)
  losses = [pd.read_csv(os.path.join(r, "history.csv"))["loss"].iloc[0]
            for r in (single, run)]
  assert np.isfinite(losses).all() and losses[1] == pytest.approx(losses[0],
                                                                  rel=1e-4)


def _ready_to_kill(run):
  """After the first epoch was checkpointed (so the restart resumes from it)."""
  path = os.path.join(run, "history.csv")
  try:
    rows = len(pd.read_csv(path))
  except (FileNotFoundError, pd.errors.EmptyDataError):
    rows = 0
  return rows >= 1 and os.path.exists(os.path.join(run, "checkpoints", "main",
                                                   "checkpoint"))


def test_a_killed_worker_and_a_restarted_job_end_with_all_epochs(tiny_records,
                                                                  tmp_path):
  records_dir, _ = tiny_records
  run = str(tmp_path / "mw")
  command = _command(records_dir, run, "--distribution=multi_worker",
                     "--epochs=3", "--steps_per_epoch=30")
  with _workers(command, str(tmp_path), "c1") as processes:
    deadline = time.time() + TIMEOUT
    while not _ready_to_kill(run) and time.time() < deadline and all(
        p.poll() is None for p in processes):
      time.sleep(0.1)
    time.sleep(1)  # into the second epoch's 30 steps
    assert all(p.poll() is None for p in processes), "the job ended before the kill"
    os.killpg(processes[1].pid, signal.SIGKILL)
    # The survivor blocks in a collective with a dead peer; a scheduler would
    # restart the whole job, and so does this test.
  assert not os.path.exists(os.path.join(run, "complete.json"))
  with _workers(command, str(tmp_path), "c2") as processes:
    _wait_all(processes, str(tmp_path), "c2")
  chief = _log(str(tmp_path), "c2", 0)
  assert "Epoch 1/3" not in chief and "Epoch 3/3" in chief
  history = pd.read_csv(os.path.join(run, "history.csv"))
  assert sorted(set(history["epoch"])) == [0, 1, 2]
  with open(os.path.join(run, "complete.json")) as f:
    assert json.load(f)["epochs"] == 3
  from hep2tf.evaluation import evaluate
  report = evaluate.evaluate_run(run, "validation", write=False)
  assert 0.0 <= report["mca"] <= 1.0
