"""What this machine runs fast: the mixed-precision policy, decided at start.

A flagfile names an experiment; whether bfloat16 is fast is the machine's business.
`resolve_precision("auto")` picks the policy from the hardware:

  mixed_float16   every visible GPU has compute capability >= 7.0 (tensor cores);
  mixed_bfloat16  no such GPU, and the CPU has native bfloat16 (avx512_bf16 or
                  amx_bf16 in /proc/cpuinfo) that oneDNN may use: ONEDNN_MAX_CPU_ISA
                  (or the older DNNL_MAX_CPU_ISA) does not cap the ISA below it and
                  TF_ENABLE_ONEDNN_OPTS is not 0;
  float32         otherwise. A CPU without native bfloat16 emulates it, about 8x
                  slower than float32 (measured on a 2-core AVX2 EPYC: the CNN at
                  4.7 images/s against 37.4), and mixed_bfloat16 under an AVX2 cap
                  crashed TensorFlow on an AVX-512 host.

Native bfloat16 is not always faster: it depends on the model as much as on the CPU
(the seed-width CNN ran 1.6x faster in bfloat16 on an AVX-512 BF16 EPYC; the narrow
default CNN ran slower there and on an AMX Xeon, where its small convolutions gain
less than the casts around them cost). So where the flags say mixed_bfloat16 and the
caller can run the model's own step (`probe`: the trainer passes one), `auto`
measures both policies on this machine and keeps bfloat16 only if it is at least
`MIN_GAIN` faster. The measurement is kept in a small JSON cache (`cache_path()`:
$HEP2TF_CACHE_DIR, else $XDG_CACHE_HOME/hep2tf, else ~/.cache/hep2tf), keyed by the
CPU model and flags, the ISA cap, the TensorFlow version and the model's signature,
so it is taken once per machine and model. HEP2TF_PRECISION_PROBE=off decides from
the flags alone.

An explicit policy is used as asked. Every answer comes with a one-line reason, which
the trainer logs and writes to RUN/config.json beside the policy.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Iterable, Mapping, Sequence

from hep2tf import atomic

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
CHOICES = ("auto",) + POLICIES + ("none",)   # none: an alias of float32

# oneDNN's ISA levels in increasing order (dnnl_cpu_isa_t); a cap names one of them.
# Aliases share a level: AVX512_CORE_FP16 is AVX10_1_512, AVX512_CORE_AMX is
# AVX10_1_512_AMX, AVX512_CORE_AMX_FP16 is AVX10_1_512_AMX_FP16.
ONEDNN_ISA_LEVELS = {
    "SSE41": 1, "AVX": 2, "AVX2": 3, "AVX2_VNNI": 4, "AVX2_VNNI_2": 5,
    "AVX512_CORE": 6, "AVX512_CORE_VNNI": 7, "AVX512_CORE_BF16": 8,
    "AVX10_1_512": 9, "AVX512_CORE_FP16": 9,
    "AVX10_1_512_AMX": 10, "AVX512_CORE_AMX": 10,
    "AVX10_1_512_AMX_FP16": 11, "AVX512_CORE_AMX_FP16": 11,
}
_NO_CAP = ("", "ALL", "DEFAULT")
# The level oneDNN needs to run bfloat16 natively with each CPU flag.
_BF16_LEVELS = (("amx_bf16", ONEDNN_ISA_LEVELS["AVX512_CORE_AMX"]),
                ("avx512_bf16", ONEDNN_ISA_LEVELS["AVX512_CORE_BF16"]))
MIN_FLOAT16_CAPABILITY = (7, 0)
# bfloat16 is kept only this much faster than float32: below it the measurement's
# noise could decide, and float32 is the more accurate of the two.
MIN_GAIN = 1.05
PROBE_ENV = "HEP2TF_PRECISION_PROBE"
CACHE_FILE = "precision.json"
# policy -> training images/s of the model's own step under that policy.
Probe = Callable[[str], float]


def read_cpu_model(path: str = "/proc/cpuinfo") -> str:
  """The CPU's model name from `path` ("model name"), or platform.processor()."""
  import platform
  try:
    with open(path, encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def read_cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
  """The CPU feature flags of the first processor in `path`; empty off Linux."""
  try:
    with open(path, encoding="utf-8") as f:
      for line in f:
        if line.startswith("flags"):
          return set(line.split(":", 1)[1].split())
  except OSError:
    pass
  return set()


def gpu_capabilities() -> list[tuple[int, int] | None]:
  """Compute capability (major, minor) of each visible GPU; None where unknown."""
  import tensorflow as tf
  found = []
  for device in tf.config.list_physical_devices("GPU"):
    capability = tf.config.experimental.get_device_details(device).get(
        "compute_capability")
    found.append(tuple(capability) if capability else None)
  return found


def onednn_isa_cap(environ: Mapping[str, str] | None = None) -> str | None:
  """The ISA cap set for oneDNN (ONEDNN_MAX_CPU_ISA, else DNNL_MAX_CPU_ISA), upper
  case; None when there is none (unset, ALL or DEFAULT)."""
  environ = os.environ if environ is None else environ
  value = environ.get("ONEDNN_MAX_CPU_ISA", environ.get("DNNL_MAX_CPU_ISA", ""))
  value = value.strip().upper()
  return None if value in _NO_CAP else value


def resolve_precision(requested: str = "auto", *,
                      cpu_flags: Iterable[str] | None = None,
                      environ: Mapping[str, str] | None = None,
                      gpus: Sequence[tuple[int, int] | None] | None = None,
                      probe: Probe | None = None, probe_key: str = "",
                      cache: str | None = None) -> tuple[str, str]:
  """The Keras mixed-precision policy to run, and why.

  Args:
    requested: auto, float32, mixed_bfloat16, mixed_float16, or none (= float32).
    cpu_flags, environ, gpus: the machine's facts; by default read from
      /proc/cpuinfo, os.environ and TensorFlow's visible GPUs (their compute
      capability). Tests pass them in.
    probe: for `auto` on a CPU whose flags say mixed_bfloat16, measures the
      model's step under a policy (images/s); None decides from the flags alone.
    probe_key: what the probe measures (model, input, batch), for the cache.
    cache: the cache file; default `cache_path(environ)`.

  Returns:
    (policy, reason): policy is one of POLICIES; reason is one line for a person.

  Raises:
    ValueError for an unknown `requested`.
  """
  requested = (requested or "auto").strip().lower()
  if requested not in CHOICES:
    raise ValueError(f"unknown mixed precision {requested!r}: expected one of "
                     f"{', '.join(CHOICES)}")
  if requested == "none":
    return "float32", "asked for (--mixed_precision=none, an alias of float32)"
  if requested != "auto":
    return requested, f"asked for (--mixed_precision={requested})"
  gpus = gpu_capabilities() if gpus is None else list(gpus)
  if gpus:
    return _gpu_policy(gpus)
  flags = read_cpu_flags() if cpu_flags is None else set(cpu_flags)
  environ = os.environ if environ is None else environ
  policy, reason = _cpu_policy(flags, environ)
  probing = environ.get(PROBE_ENV, "").strip().lower() not in ("off", "0", "no",
                                                               "false")
  if policy != "mixed_bfloat16" or probe is None or not probing:
    return policy, reason
  key = json.dumps([read_cpu_model(), sorted(f for f, _ in _BF16_LEVELS if f in flags),
                    onednn_isa_cap(environ), probe_key])
  return _measured_policy(probe, key, cache or cache_path(environ))


def cache_path(environ: Mapping[str, str] | None = None) -> str:
  """Where `auto` keeps its precision measurements."""
  environ = os.environ if environ is None else environ
  folder = environ.get("HEP2TF_CACHE_DIR") or os.path.join(
      environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"),
                                                    ".cache"), "hep2tf")
  return os.path.join(folder, CACHE_FILE)


