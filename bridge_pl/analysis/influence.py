"""Per-step influence and data co-influence of GRPO updates (paper_spec §E.1-E.4).

For a probe prompt q with N rollouts, n of them right (alpha = n / N), one on-policy GRPO step moves the
parameters along g(q) = sqrt(alpha (1 - alpha)) (G+ - G-), where G+ / G- are the mean gradients of the
length-normalised log-likelihood over the right / wrong rollouts (§E.2; the loss averages each sequence's
tokens). To first order it changes a target objective J (expected reward on target prompts) by eta <T, g(q)>,
with T = grad J = mean over target samples of A(q', o') grad log pi(o' | q') (the policy-gradient theorem: the
whole sequence's log-likelihood, not its token mean) and A = r - mean reward of q'. Reported per probe prompt:

    I(q) = <T, g(q)>              the per-step influence (times the learning rate eta: the predicted change of J)
    C(q) = <T, G+ - G->           the co-influence of right against wrong rollouts
    K+(q) = <T, G+>, K-(q) = <T, G->

Gradients are taken on a chosen parameter subset (the output layer and the last blocks by default) and may
be projected by a fixed count sketch, which keeps inner products unbiased. G+ and G- are each one backward
pass over their group (the mean of gradients is the gradient of the mean), so a probe prompt costs two.

Under FSDP2 every parameter is a DTensor and each rank holds one shard of it (and of its gradient). The inner
product of two full gradients is the sum over ranks of the inner products of their shards, so each rank keeps
only its shards and `GradientSpace.reduce` all-reduces the local products (one collective per measurement);
a sketch is linear, so the sum over ranks of the shards' sketches is the sketch of the full gradient.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist

from bridge_pl.analysis.accuracy import BINS, accuracy_bin
from bridge_pl.rl.logprobs import CompletionBatch, completion_logprobs, sequence_mean_logprob

__all__ = [
    "CountSketch",
    "alpha_bin_tag",
    "GradientSpace",
    "InfluenceTerms",
    "influence_by_bin",
    "influence_from_products",
    "influence_history_figure",
    "influence_summary",
    "influence_terms",
    "preserved_grads",
    "select_parameters",
]

ParameterSubset = Literal["last_layers", "lm_head", "all"]
CACHE_LIMIT = 1 << 24  # sketch indices of parameters up to this size are kept between calls


def select_parameters(
    model: torch.nn.Module, subset: ParameterSubset = "last_layers", num_layers: int = 2
) -> list[tuple[str, torch.nn.Parameter]]:
    """The trainable parameters whose gradients enter the influence.

    Args:
        model: A transformers causal LM (plain or peft).
        subset: "lm_head": the output layer (the embedding when tied); "last_layers": that plus the final norm
            and the last `num_layers` decoder layers; "all": every trainable parameter.
        num_layers: Decoder layers counted from the top for "last_layers".
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if subset == "all":
        return named
    output = model.get_output_embeddings().weight
    head = [(n, p) for n, p in named if p is output]
    if subset == "lm_head":
        return head
    layer_ids = sorted({int(part) for n, _ in named for part in _layer_index(n)})
    top = set(layer_ids[-num_layers:]) if num_layers > 0 else set()
    chosen = [(n, p) for n, p in named if p is not output and (set(_layer_index(n)) & top or ".norm." in f".{n}")]
    return head + [(n, p) for n, p in chosen if not n.endswith("embed_tokens.weight")]


def _layer_index(name: str) -> list[int]:
    parts = name.split(".")
    return [int(parts[i + 1]) for i, part in enumerate(parts[:-1]) if part == "layers" and parts[i + 1].isdigit()]


