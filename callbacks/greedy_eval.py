"""Greedy strict-match accuracy of the model being trained, on held-out iGSM prompts (paper_spec §D.4)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy, ModelParallelStrategy
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from bridge_pl.data.prompt_sets import PromptSet, load_prompt_set
from bridge_pl.evaluation import evaluate_prompts, split_metrics, summarize
from bridge_pl.rollout.base import SamplingConfig
from bridge_pl.rollout.hf import HFEngine

__all__ = ["GreedyEvalCallback"]

RESULTS_FILE = "greedy_eval.json"


class GreedyEvalCallback(L.Callback):
    """Greedy-decode held-out prompts with the model being trained and score them by strict match.

    Each prompt is the chat template of the question followed by "<think>" (`format_prompt`); decoding is
    greedy and stops at "</answer>" or the eos token; the reward is the paper's strict match of the first
    ``\\boxed{}`` (format bonus 0). The prompts go through an `HFEngine` bound to the model being trained and are
    scored by `bridge_pl.evaluation.evaluate_prompts`, the evaluator of ``bridge eval`` and GRPO validation. Logs
    ``eval/accuracy``, ``eval/accuracy_op_<n>`` (one per operation count) and ``eval/completion_length``, prints
    ``greedy accuracy on <path>: X.X% (n/N)`` after fit, and writes ``<log dir>/greedy_eval.json`` (the split
    report of ``bridge eval``'s eval.json, plus ``step`` and ``correct``). Under DDP each rank decodes an equal share.
    It only observes: the engine puts the model back in train mode and restores the random state, so training is
    the same without it.

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
        self._metrics: dict[str, float] = {}
        self._prompts: PromptSet | None = None  # read once, at the first evaluation

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
                f"({results['correct']}/{results['problems']})"
            )

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any] | None:
        """Decode, score, log and write the results; returns them (None when the strategy shards the model)."""
        if isinstance(trainer.strategy, FSDPStrategy | ModelParallelStrategy):
            rank_zero_warn(
                "GreedyEvalCallback skipped: under FSDP the ranks would have to decode in lockstep; evaluate the "
                "saved Hugging Face model instead"
            )
            return None
        if self._prompts is None:
            self._prompts = load_prompt_set(self.prompts_path, pl_module.tokenizer, self.limit)
        engine = HFEngine(batch_size=self.batch_size)
        engine.bind(pl_module.model, pl_module.tokenizer, str(getattr(pl_module, "model_path", "")))
        greedy = SamplingConfig(temperature=0.0, max_new_tokens=self.max_new_tokens)
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]):  # greedy draws nothing, but stay certain training is unchanged
            rows = evaluate_prompts(engine, _shard(self._prompts, trainer), greedy, batch_size=self.batch_size)
        rows = list({row["index"]: row for row in _gather(trainer, rows)}.values())  # padded shares repeat a few
        rows.sort(key=lambda row: row["index"])
        seconds = time.perf_counter() - start
        self.results = {"step": trainer.global_step, **summarize(self.prompts_path, rows, seconds=seconds)}
        self.results["correct"] = sum(row["correct"] for row in rows)
        self._metrics = split_metrics(rows, "eval")
        self._log(trainer)
        return self.results

    def _log(self, trainer: L.Trainer) -> None:
        results, metrics = self.results, self._metrics
        out = Path(trainer.log_dir or trainer.default_root_dir) / RESULTS_FILE  # log_dir is collective: all ranks ask
        if not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        rank_zero_info(f"greedy evaluation written to {out}")


def _shard(prompts: PromptSet, trainer: L.Trainer) -> PromptSet:
    """This rank's share of the prompts: every world_size-th one, padded so that every rank gets as many.

    Equal shares make equal generate calls: the HF engine decodes in lockstep over a process group (synced_gpus,
    the shared prefill), so a rank with one batch fewer would leave the others waiting. The padding wraps around to
    the first prompts (as DistributedSampler does); the gathered rows are deduplicated by index.
    """
    rank, world = trainer.global_rank, trainer.world_size
    share = -(-len(prompts) // world)
    picked = [(rank + world * k) % len(prompts) for k in range(share)]
    pick = lambda values: [values[i] for i in picked]  # noqa: E731
    fields = (prompts.prompt_ids, prompts.ground_truth, prompts.num_ops, prompts.index)
    return PromptSet(prompts.path, *(pick(values) for values in fields))


def _gather(trainer: L.Trainer, scored: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every rank's scored rows, on every rank (a no-op on one device)."""
    if trainer.world_size == 1:
        return scored
    parts: list[Any] = [None] * trainer.world_size
    torch.distributed.all_gather_object(parts, scored)
    return [row for part in parts for row in part]


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
