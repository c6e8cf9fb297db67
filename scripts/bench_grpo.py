"""GRPO step time: GRPOModule (Lightning, HF engine) against TRL's GRPOTrainer, same model, prompts, N and lengths.

Both run the same from-scratch tiny model on the same prompts (rl_train: the paper's; chat template + "<think>"),
P prompts x N rollouts per step sampled with transformers ``generate`` at temperature 1 up to L new tokens, the
same reward (strict match), KL coefficient, learning rate, loss (grpo aggregation, group-std advantages) and one
optimizer step per batch; fp32 on the CPU with the same thread count. The figure is the median wall time of a step after
warm-up (generation + scoring + update), and the ratio TRL / ours. Needs ``pip install trl``.

    python scripts/bench_grpo.py                       # rl_train prompts, P 4, N 16, L 128, 4 measured steps
    python scripts/bench_grpo.py --split tiny_rl_train --prompts 8 --generations 8
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from bridge_pl.cli import main as bridge
from bridge_pl.data.datamodules import PromptPoolDataModule
from bridge_pl.data.io import read_dataset
from bridge_pl.models.model_io import init_model_dir, load_model, load_tokenizer
from bridge_pl.models.tokenizer import format_prompt
from bridge_pl.modules import GRPOLossConfig, GRPOModule, OptimizerConfig, RolloutConfig, UpdateConfig
from bridge_pl.rollout import HFEngine
from bridge_pl.task.verify import batch_rewards


class StepTimes(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.times.append(time.perf_counter() - self.start)


def bench_ours(model_dir: Path, prompts: Path, args: argparse.Namespace) -> tuple[float, float]:
    module = GRPOModule(
        str(model_dir),
        engine=HFEngine(batch_size=args.prompts * args.generations),
        rollout=RolloutConfig(num_generations=args.generations, max_new_tokens=args.max_new_tokens, stop=()),
        loss=GRPOLossConfig(kl_coef=args.beta),
        update=UpdateConfig(micro_batch_size=args.prompts * args.generations),
        optimizer=OptimizerConfig(lr=1e-6, betas=(0.9, 0.999)),
        hf_output_dir=str(model_dir.parent / "ours"),
    )
    clock = StepTimes()
    trainer = L.Trainer(
        accelerator="cpu", max_steps=args.warmup + args.steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, callbacks=[clock],
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
        logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, bf16=False, seed=0, shuffle_dataset=False,
        disable_tqdm=True,
    )  # fmt: skip
    trainer = GRPOTrainer(
        model=load_model(model_dir), reward_funcs=[strict_match], args=config, train_dataset=dataset,
        processing_class=tokenizer, callbacks=[Clock()],
    )  # fmt: skip
    trainer.remove_callback(PrinterCallback)  # its per-step dicts would drown the figures
    trainer.train()
    lengths = [h["completions/mean_length"] for h in trainer.state.log_history if "completions/mean_length" in h]
    return statistics.median(times[args.warmup :]), statistics.mean(lengths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=4, help="prompts per step (P)")
    parser.add_argument("--generations", type=int, default=16, help="rollouts per prompt (N)")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--beta", type=float, default=0.001, help="KL coefficient (both load a reference model)")
    parser.add_argument("--steps", type=int, default=4, help="measured steps, after --warmup")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--preset", default="llama-3m")
    parser.add_argument("--split", default="rl_train", help="prompt split (rl_train: the paper's, ~400-token prompts)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(tempfile.mkdtemp(prefix="bench_grpo_"))
    model_dir = init_model_dir(out / "model", preset=args.preset)
    size = str(args.prompts * (args.warmup + args.steps))
    assert bridge(["data", "generate", "--split", args.split, "--size", size, "--out", f"{out}/p", "--quiet"]) == 0
    ours, our_len = bench_ours(model_dir, out / "p", args)
    theirs, their_len = bench_trl(model_dir, out / "p", args, out)
    print(f"GRPOModule (Lightning, HFEngine): {ours:7.2f} s/step  (mean completion {our_len:.0f} tokens)")
    print(f"TRL GRPOTrainer:                  {theirs:7.2f} s/step  (mean completion {their_len:.0f} tokens)")
    shape = f"P {args.prompts} x N {args.generations}, {args.max_new_tokens} new tokens, beta {args.beta}"
    setting = f"{args.preset}, {args.split} prompts, {shape}, fp32, {args.threads} threads"
    print(f"ratio: {theirs / ours:.2f}x faster ({setting})")


if __name__ == "__main__":
    main()
