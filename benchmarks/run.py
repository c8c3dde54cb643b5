"""Runs the benchmarks, prints a table and writes benchmarks/results.json.

  python -m benchmarks.run                  # full: the 13,596-cell set, < 20 min
  python -m benchmarks.run --quick          # toy size, < 3 min
  python -m benchmarks.run --only=reader,training

Run it on a quiet machine: the figures are rates, and other load lowers them unevenly.
Inputs are prepared under --work_dir (the synthetic source is drawn once and reused).
A section that fails is reported under "errors" in results.json; the others still run.
"""

from __future__ import annotations

import dataclasses
import os
import time
import traceback
from typing import Sequence

from absl import app
from absl import flags
from absl import logging

from benchmarks import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTIONS = ("converter", "reader", "training", "step", "time_to_accuracy")


@dataclasses.dataclass(frozen=True)
class Settings:
  """Sizes of one benchmark run. FULL and QUICK are the two shipped ones."""
  num_images: int
  converter_repeats: int
  memory_sizes: tuple[int, int] | None   # None: a quarter of the set and all of it
  reader_passes: int
  fit_steps: int
  fit_epochs: int
  target_mca: float
  cap_seconds: float
  recipe_cap_seconds: float


FULL = Settings(num_images=13596, converter_repeats=2, memory_sizes=None,
                reader_passes=2, fit_steps=20, fit_epochs=3, target_mca=0.90,
                cap_seconds=330, recipe_cap_seconds=330)
QUICK = Settings(num_images=600, converter_repeats=1, memory_sizes=(150, 600),
                 reader_passes=1, fit_steps=3, fit_epochs=2, target_mca=0.90,
                 cap_seconds=20, recipe_cap_seconds=20)


def run_benchmarks(settings: Settings, *, work_dir: str, output: str,
                   config_path: str, sections: Sequence[str] = SECTIONS,
                   seed: int = 0) -> dict:
  """Prepares the inputs, runs `sections` in order and writes `output` (JSON).

  Args:
    settings: sizes (FULL, QUICK, or a smaller one for tests).
    work_dir: where inputs and scratch outputs go.
    output: path of results.json; rewritten after each section.
    config_path: the train flagfile of the CNN (configs/cnn.flags).
    sections: a subset of SECTIONS.
    seed: of the synthetic set, the splits and the training runs.

  Returns:
    What results.json holds: machine, settings, wall_seconds, figures, errors.
  """
  unknown = sorted(set(sections) - set(SECTIONS))
  if unknown:
    raise ValueError(f"unknown sections {unknown}; known: {', '.join(SECTIONS)}")
  # Imported here so that `--help` does not load TensorFlow.
  from benchmarks import (converter, data, reader, step_profile, time_to_accuracy,
                          training)
  from hep2tf.config.train import config_from_flagfile

  start = time.perf_counter()
  machine = _machine(sections)
  logging.info("Preparing %d images under %s", settings.num_images, work_dir)
  inputs = data.prepare(work_dir, settings.num_images, seed=seed)
  config = config_from_flagfile(config_path, records_dir=inputs.records.path,
                                train_split=inputs.train_split,
                                eval_split=inputs.eval_split, seed=seed)
  jobs = {
      "converter": lambda: converter.run(
          inputs, work_dir, repeats=settings.converter_repeats,
          memory_sizes=settings.memory_sizes),
      "reader": lambda: reader.run(inputs, batch_size=config.batch_size,
                                   passes=settings.reader_passes),
      "training": lambda: training.run(config, work_dir, steps=settings.fit_steps,
                                       epochs=settings.fit_epochs),
      "step": lambda: step_profile.run(config, steps=max(5, settings.fit_steps),
                                       repeats=5),
      "time_to_accuracy": lambda: time_to_accuracy.run(
          config, inputs, work_dir, target=settings.target_mca,
          cap_seconds=settings.cap_seconds,
          recipe_cap_seconds=settings.recipe_cap_seconds),
  }
  figures, errors = [], {}
  described = dict(dataclasses.asdict(settings), config=os.path.relpath(
      config_path, ROOT), sections=list(sections), seed=seed,
      train_images=_count(inputs, inputs.train_split), eval_split=inputs.eval_split,
      eval_images=_count(inputs, inputs.eval_split))
  results = common.write_results(output, machine, figures, described,
                                 time.perf_counter() - start, errors)
  for section in [s for s in SECTIONS if s in sections]:
    logging.info("Benchmark: %s", section)
    try:
      figures += jobs[section]()
    except Exception as e:  # noqa: BLE001  one broken section must not lose the rest
      errors[section] = f"{type(e).__name__}: {e}"
      logging.error("%s failed:\n%s", section, traceback.format_exc())
    results = common.write_results(output, machine, figures, described,
                                   time.perf_counter() - start, errors)
  return results


