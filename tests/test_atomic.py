"""atomic.py: whole files and folders or nothing, locally and on gfile URLs."""

import os

import pytest

from hep2tf import atomic


def test_write_replaces_whole_files_and_leaves_no_temporary(tmp_path):
  path = tmp_path / "table.csv"
  atomic.write(path, "first,longer\n")
  atomic.write(path, "second\n")
  atomic.write_json(tmp_path / "x.json", {"a": 1})
  assert path.read_text() == "second\n"
  assert (tmp_path / "x.json").read_text() == '{\n  "a": 1\n}\n'
  assert sorted(os.listdir(tmp_path)) == ["table.csv", "x.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
  path = tmp_path / "config.json"
  atomic.write_json(path, {"epoch": 1})
  with pytest.raises(TypeError):
    atomic.write_json(path, {"epoch": object()})   # not JSON: fails before writing
  with pytest.raises(TypeError):
    atomic.write(path, 12)                         # fails while writing the temp
  assert path.read_text() == '{\n  "epoch": 1\n}\n'
  assert os.listdir(tmp_path) == ["config.json"]


def test_staged_dir_publishes_on_success_and_keeps_the_old_folder_on_error(tmp_path):
  target = tmp_path / "records"
  with atomic.staged_dir(target) as staging:
    assert staging.name == f".records.tmp-{os.getpid()}" and not target.exists()
    (staging / "a.txt").write_text("new")
  assert (target / "a.txt").read_text() == "new"
  with pytest.raises(RuntimeError):
    with atomic.staged_dir(target) as staging:
      (staging / "a.txt").write_text("half")
      raise RuntimeError("crash")
  assert (target / "a.txt").read_text() == "new"
  assert os.listdir(tmp_path) == ["records"]


def test_clean_stale_restores_a_folder_a_dead_process_moved_aside(tmp_path):
  target = tmp_path / "records"
  dead = 2**22 + 12345    # above the default pid_max: no such process
  old = tmp_path / f".records.old-{dead}"
  old.mkdir()
  (old / "a.txt").write_text("old")
  (tmp_path / f".records.tmp-{dead}").mkdir()
  atomic.clean_stale(target)
  assert (target / "a.txt").read_text() == "old"
  assert os.listdir(tmp_path) == ["records"]
