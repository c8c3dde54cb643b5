"""Where a conversion's time goes: CPU and wall seconds per stage.

`Stages` is filled by `create.create_records` and `writer.write_records` and lands in
the `WriteSummary` (logged at the end of a conversion; printed per stage by
benchmarks/converter.py). Parent stages are timed around the call (process CPU time
of the parent, so other load on the machine does not inflate them); the worker
stages add up the CPU seconds each worker reports per image (`plan.Made.seconds`),
and "workers: start-up, pickling" is what the pool's processes spent beyond that
(their `RUSAGE_CHILDREN` time, read once the pool has stopped).
"""

from __future__ import annotations

import contextlib
import resource
import time
from typing import Iterator

PARENT, WORKERS = "parent", "workers"


class Stages:
  """{stage: [cpu seconds, wall seconds]} in the order the stages first ran."""

  def __init__(self):
    self.seconds: dict[str, list[float]] = {}

  def add(self, name: str, cpu: float, wall: float = 0.0) -> None:
    entry = self.seconds.setdefault(name, [0.0, 0.0])
    entry[0] += cpu
    entry[1] += wall

  @contextlib.contextmanager
  def timed(self, name: str) -> Iterator[None]:
    """Adds the parent's CPU and wall time of the block to `name`."""
    cpu, wall = time.process_time(), time.perf_counter()
    try:
      yield
    finally:
      self.add(name, time.process_time() - cpu, time.perf_counter() - wall)

  def to_json(self) -> dict[str, dict[str, float]]:
    return {name: {"cpu_s": round(cpu, 4), "wall_s": round(wall, 4)}
            for name, (cpu, wall) in self.seconds.items()}

  def describe(self) -> str:
    """One line: each stage's CPU seconds and its share of the total."""
    total = sum(cpu for cpu, _ in self.seconds.values()) or 1e-9
    return "; ".join(f"{name} {cpu:.2f} s ({cpu / total:.0%})"
                     for name, (cpu, _) in self.seconds.items())


def children_cpu() -> float:
  """CPU seconds of this process's finished (waited-for) children so far."""
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime
