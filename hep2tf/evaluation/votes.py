"""A specimen's answer from its cells, and the specimen-level scores.

The vote (`vote_specimen`), as `predict --fields` states it:

  - every cell's calibrated probabilities (TTA-averaged at the run's temperature);
  - cells whose top probability is below `min_confidence` are left out (a mitotic,
    dead or badly cut cell rarely looks like any pattern with confidence);
  - the answer is the argmax of the mean probability over the confident cells, and
    its confidence that mean's maximum;
  - fewer than `min_cells` confident cells: `uncertain`; no cell found: `no cells`.

A few confidently wrong cells cannot flip a specimen whose other cells agree: with n
agreeing cells of mean probability p and m outliers, the answer holds while
n * (2p - 1) > m. `specimen_report` scores the answers against known patterns with
`metrics.classification_report`, an abstention counting as a wrong answer.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from hep2tf.config.evaluate import DEFAULT_MIN_CELLS
from hep2tf.evaluation import metrics

UNCERTAIN = "uncertain"
NO_CELLS = "no cells"
NO_ANSWER = "(no answer)"   # the confusion matrix's column for both abstentions
DEFAULT_MIN_CONFIDENCE = 0.5


@dataclasses.dataclass(frozen=True)
class Vote:
  """A specimen's answer: `pattern` (a class, UNCERTAIN or NO_CELLS), its
  `confidence` (the mean probability of that class; 0 without an answer), the cells
  found and the cells that voted, and the mean probability per class (K,)."""
  pattern: str
  confidence: float
  cells: int
  voted: int
  mean: np.ndarray


def confident(probs: np.ndarray, min_confidence: float) -> np.ndarray:
  """Which cells vote: top probability >= min_confidence (N,) bool."""
  probs = np.asarray(probs, np.float64)
  if probs.size == 0:
    return np.zeros(len(probs), bool)
  return probs.max(axis=1) >= min_confidence


def vote_specimen(probs, class_names: Sequence[str], *,
                  min_confidence: float = DEFAULT_MIN_CONFIDENCE,
                  min_cells: int = DEFAULT_MIN_CELLS) -> Vote:
  """The rule of the module docstring over one specimen's cell probabilities (N, K)."""
  if not 0.0 <= min_confidence <= 1.0:
    raise ValueError(f"min_confidence must be in [0, 1], got {min_confidence}")
  if min_cells < 1:
    raise ValueError(f"min_cells must be >= 1, got {min_cells}")
  probs = np.asarray(probs, np.float64).reshape(-1, len(class_names))
  if not len(probs):
    return Vote(NO_CELLS, 0.0, 0, 0, np.zeros(len(class_names)))
  voters = confident(probs, min_confidence)
  mean = probs[voters].mean(axis=0) if voters.any() else np.zeros(len(class_names))
  if voters.sum() < min_cells:
    return Vote(UNCERTAIN, 0.0, len(probs), int(voters.sum()), mean)
  best = int(np.argmax(mean))
  return Vote(class_names[best], float(mean[best]), len(probs), int(voters.sum()),
              mean)


def specimen_report(true_patterns: Sequence[str], answers: Sequence[str],
                    class_names: Sequence[str]) -> dict[str, Any]:
  """Specimen accuracy (ACA), MCA and the confusion matrix of answers against the
  true patterns (`metrics.classification_report`).

  The classes are the model's, then any true pattern the model does not know (its
  recall is 0), then NO_ANSWER for `uncertain` and `no cells`: abstaining counts as
  wrong, and the matrix shows where it happened. Also `answered`: how many specimens
  got a class.
  """
  extra = sorted(set(true_patterns) - set(class_names))
  names = list(class_names) + extra + [NO_ANSWER]
  index = {name: i for i, name in enumerate(names)}
  y_true = [index[p] for p in true_patterns]
  y_pred = [index.get(a, index[NO_ANSWER]) for a in answers]
  report = metrics.classification_report(np.array(y_true), np.array(y_pred), names)
  report["answered"] = int(sum(a in class_names for a in answers))
  report["num_specimens"] = len(y_true)
  return report
