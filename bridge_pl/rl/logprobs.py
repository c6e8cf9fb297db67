"""Log-probabilities of completions under a causal LM: the forward pass GRPO and the influence analysis share.

A GRPO batch holds N completions of each prompt. `completion_logprobs` runs each distinct prompt once, with a
KV cache, and the completions on top of the cached prompt (the cache is indexed per row, so gradients reach
the shared prompt computation from every completion): the prompt's forward and backward are paid once per
group instead of N times. Positions count real tokens only (``cumsum(mask) - 1``, as ``generate`` numbers
left-padded prompts), so the log-probs equal those of one forward pass over [prompt | completion], the path
taken when gradient checkpointing is on (transformers drops the cache there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from bridge_pl.data.encoding import pad_left, pad_right
from bridge_pl.models.model_io import cache_keyword
from bridge_pl.rl.chunked import chunked_logprobs_and_entropy
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
    entropy_grad: bool = False,
    chunk_tokens: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Log-prob of every completion token of `rows` under `model`, trimmed to the rows' longest completion.

    Args:
        model: A transformers causal LM (plain, peft or FSDP2-sharded).
        batch: The padded batch.
        rows: (b,) row indices (default: all rows).
        temperature: The sampling temperature the log-probs refer to.
        with_entropy: Also return the entropy of each predicted position (no gradient unless `entropy_grad`).
        entropy_grad: Keep the entropy in the graph (an entropy bonus); chunked, its backward recomputes the logits.
        chunk_tokens: None: the model returns full (b, w, V) logits. An int: run the model's decoder for hidden
            states and apply the output layer `chunk_tokens` tokens at a time under activation checkpointing
            (`bridge_pl.rl.chunked`), so no (b, w, V) tensor exists, forward or backward; the same numbers. Models
            whose structure is not recognised (FSDP-wrapped, LoRA on the output layer, scaled or soft-capped
            logits) take the full-logits path.

    Returns:
        (logprobs (b, w), entropy (b, w) or None, w): w is the longest completion of the rows; entries past
        a row's own length are meaningless (mask them with ``batch.completion_mask[rows, :w]``).
    """
    rows = torch.arange(len(batch), device=batch.completion_ids.device) if rows is None else rows
    width = max(int(batch.completion_mask[rows].sum(1).max()), 1)
    whole = _checkpointing(model) and torch.is_grad_enabled()
    targets = batch.completion_ids[rows, :width]  # (b, w)
    parts = None if chunk_tokens is None else _decoder_and_head(model)
    if parts is not None:
        decoder, head = parts
        run = _run_decoder(decoder)
        hidden = (_whole if whole else _shared_prompts)(run, batch, rows, width)  # (b, w, H)
        return (*chunked_logprobs_and_entropy(hidden, head.weight, head.bias, targets, temperature, chunk_tokens,
                                              with_entropy, with_entropy and entropy_grad), width)  # fmt: skip
    logits = (_whole if whole else _shared_prompts)(_run_model(model), batch, rows, width)  # (b, w, V)
    logprobs = token_logprobs(logits, targets, temperature)
    entropy = None
    if with_entropy and entropy_grad:
        entropy = token_entropy(logits, temperature)
    elif with_entropy:
        with torch.no_grad():
            entropy = token_entropy(logits.detach(), temperature)
    return logprobs, entropy, width


# A forward: (input_ids, attention_mask, position_ids, keep, cache) -> ((n, keep, D) outputs of the last `keep`
# positions, the KV cache). D is V for the model (logits) or H for its decoder (hidden states).
Forward = Callable[..., tuple[torch.Tensor, Any]]


def _run_model(model: torch.nn.Module) -> Forward:
    """The causal LM as a `Forward` returning logits."""

    def run(input_ids, attention_mask, position_ids, keep, cache=None, use_cache=True):
        extra = {} if cache is None else {cache_keyword(): cache}
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                    use_cache=use_cache, logits_to_keep=keep, **extra)  # fmt: skip
        return out.logits, _cache_of(out)

    return run


def _run_decoder(decoder: torch.nn.Module) -> Forward:
    """The decoder (backbone without output layer) as a `Forward` returning final hidden states."""

    def run(input_ids, attention_mask, position_ids, keep, cache=None, use_cache=True):
        extra = {} if cache is None else {cache_keyword(): cache}
        out = decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                      use_cache=use_cache, **extra)  # fmt: skip
        return out.last_hidden_state[:, -keep:], _cache_of(out)

    return run


def _cache_of(out) -> Any:
    return out["cache"] if "cache" in out else out.get("past_key_values")


def _shared_prompts(run: Forward, batch: CompletionBatch, rows: torch.Tensor, width: int) -> torch.Tensor:
    """(b, w, D) outputs at the positions predicting the completions, each distinct prompt run once with a KV cache.

    Completions of very different lengths are run in length buckets (`_length_buckets`), each on its own copy of
    the prompt cache and only as wide as its longest completion, so a batch of 60-token answers with one 300-token
    answer does not compute 300 positions for every row. The numbers are those of one pass (each row attends to its
    own prompt and completion only); gradients reach the shared prompt computation from every bucket.
    """
    used, local = torch.unique(batch.prompt_index[rows], return_inverse=True)  # (u,), (b,)
    prompt_mask = batch.prompt_mask[used]
    keep = int(prompt_mask.sum(1).max())
    prompt_ids, prompt_mask = batch.prompt_ids[used, -keep:], prompt_mask[:, -keep:]
    first, cache = run(prompt_ids, prompt_mask, _positions(prompt_mask), keep=1)  # (u, 1, D)
    head = first[local]  # (b, 1, D): predicts completion token 0
    if width == 1:
        return head
    lengths = batch.completion_mask[rows, :width].sum(1).long()  # (b,)
    buckets = _length_buckets(lengths) if _plain_layers(cache) else [torch.arange(len(rows), device=rows.device)]
    if len(buckets) == 1:
        cache.batch_select_indices(local)  # (u, ...) -> (b, ...): each row attends to its own prompt
        return torch.cat([head, _completions(run, batch, rows, local, prompt_mask, width, cache)], dim=1)
    parts = []
    for bucket in buckets:  # (n,) positions in `rows`
        bucket_width = max(int(lengths[bucket].max()), 1)
        part = head[bucket]  # (n, 1, D)
        if bucket_width > 1:
            own = DynamicCache([(layer.keys[local[bucket]], layer.values[local[bucket]]) for layer in cache.layers])
            rest = _completions(run, batch, rows[bucket], local[bucket], prompt_mask, bucket_width, own)
            part = torch.cat([part, rest], dim=1)  # (n, bucket_width, D)
        parts.append(torch.nn.functional.pad(part, (0, 0, 0, width - bucket_width)))  # (n, w, D): zeros past it
    return torch.cat(parts)[torch.argsort(torch.cat(buckets))]  # back in the order of `rows`


