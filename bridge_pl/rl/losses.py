"""The GRPO policy loss as pure functions: token log-probs, clipped surrogate, k3 KL, aggregation.

Shapes: B sequences (prompt x rollout), C completion tokens; ``mask`` (B, C) is 1 on the completion's real
tokens (through its stop or eos token) and 0 on padding. Each function is checked against numbers worked by
hand in ``tests/rl/test_losses.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

__all__ = [
    "Aggregation",
    "ClipStats",
    "ImportanceSamplingLevel",
    "aggregate",
    "clipped_surrogate",
    "SamplingCorrection",
    "high_entropy_mask",
    "k3_kl",
    "masked_mean",
    "sampling_correction",
    "sequence_kl_mask",
    "token_entropy",
    "token_logprobs",
]

Aggregation = Literal["grpo", "dapo", "dr_grpo"]
ImportanceSamplingLevel = Literal["token", "sequence"]
SamplingCorrection = Literal["none", "token_truncate", "token_mask", "sequence_truncate", "sequence_mask"]


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Log-probability of each target token under softmax(logits / temperature): (B, C).

    Args:
        logits: (B, C, V) scores at the positions that predict `targets` (already shifted).
        targets: (B, C) token ids.
        temperature: The sampling temperature (rollouts were drawn from the tempered distribution; 0 or 1: none).

    >>> token_logprobs(torch.zeros(1, 2, 4), torch.tensor([[0, 3]])).exp()  # uniform over 4 tokens
    tensor([[0.2500, 0.2500]])
    """
    scores = logits.float()
    if temperature not in (0.0, 1.0):
        scores = scores / temperature
    return torch.log_softmax(scores, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (B, C)


def token_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy of the (tempered) next-token distribution at every position: (B, C), in nats.

    >>> round(float(token_entropy(torch.zeros(1, 1, 4))), 4)  # ln 4
    1.3863
    """
    scores = logits.float()
    if temperature not in (0.0, 1.0):
        scores = scores / temperature
    logp = torch.log_softmax(scores, dim=-1)
    return -(logp.exp() * logp).sum(-1)


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, clamp: float | None = 10.0) -> torch.Tensor:
    """Per-token k3 ("low_var_kl") estimate of KL(policy || reference): exp(d) - d - 1 with d = ref - logp.

    Always >= 0, unbiased for the KL when tokens are sampled from the policy. Like verl's ``low_var_kl``,
    d is clamped to [-20, 20] and the result to [-clamp, clamp] (None: no clamp).

    >>> k3_kl(torch.tensor([0.0, -1.0]), torch.tensor([0.0, 0.0])).round(decimals=4)  # e - 2 for d = 1
    tensor([0.0000, 0.7183])
    """
    delta = (ref_logprobs - logprobs).clamp(-20.0, 20.0)
    kl = torch.exp(delta) - delta - 1.0
    return kl if clamp is None else kl.clamp(-clamp, clamp)


@dataclass
class ClipStats:
    """Shares of completion tokens whose ratio left the trust region where the clip binds (TRL's clip_ratio)."""

    low: torch.Tensor
    """Ratio < 1 - epsilon_low with a negative advantage."""
    high: torch.Tensor
    """Ratio > 1 + epsilon_high with a positive advantage."""

    @property
    def region(self) -> torch.Tensor:
        """Either of the two."""
        return self.low + self.high


def clipped_surrogate(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    *,
    importance_sampling_level: ImportanceSamplingLevel = "token",
    dual_clip_c: float | None = None,
) -> tuple[torch.Tensor, ClipStats]:
    """Per-token PPO clipped policy loss -min(r A, clip(r, 1 - eps_low, 1 + eps_high) A).

    The ratio r is exp(logp - old) per token ("token", PPO/GRPO), or GSPO's sequence ratio
    exp(mean over the sequence's `mask` tokens of (logp - old)), the same on all its tokens ("sequence"; TRL's
    ``importance_sampling_level="sequence"`` in ``GRPOTrainer._compute_loss``, gradient through the mean).
    With `dual_clip_c` (> 1), a negative-advantage token's loss is further capped at c x |A| (dual-clip PPO,
    verl's ``clip_ratio_c`` in ``verl/trainer/ppo/core_algos.py::compute_policy_loss``).

    Args:
        logprobs: (B, C) log-probs under the policy being updated (with gradient).
        old_logprobs: (B, C) log-probs under the policy that sampled (no gradient).
        advantages: (B,) one advantage per sequence, the same on all its tokens.
        mask: (B, C) 1 on completion tokens (those that carry loss).
        epsilon_low: Lower clip range.
        epsilon_high: Upper clip range (DAPO's clip-higher sets it above epsilon_low).
        importance_sampling_level: "token" or "sequence" (GSPO) ratios.
        dual_clip_c: Cap of the loss of negative advantages, in units of |A| (None: no cap).

    Returns:
        (B, C) loss per token (0 where mask is 0) and the clip shares over masked tokens.

    >>> loss, _ = clipped_surrogate(torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([2.0]), torch.ones(1, 2))
    >>> loss  # ratio 1: the loss is -A on every token
    tensor([[-2., -2.]])
    """
    log_ratio = logprobs - old_logprobs  # (B, C)
    if importance_sampling_level == "sequence":
        log_ratio = (log_ratio * mask).sum(1, keepdim=True) / mask.sum(1, keepdim=True).clamp(min=1)  # (B, 1)
        log_ratio = log_ratio.expand_as(logprobs)  # (B, C)
    ratio = torch.exp(log_ratio)  # (B, C)
    adv = advantages.unsqueeze(1)  # (B, 1)
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - epsilon_low, 1.0 + epsilon_high) * adv
    loss = -torch.minimum(unclipped, clipped)  # (B, C)
    if dual_clip_c is not None:  # verl: torch.where(A < 0, min(-A * c, loss), loss)
        loss = torch.where(adv < 0, torch.minimum(loss, -adv * dual_clip_c), loss)
    loss = loss * mask
    with torch.no_grad():
        low = ((ratio < 1.0 - epsilon_low) & (adv < 0)).float()
        high = ((ratio > 1.0 + epsilon_high) & (adv > 0)).float()
        stats = ClipStats(masked_mean(low, mask), masked_mean(high, mask))
    return loss, stats


def sampling_correction(
    logprobs: torch.Tensor,
    sampling_logprobs: torch.Tensor,
    mask: torch.Tensor,
    mode: SamplingCorrection,
    ratio_min: float | None = None,
    ratio_max: float | None = 3.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Importance weights for the train/inference mismatch: pi_trainer / pi_sampler of the sampled tokens.

    The rollout engine (vLLM: bf16, its own kernels, top-p/k) samples from a slightly different distribution than
    the trainer computes; the policy loss is multiplied by ratio = exp(logp_trainer - logp_sampler), per token
    ("token_*") or per sequence ("sequence_*": the product of its tokens' ratios), either truncated to [ratio_min,
    ratio_max] ("*_truncate", TIS) or set to 0 outside it ("*_mask", MIS). This is TRL's
    ``vllm_importance_sampling_mode`` (``GRPOTrainer._generate_and_score_completions``): tokens outside `mask`
    and NaN sampler log-probs contribute a ratio of 1.

    Args:
        logprobs: (B, C) the trainer's log-probs of the sampled tokens under the sampling policy (no gradient).
        sampling_logprobs: (B, C) the engine's log-probs of the same tokens.
        mask: (B, C) 1 on completion tokens.
        mode: "token_truncate", "token_mask", "sequence_truncate" or "sequence_mask" ("none": weights 1).
        ratio_min: Lower bound (None: none).
        ratio_max: Upper bound (None: none; TRL's default 3).

    Returns:
        (weights (B, C) to multiply the per-token policy loss by, ratio (B, C) or (B, 1) before truncation or
        masking, outside (same shape as ratio) True where the ratio left [ratio_min, ratio_max]).

    >>> w, ratio, outside = sampling_correction(torch.tensor([[0.0, -1.0]]), torch.tensor([[-1.0, -1.0]]),
    ...                                         torch.ones(1, 2), "token_truncate", ratio_max=2.0)
    >>> w, outside  # e^1 = 2.72 is truncated to 2, e^0 = 1 stays
    (tensor([[2., 1.]]), tensor([[ True, False]]))
    """
    diff = torch.nan_to_num((logprobs.detach() - sampling_logprobs) * mask, nan=0.0)  # (B, C)
    if mode == "none":
        ones = torch.ones_like(diff)
        return ones, ones, torch.zeros_like(diff, dtype=torch.bool)
    if mode not in ("token_truncate", "token_mask", "sequence_truncate", "sequence_mask"):
        raise ValueError(f"sampling correction {mode!r}: choose token_truncate, token_mask, sequence_truncate, "
                         "sequence_mask or off")  # fmt: skip
    if mode.startswith("sequence"):
        diff = diff.sum(1, keepdim=True)  # (B, 1): log of the product of the token ratios
    ratio = torch.exp(diff)  # (B, C) or (B, 1)
    low = -math.inf if ratio_min is None else ratio_min
    high = math.inf if ratio_max is None else ratio_max
    outside = (ratio < low) | (ratio > high)
    if mode.endswith("mask"):
        weights = ratio.masked_fill(outside, 0.0)
    else:
        weights = ratio if ratio_min is None and ratio_max is None else ratio.clamp(ratio_min, ratio_max)
    return weights.expand_as(mask), ratio, outside


def high_entropy_mask(
    entropy: torch.Tensor, mask: torch.Tensor, quantile: float, pool: torch.Tensor | None = None
) -> torch.Tensor:
    """(B, C) float mask of the top-`quantile` share of `mask`'s tokens by entropy (ties at the cut kept).

    The cut is the (1 - quantile) quantile (torch.quantile, linear interpolation) of `pool`, by default the
    entropies of the tokens under `mask`; a masked token is kept when its entropy reaches the cut. This is TRL's
    ``GRPOTrainer.get_high_entropy_mask(entropies, mask, 1 - top_entropy_quantile)`` (``trl/trainer/grpo_trainer.py``;
    "Beyond the 80/20 rule", Wang et al. 2025); TRL's pool is the tokens of every rank, which a caller passes as
    `pool`.

    Args:
        entropy: (B, C) entropy of each position.
        mask: (B, C) 1 on the tokens that carry loss.
        quantile: Share of the tokens to keep, in (0, 1].
        pool: (n,) the entropies the cut is taken over (default: ``entropy[mask]``).

    >>> high_entropy_mask(torch.tensor([[0.1, 0.9, 0.5, 0.3]]), torch.ones(1, 4), 0.5).tolist()  # cut 0.4
    [[0.0, 1.0, 1.0, 0.0]]
    """
    pool = entropy[mask.bool()].float() if pool is None else pool.float()
    if pool.numel() == 0:
        return torch.zeros_like(mask)
    cut = torch.quantile(pool, 1.0 - quantile)
    return ((entropy * mask >= cut) & mask.bool()).to(mask.dtype)


def sequence_kl_mask(kl: torch.Tensor, mask: torch.Tensor, threshold: float) -> torch.Tensor:
    """(B,) 1.0 for sequences whose token-mean KL is below `threshold`, 0.0 for the others (they get no loss).

    The paper's Llama-1B setting (threshold 0.15) stops updating on sequences that drifted far from the
    reference.

    >>> sequence_kl_mask(torch.tensor([[0.1, 0.1], [0.3, 0.0]]), torch.ones(2, 2), 0.15).tolist()
    [1.0, 0.0]
    """
    per_sequence = (kl * mask).sum(1) / mask.sum(1).clamp(min=1)
    return (per_sequence < threshold).float()


def aggregate(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    mode: Aggregation,
    *,
    num_sequences: float,
    num_tokens: float,
    max_completion_length: int,
) -> torch.Tensor:
    """Reduce a (B, C) per-token loss to a scalar; the counts are those of the whole mini-batch.

    Passing the counts of the whole mini-batch (over every micro-batch and rank) makes the sum of the
    micro-batches' results equal the loss of the mini-batch as one piece.

    Args:
        per_token: (B, C) loss per token, 0 outside `mask`.
        mask: (B, C) 1 on completion tokens that carry loss.
        mode: "grpo": mean over sequences of each sequence's token mean (the paper); "dapo": sum over tokens
            divided by the number of tokens; "dr_grpo": sum over tokens divided by sequences x
            max_completion_length (no length normalisation).
        num_sequences: Sequences in the mini-batch (only those that carry loss).
        num_tokens: Completion tokens in the mini-batch that carry loss.
        max_completion_length: The rollout length limit (dr_grpo's constant).

    >>> per_token, mask = torch.tensor([[1.0, 3.0], [2.0, 0.0]]), torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    >>> [round(float(aggregate(per_token, mask, m, num_sequences=2, num_tokens=3, max_completion_length=2)), 4)
    ...  for m in ("grpo", "dapo", "dr_grpo")]
    [2.0, 2.0, 1.5]
    """
    masked = per_token * mask
    if mode == "grpo":
        per_sequence = masked.sum(1) / mask.sum(1).clamp(min=1)  # (B,)
        return per_sequence.sum() / max(num_sequences, 1)
    if mode == "dapo":
        return masked.sum() / max(num_tokens, 1)
    if mode == "dr_grpo":
        return masked.sum() / max(num_sequences * max_completion_length, 1)
    raise ValueError(f"aggregation={mode!r}: choose grpo, dapo or dr_grpo")


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where `mask` is 1 (0 when the mask is empty).

    >>> float(masked_mean(torch.tensor([1.0, 5.0]), torch.tensor([1.0, 0.0])))
    1.0
    """
    return (values * mask).sum() / mask.sum().clamp(min=1)
