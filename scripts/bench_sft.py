"""SFT training throughput: SFTModule + SFTDataModule (Lightning) against transformers.Trainer and a bare PyTorch loop.

Three sides train the same fresh tiny model (one initialisation on disk) on the same tokenized conversations, on the
same device (CPU, or one CUDA GPU), in the same precision (fp32, or bf16 autocast over fp32 weights), with the same
attention kernel, batch size, learning rate, AdamW settings, clipping (norm 1.0) and thread count:

* ours: `SFTModule` + `SFTDataModule` under `lightning.Trainer` (batches collated by its loader as training goes);
* transformers.Trainer with its defaults: random batches padded by DataCollatorForLanguageModeling(mlm=False);
* the bare loop, the ceiling for our math: our batches (the same plan, collated in advance), the same token-mean
  cross-entropy, ``clip_grad_norm_`` and AdamW in a plain ``for`` loop: no Lightning, no data loader, no logging.
  Ours and the bare loop see the same batches from the same weights, so their losses must agree step for step
  (printed: the largest difference); what ours costs above the loop is Lightning, the loader and logging.

The figure is real (non-pad) tokens per second over the steps after warm-up, wall clock between optimizer steps (data
loading included; on a GPU each clock reading waits for the device). Each round runs the three sides once, in an
order that rotates from round to round, so the machine's load falls on all of them alike; the medians over the
rounds are printed, and the ratios are medians of the per-round ratios.

    python scripts/bench_sft.py                      # 512 BRIDGE conversations, max_length 1024, batch 8, 3 rounds
    python scripts/bench_sft.py --batching pack --steps 40
    python scripts/bench_sft.py --precision bf16-mixed   # bf16 autocast on all sides
    python scripts/bench_sft.py --accelerator gpu --precision bf16-mixed --preset llama-100m
    python scripts/bench_sft.py --accelerator gpu --precision bf16-mixed --batching pack \
        --attn-implementation flash_attention_2   # packed rows, variable-length kernel (needs flash-attn)
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from transformers import DataCollatorForLanguageModeling, Trainer, TrainerCallback, TrainingArguments

from bridge_pl.data.datamodules import SFTDataModule
from bridge_pl.data.pipeline import generate_dataset, generation_plan
from bridge_pl.models.model_io import init_model_dir, load_model, load_tokenizer
from bridge_pl.modules import OptimizerConfig, SFTModule
from bridge_pl.modules.optim import build_optimizer
from bridge_pl.modules.sft import token_cross_entropy

SIDES = ("ours", "transformers", "bare")


class StepClock:
    """Wall time at the start and after each optimizer step, the real tokens and the loss of each step's batch."""

    def __init__(self) -> None:
        self.times: list[float] = []  # times[k]: end of step k (times[0]: start)
        self.tokens: list[int] = []  # tokens[k - 1]: real tokens of step k
        self.padded: list[int] = []  # tokens[k - 1] plus padding (transformers only)
        self.losses: list[float] = []  # losses[k - 1]: loss of step k (ours and the bare loop)

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
        self.clock.losses.append(float(outputs["loss"]))
        self.clock.tick()


class TransformersClock(TrainerCallback):
    def __init__(self, clock: StepClock) -> None:
        self.clock = clock

    def on_train_begin(self, args, state, control, **kwargs):
        self.clock.tick()

    def on_step_end(self, args, state, control, **kwargs):
        self.clock.tick()


def bench_lightning(model_dir: Path, data: SFTDataModule, args: argparse.Namespace, out: Path) -> StepClock:
    module = SFTModule(
        str(model_dir), attn_implementation=args.attn_implementation, optimizer=OptimizerConfig(lr=args.lr),
        hf_output_dir=str(out),
    )  # fmt: skip
    clock = StepClock()
    trainer = L.Trainer(
        accelerator=args.accelerator, devices=1, precision=args.precision, max_steps=args.warmup + args.steps,
        gradient_clip_val=1.0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, callbacks=[LightningClock(clock)],
    )  # fmt: skip
    trainer.fit(module, datamodule=data)
    return clock


