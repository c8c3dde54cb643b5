"""benchmarks/baselines.py: numpy LBP codes and the LBP + SVM baseline on records."""

import numpy as np
import pytest

from benchmarks import baselines


def test_lbp_codes_of_flat_spot_and_edge():
  flat = np.full((1, 9, 9), 40.0)
  assert (baselines.lbp_riu2(flat, 8, 1.0) == 8).all()
  spot = flat.copy()
  spot[0, 4, 4] = 200.0
  assert baselines.lbp_riu2(spot, 8, 1.0)[0, 4, 4] == 0
  edge = np.zeros((1, 9, 9))
  edge[0, :, 5:] = 100.0
  codes = baselines.lbp_riu2(edge, 8, 1.0)[0]
  # On the bright side of a step the three neighbours on the dark side are below
  # the centre: a uniform pattern with 5 of 8 at or above it. On the dark side all
  # neighbours are at or above it.
  assert codes[4, 5] == 5 and codes[4, 4] == 8
  noisy = np.random.default_rng(0).normal(100, 20, (1, 16, 16))
  codes = baselines.lbp_riu2(noisy, 8, 1.0)
  assert (codes == 9).mean() > 0.2          # noise gives non-uniform patterns


def test_lbp_features_are_rotation_invariant_histograms():
  image = np.random.default_rng(1).uniform(0, 255, (1, 20, 20))
  features = baselines.lbp_features(image)
  assert features.shape == (1, sum(p + 2 for p, _ in baselines.SCALES))
  np.testing.assert_allclose(features.sum(axis=1), len(baselines.SCALES), rtol=1e-6)
  turned = baselines.lbp_features(np.rot90(image, 1, axes=(1, 2)).copy())
  np.testing.assert_allclose(turned, features, atol=2 / 400)


def test_baseline_runs_on_records(tiny_records):
  records_dir, _ = tiny_records
  result = baselines.run_baseline(records_dir, c_grid=(10.0,))
  assert result["c"] == 10.0
  assert result["gap"] == pytest.approx(result["validation_mca"]
                                        - result["test_mca"])
  # Six classes: chance is 1/6; texture alone does far better on these cells.
  assert result["test_mca"] > 0.3


def test_plain_cnn_baseline_trains_and_scores_records(tiny_records):
  records_dir, _ = tiny_records
  result = baselines.run_plain_cnn(records_dir, seed=0, steps=20, batch_size=16)
  assert result["epochs"] >= 1
  assert 0.0 <= result["test_mca"] <= 1.0
  assert result["gap"] == pytest.approx(result["validation_mca"]
                                        - result["test_mca"])
  assert len(result["test_report"]["per_class"]) == 6
