"""GRPO step time: GRPOModule (Lightning, HF engine) against TRL's GRPOTrainer, same model, prompts, N and lengths.

Both run the same from-scratch tiny model on the same prompts (rl_train: the paper's; chat template + "<think>"),
P prompts x N rollouts per step sampled with transformers ``generate`` at temperature 1 up to L new tokens, the
same reward (strict match), KL coefficient, learning rate, loss (grpo aggregation, group-std advantages) and one
optimizer step per batch; fp32 on the CPU with the same thread count (or one CUDA GPU, fp32 or bf16 autocast). The
figure is the median wall time of a step after warm-up (generation + scoring + update), and the ratio TRL / ours.
TRL's side needs ``pip install "bridge-pl[bench]"``; without TRL (or with --skip-trl) ours is measured alone, no ratio.

    python scripts/bench_grpo.py                       # rl_train prompts, P 4, N 16, L 128, 4 measured steps
    python scripts/bench_grpo.py --split tiny_rl_train --prompts 8 --generations 8
    python scripts/bench_grpo.py --accelerator gpu --precision bf16-mixed --skip-trl
    python scripts/bench_grpo.py --model runs/sft_tiny/hf_model --split tiny_rl_train --prompts 8 --generations 8 \
        --max-new-tokens 320                            # a trained model: both sides stop at "</answer>"

A from-scratch model (``--preset``) never stops, so every completion runs to L on both sides; a trained model
(``--model``) stops at "</answer>" (ours: the stop string; TRL: the same token as an extra eos id of the model's
generation config, which TRL both stops at and masks after), at its own lengths.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from bridge_pl.data.datamodules import PromptPoolDataModule
from bridge_pl.data.io import read_dataset
from bridge_pl.data.pipeline import generate_dataset, generation_plan
from bridge_pl.data.prompts import format_prompt
from bridge_pl.models.model_io import init_model_dir, load_model, load_tokenizer
from bridge_pl.modules import GRPOLossConfig, GRPOModule, OptimizerConfig, RolloutConfig, UpdateConfig
from bridge_pl.rollout import HFEngine, SamplingConfig
from bridge_pl.task.verify import batch_rewards


class StepTimes(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if torch.cuda.is_initialized():  # the update's kernels run asynchronously: stop the clock once they finished
            torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self.start)


def bench_ours(model_dir: Path, prompts: Path, args: argparse.Namespace) -> tuple[float, float]:
    module = GRPOModule(
        str(model_dir),
        engine=HFEngine(batch_size=args.prompts * args.generations),
        rollout=RolloutConfig(
            num_generations=args.generations,
            sampling=SamplingConfig(max_new_tokens=args.max_new_tokens, stop=("</answer>",) if args.model else ()),
        ),
        loss=GRPOLossConfig(kl_coef=args.beta),
        update=UpdateConfig(micro_batch_size=args.prompts * args.generations),
        optimizer=OptimizerConfig(lr=1e-6, betas=(0.9, 0.999)),
        hf_output_dir=str(prompts.parent / "ours"),  # the temporary folder, never beside a --model
    )
    clock = StepTimes()
    trainer = L.Trainer(
        accelerator=args.accelerator, devices=1, precision=args.precision, max_steps=args.warmup + args.steps,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        limit_val_batches=0, callbacks=[clock],
    )  # fmt: skip
    data = PromptPoolDataModule(str(model_dir), train_path=str(prompts), batch_size=args.prompts, shuffle=False)
    trainer.fit(module, datamodule=data)
    metrics = trainer.callback_metrics
    print(
        f"ours: rollout {float(metrics['timing/rollout_s']):.2f} s, update {float(metrics['timing/update_s']):.2f} s "
        "(last step)"
    )
    return statistics.median(clock.times[args.warmup :]), float(metrics["train/completions/mean_length"])


def bench_trl(model_dir: Path, prompts: Path, args: argparse.Namespace, out: Path) -> tuple[float, float]:
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    tokenizer = load_tokenizer(model_dir)
    rows = read_dataset(prompts, required=("query", "final_answer"))
    dataset = Dataset.from_list(
        [{"prompt": format_prompt(tokenizer, r["query"]), "answer": str(r["final_answer"])} for r in rows]
    )

    def strict_match(completions, answer, **kwargs):
        return batch_rewards(completions, answer)

    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *a, **k):
            self.start = time.perf_counter()

        def on_step_end(self, *a, **k):
            times.append(time.perf_counter() - self.start)

    config = GRPOConfig(
        output_dir=str(out / "trl"), per_device_train_batch_size=args.prompts * args.generations,
        num_generations=args.generations, max_completion_length=args.max_new_tokens, temperature=1.0,
        beta=args.beta, loss_type="grpo", scale_rewards="group", learning_rate=1e-6, adam_beta2=0.999,
        weight_decay=0.01, max_grad_norm=1.0, lr_scheduler_type="constant", max_steps=args.warmup + args.steps,
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=args.accelerator == "cpu",
        bf16=args.precision == "bf16-mixed", seed=0, shuffle_dataset=False, disable_tqdm=True,
    )  # fmt: skip
    model = load_model(model_dir)
    if args.model:  # TRL stops at, and masks after, the generation config's eos ids: "</answer>" is one of them
        model.generation_config.eos_token_id = _stop_ids(tokenizer)
    trainer = GRPOTrainer(
        model=model, reward_funcs=[strict_match], args=config, train_dataset=dataset,
        processing_class=tokenizer, callbacks=[Clock()],
    )  # fmt: skip
    trainer.remove_callback(PrinterCallback)  # its per-step dicts would drown the figures
    trainer.train()
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    return statistics.median(times[args.warmup :]), statistics.mean(lengths)


def _stop_ids(tokenizer) -> list[int]:
    """The eos and the "</answer>" token (a one-token stop string in the project tokenizer)."""
    answer_end = tokenizer("</answer>", add_special_tokens=False)["input_ids"]
    if len(answer_end) != 1:
        raise SystemExit(f"--model: '</answer>' is {len(answer_end)} tokens in this tokenizer; TRL stops on one token")
    return sorted({tokenizer.eos_token_id, *answer_end})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's arguments; a missing device is refused here, and a missing TRL turns its side off."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=4, help="prompts per step (P)")
    parser.add_argument("--generations", type=int, default=16, help="rollouts per prompt (N)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--beta", type=float, default=0.001, help="KL coefficient (both load a reference model)")
    parser.add_argument("--steps", type=int, default=4, help="measured steps, after --warmup")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--preset", default="llama-3m", help="a from-scratch model (completions run to L)")
    parser.add_argument("--model", help="a trained model directory instead of --preset (completions stop)")
    parser.add_argument("--split", default="rl_train", help="prompt split (rl_train: the paper's, ~400-token prompts)")
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"], help="gpu: the first CUDA device")
    parser.add_argument("--precision", default="32-true", choices=["32-true", "bf16-mixed"])
    parser.add_argument("--skip-trl", action="store_true", help="measure ours alone (no TRL run, no ratio)")
    args = parser.parse_args(argv)
    if args.accelerator == "gpu" and not torch.cuda.is_available():
        parser.error("--accelerator gpu: torch sees no CUDA device here (torch.cuda.is_available() is False)")
    if args.steps < 1 or args.warmup < 0:
        parser.error(f"--steps {args.steps} --warmup {args.warmup}: need steps >= 1 and warmup >= 0")
    if not args.skip_trl and importlib.util.find_spec("trl") is None:
        print('TRL is not installed (pip install "bridge-pl[bench]"): measuring ours alone, no ratio')
        args.skip_trl = True
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(tempfile.mkdtemp(prefix="bench_grpo_"))
    model_dir = Path(args.model) if args.model else init_model_dir(out / "model", preset=args.preset)
    generate_dataset(out / "p", generation_plan(split=args.split, size=args.prompts * (args.warmup + args.steps)))
    ours, our_len = bench_ours(model_dir, out / "p", args)
    print(f"GRPOModule (Lightning, HFEngine): {ours:7.2f} s/step  (mean completion {our_len:.0f} tokens)")
    shape = f"P {args.prompts} x N {args.generations}, {args.max_new_tokens} new tokens, beta {args.beta}"
    device = torch.cuda.get_device_name() if args.accelerator == "gpu" else f"{args.threads} CPU threads"
    precision = "fp32" if args.precision == "32-true" else "bf16 autocast"
    setting = f"{args.model or args.preset}, {args.split} prompts, {shape}, {precision}, {device}"
    if args.skip_trl:
        print(f"TRL GRPOTrainer: not run, no ratio ({setting})")
        return
    theirs, their_len = bench_trl(model_dir, out / "p", args, out)
    print(f"TRL GRPOTrainer:                  {theirs:7.2f} s/step  (mean completion {their_len:.0f} tokens)")
    print(f"ratio: {theirs / ours:.2f}x faster ({setting})")


if __name__ == "__main__":
    main()
