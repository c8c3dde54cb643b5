"""Tests of hep2tf.evaluation.metrics and formatting on hand-checkable cases."""

import json

import numpy as np
import pytest

from hep2tf.errors import InputError
from hep2tf.evaluation import formatting, metrics

NAMES3 = ["Homogeneous", "Speckled", "Golgi"]


def _three_class_case():
  # Homogeneous 6 cells, 6 right; Speckled 3 cells, 1 right; Golgi 1 cell, 0 right.
  # ACA = 7/10 = 0.7, MCA = (1 + 1/3 + 0) / 3 = 0.4444...
  y_true = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 2])
  y_pred = np.array([0, 0, 0, 0, 0, 0, 1, 0, 0, 0])
  return y_true, y_pred


def test_mca_differs_from_aca_by_hand():
  y_true, y_pred = _three_class_case()
  report = metrics.classification_report(y_true, y_pred, NAMES3)
  assert report["aca"] == pytest.approx(0.7)
  assert report["mca"] == pytest.approx((1 + 1 / 3 + 0) / 3)
  assert metrics.mean_class_accuracy(y_true, y_pred, 3) == pytest.approx(4 / 9)
  assert report["confusion_matrix"] == [[6, 0, 0], [2, 1, 0], [1, 0, 0]]
  homogeneous = report["per_class"]["Homogeneous"]
  assert homogeneous["precision"] == pytest.approx(6 / 9)
  assert homogeneous["recall"] == pytest.approx(1.0)
  assert homogeneous["specificity"] == pytest.approx(1 / 4)  # 1 of 4 negatives right
  speckled = report["per_class"]["Speckled"]
  assert speckled["precision"] == pytest.approx(1.0)
  assert speckled["f1"] == pytest.approx(2 * 1 * (1 / 3) / (1 + 1 / 3))
  assert speckled["specificity"] == pytest.approx(1.0)
  # Golgi has support but is never predicted: precision 0, not undefined.
  assert report["per_class"]["Golgi"] == {
      "precision": 0.0, "recall": 0.0, "f1": 0.0, "specificity": 1.0, "support": 1}
  assert report["macro_avg"]["recall"] == pytest.approx(report["mca"])
  assert report["weighted_avg"]["recall"] == pytest.approx(report["aca"])
  assert "roc_auc" not in report and "group" not in report
  json.dumps(report)


def test_probabilities_give_same_report_as_ids():
  rng = np.random.default_rng(0)
  probs = rng.dirichlet(np.ones(3), size=40)
  y_true = rng.integers(0, 3, size=40)
  from_probs = metrics.classification_report(y_true, probs, NAMES3)
  from_ids = metrics.classification_report(y_true, probs.argmax(1), NAMES3)
  assert from_probs == from_ids


def test_missing_class_is_null_and_left_out_of_mca(recwarn):
  # Class 2 never occurs and is never predicted; class 1: 1 of 2 right.
  y_true = np.array([0, 0, 1, 1])
  y_pred = np.array([0, 0, 1, 0])
  report = metrics.classification_report(y_true, y_pred, NAMES3)
  golgi = report["per_class"]["Golgi"]
  assert golgi["recall"] is None and golgi["f1"] is None
  assert golgi["precision"] is None and golgi["support"] == 0
  assert golgi["specificity"] == pytest.approx(1.0)
  assert report["mca"] == pytest.approx((1 + 0.5) / 2)
  assert report["macro_avg"]["recall"] == pytest.approx(0.75)
  assert len(report["confusion_matrix"]) == 3
  assert report["confusion_matrix"][2] == [0, 0, 0]
  assert not [w for w in recwarn if "sklearn" in str(w.filename)]
  assert "null" in json.dumps(report)


def test_absent_class_that_is_predicted_has_zero_precision():
  report = metrics.classification_report([0, 0, 1], [0, 2, 1], NAMES3)
  assert report["per_class"]["Golgi"]["precision"] == 0.0
  assert report["per_class"]["Golgi"]["recall"] is None


