"""The model layer: the project tokenizer, tiny from-scratch models, local loading/saving and LoRA.

Prompt formats live in `bridge_pl.data.prompts`; `load_tokenizer` in `bridge_pl.data.encoding` (re-exported here).

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
from bridge_pl.models.tokenizer import build_tokenizer

__all__ = [
    "TINY_PRESETS",
    "TinyPreset",
    "apply_lora",
    "build_model",
    "build_tokenizer",
    "count_parameters",
    "init_model_dir",
    "load_model",
    "load_tokenizer",
    "merge_lora",
    "model_config",
    "save_pretrained",
]
