"""evaluation/votes.py: a specimen's answer from its cells, and specimen scores."""

import numpy as np
import pytest

from hep2tf.evaluation import votes

CLASSES = ["Homogeneous", "Speckled", "Centromere"]


def _cells(n, k, p, rng):
  """n cells whose class k has probability p, the rest spread over the others."""
  probs = rng.dirichlet(np.ones(len(CLASSES)), n) * (1 - p)
  probs[:, k] = 0
  probs = probs / probs.sum(axis=1, keepdims=True) * (1 - p)
  probs[:, k] = p
  return probs


def test_a_few_mitotic_or_dead_cells_do_not_flip_the_answer():
  rng = np.random.default_rng(0)
  # 30 Homogeneous cells, moderately sure; 4 mitotic / dead cells that the model
  # calls Centromere with full confidence.
  typical = _cells(30, 0, 0.7, rng)
  outliers = _cells(4, 2, 0.99, rng)
  vote = votes.vote_specimen(np.vstack([typical, outliers]), CLASSES)
  assert vote.pattern == "Homogeneous" and vote.cells == 34 and vote.voted == 34
  # A count vote over the confident (> 0.9) cells alone would have flipped it.
  strict = votes.vote_specimen(np.vstack([typical, outliers]), CLASSES,
                               min_confidence=0.9, min_cells=3)
  assert strict.pattern == "Centromere"
  # Unsure outliers are left out of the vote altogether.
  unsure = np.tile([0.2, 0.45, 0.35], (6, 1))
  vote = votes.vote_specimen(np.vstack([typical, unsure]), CLASSES)
  assert vote.voted == 30 and vote.pattern == "Homogeneous"
  assert vote.confidence == pytest.approx(0.7)


def test_too_few_confident_cells_is_uncertain_and_none_is_no_cells():
  rng = np.random.default_rng(1)
  few = np.vstack([_cells(2, 0, 0.9, rng), np.tile([0.3, 0.4, 0.3], (10, 1))])
  vote = votes.vote_specimen(few, CLASSES, min_confidence=0.5, min_cells=3)
  assert (vote.pattern, vote.cells, vote.voted, vote.confidence) == (
      votes.UNCERTAIN, 12, 2, 0.0)
  assert votes.vote_specimen(few, CLASSES, min_cells=2).pattern == "Homogeneous"
  none = votes.vote_specimen(np.zeros((0, 3)), CLASSES)
  assert (none.pattern, none.cells) == (votes.NO_CELLS, 0)
  with pytest.raises(ValueError):
    votes.vote_specimen(few, CLASSES, min_confidence=1.5)


def test_specimen_report_counts_abstentions_and_unknown_patterns_as_wrong():
  true = ["Homogeneous", "Homogeneous", "Speckled", "Centromere", "MitoticSpindle"]
  answers = ["Homogeneous", votes.UNCERTAIN, "Speckled", votes.NO_CELLS,
             "Homogeneous"]
  report = votes.specimen_report(true, answers, CLASSES)
  assert report["aca"] == pytest.approx(2 / 5)
  # Recall per true class: Homogeneous 1/2, Speckled 1, Centromere 0, Mitotic 0.
  assert report["mca"] == pytest.approx((0.5 + 1 + 0 + 0) / 4)
  assert report["class_names"] == CLASSES + ["MitoticSpindle", votes.NO_ANSWER]
  assert report["confusion_matrix"][0][-1] == 1    # a Homogeneous one abstained
  assert report["answered"] == 3 and report["num_specimens"] == 5
