"""Group-relative advantages of GRPO (paper_spec §D.3; verl's ``compute_grpo_outcome_advantage``).

Rewards come as a (P, N) tensor: P prompts, N rollouts each. Every advantage is one number per rollout,
later spread over all of the rollout's tokens.
"""

from __future__ import annotations

from typing import Literal

import torch

__all__ = ["AdvantageScale", "group_advantages", "zero_std_groups"]

AdvantageScale = Literal["group", "batch", "none"]


def group_advantages(rewards: torch.Tensor, scale: AdvantageScale = "group", eps: float = 1e-6) -> torch.Tensor:
    """Rewards minus their group mean, divided by a standard deviation chosen by `scale`.

    Args:
        rewards: (P, N) rewards, N >= 2 rollouts per prompt.
        scale: "group": the unbiased std of each group (the paper's code, verl's default); "batch": the
            unbiased std of all P*N rewards; "none": no division (Dr. GRPO).
        eps: Added to the std, so identical rewards give 0 rather than 0/0.

    Returns:
        (P, N) advantages; a group whose rewards are all equal gets 0 everywhere.

    >>> group_advantages(torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])).round(decimals=4)
    tensor([[ 1.5000, -0.5000, -0.5000, -0.5000],
            [ 0.0000,  0.0000,  0.0000,  0.0000]])
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be (prompts, rollouts) with >= 2 rollouts; got shape {tuple(rewards.shape)}")
    centred = rewards - rewards.mean(dim=1, keepdim=True)  # (P, N)
    if scale == "none":
        return centred
    if scale == "group":
        std = rewards.std(dim=1, keepdim=True)  # (P, 1), unbiased (N - 1), as torch.std in the paper's code
    elif scale == "batch":
        std = rewards.flatten().std()  # ()
    else:
        raise ValueError(f"scale={scale!r}: choose group, batch or none")
    return centred / (std + eps)


def zero_std_groups(rewards: torch.Tensor) -> torch.Tensor:
    """(P,) mask of the groups whose N rewards are all equal (no learning signal: all right or all wrong).

    >>> zero_std_groups(torch.tensor([[1.0, 0.0], [0.0, 0.0]])).tolist()
    [False, True]
    """
    return (rewards == rewards[:, :1]).all(dim=1)