class CountSketch:
    """A fixed random projection to `dim` buckets: each coordinate adds +-value to one bucket (seeded per name).

    E[<S a, S b>] = <a, b>, and the variance falls as 1 / dim; the cost is one pass over the gradient, so
    it scales to billions of parameters (a dense Gaussian sketch would cost dim x parameters).
    """

    def __init__(self, dim: int, seed: int = 0) -> None:
        if dim < 1:
            raise ValueError(f"sketch_dim={dim}: must be >= 1")
        self.dim, self.seed = dim, seed
        self._cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, name: str, values: torch.Tensor, offset: int = 0, full_size: int | None = None) -> torch.Tensor:
        """(dim,) the sketch of one parameter's gradient, or of the slice [offset, offset + numel) of its flat
        gradient of `full_size` entries (a shard: the shards' sketches add up to the full gradient's)."""
        index, sign = self._hash(name, full_size or values.numel(), values.device)
        if offset or full_size:
            index, sign = index[offset : offset + values.numel()], sign[offset : offset + values.numel()]
        out = torch.zeros(self.dim, dtype=torch.float32, device=values.device)
        return out.index_add_(0, index, values.flatten().float() * sign)

    def _hash(self, name: str, size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        cached = self._cache.get(name)
        if cached is not None and cached[0].numel() == size:
            return cached
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + zlib.crc32(name.encode()))
        index = torch.randint(self.dim, (size,), generator=generator).to(device)
        sign = (torch.randint(2, (size,), generator=generator) * 2 - 1).float().to(device)
        if size <= CACHE_LIMIT:
            self._cache[name] = (index, sign)
        return index, sign


class GradientSpace:
    """Gradients of a scalar with respect to a parameter subset, as one flat (or sketched) vector.

    Plain parameters: ``torch.autograd.grad``, so the parameters' ``.grad`` fields are never touched. FSDP2
    (DTensor) parameters: autograd reaches only the unsharded copies FSDP2 gathers for the forward, and the
    gradient shards exist only after its reduce-scatter, so the vector comes from ``backward()`` and the
    selected ``.grad`` fields are cleared after each call; run it inside `preserved_grads` (as
    `bridge_pl.analysis.probe.measure_influence` does) so that the other fields are put back. Every rank must
    then make the same calls on the same data (each backward is a collective): a vector is this rank's part of
    the gradient, and inner products of vectors go through `reduce`.

    Args:
        params: (name, parameter) pairs, e.g. from `select_parameters`.
        sketch_dim: Project onto this many count-sketch buckets (None: the exact gradient, concatenated).
        seed: Seed of the sketch.
    """

    def __init__(self, params: list[tuple[str, torch.nn.Parameter]], sketch_dim: int | None = None, seed: int = 0):
        if not params:
            raise ValueError("no trainable parameter was selected for the influence gradients")
        self.names = [n for n, _ in params]
        self.params = [p for _, p in params]
        self.sketch = CountSketch(sketch_dim, seed) if sketch_dim else None
        self.sharded = any(_is_dtensor(p) for p in self.params)
        if self.sharded:
            for name, param in params:
                _check_placements(name, param)

    @property
    def size(self) -> int:
        """Number of selected parameter entries (of this rank's shards under FSDP2)."""
        return sum(_local(p).numel() for p in self.params)

    def vector(self, objective: torch.Tensor) -> torch.Tensor:
        """The gradient of `objective` (a 0-dim tensor) as a (D,) float32 vector (this rank's part under FSDP2)."""
        parts = self._shard_gradients(objective) if self.sharded else self._gradients(objective)
        if self.sketch is None:
            return torch.cat([g.detach().flatten().float() for g in parts])
        offsets = [_flat_offset(p) for p in self.params] if self.sharded else [0] * len(parts)
        sketch = sum(
            self.sketch(name, g.detach(), offset, p.numel())
            for name, g, p, offset in zip(self.names, parts, self.params, offsets, strict=True)
        )
        if self.sharded:
            dist.all_reduce(sketch)  # the sum of the shards' sketches is the sketch of the whole gradient
        return sketch

    def reduce(self, local_products: torch.Tensor) -> torch.Tensor:
        """Inner products of vectors from their local parts: the sum over ranks for sharded exact vectors."""
        if self.sharded and self.sketch is None:
            local_products = local_products.clone()
            dist.all_reduce(local_products)
        return local_products

    def norm(self, vector: torch.Tensor) -> float:
        """The Euclidean norm of a (possibly sharded) vector; every rank must call it under FSDP2."""
        return math.sqrt(max(float(self.reduce((vector @ vector).reshape(1))[0]), 0.0))

    def _gradients(self, objective: torch.Tensor) -> list[torch.Tensor]:
        grads = torch.autograd.grad(objective, self.params, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for g, p in zip(grads, self.params, strict=True)]

    def _shard_gradients(self, objective: torch.Tensor) -> list[torch.Tensor]:
        for param in self.params:
            param.grad = None
        objective.backward()  # FSDP2 reduce-scatters: each rank's .grad is its shard of the (rank-mean) gradient
        parts = [torch.zeros_like(_local(p)) if p.grad is None else _local(p.grad) for p in self.params]
        for param in self.params:
            param.grad = None
        return parts


