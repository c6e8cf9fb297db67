"""A lean decoding loop for `HFEngine`: finished rows leave the batch, and each row samples from its own stream.

transformers ``generate`` keeps every row of a batch until the longest one has finished: a GRPO batch whose
completions average 70 tokens while one runs to the 320-token limit computes 64 x 320 positions for 64 x 70
useful ones. `decode` drops finished rows from the batch and the KV cache whenever enough of them have
finished (`compact_share`), so the work follows the tokens actually generated. Given a `SharedPrefix`, the N rows
of a prompt read one copy of the prompt's keys and values (`bridge_pl.rollout.shared_prefix`).

Sampling draws each row's token with the exponential race (argmax of p / E, E ~ Exp(1): an exact sample of p)
from a generator of the row's own, so a completion depends only on its prompt, its seed and the weights, never
on the batch it shared or on ``HFEngine.batch_size`` (vLLM's per-request seeds give the same property). The
distribution is transformers' exactly: temperature, then top-k, then top-p (``TopPLogitsWarper``'s rule), and
the log-probabilities returned are those of that processed distribution.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch

from bridge_pl.models.model_io import cache_keyword
from bridge_pl.rollout.base import SamplingConfig
from bridge_pl.rollout.shared_prefix import SharedPrefix, sharing_prefix

__all__ = ["decode", "process_logits", "row_generators"]

NOISE_BLOCK = 32  # most decoding steps of noise drawn per row at a time (one generator call per row per block)
NOISE_ELEMENTS = 1 << 18  # most noise values per row at a time: 32 steps at a 2k vocabulary, 1 at 150k


def process_logits(logits: torch.Tensor, sampling: SamplingConfig) -> torch.Tensor:
    """Tempered, top-k- and top-p-masked logits, in transformers' order and with its rules: (B, V) -> (B, V)."""
    scores = logits / sampling.temperature if sampling.temperature != 1.0 else logits
    if sampling.top_k:
        k = min(sampling.top_k, scores.shape[-1])
        kth = torch.topk(scores, k, dim=-1).values[..., -1:]  # (B, 1)
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if sampling.top_p < 1.0:
        ascending, order = torch.sort(scores, dim=-1)  # (B, V)
        cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= 1 - sampling.top_p
        remove[..., -1:] = False  # the most likely token always stays
        scores = scores.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
    return scores


def row_generators(seed: int, keys: list[tuple[int, int]], device: torch.device) -> list[torch.Generator]:
    """One generator per row, seeded from (seed, prompt index, completion index) through numpy's SeedSequence."""
    generators = []
    for prompt, copy in keys:
        state = np.random.SeedSequence([seed, prompt, copy]).generate_state(2, dtype=np.uint64)
        generators.append(torch.Generator(device=device).manual_seed(int(state[0] >> np.uint64(1))))
    return generators


