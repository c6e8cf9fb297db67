"""SFT training throughput: SFTModule + SFTDataModule (Lightning) against a plain transformers.Trainer.

Both train the same fresh tiny model on the same tokenized conversations, on the same device (CPU, or one CUDA
GPU), in the same precision (fp32, or bf16 autocast over fp32 weights), with the same attention kernel, batch size,
learning rate, optimizer, clipping and thread count; the figure is real (non-pad) tokens per second over the steps
after warm-up, wall clock between optimizer steps (data loading included; on a GPU each clock reading waits for the
device). transformers.Trainer uses its defaults: random batches padded by DataCollatorForLanguageModeling(mlm=False).

    python scripts/bench_sft.py                      # 512 BRIDGE conversations, max_length 1024, batch 8
    python scripts/bench_sft.py --batching pack --steps 40
    python scripts/bench_sft.py --precision bf16-mixed   # bf16 autocast on both sides
    python scripts/bench_sft.py --accelerator gpu --precision bf16-mixed --preset llama-100m
    python scripts/bench_sft.py --accelerator gpu --precision bf16-mixed --batching pack \
        --attn-implementation flash_attention_2   # packed rows, variable-length kernel (needs flash-attn)
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from transformers import DataCollatorForLanguageModeling, Trainer, TrainerCallback, TrainingArguments

from bridge_pl.data.datamodules import SFTDataModule
from bridge_pl.data.pipeline import generate_dataset, generation_plan
from bridge_pl.models.model_io import init_model_dir, load_model, load_tokenizer
from bridge_pl.modules import OptimizerConfig, SFTModule


class StepClock:
    """Wall time at the start and after each optimizer step, and the real tokens of each step's batch."""

    def __init__(self) -> None:
        self.times: list[float] = []  # times[k]: end of step k (times[0]: start)
        self.tokens: list[int] = []  # tokens[k - 1]: real tokens of step k
        self.padded: list[int] = []  # tokens[k - 1] plus padding (transformers only)

    def tick(self) -> None:
        if torch.cuda.is_initialized():  # CUDA kernels run asynchronously: read the clock once the step has finished
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())

    def rate(self, warmup: int) -> float:
        """Real tokens per second over the steps after `warmup` (each step counted from the previous one's end)."""
        steps = len(self.times) - 1
        return sum(self.tokens[warmup:steps]) / (self.times[steps] - self.times[warmup])


class LightningClock(L.Callback):
    def __init__(self, clock: StepClock) -> None:
        self.clock = clock

    def on_train_start(self, trainer, pl_module):
        self.clock.tick()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.clock.tokens.append(int(batch["attention_mask"].sum()))
        self.clock.tick()


class TransformersClock(TrainerCallback):
    def __init__(self, clock: StepClock) -> None:
        self.clock = clock

    def on_train_begin(self, args, state, control, **kwargs):
        self.clock.tick()

    def on_step_end(self, args, state, control, **kwargs):
        self.clock.tick()


def bench_lightning(model_dir: Path, data: SFTDataModule, args: argparse.Namespace, out: Path) -> float:
    module = SFTModule(
        str(model_dir), attn_implementation=args.attn_implementation, optimizer=OptimizerConfig(lr=args.lr),
        hf_output_dir=str(out / "ours"),
    )  # fmt: skip
    clock = StepClock()
    trainer = L.Trainer(
        accelerator=args.accelerator, devices=1, precision=args.precision, max_steps=args.warmup + args.steps,
        gradient_clip_val=1.0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, callbacks=[LightningClock(clock)],
    )  # fmt: skip
    trainer.fit(module, datamodule=data)
    return clock.rate(args.warmup)


