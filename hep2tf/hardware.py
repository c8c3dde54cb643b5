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

An explicit policy is used as asked. Every answer comes with a one-line reason, which
the trainer logs and writes to RUN/config.json beside the policy.
"""

from __future__ import annotations

import os
from typing import Iterable, Mapping, Sequence

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
                      gpus: Sequence[tuple[int, int] | None] | None = None
                      ) -> tuple[str, str]:
  """The Keras mixed-precision policy to run, and why.

  Args:
    requested: auto, float32, mixed_bfloat16, mixed_float16, or none (= float32).
    cpu_flags, environ, gpus: the machine's facts; by default read from
      /proc/cpuinfo, os.environ and TensorFlow's visible GPUs (their compute
      capability). Tests pass them in.

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
  return _cpu_policy(flags, environ)


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
