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
from bridge_pl.analysis.influence import (
    GradientSpace,
    InfluenceTerms,
    group_gradient,
    influence_from_products,
    preserved_grads,
)
from bridge_pl.data.prompt_sets import PromptSet
from bridge_pl.rl.advantages import group_advantages
from bridge_pl.rl.logprobs import CompletionBatch, completion_logprobs
from bridge_pl.rl.losses import aggregate, clipped_surrogate
from bridge_pl.rollout.base import Completion, SamplingConfig

__all__ = [
    "ProbeRollouts",
    "alpha_window",
    "measure_influence",
    "one_step_changes",
    "one_step_terms",
    "sample_probe",
    "spearman",
]

Sampler = Callable[..., list[list[Completion]]]
"""`sample(prompt_ids, n, sampling, seed=seed)` -> n completions per prompt: a rollout engine's `generate`."""


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
    """`n` rollouts of every probe prompt from `sample` (an engine's `generate`), judged by the probe's task."""
    groups = sample(probe.prompt_ids, n, sampling, seed=seed)
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

    T = mean over the target's (q', o') of (r - mean reward of q') grad log pi(o' | q') (the gradient of the
    target's expected reward). For each training prompt, G+ and G- are the mean gradients of the length-normalised
    log-likelihood (1/|o|) log pi(o | q) over its right and wrong rollouts (the GRPO loss's token mean).

    Args:
        model: The policy (its .grad fields are as they were on return).
        space: The parameter subset (and sketch) of the gradients.
        train: Rollouts of the training probe prompts.
        target: Rollouts of the target prompts.
        pad_id: Padding token id.
        micro_batch_size: Sequences per backward pass (gradients are summed over micro-batches).

    Under FSDP2 (`space.sharded`) every rank must call it with the same rollouts: the inner products of the
    gradient shards are summed over ranks (`GradientSpace.reduce`, once), and the ``.grad`` fields the backward
    passes need are put back on return. T is then this rank's part (take its norm with `GradientSpace.norm`).
    """
    device = next(model.parameters()).device
    with preserved_grads(model):
        target_vector = _target_gradient(model, space, target, pad_id, device, micro_batch_size)
        local, present = [], []  # (K+, K-) of every prompt from this rank's part; which of the two exist
        for prompt, group, correct in zip(train.probe.prompt_ids, train.completions, train.correct, strict=True):
            right = [c.token_ids for c, ok in zip(group, correct, strict=True) if ok]
            wrong = [c.token_ids for c, ok in zip(group, correct, strict=True) if not ok]
            products = []
            for completions in (right, wrong):
                if not completions:
                    products.append(target_vector.new_zeros(()))
                    continue
                vector = _mean_gradient(model, space, prompt, completions, pad_id, device, micro_batch_size)
                products.append(target_vector @ vector)
            local.append(torch.stack(products))
            present.append((bool(right), bool(wrong)))
    totals = space.reduce(torch.stack(local)).tolist() if local else []  # (P, 2)
    terms = [
        influence_from_products(rollout_accuracy(correct), k_plus if has_plus else None, k_minus if has_minus else None)
        for correct, (k_plus, k_minus), (has_plus, has_minus) in zip(train.correct, totals, present, strict=True)
    ]
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
    # grad J = E[A grad log pi(o' | q')]: the sequence's log-likelihood, so lr <T, g> is the change of the reward.
    return _summed_gradient(model, space, batch, weights, micro_batch_size, length_normalised=False)


def _summed_gradient(model, space, batch, weights, micro_batch_size, length_normalised=True) -> torch.Tensor:
    total = None
    for rows in torch.arange(len(batch), device=weights.device).split(micro_batch_size):
        if not bool(weights[rows].any()):
            continue  # rows of zero weight (a target prompt with all-equal rewards) add nothing
        vector = group_gradient(space, model, batch, rows, weights[rows], length_normalised)
        total = vector if total is None else total + vector
    if total is None:
        return torch.zeros(space.sketch.dim if space.sketch else space.size, device=weights.device)
    return total


def one_step_changes(
    model: torch.nn.Module, train: ProbeRollouts, fresh: ProbeRollouts, pad_id: int, lr: float, batch_size: int = 32
) -> list[float | None]:
    """The measured change of the target reward after one GRPO step on each probe prompt alone (None: no step).

    The mean of `one_step_terms` over the fresh rollouts: unbiased for J_new - J_old and not first-order.
    """
    terms = one_step_terms(model, train, fresh, pad_id, lr, batch_size)
    return [None if rows is None else float(rows.mean()) for rows in terms]


def one_step_terms(
    model: torch.nn.Module, train: ProbeRollouts, fresh: ProbeRollouts, pad_id: int, lr: float, batch_size: int = 32
) -> list[torch.Tensor | None]:
    """Per fresh rollout, its term of the target reward's change after one GRPO step on each probe prompt alone.

    For each prompt with 0 < alpha < 1: the GRPO loss of its rollouts (on-policy, no KL, the paper's token-mean
    aggregation, group-normalised advantages) takes one SGD step of `lr` on every trainable parameter; fresh target
    rollout o (sampled before the step, independent of those behind T) then contributes
    (pi_new(o) / pi_old(o) - 1)(r - b), b the mean reward of its prompt's other fresh rollouts. The mean of these
    (B,) terms, prompt-major as in `fresh`, is the likelihood-ratio estimate E_old[...] = J_new - J_old (unbiased);
    a subset of rows is an estimate from fewer rollouts (the split halves of `scripts/validate_influence.py`,
    dependent only through the baselines). The parameters are restored exactly afterwards. None where all of a
    prompt's rewards are equal (zero advantages: no step).
    """
    device = next(model.parameters()).device
    batch, rewards = _flat_rollouts(fresh, pad_id, device)
    before = _sequence_logprobs(model, batch, batch_size)
    params = [p for p in model.parameters() if p.requires_grad]
    saved = [param.detach().clone() for param in params]  # p - lr g + lr g is not p in floating point
    terms: list[torch.Tensor | None] = []
    for prompt, group, correct in zip(train.probe.prompt_ids, train.completions, train.correct, strict=True):
        if all(correct) or not any(correct):
            terms.append(None)  # all advantages are 0: the step does not move the policy
            continue
        grads = torch.autograd.grad(_grpo_loss(model, prompt, group, correct, pad_id, device), params)
        with torch.no_grad():
            for param, grad in zip(params, grads, strict=True):
                param -= lr * grad
            after = _sequence_logprobs(model, batch, batch_size)
            for param, value in zip(params, saved, strict=True):
                param.copy_(value)  # undo the step exactly
        terms.append(((after - before).exp() - 1).mul(rewards))  # (B,)
    return terms


def alpha_window(rollouts: ProbeRollouts, low: float, high: float, limit: int) -> list[int]:
    """Indices of the first `limit` prompts whose rollout accuracy lies in [low, high], in probe order."""
    return [i for i, alpha in enumerate(rollouts.alphas) if low <= alpha <= high][:limit]


def _grpo_loss(model, prompt, group, correct, pad_id, device) -> torch.Tensor:
    batch = CompletionBatch.build([prompt] * len(group), [c.token_ids for c in group], pad_id, device)
    logprobs, _, width = completion_logprobs(model, batch)
    mask = batch.completion_mask[:, :width]
    advantages = group_advantages(torch.tensor([correct], dtype=torch.float32, device=device))[0]  # (N,)
    per_token, _ = clipped_surrogate(logprobs, logprobs.detach(), advantages, mask)
    return aggregate(per_token, mask, "grpo", num_sequences=len(group), num_tokens=float(mask.sum()),
                     max_completion_length=width)  # fmt: skip


def _flat_rollouts(rollouts: ProbeRollouts, pad_id, device) -> tuple[CompletionBatch, torch.Tensor]:
    """All rollouts as one batch, and each one's reward minus the mean reward of its prompt's other rollouts: (B,).

    Leaving a rollout out of its own baseline keeps the baseline independent of it, so E[(ratio - 1)(r - b)] is
    exactly J_new - J_old (with b including r it is (1 - 1/N) of it). r - b_-i = N / (N - 1) (r - mean r).
    """
    prompts, completions, centred = [], [], []
    for prompt, group, correct in zip(rollouts.probe.prompt_ids, rollouts.completions, rollouts.correct, strict=True):
        n, total = len(correct), sum(correct)
        if n < 2:
            raise ValueError("the measurement needs at least 2 fresh rollouts per target prompt (a baseline of others)")
        prompts += [prompt] * n
        completions += [c.token_ids for c in group]
        centred += [float(ok) - (total - ok) / (n - 1) for ok in correct]
    return CompletionBatch.build(prompts, completions, pad_id, device), torch.tensor(centred, device=device)


@torch.no_grad()
def _sequence_logprobs(model, batch: CompletionBatch, batch_size: int) -> torch.Tensor:
    """(B,) log pi(o | q) of every row (the sum over its completion tokens)."""
    out = []
    for rows in torch.arange(len(batch), device=batch.completion_ids.device).split(batch_size):
        logprobs, _, width = completion_logprobs(model, batch, rows)
        out.append((logprobs * batch.completion_mask[rows, :width]).sum(1))
    return torch.cat(out)


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman rank correlation (ties get their mean rank; nan for fewer than 2 pairs or a constant side).

    >>> spearman([1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 15.0, 40.0])
    0.8
    """
    if len(xs) < 2:
        return float("nan")
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    var = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return cov / var if var else float("nan")


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks
