"""GRPO loss pieces against numbers worked out by hand (ratios, clipping, k3 KL, aggregation, advantages)."""

from __future__ import annotations

import math

import pytest
import torch

from bridge_pl.rl.advantages import group_advantages, zero_std_groups
from bridge_pl.rl.losses import (
    aggregate,
    clipped_surrogate,
    k3_kl,
    sequence_kl_mask,
    token_entropy,
    token_logprobs,
)


def test_clipped_surrogate_takes_the_pessimistic_branch():
    # ratios 1.5, 1.5, 0.5, 0.5 with advantages +1, -1, -1, +1 and epsilon 0.2:
    #   r=1.5, A=+1: min(1.5, 1.2) = 1.2 -> loss -1.2 (clipped high)
    #   r=1.5, A=-1: min(-1.5, -1.2) = -1.5 -> loss 1.5 (not clipped: the clip only limits gains)
    #   r=0.5, A=-1: min(-0.5, -0.8) = -0.8 -> loss 0.8 (clipped low)
    #   r=0.5, A=+1: min(0.5, 0.8) = 0.5 -> loss -0.5
    logprobs = torch.tensor([[math.log(1.5)], [math.log(1.5)], [math.log(0.5)], [math.log(0.5)]], requires_grad=True)
    old = torch.zeros(4, 1)
    advantages = torch.tensor([1.0, -1.0, -1.0, 1.0])
    loss, stats = clipped_surrogate(logprobs, old, advantages, torch.ones(4, 1), 0.2, 0.2)
    assert loss.flatten().tolist() == pytest.approx([-1.2, 1.5, 0.8, -0.5])
    assert float(stats.high) == pytest.approx(0.25) and float(stats.low) == pytest.approx(0.25)
    loss.sum().backward()
    # d(-r A)/d logp = -r A where unclipped, 0 where the clip binds.
    assert logprobs.grad.flatten().tolist() == pytest.approx([0.0, 1.5, 0.0, -0.5])


def test_clip_higher_widens_only_the_upper_side():
    logprobs, old = torch.tensor([[math.log(1.25)]]), torch.zeros(1, 1)
    loss, stats = clipped_surrogate(logprobs, old, torch.tensor([1.0]), torch.ones(1, 1), 0.2, 0.28)
    assert float(loss) == pytest.approx(-1.25) and float(stats.high) == 0.0  # 1.25 < 1.28: not clipped


def test_mask_zeroes_padding():
    loss, _ = clipped_surrogate(
        torch.zeros(1, 3), torch.zeros(1, 3), torch.tensor([2.0]), torch.tensor([[1.0, 1.0, 0.0]])
    )
    assert loss.tolist() == [[-2.0, -2.0, 0.0]]


def test_k3_kl_values_and_clamp():
    # d = ref - logp: d = 1 gives e - 2; d = -1 gives 1/e; equal log-probs give 0.
    kl = k3_kl(torch.tensor([-1.0, 0.0, 0.0]), torch.tensor([0.0, -1.0, 0.0]))
    assert kl.tolist() == pytest.approx([math.e - 2, 1 / math.e, 0.0])
    assert float(k3_kl(torch.tensor([-5.0]), torch.tensor([0.0]), clamp=10.0)) == pytest.approx(10.0)
    assert float(k3_kl(torch.tensor([-5.0]), torch.tensor([0.0]), clamp=None)) == pytest.approx(math.exp(5) - 6)


def test_sequence_kl_mask_drops_drifted_sequences():
    kl = torch.tensor([[0.1, 0.2, 9.0], [0.2, 0.2, 0.2]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])  # the 9.0 is padding: mean 0.15 for row 0
    assert sequence_kl_mask(kl, mask, 0.15).tolist() == [0.0, 0.0]
    assert sequence_kl_mask(kl, mask, 0.16).tolist() == [1.0, 0.0]


def test_aggregations_and_micro_batch_additivity():
    per_token = torch.tensor([[1.0, 3.0, 0.0], [2.0, 0.0, 0.0], [4.0, 4.0, 4.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    counts = {"num_sequences": 3, "num_tokens": 6, "max_completion_length": 4}
    # grpo: sequence means 2, 2, 4 -> 8/3; dapo: 18/6 = 3; dr_grpo: 18/(3*4) = 1.5
    assert float(aggregate(per_token, mask, "grpo", **counts)) == pytest.approx(8 / 3)
    assert float(aggregate(per_token, mask, "dapo", **counts)) == pytest.approx(3.0)
    assert float(aggregate(per_token, mask, "dr_grpo", **counts)) == pytest.approx(1.5)
    for mode in ("grpo", "dapo", "dr_grpo"):  # split into micro-batches with the mini-batch's counts: same total
        whole = aggregate(per_token, mask, mode, **counts)
        parts = aggregate(per_token[:1], mask[:1], mode, **counts) + aggregate(per_token[1:], mask[1:], mode, **counts)
        assert float(parts) == pytest.approx(float(whole))


def test_token_logprobs_with_temperature():
    logits = torch.tensor([[[0.0, math.log(3.0)]]])  # probabilities 1/4, 3/4
    assert token_logprobs(logits, torch.tensor([[1]])).exp().item() == pytest.approx(0.75)
    # T = 2 halves the logits: p = sqrt(3) / (1 + sqrt(3))
    assert token_logprobs(logits, torch.tensor([[1]]), 2.0).exp().item() == pytest.approx(3**0.5 / (1 + 3**0.5))
    assert token_entropy(logits).item() == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))


def test_group_advantages_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    # group 0: mean 0.25, unbiased std sqrt((0.5625 + 3 * 0.0625) / 3) = 0.5
    assert group_advantages(rewards).tolist()[0] == pytest.approx([1.5, -0.5, -0.5, -0.5], abs=1e-5)
    assert group_advantages(rewards).tolist()[1] == [0.0] * 4
    assert group_advantages(rewards, "none").tolist()[0] == pytest.approx([0.75, -0.25, -0.25, -0.25])
    two = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # batch std of (1, 0, 1, 1): mean 0.75, unbiased var 0.25
    assert group_advantages(two, "batch").tolist() == [pytest.approx([1.0, -1.0], abs=1e-5), [0.0, 0.0]]
    assert zero_std_groups(two).tolist() == [False, True]
    with pytest.raises(ValueError, match=">= 2 rollouts"):
        group_advantages(torch.ones(3, 1))


def test_binary_rewards_give_the_closed_form_advantages():
    # paper_spec §E.2: with the population std, A+ = sqrt((1 - a) / a) and A- = -sqrt(a / (1 - a)); the unbiased
    # std of the code scales both by sqrt((N - 1) / N).
    n, correct = 8, 2
    alpha = correct / n
    rewards = torch.tensor([[1.0] * correct + [0.0] * (n - correct)])
    adv = group_advantages(rewards, eps=0.0)[0]
    factor = ((n - 1) / n) ** 0.5
    assert float(adv[0]) == pytest.approx(factor * ((1 - alpha) / alpha) ** 0.5)
    assert float(adv[-1]) == pytest.approx(-factor * (alpha / (1 - alpha)) ** 0.5)
