"""runlock.py and RunDir.held: one run at a time on a run directory, stale locks
taken over, --force_unlock, and no run folder left by a run that never started."""

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from hep2tf import rundir, runlock
from hep2tf.runlock import RunLock, RunLocked


def _write_lock(run_dir, **fields):
  holder = dict(host=socket.gethostname(), pid=os.getpid(),
                started="2026-01-02T03:04:05+00:00", heartbeat=time.time(),
                command="hep2tf-train --model_dir=x", token="feedbeef")
  holder.update(fields)
  os.makedirs(run_dir, exist_ok=True)
  with open(os.path.join(run_dir, runlock.LOCK_FILE), "w") as f:
    json.dump(holder, f)


def _dead_pid():
  process = subprocess.Popen([sys.executable, "-c", "pass"])
  process.wait()
  return process.pid


def test_a_second_run_stops_at_once_naming_the_holder(tmp_path):
  run = tmp_path / "run"
  first = RunLock.acquire(run)
  try:
    with pytest.raises(RunLocked) as held:
      RunLock.acquire(run)
    message = str(held.value)
    assert message.startswith(f"{run} is in use by another run (host "
                              f"{socket.gethostname()}, pid {os.getpid()}, started ")
    assert "--force_unlock" in message
  finally:
    first.release()
  assert not (run / runlock.LOCK_FILE).exists()
  RunLock.acquire(run).release()


def test_a_lock_whose_pid_is_dead_is_taken_over_with_a_message(tmp_path, capsys):
  pid = _dead_pid()
  _write_lock(tmp_path, pid=pid)
  lock = RunLock.acquire(tmp_path)
  assert lock.holder.pid == os.getpid()
  assert runlock.read_holder(str(tmp_path / runlock.LOCK_FILE)).token == (
      lock.holder.token)
  err = capsys.readouterr().err
  assert f"taking over the lock of {tmp_path} held by host" in err
  assert f"pid {pid} no longer runs on this host" in err
  lock.release()


def test_another_hosts_lock_is_stale_only_without_a_heartbeat(tmp_path, capsys):
  _write_lock(tmp_path, host="gpu-node-7", pid=1, heartbeat=time.time() - 30)
  with pytest.raises(RunLocked, match="host gpu-node-7, pid 1, started "
                     "2026-01-02T03:04:05.00:00, last heartbeat 30 s ago"):
    RunLock.acquire(tmp_path)
  _write_lock(tmp_path, host="gpu-node-7", pid=1, heartbeat=time.time() - 3600)
  RunLock.acquire(tmp_path).release()
  assert "no heartbeat for 60 min (more than 10 min)" in capsys.readouterr().err


def test_force_unlock_takes_a_live_lock_and_the_loser_notices(tmp_path, caplog):
  first = RunLock.acquire(tmp_path, heartbeat_seconds=0.05)
  second = RunLock.acquire(tmp_path, force=True)
  assert runlock.read_holder(first.path).token == second.holder.token
  time.sleep(0.3)
  assert not first._thread.is_alive()   # it stopped refreshing what is not its own
  first.release()                       # and leaves the new holder's lock alone
  assert runlock.read_holder(second.path).token == second.holder.token
  second.release()


def test_the_heartbeat_is_refreshed_while_held(tmp_path):
  lock = RunLock.acquire(tmp_path, heartbeat_seconds=0.05)
  written = runlock.read_holder(lock.path).heartbeat
  time.sleep(0.4)
  assert runlock.read_holder(lock.path).heartbeat > written
  lock.release()


def test_an_unreadable_lock_is_taken_over(tmp_path, capsys):
  (tmp_path / runlock.LOCK_FILE).write_text("{half a lock")
  RunLock.acquire(tmp_path).release()
  assert "the lock file does not parse" in capsys.readouterr().err


def test_a_lock_on_a_gfile_url(tmp_path):
  url = f"ram://{tmp_path.name}/run"
  lock = RunLock.acquire(url)
  with pytest.raises(RunLocked, match="is in use by another run"):
    RunLock.acquire(url)
  lock.release()
  RunLock.acquire(url).release()


def test_overwrite_keeps_the_lock_and_a_run_that_never_started_leaves_nothing(
    tmp_path):
  run = rundir.RunDir(tmp_path / "run")
  with pytest.raises(ValueError, match="bad weights"):
    with run.held():
      os.makedirs(run.path, exist_ok=True)
      open(run.flags_file, "w").write("--epochs=1\n")
      raise ValueError("bad weights")
  assert not os.path.exists(run.path)
  with run.held():
    open(run.history_file, "w").write("epoch,loss\n0,1.0\n")
    run.prepare(overwrite=True)
    assert os.listdir(run.path) == [runlock.LOCK_FILE]
  with pytest.raises(KeyboardInterrupt):
    with run.held():
      open(run.history_file, "w").write("epoch,loss\n0,1.0\n")
      raise KeyboardInterrupt   # after an epoch: the run is kept, to resume
  assert os.listdir(run.path) == [rundir.HISTORY_FILE]
