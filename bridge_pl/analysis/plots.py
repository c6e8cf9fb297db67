"""Figures of the analysis (matplotlib, imported only when a figure is drawn; ``pip install "bridge-pl[plot]"``).

* `accuracy_figure`: rollout-accuracy histograms of one or several models side by side (the paper's Fig. 1
  middle), bars per alpha bin;
* `influence_figure`: per-step influence by alpha bin (the paper's Fig. 1 right): the sum of I(q) per bin, and
  the mean K+ and K- per bin; `influence_comparison_figure`: the sums of several methods side by side;
* `reward_curves_figure`: GRPO training reward of several runs.
"""

from __future__ import annotations

from typing import Any

from bridge_pl.analysis.accuracy import BINS

__all__ = [
    "accuracy_figure",
    "influence_comparison_figure",
    "influence_figure",
    "matplotlib_available",
    "reward_curves_figure",
    "save_figure",
]


def matplotlib_available() -> bool:
    """Whether matplotlib can be imported (the figures are optional)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files and TensorBoard images only: no window
    import matplotlib.pyplot as plt

    return plt


def accuracy_figure(histograms: dict[str, dict[str, Any]], title: str = "Rollout accuracy before RL"):
    """Grouped bars: the fraction of prompts in each alpha bin, one colour per named histogram.

    Args:
        histograms: Name (e.g. "vanilla", "BRIDGE") -> an `accuracy_histogram` result.
        title: Figure title.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    _grouped_bars(
        ax,
        {f"{name} (P(0<α<1) = {hist['informative_mass']:.2f})": [hist["fractions"][b] for b in BINS]
         for name, hist in histograms.items()},
    )  # fmt: skip
    ax.set_xticks(range(len(BINS)), [f"α={b}" if b in ("0", "1") else b for b in BINS], fontsize=8)
    ax.set_ylabel("fraction of prompts")
    ax.set_xlabel("rollout accuracy α (share of correct rollouts)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def influence_figure(by_bin: dict[str, dict[str, Any]], title: str = "Per-step influence by rollout accuracy"):
    """Two panels: the sum of I(q) per alpha bin, and the mean K+ / K- per bin (bins without values are empty)."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), dpi=110)
    xs = list(range(len(BINS)))
    left.bar(xs, [by_bin[b]["influence_sum"] for b in BINS], color="tab:purple")
    left.axhline(0, color="black", lw=0.6)
    left.set_title("Σ I(q) per bin")
    for offset, key, label in ((-0.2, "k_plus_mean", "K⁺ (right rollouts)"), (0.2, "k_minus_mean", "K⁻ (wrong)")):
        values = [by_bin[b][key] if by_bin[b][key] is not None else 0.0 for b in BINS]
        right.bar([x + offset for x in xs], values, width=0.4, label=label)
    right.axhline(0, color="black", lw=0.6)
    right.set_title("mean co-influence with the target")
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.set_xticks(xs, BINS, fontsize=7)
        ax.set_xlabel("rollout accuracy α")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig, path) -> None:
    """Write `fig` as a PNG and close it."""
    plt = _pyplot()
    fig.savefig(path)
    plt.close(fig)


def reward_curves_figure(curves: dict[str, list[list[float]]], title: str = "GRPO training reward"):
    """One line per run ("<method>/seed_<s>" -> [(step, reward)]), smoothed over 5 steps; one colour per method."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    colours: dict[str, str] = {}
    for name, points in curves.items():  # in the given order: the colours follow the methods
        method = name.split("/")[0]
        steps, values = [p[0] for p in points], [p[1] for p in points]
        smooth = [sum(values[max(0, i - 4) : i + 1]) / len(values[max(0, i - 4) : i + 1]) for i in range(len(values))]
        label = None if method in colours else method  # one legend entry per method
        colour = colours.setdefault(method, f"C{len(colours)}")
        ax.plot(steps, smooth, color=colour, alpha=0.85, label=label)
    ax.set_xlabel("rollout step")
    ax.set_ylabel("mean reward (5-step average)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def influence_comparison_figure(by_method: dict[str, dict[str, dict[str, Any]]], title: str = "Per-step influence"):
    """Grouped bars: Σ I(q) per alpha bin, one colour per method (each an `influence_by_bin` result)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    _grouped_bars(ax, {name: [by_bin[b]["influence_sum"] for b in BINS] for name, by_bin in by_method.items()})
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(range(len(BINS)), BINS, fontsize=8)
    ax.set_xlabel("rollout accuracy α of the probe prompt")
    ax.set_ylabel("Σ I(q) over the bin's prompts")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _grouped_bars(ax: Any, series: dict[str, list[float]]) -> None:
    """One bar per alpha bin for each labelled series, the series side by side within each bin."""
    width = 0.8 / max(len(series), 1)
    for k, (label, heights) in enumerate(series.items()):
        xs = [i + (k - (len(series) - 1) / 2) * width for i in range(len(BINS))]
        ax.bar(xs, heights, width=width, label=label)
