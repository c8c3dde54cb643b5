"""Candidates under specimen shift: independent draws and leave-one-nuisance-out.

Each set comes from `benchmarks.renderer` (code apart from hep2tf.synth), is converted
with the icpr2014 layout, and every candidate (a flagfile plus flags) is trained on
it with each seed and evaluated on its test split, all through the command lines a
user runs. One JSON line per run is appended to `--output` (set, held-out family,
candidate, seed, validation and test MCA, per-class test recall, seconds), and a
table of mean +- sd per candidate and set is printed at the end:

  python -m benchmarks.shift --work_dir=/tmp/shift --sets=draw0,draw1 \
      --candidate=shipped:configs/cnn.flags --seeds=0,1,2 --output=shift.jsonl
  python -m benchmarks.shift --work_dir=/tmp/shift --sets=focus,scale,exposure \
      --candidate='bn:configs/cnn.flags --batch_norm' --seeds=0

A set is `drawN` (an independent draw of seed N, every nuisance from its full range)
or a family name of `renderer.FAMILIES` (trained on its inner range, tested outside
it; draw seed 100 + the family's index). `--summary_only` prints the table of an
existing output file.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shlex
import subprocess
import sys
import time

import numpy as np

from benchmarks import renderer


def make_set(work_dir: str, name: str, num_cells: int) -> str:
  """The records folder of set `name` (rendered and converted once)."""
  records = os.path.join(work_dir, f"records_{name}_{num_cells}")
  if os.path.exists(os.path.join(records, "hep2tf.json")):
    return records
  source = os.path.join(work_dir, f"source_{name}_{num_cells}")
  if name.startswith("draw"):
    seed, held_out = int(name[4:]), None
  else:
    seed, held_out = 100 + renderer.FAMILIES.index(name), name
  if not os.path.exists(os.path.join(source, "gt_training.csv")):
    renderer.render_set(source, num_cells, seed, held_out)
  _run([sys.executable, "-m", "hep2tf.create_records", "--dataset=icpr2014",
        f"--data_dir={source}", f"--output_dir={records}", "--overwrite"])
  return records


def _run(command: list[str]) -> None:
  done = subprocess.run(command, capture_output=True, text=True)
  if done.returncode != 0:
    raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n"
                       f"{done.stderr[-3000:]}")


def run_candidate(records: str, run_dir: str, flagfile: str, extra: list[str],
                  seed: int) -> dict:
  """Trains and evaluates one candidate; returns its figures."""
  start = time.time()
  _run([sys.executable, "-m", "hep2tf.train", f"--flagfile={flagfile}", *extra,
        f"--records_dir={records}", f"--model_dir={run_dir}", f"--seed={seed}",
        "--overwrite", "--image_summary_every=0"])
  seconds = time.time() - start
  _run([sys.executable, "-m", "hep2tf.evaluate", f"--model_dir={run_dir}",
        "--split=test", "--explain_cells=0"])
  with open(os.path.join(run_dir, "eval", "test", "metrics.json")) as f:
    test = json.load(f)
  with open(os.path.join(run_dir, "complete.json")) as f:
    complete = json.load(f)
  recall = {name: row["recall"] for name, row in test["per_class"].items()}
  return {"test_mca": test["mca"], "test_aca": test["aca"],
          "val_mca": complete["val_mca"],
          "recall": recall, "train_seconds": round(seconds, 1)}


def summarise(rows: list[dict]) -> str:
  """Mean +- sd of test MCA, the gap and Homogeneous / Speckled recall per
  (candidate, set)."""
  groups = collections.defaultdict(list)
  for row in rows:
    groups[(row["candidate"], row["set"])].append(row)
  lines = ["| candidate | set | runs | test MCA | val - test | Homogeneous | "
           "Speckled | lowest class |", "|---|---|---|---|---|---|---|---|"]

  def ms(values):
    values = [v for v in values if v is not None]
    if not values:
      return "-"
    spread = np.std(values, ddof=1) if len(values) > 1 else 0.0
    return f"{np.mean(values):.3f} +- {spread:.3f}"

  for (candidate, set_name), group in sorted(groups.items()):
    lowest = [min(r["recall"].values()) for r in group]
    gap = [r["val_mca"] - r["test_mca"] for r in group if r.get("val_mca") is not None]
    lines.append(
        f"| {candidate} | {set_name} | {len(group)} | "
        f"{ms([r['test_mca'] for r in group])} | {ms(gap)} | "
        f"{ms([r['recall'].get('Homogeneous') for r in group])} | "
        f"{ms([r['recall'].get('Speckled') for r in group])} | {ms(lowest)} |")
  return "\n".join(lines)


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--work_dir", default="benchmarks/work/shift")
  parser.add_argument("--sets", default="draw0,draw1")
  parser.add_argument("--num_cells", type=int, default=1500)
  parser.add_argument("--candidate", action="append", default=[],
                      help="NAME:FLAGFILE [--flag=value ...]; repeatable")
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--output", default="benchmarks/work/shift.jsonl")
  parser.add_argument("--summary_only", action="store_true")
  args = parser.parse_args(argv)
  rows = []
  if os.path.exists(args.output):
    with open(args.output) as f:
      rows = [json.loads(line) for line in f if line.strip()]
  if args.summary_only:
    print(summarise(rows))
    return 0
  os.makedirs(args.work_dir, exist_ok=True)
  done = {(r["candidate"], r["set"], r["seed"]) for r in rows}
  for set_name in args.sets.split(","):
    records = make_set(args.work_dir, set_name, args.num_cells)
    for spec in args.candidate:
      name, command = spec.split(":", 1)
      flagfile, *extra = shlex.split(command)
      for seed in (int(s) for s in args.seeds.split(",")):
        if (name, set_name, seed) in done:
          continue
        run_dir = os.path.join(args.work_dir, "runs", f"{name}_{set_name}_{seed}")
        figures = run_candidate(records, run_dir, flagfile, extra, seed)
        row = {"candidate": name, "set": set_name, "seed": seed,
               "flags": command, "num_cells": args.num_cells, **figures}
        rows.append(row)
        with open(args.output, "a") as f:
          f.write(json.dumps(row) + "\n")
        print(f"{name} {set_name} seed {seed}: test MCA {row['test_mca']:.3f} "
              f"(val {row['val_mca']}) {row['train_seconds']:.0f} s", flush=True)
  print(summarise(rows))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