def _measured_policy(probe: Probe, key: str, cache: str) -> tuple[str, str]:
  """mixed_bfloat16 if the probe (or the cache) finds it MIN_GAIN faster."""
  measured = _read_cache(cache).get(key)
  where = f"cached in {cache}"
  if not _valid(measured):
    try:
      measured = _measure(probe)
    except Exception as e:  # noqa: BLE001  a failed probe must not stop the run
      return "float32", (f"auto: CPU has native bfloat16, but measuring it failed "
                         f"({type(e).__name__}: {e}); float32 is the safe choice")
    where = _write_cache(cache, key, measured)
  low, full = measured["mixed_bfloat16"], measured["float32"]
  policy = "mixed_bfloat16" if low >= MIN_GAIN * full else "float32"
  return policy, (f"auto: measured this model's step on this CPU: mixed_bfloat16 "
                  f"{low:.0f} images/s, float32 {full:.0f} "
                  f"({low / full:.2f}x; bfloat16 needs {MIN_GAIN:.2f}x), {where}")


def _measure(probe: Probe, rounds: int = 3) -> dict[str, float]:
  """The best of `rounds` alternating measurements of each policy (a burst of
  other load lowers one round, not the best)."""
  rates: dict[str, float] = {}
  for _ in range(rounds):
    for policy in ("float32", "mixed_bfloat16"):
      rates[policy] = max(rates.get(policy, 0.0), float(probe(policy)))
  return rates


