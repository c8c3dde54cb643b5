"""Running the conversion pipeline on a Beam runner (the launcher's side of beam.py).

  pipeline_args(runner, dask_address, extra)  the Beam options for beam_pipeline's
                                              --runner / --dask_address and the
                                              options given after `--`
  run(build, pipeline_args, num_workers)      builds the pipeline, runs it to the
                                              end; a runner's failure is a
                                              PipelineError

On Beam's DaskRunner (`--runner=dask`, or `--runner=DaskRunner` among the Beam
options) the pipeline runs against the dask.distributed scheduler at
`--dask_client_address` (beam_pipeline's `--dask_address`); without one, against a
local cluster of `num_workers` worker processes (one thread each) started here and
closed at the end. Each plan chunk is a Dask partition of its own
(`--dask_partition_size=1` unless a partitioning is given), so the chunks spread
over the workers; the runner's Dask client is closed when the run ends. A task
whose worker dies is retried on another worker (dask's
distributed.scheduler.allowed-failures, 3 by default); past that the run fails and
nothing is published.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from hep2tf import errors

DIRECT = ("--runner=DirectRunner",)
DASK_RUNNER = "apache_beam.runners.dask.dask_runner.DaskRunner"
RUNNER_NAMES = {"direct": "DirectRunner", "dask": DASK_RUNNER}


class PipelineError(RuntimeError):
  """The runner failed (a worker died, the scheduler was not reached, a cluster
  went away); nothing was published."""


def pipeline_args(runner: str, dask_address: str | None,
                  extra: Sequence[str]) -> list[str]:
  """Beam options: `runner` ("direct", "dask", or "auto": as `extra` says, the
  DirectRunner when it names none), the Dask scheduler's address, then `extra`.
  InputError when the runner is given twice or the address without --runner=dask."""
  extra = list(extra)
  if dask_address and runner != "dask":
    raise errors.InputError("--dask_address needs --runner=dask")
  if runner == "auto":
    return extra or list(DIRECT)
  if any(arg.split("=")[0] == "--runner" for arg in extra):
    raise errors.InputError(f"--runner={runner} and a --runner after `--`: give "
                            "the runner once")
  args = [f"--runner={RUNNER_NAMES[runner]}"]
  if dask_address:
    args.append(f"--dask_client_address={dask_address}")
  return args + extra


def run(build: Callable[[beam.Pipeline], object], pipeline_args: Sequence[str],
        num_workers: int) -> None:
  """Makes a pipeline with `pipeline_args`, adds the conversion (`build`) and runs it
  to the end. PipelineError (from the runner's exception) when the runner fails;
  InputError when the DaskRunner is asked for and dask is not installed."""
  options = PipelineOptions(list(pipeline_args))
  with _dask_cluster(options, num_workers):
    pipeline = beam.Pipeline(options=options)
    build(pipeline)
    runner = options.view_as(StandardOptions).runner or "DirectRunner"
    result = None
    try:
      result = pipeline.run()
      result.wait_until_finish()
    except Exception as e:
      if errors.is_no_space(e):
        raise
      reason = (str(e).strip().splitlines() or [""])[0]
      raise PipelineError(f"the pipeline failed on {runner.rsplit('.', 1)[-1]} "
                          f"({type(e).__name__}: {reason})") from e
    finally:
      client = getattr(result, "client", None)   # the DaskRunner's
      if client is not None:
        client.close()


def is_dask(runner: str | None) -> bool:
  return (runner or "").rsplit(".", 1)[-1].lower() in ("dask", "daskrunner")


@contextlib.contextmanager
def _dask_cluster(options: PipelineOptions, num_workers: int) -> Iterator[None]:
  """For the DaskRunner: its options completed (the runner's full name, one plan
  chunk per partition) and, without a scheduler address, a local cluster of
  `num_workers` processes for the length of the block."""
  standard = options.view_as(StandardOptions)
  if not is_dask(standard.runner):
    yield
    return
  try:
    from apache_beam.runners.dask.dask_runner import DaskOptions
    from dask import distributed
  except ImportError as e:
    raise errors.InputError(f"the DaskRunner needs dask[distributed] ({e}): pip "
                            "install -e .[dask]") from None
  standard.runner = DASK_RUNNER
  dask_options = options.view_as(DaskOptions)
  if dask_options.npartitions is None and dask_options.partition_size is None:
    dask_options.partition_size = 1
  if dask_options.address or dask_options.scheduler_file:
    yield
    return
  with distributed.LocalCluster(n_workers=num_workers, threads_per_worker=1,
                                processes=True, dashboard_address=None) as cluster:
    dask_options.address = cluster.scheduler_address
    yield
