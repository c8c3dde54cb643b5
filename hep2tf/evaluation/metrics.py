"""Metrics as the cell-classification field reports them.

ACA (average classification accuracy) is the overall accuracy; MCA (mean class
accuracy) is the mean of per-class recall, the metric the ICPR 2014 contest ranked on.
`classification_report` computes both with per-class precision, recall, F1,
specificity and support, macro and weighted averages, the confusion matrix, ROC-AUC and
the positive class's scores for binary tasks, and specimen/patient-level accuracy by
voting over cells. `format_report` prints it as a plain-text table.

`MeanClassAccuracy` and `ClassRecall` are the streaming Keras counterparts, for
`model.compile(metrics=[...])`; both take the argmax of the predicted probabilities (and
of soft labels, as mixup makes them), so they agree with `classification_report`.

A class with no true examples in the data has no recall: it is reported as null and
left out of MCA and of the macro average rather than counted as 0 or 1.
"""

from __future__ import annotations

from typing import Any, Sequence

import keras
import numpy as np
from keras import ops
from sklearn import metrics as sk_metrics

from hep2tf.errors import InputError

_AVERAGED = ("precision", "recall", "f1", "specificity")


# ----------------------------------------------------------------------------------
# numpy / scikit-learn


def mean_class_accuracy(y_true, y_pred, num_classes: int) -> float:
  """Mean of per-class recall over the classes present in `y_true`.

  Args:
    y_true: int class ids, shape (N,).
    y_pred: int predicted class ids, shape (N,).
    num_classes: K; ids must lie in [0, K).

  Returns:
    MCA as a float in [0, 1]. Classes with no true examples are left out of the mean.
  """
  y_true = _as_ids(y_true, num_classes, "y_true")
  y_pred = _as_ids(y_pred, num_classes, "y_pred")
  _check_same_length(y_true, y_pred, "y_pred")
  if y_true.size == 0:
    raise InputError("no examples to evaluate")
  recall = _recalls(_confusion(y_true, y_pred, num_classes))
  return float(np.mean(recall[~np.isnan(recall)]))


GAP_WARNING = 0.05   # a validation-test MCA gap above this is worth a warning


def val_test_gap(validation_mca: float, test_mca: float,
                 threshold: float = GAP_WARNING) -> dict[str, Any]:
  """How much better a model does on its validation split than on test.

  On sets split by specimen a large positive gap means the model (or the model
  selection on validation) learnt the training specimens rather than the patterns.

  Returns {validation_mca, test_mca, gap (= validation - test), warning (a sentence
  when gap > threshold, else None)}.
  """
  gap = float(validation_mca) - float(test_mca)
  warning = None
  if gap > threshold:
    warning = (f"validation MCA exceeds test MCA by {gap:.3f} (> {threshold:.2f}): "
               "the model does not carry over to the test specimens as validation "
               "suggests")
  return {"validation_mca": float(validation_mca), "test_mca": float(test_mca),
          "gap": gap, "warning": warning}