def bench_transformers(
    model_dir: Path, conversations: list[list[int]], args: argparse.Namespace, out: Path
) -> StepClock:
    clock = StepClock()
    collator = DataCollatorForLanguageModeling(load_tokenizer(model_dir), mlm=False)

    def collate(features):  # the same padding collator, recording the real tokens of each batch in order
        batch = collator(features)
        clock.tokens.append(int(batch["attention_mask"].sum()))
        clock.padded.append(batch["attention_mask"].numel())
        return batch

    examples = [{"input_ids": ids} for ids in conversations]
    training_args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=args.batch_size, learning_rate=args.lr,
        lr_scheduler_type="constant", adam_beta2=0.95, weight_decay=0.01, max_grad_norm=1.0,
        max_steps=args.warmup + args.steps, logging_strategy="no", save_strategy="no", report_to=[],
        use_cpu=args.accelerator == "cpu", bf16=args.precision == "bf16-mixed", dataloader_num_workers=0, seed=0,
        disable_tqdm=True,
    )  # fmt: skip
    model = load_model(model_dir, attn_implementation=args.attn_implementation)
    trainer = Trainer(
        model, training_args, train_dataset=examples, data_collator=collate, callbacks=[TransformersClock(clock)]
    )
    trainer.train()
    return clock


def planned_batches(data: SFTDataModule, count: int) -> list[dict]:
    """The first `count` training batches of our data module's plan (epoch after epoch), collated now."""
    batches = []
    for epoch in itertools.count():
        loader = data.train_dataloader()
        loader.sampler.set_epoch(epoch)
        batches += itertools.islice(loader, count - len(batches))
        if len(batches) == count:
            return batches


