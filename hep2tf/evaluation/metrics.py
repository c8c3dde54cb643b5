"""Metrics as the cell-classification field reports them.

ACA (average classification accuracy) is the overall accuracy; MCA (mean class
accuracy) is the mean of per-class recall, the metric the ICPR 2014 contest ranked on.
`confusion_scores` is their one definition, from a confusion matrix: the reports
here, the training loop's logs and every other MCA call it. `classification_report`
computes both with per-class precision, recall, F1, specificity and support, macro
and weighted averages, the confusion matrix, ROC-AUC and the positive class's scores
for binary tasks, and specimen/patient-level accuracy by voting over cells;
`subgroup_report` scores each subgroup (intensity, specimen) and `val_test_gap` says
whether validation overstates test. `formatting.py` prints these reports.

A class with no true examples in the data has no recall: it is reported as null and
left out of MCA and of the macro average rather than counted as 0 or 1.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from sklearn import metrics as sk_metrics

from hep2tf.errors import InputError

_AVERAGED = ("precision", "recall", "f1", "specificity")


# ----------------------------------------------------------------------------------
# numpy / scikit-learn


def confusion_scores(confusion) -> tuple[float, float, np.ndarray]:
  """(ACA, MCA, per-class recall) of a (K, K) confusion matrix: THE definitions.

  Args:
    confusion: counts or summed sample weights, rows = true class, columns =
      predicted (the training loop's weighted matrices, sklearn's counts).

  Returns:
    ACA, the trace over the total; per-class recall, the diagonal over each row's
    sum, NaN for a class without true examples; MCA, the mean recall of the classes
    that have them. With no examples at all ACA and MCA are NaN.
  """
  cm = np.asarray(confusion, np.float64)
  if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
    raise InputError(f"a confusion matrix must be (K, K), got shape {cm.shape}")
  support = cm.sum(axis=1)
  with np.errstate(invalid="ignore", divide="ignore"):
    recall = np.where(support > 0, np.diag(cm) / support, np.nan)
  total = cm.sum()
  aca = float(np.trace(cm) / total) if total > 0 else math.nan
  present = ~np.isnan(recall)
  mca = float(recall[present].mean()) if present.any() else math.nan
  return aca, mca, recall


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
  return confusion_scores(_confusion(y_true, y_pred, num_classes))[1]


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
  aca, mca, recall = confusion_scores(cm)
  per_class = _per_class(y_true, y_pred, cm, recall, class_names)
  support = cm.sum(axis=1)
  report = {
      "aca": aca,
      "mca": mca,
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
    aca, mca, recall = confusion_scores(
        _confusion(y_true[inside], y_pred[inside], num_classes))
    result[name] = {
        "num_examples": int(inside.sum()),
        "aca": aca,
        "mca": mca,
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
    raise InputError(f"{what} holds class id {array[bad[0]]} outside "
                     f"[0, {num_classes})", row=int(bad[0]))
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


def _per_class(y_true, y_pred, cm, recall, class_names
               ) -> dict[str, dict[str, Any]]:
  """Each class's scores; `recall` is confusion_scores' (NaN without support)."""
  num_classes = len(class_names)
  # zero_division=0 keeps sklearn quiet; the undefined cases are set to None below.
  precision, _, f1, support = sk_metrics.precision_recall_fscore_support(
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


def _average(per_class, class_names, support,
             weighted: bool) -> dict[str, float | None]:
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
            "vote_share": float(share[g]),
            "correct": bool(group_true[g] == group_pred[g])}
           for g in order]
  return {
      "num_groups": int(num_groups),
      "accuracy": float(np.mean(group_true == group_pred)),
      "mca": mean_class_accuracy(group_true, group_pred, num_classes),
      "table": table,
  }
