"""Atomic writes: a file or a folder is there whole, or not at all.

Whatever hep2tf writes for others to read (run files, records folders, figures,
exports, results tables) goes through here: it is written under a temporary name in
the same folder, then renamed over the target, so a crash or a bad input leaves the
old version or the new one, never half of one. What a rename guarantees on each kind
of path (local, NFS, object stores, HDFS) is said in storage.py.

The folder functions need no TensorFlow on local paths, so the synthetic set's
generator (hep2tf.data.synth) uses them in TensorFlow-free processes; on gfile URLs
they, and the file functions, go through storage.py, which imports TensorFlow when
it touches gfile.

  write(path, data)            a whole text or bytes file, local or a gfile URL
  write_json(path, obj)        a JSON file (indent 2, a newline at the end)
  save_model(model, path)      a Keras .keras file
  staging_path(target)         the hidden sibling a folder is built in
  staged_dir(target)           a local folder built in a hidden sibling and renamed
                               into place when the block ends without an error
  publish_dir(staging, target, last)
                               puts a finished folder at `target`: renamed where both
                               are local, copied (`last` files last) elsewhere; the
                               one publish of records folders, local and Beam
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

from hep2tf import storage   # TensorFlow only when gfile is used


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


def publish_dir(staging: str | os.PathLike, target: str | os.PathLike,
                last: tuple[str, ...] = ()) -> None:
  """Puts the finished folder `staging` at `target`, replacing what is there.

  Both local: `staging` is renamed to `target` (atomic); an existing `target` is
  moved aside first (`.<name>.old-<pid>`) and deleted only after. Otherwise (a
  gfile URL on either side, where folders have no rename): an existing `target` is
  deleted, the files are copied with the names in `last` after all others
  (`storage.copy_tree`), and `staging` is removed; not atomic (see storage.py), so
  `last` names the file whose presence tells a reader the folder is whole.
  """
  if not (storage.is_local(staging) and storage.is_local(target)):
    if storage.exists(target):
      storage.rmtree(target)
    storage.copy_tree(os.fspath(staging), os.fspath(target), last=last)
    storage.rmtree(staging, ignore_errors=True)
    return
  staging = pathlib.Path(storage.local_path(staging))
  target = pathlib.Path(storage.local_path(target))
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
  if storage.is_local(src) and storage.is_local(dst):
    os.replace(storage.local_path(src), storage.local_path(dst))
  else:
    import tensorflow as tf
    tf.io.gfile.rename(src, dst, overwrite=True)


def _remove_quietly(path: str) -> None:
  """Removes a temporary file or folder left by a failed write, if there is one."""
  import tensorflow as tf
  try:
    if storage.isdir(path):
      storage.rmtree(path, ignore_errors=True)
    elif storage.exists(path):
      storage.remove(path)
  except (OSError, tf.errors.OpError):
    pass