def _completions(
    run: Forward,
    batch: CompletionBatch,
    rows: torch.Tensor,
    local: torch.Tensor,
    prompt_mask: torch.Tensor,
    width: int,
    cache: Any,
) -> torch.Tensor:
    """(b, w - 1, D) outputs of completion tokens 0 .. w-2 (predicting tokens 1 .. w-1) on a cache of their prompts."""
    inputs = width - 1
    completion_mask = batch.completion_mask[rows, :inputs].long()
    attention_mask = torch.cat([prompt_mask[local], completion_mask], dim=1)  # (b, prompt + w - 1)
    positions = prompt_mask.sum(1)[local, None] + torch.arange(inputs, device=attention_mask.device)  # (b, w - 1)
    out, _ = run(batch.completion_ids[rows, :inputs], attention_mask, positions, keep=inputs, cache=cache)
    return out


def _length_buckets(lengths: torch.Tensor) -> list[torch.Tensor]:
    """Indices of `lengths` (b,) in buckets, longest first; a new bucket starts at a length under half its first."""
    order = torch.argsort(lengths, descending=True, stable=True).tolist()
    values = lengths.tolist()
    buckets: list[list[int]] = []
    for index in order:
        if not buckets or 2 * values[index] < values[buckets[-1][0]]:
            buckets.append([])
        buckets[-1].append(index)
    return [torch.tensor(b, dtype=torch.long, device=lengths.device) for b in buckets]


def _plain_layers(cache: Any) -> bool:
    """Whether `cache` is made of plain full-attention layers whose keys and values can be copied into a new one."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(type(layer) is DynamicLayer and layer.keys is not None for layer in layers)


def _whole(run: Forward, batch: CompletionBatch, rows: torch.Tensor, width: int) -> torch.Tensor:
    """(b, w, D) the same outputs from one pass over [prompt | completion] per row."""
    prompt_mask = batch.prompt_mask[batch.prompt_index[rows]]
    keep = int(prompt_mask.sum(1).max())
    prompt_ids = batch.prompt_ids[batch.prompt_index[rows], -keep:]
    input_ids = torch.cat([prompt_ids, batch.completion_ids[rows, :width]], dim=1)
    attention_mask = torch.cat([prompt_mask[:, -keep:], batch.completion_mask[rows, :width].long()], dim=1)
    out, _ = run(input_ids, attention_mask, _positions(attention_mask), keep=width + 1, use_cache=False)
    return out[:, :-1]


def _logits_shared_prompts(model: torch.nn.Module, batch: CompletionBatch, rows: torch.Tensor, width: int):
    """(b, w, V) next-token logits of the completions, each distinct prompt run once with a KV cache."""
    return _shared_prompts(_run_model(model), batch, rows, width)


def _logits_whole(model: torch.nn.Module, batch: CompletionBatch, rows: torch.Tensor, width: int) -> torch.Tensor:
    """(b, w, V) the same logits from one pass over [prompt | completion] per row."""
    return _whole(_run_model(model), batch, rows, width)


def _decoder_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Linear] | None:
    """(decoder, output layer) when `model` computes logits as exactly ``lm_head(decoder(...))``; else None.

    None (the caller falls back to full logits) for FSDP-wrapped models, whose root unit gathers the embeddings
    and output layer in its own forward hook; for an output layer that is not a plain Linear (LoRA on lm_head);
    for models that scale or soft-cap their logits (Gemma 2, Cohere, Granite); and for models without
    ``get_decoder`` / ``get_output_embeddings``.
    """
    if any(_is_fsdp(m) for m in model.modules()):
        return None
    get_decoder, get_head = getattr(model, "get_decoder", None), getattr(model, "get_output_embeddings", None)
    if get_decoder is None or get_head is None:
        return None
    try:
        decoder, head = get_decoder(), get_head()
    except (AttributeError, NotImplementedError, ValueError):
        return None
    config = getattr(model, "config", None)
    if any(getattr(config, key, None) not in (None, 1, 1.0) for key in _LOGIT_TRANSFORMS):
        return None
    if type(head) is not torch.nn.Linear or decoder is None or decoder is model or _is_dtensor(head.weight):
        return None
    return decoder, head


# Config fields under which transformers models change lm_head's output before returning it.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


def _is_fsdp(module: torch.nn.Module) -> bool:
    """Whether `module` is an FSDP1 wrapper or an FSDP2 (``fully_shard``) unit."""
    return any(cls.__name__ in ("FullyShardedDataParallel", "FSDPModule") for cls in type(module).__mro__)


def _is_dtensor(tensor: torch.Tensor) -> bool:
    return type(tensor).__name__ == "DTensor"


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
