"""SFT data from a dataset on disk: conversations tokenized once, batched by length, sharded per rank.

`SFTDataModule` reads a dataset (ours, a single JSONL/parquet file, or the official iGSM-reasoning layout)
with `bridge_pl.data.io.iter_dataset`, renders each row as the conversation [system, user, assistant]
through the tokenizer's chat template (paper_spec §C.2) and serves right-padded batches in the contract of
`bridge_pl.data.collate.sft_collate`. Encoding lives in `bridge_pl.data.encoding`, row checks in
`bridge_pl.data.rows`, the batch plan and the resumable loader in `bridge_pl.data.loaders`.
"""

from __future__ import annotations

import random
from typing import Any, Literal

import lightning as L
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from bridge_pl.data.collate import pack_examples, real_token_fraction, sft_collate
from bridge_pl.data.encoding import (
    LossOn,
    Truncation,
    check_length_fits_model,
    encode_conversations,
    fit_to_length,
    load_chat_tokenizer,
)
from bridge_pl.data.io import data_task
from bridge_pl.data.loaders import MEGA_BATCH, BatchPlanSampler, ExampleList, ResumableLoader, data_parallel_replica
from bridge_pl.data.prompts import ChatTemplate
from bridge_pl.data.rows import check_text_columns, read_rows
from bridge_pl.task.base import Task

__all__ = ["SFTDataModule"]

Batching = Literal["bucket", "pack", "pad"]


def _split_validation(rows: list[dict[str, Any]], fraction: float, seed: int) -> tuple[list, list]:
    """(train, validation): a seeded random `fraction` of the rows (at least one) becomes validation data."""
    count = max(1, round(len(rows) * fraction))
    if count >= len(rows):
        raise ValueError(
            f"data.val_fraction={fraction} leaves no training rows out of {len(rows)}; lower it or pass data.val_path"
        )
    chosen = set(random.Random(seed).sample(range(len(rows)), count))
    train = [row for i, row in enumerate(rows) if i not in chosen]
    return train, [row for i, row in enumerate(rows) if i in chosen]