@torch.no_grad()
def decode(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    cache: Any,
    sampling: SamplingConfig,
    stop_ids: set[int],
    generators: list[torch.Generator] | None,
    return_logprobs: bool = False,
    compact_share: float = 0.25,
    prefix: SharedPrefix | None = None,
) -> tuple[list[list[int]], list[list[float]] | None]:
    """Generate until every row met a stop token or `max_new_tokens`; (token ids, log-probs) per row.

    Args:
        model: A transformers causal LM (eval mode).
        input_ids: (B, P) left-padded prompts.
        attention_mask: (B, P), 0 on the padding.
        cache: A layered KV cache with ``batch_select_indices`` (`bridge_pl.rollout.kv_cache.reserved_cache`),
            empty or holding the first ``cache.get_seq_length()`` prompt positions of every row; with `prefix`,
            empty (it then holds each row's own positions only).
        sampling: Temperature (0: greedy), top-k, top-p and the length limit.
        stop_ids: Token ids that end a row (kept as its last token).
        generators: One per row (`row_generators`); unused when greedy.
        return_logprobs: Also return each token's log-probability under the processed distribution.
        compact_share: Rows leave the batch once at least this share of it has finished.
        prefix: The first ``prefix.length`` prompt positions held once per distinct prompt; the model then attends
            with `bridge_pl.rollout.shared_prefix.prefix_attention` (each row reads its group's copy).

    Returns:
        Each row's generated ids (ending with its stop token, or `max_new_tokens` long) and, if asked, log-probs.
    """
    batch, prompt_length = input_ids.shape
    device = input_ids.device
    limit = sampling.max_new_tokens
    stops = torch.tensor(sorted(stop_ids), device=device, dtype=torch.long)
    positions = (attention_mask.cumsum(1) - 1).masked_fill(attention_mask == 0, 1)  # (B, P), as generate numbers them
    cached = cache.get_seq_length() if prefix is None else prefix.length
    step_ids, step_positions = input_ids[:, cached:], positions[:, cached:]  # (B, P - cached)
    mask = torch.cat([attention_mask, attention_mask.new_ones(batch, limit)], dim=1)  # (B, P + limit)
    next_position = positions[:, -1] + 1  # (B,)
    rows = torch.arange(batch, device=device)  # original index of each row still in the batch
    tokens = torch.zeros(batch, limit, dtype=torch.long, device=device)  # (B, limit)
    logprobs = torch.zeros(batch, limit, device=device) if return_logprobs else None
    lengths = torch.full((batch,), limit, dtype=torch.long, device=device)  # final length of each row
    finished = torch.zeros(batch, dtype=torch.bool, device=device)  # of the rows in the batch
    greedy = sampling.greedy
    noise: torch.Tensor | None = None  # (rows in batch, block, V): each row's Exp(1) draws for the next steps
    extra: dict[str, Any] = {cache_keyword(): cache}
    if prefix is not None:
        extra["shared_prefix"] = prefix
    # prefix_attention masks the prompts' padding itself: a prepared 4-D mask, which every supported transformers
    # passes on as it is, keeps a 2-D one from being expanded against the shorter own-positions cache
    unread_mask = torch.ones(1, 1, 1, 1, dtype=torch.bool, device=device)
    with sharing_prefix(model) if prefix is not None else contextlib.nullcontext():
        for step in range(limit):
            out = model(
                input_ids=step_ids, attention_mask=mask[:, : prompt_length + step] if prefix is None else unread_mask,
                position_ids=step_positions, use_cache=True, logits_to_keep=1, **extra,
            )  # fmt: skip
            logits = out.logits[:, -1, :].float()  # (b, V)
            if greedy:
                scores, chosen = logits, logits.argmax(dim=-1)
            else:
                scores = process_logits(logits, sampling)
                block = max(1, min(NOISE_BLOCK, NOISE_ELEMENTS // scores.shape[-1]))  # fixed by V: same draws per row
                if step % block == 0:
                    shape = (block, scores.shape[-1])
                    draws = [torch.empty(shape, device=device).exponential_(generator=generators[int(r)])
                             for r in rows.tolist()]  # fmt: skip
                    noise = torch.stack(draws).clamp_(min=torch.finfo(torch.float32).tiny)
                chosen = (scores.softmax(dim=-1) / noise[:, step % block]).argmax(dim=-1)  # (b,)
            tokens[rows, step] = chosen
            if logprobs is not None:
                logprobs[rows, step] = scores.log_softmax(dim=-1).gather(-1, chosen[:, None]).squeeze(-1)
            ended = ~finished & torch.isin(chosen, stops)
            lengths[rows[ended]] = step + 1
            finished |= ended
            if bool(finished.all()) or step + 1 == limit:
                break
            if int(finished.sum()) >= max(1, compact_share * len(rows)):  # drop finished rows from batch and cache
                keep = (~finished).nonzero().squeeze(-1)  # (b',)
                cache.batch_select_indices(keep)
                if prefix is not None:
                    prefix.select(keep)
                rows, mask, chosen, next_position = rows[keep], mask[keep], chosen[keep], next_position[keep]
                finished = finished[keep]
                if noise is not None:
                    noise = noise[keep]
            step_ids, step_positions = chosen[:, None], next_position[:, None]  # (b, 1)
            next_position = next_position + 1
    ids = [tokens[r, : lengths[r]].tolist() for r in range(batch)]
    return ids, None if logprobs is None else [logprobs[r, : lengths[r]].tolist() for r in range(batch)]
