"""Token log-probs and entropies from hidden states, a chunk of tokens at a time: no (B, T, V) logits in memory.

The output layer's logits are the largest tensor of an RL update (Qwen's 151,936-token vocabulary x 2,560
completion tokens x 8 rows is ~12 GB in float32, and softmax, entropy and the backward each add copies).
`chunked_logprobs_and_entropy` computes ``lm_head(h) / temperature`` for `chunk_tokens` tokens at a time and
keeps only the target token's log-prob and the entropy; each chunk runs under non-reentrant
`torch.utils.checkpoint`, so the backward recomputes that chunk's logits instead of storing them. Peak memory is
O(chunk_tokens x V) instead of O(B x T x V), for one more output-layer matmul per chunk in the backward (TRL's
``selective_log_softmax`` and ``entropy_from_logits(chunk_size)``, and Liger's fused linear cross-entropy, save
memory the same way). The numbers equal `bridge_pl.rl.losses.token_logprobs` / `token_entropy` on the full
logits (tested in ``tests/rl/test_chunked.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

__all__ = ["chunked_logprobs_and_entropy"]


def chunked_logprobs_and_entropy(
    hidden: torch.Tensor,
    head_weight: torch.Tensor,
    head_bias: torch.Tensor | None,
    targets: torch.Tensor,
    temperature: float = 1.0,
    chunk_tokens: int = 1024,
    with_entropy: bool = True,
    entropy_grad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-prob of each target token and entropy of each position, from hidden states, chunk by chunk.

    Args:
        hidden: (B, T, H) final hidden states at the positions that predict `targets` (already shifted).
        head_weight: (V, H) the output layer's weight (logits = hidden @ head_weight.T + head_bias).
        head_bias: (V,) or None.
        targets: (B, T) token ids.
        temperature: The sampling temperature (0 or 1: none), as in `token_logprobs`.
        chunk_tokens: Tokens (rows of the flattened (B*T, H) hidden states) per chunk.
        with_entropy: Also return the entropy of each position's tempered distribution (in nats).
        entropy_grad: Keep the entropy in the graph (an entropy bonus); its backward recomputes the chunk's
            logits too. False: the entropy is a diagnostic without gradient.

    Returns:
        (logprobs (B, T) float32 with gradient, entropy (B, T) float32 or None, with gradient if `entropy_grad`).

    >>> hidden, weight = torch.ones(1, 1, 1), torch.tensor([[0.0], [0.0], [2.0]])  # logits (0, 0, 2)
    >>> logprobs, _ = chunked_logprobs_and_entropy(hidden, weight, None, torch.tensor([[2]]))
    >>> round(float(logprobs.exp()), 4)  # e^2 / (2 + e^2)
    0.787
    """
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens={chunk_tokens}: must be >= 1")
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])  # (B*T, H)
    flat_targets = targets.reshape(-1)  # (B*T,)
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (hidden, head_weight, head_bias)
    )
    logprobs, entropies = [], []
    for h, t in zip(flat_hidden.split(chunk_tokens), flat_targets.split(chunk_tokens), strict=True):
        args = (h, head_weight, head_bias, t, temperature, with_entropy, entropy_grad)
        # Non-reentrant checkpointing saves the chunk's inputs only; the backward recomputes its (n, V) logits.
        out = checkpoint(_chunk, *args, use_reentrant=False) if needs_grad else _chunk(*args)
        logprobs.append(out[0])
        entropies.append(out[1])
    logprobs_out = torch.cat(logprobs).reshape(targets.shape)  # (B, T)
    entropy_out = torch.cat(entropies).reshape(targets.shape) if with_entropy else None  # (B, T)
    return logprobs_out, entropy_out


def _chunk(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    temperature: float,
    with_entropy: bool,
    entropy_grad: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(n,) target log-probs and (n,) entropies (or None) of n hidden states; the same ops as `token_logprobs`."""
    scores = F.linear(hidden, weight, bias).float()  # (n, V), float32 as token_logprobs computes it
    if temperature not in (0.0, 1.0):
        scores = scores / temperature
    logp = torch.log_softmax(scores, dim=-1)  # (n, V)
    target_logp = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (n,)
    if not with_entropy:
        return target_logp, None
    with torch.set_grad_enabled(entropy_grad and torch.is_grad_enabled()):  # a diagnostic unless it is a bonus
        entropy = -(logp.exp() * logp).sum(-1)  # (n,), the ops of token_entropy
    return target_logp, entropy
