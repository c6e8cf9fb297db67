"""Supervised fine-tuning (SFT) of a causal language model on question/answer conversations.

`SFTModule` is the recipe of paper_spec §D.2: next-token cross-entropy over the label tokens of each
micro-batch (token mean), AdamW with a constant learning rate, gradient clipping through the Trainer. It
takes batches from `bridge_pl.data.datamodules.SFTDataModule` and writes the fine-tuned model as a
Hugging Face directory that GRPO, evaluation and vLLM load::

    bridge fit --config configs/sft/tiny.yaml
    bridge fit --config configs/sft/qwen2.5-1.5b.yaml --model.init_args.model_path /models/Qwen2.5-1.5B

Logged (TensorBoard): ``train/loss``, ``train/ppl``, ``train/lr``, ``train/grad_norm`` (before clipping),
``train/tokens_per_sec`` (non-pad tokens of all ranks per second of wall time), ``val/loss``, ``val/ppl``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy

from bridge_pl.data.encoding import IGNORE_INDEX
from bridge_pl.models.model_io import AttnImplementation, load_tokenizer
from bridge_pl.modules.optim import OptimizerConfig, SchedulerConfig, build_optimizer, build_scheduler
from bridge_pl.modules.parallel import fully_shard_decoder
from bridge_pl.modules.policy import (
    RUN_ID_KEY,
    LoraConfig,
    data_chat_template,
    export_errors,
    export_marker,
    finite_step,
    hf_output_dir,
    load_policy,
    model_path_errors,
    refuse_nonfinite_weights,
    save_hf_model,
    start_export_run,
    total_grad_norm,
)

__all__ = ["SFTModule", "token_cross_entropy"]

KEY = "model.init_args"  # where the module's arguments live in a LightningCLI config


class SFTModule(L.LightningModule):
    """Supervised fine-tuning of a local Hugging Face causal LM (full or LoRA), saved as a Hugging Face directory.

    The loss is the next-token cross-entropy averaged over the label tokens of each micro-batch (labels of
    -100 carry no loss); with gradient accumulation Lightning divides it by the number of micro-batches, which
    is the paper's reduction (paper_spec §D.2). Which tokens carry labels (the whole conversation, as in the
    paper, or the answer only) is the data module's ``loss_on`` setting.

    Args:
        model_path: Local Hugging Face model directory (never a hub id): the model to fine-tune and its
            tokenizer. `bridge model init --out DIR` writes the tiny embedded default.
        dtype: Dtype of the master weights. Keep float32 and use ``trainer.precision: bf16-mixed`` for bf16
            compute (the paper's set-up); bfloat16 halves the memory of weights and optimizer state.
        attn_implementation: Attention kernel ("sdpa", "eager", "flash_attention_2", ...); None lets transformers
            choose. With flash_attention_2, ``batching: pack`` trains padding-free (variable-length kernel).
        trust_remote_code: Allow modelling and tokenizer code shipped inside the model directory.
        gradient_checkpointing: Recompute activations in the backward pass (transformers' own, per decoder
            layer). Leave False under an FSDP strategy that sets ``activation_checkpointing_policy``.
        lora: Train LoRA adapters instead of all weights (None: full fine-tuning, as in the paper).
        optimizer: AdamW settings (the paper's by default: lr 5e-6, betas (0.9, 0.95), weight decay 0.01).
        scheduler: Learning-rate schedule per optimizer step (default constant, no warm-up).
        save_hf_every_n_steps: Also write the model to ``<hf_output_dir>/step_<n>`` every n optimizer steps.
        hf_output_dir: Where the final model is written (default: ``<log dir>/hf_model``).
        overwrite_output_dir: Let the export replace what `hf_output_dir` holds (a model, a dataset, other files).
            Without it the run is refused before training when the directory holds anything but this run's own
            earlier exports (a resumed run); the directory holding the starting model is refused even with it.
        max_nonfinite_skips: Optimizer steps with a non-finite loss or gradient norm to skip (gradients dropped,
            no optimizer update) before the run stops with an error; 0 stops at the first. Skips are logged as
            ``train/nonfinite_skipped`` (cumulative).

    Example:
        ``bridge fit --config configs/sft/tiny.yaml --model.init_args.optimizer.lr 3e-4``
    """

    def __init__(
        self,
        model_path: str,
        dtype: Literal["float32", "bfloat16"] = "float32",
        attn_implementation: AttnImplementation | None = "sdpa",
        trust_remote_code: bool = False,
        gradient_checkpointing: bool = False,
        lora: LoraConfig | None = None,
        optimizer: OptimizerConfig = OptimizerConfig(),  # noqa: B008 (frozen: a shared default is safe)
        scheduler: SchedulerConfig = SchedulerConfig(),  # noqa: B008
        save_hf_every_n_steps: int | None = None,
        hf_output_dir: str | None = None,
        overwrite_output_dir: bool = False,
        max_nonfinite_skips: int = 0,
    ) -> None:
        super().__init__()
        _validate_args(model_path, lora, optimizer, scheduler, save_hf_every_n_steps, max_nonfinite_skips)
        self.save_hyperparameters()
        # Read the arguments from these attributes, not self.hparams: under LightningCLI hparams hold the parsed
        # config (plain dicts), so that checkpoints reload with SFTModule.load_from_checkpoint.
        self.model_path = model_path
        self.dtype_name = dtype
        self.attn_implementation = attn_implementation
        self.trust_remote_code = trust_remote_code
        self.gradient_checkpointing = gradient_checkpointing
        self.lora = lora
        self.optimizer_config = optimizer
        self.scheduler_config = scheduler
        self.save_hf_every_n_steps = save_hf_every_n_steps
        self.hf_output_dir = hf_output_dir
        self.overwrite_output_dir = overwrite_output_dir
        self.run_id: str | None = None  # set at fit start (or from the checkpoint); recorded in every export
        self.model: torch.nn.Module | None = None  # built in configure_model, where FSDP can shard it
        self.tokenizer = None
        self._clock: float | None = None  # wall time of the previous training batch end
        self._val_sums: list[torch.Tensor] = []  # (loss sum, label count) per validation batch
        self._last_hf_step = -1
        self.max_nonfinite_skips = max_nonfinite_skips
        self.nonfinite_skipped = 0

    # ------------------------------------------------------------------------------------------- model
    def _load_policy(self, gradient_checkpointing: bool) -> torch.nn.Module:
        """The model of `model_path` with this module's settings (and LoRA adapters), in train mode."""
        return load_policy(
            self.model_path, dtype=self.dtype_name, attn_implementation=self.attn_implementation,
            trust_remote_code=self.trust_remote_code, gradient_checkpointing=gradient_checkpointing, lora=self.lora,
        )  # fmt: skip

    def configure_model(self) -> None:
        """Load the model (once: Lightning calls this hook again for validate/test after fit)."""
        if self.model is not None:
            return
        model = self._load_policy(self.gradient_checkpointing)
        if self._trainer is not None and isinstance(self.trainer.strategy, ModelParallelStrategy):
            fully_shard_decoder(model, self.device_mesh["data_parallel"])
        self.model = model.train()  # from_pretrained returns eval mode (dropout off) and Lightning keeps it
        self.tokenizer = load_tokenizer(self.model_path, trust_remote_code=self.trust_remote_code)
        self.tokenizer.chat_template = data_chat_template(self._trainer) or self.tokenizer.chat_template

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Next-token logits (B, T, V) of a right-padded or packed batch (logits at pad positions mean nothing).

        Packed rows pass `position_ids` (restarting at 0 for each sequence) and no 2-D mask: transformers then
        builds a block-diagonal causal mask, so packed sequences do not see each other. A right-padded batch
        also goes without its mask: under causal attention a real token only sees earlier, real tokens, so
        the mask changes nothing that carries loss, and without it attention runs the fused causal kernel
        instead of materialising a (B, 1, T, T) mask. No KV cache is built: transformers derives the packed mask
        only without one (with a cache, packed sequences would attend to those before them in the row).
        Flash-attention kernels find packed documents from the position ids of a single row only, so packed
        rows go to them as one row of B * T tokens (the variable-length kernel: no padding computed).
        """
        if position_ids is not None and _varlen_kernel(self.model):
            rows, width = input_ids.shape
            flat = self.model(
                input_ids=input_ids.reshape(1, -1), position_ids=position_ids.reshape(1, -1), use_cache=False
            )
            return flat.logits.view(rows, width, -1)
        if position_ids is not None or (attention_mask is not None and _is_right_padded(attention_mask)):
            attention_mask = None
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
        return out.logits

    # ---------------------------------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Token-mean cross-entropy of one micro-batch."""
        loss_sum, count = self._loss_terms(batch)
        loss = loss_sum / count.clamp(min=1)
        size = batch["input_ids"].shape[0]
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=size)
        self.log("train/ppl", torch.exp(loss.detach()), batch_size=size)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=size)
        return loss

    # -------------------------------------------------------------------------------------- validation
    def on_validation_epoch_start(self) -> None:
        """Reset the validation sums; the throughput clock restarts after validation."""
        self._val_sums = []
        self._clock = None  # validation time is not training time: restart the throughput clock afterwards

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Accumulate the summed loss and label count; the epoch value is their ratio over every rank."""
        loss_sum, count = self._loss_terms(batch)
        self._val_sums.append(torch.stack([loss_sum.detach().float(), count.float()]))

    def on_validation_epoch_end(self) -> None:
        """Log val/loss and val/ppl: summed loss over summed label count, over every rank."""
        totals = torch.stack(self._val_sums).sum(0) if self._val_sums else torch.zeros(2, device=self.device)
        totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
        loss = totals[0] / totals[1].clamp(min=1)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)  # equal on every rank already
        self.log("val/ppl", torch.exp(loss), sync_dist=True)

    # --------------------------------------------------------------------------------------- optimizer
    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW over the trainable parameters and a per-step schedule (built after FSDP wrapped the model)."""
        optimizer = build_optimizer(self.parameters(), self.optimizer_config)
        total_steps = self.trainer.estimated_stepping_batches
        scheduler = build_scheduler(optimizer, self.scheduler_config, total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Any, optimizer_closure: Any = None) -> None:
        """Run forward/backward, then step only on a finite loss and gradient norm (else skip or stop).

        Zeroing gradients is not a skip: AdamW would still move its moments and take a decayed step, so the
        closure runs here first and ``optimizer.step`` is not called for a non-finite step.
        """
        loss = optimizer_closure()
        grad_norm = total_grad_norm(self.model, self._trainer)
        step = self.trainer.global_step + 1 if self._trainer is not None else 0
        if finite_step(loss, grad_norm, step=step, skipped=self.nonfinite_skipped, max_skips=self.max_nonfinite_skips):
            self.log("train/grad_norm", grad_norm)  # before clipping (over all shards under FSDP)
            optimizer.step(closure=lambda: loss)  # the gradients exist already: the closure only reports the loss
        else:
            self.nonfinite_skipped += 1
            self.log("train/nonfinite_skipped", float(self.nonfinite_skipped))
            optimizer.zero_grad(set_to_none=True)

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip as the Trainer asks (``trainer.gradient_clip_val``); under FSDP1 through the root's clip_grad_norm_."""
        if not (gradient_clip_val and isinstance(self.trainer.strategy, FSDPStrategy)):
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        # Lightning's FSDPPrecision refuses norm clipping (it has no handle on the root FSDP module, and
        # torch.nn.utils.clip_grad_norm_ would only see this rank's shards); the root module reduces over them.
        if gradient_clip_algorithm not in (None, "norm"):
            raise ValueError(f"trainer.gradient_clip_algorithm={gradient_clip_algorithm!r}: FSDP supports 'norm' only")
        self.trainer.model.clip_grad_norm_(gradient_clip_val)

    # ---------------------------------------------------------------------------------- other hooks
    def on_fit_start(self) -> None:
        """Refuse, before the first step, an export directory this run may not write."""
        start_export_run(self)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the run id in the checkpoint: the resumed run may write over its own exports."""
        checkpoint[RUN_ID_KEY] = self.run_id

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Take the run id of the checkpoint's run."""
        self.run_id = checkpoint.get(RUN_ID_KEY) or self.run_id

    def on_train_start(self) -> None:
        """A resumed run has written the Hugging Face model of the step it resumes at already."""
        self._last_hf_step = self.trainer.global_step

    def on_train_batch_start(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Start the throughput clock at the first training batch (and after each validation)."""
        if self._clock is None:  # the first interval starts here; later ones span batch end to batch end
            self._clock = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: dict[str, Any], batch_idx: int) -> None:
        """Log throughput (data loading included) and write the periodic Hugging Face checkpoint."""
        tokens = float(batch["attention_mask"].sum())  # .item() waits for the step: the clock then measures it
        now = time.perf_counter()
        rate = tokens / max(now - self._clock, 1e-9)
        self._clock = now
        size = batch["input_ids"].shape[0]
        self.log("train/tokens_per_sec", rate, batch_size=size, sync_dist=True, reduce_fx="sum")
        every = self.save_hf_every_n_steps
        step = self.trainer.global_step
        # once per optimizer step, not micro-batch; never at step 0 (accumulating micro-batches: nothing trained yet)
        if every and step and step % every == 0 and step != self._last_hf_step:
            self._last_hf_step = step
            self.save_hf(Path(hf_output_dir(self.trainer, self.hf_output_dir)) / f"step_{step}")

    def on_train_end(self) -> None:
        """Write the final model as a Hugging Face directory."""
        self.save_hf(hf_output_dir(self.trainer, self.hf_output_dir))

    # ------------------------------------------------------------------------------------ saving
    def save_hf(self, out_dir: str | Path) -> Path:
        """Write the model (LoRA merged) and tokenizer to `out_dir`; collective under FSDP, rank 0 writes.

        Every rank must call it (it may gather shards); only global rank 0 touches the disk.
        """
        refuse_nonfinite_weights(self.model, out_dir, self._trainer)
        return save_hf_model(
            self.model, self.tokenizer, out_dir, self._trainer, rebuild=lambda: self._load_policy(False),
            marker=export_marker(self),
        )  # fmt: skip

    def export_errors(self, run_id: str | None = None) -> list[str]:
        """Why the final model may not be written to its directory ([] when it may); the CLI asks before training."""
        return export_errors(
            self._trainer, self.hf_output_dir, inputs={"model_path": self.model_path}, run_id=run_id or self.run_id,
            overwrite=self.overwrite_output_dir, key=KEY,
        )  # fmt: skip

    # ----------------------------------------------------------------------------------- helpers

    def _loss_terms(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch["input_ids"], batch.get("attention_mask"), batch.get("position_ids"))
        return token_cross_entropy(logits, batch["labels"], batch.get("position_ids"))


def _varlen_kernel(model: torch.nn.Module) -> bool:
    """Whether `model` attends with a flash-attention kernel (packed documents found from one row's position ids)."""
    return str(getattr(model.config, "_attn_implementation", "")).startswith("flash_attention")


def _is_right_padded(attention_mask: torch.Tensor) -> bool:
    """Whether every row of a (B, T) mask is ones then zeros (padding only at the end)."""
    return bool((attention_mask[:, 1:] <= attention_mask[:, :-1]).all())


def token_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, position_ids: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token cross-entropy over the label tokens, and how many there are.

    Position t predicts labels[t + 1]; labels equal to `IGNORE_INDEX` carry no loss. In packed rows
    (`position_ids` given) a sequence's first token is not predicted from the end of the previous sequence.

    Args:
        logits: (B, T, V) scores.
        labels: (B, T) token ids aligned with the inputs (not shifted), -100 where there is no loss.
        position_ids: (B, T) positions restarting at 0 at each packed sequence, or None.

    Returns:
        (loss sum, label-token count), both 0-dim tensors; the token mean is their ratio.

    >>> logits = torch.zeros(1, 3, 4)  # uniform over 4 tokens: each predicted token costs ln 4
    >>> total, count = token_cross_entropy(logits, torch.tensor([[-100, 2, 3]]))
    >>> round(float(total / count), 4), int(count)
    (1.3863, 2)
    """
    targets = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)  # (B, T): shift left, nothing to predict at the end
    if position_ids is not None:
        starts = F.pad(position_ids[:, 1:] == 0, (0, 1), value=False)  # (B, T): next token opens a sequence
        targets = targets.masked_fill(starts, IGNORE_INDEX)
    loss_sum = F.cross_entropy(
        logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return loss_sum, (targets != IGNORE_INDEX).sum()


def _validate_args(
    model_path: str,
    lora: LoraConfig | None,
    optimizer: OptimizerConfig,
    scheduler: SchedulerConfig,
    save_hf_every_n_steps: int | None,
    max_nonfinite_skips: int = 0,
) -> None:
    """Raise one ValueError listing every invalid argument by its YAML key, before any model is loaded."""
    issues = [*optimizer.config_errors(f"{KEY}.optimizer"), *scheduler.config_errors(f"{KEY}.scheduler")]
    if lora is not None:
        issues += lora.config_errors(f"{KEY}.lora")
    if save_hf_every_n_steps is not None and save_hf_every_n_steps < 1:
        issues.append(f"{KEY}.save_hf_every_n_steps={save_hf_every_n_steps}: must be >= 1 (or null for no saves)")
    if max_nonfinite_skips < 0:
        issues.append(f"{KEY}.max_nonfinite_skips={max_nonfinite_skips}: must be >= 0 (0 stops at the first)")
    issues += model_path_errors(model_path, f"{KEY}.model_path")
    if issues:
        raise ValueError("invalid SFT configuration:\n  " + "\n  ".join(issues))
