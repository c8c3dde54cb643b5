"""Shared pieces of the benchmarks: the Figure, the machine, timing, the table.

A figure compares a value with a baseline measured in the same run; `ratio` is always
value / baseline and the target, when there is one, is a bound on that ratio.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import time
from typing import Callable, Iterable

from hep2tf import atomic, hardware

FIGURE_KEYS = ("name", "unit", "value", "baseline", "ratio", "target", "met")


@dataclasses.dataclass
class Figure:
  """One measured figure.

  name: what was measured; unit: of value and baseline (e.g. "images/s", "s", "MiB");
  value, baseline: measured in this run (None when it could not be measured);
  target: a bound on the ratio, as text: ">= 0.8" or "<= 0.5", or None;
  baseline_name: what the baseline is; note: how to read it (caps, projections);
  judged: False when a bound, not a measurement, makes the target undecidable.
  `ratio` and `met` are derived.
  """
  name: str
  unit: str
  value: float | None
  baseline: float | None
  target: str | None = None
  baseline_name: str = ""
  note: str = ""
  judged: bool = True    # False: the figure says nothing about the target (met None)

  @property
  def ratio(self) -> float | None:
    if self.value is None or not self.baseline:
      return None
    return self.value / self.baseline

  @property
  def met(self) -> bool | None:
    return target_met(self.ratio, self.target) if self.judged else None

  def to_json(self) -> dict:
    out = {"name": self.name, "unit": self.unit, "value": _round(self.value),
           "baseline": _round(self.baseline), "ratio": _round(self.ratio),
           "target": self.target, "met": self.met}
    out.update(baseline_name=self.baseline_name, note=self.note)
    return out


def _round(x: float | None, digits: int = 4) -> float | None:
  return None if x is None else float(f"{x:.{digits}g}")


def target_met(ratio: float | None, target: str | None) -> bool | None:
  """Whether `ratio` satisfies a target like ">= 0.8" or "<= 0.5"; None if unknown."""
  if target is None or ratio is None:
    return None
  op, bound = target.split()
  if op == ">=":
    return ratio >= float(bound)
  if op == "<=":
    return ratio <= float(bound)
  raise ValueError(f"target must be '>= x' or '<= x', got {target!r}")


def cpu_model() -> str:
  """The CPU model name from /proc/cpuinfo, or platform.processor()."""
  return hardware.read_cpu_model()


ISA_FLAG_PREFIXES = ("sse4", "avx", "fma", "amx", "f16c")


def cpu_isa_flags() -> list[str]:
  """The CPU's vector ISA flags (avx2, avx512_bf16, amx_bf16, ...), sorted."""
  return sorted(f for f in hardware.read_cpu_flags()
                if f.startswith(ISA_FLAG_PREFIXES))


def usable_cores() -> int:
  """Cores this process may run on (the affinity mask, not the host's count)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:
    return os.cpu_count() or 1


def gpus() -> list[str]:
  """Names of the visible GPUs, e.g. ["NVIDIA H100 (compute 9.0)"]."""
  import tensorflow as tf
  names = []
  for device in tf.config.list_physical_devices("GPU"):
    details = tf.config.experimental.get_device_details(device)
    name = details.get("device_name", device.name)
    capability = details.get("compute_capability")
    if capability:
      name += f" (compute {capability[0]}.{capability[1]})"
    names.append(name)
  return names


def machine_info() -> dict:
  """The machine the figures come from: cores, CPU and its ISA flags, the precision
  policy `auto` resolves to (and why), TF and Keras versions, GPUs."""
  import keras
  import tensorflow as tf
  policy, reason = hardware.resolve_precision("auto")
  return {"cores": usable_cores(), "host_cores": os.cpu_count(),
          "cpu_model": cpu_model(), "cpu_isa_flags": cpu_isa_flags(),
          "onednn_max_cpu_isa": hardware.onednn_isa_cap(),
          "tensorflow": tf.__version__,
          "keras": keras.__version__, "python": platform.python_version(),
          "gpu": gpus(), "mixed_precision": policy,
          "mixed_precision_reason": reason,
          "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def rate(count: int, seconds: float) -> float:
  """count / seconds, guarding against a zero duration."""
  return count / max(seconds, 1e-9)


def timed(fn: Callable[[], object]) -> tuple[float, object]:
  """(seconds, result) of one call."""
  start = time.perf_counter()
  result = fn()
  return time.perf_counter() - start, result


def _cell(x) -> str:
  if x is None:
    return "-"
  if isinstance(x, bool):
    return "yes" if x else "NO"
  if isinstance(x, float):
    return f"{x:,.3g}" if abs(x) < 100 else f"{x:,.0f}"
  return str(x)


def format_table(figures: Iterable[Figure]) -> str:
  """A plain-text table, one row per figure (also valid Markdown)."""
  head = ("figure", "unit", "value", "baseline", "ratio", "target", "met")
  rows = [(f.name, f.unit, _cell(f.value), _cell(f.baseline), _cell(f.ratio),
           f.target or "-", _cell(f.met)) for f in figures]
  widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]

  def line(cells):
    return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

  return "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                   + [line(r) for r in rows])


def write_results(path: str | os.PathLike, machine: dict, figures: Iterable[Figure],
                  settings: dict, seconds: float,
                  errors: dict | None = None) -> dict:
  """Writes results.json (atomically) and returns what it wrote.

  Keys: machine, settings, wall_seconds, figures (Figure.to_json each) and errors
  ({section: message} for sections that failed).
  """
  results = {"machine": machine, "settings": settings,
             "wall_seconds": round(seconds, 1),
             "figures": [f.to_json() for f in figures], "errors": errors or {}}
  atomic.write_json(path, results)
  return results
