"""Tests of hep2tf.hardware: the precision policy from faked CPU flags, env and GPUs."""

import pytest

from hep2tf import hardware

AVX2 = {"fpu", "sse4_2", "avx", "avx2", "fma"}
AVX512_BF16 = AVX2 | {"avx512f", "avx512bw", "avx512_bf16"}
SAPPHIRE = AVX512_BF16 | {"amx_tile", "amx_bf16", "amx_int8"}


def resolve(requested="auto", flags=AVX2, env=None, gpus=()):
  return hardware.resolve_precision(requested, cpu_flags=flags, environ=env or {},
                                    gpus=gpus)


def test_explicit_policy_wins_over_the_hardware():
  assert resolve("mixed_bfloat16", flags=AVX2)[0] == "mixed_bfloat16"
  assert resolve("float32", flags=SAPPHIRE, gpus=[(9, 0)])[0] == "float32"
  assert resolve("mixed_float16")[0] == "mixed_float16"
  policy, reason = resolve("none", flags=SAPPHIRE)
  assert policy == "float32" and "alias" in reason
  with pytest.raises(ValueError, match="auto, float32"):
    resolve("bfloat16")


@pytest.mark.parametrize("flags, env, expected", [
    (AVX2, {}, "float32"),                  # emulated bfloat16 is ~8x slower there
    (AVX512_BF16, {}, "mixed_bfloat16"),
    (SAPPHIRE, {}, "mixed_bfloat16"),
    (SAPPHIRE, {"ONEDNN_MAX_CPU_ISA": "ALL"}, "mixed_bfloat16"),
    (SAPPHIRE, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, "float32"),
    (SAPPHIRE, {"ONEDNN_MAX_CPU_ISA": "avx512_core"}, "float32"),
    (SAPPHIRE, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_VNNI"}, "float32"),
    (SAPPHIRE, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, "mixed_bfloat16"),
    (SAPPHIRE, {"ONEDNN_MAX_CPU_ISA": "avx10_1_512_amx"}, "mixed_bfloat16"),
    (SAPPHIRE, {"DNNL_MAX_CPU_ISA": "AVX2"}, "float32"),        # the older name
    (SAPPHIRE, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16",
                "DNNL_MAX_CPU_ISA": "AVX2"}, "mixed_bfloat16"),  # ONEDNN_ first
    (SAPPHIRE, {"ONEDNN_MAX_CPU_ISA": "AVX9000"}, "float32"),   # unknown: be safe
    (SAPPHIRE, {"TF_ENABLE_ONEDNN_OPTS": "0"}, "float32"),
    (AVX2 | {"amx_bf16"}, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_BF16"}, "float32"),
    (AVX2 | {"amx_bf16"}, {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, "mixed_bfloat16"),
])
def test_auto_on_cpus(flags, env, expected):
  policy, reason = resolve(flags=flags, env=env)
  assert policy == expected, reason
  assert reason.startswith("auto:")


def test_auto_reason_says_what_decided():
  assert "AVX2" in resolve(flags=SAPPHIRE, env={"ONEDNN_MAX_CPU_ISA": "AVX2"})[1]
  assert "no avx512_bf16" in resolve(flags=AVX2)[1]


@pytest.mark.parametrize("gpus, expected", [
    ([(8, 0)], "mixed_float16"),
    ([(7, 0), (9, 0)], "mixed_float16"),
    ([(6, 1)], "float32"),
    ([(8, 6), (6, 1)], "float32"),     # the slowest replica sets the pace
    ([None], "float32"),
])
def test_auto_on_gpus_ignores_the_cpu(gpus, expected):
  policy, reason = resolve(flags=SAPPHIRE, gpus=gpus)
  assert policy == expected and "GPU" in reason


def test_reads_cpu_flags_from_cpuinfo(tmp_path):
  path = tmp_path / "cpuinfo"
  path.write_text("processor\t: 0\nmodel name\t: Some CPU\n"
                  "flags\t\t: fpu avx2 avx512_bf16 amx_bf16\n\nprocessor\t: 1\n")
  assert hardware.read_cpu_flags(str(path)) == {"fpu", "avx2", "avx512_bf16",
                                                "amx_bf16"}
  assert hardware.read_cpu_flags(str(tmp_path / "missing")) == set()


def test_policy_is_always_one_of_three_on_this_machine():
  policy, reason = hardware.resolve_precision("auto")
  assert policy in hardware.POLICIES and reason
