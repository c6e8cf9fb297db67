"""Sample GRPO completions as TensorBoard text and JSONL, with histograms of rewards, advantages and lengths."""

from __future__ import annotations

import json

import lightning as L
import torch
from typing_extensions import override

from callbacks._common import analysis_dir, check_grpo_module, tensorboard_writers

__all__ = ["CompletionsCallback"]


class CompletionsCallback(L.Callback):
    """Every n rollout steps, show what the policy wrote and how it was scored.

    Logs ``completions/text`` (markdown: the first `num_prompts` prompts' question tail, ground truth and alpha,
    then `num_completions` of their completions with reward, advantage and length), the TensorBoard histograms
    ``rollouts/reward``, ``rollouts/advantage`` and ``rollouts/length`` of the whole batch, and writes every
    rollout of the step to ``<log dir>/completions/step_<n>.jsonl`` (prompt, ground_truth, completion, reward,
    correct, advantage, length, truncated). Entropy and perplexity of the rollouts are the module's
    ``train/entropy`` and ``train/ppl``. It only observes.

    Args:
        every_n_steps: Log after every n-th rollout step (1: every step).
        num_prompts: Prompts shown in the text.
        num_completions: Completions shown per prompt.
        max_chars: Longest completion text shown (the JSONL file keeps them whole).
        write_jsonl: Also write the JSONL file.

    Example::

        trainer:
          callbacks:
            - class_path: callbacks.completions.CompletionsCallback
              init_args: {every_n_steps: 10, num_prompts: 2}
    """

    def __init__(
        self,
        every_n_steps: int = 10,
        num_prompts: int = 2,
        num_completions: int = 4,
        max_chars: int = 3000,
        write_jsonl: bool = True,
    ) -> None:
        issues = [
            f"{name}={value}: must be >= 1"
            for name, value in (
                ("every_n_steps", every_n_steps),
                ("num_prompts", num_prompts),
                ("num_completions", num_completions),
                ("max_chars", max_chars),
            )
            if value < 1
        ]
        if issues:
            raise ValueError("CompletionsCallback: " + "; ".join(issues))
        self.every_n_steps, self.num_prompts, self.num_completions = every_n_steps, num_prompts, num_completions
        self.max_chars, self.write_jsonl = max_chars, write_jsonl

    @override
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        check_grpo_module(self, pl_module)

    @override
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        record = pl_module.last_rollout
        if record is None or record.step % self.every_n_steps:
            return
        step = record.step
        out = analysis_dir(trainer, "completions")
        for writer in tensorboard_writers(trainer):
            writer.add_text("completions/text", self.markdown(record), global_step=step)
            writer.add_histogram("rollouts/reward", record.rewards.flatten(), global_step=step)
            writer.add_histogram("rollouts/advantage", record.advantages.flatten(), global_step=step)
            writer.add_histogram("rollouts/length", record.lengths.flatten().float(), global_step=step)
        if self.write_jsonl and trainer.is_global_zero:
            with (out / f"step_{step}.jsonl").open("w", encoding="utf-8") as handle:
                for row in _rows(record):
                    handle.write(json.dumps(row) + "\n")

    def markdown(self, record) -> str:
        """The text shown in TensorBoard for one rollout step."""
        parts = [f"### rollout step {record.step}"]
        alphas = record.rollout_accuracy
        for i in range(min(self.num_prompts, len(record.prompts))):
            question = record.prompts[i].rsplit("<|im_start|>user", 1)[-1][-400:]
            parts.append(
                f"**prompt {i}** (ground truth `{record.ground_truth[i]}`, α = {float(alphas[i]):.2f}): …{question}"
            )
            for k in range(min(self.num_completions, len(record.completions[i]))):
                text = record.completions[i][k][: self.max_chars]
                head = f"reward {float(record.rewards[i, k]):.2f} · advantage {float(record.advantages[i, k]):+.3f}"
                head += f" · {int(record.lengths[i, k])} tokens" + (" · truncated" if record.truncated[i, k] else "")
                parts.append(f"{head}\n\n```\n{text}\n```")
        return "\n\n".join(parts)


def _rows(record):
    for i, prompt in enumerate(record.prompts):
        for k, completion in enumerate(record.completions[i]):
            yield {
                "step": record.step,
                "prompt": prompt,
                "ground_truth": record.ground_truth[i],
                "num_ops": record.num_ops[i],
                "completion": completion,
                "reward": float(record.rewards[i, k]),
                "correct": bool(record.correct[i, k]),
                "advantage": float(record.advantages[i, k]),
                "length": int(record.lengths[i, k]),
                "truncated": bool(torch.as_tensor(record.truncated[i, k])),
            }
