"""Pre-RL diagnostics of a saved model: its rollout-accuracy histogram and per-step influence on probe sets.

`probe_model` is what the experiment pipeline runs on every SFT model (the paper's Fig. 1 middle and right),
outside any training loop: it loads the model, samples N rollouts of the probe and target prompts with a
rollout engine, and measures both quantities as `callbacks.rollout_accuracy` and `callbacks.influence` do
during GRPO. `screen_targets` picks target prompts whose rollout accuracy lies in a window, on rollouts of their
own: only such prompts carry a target gradient, so the influence measured on them is far less noisy
(docs/influence.md).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

from bridge_pl.analysis.accuracy import accuracy_histogram
from bridge_pl.analysis.influence import GradientSpace, influence_summary, select_parameters
from bridge_pl.analysis.probe import measure_influence, sample_probe
from bridge_pl.data.prompt_sets import load_prompt_set
from bridge_pl.rollout.base import SamplingConfig
from bridge_pl.rollout.factory import EngineKind, bound_engine

__all__ = ["probe_model", "screen_targets"]


def probe_model(
    model_dir: str,
    probe_path: str,
    target_path: str,
    *,
    size: int = 64,
    num_generations: int = 16,
    max_new_tokens: int = 1024,
    temperature: float = 1.0,
    influence: bool = True,
    parameters: Literal["last_layers", "lm_head", "all"] = "last_layers",
    sketch_dim: int | None = None,
    seed: int = 0,
    engine_kind: EngineKind = "hf",
    target_index: list[int] | None = None,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Histogram of alpha over the first `size` probe prompts and, if asked, the influence against the targets.

    The targets are the first `size` prompts of `target_path`, or those at the file positions `target_index`
    (`screen_targets`). `batch_size`: rollouts per generate call.

    Returns:
        ``{"model", "histogram": {..., "alphas"}, "influence": {total, co_influence, k_plus, k_minus,
        target_grad_norm, by_bin, prompts}}`` (influence only when asked).
    """
    rollout, tokenizer, model = bound_engine(model_dir, engine_kind, batch_size=batch_size)
    sampling = SamplingConfig(temperature=temperature, max_new_tokens=max_new_tokens)
    train = sample_probe(
        rollout.generate, load_prompt_set(probe_path, tokenizer, size), num_generations, sampling, seed
    )
    result: dict[str, Any] = {
        "model": model_dir,
        "histogram": {**accuracy_histogram(train.alphas), "alphas": train.alphas},
    }
    if influence:
        if target_index is None:
            target_prompts = load_prompt_set(target_path, tokenizer, size)
        else:
            target_prompts = load_prompt_set(target_path, tokenizer, max(target_index) + 1).subset(target_index)
        targets = sample_probe(rollout.generate, target_prompts, num_generations, sampling, seed + 1)
        space = GradientSpace(select_parameters(model, parameters), sketch_dim=sketch_dim, seed=seed)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        terms, target = measure_influence(model, space, train, targets, pad)
        result["influence"] = influence_summary(terms, target) | {"prompts": [asdict(t) for t in terms]}
        result["influence"]["targets"] = target_prompts.index
    rollout.close()
    return result


def screen_targets(
    model_dir: str,
    target_path: str,
    *,
    pool: int,
    num_generations: int = 16,
    max_new_tokens: int = 1024,
    temperature: float = 1.0,
    seed: int = 0,
    engine_kind: EngineKind = "hf",
    batch_size: int = 64,
) -> list[float]:
    """Rollout accuracy of the model on each of the first `pool` target prompts (`num_generations` rollouts each)."""
    rollout, tokenizer, _ = bound_engine(model_dir, engine_kind, batch_size=batch_size)
    sampling = SamplingConfig(temperature=temperature, max_new_tokens=max_new_tokens)
    screened = sample_probe(
        rollout.generate, load_prompt_set(target_path, tokenizer, pool), num_generations, sampling, seed
    )
    rollout.close()
    return screened.alphas