def classification_report(y_true, y_score, class_names: Sequence[str], *,
                          groups=None, positive_class: str | int | None = None
                          ) -> dict[str, Any]:
  """Everything the field reports about one set of predictions, as a JSON-able dict.

  Args:
    y_true: int class ids, shape (N,).
    y_score: class probabilities (N, K) or predicted class ids (N,).
    class_names: the K class names, in label-id order.
    groups: optional specimen/patient id per example (N,) as str or bytes (as parsed
      from the records); "" = unknown. Cells with an unknown group take no part in
      the group-level scores.
    positive_class: binary tasks only; the positive class's name or id (default 1).

  Returns:
    A dict with
      aca, mca, num_examples, class_names;
      per_class: {name: {precision, recall, f1, specificity, support}};
      macro_avg, weighted_avg: {precision, recall, f1, specificity};
      confusion_matrix: K lists of K counts, rows = true, columns = predicted;
    for K == 2 also roc_auc (None without probabilities or with one class present),
      positive_class, positive_precision, positive_recall, positive_f1;
    with at least one known group also group: {num_groups, accuracy, mca}, where a
      group's prediction is the argmax of its cells' summed probabilities (or the most
      frequent predicted id when only ids are given) and its true label is the most
      frequent label of its cells (ties go to the lower id).

    A class with no true examples has recall and F1 None (JSON null); it is left out of
    MCA and of the macro average, and has weight 0 in the weighted average. Its
    precision is None when it is never predicted either. A class with examples that is
    never predicted has precision 0. Specificity is None only when every example
    belongs to the class.

  Raises:
    InputError: shapes that do not match, ids out of range, scores that are not finite.
  """
  class_names = [str(name) for name in class_names]
  num_classes = len(class_names)
  if num_classes < 2:
    raise InputError(f"need at least 2 class names, got {class_names}")
  y_true = _as_ids(y_true, num_classes, "y_true")
  if y_true.size == 0:
    raise InputError("no examples to evaluate")
  probs, y_pred = _split_scores(y_score, num_classes)
  _check_same_length(y_true, y_pred, "y_score")

  cm = _confusion(y_true, y_pred, num_classes)
  per_class = _per_class(y_true, y_pred, cm, class_names)
  support = cm.sum(axis=1)
  report = {
      "aca": float(np.trace(cm) / cm.sum()),
      "mca": mean_class_accuracy(y_true, y_pred, num_classes),
      "num_examples": int(y_true.size),
      "class_names": class_names,
      "per_class": per_class,
      "macro_avg": _average(per_class, class_names, support, weighted=False),
      "weighted_avg": _average(per_class, class_names, support, weighted=True),
      "confusion_matrix": cm.tolist(),
  }
  if num_classes == 2:
    report.update(_binary(y_true, probs, per_class, class_names, positive_class))
  if groups is not None:
    group_report = _group_scores(y_true, y_pred, probs, groups, num_classes,
                                 class_names)
    if group_report is not None:
      report["group"] = group_report
  return report


def subgroup_report(y_true, y_score, subgroups, class_names: Sequence[str]
                    ) -> dict[str, dict[str, Any]]:
  """Cell-level scores within each subgroup (an intensity, a specimen, a patient).

  Args:
    y_true: int class ids (N,).
    y_score: probabilities (N, K) or predicted ids (N,).
    subgroups: (N,) str or bytes per cell; "" (unknown) cells are left out.
    class_names: the K class names.

  Returns:
    {subgroup: {num_examples, aca, mca, recall: {class: recall or None}}}, sorted by
    subgroup name; {} when no cell has a known subgroup. Classes absent from a
    subgroup have recall None and are left out of its MCA.
  """
  class_names = [str(name) for name in class_names]
  num_classes = len(class_names)
  y_true = _as_ids(y_true, num_classes, "y_true")
  _, y_pred = _split_scores(y_score, num_classes)
  subgroups = np.array([_group_name(g) for g in np.asarray(subgroups)], dtype=object)
  _check_same_length(y_true, subgroups, "subgroups")
  result = {}
  for name in sorted(set(subgroups) - {""}, key=_natural):
    inside = subgroups == name
    recall = _recalls(_confusion(y_true[inside], y_pred[inside], num_classes))
    result[name] = {
        "num_examples": int(inside.sum()),
        "aca": float(np.mean(y_true[inside] == y_pred[inside])),
        "mca": float(np.mean(recall[~np.isnan(recall)])),
        "recall": {c: (None if np.isnan(r) else float(r))
                   for c, r in zip(class_names, recall)},
    }
  return result


def _as_ids(values, num_classes: int, what: str) -> np.ndarray:
  """Validates a (N,) array of class ids and returns it as int64."""
  array = np.asarray(values)
  if array.dtype == bool:
    array = array.astype(np.int64)
  if array.ndim != 1:
    raise InputError(f"{what} must be class ids of shape (N,), got shape {array.shape}")
  if array.size and not np.issubdtype(array.dtype, np.integer):
    if not np.issubdtype(array.dtype, np.floating) or np.any(array != np.round(array)):
      raise InputError(f"{what} must hold integer class ids, got dtype {array.dtype}")
  array = array.astype(np.int64)
  bad = np.flatnonzero((array < 0) | (array >= num_classes))
  if bad.size:
    raise InputError(f"{what} holds class id {array[bad[0]]} outside [0, {num_classes})",
                     row=int(bad[0]))
  return array


