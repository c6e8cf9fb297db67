"""What the training recipes share about the model they train: loading (LoRA), sharding, export, gradient norm.

Each function takes what it uses explicitly (the Hugging Face model, its tokenizer, the trainer), so `SFTModule`
and `GRPOModule` need no common base class; all work under one device, DDP, FSDP1 (`FSDPStrategy`) and FSDP2
(`ModelParallelStrategy`). The recipes hold the model as ``self.model`` (`MODEL_ATTRIBUTE`): FSDP state-dict
names start with it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from lightning.pytorch.utilities import rank_zero_info

from bridge_pl import __version__
from bridge_pl.data.encoding import ModelDirError, check_model_dir
from bridge_pl.data.io import CONFIG_FILE, DATA_FILES, FAILURES_FILE, unwritable_dir
from bridge_pl.models.model_io import EXPORT_MARKER, LORA_TARGET_MODULES, apply_lora, load_model, save_pretrained

__all__ = [
    "RUN_ID_KEY",
    "ExportRefused",
    "LoraConfig",
    "data_chat_template",
    "export_dir_errors",
    "export_errors",
    "export_marker",
    "finite_step",
    "full_state_dict",
    "hf_output_dir",
    "is_sharded",
    "load_policy",
    "model_path_errors",
    "new_run_id",
    "refuse_nonfinite_weights",
    "save_hf_model",
    "start_export_run",
    "total_grad_norm",
]

MODEL_ATTRIBUTE = "model"  # the LightningModule attribute holding the Hugging Face model
RUN_ID_KEY = "bridge_run_id"  # the checkpoint entry with the run id: a resumed run may write over its own exports


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
    """[] when `model_path` is a local Hugging Face model directory with weights, else the error naming `key`.

    Remote code and the tokenizer are checked where they load (they depend on ``trust_remote_code``).
    """
    try:
        check_model_dir(model_path, tokenizer=False, trust_remote_code=True)
    except ModelDirError as err:
        return [f"{key}={model_path!r}: {err}"]
    return []


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


class ExportRefused(ValueError):
    """A run would write its model over something it was not asked to replace (a model, a dataset, other files)."""


def new_run_id(trainer: L.Trainer | None) -> str:
    """A fresh id for a training run, the same on every rank (drawn on rank 0 and broadcast)."""
    run_id = uuid.uuid4().hex
    return trainer.strategy.broadcast(run_id) if trainer is not None else run_id


def export_dir_errors(
    out_dir: str | Path, *, inputs: Mapping[str, str | None], run_id: str | None, overwrite: bool, key: str
) -> list[str]:
    """[] when run `run_id` may write its model to `out_dir`, else each reason, naming `key` and the fix.

    A run may write to a missing or empty directory, or over its own earlier exports (`EXPORT_MARKER` holds its
    run id: a resumed run). Anything else (one of the `inputs` model directories, a dataset, another run's model,
    a model no run exported, other files) needs `overwrite`, except a directory holding one of the inputs, which
    the replacement would delete. An unwritable location is refused at once, before any training.
    """
    out = Path(out_dir).expanduser()
    where, fix = f"{key}.hf_output_dir={str(out_dir)!r}", f"choose another {key}.hf_output_dir"
    allow = f"{fix}, or set {key}.overwrite_output_dir: true to replace it"
    resolved = out.resolve()
    for name, path in inputs.items():
        given = Path(path).expanduser().resolve() if path else None
        if given is not None and resolved in given.parents:
            return [f"{where} holds {key}.{name} ({path}): replacing it would delete that model; {fix}"]
        if given == resolved and not overwrite:
            return [f"{where} is {key}.{name}: the export would replace the model the run starts from; {allow}"]
    if out.exists() and not out.is_dir():
        return [f"{where} is a file; a model is saved as a directory: {fix}"]
    unwritable = unwritable_dir(out) or unwritable_dir(out.absolute().parent)  # the swap renames in the parent
    if unwritable is not None:
        return [f"{where}: {unwritable} is not writable; {fix} or change the permissions"]
    if overwrite or not out.is_dir():
        return []
    held = _foreign_content(out, run_id)
    return [f"{where} already holds {held}; {allow}"] if held else []


def _foreign_content(out: Path, run_id: str | None) -> str | None:
    """What in the existing directory `out` is not an export of run `run_id` (None: nothing)."""
    if (out / CONFIG_FILE).exists() or any((out / name).exists() for name in (*DATA_FILES.values(), FAILURES_FILE)):
        return "a dataset"
    owner = _export_run(out)
    if owner is not None and owner != run_id:
        return f"the model exported by another run (run id {owner[:8]}; see {out / EXPORT_MARKER})"
    if owner is None and (out / "config.json").exists():
        return "a model that no bridge-pl run exported (no bridge_export.json)"
    # the run's own export (its files) and step_<n> snapshots may stay; anything else is foreign
    others = [e.name for e in sorted(out.iterdir()) if not (_own_snapshot(e, run_id) or (owner and e.is_file()))]
    if not others:
        return None
    listed = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
    return f"{len(others)} other entries ({listed})"


def _export_run(directory: Path) -> str | None:
    """The run id in the `EXPORT_MARKER` of `directory` ("unknown" when unreadable; None without a marker)."""
    marker = directory / EXPORT_MARKER
    if not marker.is_file():
        return None
    try:
        return str(json.loads(marker.read_text(encoding="utf-8"))["run_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return "unknown"


def _own_snapshot(entry: Path, run_id: str | None) -> bool:
    """Whether `entry` is a ``step_<n>`` snapshot written by run `run_id`."""
    return entry.is_dir() and entry.name.startswith("step_") and run_id is not None and _export_run(entry) == run_id


def export_errors(
    trainer: L.Trainer | None,
    configured: str | None,
    *,
    inputs: Mapping[str, str | None],
    run_id: str | None,
    overwrite: bool,
    key: str,
) -> list[str]:
    """Why a recipe may not write its final model at `configured`, else ``<log dir>/hf_model`` ([] when it may).

    Without a trainer only a configured directory is checked (the default one is known once the fit starts).
    Under a trainer it is collective, as `hf_output_dir` is.
    """
    if trainer is None and configured is None:
        return []
    out = hf_output_dir(trainer, configured) if trainer is not None else configured
    return export_dir_errors(out, inputs=inputs, run_id=run_id, overwrite=overwrite, key=key)


def start_export_run(module: L.LightningModule) -> None:
    """Give a recipe's run its id (the checkpoint's when resuming) and refuse an export directory it may not write.

    Called from the recipe's ``on_fit_start``: before the first step and before the logger writes anything.
    `module` has ``run_id`` and ``export_errors()``.
    """
    module.run_id = module.run_id or new_run_id(module.trainer)
    issues = module.export_errors()
    if issues:
        raise ExportRefused("; ".join(issues))


def export_marker(module: L.LightningModule) -> dict[str, Any]:
    """What a recipe's export records about its run (`EXPORT_MARKER`): run id, optimizer step, starting model."""
    step = module._trainer.global_step if module._trainer is not None else None
    return {"run_id": module.run_id, "step": step, "model_path": module.model_path}


