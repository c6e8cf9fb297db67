"""Greedy strict-match accuracy of the model being trained, on held-out iGSM prompts (paper_spec §D.4)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from bridge_pl.data.io import read_dataset
from bridge_pl.models.tokenizer import format_prompt
from bridge_pl.task.verify import extract_answer, strict_match_reward

__all__ = ["GreedyEvalCallback"]

STOP = "</answer>"  # generation ends here (kept) or at the tokenizer's eos, as in the paper's evaluation
RESULTS_FILE = "greedy_eval.json"
EXAMPLES_KEPT = 8  # completions written in full to the JSON file (the rest: extracted answers only)


class GreedyEvalCallback(L.Callback):
    """Greedy-decode held-out prompts with the model being trained and score them by strict match.

    Each prompt is the chat template of the question followed by "<think>" (`format_prompt`); decoding is
    greedy and stops at "</answer>" or the eos token; the reward is the paper's strict match of the first
    ``\\boxed{}`` (format bonus 0). Logs ``eval/greedy_accuracy`` and ``eval/greedy_accuracy_op_<n>`` (one per
    operation count), prints ``greedy accuracy on <path>: X.X% (n/N)`` after fit, and writes
    ``<log dir>/greedy_eval.json``. Under DDP each rank decodes a share of the prompts. It only observes:
    the model is put back in train mode and the random state is restored, so training is the same without it.

    Args:
        prompts_path: Dataset with ``query`` and ``final_answer`` columns (a dataset directory or a
            .jsonl/.parquet file), e.g. ``bridge data generate --split test_id --out data/test_id``.
        max_new_tokens: Longest completion (the paper: 2560; a BRIDGE answer at op 20 is ~600-900 tokens).
        batch_size: Prompts decoded together (per rank).
        limit: Score only the first `limit` prompts (None: all of them).
        every_n_epochs: Also evaluate after every n-th training epoch (0: never).
        on_fit_end: Evaluate once training is over.

    Raises:
        FileNotFoundError: `prompts_path` does not exist.
        ValueError: A count is out of range.

    Example::

        trainer:
          callbacks:
            - class_path: callbacks.greedy_eval.GreedyEvalCallback
              init_args: {prompts_path: data/test_id, max_new_tokens: 1024, limit: 100}
    """

    def __init__(
        self,
        prompts_path: str,
        max_new_tokens: int = 1024,
        batch_size: int = 32,
        limit: int | None = None,
        every_n_epochs: int = 0,
        on_fit_end: bool = True,
    ) -> None:
        _validate(prompts_path, max_new_tokens, batch_size, limit, every_n_epochs)
        self.prompts_path = prompts_path
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.limit = limit
        self.every_n_epochs = every_n_epochs
        self.at_fit_end = on_fit_end  # not `self.on_fit_end`: that name is the hook below
        self.results: dict[str, Any] | None = None  # the last evaluation (what greedy_eval.json holds)

    @override
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.evaluate(trainer, pl_module)

    @override
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.at_fit_end:
            return
        results = self.evaluate(trainer, pl_module)
        if results is not None and trainer.is_global_zero:
            print(
                f"greedy accuracy on {self.prompts_path}: {100 * results['accuracy']:.1f}% "
                f"({results['correct']}/{results['total']})"
            )

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any] | None:
        """Decode, score, log and write the results; returns them (None when the strategy shards the model)."""
        if isinstance(trainer.strategy, FSDPStrategy | ModelParallelStrategy):
            rank_zero_warn(
                "GreedyEvalCallback skipped: under FSDP the ranks would have to decode in lockstep; evaluate the "
                "saved Hugging Face model instead"
            )
            return None
        rows = read_dataset(self.prompts_path, required=("query", "final_answer"))[: self.limit]
        mine = rows[trainer.global_rank :: trainer.world_size]
        with torch.random.fork_rng(devices=[]):  # greedy draws nothing, but stay certain training is unchanged
            scored = self._score(pl_module, mine)
        scored = _gather(trainer, scored)
        self.results = _summary(self.prompts_path, scored, trainer.global_step)
        self._log(trainer)
        return self.results

    def _score(self, pl_module: L.LightningModule, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        model, tokenizer = pl_module.model, pl_module.tokenizer
        was_training = model.training
        model.eval()
        try:
            completions = []
            for start in range(0, len(rows), self.batch_size):
                batch = rows[start : start + self.batch_size]
                completions += _greedy(model, tokenizer, [r["query"] for r in batch], self.max_new_tokens)
        finally:
            model.train(was_training)
        return [_score_row(row, completion) for row, completion in zip(rows, completions, strict=True)]

    def _log(self, trainer: L.Trainer) -> None:
        results = self.results
        metrics = {"eval/greedy_accuracy": results["accuracy"]}
        metrics |= {f"eval/greedy_accuracy_op_{op}": v["accuracy"] for op, v in results["per_op"].items()}
        out = Path(trainer.log_dir or trainer.default_root_dir) / RESULTS_FILE  # log_dir is collective: all ranks ask
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        rank_zero_info(f"greedy evaluation written to {out}")


@torch.no_grad()
def _greedy(model: torch.nn.Module, tokenizer: Any, questions: list[str], max_new_tokens: int) -> list[str]:
    """Greedy completions (text after the prompt, cut after the first "</answer>") of a batch of questions."""
    prompts = [format_prompt(tokenizer, q) for q in questions]
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # a batch of prompts must end where generation starts
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    device = next(model.parameters()).device
    out = model.generate(
        input_ids=enc["input_ids"].to(device),
        attention_mask=enc["attention_mask"].to(device),
        do_sample=False,
        max_new_tokens=max_new_tokens,
        stop_strings=[STOP],
        tokenizer=tokenizer,
        pad_token_id=tokenizer.pad_token_id,
    )
    texts = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    return [t[: t.index(STOP) + len(STOP)] if STOP in t else t for t in texts]


def _score_row(row: dict[str, Any], completion: str) -> dict[str, Any]:
    return {
        "num_ops": row.get("num_ops"),
        "ground_truth": str(row["final_answer"]),
        "predicted": extract_answer(completion),
        "correct": strict_match_reward(completion, row["final_answer"]) == 1.0,
        "completion": completion,
    }


def _gather(trainer: L.Trainer, scored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every rank's scored rows, on every rank (a no-op on one device)."""
    if trainer.world_size == 1:
        return scored
    parts: list[Any] = [None] * trainer.world_size
    torch.distributed.all_gather_object(parts, scored)
    return [row for part in parts for row in part]


