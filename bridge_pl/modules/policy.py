"""What the training recipes share about the model they train: loading (LoRA), sharding, export, gradient norm.

Each function takes what it uses explicitly (the Hugging Face model, its tokenizer, the trainer), so `SFTModule`
and `GRPOModule` need no common base class; all work under one device, DDP, FSDP1 (`FSDPStrategy`) and FSDP2
(`ModelParallelStrategy`). The recipes hold the model as ``self.model`` (`MODEL_ATTRIBUTE`): FSDP state-dict
names start with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from lightning.pytorch.utilities import rank_zero_info

from bridge_pl.models.model_io import LORA_TARGET_MODULES, apply_lora, load_model, save_pretrained

__all__ = [
    "LoraConfig",
    "data_chat_template",
    "finite_step",
    "full_state_dict",
    "hf_output_dir",
    "is_sharded",
    "load_policy",
    "model_path_errors",
    "refuse_nonfinite_weights",
    "save_hf_model",
    "total_grad_norm",
]

MODEL_ATTRIBUTE = "model"  # the LightningModule attribute holding the Hugging Face model


@dataclass(frozen=True)
class LoraConfig:
    """LoRA adapters (only they train; the saved model has them merged)."""

    r: int = 8
    """Rank of the adapters."""
    alpha: int = 16
    """Scaling numerator: the update is scaled by alpha / r."""
    dropout: float = 0.0
    """Dropout on the adapter inputs."""
    target_modules: tuple[str, ...] = LORA_TARGET_MODULES
    """Linear layers that get adapters (default: every attention and MLP projection)."""

    def config_errors(self, key: str) -> list[str]:
        """Every invalid field, each naming its YAML key and the fix."""
        issues = []
        if self.r < 1:
            issues.append(f"{key}.r={self.r}: the rank must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            issues.append(f"{key}.dropout={self.dropout}: must be in [0, 1)")
        if not self.target_modules:
            issues.append(f"{key}.target_modules is empty: name at least one linear layer (e.g. q_proj)")
        return issues


torch.serialization.add_safe_globals([LoraConfig])  # checkpoints hold it; resuming loads them with weights_only


def model_path_errors(model_path: str, key: str) -> list[str]:
    """[] when `model_path` is a local Hugging Face model directory, else the error naming `key` and the fix."""
    if (Path(model_path).expanduser() / "config.json").is_file():
        return []
    return [
        f"{key}={model_path!r} is not a local Hugging Face model directory (no config.json): pass the directory "
        "of a downloaded or fine-tuned model, or write the tiny default with `bridge model init --out DIR`"
    ]


def load_policy(
    model_path: str,
    *,
    dtype: str = "float32",
    attn_implementation: str | None = "sdpa",
    trust_remote_code: bool = False,
    gradient_checkpointing: bool = False,
    lora: LoraConfig | None = None,
) -> torch.nn.Module:
    """The model of `model_path` in train mode, with LoRA adapters when `lora` is given."""
    model = load_model(
        model_path,
        dtype=dtype,
        attn_implementation=attn_implementation,
        trust_remote_code=trust_remote_code,
        gradient_checkpointing=gradient_checkpointing,
    )
    if lora is None:
        return model
    return apply_lora(model, r=lora.r, alpha=lora.alpha, dropout=lora.dropout, target_modules=lora.target_modules)


def data_chat_template(trainer: L.Trainer | None) -> str | None:
    """The chat template the trainer's data module renders with (None without a data module or tokenizer).

    A data module may replace the model directory's template (``chat_template: llama-minimal``); the model is then
    trained on that template, so the recipe gives it to its own tokenizer: exports, evaluation and vLLM must render
    prompts with it.
    """
    data_tokenizer = getattr(trainer.datamodule if trainer is not None else None, "tokenizer", None)
    return getattr(data_tokenizer, "chat_template", None) or None


def hf_output_dir(trainer: L.Trainer, configured: str | None) -> str:
    """Where a recipe writes its final Hugging Face model: `configured`, else ``<log dir>/hf_model``.

    trainer.log_dir broadcasts from rank 0: every rank must ask, so the paths agree.
    """
    return configured or str(Path(trainer.log_dir or trainer.default_root_dir) / "hf_model")


def is_sharded(trainer: L.Trainer | None) -> bool:
    """Whether the trainer runs FSDP1 or FSDP2 (the model's parameters are shards)."""
    return trainer is not None and isinstance(trainer.strategy, FSDPStrategy | ModelParallelStrategy)


def full_state_dict(trainer: L.Trainer) -> dict[str, torch.Tensor]:
    """The unsharded weights of the recipe's ``model`` (names as inside the HF model), on CPU; collective.

    Every rank must call it. Other submodules of the LightningModule (a reference model) are left out.
    """
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=trainer.strategy.root_device.type != "cpu")
    # trainer.model is the FSDP wrapper of the LightningModule (FSDP1) or the module itself (FSDP2).
    state = get_model_state_dict(trainer.model, options=options)
    prefix = f"{MODEL_ATTRIBUTE}."
    return {key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)}


