"""Uncertainty of RL gains over seeds and test problems: a two-level bootstrap and a paired sign-flip test.

An experiment's outcome per (seed, problem) is a number: a method's gain (RFT correct - SFT correct, in {-1, 0,
1}) or the difference of two methods' gains on the same problem and seed (the paired design: both methods share
problems, test sets and seeds). `bootstrap_mean` resamples seeds, then problems within each resampled seed, so the
interval carries both the seed-to-seed spread (initialisation, SFT, RL sampling) and the finite test set;
`sign_flip_test` is the exact permutation test of "the per-seed mean differences are symmetric about 0". Both take
an (S, P) array: S seeds x P problems. numpy only.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Interval", "bootstrap_mean", "paired_gain_difference", "sign_flip_test"]


@dataclass(frozen=True)
class Interval:
    """A mean with its percentile bootstrap interval and the bootstrap's two-sided p-value for "mean = 0"."""

    mean: float
    low: float
    high: float
    p_value: float
    """2 x the smaller share of bootstrap means on either side of 0 (at most 1)."""
    level: float
    seeds: int
    problems: int

    def as_dict(self) -> dict[str, float]:
        """The fields as a JSON-ready dict."""
        return asdict(self)


def bootstrap_mean(
    values: np.ndarray, samples: int = 4000, level: float = 0.95, seed: int = 0, chunk: int = 256
) -> Interval:
    """Mean of an (S, P) array and its two-level percentile bootstrap interval (seeds, then problems per seed).

    Each replicate draws S seeds with replacement and, for each drawn seed, P of its problems with replacement; the
    statistic is the mean over the drawn seeds of their drawn problems' means. With one seed only the problems are
    resampled (the interval then ignores the seed-to-seed spread: run more seeds).

    >>> iv = bootstrap_mean(np.array([[1.0, 1.0, 1.0, 1.0]]))  # no spread at all
    >>> (iv.mean, iv.low, iv.high, iv.p_value)
    (1.0, 1.0, 1.0, 0.0)
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"bootstrap_mean needs a non-empty (seeds, problems) array, got shape {values.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level={level}: must be in (0, 1)")
    num_seeds, num_problems = values.shape
    rng = np.random.default_rng(seed)
    means = []
    for start in range(0, samples, chunk):
        b = min(chunk, samples - start)
        drawn_seeds = rng.integers(0, num_seeds, size=(b, num_seeds))  # (b, S)
        drawn_problems = rng.integers(0, num_problems, size=(b, num_seeds, num_problems))  # (b, S, P)
        picked = values[drawn_seeds[..., None], drawn_problems]  # (b, S, P)
        means.append(picked.mean(axis=(1, 2)))  # (b,)
    boot = np.concatenate(means)  # (samples,)
    tail = (1 - level) / 2
    low, high = np.quantile(boot, [tail, 1 - tail])
    p_value = min(1.0, 2 * min(float((boot <= 0).mean()), float((boot >= 0).mean())))
    return Interval(float(values.mean()), float(low), float(high), p_value, level, num_seeds, num_problems)


def sign_flip_test(values: np.ndarray) -> float:
    """Exact two-sided p-value of the per-seed means of an (S, P) array being symmetric about 0 (sign flips).

    The statistic is |mean of the S per-seed means|; all 2^S sign assignments are enumerated, so with S seeds the
    smallest possible p-value is 2 / 2^S (5 seeds: 0.0625, 7 seeds: 0.016).

    >>> sign_flip_test(np.array([[0.1], [0.2], [0.3]]))  # all positive: 2 of the 8 flips are as extreme
    0.25
    """
    per_seed = np.asarray(values, dtype=np.float64).mean(axis=1)  # (S,)
    observed = abs(per_seed.mean())
    flips = np.array(list(itertools.product((1.0, -1.0), repeat=len(per_seed))))  # (2^S, S)
    stats = np.abs((flips * per_seed).mean(axis=1))
    return float((stats >= observed - 1e-12).mean())


def paired_gain_difference(
    treatment: tuple[np.ndarray, np.ndarray], control: tuple[np.ndarray, np.ndarray], **bootstrap
) -> dict[str, object]:
    """Each method's gain and the paired difference of gains, from (SFT, RFT) correctness arrays of shape (S, P).

    The arrays of both methods must hold the same seeds and problems in the same order. Returns the treatment's and
    the control's gain intervals, the interval of treatment gain - control gain and its sign-flip p-value.
    """
    (t_sft, t_rft), (c_sft, c_rft) = (tuple(np.asarray(a, dtype=np.float64) for a in pair)
                                      for pair in (treatment, control))  # fmt: skip
    shapes = {a.shape for a in (t_sft, t_rft, c_sft, c_rft)}
    if len(shapes) != 1:
        raise ValueError(f"paired arrays must share one (seeds, problems) shape, got {sorted(shapes)}")
    t_gain, c_gain = t_rft - t_sft, c_rft - c_sft  # (S, P)
    difference = t_gain - c_gain
    return {
        "treatment_gain": bootstrap_mean(t_gain, **bootstrap).as_dict(),
        "control_gain": bootstrap_mean(c_gain, **bootstrap).as_dict(),
        "difference": bootstrap_mean(difference, **bootstrap).as_dict(),
        "sign_flip_p": sign_flip_test(difference),
    }
