"""From fields to specimen answers, measured end to end (docs/RESULTS.md, "Fields").

  python -m benchmarks.fields --seeds=0,1 --work_dir=benchmarks/work/fields

Per seed S: draws a training set (36 specimens x 4 fields, seed S) and a test set
(24 specimens x 4 fields of another draw, seed 100 + S, 2 dead cells per field),
converts the training fields (`create_records --dataset=fields`, grouped validation
specimens, no test split), trains configs/cnn.flags on them and predicts the test
specimens with their masks and without (`--field_masks=ignore`: the segmentation).
With --segmented_training it also trains on records cut by the segmentation and
predicts without masks. Detection (segmentation against the masks, one-to-one within
12 px) is scored on every test field. Every step runs as its command line (each must
exit 0); the figures go to --output as JSON, one entry per seed as it finishes.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np
from skimage import measure

from hep2tf.data import fields, segment
from hep2tf.data.synth import fields as synth_fields

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _run(args: list[str], log: pathlib.Path) -> float:
  start = time.time()
  with open(log, "a", encoding="utf-8") as out:
    out.write("$ " + " ".join(args) + "\n")
    out.flush()
    done = subprocess.run([sys.executable, "-m"] + args, cwd=ROOT, stdout=out,
                          stderr=subprocess.STDOUT,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  if done.returncode != 0:
    raise SystemExit(f"{' '.join(args)} exited {done.returncode}; see {log}")
  return round(time.time() - start, 1)


def detection(test_dir: pathlib.Path) -> dict:
  """Segmentation against the masks over every test field (all cells, edge included)."""
  totals = {"true": 0, "found": 0, "matched": 0}
  for field_list in fields.list_fields(str(test_dir)).values():
    for _, path, mask in field_list:
      grey = fields.read_field(path)
      true = fields.read_labels(mask, grey.shape)
      found = segment.segment_nuclei(grey, fields.FieldsConfig().segment_config())
      score = segment.match_centres(
          [r.centroid for r in measure.regionprops(found)],
          [r.centroid for r in measure.regionprops(true)])
      for key in totals:
        totals[key] += score[key]
  return dict(totals, recall=totals["matched"] / totals["true"],
              precision=totals["matched"] / totals["found"])


def _predict(run: pathlib.Path, test: pathlib.Path, out: pathlib.Path, log,
             *extra: str) -> dict:
  seconds = _run(["hep2tf.predict", f"--model_dir={run}", f"--fields={test}",
                  f"--output_dir={out}", "--tta", *extra], log)
  report = json.loads((out / "metrics.json").read_text())
  return {"specimen_accuracy": report["aca"], "specimen_mca": report["mca"],
          "answered": report["answered"], "specimens": report["num_specimens"],
          "seconds": seconds}


def measure_seed(seed: int, work: pathlib.Path, segmented_training: bool) -> dict:
  work.mkdir(parents=True, exist_ok=True)
  log = work / "log.txt"
  train, test = work / "train_fields", work / "test_fields"
  if not train.exists():
    synth_fields.write_fields(train, 36, seed=seed, fields_per_specimen=4)
  if not test.exists():
    synth_fields.write_fields(test, 24, seed=100 + seed, fields_per_specimen=4,
                              dead=2)
  result = {"seed": seed, "detection": detection(test)}
  variants = [("masks", [])] + ([("segmented", ["--field_masks=ignore"])]
                                if segmented_training else [])
  for name, convert_extra in variants:
    records, run = work / f"records_{name}", work / f"run_{name}"
    result[f"convert_{name}_s"] = _run(
        ["hep2tf.create_records", "--dataset=fields", f"--data_dir={train}",
         f"--output_dir={records}", "--overwrite", "--validation_fraction=0.17",
         "--test_fraction=0", f"--seed={seed}", *convert_extra], log)
    result[f"train_{name}_s"] = _run(
        ["hep2tf.train", "--flagfile=configs/cnn.flags", f"--records_dir={records}",
         f"--model_dir={run}", f"--seed={seed}", "--overwrite"], log)
    predictions = [("with_masks", [])] if name == "masks" else []
    predictions.append(("without_masks", ["--field_masks=ignore"]))
    for label, extra in predictions:
      result[f"trained_on_{name}/{label}"] = _predict(
          run, test, work / f"out_{name}_{label}", log, *extra)
  return result


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", default="0,1")
  parser.add_argument("--work_dir", default="benchmarks/work/fields")
  parser.add_argument("--output", default="benchmarks/work/fields/results.json")
  parser.add_argument("--segmented_training", action="store_true")
  args = parser.parse_args()
  results = []
  for seed in [int(s) for s in args.seeds.split(",")]:
    results.append(measure_seed(seed, pathlib.Path(args.work_dir) / f"seed{seed}",
                                args.segmented_training))
    pathlib.Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results[-1], indent=2), flush=True)
  for key in sorted(k for k in results[0] if "/" in k):
    values = [r[key]["specimen_accuracy"] for r in results if key in r]
    print(f"{key}: specimen accuracy {np.mean(values):.3f} over seeds "
          f"({', '.join(f'{v:.3f}' for v in values)})")


if __name__ == "__main__":
  main()