def save_hf_model(
    model: torch.nn.Module, tokenizer: Any, out_dir: str | Path, trainer: L.Trainer | None, rebuild: Callable
) -> Path:
    """Write `model` (LoRA merged) and its tokenizer to `out_dir`; collective under FSDP, rank 0 writes.

    Args:
        model: The recipe's model (``self.model``; sharded under FSDP).
        tokenizer: Its tokenizer.
        out_dir: Directory to write.
        trainer: The trainer running the recipe (None outside a fit).
        rebuild: A function returning a fresh unsharded copy of the model (LoRA included) on CPU; under FSDP
            the gathered weights are loaded into it so that the export names weights as a one-device run does.
    """
    out = Path(out_dir)
    if is_sharded(trainer):
        state = full_state_dict(trainer)  # every rank takes part in the gather; rank 0 receives it
        if trainer.is_global_zero:
            unsharded = rebuild()
            unsharded.load_state_dict(state)
            save_pretrained(unsharded, tokenizer, out)
    elif trainer is None or trainer.is_global_zero:
        save_pretrained(model, tokenizer, out)
    if trainer is not None:
        trainer.strategy.barrier("save_hf")
    rank_zero_info(f"saved the Hugging Face model to {out}")
    return out


def finite_step(loss: torch.Tensor | None, grad_norm: torch.Tensor, *, step: int, skipped: int, max_skips: int) -> bool:
    """Whether an optimizer step may run: False for a non-finite loss or gradient norm while fewer than `max_skips`
    steps were skipped, and a FloatingPointError naming the step, the values and the usual causes past that."""
    values = {"loss": loss, "grad norm": grad_norm}
    bad = [(name, float(v)) for name, v in values.items() if v is not None and not torch.isfinite(v.detach()).all()]
    if not bad:
        return True
    if skipped < max_skips:
        return False
    found = ", ".join(f"{name} = {value}" for name, value in bad)
    raise FloatingPointError(
        f"non-finite {found} at optimizer step {step} ({skipped} non-finite steps skipped of "
        f"model.init_args.max_nonfinite_skips={max_skips}); the weights were not updated by this step and no "
        "model is exported. Usual causes: a learning rate too high, fp16/bf16 precision overflow, bad data. Resume "
        "from the last checkpoint with a lower lr, fp32 or bf16-mixed precision, gradient clipping, or allow skips "
        "with model.init_args.max_nonfinite_skips"
    )


def refuse_nonfinite_weights(model: torch.nn.Module | None, out_dir: str | Path) -> None:
    """Raise instead of exporting a model with a NaN or infinite parameter."""
    if model is None:
        return
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p.detach()).all()]
    if bad:
        raise FloatingPointError(
            f"refusing to write {out_dir}: {len(bad)} parameters hold NaN/inf values (first: {bad[0]}); "
            "the training diverged (learning rate too high, fp16/bf16 precision, bad data)"
        )


def total_grad_norm(model: torch.nn.Module, trainer: L.Trainer | None) -> torch.Tensor:
    """The 2-norm of all gradients of `model` (over every shard under FSDP)."""
    if trainer is not None and isinstance(trainer.strategy, FSDPStrategy):
        # FSDP1 holds gradient shards; its clip_grad_norm_ reduces over them (an infinite bound never clips).
        return trainer.model.clip_grad_norm_(float("inf"))
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros((), device=next(model.parameters()).device)
    norm = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
    return norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # FSDP2: a DTensor over the shards
