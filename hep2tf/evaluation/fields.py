"""From microscope fields to one answer per specimen: `predict --fields`.

`predict_fields(model_dir, fields_dir, output_dir)` goes through the specimen
folders of a fields layout (`hep2tf.data.fields`; specimens.csv is optional), one
field in memory at a time: the field is read, its cells taken from its mask or found
by `segment.segment_nuclei` (the converter's rule and parameters, `FieldsConfig`),
each cut as the converter cuts it and mapped to the model's input as the records
were (`predict.array_for_model`), then classified through the one prediction loop
(`predict.iterate_logits`, with TTA and the run's temperature). Once a specimen's
fields are done its cells vote (`votes.vote_specimen`) and its overlays are drawn.
A field that cannot be read is named in OUT/rejects.csv and skipped; the rest of
its specimen still votes. Writes

  OUT/specimens.csv   specimen, pattern, confidence, cells (found), voted, fields,
                      fields_skipped, p_<class> (the mean over the voting cells),
                      and with labels true_pattern, correct
  OUT/cells.csv       specimen, field, cell, cy, cx, top, left, bottom, right, area,
                      source (mask / segmented), pattern, confidence, voted, p_<class>
  OUT/overlays/<specimen>/<field>.png
  OUT/metrics.json, OUT/confusion_matrix.png   where specimens.csv gives patterns
  OUT/rejects.csv     the fields skipped (when any)
"""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import pandas as pd

from hep2tf import atomic, errors, figures, rundir, storage
from hep2tf.config.run import read_run_config
from hep2tf.data import fields
from hep2tf.data.sources import fields as field_source
from hep2tf.errors import InputError, Rejects
from hep2tf.evaluation import calibration, field_plots, plots, predict, votes


def predict_fields(model_dir: str, fields_dir: str, output_dir: str, *,
                   checkpoint: str = "best", tta: bool = False, batch_size: int = 64,
                   min_confidence: float | None = None,
                   min_cells: int = votes.DEFAULT_MIN_CELLS,
                   config: fields.FieldsConfig | None = None
                   ) -> tuple[pd.DataFrame, Rejects, dict | None]:
  """Classifies every cell of every field and votes per specimen (module docstring).

  min_confidence: None takes the run's stored threshold (evaluate --min_confidence),
  else votes.DEFAULT_MIN_CONFIDENCE. config: None cuts windows of the model's input
  side with the default rule. Returns (the specimens table, the fields skipped, the
  specimen report or None without labels). InputError for a layout it cannot read.
  """
  run = read_run_config(rundir.RunDir(model_dir))
  class_names, input_shape = list(run.class_names), run.input_shape
  config = config or fields.FieldsConfig(cell_size=int(input_shape[0]))
  if min_confidence is None:
    min_confidence = calibration.read_run_calibration(model_dir).get(
        "min_confidence", votes.DEFAULT_MIN_CONFIDENCE)
  truth = _labels_if_any(fields_dir)
  specimens = fields.list_fields(storage.abspath(fields_dir))
  if not specimens:
    raise InputError("no specimen folders (DIR/<specimen>/<field>.png) found",
                     file=fields_dir)
  classify = _Classifier(model_dir, checkpoint, tta, batch_size, run)
  rejects, rows, cell_tables = Rejects(), [], []
  for specimen, field_list in specimens.items():
    cells, views, skipped = [], [], 0
    for name, path, mask in field_list:
      try:
        table, view = _classify_field(classify, specimen, name, path, mask, config)
      except InputError as e:
        rejects.add(InputError(e.reason, file=e.file or path))
        skipped += 1
        continue
      cells.append(table)
      views.append((name, view, table))
    cell_table = pd.concat(cells, ignore_index=True) if cells else _empty(class_names)
    probs = cell_table[[f"p_{c}" for c in class_names]].to_numpy()
    vote = votes.vote_specimen(probs, class_names, min_confidence=min_confidence,
                               min_cells=min_cells)
    voters = votes.confident(probs, min_confidence)
    cell_table["voted"] = voters
    cell_tables.append(cell_table)
    rows.append(_specimen_row(specimen, vote, len(field_list), skipped, class_names,
                              truth))
    _draw_overlays(output_dir, specimen, views, vote, min_confidence, class_names)
  table = pd.DataFrame(rows)
  report = _write_outputs(output_dir, table, cell_tables, rejects, class_names, truth)
  return table, rejects, report


class _Classifier:
  """The run's model, temperature and input mapping: windows -> probabilities."""

  def __init__(self, model_dir, checkpoint, tta, batch_size, run):
    self.model = predict.load_run_model(model_dir, checkpoint)
    self.temperature = calibration.run_temperature(model_dir, checkpoint)
    self.input_shape = run.input_shape
    self.pixels = run.pixels
    self.tta, self.batch_size = tta, batch_size
    self.class_names = list(run.class_names)
    self.num_classes = len(self.class_names)

  def __call__(self, windows: list[np.ndarray], where: str) -> np.ndarray:
    if not windows:
      return np.zeros((0, self.num_classes))
    batches = self._batches(windows, where)
    probs = [predict.view_probabilities(logits, self.temperature)
             for _, logits, _, _ in predict.iterate_logits(self.model, batches,
                                                           self.tta)]
    return np.concatenate(probs)

  def _batches(self, windows, where) -> Iterator[np.ndarray]:
    for start in range(0, len(windows), self.batch_size):
      yield np.stack([predict.array_for_model(w, self.input_shape, self.pixels, where)
                      for w in windows[start:start + self.batch_size]])