def bench_transformers(
    model_dir: Path, conversations: list[list[int]], args: argparse.Namespace, out: Path, clock: StepClock
) -> float:
    tokenizer = load_tokenizer(model_dir)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm=False)

    def collate(features):  # the same padding collator, recording the real tokens of each batch in order
        batch = collator(features)
        clock.tokens.append(int(batch["attention_mask"].sum()))
        clock.padded.append(batch["attention_mask"].numel())
        return batch

    examples = [{"input_ids": ids} for ids in conversations]
    training_args = TrainingArguments(
        output_dir=str(out / "hf"), per_device_train_batch_size=args.batch_size, learning_rate=args.lr,
        lr_scheduler_type="constant", adam_beta2=0.95, weight_decay=0.01, max_grad_norm=1.0,
        max_steps=args.warmup + args.steps, logging_strategy="no", save_strategy="no", report_to=[],
        use_cpu=args.accelerator == "cpu", bf16=args.precision == "bf16-mixed", dataloader_num_workers=0, seed=0,
        disable_tqdm=True,
    )  # fmt: skip
    model = load_model(model_dir, attn_implementation=args.attn_implementation)
    callbacks = [TransformersClock(clock)]
    trainer = Trainer(model, training_args, train_dataset=examples, data_collator=collate, callbacks=callbacks)
    trainer.train()
    return clock.rate(args.warmup)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's arguments; a device or kernel this machine lacks is refused here, before any work."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="conversations (BRIDGE style, op 15-20)")
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=30, help="measured optimizer steps, after --warmup")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--preset", default="llama-3m")
    parser.add_argument("--batching", default="bucket", choices=["bucket", "pack", "pad"])
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"], help="gpu: the first CUDA device")
    parser.add_argument(
        "--attn-implementation", default="sdpa", choices=["sdpa", "eager", "flash_attention_2"],
        help="attention kernel of both sides; flash_attention_2 (GPU, flash-attn installed) with --batching pack "
        "trains our packed rows padding-free",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        parser.error("--accelerator gpu: torch sees no CUDA device here (torch.cuda.is_available() is False)")
    if args.attn_implementation == "flash_attention_2":
        if args.accelerator != "gpu":
            parser.error("--attn-implementation flash_attention_2 runs on CUDA only: add --accelerator gpu")
        if importlib.util.find_spec("flash_attn") is None:
            parser.error("--attn-implementation flash_attention_2 needs the flash-attn package, not importable here")
    if args.steps < 1 or args.warmup < 0:
        parser.error(f"--steps {args.steps} --warmup {args.warmup}: need steps >= 1 and warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(tempfile.mkdtemp(prefix="bench_sft_"))
    model_dir = init_model_dir(out / "model", preset=args.preset)
    generate_dataset(out / "sft", generation_plan(split="sft", size=args.size, style="bridge"))
    data, plain = (
        SFTDataModule(
            f"{out}/sft", str(model_dir), max_length=args.max_length, batch_size=args.batch_size,
            batching=batching, truncation="truncate",
        )
        for batching in (args.batching, "pad")
    )  # fmt: skip
    data.setup("fit")
    plain.setup("fit")  # the same tokenized conversations, one per example (not packed)
    ours = bench_lightning(model_dir, data, args, out)
    clock = StepClock()
    theirs = bench_transformers(model_dir, [e["input_ids"] for e in plain.train_examples], args, out, clock)
    print(f"SFTModule + SFTDataModule ({args.batching}): {ours:8.0f} real tokens/s")
    print(f"transformers.Trainer (padding collator):   {theirs:8.0f} real tokens/s")
    real, their_real = data.stats["real_token_fraction"], sum(clock.tokens) / sum(clock.padded)
    device = torch.cuda.get_device_name() if args.accelerator == "gpu" else f"{args.threads} CPU threads"
    kernel = args.attn_implementation
    setting = f"{args.preset}, batch {args.batch_size}, {args.steps} steps, {args.precision}, {kernel}"
    print(f"ratio: {ours / theirs:.2f}x  ({setting},")
    print(f"{device}; real-token share of the batches: ours {real:.2f}, transformers {their_real:.2f})")


if __name__ == "__main__":
    main()