def _split_scores(y_score, num_classes: int) -> tuple[np.ndarray | None, np.ndarray]:
  """(probabilities or None, predicted ids) from either form of `y_score`."""
  scores = np.asarray(y_score)
  if scores.ndim == 1:
    return None, _as_ids(scores, num_classes, "y_score")
  if scores.ndim != 2 or scores.shape[1] != num_classes:
    raise InputError(f"y_score must be (N, {num_classes}) probabilities or (N,) ids, "
                     f"got shape {scores.shape}")
  scores = scores.astype(np.float64)
  bad = np.flatnonzero(~np.all(np.isfinite(scores), axis=1))
  if bad.size:
    raise InputError("y_score holds a non-finite probability", row=int(bad[0]))
  return scores, np.argmax(scores, axis=1)


def _check_same_length(y_true: np.ndarray, other: np.ndarray, what: str) -> None:
  if len(other) != len(y_true):
    raise InputError(f"{what} has {len(other)} rows but y_true has {len(y_true)}")


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
  # labels= keeps all K rows and columns even for classes absent from both arrays.
  return sk_metrics.confusion_matrix(y_true, y_pred, labels=np.arange(num_classes))


def _recalls(cm: np.ndarray) -> np.ndarray:
  """Per-class recall from a confusion matrix; NaN for classes with no support."""
  support = cm.sum(axis=1)
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(support > 0, np.diag(cm) / support, np.nan)


def _per_class(y_true, y_pred, cm, class_names) -> dict[str, dict[str, Any]]:
  num_classes = len(class_names)
  # zero_division=0 keeps sklearn quiet; the undefined cases are set to None below.
  precision, recall, f1, support = sk_metrics.precision_recall_fscore_support(
      y_true, y_pred, labels=np.arange(num_classes), zero_division=0)
  predicted = cm.sum(axis=0)
  negatives = cm.sum() - cm.sum(axis=1)
  true_negatives = cm.sum() - cm.sum(axis=0) - cm.sum(axis=1) + np.diag(cm)
  per_class = {}
  for k, name in enumerate(class_names):
    has_support = support[k] > 0
    per_class[name] = {
        "precision": (float(precision[k])
                      if has_support or predicted[k] > 0 else None),
        "recall": float(recall[k]) if has_support else None,
        "f1": float(f1[k]) if has_support else None,
        "specificity": (float(true_negatives[k] / negatives[k])
                        if negatives[k] > 0 else None),
        "support": int(support[k]),
    }
  return per_class


def _average(per_class, class_names, support, weighted: bool) -> dict[str, float | None]:
  """Macro (classes with support, equal weight) or support-weighted averages."""
  averages = {}
  for key in _AVERAGED:
    values, weights = [], []
    for k, name in enumerate(class_names):
      value = per_class[name][key]
      if value is not None and support[k] > 0:
        values.append(value)
        weights.append(support[k])
    averages[key] = (float(np.average(values, weights=weights if weighted else None))
                     if values else None)
  return averages


def _positive_id(positive_class, class_names) -> int:
  if positive_class is None:
    return 1
  if isinstance(positive_class, (int, np.integer)) and not isinstance(positive_class,
                                                                        bool):
    if 0 <= positive_class < len(class_names):
      return int(positive_class)
  elif str(positive_class) in class_names:
    return class_names.index(str(positive_class))
  raise InputError(f"positive_class {positive_class!r} is not one of {class_names}")


def _binary(y_true, probs, per_class, class_names, positive_class) -> dict[str, Any]:
  """ROC-AUC and the positive class's precision, recall and F1."""
  positive = _positive_id(positive_class, class_names)
  is_positive = y_true == positive
  roc_auc = None
  # ROC-AUC needs a score to rank by and both classes present.
  if probs is not None and 0 < is_positive.sum() < len(y_true):
    roc_auc = float(sk_metrics.roc_auc_score(is_positive, probs[:, positive]))
  scores = per_class[class_names[positive]]
  return {
      "roc_auc": roc_auc,
      "positive_class": class_names[positive],
      "positive_precision": scores["precision"],
      "positive_recall": scores["recall"],
      "positive_f1": scores["f1"],
  }


def _natural(name: str):
  """Sort key that puts specimen "2" before "10"."""
  return (0, int(name), "") if name.isdigit() else (1, 0, name)


def _group_name(group) -> str:
  # Groups parsed from records arrive as tf.string bytes.
  if isinstance(group, (bytes, bytearray)):
    return group.decode("utf-8")
  return "" if group is None else str(group)