def _is_dtensor(tensor: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if _is_dtensor(tensor) else tensor


def _check_placements(name: str, param: torch.Tensor) -> None:
    from torch.distributed.tensor import Shard

    if not _is_dtensor(param) or param.device_mesh.ndim != 1 or param.placements != (Shard(0),):
        raise ValueError(
            f"influence gradients of {name}: only FSDP2 sharding over one data-parallel mesh (Shard(0)) is supported, "
            f"got {getattr(param, 'placements', 'a plain tensor')}"
        )


def _flat_offset(param: torch.Tensor) -> int:
    """Where this rank's shard of a Shard(0) DTensor starts in the flattened full tensor."""
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset

    _, offset = compute_local_shape_and_global_offset(param.shape, param.device_mesh, param.placements)
    return int(offset[0]) * math.prod(param.shape[1:])


@contextmanager
def preserved_grads(model: torch.nn.Module) -> Iterator[None]:
    """Put every parameter's ``.grad`` back as it was on exit (an FSDP2 measurement needs ``backward()``)."""
    params = list(model.parameters())
    saved = [p.grad for p in params]
    for param in params:
        param.grad = None
    try:
        yield
    finally:
        for param, grad in zip(params, saved, strict=True):
            param.grad = grad


@dataclass
class InfluenceTerms:
    """The influence terms of one probe prompt (None where the prompt has no right or no wrong rollout)."""

    alpha: float
    influence: float  # I(q) = <T, sqrt(alpha (1 - alpha)) (G+ - G-)>; 0 when alpha is 0 or 1
    co_influence: float | None  # C(q) = <T, G+ - G->
    k_plus: float | None  # <T, G+>
    k_minus: float | None  # <T, G->


def influence_terms(
    g_plus: torch.Tensor | None, g_minus: torch.Tensor | None, alpha: float, target: torch.Tensor
) -> InfluenceTerms:
    """I, C, K+ and K- of one probe prompt from its mean right/wrong gradients and the target gradient T.

    >>> t = torch.tensor([1.0, 0.0])
    >>> influence_terms(torch.tensor([2.0, 1.0]), torch.tensor([-1.0, 3.0]), 0.5, t)
    InfluenceTerms(alpha=0.5, influence=1.5, co_influence=3.0, k_plus=2.0, k_minus=-1.0)
    """
    k_plus = float(target @ g_plus) if g_plus is not None else None
    k_minus = float(target @ g_minus) if g_minus is not None else None
    return influence_from_products(alpha, k_plus, k_minus)


def influence_from_products(alpha: float, k_plus: float | None, k_minus: float | None) -> InfluenceTerms:
    """I, C, K+ and K- of one probe prompt from K+ = <T, G+> and K- = <T, G-> (None: no right / no wrong rollout).

    >>> influence_from_products(0.25, 2.0, -2.0).influence == math.sqrt(0.25 * 0.75) * 4.0
    True
    """
    if k_plus is None or k_minus is None:
        return InfluenceTerms(alpha, 0.0, None, k_plus, k_minus)
    co = k_plus - k_minus
    return InfluenceTerms(alpha, math.sqrt(alpha * (1 - alpha)) * co, co, k_plus, k_minus)


def influence_by_bin(terms: Sequence[InfluenceTerms]) -> dict[str, dict[str, Any]]:
    """Per alpha bin: prompt count, sum and mean of I, mean C, K+ and K- (over prompts that have them).

    The sum of I shows each bin's share of the whole step's influence (paper_spec §E.4 step 6).

    >>> rows = [InfluenceTerms(0.5, 1.0, 2.0, 1.5, -0.5), InfluenceTerms(0.0, 0.0, None, None, 0.25)]
    >>> by_bin = influence_by_bin(rows)
    >>> by_bin["(0.4,0.6]"]["influence_sum"], by_bin["0"]["k_minus_mean"], by_bin["1"]["prompts"]
    (1.0, 0.25, 0)
    """
    out = {}
    for index, label in enumerate(BINS):
        members = [t for t in terms if accuracy_bin(t.alpha) == index]
        out[label] = {
            "prompts": len(members),
            "influence_sum": sum(t.influence for t in members),
            "influence_mean": _mean([t.influence for t in members]),
            "co_influence_mean": _mean([t.co_influence for t in members if t.co_influence is not None]),
            "k_plus_mean": _mean([t.k_plus for t in members if t.k_plus is not None]),
            "k_minus_mean": _mean([t.k_minus for t in members if t.k_minus is not None]),
        }
    return out


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def group_gradient(
    space: GradientSpace,
    model: torch.nn.Module,
    batch: CompletionBatch,
    rows: torch.Tensor,
    weights: torch.Tensor,
    length_normalised: bool = True,
) -> torch.Tensor:
    """Gradient of sum_i weights_i * (1/|o_i|) log pi(o_i | q_i) over `rows` of `batch`: (D,).

    With `length_normalised` False, of sum_i weights_i * log pi(o_i | q_i) (the sum over the completion's tokens).
    """
    if length_normalised:
        objective = (sequence_mean_logprob(model, batch, rows) * weights).sum()
    else:
        logprobs, _, width = completion_logprobs(model, batch, rows)
        objective = ((logprobs * batch.completion_mask[rows, :width]).sum(1) * weights).sum()
    return space.vector(objective)


def influence_summary(
    terms: Sequence[InfluenceTerms], target: torch.Tensor, *, target_norm: float | None = None
) -> dict[str, Any]:
    """The headline numbers of one measurement: mean I, C, K+, K- (over prompts that have them), |T|, and by bin.

    ``total`` is the mean I(q) over all probe prompts: the first-order change of the target reward per unit
    learning rate of one step on the probe batch. `target_norm` overrides ``|target|`` (a sharded T: give
    `GradientSpace.norm`).
    """
    informative = [t.co_influence for t in terms if t.co_influence is not None]
    plus = [t.k_plus for t in terms if t.k_plus is not None]
    minus = [t.k_minus for t in terms if t.k_minus is not None]
    return {
        "total": sum(t.influence for t in terms) / len(terms),
        "co_influence": _mean(informative),
        "k_plus": _mean(plus),
        "k_minus": _mean(minus),
        "target_grad_norm": float(target.norm()) if target_norm is None else target_norm,
        "by_bin": influence_by_bin(terms),
    }


def alpha_bin_tag(label: str) -> str:
    """A TensorBoard-friendly name of an alpha bin of `BINS`: ``alpha_bin_<lo>_<hi>``, or ``alpha_bin_0`` / ``_1``.

    >>> [alpha_bin_tag(b) for b in ("0", "(0,0.2]", "(0.8,1)", "1")]
    ['alpha_bin_0', 'alpha_bin_0_0.2', 'alpha_bin_0.8_1', 'alpha_bin_1']
    """
    return "alpha_bin_" + "_".join(label.strip("()[]").split(","))


def influence_history_figure(history: Sequence[dict[str, Any]], title: str = "Per-step influence during GRPO"):
    """Sum of I(q) per alpha bin (one line each) and the total, against the rollout step of each measurement.

    Args:
        history: ``{"step", "influence_sum": {bin label: value}}`` per measurement, in step order.
        title: Figure title.
    """
    from bridge_pl.analysis.plots import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    steps = [row["step"] for row in history]
    for index, label in enumerate(BINS):
        values = [row["influence_sum"][label] for row in history]
        if any(values):
            ax.plot(steps, values, marker="o", ms=3, color=f"C{index}", label=f"α {label}")
    ax.plot(steps, [sum(row["influence_sum"].values()) for row in history], "k--", lw=1, label="all bins")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlabel("rollout step")
    ax.set_ylabel("Σ I(q) over the bin's probe prompts")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig
