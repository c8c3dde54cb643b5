"""The results of a sweep: the ranked table, results.csv / results.md and HParams.

`results_table` ranks the combinations by mean validation MCA over their finished
folds (those with every fold done first) and sets beside it the mean test MCA of the
same models and the validation-test gap, which are for reading, not for ranking;
`write_results` writes it as DIR/results.csv and DIR/results.md with the failed trials
and the refit; `write_hparams_config` writes the HParams experiment at the sweep root
so TensorBoard compares the trials.
"""

from __future__ import annotations

import itertools
import math
import os
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd

from hep2tf import atomic
from hep2tf.evaluation import metrics

if TYPE_CHECKING:
  from hep2tf.training.sweep import Trial

RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"
METRICS = ("hparams/val_mca", "hparams/val_aca")


def results_table(trials: Sequence[Trial]) -> pd.DataFrame:
  """One row per combination, best first.

  Columns: rank, the grid keys, mean/std of validation MCA and ACA over the finished
  folds (std over folds, population: 0 for one run), the test columns
  (`test_columns`), folds_done, folds, train_seconds (summed over folds) and the
  trial folder. Combinations with every fold done rank before those with some
  missing; within each, by mean validation MCA (never by test MCA).
  """
  rows = []
  for slug, group in itertools.groupby(trials, key=lambda t: t.slug):
    group = list(group)
    finished = [t for t in group if t.run.is_complete()]
    done = [t.run.read_complete() for t in finished]
    mca = np.array([d["val_mca"] for d in done], dtype=float)
    aca = np.array([d["val_aca"] for d in done], dtype=float)
    row = dict(group[0].combination)
    row.update(
        mean_val_mca=mca.mean() if done else math.nan,
        std_val_mca=mca.std() if done else math.nan,
        mean_val_aca=aca.mean() if done else math.nan,
        std_val_aca=aca.std() if done else math.nan,
        **test_columns(finished, done),
        folds_done=len(done), folds=len(group),
        train_seconds=float(sum(d.get("train_seconds", 0.0) for d in done)),
        trials=os.path.dirname(group[0].run_dir))
    rows.append(row)
  table = pd.DataFrame(rows)
  incomplete = table["folds_done"] < table["folds"]
  table = (table.assign(_incomplete=incomplete)
           .sort_values(["_incomplete", "mean_val_mca"], ascending=[True, False],
                        na_position="last", kind="stable")
           .drop(columns="_incomplete").reset_index(drop=True))
  table.insert(0, "rank", range(1, len(table) + 1))
  return table


def test_columns(finished: Sequence[Trial], done: Sequence[dict]) -> dict:
  """mean_test_mca: the mean test MCA of the finished trials' models (their
  RUN/eval/<test split>/); val_test_gap: mean validation MCA - mean test MCA over the
  trials that have both; gap_warning: whether that gap exceeds
  metrics.GAP_WARNING (evaluate warns at the same). NaN and False without tests."""
  pairs = []
  for trial, complete in zip(finished, done):
    tested = trial.run.read_eval(trial.test_split) if trial.test_split else None
    if tested is not None:
      pairs.append((complete["val_mca"], tested["mca"]))
  if not pairs:
    return {"mean_test_mca": math.nan, "val_test_gap": math.nan,
            "gap_warning": False}
  val, test = np.array(pairs, dtype=float).T
  gap = metrics.val_test_gap(val.mean(), test.mean())
  return {"mean_test_mca": test.mean(), "val_test_gap": gap["gap"],
          "gap_warning": gap["warning"] is not None}


def _cell(value) -> str:
  if isinstance(value, (bool, np.bool_)):
    return "**yes**" if value else ""
  if isinstance(value, float):
    return "" if math.isnan(value) else f"{value:.4f}"
  return str(value)


def markdown_table(table: pd.DataFrame) -> str:
  """The table as GitHub Markdown, floats with 4 decimals."""
  lines = ["| " + " | ".join(table.columns) + " |",
           "|" + "|".join("---" for _ in table.columns) + "|"]
  for row in table.itertuples(index=False):
    lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
  return "\n".join(lines)


def test_note(num_folds: int, split: str | None, why_not: str = "") -> str:
  """What the test columns of results.md are, and what they are not for."""
  if not split:
    return f"No test figures: {why_not}."
  models = "fold models" if num_folds >= 2 else "models"
  return (f"mean_test_mca is the mean MCA of each combination's {models} on the "
          f"{split!r} split and val_test_gap is mean_val_mca - mean_test_mca; "
          f"gap_warning marks a gap over {metrics.GAP_WARNING:.2f} (as evaluate "
          "warns). The test column is for reading the gap (how far validation "
          "flatters the models on specimens they never saw), not for choosing: the "
          "ranking is by validation MCA alone.")


def write_results(output_dir: str, table: pd.DataFrame, num_folds: int,
                  failures: Mapping[str, str], refit: dict | None = None,
                  test: tuple[str | None, str] = (None, "no test pass")) -> None:
  """DIR/results.csv and DIR/results.md (the table, failures and the refit).

  `test`: (the split the trials were tested on, "") or (None, why not)."""
  atomic.write(os.path.join(output_dir, RESULTS_CSV), table.to_csv(index=False))
  how = (f"mean and std over {num_folds} folds of the training split"
         if num_folds >= 2 else "one run per combination on the validation split")
  text = ["# Sweep results\n", f"Ranked by mean validation MCA ({how}).\n",
          test_note(num_folds, *test) + "\n", markdown_table(table), ""]
  if failures:
    text.append("## Failed trials\n")
    text += [f"- `{run}`: {reason}" for run, reason in sorted(failures.items())]
    text.append("")
  if refit:
    text.append("## Refit of the best combination\n")
    text.append(f"Trained on the whole training split in `{refit['run_dir']}` "
                f"with {refit['combination']}; on {refit['split']}: "
                f"MCA {refit['mca']:.4f}, ACA {refit['aca']:.4f}.")
    gap = refit.get("val_test_gap")
    if gap:
      text.append(f"Its validation MCA {gap['validation_mca']:.4f}; validation - "
                  f"{refit['split']} gap {gap['gap']:+.4f}."
                  + (f" **Warning:** {gap['warning']}." if gap["warning"] else ""))
    text.append("")
  atomic.write(os.path.join(output_dir, RESULTS_MD), "\n".join(text))


def write_hparams_config(output_dir: str, grid: Mapping[str, Sequence],
                         num_folds: int) -> None:
  """The HParams experiment at the sweep root: the grid keys (with their values) and
  the fold as the dashboard's columns, validation MCA and ACA as its metrics. Each
  trial writes its own hyper-parameters and metrics (the trainer does)."""
  import tensorflow as tf
  from tensorboard.plugins.hparams import api as hparams_api
  hparams = [hparams_api.HParam(k, hparams_api.Discrete(list(v)))
             for k, v in grid.items()]
  hparams.append(hparams_api.HParam(
      "fold", hparams_api.Discrete(list(range(max(num_folds, 1))))))
  hparams.append(hparams_api.HParam("num_folds"))
  writer = tf.summary.create_file_writer(output_dir)
  with writer.as_default():
    hparams_api.hparams_config(hparams=hparams,
                               metrics=[hparams_api.Metric(m) for m in METRICS])
  writer.flush()
  writer.close()
