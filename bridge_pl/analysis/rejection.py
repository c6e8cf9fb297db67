"""Rejection-sampling SFT data: a model's own right answers on training prompts of moderate rollout accuracy.

The baseline the paper discusses against behavior injection (no official code exists): sample an SFT model N times
on training prompts, keep the prompts whose rollout accuracy alpha lies in [alpha_min, alpha_max] (the prompts GRPO
learns from: some rollouts right, some wrong), and keep up to `per_prompt` distinct right answers of each. The
kept rows are an SFT dataset in the project's format; fine-tuning the same SFT model on them (as STaR and RFT do)
moves probability mass towards answers it can already find, without new behaviors.

    rows = rejection_sample("runs/sft_tiny/hf_model", "data/tiny_rl_train", "data/rs_tiny", size=1000)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge_pl.analysis.accuracy import accuracy_histogram, rollout_accuracy
from bridge_pl.data.io import read_dataset, read_dataset_config, write_dataset

__all__ = ["RejectionSettings", "rejection_sample", "select_rollouts"]

STYLE_TAG = "rejection-sampled"


@dataclass(frozen=True)
class RejectionSettings:
    """Which rollouts of which prompts are kept."""

    num_generations: int = 8
    """Rollouts per prompt (alpha's resolution is 1/N)."""
    temperature: float = 1.0
    """Sampling temperature."""
    max_new_tokens: int = 320
    """Longest rollout; rollouts cut at it are never kept."""
    alpha_min: float = 0.1
    """Keep prompts with alpha >= alpha_min (0.1 at N=8: at least one right rollout)."""
    alpha_max: float = 0.9
    """Keep prompts with alpha <= alpha_max (0.9 at N=8: at least one wrong rollout)."""
    per_prompt: int = 1
    """Distinct right answers kept per prompt (at most)."""

    def errors(self) -> list[str]:
        """What is wrong with these settings (empty when they are usable)."""
        problems = []
        if self.num_generations < 1:
            problems.append(f"num_generations={self.num_generations}: need at least 1 rollout per prompt")
        if not 0.0 <= self.alpha_min <= self.alpha_max <= 1.0:
            problems.append(f"alpha_min={self.alpha_min}, alpha_max={self.alpha_max}: need 0 <= alpha_min <= "
                            "alpha_max <= 1")  # fmt: skip
        if self.per_prompt < 1:
            problems.append(f"per_prompt={self.per_prompt}: keep at least 1 answer per prompt")
        if self.temperature <= 0:
            problems.append(f"temperature={self.temperature}: rejection sampling samples; use a temperature > 0")
        if self.max_new_tokens < 1:
            problems.append(f"max_new_tokens={self.max_new_tokens}: must be >= 1")
        return problems


def select_rollouts(
    correct: list[list[bool]],
    texts: list[list[str]],
    truncated: list[list[bool]],
    *,
    alpha_min: float,
    alpha_max: float,
    per_prompt: int,
) -> list[tuple[int, int]]:
    """(prompt, rollout) indices kept: the first `per_prompt` distinct right, uncut rollouts of each moderate prompt.

    A prompt is moderate when alpha_min <= alpha <= alpha_max, alpha counting every rollout (cut ones included, as
    GRPO's reward does).

    >>> select_rollouts([[True, False, True], [True, True, True], [False, True, True]],
    ...                 [["a", "b", "c"], ["d", "e", "f"], ["g", "h", "h"]], [[False] * 3] * 3,
    ...                 alpha_min=0.1, alpha_max=0.9, per_prompt=2)
    [(0, 0), (0, 2), (2, 1)]
    """
    kept = []
    for p, (right, text, cut) in enumerate(zip(correct, texts, truncated, strict=True)):
        if not alpha_min <= rollout_accuracy(right) <= alpha_max:
            continue
        seen: set[str] = set()
        for r, (ok, answer, was_cut) in enumerate(zip(right, text, cut, strict=True)):
            if ok and not was_cut and answer not in seen and len(seen) < per_prompt:
                seen.add(answer)
                kept.append((p, r))
    return kept


def rejection_sample(
    model_dir: str,
    prompts_path: str,
    out: str | Path,
    *,
    size: int,
    settings: RejectionSettings = RejectionSettings(),
    seed: int = 0,
    engine_kind: str = "hf",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Sample `model_dir` on the first `size` prompts of `prompts_path` and write the kept answers as an SFT dataset.

    Each kept row is the prompt's row with its response replaced by "<think>" + the model's completion (the RL
    prompt ends with "<think>", so the SFT conversation is the prompt followed by the completion), style
    "rejection-sampled".

    Returns:
        The dataset_config.json written: the source rows' task and generator, the settings, and the outcome
        (prompts sampled and kept, rows, the alpha histogram of the sampled prompts).

    Raises:
        ValueError: bad settings, or no rollout was kept (nothing to fine-tune on; the message says what to change).
    """
    if problems := settings.errors():
        raise ValueError("rejection sampling: " + "; ".join(problems))
    from bridge_pl.analysis.probe import sample_probe  # torch: only here (the settings are read without it)
    from bridge_pl.data.prompt_sets import load_prompt_set
    from bridge_pl.rollout.base import SamplingConfig
    from bridge_pl.rollout.factory import bound_engine

    engine, tokenizer, _ = bound_engine(model_dir, engine_kind)
    try:
        prompts = load_prompt_set(prompts_path, tokenizer, size)
        sampling = SamplingConfig(temperature=settings.temperature, max_new_tokens=settings.max_new_tokens)
        rollouts = sample_probe(engine.generate, prompts, settings.num_generations, sampling, seed)
    finally:
        engine.close()
    texts = [[c.text for c in group] for group in rollouts.completions]
    cut = [[c.finish_reason == "length" for c in group] for group in rollouts.completions]
    kept = select_rollouts(rollouts.correct, texts, cut, alpha_min=settings.alpha_min, alpha_max=settings.alpha_max,
                           per_prompt=settings.per_prompt)  # fmt: skip
    histogram = accuracy_histogram(rollouts.alphas)
    if not kept:
        raise ValueError(
            f"rejection sampling kept no rollout of {model_dir} on {len(texts)} prompts of {prompts_path} "
            f"(P(0<alpha<1) = {histogram['informative_mass']:.2f}, mean alpha {histogram['mean_accuracy']:.2f}): "
            "widen [alpha_min, alpha_max], sample more prompts or rollouts, or raise max_new_tokens"
        )
    source = read_dataset(prompts_path)[:size]
    rows = []
    copies: dict[int, int] = {}
    for p, r in kept:
        copies[p] = copies.get(p, -1) + 1
        rows.append(source[p] | {"response": "<think>" + texts[p][r], "style": STYLE_TAG, "copy": copies[p],
                                 "behaviors": None})  # fmt: skip
    recorded = read_dataset_config(prompts_path) or {}
    config = {
        "command": "rejection-sample",
        **{k: recorded[k] for k in ("task", "split", "generator") if k in recorded},
        "style": STYLE_TAG,
        "source_model": str(model_dir),
        "prompts": str(prompts_path),
        "seed": seed,
        "settings": {k: getattr(settings, k) for k in settings.__dataclass_fields__},
        "prompts_sampled": len(texts),
        "prompts_kept": len(copies),
        "alpha_histogram": histogram,
    }
    return write_dataset(out, rows, config=config, overwrite=overwrite)
