"""The model layer: the project tokenizer, tiny from-scratch models, local loading/saving and LoRA.

Imports torch and transformers, so `bridge_pl` and `bridge_pl.task` never import this package.
"""

from bridge_pl.models.model_io import (
    TINY_PRESETS,
    TinyPreset,
    apply_lora,
    build_model,
    count_parameters,
    init_model_dir,
    load_model,
    load_tokenizer,
    merge_lora,
    model_config,
    save_pretrained,
)
from bridge_pl.models.tokenizer import SYSTEM_PROMPT, build_tokenizer, format_conversation, format_prompt

__all__ = [
    "SYSTEM_PROMPT",
    "TINY_PRESETS",
    "TinyPreset",
    "apply_lora",
    "build_model",
    "build_tokenizer",
    "count_parameters",
    "format_conversation",
    "format_prompt",
    "init_model_dir",
    "load_model",
    "load_tokenizer",
    "merge_lora",
    "model_config",
    "save_pretrained",
]