def _group_scores(y_true, y_pred, probs, groups, num_classes,
                  class_names) -> dict[str, Any] | None:
  """Group-level accuracy and MCA by voting over each group's cells, or None.

  `table` holds one row per group: group, cells, true, voted, vote_share (the voted
  class's share of the summed probabilities or of the cell votes), correct.
  """
  groups = np.asarray(groups)
  if groups.ndim != 1 or len(groups) != len(y_true):
    raise InputError(f"groups must have shape ({len(y_true)},), got {groups.shape}")
  groups = np.array([_group_name(g) for g in groups], dtype=object)
  known = groups != ""
  if not known.any():
    return None
  names, index = np.unique(groups[known], return_inverse=True)
  num_groups = len(names)
  order = sorted(range(num_groups), key=lambda g: _natural(str(names[g])))
  # votes[g, k]: summed probability (or count of cells predicted as k) in group g.
  votes = np.zeros((num_groups, num_classes))
  cell_votes = probs[known] if probs is not None else np.eye(num_classes)[y_pred[known]]
  np.add.at(votes, index, cell_votes)
  labels = np.zeros((num_groups, num_classes))
  np.add.at(labels, index, np.eye(num_classes)[y_true[known]])
  group_true = np.argmax(labels, axis=1)
  group_pred = np.argmax(votes, axis=1)
  share = votes.max(axis=1) / votes.sum(axis=1)
  table = [{"group": str(names[g]), "cells": int(labels[g].sum()),
            "true": class_names[group_true[g]], "voted": class_names[group_pred[g]],
            "vote_share": float(share[g]), "correct": bool(group_true[g] == group_pred[g])}
           for g in order]
  return {
      "num_groups": int(num_groups),
      "accuracy": float(np.mean(group_true == group_pred)),
      "mca": mean_class_accuracy(group_true, group_pred, num_classes),
      "table": table,
  }


# ----------------------------------------------------------------------------------
# plain-text report


def format_report(report: dict[str, Any], title: str | None = None) -> str:
  """A `classification_report` dict as a plain-text table.

  Per class: precision, recall, F1, specificity and support, then the macro and
  weighted rows, ACA and MCA (with ROC-AUC and the positive class's scores for binary
  tasks and group-level scores when present), then the confusion matrix with
  abbreviated class names as headers (rows = true, columns = predicted). Undefined
  values print as "-".
  """
  class_names = report["class_names"]
  width = max(len("weighted avg"), *(len(name) for name in class_names))
  header = (f"{'class':<{width}}  {'precision':>9}  {'recall':>6}  {'f1':>6}  "
            f"{'specificity':>11}  {'support':>7}")
  lines = [title, ""] if title else []
  lines += [header, "-" * len(header)]

  def row(name, scores, support):
    return (f"{name:<{width}}  {_fmt(scores['precision']):>9}  "
            f"{_fmt(scores['recall']):>6}  {_fmt(scores['f1']):>6}  "
            f"{_fmt(scores['specificity']):>11}  {support:>7}")

  for name in class_names:
    scores = report["per_class"][name]
    lines.append(row(name, scores, scores["support"]))
  lines.append("-" * len(header))
  lines.append(row("macro avg", report["macro_avg"], report["num_examples"]))
  lines.append(row("weighted avg", report["weighted_avg"], report["num_examples"]))
  lines.append("")
  lines.append(f"ACA  {_fmt(report['aca'], 4)}  (accuracy over "
               f"{report['num_examples']} examples)")
  lines.append(f"MCA  {_fmt(report['mca'], 4)}  (mean of per-class recall)")
  if "roc_auc" in report:
    lines.append(f"ROC-AUC  {_fmt(report['roc_auc'], 4)}")
    lines.append(f"positive class {report['positive_class']}: "
                 f"precision {_fmt(report['positive_precision'], 4)}  "
                 f"recall {_fmt(report['positive_recall'], 4)}  "
                 f"F1 {_fmt(report['positive_f1'], 4)}")
  if "group" in report:
    group = report["group"]
    lines.append(f"group accuracy  {_fmt(group['accuracy'], 4)}  group MCA  "
                 f"{_fmt(group['mca'], 4)}  (vote over cells, "
                 f"{group['num_groups']} groups)")
  lines.append("")
  lines.append("confusion matrix (rows = true, columns = predicted)")
  lines += _format_confusion(report["confusion_matrix"], class_names)
  return "\n".join(lines) + "\n"