def test_binary_roc_auc_and_positive_scores():
  names = ["hem", "all"]
  y_true = np.array([0, 0, 0, 1, 1, 1])
  p_all = np.array([0.1, 0.4, 0.6, 0.35, 0.8, 0.9])
  probs = np.stack([1 - p_all, p_all], axis=1)
  report = metrics.classification_report(y_true, probs, names, positive_class="all")
  # Positive/negative pairs ranked right: 0.8 and 0.9 beat all three negatives,
  # 0.35 beats only 0.1 -> 7 of 9.
  assert report["roc_auc"] == pytest.approx(7 / 9)
  # Predicted "all": 0.6, 0.8, 0.9 -> TP 2, FP 1, FN 1.
  assert report["positive_class"] == "all"
  assert report["positive_precision"] == pytest.approx(2 / 3)
  assert report["positive_recall"] == pytest.approx(2 / 3)
  assert report["positive_f1"] == pytest.approx(2 / 3)
  by_id = metrics.classification_report(y_true, probs, names, positive_class=0)
  assert by_id["positive_class"] == "hem"
  assert by_id["roc_auc"] == pytest.approx(7 / 9)
  assert by_id["positive_recall"] == pytest.approx(2 / 3)


def test_binary_without_probabilities_or_with_one_class_has_no_auc():
  names = ["hem", "all"]
  assert metrics.classification_report([0, 1, 1], [0, 1, 0], names)["roc_auc"] is None
  one_class = metrics.classification_report([1, 1], [[0.2, 0.8], [0.6, 0.4]], names)
  assert one_class["roc_auc"] is None
  assert one_class["positive_recall"] == pytest.approx(0.5)
  with pytest.raises(InputError, match="positive_class"):
    metrics.classification_report([0, 1], [0, 1], names, positive_class="ALL")


def test_group_vote_can_be_right_when_cells_are_wrong():
  # Specimen A (Homogeneous): 3 of 5 cells right -> vote right.
  # Specimen B (Speckled): 1 of 3 cells right -> vote wrong (Homogeneous).
  # Specimen C (Golgi): 2 of 2 right. Unknown-group cells are left out.
  y_true = np.array([0, 0, 0, 0, 0, 1, 1, 1, 2, 2, 1])
  y_pred = np.array([0, 0, 0, 1, 2, 1, 0, 0, 2, 2, 1])
  groups = np.array(["A"] * 5 + ["B"] * 3 + ["C"] * 2 + [""])
  report = metrics.classification_report(y_true, y_pred, NAMES3, groups=groups)
  # As tf.string values from the records come back: bytes, b"" unknown.
  as_bytes = metrics.classification_report(
      y_true, y_pred, NAMES3, groups=np.array([g.encode() for g in groups], object))
  assert as_bytes["group"] == report["group"]
  assert report["group"]["num_groups"] == 3
  assert report["group"]["accuracy"] == pytest.approx(2 / 3)
  assert report["group"]["mca"] == pytest.approx((1 + 0 + 1) / 3)
  assert report["aca"] == pytest.approx(7 / 11)
  table = {row["group"]: row for row in report["group"]["table"]}
  assert table["A"] == {"group": "A", "cells": 5, "true": "Homogeneous",
                        "voted": "Homogeneous", "vote_share": pytest.approx(3 / 5),
                        "correct": True}
  assert table["B"]["voted"] == "Homogeneous" and not table["B"]["correct"]
  text = formatting.format_trust(report)
  assert "specimen-level pattern by voting" in text and "wrong" in text


def test_subgroup_report_by_intensity_and_specimen():
  y_true = np.array([0, 0, 1, 1, 2, 0, 1, 2])
  y_pred = np.array([0, 0, 1, 1, 2, 1, 0, 2])
  intensity = np.array([b"positive"] * 5 + [b"intermediate"] * 2 + [b""], object)
  report = metrics.subgroup_report(y_true, y_pred, intensity, NAMES3)
  assert list(report) == ["intermediate", "positive"]   # unknown ("") left out
  assert report["positive"]["aca"] == pytest.approx(1.0)
  dim = report["intermediate"]
  assert dim["num_examples"] == 2 and dim["aca"] == pytest.approx(0.0)
  assert dim["recall"] == {"Homogeneous": 0.0, "Speckled": 0.0, "Golgi": None}
  assert dim["mca"] == pytest.approx(0.0)
  specimens = metrics.subgroup_report(y_true, np.eye(3)[y_pred], [
      "10", "10", "2", "2", "2", "10", "2", "2"], NAMES3)
  assert list(specimens) == ["2", "10"]                # natural order
  assert specimens["10"]["mca"] == pytest.approx(2 / 3)
  text = formatting.format_trust({"class_names": NAMES3, "aca": 0.75,
                                  "by_intensity": report})
  assert "intermediate" in text and "Homogene" in text


