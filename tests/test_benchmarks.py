"""Smoke test of the benchmark harness: the quick path at toy size, via its command."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIGURE_KEYS = {"name", "unit", "value", "baseline", "ratio", "target", "met"}
MACHINE_KEYS = {"cores", "cpu_model", "tensorflow", "gpu", "cpu_isa_flags",
                "mixed_precision", "mixed_precision_reason"}


def _run(tmp_path, sections: str, timeout: int) -> tuple[dict, str]:
  output = tmp_path / "results.json"
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  done = subprocess.run(
      [sys.executable, "-m", "benchmarks.run", "--quick", "--num_images=300",
       f"--only={sections}", f"--work_dir={tmp_path / 'work'}",
       f"--output={output}", "--cap_seconds=3"],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads(output.read_text()), done.stdout


def _check_schema(results: dict) -> None:
  assert MACHINE_KEYS <= set(results["machine"])
  assert results["machine"]["cores"] >= 1
  assert results["machine"]["mixed_precision"] in (
      "float32", "mixed_bfloat16", "mixed_float16")
  assert results["errors"] == {}
  for figure in results["figures"]:
    assert FIGURE_KEYS <= set(figure), figure
    if figure["value"] is not None and figure["baseline"]:
      # value, baseline and ratio are each rounded to 4 significant digits (up to
      # 5e-4 relative apiece), so the stored ratio may differ from value / baseline
      # by up to 1.5e-3.
      assert figure["ratio"] == pytest.approx(
          figure["value"] / figure["baseline"], rel=2e-3)
    assert figure["met"] in (True, False, None)
    if figure["target"] is None:
      assert figure["met"] is None


@pytest.mark.timeout(600)
def test_quick_converter_and_reader_write_results(tmp_path):
  results, stdout = _run(tmp_path, "converter,reader", timeout=590)
  _check_schema(results)
  names = [f["name"] for f in results["figures"]]
  assert len(names) == 6, names
  assert any("2 workers" in n for n in names)
  assert any("from CPU seconds" in n for n in names)
  # The converter's CPU seconds by stage, for 1 and 2 workers.
  assert "converter CPU seconds by stage" in stdout
  assert "encode: tf.train.Example" in stdout
  assert "per-round ratio min" in stdout
  assert any("image_dataset_from_directory" in n for n in names)
  rates = [f["value"] for f in results["figures"] if f["unit"] == "images/s"]
  assert all(r > 0 for r in rates)
  # The table is printed, one row per figure.
  assert sum(line.startswith("| ") for line in stdout.splitlines()) == 1 + len(names)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_all_sections(tmp_path):
  results, _ = _run(tmp_path, "converter,reader,training,loop,time_to_accuracy",
                    timeout=590)
  _check_schema(results)
  names = [f["name"] for f in results["figures"]]
  assert any(n.startswith("training loop overhead") for n in names)
  assert any(n == "training loop vs bare step" for n in names)
  assert any(n.startswith("time to validation MCA") for n in names)
  assert any(n.startswith("training step FLOP rate vs matmul") for n in names)
  assert results["machine"]["yardstick"]["factor"] > 0


@pytest.mark.timeout(600)
def test_quick_loop_against_a_bare_step(tmp_path):
  """The loop-vs-bare figure through the command, tiny: its structure, not a speed."""
  results, stdout = _run(tmp_path, "loop", timeout=590)
  _check_schema(results)
  [figure] = results["figures"]
  assert figure["name"] == "training loop vs bare step"
  assert figure["unit"] == "images/s" and figure["target"] == ">= 0.95"
  assert figure["value"] > 0 and figure["baseline"] > 0
  assert "3 rounds of 20 steps" in figure["note"] and "min" in figure["note"]
  assert "training loop vs bare step" in stdout
  assert results["settings"]["loop_steps"] == 20