def format_trust(report: dict[str, Any]) -> str:
  """The calibration, abstention, subgroup, specimen-vote and explanation parts of an
  evaluation report (the keys evaluate adds) as plain text; "" when none is present."""
  lines = []
  if "ece" in report:
    line = f"ECE (15 bins)  {_fmt(report['ece'], 4)}"
    if report.get("temperature") is not None:
      line += (f"   after temperature scaling (T = {report['temperature']:.3f})  "
               f"{_fmt(report.get('ece_calibrated'), 4)}")
    lines.append(line)
  at = report.get("accuracy_at_coverage")
  if at:
    lines.append("accuracy at coverage  " + "  ".join(
        f"{100 * float(c):.0f}%: {_fmt(v, 4)}" for c, v in at.items())
        + f"  100%: {_fmt(report['aca'], 4)}")
  if report.get("abstention"):
    a = report["abstention"]
    lines.append(f"min_confidence {a['min_confidence']:.2f}: coverage "
                 f"{_fmt(a['coverage'], 4)}, accuracy on the kept cells "
                 f"{_fmt(a['accuracy'], 4)}")
  for key, title in (("by_intensity", "intensity"), ("by_specimen", "specimen")):
    if report.get(key):
      lines += ["", _subgroup_table(report[key], report["class_names"], title)]
  group = report.get("group")
  if group and group.get("table"):
    lines += ["", f"specimen-level pattern by voting: accuracy "
                  f"{_fmt(group['accuracy'], 4)}  MCA {_fmt(group['mca'], 4)}"]
    width = max(len("specimen"), *(len(r["group"]) for r in group["table"]))
    lines.append(f"{'specimen':<{width}}  {'cells':>5}  {'true':<12}  "
                 f"{'voted':<12}  {'share':>5}")
    for r in group["table"]:
      lines.append(f"{r['group']:<{width}}  {r['cells']:>5}  {r['true']:<12}  "
                   f"{r['voted']:<12}  {r['vote_share']:>5.2f}"
                   + ("" if r["correct"] else "  wrong"))
  if report.get("explanations"):
    e = report["explanations"]
    lines += ["", f"explanations ({e['method']}, {e['num_cells']} cells): mask_lift "
                  f"{_fmt(e['mask_lift'])}  intensity_lift {_fmt(e['intensity_lift'])}"
                  f"  randomisation_rank_corr {_fmt(e['randomisation_rank_corr'])}"]
  return "\n".join(lines) + ("\n" if lines else "")


def _subgroup_table(scores: dict[str, dict[str, Any]], class_names, title: str) -> str:
  short = abbreviate(class_names)
  width = max(len(title), *(len(name) for name in scores))
  rows = [f"{title:<{width}}  {'cells':>5}  {'ACA':>5}  {'MCA':>5}  "
          + "  ".join(f"{s:>8}" for s in short)]
  for name, s in scores.items():
    rows.append(f"{name:<{width}}  {s['num_examples']:>5}  {_fmt(s['aca']):>5}  "
                f"{_fmt(s['mca']):>5}  "
                + "  ".join(f"{_fmt(s['recall'][c]):>8}" for c in class_names))
  return "\n".join(rows)


def _fmt(value: float | None, digits: int = 3) -> str:
  return "-" if value is None else f"{value:.{digits}f}"


def abbreviate(class_names: Sequence[str], max_len: int = 8) -> list[str]:
  """Short, unique labels for table and plot headers ("Homogeneous" -> "Homogene")."""
  short = [name if len(name) <= max_len else name[:max_len] for name in class_names]
  if len(set(short)) < len(short):
    # Prefixes collide (coarse_speckled / coarse_...): number them instead.
    short = [f"{k}:{name[:max_len - 2 - len(str(k))]}"
             for k, name in enumerate(class_names)]
  return short


def _format_confusion(cm: list[list[int]], class_names: Sequence[str]) -> list[str]:
  short = abbreviate(class_names)
  cell = max(max(len(s) for s in short), max(len(str(v)) for r in cm for v in r)) + 1
  rows = [" " * cell + "".join(f"{s:>{cell}}" for s in short)]
  for name, counts in zip(short, cm):
    rows.append(f"{name:<{cell}}" + "".join(f"{v:>{cell}}" for v in counts))
  return rows


# ----------------------------------------------------------------------------------
# Keras metrics