def _classify_field(classify: _Classifier, specimen: str, name: str, path: str,
                    mask: str | None, config: fields.FieldsConfig):
  """One field: (its cells' table, its FieldView). InputError when unreadable."""
  values = fields.read_field(path)
  labels, how = fields.field_labels(values, mask, config)
  cells, _ = fields.find_cells(labels, config)
  fill = fields.background_level(values, labels)
  windows = [fields.cut_window(values, c, config.cell_size, fill) for c in cells]
  probs = classify(windows, path)
  view = field_plots.field_view(values, labels, cells)
  del values, labels, windows   # one field in memory at a time
  table = pd.DataFrame({
      "specimen": specimen, "field": name, "cell": [c.id for c in cells],
      "cy": [round(c.cy, 1) for c in cells], "cx": [round(c.cx, 1) for c in cells],
      "top": [c.bbox[0] for c in cells], "left": [c.bbox[1] for c in cells],
      "bottom": [c.bbox[2] for c in cells], "right": [c.bbox[3] for c in cells],
      "area": [c.area for c in cells], "source": how})
  table["pattern_id"] = probs.argmax(axis=1) if len(probs) else []
  table["confidence"] = probs.max(axis=1) if len(probs) else []
  for k, name in enumerate(classify.class_names):
    table[f"p_{name}"] = probs[:, k] if len(probs) else []
  return table, view


def _empty(class_names) -> pd.DataFrame:
  return pd.DataFrame(columns=["specimen", "field", "cell", "pattern_id",
                               "confidence"] + [f"p_{c}" for c in class_names])


def _labels_if_any(fields_dir: str) -> dict[str, str]:
  """{specimen: pattern} from specimens.csv when there is one, else {}."""
  path = os.path.join(fields_dir, fields.SPECIMENS_CSV)
  if not storage.exists(path):
    return {}
  specimens = field_source.read_specimens(fields_dir)
  return {s: pattern for s, (pattern, _, _) in specimens.items()}


def _specimen_row(specimen, vote: votes.Vote, num_fields, skipped, class_names,
                  truth) -> dict:
  row = {"specimen": specimen, "pattern": vote.pattern,
         "confidence": round(vote.confidence, 6), "cells": vote.cells,
         "voted": vote.voted, "fields": num_fields, "fields_skipped": skipped}
  row.update({f"p_{c}": round(float(p), 6) for c, p in zip(class_names, vote.mean)})
  if truth:
    row["true_pattern"] = truth.get(specimen, "")
    row["correct"] = row["true_pattern"] == vote.pattern
  return row


def _draw_overlays(output_dir, specimen, views, vote: votes.Vote, min_confidence,
                   class_names) -> None:
  answer = (f"{vote.pattern} ({vote.confidence:.2f}, {vote.voted} of {vote.cells} "
            "cells voted)" if vote.pattern in class_names else
            f"{vote.pattern} ({vote.voted} of {vote.cells} cells confident)")
  for name, view, table in views:
    predicted = table["pattern_id"].astype(int).tolist()
    voted = (table["confidence"] >= min_confidence).tolist()
    title = f"{specimen} / {name}: specimen answer {answer}"
    path = os.path.join(output_dir, "overlays", specimen, f"{name}.png")
    storage.makedirs(os.path.dirname(path))
    figures.save_figure(field_plots.overlay_figure(view, predicted, voted,
                                                   class_names, title), path)


def _write_outputs(output_dir, table, cell_tables, rejects, class_names,
                   truth) -> dict | None:
  cells = pd.concat(cell_tables, ignore_index=True)
  predicted = [class_names[int(k)] for k in cells.pop("pattern_id")]
  cells.insert(cells.columns.get_loc("confidence"), "pattern", predicted)
  order = [c for c in cells.columns if not c.startswith("p_")]
  order.insert(order.index("confidence") + 1, order.pop(order.index("voted")))
  cells = cells[order + [f"p_{c}" for c in class_names]]
  atomic.write(os.path.join(output_dir, "cells.csv"),
               cells.to_csv(index=False, float_format="%.6f"))
  atomic.write(os.path.join(output_dir, "specimens.csv"),
               table.to_csv(index=False, float_format="%.6f"))
  if len(rejects):
    rejects.write_csv(os.path.join(output_dir, "rejects.csv"))
  labelled = table[table["true_pattern"] != ""] if truth else table.iloc[:0]
  if labelled.empty:
    return None
  report = votes.specimen_report(labelled["true_pattern"].tolist(),
                                 labelled["pattern"].tolist(), class_names)
  atomic.write_json(os.path.join(output_dir, "metrics.json"), report)
  figures.save_figure(plots.confusion_matrix_figure(
      report["confusion_matrix"], report["class_names"]),
      os.path.join(output_dir, "confusion_matrix.png"))
  return report


def exit_code(rejects: Rejects) -> int:
  return errors.EXIT_SKIPPED if len(rejects) else errors.EXIT_OK
