"""convert/beam.py on Beam's DaskRunner, against a dask.distributed cluster of 2
worker processes started here: the local converter's records, and nothing published
when a worker dies."""

import os
import signal

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("apache_beam")
distributed = pytest.importorskip("dask.distributed")

import dask  # noqa: E402

from hep2tf import beam_pipeline, errors  # noqa: E402
from hep2tf.convert import beam, create, runners  # noqa: E402
from hep2tf.convert.plan import ConvertConfig  # noqa: E402
from hep2tf.data.records import (  # noqa: E402
    CLASS_COUNTS, INFO_FILE, MANIFEST, REJECTS, Records)
from tests.convert.test_beam import run_main, shard_records  # noqa: E402

# Never hang CI: each test ends after 300 s (pytest-timeout), and the client and
# the cluster close with timeouts of their own.
pytestmark = pytest.mark.timeout(300)
# Three per class in train, one in validation, two in test; one train image broken.
SPLITS = {"train": 3, "validation": 1, "test": 2}
BROKEN = "train/speckled/2.png"
KILLED = "train/homogeneous/1.png"
OPTIONS = dict(dataset="folder", layout_option=("channels=1",), balance="oversample",
               augment_copies=1, seed=3, num_shards=2, on_error="skip",
               num_workers=1, progress=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  """A dozen 16x16 grey cells in split/class folders, one of them truncated."""
  root = tmp_path_factory.mktemp("dask") / "cells"
  rng = np.random.default_rng(0)
  for split, count in SPLITS.items():
    for label in ("homogeneous", "speckled"):
      (root / split / label).mkdir(parents=True)
      for i in range(count):
        pixels = rng.integers(0, 255, (16, 16), dtype=np.uint8)
        Image.fromarray(pixels).save(root / split / label / f"{i}.png")
  broken = root / BROKEN
  broken.write_bytes(broken.read_bytes()[:60])
  return root


@pytest.fixture(scope="module")
def cluster():
  """A LocalCluster of 2 worker processes (one thread each) and a client of it.

  A task whose worker dies is not retried (allowed-failures 0), so the killed
  worker below fails the run at once rather than after three restarts.
  """
  with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
    cluster = distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None)
  client = distributed.Client(cluster, timeout=60)
  try:
    yield cluster, client
  finally:
    client.close(timeout=30)
    cluster.close(timeout=30)


@pytest.fixture(scope="module")
def local(data):
  """The local converter's records folder, and how many inputs it skipped."""
  out = data.parent / "local"
  _, rejects = create.create_records(ConvertConfig(
      data_dir=str(data), output_dir=str(out), **OPTIONS))
  return out, len(rejects)


def _convert(data, out, cluster):
  args = runners.pipeline_args("dask", cluster.scheduler_address, [])
  return beam.convert_records(ConvertConfig(data_dir=str(data), output_dir=str(out),
                                            **OPTIONS), args)


def _assert_same(ours, theirs):
  records = shard_records(ours)
  assert records == shard_records(theirs)
  assert len(records) == 6 and sum(map(len, records.values())) > 12
  for name in (INFO_FILE, "dataset_info.json", "features.json", MANIFEST,
               CLASS_COUNTS, REJECTS):
    assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name
  assert BROKEN in (ours / REJECTS).read_text()
  assert Records.open(ours).verify() == []


def test_dask_runner_writes_the_local_converters_records(data, local, cluster):
  _, rejects = _convert(data, data.parent / "dask", cluster[0])
  assert len(rejects) == local[1] > 0   # the broken image and its copy
  _assert_same(data.parent / "dask", local[0])
  assert not list(data.parent.glob(".dask.*")), "the staging folder was left behind"


class KillOn(distributed.WorkerPlugin):
  """In every worker (also those started after): LoadAndEncode SIGKILLs its own
  process when it reaches the image `name` while the file `armed` exists.

  (Disarmed by deleting the file: unregistering a plugin broadcasts to every
  worker, and fails while the killed one is being restarted.)
  """

  def __init__(self, name: str, armed: str):
    self.name, self.armed = name, armed

  def setup(self, worker):
    original, name, armed = beam.LoadAndEncode.process, self.name, self.armed

    def process(dofn, row, *args, **kwargs):
      if row["path"].endswith(name) and os.path.exists(armed):
        os.kill(os.getpid(), signal.SIGKILL)
      return original(dofn, row, *args, **kwargs)

    beam.LoadAndEncode.process = process


def test_a_killed_worker_publishes_nothing_and_a_rerun_succeeds(data, local, cluster,
                                                                capsys):
  cluster, client = cluster
  out = data.parent / "killed"
  argv = [f"--data_dir={data}", f"--output_dir={out}", "--dataset=folder",
          "--layout_option=channels=1", "--balance=oversample", "--augment_copies=1",
          "--seed=3", "--num_shards=2", "--on_error=skip", "--num_workers=1",
          "--runner=dask", f"--dask_address={cluster.scheduler_address}"]
  armed = data.parent / "kill-armed"
  armed.touch()
  client.register_plugin(KillOn(KILLED, str(armed)), name="kill")
  code = run_main(argv, [])
  armed.unlink()
  assert code == beam_pipeline.EXIT_PIPELINE_FAILED
  err = capsys.readouterr().err
  assert "KilledWorker" in err and "nothing was published" in err
  assert not out.exists()
  assert not list(data.parent.glob(".killed.*"))
  # The other worker reruns it while the nanny restarts the killed one.
  assert run_main(argv, []) == errors.EXIT_SKIPPED
  _assert_same(out, local[0])


def test_runner_flags_are_checked():
  assert runners.pipeline_args("auto", None, []) == list(runners.DIRECT)
  assert runners.pipeline_args("auto", None, ["--runner=X"]) == ["--runner=X"]
  assert runners.pipeline_args("dask", "tcp://h:8786", ["--dask_npartitions=4"]) == [
      f"--runner={runners.DASK_RUNNER}", "--dask_client_address=tcp://h:8786",
      "--dask_npartitions=4"]
  with pytest.raises(errors.InputError, match="needs --runner=dask"):
    runners.pipeline_args("direct", "tcp://h:8786", [])
  with pytest.raises(errors.InputError, match="give the runner once"):
    runners.pipeline_args("dask", None, ["--runner=FlinkRunner"])
