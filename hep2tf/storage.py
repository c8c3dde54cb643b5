"""Paths that may be local or any `tf.io.gfile` URL (gs://, hdfs://, s3://, ram://).

Every path flag of hep2tf (records, run directories, weights, outputs) goes through
these helpers, so a cluster can keep its records and runs on shared storage, as Model
Garden and TFDS do.

What is atomic where (the writes themselves are in atomic.py):
- a local (POSIX) path: whole files are written to a temporary sibling and renamed
  into place (`os.replace`), folders likewise; a crash leaves the old or the new
  version, never half of one. A shared POSIX filesystem (NFS, Lustre) keeps this
  as long as its rename is atomic.
- a URL: a file is written as a temporary sibling and renamed over the target
  (`tf.io.gfile.rename`). On object stores (gs://, s3://) that rename is a
  server-side copy and an object appears whole when it is complete, so a single
  file is still all-or-nothing; HDFS renames files atomically. Folders are never
  atomic on URLs: they are copied object by object (see `copy_tree`), and a reader
  must wait for the file that is written last (`hep2tf.json` for records,
  `complete.json` for a run).

`atomic.publish_dir` puts a finished folder in place either way: a rename where both
sides are local, `copy_tree` otherwise. TensorFlow is imported when a function
needs gfile, so atomic.py's local folder functions stay TensorFlow-free.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator


def is_local(path: str | os.PathLike) -> bool:
  """Whether `path` is a local path (no URL scheme other than file://)."""
  path = os.fspath(path)
  return "://" not in path or path.startswith("file://")


def local_path(path: str | os.PathLike) -> str:
  """A local path without its file:// scheme (a URL comes back unchanged)."""
  path = os.fspath(path)
  return path[len("file://"):] if path.startswith("file://") else path


def abspath(path: str | os.PathLike) -> str:
  """os.path.abspath for local paths; a URL is already absolute."""
  return os.path.abspath(local_path(path)) if is_local(path) else os.fspath(path)


def _tf():
  """TensorFlow, imported on first use (see the module docstring)."""
  import tensorflow as tf
  return tf


def exists(path) -> bool:
  return _tf().io.gfile.exists(os.fspath(path))


def isdir(path) -> bool:
  return _tf().io.gfile.isdir(os.fspath(path))


def makedirs(path) -> None:
  _tf().io.gfile.makedirs(os.fspath(path))


def listdir(path) -> list[str]:
  """Entry names of a folder (without the trailing '/' some filesystems add)."""
  return [name.rstrip("/") for name in _tf().io.gfile.listdir(os.fspath(path))]


def rmtree(path, ignore_errors: bool = False) -> None:
  path = os.fspath(path)
  if is_local(path):
    shutil.rmtree(local_path(path), ignore_errors=ignore_errors)
    return
  tf = _tf()
  try:
    tf.io.gfile.rmtree(path)
  except tf.errors.OpError:
    if not ignore_errors:
      raise


def remove(path) -> None:
  """Deletes one file, local or at a URL."""
  _tf().io.gfile.remove(os.fspath(path))


def open_file(path, mode: str = "r"):
  """A file object: the built-in open for local paths, tf.io.gfile.GFile for URLs."""
  path = os.fspath(path)
  if is_local(path):
    encoding = {} if "b" in mode else {"encoding": "utf-8"}
    return open(local_path(path), mode, **encoding)
  return _tf().io.gfile.GFile(path, mode)


def copy_tree(src: str, dst: str, last: tuple[str, ...] = ()) -> None:
  """Copies the folder `src` to `dst` file by file (either may be local or a URL);
  the names in `last` (relative paths) are copied after all others, so their
  presence tells a reader that the rest is there."""
  gfile = _tf().io.gfile
  src, dst = os.fspath(src).rstrip("/"), os.fspath(dst).rstrip("/")
  files = []
  for root, _, names in gfile.walk(src):
    prefix = root.rstrip("/")[len(src):].strip("/")
    files += ["/".join(filter(None, (prefix, name.rstrip("/")))) for name in names]
  files.sort(key=lambda rel: (rel in last, last.index(rel) if rel in last else 0, rel))
  for rel in files:
    target = f"{dst}/{rel}"
    gfile.makedirs(target.rsplit("/", 1)[0])
    gfile.copy(f"{src}/{rel}", target, overwrite=True)


def local_staging(prefix: str = "hep2tf-") -> str:
  """A fresh local scratch folder (for outputs that are built locally first)."""
  return tempfile.mkdtemp(prefix=prefix)


@contextlib.contextmanager
def local_copy(path) -> Iterator[str]:
  """Yields a local path holding the file `path`: itself when local, else a scratch
  copy (for readers that open local files only: PIL, h5py), removed afterwards."""
  path = os.fspath(path)
  if is_local(path):
    yield local_path(path)
    return
  scratch = local_staging()
  try:
    local = os.path.join(scratch, path.rstrip("/").rsplit("/", 1)[-1])
    _tf().io.gfile.copy(path, local)
    yield local
  finally:
    shutil.rmtree(scratch, ignore_errors=True)
