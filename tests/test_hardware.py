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


class FakeProbe:
  """images/s by policy, counting the calls."""

  def __init__(self, float32, bfloat16):
    self.rates = {"float32": float32, "mixed_bfloat16": bfloat16}
    self.calls = []

  def __call__(self, policy):
    self.calls.append(policy)
    return self.rates[policy]


def measured(probe, flags=AVX512_BF16, env=None, key="cnn", tmp_path=None):
  return hardware.resolve_precision("auto", cpu_flags=flags, environ=env or {},
                                    gpus=(), probe=probe, probe_key=key,
                                    cache=str(tmp_path / "precision.json"))


@pytest.mark.parametrize("float32, bfloat16, expected", [
    (500.0, 400.0, "float32"),          # bfloat16 slower: never chosen
    (500.0, 510.0, "float32"),          # within the noise
    (500.0, 800.0, "mixed_bfloat16"),
])
def test_auto_measures_where_the_flags_say_bfloat16(tmp_path, float32, bfloat16,
                                                    expected):
  probe = FakeProbe(float32, bfloat16)
  policy, reason = measured(probe, tmp_path=tmp_path)
  assert policy == expected, reason
  assert sorted(set(probe.calls)) == ["float32", "mixed_bfloat16"]
  assert f"{bfloat16:.0f} images/s" in reason and "measured now" in reason


def test_the_measurement_is_cached_per_model(tmp_path):
  first = FakeProbe(500.0, 400.0)
  measured(first, tmp_path=tmp_path)
  again = FakeProbe(1.0, 1000.0)       # would say bfloat16 if it were asked
  policy, reason = measured(again, tmp_path=tmp_path)
  assert policy == "float32" and not again.calls and "cached in" in reason
  other_model = FakeProbe(100.0, 300.0)
  assert measured(other_model, key="resnet50", tmp_path=tmp_path)[0] == (
      "mixed_bfloat16")
  assert other_model.calls


def test_no_probe_where_the_flags_decide(tmp_path):
  probe = FakeProbe(1.0, 1000.0)
  assert measured(probe, flags=AVX2, tmp_path=tmp_path)[0] == "float32"
  assert measured(probe, env={"HEP2TF_PRECISION_PROBE": "off"},
                  tmp_path=tmp_path)[0] == "mixed_bfloat16"
  assert not probe.calls


def test_a_failing_probe_or_a_broken_cache_falls_back_safely(tmp_path):
  def broken(policy):
    raise RuntimeError("out of memory")
  policy, reason = measured(broken, tmp_path=tmp_path)
  assert policy == "float32" and "out of memory" in reason
  (tmp_path / "precision.json").write_text("{not json")
  assert measured(FakeProbe(100.0, 300.0), tmp_path=tmp_path)[0] == "mixed_bfloat16"


def test_cache_path_follows_the_environment(tmp_path):
  assert hardware.cache_path({"HEP2TF_CACHE_DIR": str(tmp_path)}) == str(
      tmp_path / "precision.json")
  assert hardware.cache_path({"XDG_CACHE_HOME": "/x"}) == "/x/hep2tf/precision.json"
