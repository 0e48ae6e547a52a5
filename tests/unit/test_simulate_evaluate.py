"""sfc.simulate.evaluate: the yardsticks that compare a workflow run with the generator's truth."""

import numpy as np
import pytest

from sfc.simulate import evaluate


def test_label_agreement_is_perfect_for_identical_images():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=(6, 7, 8))
    out = evaluate.label_agreement(labels, labels, np.eye(4), 4)
    assert out["dice"] == pytest.approx(1.0) and out["centroid_mm"] == pytest.approx(0.0)
    assert out["regions_found"] == 1.0


def test_label_agreement_measures_a_known_shift():
    # two slabs along x; the estimate is moved by one voxel of 2 mm
    truth = np.zeros((10, 4, 4), int)
    truth[1:5] = 1
    truth[5:9] = 2
    estimate = np.roll(truth, 1, axis=0)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    out = evaluate.label_agreement(estimate, truth, affine, 2)
    # each slab: 4 voxels wide, overlap 3 -> Dice 2*3/8
    assert out["dice"] == pytest.approx(0.75)
    assert out["centroid_mm"] == pytest.approx(2.0)


def test_label_agreement_ignores_regions_absent_from_the_truth_and_counts_missing_ones():
    truth = np.zeros((4, 4, 4), int)
    truth[:2] = 1
    truth[2:] = 2
    estimate = np.where(truth == 2, 0, truth)   # region 2 lost
    estimate[0, 0, 0] = 3                       # a region the truth lacks
    out = evaluate.label_agreement(estimate, truth, np.eye(4), 3)
    assert out["regions_found"] == pytest.approx(0.5)
    dice_1 = 2 * 31 / (31 + 32)
    assert out["dice"] == pytest.approx((dice_1 + 0.0) / 2)


def test_edge_spearman_uses_upper_triangle_and_finite_entries_only():
    rng = np.random.default_rng(1)
    a = rng.random((8, 8))
    a = a + a.T
    b = a ** 3                     # monotone: rank correlation 1
    b[np.tril_indices(8)] = -5.0   # lower triangle and diagonal are ignored
    a[0, 1] = np.nan
    assert evaluate.edge_spearman(a, b) == pytest.approx(1.0)
    assert np.isnan(evaluate.edge_spearman(np.full((3, 3), np.nan), b[:3, :3]))
