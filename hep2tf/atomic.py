"""Atomic writes: a file or a folder is there whole, or not at all.

Whatever hep2tf writes for others to read (run files, records folders, figures,
exports, results tables) goes through here: it is written under a temporary name in
the same folder, then renamed over the target, so a crash or a bad input leaves the
old version or the new one, never half of one. What a rename guarantees on each kind
of path (local, NFS, object stores, HDFS) is said in storage.py.

The folder functions are local and need no TensorFlow, so the synthetic set's
generator (hep2tf.data.synth) uses them in TensorFlow-free processes; the file
functions reach gfile URLs through storage.py, imported when they run.

  write(path, data)            a whole text or bytes file, local or a gfile URL
  write_json(path, obj)        a JSON file (indent 2, a newline at the end)
  save_model(model, path)      a Keras .keras file
  staging_path(target)         the hidden sibling a folder is built in
  staged_dir(target)           a local folder built in a hidden sibling and renamed
                               into place when the block ends without an error
  publish_dir(staging, target) renames a finished local folder over `target`
  clean_stale(target)          removes what a crashed publish left beside `target`
  process_alive(pid)           whether a pid runs on this host (stale leftovers, locks)
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import posixpath
import secrets
import shutil
from typing import Iterator


def temp_sibling(path: str | os.PathLike) -> str:
  """A hidden, unused name beside `path` that ends like it (.keras stays .keras)."""
  path = os.fspath(path)
  folder, name = os.path.split(path)
  return os.path.join(folder, f".tmp-{os.getpid()}-{secrets.token_hex(4)}-{name}")


def write(path: str | os.PathLike, data: str | bytes) -> None:
  """Writes a whole file as a temporary sibling, then replaces `path` with it.

  (Also on URLs: TensorFlow's ram:// filesystem appends when a GFile opens an existing
  file for writing, and a rename is what object stores make whole.)
  """
  from hep2tf import storage   # TensorFlow; see the module docstring
  path = os.fspath(path)
  tmp = temp_sibling(path)
  try:
    with storage.open_file(tmp, "wb" if isinstance(data, bytes) else "w") as f:
      f.write(data)
    _replace(tmp, path)
  except BaseException:
    _remove_quietly(tmp)
    raise


def write_json(path: str | os.PathLike, obj) -> None:
  """Writes `obj` as indented JSON, atomically."""
  write(path, json.dumps(obj, indent=2) + "\n")


def save_model(model, path: str | os.PathLike) -> None:
  """Saves a Keras model (`model.save`) so that a crash leaves the old file or the
  new one at `path`, never half of one."""
  path = os.fspath(path)
  tmp = temp_sibling(path)
  try:
    model.save(tmp)
    _replace(tmp, path)
  except BaseException:
    _remove_quietly(tmp)
    raise


def staging_path(target: str | os.PathLike) -> str:
  """`<parent>/.<name>.tmp-<pid>`: where a folder is built before it is published
  (`staged_dir`; the Beam pipeline on any gfile URL); `clean_stale` knows the name."""
  parent, name = posixpath.split(os.fspath(target).rstrip("/"))
  return posixpath.join(parent, f".{name}.tmp-{os.getpid()}")


@contextlib.contextmanager
def staged_dir(target: str | os.PathLike) -> Iterator[pathlib.Path]:
  """Yields an empty hidden sibling folder of the local folder `target`; when the
  block ends without an error it replaces `target` (`publish_dir`), otherwise it is
  removed and `target` is left as it was.

  The sibling is `staging_path(target)`, which `clean_stale` recognises.
  """
  target = pathlib.Path(target).absolute()
  staging = pathlib.Path(staging_path(target))
  if staging.exists():
    shutil.rmtree(staging)
  staging.mkdir(parents=True)
  try:
    yield staging
    publish_dir(staging, target)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise


def publish_dir(staging: str | os.PathLike, target: str | os.PathLike) -> None:
  """Renames the finished local folder `staging` to `target`; an existing `target`
  is moved aside first (`.<name>.old-<pid>`) and deleted only after."""
  staging, target = pathlib.Path(staging), pathlib.Path(target)
  if not (target.exists() or target.is_symlink()):
    os.rename(staging, target)
    return
  old = target.parent / f".{target.name}.old-{os.getpid()}"
  os.rename(target, old)
  os.rename(staging, target)
  shutil.rmtree(old, ignore_errors=True)


def clean_stale(target: str | os.PathLike) -> None:
  """Removes the `staged_dir` / `publish_dir` leftovers of crashed processes beside
  the local folder `target`; restores an old folder a crash left moved aside."""
  target = pathlib.Path(target)
  parent = target.parent
  if not parent.exists():
    return
  for path in sorted(parent.glob(f".{target.name}.*-*")):
    kind, _, pid = path.name.rpartition("-")
    if not pid.isdigit() or (int(pid) != os.getpid() and process_alive(int(pid))):
      continue
    if kind.endswith(".old") and not target.exists():
      os.rename(path, target)
    elif kind.endswith((".old", ".tmp")):
      shutil.rmtree(path, ignore_errors=True)


def process_alive(pid: int) -> bool:
  """Whether process `pid` runs on this host (one of another user counts)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  except (OSError, OverflowError):
    return False
  return True


def _replace(src: str, dst: str) -> None:
  """Moves a file over `dst`: atomic on local paths; copy + delete on object stores."""
  from hep2tf import storage
  if storage.is_local(src) and storage.is_local(dst):
    os.replace(storage.local_path(src), storage.local_path(dst))
  else:
    import tensorflow as tf
    tf.io.gfile.rename(src, dst, overwrite=True)


def _remove_quietly(path: str) -> None:
  """Removes a temporary file or folder left by a failed write, if there is one."""
  import tensorflow as tf

  from hep2tf import storage
  try:
    if storage.isdir(path):
      storage.rmtree(path, ignore_errors=True)
    elif storage.exists(path):
      tf.io.gfile.remove(path)
  except (OSError, tf.errors.OpError):
    pass