# ------------------------------------------------------------------------------------------------ module
class SFTDataModule(L.LightningDataModule):
    """SFT conversations from a dataset on disk, tokenized once per process and batched by length.

    Each row (columns ``query`` and ``response``) becomes [system, user, assistant] through the tokenizer's
    chat template (paper_spec §C.2). Training batches are right-padded dicts of ``input_ids``,
    ``attention_mask``, ``labels`` (-100 where there is no loss) and ``num_tokens``, plus ``position_ids`` when
    packing. ``stats`` holds the real-token fraction of one training epoch; ``truncation_report`` what the
    over-length policy did.

    Args:
        train_path: Training data: a bridge-pl dataset directory, a .jsonl/.json/.parquet/.arrow file, or an
            official iGSM-reasoning directory.
        tokenizer_path: Local model directory whose tokenizer and chat template to use (the CLI links it to
            the model's ``model_path``).
        val_path: Validation data (same formats); None for none, or see `val_fraction`.
        max_length: Longest conversation in tokens (and longest packed row).
        batch_size: Sequences per batch and per device (packed rows with ``batching: pack``).
        loss_on: "all": loss on every token, system prompt and question included (the paper); "answer": on
            the assistant's answer only.
        batching: "bucket": batches of similar lengths (little padding, shuffled every epoch); "pack": several
            conversations per row, first-fit, no attention or loss across them; "pad": random batches.
        truncation: Conversations longer than max_length: "error" (stop and say how many), "drop" (skip them)
            or "truncate" (cut them); both of the latter warn with the count.
        val_fraction: Share of the training rows held out for validation (seeded) when val_path is None.
        num_workers: DataLoader worker processes.
        seed: Seed of the batch plan (plus the epoch number) and of the validation split.
        limit: Use only the first N rows of each file (quick runs).
        chat_template: "model" (the tokenizer's own) or "llama-minimal" (the paper's template for Llama models).
        trust_remote_code: Allow tokenizer code shipped inside the model directory (the CLI links it to the
            model's ``trust_remote_code``).
        drop_last: Train whole optimizer steps only: each epoch leaves out the batches of its last, incomplete
            gradient accumulation (``trainer.accumulate_grad_batches``), a different share of the shuffled data
            every epoch. The paper does so (15 steps of 128 on 2000 conversations); without it Lightning steps
            on the partial accumulation too, still dividing its loss by the full count.
        task: The data's task (`bridge_pl.task.base.get_task` name); None takes the one the files' own
            dataset_config.json names. Files of another task are refused.

    Example:
        ``bridge fit --config configs/sft/tiny.yaml --data.init_args.batching pack``
    """

    def __init__(
        self,
        train_path: str,
        tokenizer_path: str,
        val_path: str | None = None,
        max_length: int = 1024,
        batch_size: int = 8,
        loss_on: LossOn = "all",
        batching: Batching = "bucket",
        truncation: Truncation = "error",
        val_fraction: float = 0.0,
        num_workers: int = 0,
        seed: int = 0,
        limit: int | None = None,
        chat_template: ChatTemplate = "model",
        trust_remote_code: bool = False,
        drop_last: bool = False,
        task: str | None = None,
    ) -> None:
        super().__init__()
        _validate_args(max_length, batch_size, val_fraction, val_path, num_workers, limit)
        self.save_hyperparameters()
        self.train_path, self.val_path, self.tokenizer_path = train_path, val_path, tokenizer_path
        self.max_length, self.batch_size, self.loss_on = max_length, batch_size, loss_on
        self.batching, self.truncation, self.val_fraction = batching, truncation, val_fraction
        self.num_workers, self.seed, self.limit, self.chat_template = num_workers, seed, limit, chat_template
        self.drop_last, self.trust_remote_code = drop_last, trust_remote_code
        self.task_name = task
        self.task: Task | None = None  # resolved in setup from task and the files
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.pad_id: int | None = None
        self.train_examples: list[dict[str, list[int]]] | None = None  # packed rows with batching="pack"
        self.val_examples: list[dict[str, list[int]]] = []
        self.truncation_report: dict[str, dict[str, Any]] = {}
        self.stats: dict[str, Any] = {}

    def setup(self, stage: str | None = None) -> None:
        """Read, check and tokenize the data (once per process; later calls return at once)."""
        if self.train_examples is not None:
            return
        self.tokenizer, self.pad_id = load_chat_tokenizer(
            self.tokenizer_path, chat_template=self.chat_template, trust_remote_code=self.trust_remote_code
        )
        check_length_fits_model(self.tokenizer_path, "data.max_length", self.max_length)  # before reading any data
        self.task = data_task({"data.train_path": self.train_path, "data.val_path": self.val_path}, self.task_name)
        train_rows = self._rows(self.train_path, "data.train_path")
        val_rows = self._rows(self.val_path, "data.val_path") if self.val_path else []
        if self.val_fraction > 0:
            train_rows, val_rows = _split_validation(train_rows, self.val_fraction, self.seed)
        train = self._encode(train_rows, "data.train_path", "train")
        val_key = "data.val_path" if self.val_path else "data.val_fraction of data.train_path"
        self.val_examples = self._encode(val_rows, val_key, "val") if val_rows else []
        if self.batching == "pack":
            train = pack_examples(sorted(train, key=lambda e: -len(e["input_ids"])), self.max_length)
        self.train_examples = train
        self.stats = self._epoch_stats(train)

    def train_dataloader(self) -> DataLoader:
        """Batches of this rank's share of a seeded, per-epoch plan (see `BatchPlanSampler`); resumable mid-epoch."""
        return ResumableLoader(
            ExampleList(self.train_examples),
            sampler=self._sampler(self.train_examples),
            batch_size=None,  # the sampler yields whole batches
            collate_fn=self._collate,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader | list:
        """Validation batches in file order, plainly right-padded ([] without validation data)."""
        if not self.val_examples:
            return []
        return DataLoader(
            ExampleList(self.val_examples),
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=self._collate,
            num_workers=self.num_workers,
        )

    # ------------------------------------------------------------------------------------------- helpers
    def _collate(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        return sft_collate(examples, self.pad_id)

    def _rows(self, path: str, key: str) -> list[dict[str, Any]]:
        rows, locations = read_rows(path, key, ("query", "response"), self.limit)
        check_text_columns(rows, ("query", "response"), locations, key)
        return rows

    def _encode(self, rows: list[dict[str, Any]], key: str, split: str) -> list[dict[str, list[int]]]:
        """Tokenize rows and apply the over-length policy; `key` names where they came from in its messages."""
        examples = encode_conversations(self.tokenizer, [(r["query"], r["response"]) for r in rows], self.loss_on)
        examples, self.truncation_report[split] = fit_to_length(examples, self.max_length, self.truncation, key)
        return examples

    def _sampler(self, examples: list[dict[str, Any]], *, world: tuple[int, int] | None = None) -> BatchPlanSampler:
        rank, replicas = world or data_parallel_replica(self.trainer)
        return BatchPlanSampler(
            [len(e["input_ids"]) for e in examples],
            self.batch_size,
            mega_batch=1 if self.batching == "pad" else MEGA_BATCH,
            seed=self.seed,
            num_replicas=replicas,
            rank=rank,
            epoch=self.trainer.current_epoch if self.trainer is not None else 0,
            multiple_of=self.trainer.accumulate_grad_batches if self.drop_last and self.trainer is not None else 1,
        )

    def _epoch_stats(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        """Real-token fraction of epoch 0 over all ranks (what the benchmark compares between batchings)."""
        sampler = self._sampler(examples, world=(0, data_parallel_replica(self.trainer)[1]))
        plan = sampler.plan(0)
        conversations = sum(len(e["lengths"]) for e in examples) if self.batching == "pack" else len(examples)
        return {
            "batching": self.batching,
            "batches": len(plan),
            "sequences": len(examples),
            "conversations": conversations,
            **real_token_fraction(plan, sampler.lengths),
        }


def _validate_args(
    max_length: int, batch_size: int, val_fraction: float, val_path: str | None, num_workers: int, limit: int | None
) -> None:
    """Raise one ValueError listing every invalid argument by its YAML key."""
    issues = []
    if max_length < 2:
        issues.append(f"data.max_length={max_length}: need at least 2 tokens")
    if batch_size < 1:
        issues.append(f"data.batch_size={batch_size}: need at least 1")
    if not 0.0 <= val_fraction < 1.0:
        issues.append(f"data.val_fraction={val_fraction}: need a share in [0, 1)")
    if val_fraction > 0 and val_path is not None:
        issues.append(
            "data.val_fraction and data.val_path are both set: hold out a share of train_path or read "
            "val_path, not both"
        )
    if num_workers < 0:
        issues.append(f"data.num_workers={num_workers}: need 0 or more")
    if limit is not None and limit < 1:
        issues.append(f"data.limit={limit}: need at least 1 row, or null for all")
    if issues:
        raise ValueError("invalid SFT data configuration:\n  " + "\n  ".join(issues))
