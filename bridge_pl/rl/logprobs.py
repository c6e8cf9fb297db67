"""Log-probabilities of completions under a causal LM: the forward pass GRPO and the influence analysis share.

A GRPO batch holds N completions of each prompt. `completion_logprobs` runs each distinct prompt once, with a
KV cache, and the completions on top of the cached prompt (the cache is indexed per row, so gradients reach
the shared prompt computation from every completion): the prompt's forward and backward are paid once per
group instead of N times. Positions count real tokens only (``cumsum(mask) - 1``, as ``generate`` numbers
left-padded prompts), so the log-probs equal those of one forward pass over [prompt | completion], the path
taken when gradient checkpointing is on (transformers drops the cache there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from bridge_pl.data.encoding import pad_left, pad_right
from bridge_pl.models.model_io import cache_keyword
from bridge_pl.rl.losses import token_entropy, token_logprobs

__all__ = ["CompletionBatch", "completion_logprobs", "sequence_mean_logprob"]


@dataclass
class CompletionBatch:
    """Completions (B rows) and their distinct prompts (U <= B), as padded tensors."""

    prompt_ids: torch.Tensor  # (U, Tp) left-padded distinct prompts
    prompt_mask: torch.Tensor  # (U, Tp)
    prompt_index: torch.Tensor  # (B,) the prompt of each row
    completion_ids: torch.Tensor  # (B, C) right-padded
    completion_mask: torch.Tensor  # (B, C) float, 1 on completion tokens

    @classmethod
    def build(
        cls, prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]], pad_id: int, device=None
    ) -> CompletionBatch:
        """Pad token-id lists into a batch; equal prompts are stored once (an empty completion keeps one column)."""
        distinct: dict[tuple[int, ...], int] = {}
        index = [distinct.setdefault(tuple(p), len(distinct)) for p in prompts]
        unique = [list(p) for p in distinct]
        return cls(
            prompt_ids=pad_left(unique, pad_id).to(device),
            prompt_mask=pad_left([[1] * len(p) for p in unique], 0).to(device),
            prompt_index=torch.tensor(index, dtype=torch.long, device=device),
            completion_ids=pad_right([list(c) or [pad_id] for c in completions], pad_id).to(device),
            completion_mask=pad_right([[1] * len(c) for c in completions], 0).to(device).float(),
        )

    def __len__(self) -> int:
        return self.completion_ids.shape[0]

    def prompt_lengths(self) -> torch.Tensor:
        """(B,) the prompt length of every row."""
        return self.prompt_mask.sum(1)[self.prompt_index]


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
    rows = torch.arange(len(batch), device=batch.completion_ids.device) if rows is None else rows
    width = max(int(batch.completion_mask[rows].sum(1).max()), 1)
    if _checkpointing(model) and torch.is_grad_enabled():
        logits = _logits_whole(model, batch, rows, width)
    else:
        logits = _logits_shared_prompts(model, batch, rows, width)  # (b, w, V)
    logprobs = token_logprobs(logits, batch.completion_ids[rows, :width], temperature)
    entropy = None
    if with_entropy:
        with torch.no_grad():
            entropy = token_entropy(logits.detach(), temperature)
    return logprobs, entropy, width


def _logits_shared_prompts(model: torch.nn.Module, batch: CompletionBatch, rows: torch.Tensor, width: int):
    """(b, w, V) next-token logits of the completions, each distinct prompt run once with a KV cache."""
    used, local = torch.unique(batch.prompt_index[rows], return_inverse=True)  # (u,), (b,)
    prompt_mask = batch.prompt_mask[used]
    keep = int(prompt_mask.sum(1).max())
    prompt_ids, prompt_mask = batch.prompt_ids[used, -keep:], prompt_mask[:, -keep:]
    first = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=_positions(prompt_mask),
                  use_cache=True, logits_to_keep=1)  # fmt: skip
    cache = first["cache"] if "cache" in first else first["past_key_values"]
    cache.batch_select_indices(local)  # (u, ...) -> (b, ...): each row attends to its own prompt
    completion_mask = batch.completion_mask[rows, :width].long()
    attention_mask = torch.cat([prompt_mask[local], completion_mask], dim=1)
    positions = prompt_mask.sum(1)[local, None] + torch.arange(width, device=attention_mask.device)  # (b, w)
    head = first.logits[local]  # (b, 1, V): predicts completion token 0
    if width == 1:
        return head
    inputs = width - 1  # completion tokens 0 .. w-2 predict tokens 1 .. w-1
    second = model(input_ids=batch.completion_ids[rows, :inputs], attention_mask=attention_mask[:, : keep + inputs],
                   position_ids=positions[:, :inputs], use_cache=True, **{cache_keyword(): cache})  # fmt: skip
    return torch.cat([head, second.logits], dim=1)  # (b, w, V)


def _logits_whole(model: torch.nn.Module, batch: CompletionBatch, rows: torch.Tensor, width: int) -> torch.Tensor:
    """(b, w, V) the same logits from one pass over [prompt | completion] per row."""
    prompt_mask = batch.prompt_mask[batch.prompt_index[rows]]
    keep = int(prompt_mask.sum(1).max())
    prompt_ids = batch.prompt_ids[batch.prompt_index[rows], -keep:]
    input_ids = torch.cat([prompt_ids, batch.completion_ids[rows, :width]], dim=1)
    attention_mask = torch.cat([prompt_mask[:, -keep:], batch.completion_mask[rows, :width].long()], dim=1)
    return model(input_ids=input_ids, attention_mask=attention_mask, position_ids=_positions(attention_mask),
                 logits_to_keep=width + 1, use_cache=False).logits[:, :-1]  # fmt: skip


def _positions(attention_mask: torch.Tensor) -> torch.Tensor:
    return (attention_mask.cumsum(1) - 1).clamp(min=0)


def _checkpointing(model: torch.nn.Module) -> bool:
    """Whether activation checkpointing is on somewhere in `model` (transformers then ignores KV caches)."""
    return any(getattr(m, "gradient_checkpointing", False) is True for m in model.modules())


def sequence_mean_logprob(
    model: torch.nn.Module, batch: CompletionBatch, rows: torch.Tensor | None = None, temperature: float = 1.0
) -> torch.Tensor:
    """(b,) the length-normalised log-likelihood (1/|o|) log pi(o | q) of each row, with gradient.

    It is what the GRPO loss differentiates per sequence (token mean), so its gradients are the ones that
    enter the co-influence (paper_spec §E.2 (b)).
    """
    rows = torch.arange(len(batch), device=batch.completion_ids.device) if rows is None else rows
    logprobs, _, width = completion_logprobs(model, batch, rows, temperature=temperature)
    mask = batch.completion_mask[rows, :width]
    return (logprobs * mask).sum(1) / mask.sum(1).clamp(min=1)
