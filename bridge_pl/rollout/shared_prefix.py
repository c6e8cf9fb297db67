"""Decoding attention over a prompt shared by a group of rows, read once per group instead of once per row.

A GRPO batch samples N completions of each prompt. Copying the prompt's keys and values to every row makes each
decoding step read the prompt N times, one matrix-vector product per row: with 400-token prompts that is about
half of an HFEngine rollout on the CPU. Here every prompt's keys and values are kept once (`SharedPrefix`) and a
step's queries of all its rows meet them in one matrix product; each row's own positions (the last prompt token
and what it generated) stay in the row's KV cache. The two softmax parts are merged by their maxima and sums
(cascade attention), so the output equals attention over [prompt | own positions] up to float rounding.

`prefix_attention` is registered as a transformers attention implementation; `sharing_prefix` switches a model
to it for the decoding loop, and the loop passes the `SharedPrefix` to every forward (``shared_prefix=``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from bridge_pl.rollout.kv_cache import full_attention_only

__all__ = [
    "SharedPrefix",
    "group_slots",
    "prefix_attention",
    "shared_prefix_attention",
    "sharing_prefix",
    "supports_shared_prefix",
]

IMPLEMENTATION = "bridge_shared_prefix"  # the name `prefix_attention` is registered under
# Families whose attention modules call the registered implementation with (query, own keys, own values) and the
# forward's extra keyword arguments, with no sliding window, logit soft-cap, sinks or position bias.
PLAIN_ATTENTION = ("llama", "qwen2", "qwen3", "mistral")


@dataclass
class SharedPrefix:
    """The prompts' keys and values, stored once per distinct prompt, and the prompt of every row."""

    keys: list[torch.Tensor]  # per layer (u, kv_heads, p, d): the u distinct prompts, left-padded to p positions
    values: list[torch.Tensor]  # per layer (u, kv_heads, p, d)
    mask: torch.Tensor  # (u, p) bool, False on the padding
    groups: torch.Tensor  # (b,) the prompt of each row in the batch
    slots: torch.Tensor = field(init=False)  # (b,) the row's place among its prompt's rows
    width: int = field(init=False)  # most rows of one prompt

    def __post_init__(self) -> None:
        self.select(torch.arange(len(self.groups), device=self.groups.device))

    @property
    def length(self) -> int:
        """Positions held per prompt (padding included)."""
        return self.mask.shape[1]

    def select(self, rows: torch.Tensor) -> None:
        """Keep the `rows` (b',) of the batch (the decoding loop drops finished rows), and the prompts they read."""
        used, self.groups = torch.unique(self.groups[rows], return_inverse=True)  # (u',), (b',)
        if len(used) < self.mask.shape[0]:
            self.keys, self.values = [k[used] for k in self.keys], [v[used] for v in self.values]
            self.mask = self.mask[used]
        self.slots, self.width = group_slots(self.groups, len(used))


def group_slots(groups: torch.Tensor, prompts: int) -> tuple[torch.Tensor, int]:
    """Each row's place among the rows of its prompt, (b,), and the most rows of one prompt (m)."""
    rows = torch.arange(len(groups), device=groups.device)
    slots = torch.nn.functional.one_hot(groups, prompts).cumsum(0)[rows, groups] - 1  # (b,)
    return slots, int(slots.max()) + 1 if len(slots) else 0