def bench_bare(model_dir: Path, batches: list[dict], args: argparse.Namespace) -> StepClock:
    """Our math in a plain loop: forward as `SFTModule.forward`, token-mean loss, backward, clip, AdamW."""
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    model = load_model(model_dir, attn_implementation=args.attn_implementation).to(device).train()
    optimizer = build_optimizer(model.parameters(), OptimizerConfig(lr=args.lr))
    varlen = str(model.config._attn_implementation).startswith("flash_attention")
    clock = StepClock()
    clock.tick()
    for batch in batches:
        ids, labels = batch["input_ids"].to(device), batch["labels"].to(device)
        positions = batch["position_ids"].to(device) if "position_ids" in batch else None
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed"):
            if positions is not None and varlen:  # packed rows as one row of B * T tokens (variable-length kernel)
                flat = model(input_ids=ids.reshape(1, -1), position_ids=positions.reshape(1, -1), use_cache=False)
                logits = flat.logits.view(*ids.shape, -1)
            else:  # right-padded (or packed) rows need no 2-D mask under causal attention
                logits = model(input_ids=ids, position_ids=positions, use_cache=False).logits
            loss_sum, count = token_cross_entropy(logits, labels, positions)
            loss = loss_sum / count.clamp(min=1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.tokens.append(int(batch["attention_mask"].sum()))
        clock.losses.append(float(loss.detach()))
        clock.tick()
    return clock


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every option's default."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's arguments; a device or kernel this machine lacks is refused here, before any work."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="conversations generated (BRIDGE style, op 15-20)")
    parser.add_argument("--max-length", type=int, default=1024, help="longest conversation (truncated), or packed row")
    parser.add_argument("--batch-size", type=int, default=8, help="sequences (packed rows) per optimizer step")
    parser.add_argument("--steps", type=int, default=12, help="measured optimizer steps per side and round")
    parser.add_argument("--warmup", type=int, default=3, help="optimizer steps per side and round before the clock")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three sides (medians over them)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--lr", type=float, default=1e-4, help="constant AdamW learning rate")
    parser.add_argument("--preset", default="llama-3m", help="tiny model preset (bridge_pl.models.model_io)")
    parser.add_argument(
        "--batching", default="bucket", choices=["bucket", "pack", "pad"],
        help="our batches (SFTDataModule batching; the bare loop trains the same ones)",
    )  # fmt: skip
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"], help="on all sides")
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"], help="gpu: the first CUDA device")
    parser.add_argument(
        "--attn-implementation", default="sdpa", choices=["sdpa", "eager", "flash_attention_2"],
        help="attention kernel of all sides; flash_attention_2 (GPU, flash-attn installed) with --batching pack "
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
    if args.steps < 1 or args.warmup < 0 or args.rounds < 1:
        parser.error(
            f"--steps {args.steps} --warmup {args.warmup} --rounds {args.rounds}: "
            "need steps >= 1, warmup >= 0 and rounds >= 1"
        )
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
    batches = planned_batches(data, args.warmup + args.steps)
    conversations = [e["input_ids"] for e in plain.train_examples]
    run: dict[str, Callable[[Path], StepClock]] = {
        "ours": lambda where: bench_lightning(model_dir, data, args, where),
        "transformers": lambda where: bench_transformers(model_dir, conversations, args, where),
        "bare": lambda where: bench_bare(model_dir, batches, args),
    }
    clocks: dict[str, list[StepClock]] = {side: [] for side in SIDES}
    for round_ in range(args.rounds):
        for side in SIDES[round_ % 3 :] + SIDES[: round_ % 3]:  # rotate the order: load drifts hit all sides
            clocks[side].append(run[side](out / f"{side}_{round_}"))
    report(args, data, clocks)


def report(args: argparse.Namespace, data: SFTDataModule, clocks: dict[str, list[StepClock]]) -> None:
    rates = {side: [c.rate(args.warmup) for c in clocks[side]] for side in SIDES}
    median = {side: statistics.median(r) for side, r in rates.items()}

    def ratio(a: str, b: str) -> float:  # median of the per-round ratios: the sides of a round ran close in time
        return statistics.median(x / y for x, y in zip(rates[a], rates[b], strict=True))

    names = {  # scripts/gpu_check.sh reads the number before "real tokens/s" here and the word after "ratio:"
        "ours": f"SFTModule + SFTDataModule ({args.batching}):",
        "transformers": "transformers.Trainer (padding collator):",
        "bare": f"bare PyTorch loop ({args.batching}, pre-collated):",
    }
    for side in SIDES:
        print(f"{names[side]:<46} {median[side]:8.0f} real tokens/s")
    print(
        "tokens/s per round (ours, Trainer, bare loop):",
        "; ".join(" ".join(f"{rates[s][r]:.0f}" for s in SIDES) for r in range(args.rounds)),
    )
    pairs = zip(clocks["ours"], clocks["bare"], strict=True)
    drift = max(abs(a - b) for o, bare in pairs for a, b in zip(o.losses, bare.losses, strict=True))
    print(
        f"ratio: {ratio('ours', 'transformers'):.2f}x Trainer; ours / bare loop: {ratio('ours', 'bare'):.2f}; "
        f"bare loop / Trainer: {ratio('bare', 'transformers'):.2f}x (the ceiling of our math against Trainer)"
    )
    transformers = clocks["transformers"][0]
    real, their_real = data.stats["real_token_fraction"], sum(transformers.tokens) / sum(transformers.padded)
    device = torch.cuda.get_device_name() if args.accelerator == "gpu" else f"{args.threads} CPU threads"
    setting = f"{args.preset}, batch {args.batch_size}, {args.rounds} rounds of {args.steps} steps, {args.precision}, "
    setting += args.attn_implementation
    print(f"({setting}, {device}; real-token share: ours {real:.2f}, Trainer {their_real:.2f};")
    print(f"same math: largest |loss of ours - loss of the bare loop| over the steps {drift:.2e})")


if __name__ == "__main__":
    main()