def _valid(measured) -> bool:
  return (isinstance(measured, dict)
          and all(isinstance(measured.get(p), (int, float)) and measured[p] > 0
                  for p in ("float32", "mixed_bfloat16")))


def _read_cache(cache: str) -> dict:
  try:
    with open(cache, encoding="utf-8") as f:
      data = json.load(f)
  except (OSError, ValueError):
    return {}   # none yet, or unreadable: measure again
  return data if isinstance(data, dict) else {}


def _write_cache(cache: str, key: str, measured: dict[str, float]) -> str:
  """Adds the measurement to the cache; says where it went (or why not)."""
  data = _read_cache(cache)
  data[key] = measured
  try:
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    atomic.write_json(cache, data)
  except OSError as e:
    return f"not cached ({cache}: {e.strerror or e})"
  return f"measured now, cached in {cache}"


def _gpu_policy(gpus: Sequence[tuple[int, int] | None]) -> tuple[str, str]:
  shown = ", ".join("unknown" if c is None else f"{c[0]}.{c[1]}" for c in gpus)
  if all(c is not None and tuple(c) >= MIN_FLOAT16_CAPABILITY for c in gpus):
    return "mixed_float16", (f"auto: GPU compute capability {shown} >= 7.0 "
                             "(float16 tensor cores)")
  return "float32", (f"auto: GPU compute capability {shown}; float16 is fast only "
                     "from 7.0 on")


def _cpu_policy(flags: set[str], environ: Mapping[str, str]) -> tuple[str, str]:
  native = [(flag, level) for flag, level in _BF16_LEVELS if flag in flags]
  if not native:
    return "float32", ("auto: CPU without native bfloat16 (no avx512_bf16 or "
                       "amx_bf16), where mixed_bfloat16 is emulated and slower")
  names = "+".join(flag for flag, _ in native)
  if environ.get("TF_ENABLE_ONEDNN_OPTS", "").strip() == "0":
    return "float32", (f"auto: CPU has {names} but TF_ENABLE_ONEDNN_OPTS=0 turns "
                       "off the oneDNN kernels that use it")
  cap = onednn_isa_cap(environ)
  if cap is None:
    return "mixed_bfloat16", f"auto: CPU has {names} (native bfloat16)"
  if cap not in ONEDNN_ISA_LEVELS:
    return "float32", (f"auto: CPU has {names} but ONEDNN_MAX_CPU_ISA={cap} is not "
                       f"an ISA this knows ({', '.join(ONEDNN_ISA_LEVELS)}, ALL)")
  usable = [flag for flag, level in native if ONEDNN_ISA_LEVELS[cap] >= level]
  if usable:
    return "mixed_bfloat16", (f"auto: CPU has {'+'.join(usable)} (native "
                              f"bfloat16) within ONEDNN_MAX_CPU_ISA={cap}")
  return "float32", (f"auto: CPU has {names} but ONEDNN_MAX_CPU_ISA={cap} caps "
                     "oneDNN below it, so bfloat16 would be emulated")