def _machine(sections: Sequence[str]) -> dict:
  """common.machine_info(), with the yardstick when a section trains."""
  machine = common.machine_info()
  if {"training", "step", "time_to_accuracy"} & set(sections):
    # How much faster than the AVX2 reference class this machine ran, measured now:
    # times here x factor project the figures onto that class.
    from benchmarks import yardstick
    logging.info("Yardstick (seed CNN, float32) against the AVX2 reference host")
    machine["yardstick"] = yardstick.measure("float32")
  return machine


def _count(inputs, split: str) -> int:
  return inputs.records.num_examples(split)


def define_flags() -> None:
  """Defines the command-line flags (when run; importing this module defines none)."""
  flags.DEFINE_boolean("quick", False,
                       "Toy sizes: the whole harness in under 3 minutes.")
  flags.DEFINE_list("only", list(SECTIONS), f"Sections to run: {', '.join(SECTIONS)}.")
  flags.DEFINE_string("work_dir", os.path.join(ROOT, "benchmarks", "work"),
                      "Folder for the synthetic set, records, PNGs and scratch runs.")
  flags.DEFINE_string("output", os.path.join(ROOT, "benchmarks", "results.json"),
                      "Where to write the results.")
  flags.DEFINE_string("config", os.path.join(ROOT, "configs", "cnn.flags"),
                      "Train flagfile of the model under test.")
  flags.DEFINE_integer("num_images", 0,
                       "Synthetic cells (0: 13,596, or 600 with --quick).")
  flags.DEFINE_float("cap_seconds", 0, "Time cap of each time-to-accuracy run "
                     "(0: 330 s, or 20 s with --quick).")
  flags.DEFINE_float("target_mca", 0.90,
                     "Validation MCA the time-to-accuracy runs aim at.")
  flags.DEFINE_integer("seed", 0, "Seed of the data, splits and training.")


FLAGS = flags.FLAGS


def settings_from_flags() -> Settings:
  settings = QUICK if FLAGS.quick else FULL
  changes = {"target_mca": FLAGS.target_mca}
  if FLAGS.num_images:
    changes.update(num_images=FLAGS.num_images, memory_sizes=None)
  if FLAGS.cap_seconds:
    changes.update(cap_seconds=FLAGS.cap_seconds, recipe_cap_seconds=FLAGS.cap_seconds)
  return dataclasses.replace(settings, **changes)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  results = run_benchmarks(settings_from_flags(), work_dir=FLAGS.work_dir,
                           output=FLAGS.output, config_path=FLAGS.config,
                           sections=FLAGS.only, seed=FLAGS.seed)
  print(common.format_table(_figures(results)))
  for figure in results["figures"]:
    if figure["note"]:
      print(f"- {figure['name']}: {figure['note']}")
  for section, error in results["errors"].items():
    print(f"! {section} failed: {error}")
  machine = results["machine"]
  print(f"{machine['cores']} cores, {machine['cpu_model']}, TF {machine['tensorflow']}"
        f"{', GPU ' + ', '.join(machine['gpu']) if machine['gpu'] else ''}; "
        f"{results['wall_seconds']:.0f} s; written to {FLAGS.output}")


def _figures(results: dict) -> list[common.Figure]:
  return [common.Figure(f["name"], f["unit"], f["value"], f["baseline"],
                        target=f["target"], judged=f["met"] is not None or
                        f["target"] is None)
          for f in results["figures"]]


def run() -> None:
  define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
