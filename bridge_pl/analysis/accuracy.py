"""Rollout accuracy alpha per prompt and its histogram (paper_spec §E.1, §E.4 step 3).

Only prompts with 0 < alpha < 1 move a GRPO policy, each weighted by sqrt(alpha (1 - alpha)); the histogram
uses the paper's unequal bins, the exact end points having their own: {0}, (0, .2], (.2, .4], (.4, .6],
(.6, .8], (.8, 1), {1}. Pure Python: importable without torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["BINS", "accuracy_bin", "accuracy_histogram", "rollout_accuracy"]

BINS = ("0", "(0,0.2]", "(0.2,0.4]", "(0.4,0.6]", "(0.6,0.8]", "(0.8,1)", "1")
EDGES = (0.2, 0.4, 0.6, 0.8)  # upper edges of the four middle bins; the fifth runs to 1 (open)
EPS = 1e-9  # k / N is computed in floating point: 3/5 must land in (0.4, 0.6]


def rollout_accuracy(correct: Sequence[bool | float]) -> float:
    """Share of correct rollouts of one prompt.

    >>> rollout_accuracy([True, False, False, True])
    0.5
    """
    if not correct:
        raise ValueError("a prompt needs at least one rollout to have a rollout accuracy")
    return sum(float(c) for c in correct) / len(correct)


def accuracy_bin(alpha: float) -> int:
    """Index into `BINS` of a rollout accuracy.

    >>> [BINS[accuracy_bin(a)] for a in (0.0, 0.2, 0.25, 0.6, 0.875, 1.0)]
    ['0', '(0,0.2]', '(0.2,0.4]', '(0.4,0.6]', '(0.8,1)', '1']
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"rollout accuracy {alpha} is outside [0, 1]")
    if alpha <= EPS:
        return 0
    if alpha >= 1.0 - EPS:
        return len(BINS) - 1
    return 1 + next((i for i, edge in enumerate(EDGES) if alpha <= edge + EPS), len(EDGES))


def accuracy_histogram(alphas: Sequence[float]) -> dict[str, Any]:
    """Counts and fractions per bin, the informative mass P(0 < alpha < 1) and E[sqrt(alpha (1 - alpha))].

    Args:
        alphas: One rollout accuracy per prompt.

    Returns:
        ``{"prompts", "counts", "fractions", "informative_mass", "mean_sqrt_var", "mean_accuracy"}``;
        counts and fractions are dicts keyed by the bin labels of `BINS`.

    >>> h = accuracy_histogram([0.0, 0.0, 0.5, 1.0])
    >>> h["fractions"]["0"], h["informative_mass"], h["mean_sqrt_var"]
    (0.5, 0.25, 0.125)
    """
    counts = dict.fromkeys(BINS, 0)
    for alpha in alphas:
        counts[BINS[accuracy_bin(alpha)]] += 1
    total = len(alphas)
    return {
        "prompts": total,
        "counts": counts,
        "fractions": {label: count / total if total else 0.0 for label, count in counts.items()},
        "informative_mass": sum(0 < a < 1 for a in alphas) / total if total else 0.0,
        "mean_sqrt_var": sum(math.sqrt(a * (1 - a)) for a in alphas) / total if total else 0.0,
        "mean_accuracy": sum(alphas) / total if total else 0.0,
    }