def save_hf_model(
    model: torch.nn.Module,
    tokenizer: Any,
    out_dir: str | Path,
    trainer: L.Trainer | None,
    rebuild: Callable,
    *,
    marker: dict[str, Any] | None = None,
) -> Path:
    """Write `model` (LoRA merged) and its tokenizer to `out_dir`; collective under FSDP, rank 0 writes.

    The model must be finite on every rank (`refuse_nonfinite_weights` first); the folder is replaced atomically
    (`save_pretrained`), with `marker` (run id, step) as ``bridge_export.json``.

    Args:
        model: The recipe's model (``self.model``; sharded under FSDP).
        tokenizer: Its tokenizer.
        out_dir: Directory to write.
        trainer: The trainer running the recipe (None outside a fit).
        rebuild: A function returning a fresh unsharded copy of the model (LoRA included) on CPU; under FSDP
            the gathered weights are loaded into it so that the export names weights as a one-device run does.
        marker: What the export records about the run that wrote it (``bridge-pl`` version added).
    """
    out = Path(out_dir)
    marker = {**(marker or {}), "bridge_pl": __version__}
    if is_sharded(trainer):
        state = full_state_dict(trainer)  # every rank takes part in the gather; rank 0 receives it
        if trainer.is_global_zero:
            unsharded = rebuild()
            unsharded.load_state_dict(state)
            save_pretrained(unsharded, tokenizer, out, marker=marker)
    elif trainer is None or trainer.is_global_zero:
        save_pretrained(model, tokenizer, out, marker=marker)
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


def refuse_nonfinite_weights(
    model: torch.nn.Module | None, out_dir: str | Path, trainer: L.Trainer | None = None
) -> None:
    """Raise, on every rank, instead of exporting a model with a NaN or infinite parameter on any rank's shard.

    Collective with a trainer: the ranks agree (a sum over them) before any of them enters the export's gather.
    """
    if model is None:
        return
    bad = [name for name, p in model.named_parameters() if not _finite(p)]
    count = len(bad)
    if trainer is not None and trainer.world_size > 1:
        count = int(
            trainer.strategy.reduce(torch.tensor(float(count), device=trainer.strategy.root_device), reduce_op="sum")
        )
    if count:
        first = f" (first here: {bad[0]})" if bad else " (on another rank's shard)"
        raise FloatingPointError(
            f"refusing to write {out_dir}: {count} parameters hold NaN/inf values{first}; "
            "the training diverged (learning rate too high, fp16/bf16 precision, bad data)"
        )


def _finite(parameter: torch.Tensor) -> bool:
    """Whether every element of `parameter` (this rank's shard, for a DTensor) is finite."""
    local = parameter.to_local() if hasattr(parameter, "to_local") else parameter
    return bool(torch.isfinite(local.detach()).all())


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
