"""Log-probabilities of completions under a causal LM: the forward pass GRPO and the influence analysis share.

Batches are laid out as [left-padded prompt | right-padded completion], so every completion starts in the
same column and ``logits_to_keep`` computes the output layer only where completion tokens are predicted.
Positions count real tokens only (``cumsum(mask) - 1``), as ``generate`` numbers left-padded prompts, so the
log-probs equal those of the sampling pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from bridge_pl.data.collate import pad_left, pad_right
from bridge_pl.modules.losses import token_entropy, token_logprobs

__all__ = ["CompletionBatch", "completion_logprobs", "sequence_mean_logprob"]


@dataclass
class CompletionBatch:
    """Prompts and completions as padded tensors (B rows)."""

    prompt_ids: torch.Tensor  # (B, Tp) left-padded
    prompt_mask: torch.Tensor  # (B, Tp)
    completion_ids: torch.Tensor  # (B, C) right-padded
    completion_mask: torch.Tensor  # (B, C) float, 1 on completion tokens

    @classmethod
    def build(
        cls, prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int, device=None
    ) -> CompletionBatch:
        """Pad token-id lists into a batch (an empty completion keeps one masked column)."""
        return cls(
            prompt_ids=pad_left(prompts, pad_id).to(device),
            prompt_mask=pad_left([[1] * len(p) for p in prompts], 0).to(device),
            completion_ids=pad_right([list(c) or [pad_id] for c in completions], pad_id).to(device),
            completion_mask=pad_right([[1] * len(c) for c in completions], 0).to(device).float(),
        )

    def __len__(self) -> int:
        return self.prompt_ids.shape[0]


def completion_logprobs(
    model: torch.nn.Module,
    batch: CompletionBatch,
    rows: torch.Tensor | None = None,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Log-prob of every completion token of `rows` under `model`, trimmed to the rows' longest completion.

    Args:
        model: A transformers causal LM (plain, peft or FSDP2-sharded).
        batch: The padded batch.
        rows: (b,) row indices (default: all rows).
        temperature: The sampling temperature the log-probs refer to.
        with_entropy: Also return the entropy (no gradient) of each predicted position.

    Returns:
        (logprobs (b, w), entropy (b, w) or None, w): w is the longest completion of the rows; entries past
        a row's own length are meaningless (mask them with ``batch.completion_mask[rows, :w]``).
    """
    rows = torch.arange(len(batch), device=batch.prompt_ids.device) if rows is None else rows
    prompt_mask, completion_mask = batch.prompt_mask[rows], batch.completion_mask[rows].long()
    keep_prompt = int(prompt_mask.sum(1).max())
    width = max(int(completion_mask.sum(1).max()), 1)
    input_ids = torch.cat([batch.prompt_ids[rows, -keep_prompt:], batch.completion_ids[rows, :width]], dim=1)
    attention_mask = torch.cat([prompt_mask[:, -keep_prompt:], completion_mask[:, :width]], dim=1)
    position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)
    logits = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, logits_to_keep=width + 1
    ).logits[:, :-1]  # (b, w, V): position t predicts completion token t
    logprobs = token_logprobs(logits, batch.completion_ids[rows, :width], temperature)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = token_entropy(logits.detach(), temperature)
    return logprobs, entropy, width


def sequence_mean_logprob(
    model: torch.nn.Module, batch: CompletionBatch, rows: torch.Tensor | None = None, temperature: float = 1.0
) -> torch.Tensor:
    """(b,) the length-normalised log-likelihood (1/|o|) log pi(o | q) of each row, with gradient.

    It is what the GRPO loss differentiates per sequence (token mean), so its gradients are the ones that
    enter the co-influence (paper_spec §E.2 (b)).
    """
    rows = torch.arange(len(batch), device=batch.prompt_ids.device) if rows is None else rows
    logprobs, _, width = completion_logprobs(model, batch, rows, temperature=temperature)
    mask = batch.completion_mask[rows, :width]
    return (logprobs * mask).sum(1) / mask.sum(1).clamp(min=1)