def _summary(path: str, scored: list[dict[str, Any]], step: int) -> dict[str, Any]:
    by_op: dict[Any, list[bool]] = defaultdict(list)
    for row in scored:
        by_op[row["num_ops"]].append(row["correct"])
    correct = sum(r["correct"] for r in scored)
    return {
        "prompts_path": str(path),
        "step": step,
        "accuracy": correct / max(len(scored), 1),
        "correct": correct,
        "total": len(scored),
        "per_op": {
            op: {"accuracy": sum(v) / len(v), "correct": sum(v), "total": len(v)}
            for op, v in sorted(by_op.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
        },
        "rows": [{k: v for k, v in r.items() if k != "completion"} for r in scored],
        "examples": [r["completion"] for r in scored[:EXAMPLES_KEPT]],
    }


def _validate(prompts_path: str, max_new_tokens: int, batch_size: int, limit: int | None, every_n_epochs: int) -> None:
    if not Path(prompts_path).exists():
        raise FileNotFoundError(
            f"GreedyEvalCallback prompts_path={prompts_path!r} does not exist: write the prompts first, e.g. "
            f"`bridge data generate --split test_id --out {prompts_path}`"
        )
    issues = [
        f"{name}={value}: must be >= {low}"
        for name, value, low in (
            ("max_new_tokens", max_new_tokens, 1),
            ("batch_size", batch_size, 1),
            ("limit", 1 if limit is None else limit, 1),
            ("every_n_epochs", every_n_epochs, 0),
        )
        if value < low
    ]
    if issues:
        raise ValueError("GreedyEvalCallback: " + "; ".join(issues))
