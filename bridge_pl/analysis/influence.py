"""Per-step influence and data co-influence of GRPO updates (paper_spec §E.1-E.4).

For a probe prompt q with N rollouts, n of them right (alpha = n / N), one on-policy GRPO step moves the
parameters along g(q) = sqrt(alpha (1 - alpha)) (G+ - G-), where G+ / G- are the mean gradients of the
length-normalised log-likelihood over the right / wrong rollouts (§E.2). To first order it changes a target
objective J (expected reward on target prompts) by eta <T, g(q)>, with T = mean over target samples of
A(q', o') grad log pi(o' | q') and A = r - mean reward of q'. Reported per probe prompt:

    I(q) = <T, g(q)>              the per-step influence (times the learning rate eta: the predicted change of J)
    C(q) = <T, G+ - G->           the co-influence of right against wrong rollouts
    K+(q) = <T, G+>, K-(q) = <T, G->

Gradients are taken on a chosen parameter subset (the output layer and the last blocks by default) and may
be projected by a fixed count sketch, which keeps inner products unbiased. G+ and G- are each one backward
pass over their group (the mean of gradients is the gradient of the mean), so a probe prompt costs two.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from bridge_pl.analysis.accuracy import BINS, accuracy_bin
from bridge_pl.rl.logprobs import CompletionBatch, sequence_mean_logprob

__all__ = [
    "CountSketch",
    "GradientSpace",
    "InfluenceTerms",
    "influence_by_bin",
    "influence_summary",
    "influence_terms",
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

    def __call__(self, name: str, values: torch.Tensor) -> torch.Tensor:
        """(dim,) the sketch of one parameter's gradient."""
        index, sign = self._hash(name, values.numel(), values.device)
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

    Uses ``torch.autograd.grad``: the parameters' ``.grad`` fields are never touched, so training is unaffected.

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

    @property
    def size(self) -> int:
        """Number of selected parameter entries."""
        return sum(p.numel() for p in self.params)

    def vector(self, objective: torch.Tensor) -> torch.Tensor:
        """The gradient of `objective` (a 0-dim tensor) as a (D,) float32 vector."""
        grads = torch.autograd.grad(objective, self.params, allow_unused=True)
        parts = [torch.zeros_like(p) if g is None else g for g, p in zip(grads, self.params, strict=True)]
        if self.sketch is None:
            return torch.cat([g.detach().flatten().float() for g in parts])
        return sum(self.sketch(name, g.detach()) for name, g in zip(self.names, parts, strict=True))


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
    space: GradientSpace, model: torch.nn.Module, batch: CompletionBatch, rows: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Gradient of sum_i weights_i * (1/|o_i|) log pi(o_i | q_i) over `rows` of `batch`: (D,)."""
    objective = (sequence_mean_logprob(model, batch, rows) * weights).sum()
    return space.vector(objective)


def influence_summary(terms: Sequence[InfluenceTerms], target: torch.Tensor) -> dict[str, Any]:
    """The headline numbers of one measurement: mean I, C, K+, K- (over prompts that have them), |T|, and by bin.

    ``total`` is the mean I(q) over all probe prompts: the first-order change of the target reward per unit
    learning rate of one step on the probe batch.
    """
    informative = [t.co_influence for t in terms if t.co_influence is not None]
    plus = [t.k_plus for t in terms if t.k_plus is not None]
    minus = [t.k_minus for t in terms if t.k_minus is not None]
    return {
        "total": sum(t.influence for t in terms) / len(terms),
        "co_influence": _mean(informative),
        "k_plus": _mean(plus),
        "k_minus": _mean(minus),
        "target_grad_norm": float(target.norm()),
        "by_bin": influence_by_bin(terms),
    }