def test_group_vote_sums_probabilities():
  # Two cells lean weakly to class 1, one strongly to class 0: the sum says class 0,
  # a count of argmaxes would say class 1.
  probs = np.array([[0.45, 0.55, 0.0], [0.45, 0.55, 0.0], [0.95, 0.05, 0.0]])
  y_true = np.array([0, 0, 0])
  report = metrics.classification_report(y_true, probs, NAMES3, groups=["s1"] * 3)
  assert report["group"]["accuracy"] == 1.0
  by_ids = metrics.classification_report(y_true, probs.argmax(1), NAMES3,
                                         groups=["s1"] * 3)
  assert by_ids["group"]["accuracy"] == 0.0


def test_all_unknown_groups_give_no_group_entry():
  report = metrics.classification_report([0, 1], [0, 1], NAMES3, groups=["", ""])
  assert "group" not in report


def test_bad_input_raises_input_error():
  with pytest.raises(InputError, match="outside"):
    metrics.classification_report([0, 3], [0, 1], NAMES3)
  with pytest.raises(InputError, match="rows"):
    metrics.classification_report([0, 1, 2], [0, 1], NAMES3)
  with pytest.raises(InputError, match="probabilities"):
    metrics.classification_report([0, 1], np.ones((2, 4)), NAMES3)
  with pytest.raises(InputError, match="groups"):
    metrics.classification_report([0, 1], [0, 1], NAMES3, groups=["a"])
  with pytest.raises(InputError) as error:
    metrics.classification_report([0, 1], [[0.5, 0.5, 0], [np.nan, 0, 0]], NAMES3)
  assert error.value.row == 1


def test_format_report_shows_names_and_figures():
  y_true, y_pred = _three_class_case()
  text = formatting.format_report(metrics.classification_report(y_true, y_pred, NAMES3),
                                  title="HEp-2 test split")
  assert text.startswith("HEp-2 test split")
  for name in NAMES3:
    assert name in text
  assert "ACA  0.7000" in text
  assert "MCA  0.4444" in text
  assert "macro avg" in text and "weighted avg" in text
  assert "Homogene" in text.split("confusion matrix")[1]  # abbreviated header
  matrix_rows = text.split("confusion matrix")[1].strip().splitlines()[2:]
  assert matrix_rows[1].split()[1:] == ["2", "1", "0"]


def test_format_report_binary_and_groups():
  report = metrics.classification_report(
      [0, 1, 1, 0], [[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]], ["hem", "all"],
      groups=["p1", "p1", "p2", "p2"], positive_class="all")
  text = formatting.format_report(report)
  assert f"ROC-AUC  {report['roc_auc']:.4f}" in text
  assert "F1 0.6667" in text
  assert "group accuracy" in text and "2 groups" in text


def test_abbreviations_stay_unique():
  short = formatting.abbreviate(["coarse_speckled", "coarse_speckled_b", "golgi"])
  assert len(set(short)) == 3 and all(len(s) <= 8 for s in short)


# ----------------------------------------------------------------------------------
# Keras metrics


def test_confusion_scores_is_the_one_definition():
  """ACA, MCA and recall from a (weighted) confusion matrix: what the reports and
  the training loop's logs (hep2tf/training/loop.py) both call."""
  y_true, y_pred = _three_class_case()
  report = metrics.classification_report(y_true, y_pred, NAMES3)
  aca, mca, recall = metrics.confusion_scores(report["confusion_matrix"])
  assert (aca, mca) == (report["aca"], report["mca"]) == (
      pytest.approx(0.7), pytest.approx(4 / 9))
  np.testing.assert_allclose(recall, [1.0, 1 / 3, 0.0])
  # Weights (the loop's class-weighted matrices) and a class without true examples:
  # its recall NaN, left out of the MCA, counted in no denominator.
  weighted = np.array([[2.0, 0.0, 0.0], [1.5, 4.5, 0.0], [0.0, 3.0, 0.0]])
  weighted[2] = 0.0
  aca, mca, recall = metrics.confusion_scores(weighted)
  assert aca == pytest.approx(6.5 / 8.0) and mca == pytest.approx((1 + 0.75) / 2)
  assert np.isnan(recall[2])
  assert all(np.isnan(metrics.confusion_scores(np.zeros((3, 3)))[:2]))
  with pytest.raises(InputError, match="confusion"):
    metrics.confusion_scores(np.zeros((2, 3)))