def shared_prefix_attention(
    query: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    prefix_keys: torch.Tensor,
    prefix_values: torch.Tensor,
    prefix_mask: torch.Tensor,
    groups: torch.Tensor,
    slots: torch.Tensor,
    width: int,
    scaling: float,
) -> torch.Tensor:
    """Softmax attention of one new position per row over its group's prompt and its own positions: (b, h, 1, d).

    Args:
        query: (b, h, 1, d) each row's query; head ``k * r + j`` reads key/value head k (r = h / kv_heads).
        keys: (b, kv_heads, s, d) the row's own positions, all attended.
        values: (b, kv_heads, s, d)
        prefix_keys: (u, kv_heads, p, d) each distinct prompt's positions.
        prefix_values: (u, kv_heads, p, d)
        prefix_mask: (u, p) bool, False where a prompt is padded (each prompt has at least one True).
        groups: (b,) the prompt of each row.
        slots: (b,) the row's place among its prompt's rows, and `width` the most rows of one prompt
            (`group_slots`; passed in so that a decoding step does not recompute them in every layer).
        scaling: Multiplies the scores (1 / sqrt(d) for the usual attention).
    """
    batch, heads, _, dim = query.shape
    prompts, kv_heads, _, _ = prefix_keys.shape
    rep = heads // kv_heads
    q = query.reshape(batch, kv_heads, rep, dim)  # (b, kv, r, d); products in the model's dtype, softmax in float32
    # The prompt part: the group's rows side by side, one (m * r, d) x (d, p) product per prompt and kv head.
    packed = q.new_zeros(prompts, width, kv_heads, rep, dim)  # (u, m, kv, r, d)
    packed[groups, slots] = q
    packed = packed.permute(0, 2, 1, 3, 4).reshape(prompts, kv_heads, width * rep, dim)  # (u, kv, m * r, d)
    shared = torch.matmul(packed, prefix_keys.transpose(-1, -2)).float() * scaling  # (u, kv, m * r, p)
    shared = shared.masked_fill(~prefix_mask[:, None, None, :], float("-inf"))
    shared_max, shared_sum, shared_out = _softmax_parts(shared, prefix_values)  # (u, kv, m * r, 1 | 1 | d)
    unpack = lambda t: t.reshape(prompts, kv_heads, width, rep, -1).permute(0, 2, 1, 3, 4)[groups, slots]  # noqa: E731
    shared_max, shared_sum, shared_out = unpack(shared_max), unpack(shared_sum), unpack(shared_out)  # (b, kv, r, .)
    # The row's own part.
    own = torch.matmul(q, keys.transpose(-1, -2)).float() * scaling  # (b, kv, r, s)
    own_max, own_sum, own_out = _softmax_parts(own, values)  # (b, kv, r, 1 | 1 | d)
    top = torch.maximum(shared_max, own_max)  # (b, kv, r, 1)
    shared_weight, own_weight = torch.exp(shared_max - top), torch.exp(own_max - top)
    out = (shared_out * shared_weight + own_out * own_weight) / (shared_sum * shared_weight + own_sum * own_weight)
    return out.reshape(batch, heads, 1, dim).to(query.dtype)


def _softmax_parts(scores: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(max, sum of exp(score - max), sum of exp(score - max) * value) over the last axis of float32 `scores`."""
    top = scores.amax(-1, keepdim=True)  # (..., 1)
    weights = torch.exp(scores - top)  # (..., n)
    return top, weights.sum(-1, keepdim=True), torch.matmul(weights.to(values.dtype), values).float()


def prefix_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    scaling: float | None = None,
    dropout: float = 0.0,
    shared_prefix: SharedPrefix | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """The transformers attention implementation: (b, 1, h, d) output of `shared_prefix_attention` for one layer."""
    if shared_prefix is None or query.shape[2] != 1:
        raise RuntimeError(
            f"the '{IMPLEMENTATION}' attention decodes one position per row with shared_prefix= passed to the "
            "forward; use it only through bridge_pl.rollout.decode"
        )
    unsupported = [k for k in ("sliding_window", "softcap", "s_aux") if kwargs.get(k) is not None]
    if unsupported or dropout:
        raise RuntimeError(f"the '{IMPLEMENTATION}' attention has no {unsupported or ['dropout']}: this model cannot "
                           "share its prompts (HFEngine(share_prompts=False))")  # fmt: skip
    layer, device = module.layer_idx, query.device
    out = shared_prefix_attention(
        query, key, value, shared_prefix.keys[layer], shared_prefix.values[layer], shared_prefix.mask.to(device),
        shared_prefix.groups.to(device), shared_prefix.slots.to(device), shared_prefix.width,
        query.shape[-1] ** -0.5 if scaling is None else scaling,
    )  # fmt: skip
    return out.transpose(1, 2).contiguous(), None


def supports_shared_prefix(model: Any) -> bool:
    """Whether `model` (plain or peft-wrapped) can decode with `prefix_attention` in this transformers."""
    if _register() is None:
        return False
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft: the wrapped model
    config = getattr(model, "config", None)
    return (
        type(base).__module__.startswith("transformers.")  # not remote code that calls itself "llama"
        and getattr(config, "model_type", None) in PLAIN_ATTENTION
        and full_attention_only(config)
    )


@contextlib.contextmanager
def sharing_prefix(model: Any) -> Iterator[None]:
    """`model` attends with `prefix_attention` inside the block; its own implementation(s) are put back after."""
    if not supports_shared_prefix(model):
        raise ValueError(f"{type(model).__name__} cannot decode with shared prompts (see supports_shared_prefix)")
    config = model.config
    subconfigs = [sub for key in getattr(config, "sub_configs", {}) if (sub := getattr(config, key, None)) is not None]
    previous = [(c, c._attn_implementation) for c in (config, *subconfigs)]  # the setter recurses into sub-configs
    config._attn_implementation = IMPLEMENTATION
    try:
        yield
    finally:
        for target, implementation in previous:
            target._attn_implementation = implementation


def _register() -> Any:
    """Register `prefix_attention` with transformers once; the interface class, or None where it has none."""
    try:
        from transformers import AttentionInterface
    except ImportError:  # pragma: no cover - transformers without pluggable attention
        return None
    if IMPLEMENTATION not in AttentionInterface._global_mapping:
        AttentionInterface.register(IMPLEMENTATION, prefix_attention)
    return AttentionInterface
