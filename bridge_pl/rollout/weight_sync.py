"""The policy's weights under their Hugging Face checkpoint names, whatever wraps the model.

An inference engine loads checkpoint-format weights (``model.layers.0.self_attn.q_proj.weight``). The module
being trained may be wrapped: LoRA (peft's ``base_model.model.`` prefix, ``.base_layer`` and adapter tensors),
FSDP2 (DTensor shards), activation checkpointing (``_checkpoint_wrapped_module.``), ``torch.compile``
(``_orig_mod.``). `hf_state_dict` undoes all of that: LoRA is merged into the base weights for the copy and
unmerged afterwards, shards are gathered (a collective: every rank must call it), names are cleaned.

Tied embeddings matter: ``state_dict()`` lists a tied output layer under both names (``lm_head.weight`` and
``model.embed_tokens.weight``), while ``named_parameters()`` lists it once; an engine that rebuilds its
output layer from ``lm_head.weight`` silently keeps stale weights with the latter, so this uses the former.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["clean_name", "hf_state_dict"]

_WRAPPERS = frozenset({"_checkpoint_wrapped_module", "_fsdp_wrapped_module", "_orig_mod"})
_PEFT_PREFIX = "base_model.model."


def clean_name(name: str) -> str | None:
    """The checkpoint name of a state-dict key of a wrapped model, or None for a key the engine must not load.

    >>> clean_name("base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight")
    'model.layers.0.self_attn.q_proj.weight'
    >>> clean_name("base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight") is None
    True
    >>> clean_name("_orig_mod.model.layers.1._checkpoint_wrapped_module.mlp.up_proj.weight")
    'model.layers.1.mlp.up_proj.weight'
    """
    if ".lora_" in name or "original_module" in name:
        return None  # adapter tensors (already merged into the base weights) and peft's backup copies
    name = ".".join(part for part in name.split(".") if part not in _WRAPPERS)
    name = name.removeprefix("module.").removeprefix(_PEFT_PREFIX)  # DDP's wrapper, then peft's
    return name.replace(".base_layer.", ".").replace("modules_to_save.default.", "")


def hf_state_dict(model: torch.nn.Module, *, device: str | torch.device | None = None) -> Iterator[tuple[str, Any]]:
    """Yield (checkpoint name, full tensor) for every weight of `model`, LoRA merged, shards gathered.

    Args:
        model: The policy (a transformers model, a peft model, possibly FSDP2-sharded or wrapped).
        device: Move each tensor there (e.g. "cpu"); None keeps it where it is.

    Yields:
        Pairs in state-dict order; under FSDP2 every rank must consume the iterator (each gather is collective).
    """
    with _merged_lora(model) as merged:
        for name, tensor in model.state_dict().items():
            clean = clean_name(name)
            if clean is None:
                continue
            tensor = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor  # FSDP2: all-gather
            tensor = tensor.detach()
            if merged and ".base_layer." in name:
                tensor = tensor.clone()  # unmerging rewrites this weight in place once the iteration ends
            yield clean, tensor if device is None else tensor.to(device)


@contextlib.contextmanager
def _merged_lora(model: torch.nn.Module) -> Iterator[bool]:
    """Merge peft LoRA adapters into the base weights inside the block (yields whether it did), then unmerge."""
    if getattr(model, "merge_adapter", None) is None or not getattr(model, "peft_config", None):
        yield False
        return
    with torch.no_grad():
        model.merge_adapter()
    try:
        yield True
    finally:
        with torch.no_grad():
            model.unmerge_adapter()
