"""The bootstrap and sign-flip test of `bridge_pl.analysis.stats` on hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest

from bridge_pl.analysis.stats import bootstrap_mean, paired_gain_difference, sign_flip_test


def test_seed_spread_enters_the_interval():
    # Two seeds, constant within each (1 and 0): resampling problems alone moves nothing; resampling seeds gives
    # the means 1 (both draws seed 0, p 1/4), 0 (p 1/4) and 0.5 (p 1/2): the 95% interval is [0, 1], and 1/4 of the
    # replicates are <= 0, so p = 2 x 1/4 = 0.5.
    values = np.array([[1.0] * 50, [0.0] * 50])
    iv = bootstrap_mean(values, samples=4000)
    assert (iv.mean, iv.low, iv.high) == (0.5, 0.0, 1.0)
    assert iv.p_value == pytest.approx(0.5, abs=0.04) and (iv.seeds, iv.problems) == (2, 50)


def test_problem_spread_with_one_seed():
    # One seed, outcomes (1, 0): the replicate mean is 0, 0.5 or 1 with p 1/4, 1/2, 1/4.
    iv = bootstrap_mean(np.array([[1.0, 0.0]]), samples=4000)
    assert (iv.low, iv.high) == (0.0, 1.0) and iv.p_value == pytest.approx(0.5, abs=0.04)


def test_interval_covers_the_true_mean_about_as_often_as_promised():
    rng = np.random.default_rng(0)
    covered = 0
    for trial in range(120):  # 5 seeds with seed effects N(0, 0.05), 200 problems of 0/1 outcomes around 0.3
        p = np.clip(0.3 + rng.normal(0, 0.05, size=(5, 1)), 0, 1)
        values = (rng.random((5, 200)) < p).astype(float)
        iv = bootstrap_mean(values, samples=600, seed=trial)
        covered += iv.low <= 0.3 <= iv.high
    assert 0.8 <= covered / 120 <= 1.0  # percentile intervals with 5 seeds run a little narrow; not far off 0.95


def test_sign_flip_by_hand():
    # per-seed means (0.1, -0.2, 0.3): |mean| = 0.0667; of the 8 sign patterns the sums are +-0.2, +-0.4, +-0.6, 0, 0,
    # so 6 reach |sum| >= 0.2: p = 6/8.
    assert sign_flip_test(np.array([[0.1], [-0.2], [0.3]])) == 0.75
    assert sign_flip_test(np.full((5, 3), 0.1)) == 2 / 32  # 5 seeds all one way: the smallest p


def test_paired_gain_difference_by_hand():
    # 2 seeds x 2 problems. Treatment: SFT (0, 0 | 0, 1), RFT (1, 0 | 1, 1): gains (1, 0 | 1, 0), mean 0.5.
    # Control: SFT (0, 0 | 0, 1), RFT (0, 0 | 1, 1): gains (0, 0 | 1, 0), mean 0.25. Difference (1, 0 | 0, 0): 0.25.
    treatment = (np.array([[0, 0], [0, 1]]), np.array([[1, 0], [1, 1]]))
    control = (np.array([[0, 0], [0, 1]]), np.array([[0, 0], [1, 1]]))
    result = paired_gain_difference(treatment, control, samples=2000)
    assert result["treatment_gain"]["mean"] == 0.5 and result["control_gain"]["mean"] == 0.25
    assert result["difference"]["mean"] == 0.25 and result["sign_flip_p"] == 1.0  # per seed (0.5, 0): 4 of 4 flips
    with pytest.raises(ValueError, match="share one"):
        paired_gain_difference(treatment, (np.zeros((2, 3)), np.zeros((2, 3))))
