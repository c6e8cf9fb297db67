"""Probe sets: N rollouts of fixed prompts, their rollout accuracy, and the influence measurement on them.

A probe is read once (`bridge_pl.data.prompt_sets.load_prompt_set`: the first rows of a prompt file, rendered as
RL prompts), sampled
with whatever samples for the policy (a `GRPOModule.sample` or an engine's ``generate``), and scored by the
paper's strict match. `measure_influence` then takes the gradients of paper_spec §E.4 on those rollouts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from bridge_pl.analysis.accuracy import rollout_accuracy
from bridge_pl.analysis.influence import GradientSpace, InfluenceTerms, group_gradient, influence_terms
from bridge_pl.data.prompt_sets import PromptSet
from bridge_pl.rl.logprobs import CompletionBatch
from bridge_pl.rollout.base import Completion, SamplingConfig

__all__ = ["ProbeRollouts", "measure_influence", "sample_probe"]

Sampler = Callable[[list[list[int]], int, SamplingConfig, int], list[list[Completion]]]


@dataclass
class ProbeRollouts:
    """N completions of every probe prompt and their strict-match outcome."""

    probe: PromptSet
    completions: list[list[Completion]]
    correct: list[list[bool]]

    @property
    def alphas(self) -> list[float]:
        """Rollout accuracy of each prompt."""
        return [rollout_accuracy(c) for c in self.correct]


def sample_probe(sample: Sampler, probe: PromptSet, n: int, sampling: SamplingConfig, seed: int) -> ProbeRollouts:
    """`n` rollouts of every probe prompt from `sample(prompt_ids, n, sampling, seed)`, judged by the probe's task."""
    groups = sample(probe.prompt_ids, n, sampling, seed)
    correct = [
        [probe.task.is_correct(c.text, truth) for c in group]
        for group, truth in zip(groups, probe.ground_truth, strict=True)
    ]
    return ProbeRollouts(probe, groups, correct)


def measure_influence(
    model: torch.nn.Module,
    space: GradientSpace,
    train: ProbeRollouts,
    target: ProbeRollouts,
    pad_id: int,
    *,
    micro_batch_size: int = 8,
) -> tuple[list[InfluenceTerms], torch.Tensor]:
    """I, C, K+, K- of every training-probe prompt against the target set; also returns T.

    T = mean over the target's (q', o') of (r - mean reward of q') grad (1/|o'|) log pi(o' | q'). For each
    training prompt, G+ and G- are the mean gradients over its right and wrong rollouts.

    Args:
        model: The policy (gradients via autograd.grad; its .grad fields are not touched).
        space: The parameter subset (and sketch) of the gradients.
        train: Rollouts of the training probe prompts.
        target: Rollouts of the target prompts.
        pad_id: Padding token id.
        micro_batch_size: Sequences per backward pass (gradients are summed over micro-batches).
    """
    device = next(model.parameters()).device
    target_vector = _target_gradient(model, space, target, pad_id, device, micro_batch_size)
    terms = []
    for prompt, group, correct in zip(train.probe.prompt_ids, train.completions, train.correct, strict=True):
        right = [c.token_ids for c, ok in zip(group, correct, strict=True) if ok]
        wrong = [c.token_ids for c, ok in zip(group, correct, strict=True) if not ok]
        g_plus = _mean_gradient(model, space, prompt, right, pad_id, device, micro_batch_size) if right else None
        g_minus = _mean_gradient(model, space, prompt, wrong, pad_id, device, micro_batch_size) if wrong else None
        terms.append(influence_terms(g_plus, g_minus, rollout_accuracy(correct), target_vector))
    return terms, target_vector


def _mean_gradient(model, space, prompt, completions, pad_id, device, micro_batch_size) -> torch.Tensor:
    """Gradient of the mean length-normalised log-likelihood of `completions` of one prompt."""
    batch = CompletionBatch.build([prompt] * len(completions), completions, pad_id, device)
    weights = torch.full((len(completions),), 1.0 / len(completions), device=device)
    return _summed_gradient(model, space, batch, weights, micro_batch_size)


def _target_gradient(model, space, target: ProbeRollouts, pad_id, device, micro_batch_size) -> torch.Tensor:
    prompts, completions, advantages = [], [], []
    for prompt, group, correct in zip(target.probe.prompt_ids, target.completions, target.correct, strict=True):
        mean = sum(correct) / len(correct)
        for completion, ok in zip(group, correct, strict=True):
            prompts.append(prompt)
            completions.append(completion.token_ids)
            advantages.append(float(ok) - mean)
    batch = CompletionBatch.build(prompts, completions, pad_id, device)
    weights = torch.tensor(advantages, device=device) / len(advantages)
    return _summed_gradient(model, space, batch, weights, micro_batch_size)


def _summed_gradient(model, space, batch, weights, micro_batch_size) -> torch.Tensor:
    total = None
    for rows in torch.arange(len(batch), device=weights.device).split(micro_batch_size):
        if not bool(weights[rows].any()):
            continue  # rows of zero weight (a target prompt with all-equal rewards) add nothing
        vector = group_gradient(space, model, batch, rows, weights[rows])
        total = vector if total is None else total + vector
    if total is None:
        return torch.zeros(space.sketch.dim if space.sketch else space.size, device=weights.device)
    return total