def _class_ids(y_true, y_pred):
  """Class ids (N,) int32 from one-hot/soft (N, K) or sparse (N,) / (N, 1) labels.

  Decided from the label width at run time, because Keras may retrace the step with
  labels of unknown rank.
  """
  rows = ops.reshape(y_true, (ops.shape(y_pred)[0], -1))
  # Mixup and label smoothing make labels soft; the dominant class is the label.
  dominant = ops.cast(ops.argmax(rows, axis=-1), "int32")
  sparse = ops.cast(rows[:, 0], "int32")
  return ops.where(ops.shape(rows)[-1] > 1, dominant, sparse)


def _weights(sample_weight, like):
  if sample_weight is None:
    return ops.ones_like(like, dtype="float32")
  return ops.reshape(ops.cast(sample_weight, "float32"), (-1,))


@keras.saving.register_keras_serializable(package="hep2tf")
class MeanClassAccuracy(keras.metrics.Metric):
  """Streaming MCA: mean recall over the classes seen so far, argmax-based.

  State is a (K, K) confusion matrix (rows = true, columns = predicted). `update_state`
  takes y_true as one-hot or soft labels (N, K), whose argmax is taken, or as sparse ids
  (N,) or (N, 1); y_pred as probabilities (N, K) in any float dtype (cast to float32,
  so it works under a mixed-precision policy). Classes with no true example so far are
  left out of the mean; with no examples at all the result is 0.
  """

  def __init__(self, num_classes: int, name: str = "mca", **kwargs):
    super().__init__(name=name, **kwargs)
    self.num_classes = int(num_classes)
    self.confusion = self.add_weight(
        shape=(self.num_classes, self.num_classes), initializer="zeros",
        dtype="float32", name="confusion_matrix")

  def update_state(self, y_true, y_pred, sample_weight=None):
    y_pred = ops.cast(y_pred, "float32")
    true_ids = _class_ids(y_true, y_pred)
    pred_ids = ops.argmax(y_pred, axis=-1)
    weights = _weights(sample_weight, ops.cast(true_ids, "float32"))
    true_onehot = ops.one_hot(true_ids, self.num_classes, dtype="float32")
    pred_onehot = ops.one_hot(pred_ids, self.num_classes, dtype="float32")
    batch = ops.matmul(ops.transpose(true_onehot * weights[:, None]), pred_onehot)
    self.confusion.assign_add(batch)

  def result(self):
    support = ops.sum(self.confusion, axis=1)
    present = ops.cast(support > 0, "float32")
    recall = ops.divide_no_nan(ops.diagonal(self.confusion), support)
    return ops.divide_no_nan(ops.sum(recall * present), ops.sum(present))

  def reset_state(self):
    self.confusion.assign(ops.zeros_like(self.confusion))

  def get_config(self):
    return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="hep2tf")
class ClassRecall(keras.metrics.Metric):
  """Streaming recall of one class, taking the argmax of the predicted probabilities.

  This is per-class accuracy as the field means it for softmax outputs; Keras's own
  `Recall(class_id=...)` instead thresholds that class's probability at 0.5. Labels and
  predictions are taken as by `MeanClassAccuracy`; the result is 0 until the class has
  been seen.
  """

  def __init__(self, class_id: int, name: str | None = None, **kwargs):
    super().__init__(name=name or f"recall_{class_id}", **kwargs)
    self.class_id = int(class_id)
    self.true_positives = self.add_weight(shape=(), initializer="zeros",
                                          dtype="float32", name="true_positives")
    self.positives = self.add_weight(shape=(), initializer="zeros", dtype="float32",
                                     name="positives")

  def update_state(self, y_true, y_pred, sample_weight=None):
    y_pred = ops.cast(y_pred, "float32")
    true_ids = _class_ids(y_true, y_pred)
    pred_ids = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
    is_class = ops.cast(ops.equal(true_ids, self.class_id), "float32")
    hit = ops.cast(ops.equal(pred_ids, self.class_id), "float32")
    weights = _weights(sample_weight, is_class)
    self.positives.assign_add(ops.sum(is_class * weights))
    self.true_positives.assign_add(ops.sum(is_class * hit * weights))

  def result(self):
    return ops.divide_no_nan(self.true_positives, self.positives)

  def reset_state(self):
    self.true_positives.assign(0.0)
    self.positives.assign(0.0)

  def get_config(self):
    return {**super().get_config(), "class_id": self.class_id}
