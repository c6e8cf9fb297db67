"""Causal language models: tiny from-scratch presets, local loading and saving, LoRA.

Nothing here touches a model hub (DESIGN §4.4): models come from a local Hugging Face directory
(`load_model`) or are built with random weights from a preset or a config and the project tokenizer
(`build_model`). `init_model_dir` writes that embedded default to disk, and it is what configs and tests load::

    path = init_model_dir("runs/model", preset="llama-3m")
    model, tokenizer = load_model(path), load_tokenizer(path)
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import (
    AutoModelForCausalLM,
    LlamaConfig,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2Config,
)

from bridge_pl.data.encoding import check_model_dir, load_tokenizer
from bridge_pl.models.tokenizer import build_tokenizer

__all__ = [
    "EXPORT_MARKER",
    "LORA_TARGET_MODULES",
    "TINY_PRESETS",
    "TinyPreset",
    "apply_lora",
    "build_model",
    "cache_keyword",
    "count_parameters",
    "init_model_dir",
    "load_model",
    "load_tokenizer",
    "merge_lora",
    "model_config",
    "save_pretrained",
]

DTypeName = Literal["float32", "bfloat16", "float16", "auto"]
# transformers' attention kernels; flash_attention_2 needs the flash-attn package (GPU), and runs packed SFT rows
# padding-free (variable-length kernel over the position ids).
AttnImplementation = Literal["sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention"]
EXPORT_MARKER = "bridge_export.json"  # saved with the model files of a training run's export: which run, which step
LORA_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class TinyPreset:
    """Shape of a small from-scratch model; the vocabulary and special ids come from the tokenizer.

    Attributes:
        family: "llama" (LlamaForCausalLM) or "qwen2" (Qwen2ForCausalLM, with q/k/v biases).
        hidden_size: Width of the residual stream.
        num_layers: Number of decoder layers.
        num_heads: Attention (query) heads; head_dim = hidden_size / num_heads.
        num_kv_heads: Key/value heads (grouped-query attention when fewer than num_heads).
        intermediate_size: Width of the SwiGLU MLP.
        tie_embeddings: Share the input embedding with the output layer (saves vocab x hidden for small models).
        max_position_embeddings: Longest sequence (prompt + answer) the rotary embedding is set up for.
    """

    family: Literal["llama", "qwen2"]
    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    tie_embeddings: bool = True
    max_position_embeddings: int = 2048

    def to_config(
        self, vocab_size: int, *, bos_token_id: int | None, eos_token_id: int, pad_token_id: int
    ) -> PretrainedConfig:
        """The transformers config of this shape for a vocabulary of `vocab_size` tokens."""
        config_class = LlamaConfig if self.family == "llama" else Qwen2Config
        return config_class(
            vocab_size=vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads,
            max_position_embeddings=self.max_position_embeddings,
            tie_word_embeddings=self.tie_embeddings,
            bos_token_id=bos_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
        )


# Parameter counts with the project tokenizer (1564 tokens): 0.94M, 3.16M, 10.0M, 30.3M, 96.8M, 3.16M, 10.1M.
TINY_PRESETS: dict[str, TinyPreset] = {
    "llama-1m": TinyPreset("llama", hidden_size=128, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=352),
    "llama-3m": TinyPreset("llama", hidden_size=256, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=640),
    "llama-10m": TinyPreset(
        "llama", hidden_size=384, num_layers=6, num_heads=6, num_kv_heads=2, intermediate_size=1024
    ),
    "llama-30m": TinyPreset(
        "llama", hidden_size=512, num_layers=10, num_heads=8, num_kv_heads=4, intermediate_size=1408
    ),
    "llama-100m": TinyPreset(
        "llama",
        hidden_size=768,
        num_layers=15,
        num_heads=12,
        num_kv_heads=4,
        intermediate_size=2048,
        tie_embeddings=False,
    ),
    "qwen2-3m": TinyPreset("qwen2", hidden_size=256, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=640),
    "qwen2-10m": TinyPreset(
        "qwen2", hidden_size=384, num_layers=6, num_heads=6, num_kv_heads=2, intermediate_size=1024
    ),
}


def build_model(
    preset_or_config: str | TinyPreset | PretrainedConfig,
    tokenizer: PreTrainedTokenizerBase,
    *,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> PreTrainedModel:
    """Build a causal LM with random weights for `tokenizer` (same seed, same weights; global RNG untouched).

    Args:
        preset_or_config: A `TINY_PRESETS` name, a `TinyPreset`, or any transformers causal-LM config
            (copied; its vocabulary size and special ids are replaced by the tokenizer's).
        tokenizer: Decides the vocabulary size (len(tokenizer)) and the bos/eos/pad ids.
        dtype: Parameter dtype.
        seed: Seed of the initialisation.

    Returns:
        The model in train mode, with a generation config that stops at the tokenizer's eos.
    """
    config = model_config(preset_or_config, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    model.generation_config.bos_token_id = config.bos_token_id
    return model.to(dtype).train()


def model_config(
    preset_or_config: str | TinyPreset | PretrainedConfig, tokenizer: PreTrainedTokenizerBase
) -> PretrainedConfig:
    """The config `build_model` uses: the preset's shape (or a copy of the config) with the tokenizer's ids.

    Args:
        preset_or_config: As in `build_model`.
        tokenizer: Gives the vocabulary size (len(tokenizer)) and the eos and pad ids.

    Returns:
        A new config; its bos is the tokenizer's bos, else the pad token (as in Qwen2.5, ChatML has no bos).
    """
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    if eos is None:
        raise ValueError("the tokenizer has no eos token; a causal LM needs one to stop generating")
    pad = eos if pad is None else pad
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else pad
    if isinstance(preset_or_config, str):
        if preset_or_config not in TINY_PRESETS:
            raise ValueError(f"unknown model preset {preset_or_config!r}; choose one of {', '.join(TINY_PRESETS)}")
        preset_or_config = TINY_PRESETS[preset_or_config]
    if isinstance(preset_or_config, TinyPreset):
        return preset_or_config.to_config(len(tokenizer), bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)
    config = copy.deepcopy(preset_or_config)
    config.vocab_size = len(tokenizer)
    config.bos_token_id, config.eos_token_id, config.pad_token_id = bos, eos, pad
    return config


def count_parameters(model: torch.nn.Module, *, trainable_only: bool = False) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def load_model(
    path: str | os.PathLike,
    *,
    dtype: DTypeName = "float32",
    attn_implementation: AttnImplementation | None = "sdpa",
    trust_remote_code: bool = False,
    gradient_checkpointing: bool = False,
) -> PreTrainedModel:
    """Load a causal LM from a local Hugging Face directory, ready to train.

    Args:
        path: Directory with config.json and the weights (never a hub id: nothing is downloaded).
        dtype: Parameter dtype; "auto" keeps the one saved in the config.
        attn_implementation: Attention kernel; None lets transformers choose.
        trust_remote_code: Allow modelling code shipped inside the directory.
        gradient_checkpointing: Recompute activations in the backward pass (non-reentrant) to save memory.

    Returns:
        The model in train mode (from_pretrained returns eval mode, which would silently keep dropout off).

    Raises:
        ModelDirError: `path` is not a directory with a config.json and weights, or its model needs
            `trust_remote_code` (a FileNotFoundError and a ValueError; see `bridge_pl.data.encoding.check_model_dir`).
    """
    directory = check_model_dir(path, tokenizer=False, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        directory,
        local_files_only=True,
        dtype=dtype if dtype == "auto" else getattr(torch, dtype),
        attn_implementation=attn_implementation,
        trust_remote_code=trust_remote_code,
    )
    if gradient_checkpointing:
        _enable_activation_checkpointing(model)
    return model.train()


def _enable_activation_checkpointing(model: PreTrainedModel) -> None:
    """Non-reentrant activation (gradient) checkpointing, under its transformers >= 5.2x name where it has it."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:  # older transformers (the GPU machines' 5.17)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def save_pretrained(
    model: PreTrainedModel | PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: str | os.PathLike,
    *,
    marker: dict[str, Any] | None = None,
) -> Path:
    """Save a model and its tokenizer (safetensors) as one directory that `load_model`, GRPO and vLLM read.

    The files are written to a temporary sibling folder that then replaces `out_dir` with a rename, so an
    interrupted save (kill -9, a full disk) never leaves a directory that looks like a finished model. The
    periodic ``step_<n>`` snapshots inside an existing `out_dir` are kept; everything else in it is replaced.
    A LoRA model is saved merged: the adapters are merged into a deep copy, so the model passed in keeps its
    adapters and can go on training.

    Args:
        model: A plain transformers model or a peft LoRA model.
        tokenizer: The model's tokenizer.
        out_dir: Directory to write (created if missing).
        marker: Written as ``bridge_export.json`` (`EXPORT_MARKER`) with the model files, e.g. the run id.

    Returns:
        The output directory.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} is a file; a model is saved as a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(model, PeftModel):
        model = merge_lora(copy.deepcopy(model))
    partial = out.with_name(f".{out.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        partial.mkdir()
        model.save_pretrained(partial)
        tokenizer.save_pretrained(partial)
        if marker is not None:
            (partial / EXPORT_MARKER).write_text(json.dumps(marker, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        _replace_dir(partial, out)
    except BaseException:  # Ctrl-C included: never leave the partial folder behind
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out


def _replace_dir(new: Path, out: Path) -> None:
    """Put the finished folder `new` at `out` by renames, moving the ``step_<n>`` snapshots of an old `out` into it."""
    if not out.exists():
        os.replace(new, out)
        return
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(out, old)  # from here until the next rename `out` is absent: never half old, half new
    os.replace(new, out)
    for entry in old.iterdir():
        if entry.is_dir() and re.fullmatch(r"step_\d+", entry.name) and not (out / entry.name).exists():
            os.replace(entry, out / entry.name)
    shutil.rmtree(old)


def apply_lora(
    model: PreTrainedModel,
    *,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.0,
    target_modules: tuple[str, ...] = LORA_TARGET_MODULES,
) -> PeftModel:
    """Wrap a model with LoRA adapters; only the adapters are trainable.

    Args:
        model: The base model (modified in place by peft: its target layers get adapters, its weights freeze).
        r: Rank of the adapters.
        alpha: Scaling numerator (the update is scaled by alpha / r).
        dropout: Dropout on the adapter inputs.
        target_modules: Names of the linear layers that get adapters (default: every attention and MLP one).

    Returns:
        The peft model.
    """
    config = LoraConfig(
        task_type="CAUSAL_LM", r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules)
    )
    return get_peft_model(model, config)


def merge_lora(model: PreTrainedModel | PeftModel) -> PreTrainedModel:
    """Merge LoRA adapters into the base weights (in place) and return the plain model; a plain model passes through."""
    if isinstance(model, PeftModel):
        return model.merge_and_unload()
    return model


def cache_keyword() -> str:
    """The keyword under which this transformers version's models take a KV cache ("cache", or "past_key_values")."""
    import transformers.generation.utils as generation_utils

    return "cache" if "cache" in getattr(generation_utils, "ALL_CACHE_NAMES", ()) else "past_key_values"


def init_model_dir(out_dir: str | os.PathLike, preset: str = "llama-3m", seed: int = 0) -> Path:
    """Write the embedded default model: the project tokenizer and a randomly initialised tiny model.

    Args:
        out_dir: Directory to write.
        preset: A `TINY_PRESETS` name.
        seed: Seed of the model's initialisation (the tokenizer is always the default one).

    Returns:
        The directory, loadable with `load_model` and `load_tokenizer`.
    """
    tokenizer = build_tokenizer()
    model = build_model(preset, tokenizer, seed=seed)
    return save_pretrained(model, tokenizer, out_dir)
