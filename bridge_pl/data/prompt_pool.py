"""RL and evaluation prompts with their ground truth (paper_spec §C.2, §D.3, §D.4).

`PromptPoolDataModule` reads prompt sets (columns ``query`` and ``final_answer``; ours, single files, or the
official iGSM-reasoning layout), renders each question as the RL prompt (chat template [system, user] with
the generation prompt ending in "<think>"; `format_prompt`), tokenizes it without special tokens and serves
left-padded batches::

    input_ids       (B, T) long, LEFT-padded: every prompt ends in the last column
    attention_mask  (B, T) long, 1 on prompt tokens, 0 on padding
    prompts         list[str], the rendered prompt texts (ending with "<think>")
    ground_truth    list[str], str(final_answer): what the reward compares the first \\boxed{} with
    num_ops         list[int], the problems' operation counts (-1 where the data has none)
    index           list[int], the rows' 0-based positions in their file (after `limit_*`)
"""

from __future__ import annotations

import random
from collections.abc import Collection
from typing import Any, Literal

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, DistributedSampler
from transformers import PreTrainedTokenizerBase

from bridge_pl.data.encoding import check_length_fits_model, encode_prompts, load_chat_tokenizer, pad_left
from bridge_pl.data.io import data_task
from bridge_pl.data.loaders import EpochSampler, ExampleList, ResumableLoader, data_parallel_replica
from bridge_pl.data.prompts import ChatTemplate
from bridge_pl.data.rows import check_final_answers, check_text_columns, read_rows
from bridge_pl.task.base import Task

__all__ = ["PromptPoolDataModule", "prompt_collate"]

Overlong = Literal["warn", "drop", "error"]
SPLITS = ("train", "val", "test")


def prompt_collate(examples: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Left-pad prompt examples into a batch (the contract in the module docstring)."""
    ids = [e["input_ids"] for e in examples]
    return {
        "input_ids": pad_left(ids, pad_id),  # (B, T)
        "attention_mask": pad_left([[1] * len(s) for s in ids], 0),  # (B, T)
        "prompts": [e["prompt"] for e in examples],
        "ground_truth": [e["ground_truth"] for e in examples],
        "num_ops": [e["num_ops"] for e in examples],
        "index": [e["index"] for e in examples],
    }


class PromptPoolDataModule(L.LightningDataModule):
    """Prompts and ground truth for GRPO rollouts, validation and tests, left-padded for generation.

    Each row's question becomes the RL prompt of paper_spec §C.2 (chat template + "<think>"). Batches hold
    ``input_ids``/``attention_mask`` (left padding) and the lists ``prompts``, ``ground_truth``,
    ``num_ops`` and ``index``. Training prompts are reshuffled every epoch from `seed`; validation and test
    prompts keep their file order.

    Args:
        tokenizer_path: Local model directory whose tokenizer and chat template to use (the CLI links it to
            the model's ``model_path``).
        train_path: Training prompts (e.g. RL_train, op 15-20): a dataset directory, a .jsonl/.json/.parquet/
            .arrow file, or an official iGSM-reasoning directory; needs columns query and final_answer.
        val_path: Validation prompts (e.g. RL_val, op 21-25), same formats.
        test_path: Test prompts (e.g. test_id / test_ood), same formats.
        max_prompt_length: Longest prompt in tokens; longer ones follow `overlong`.
        batch_size: Prompts per step and per device (the paper: 32 in all).
        shuffle: Reshuffle the training prompts every epoch.
        seed: Seed of the shuffle (the paper: 1), plus the epoch number.
        overlong: Prompts longer than max_prompt_length: "warn" (keep them and warn with the count, as the
            paper), "drop" (skip them, with a warning) or "error".
        limit_train: Use only the first N training prompts.
        limit_val: Use only the first N validation prompts.
        limit_test: Use only the first N test prompts.
        num_workers: DataLoader worker processes.
        chat_template: "model" (the tokenizer's own) or "llama-minimal" (the paper's template for Llama models).
        trust_remote_code: Allow tokenizer code shipped inside the model directory (the CLI links it to the
            model's ``trust_remote_code``).
        task: The prompts' task (`bridge_pl.task.base.get_task` name); None takes the one the files' own
            dataset_config.json names (iGSM without one). Files of another task are refused. The GRPO module
            judges completions with it (``self.task``).
    """

    def __init__(
        self,
        tokenizer_path: str,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        max_prompt_length: int = 512,
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int = 1,
        overlong: Overlong = "warn",
        limit_train: int | None = None,
        limit_val: int | None = None,
        limit_test: int | None = None,
        num_workers: int = 0,
        chat_template: ChatTemplate = "model",
        trust_remote_code: bool = False,
        task: str | None = None,
    ) -> None:
        super().__init__()
        _validate_args(
            train_path,
            val_path,
            test_path,
            max_prompt_length,
            batch_size,
            num_workers,
            {"limit_train": limit_train, "limit_val": limit_val, "limit_test": limit_test},
        )
        self.save_hyperparameters()
        self.tokenizer_path, self.trust_remote_code = tokenizer_path, trust_remote_code
        self.paths = {"train": train_path, "val": val_path, "test": test_path}
        self.limits = {"train": limit_train, "val": limit_val, "test": limit_test}
        self.max_prompt_length, self.batch_size, self.shuffle, self.seed = max_prompt_length, batch_size, shuffle, seed
        self.overlong, self.num_workers, self.chat_template = overlong, num_workers, chat_template
        self.task_name = task
        self.task: Task | None = None  # resolved in setup from task and the files
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.pad_id: int | None = None
        self.examples: dict[str, list[dict[str, Any]]] = {}
        self.overlong_report: dict[str, dict[str, Any]] = {}

    def setup(self, stage: str | None = None) -> None:
        """Read and tokenize the prompt sets the stage needs (each once per process).

        Raises:
            ValueError: The stage needs a path that is not set ("fit" needs train_path), or max_prompt_length
                exceeds the model's max_position_embeddings.
            DatasetError: A file is missing, empty, lacks query/final_answer, or has bad values.
        """
        if self.tokenizer is None:
            self.tokenizer, self.pad_id = load_chat_tokenizer(
                self.tokenizer_path, chat_template=self.chat_template, trust_remote_code=self.trust_remote_code
            )
            check_length_fits_model(
                self.tokenizer_path, "data.max_prompt_length", self.max_prompt_length,
                " (less the rollout's max_new_tokens: prompt and completion share the positions)",
            )  # fmt: skip
        splits = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("test",)}
        required = {"fit": "train", "validate": "val", "test": "test", "predict": "test"}.get(stage)
        if required is not None and self.paths[required] is None:
            raise ValueError(f"data.{required}_path is not set, but `{stage}` needs {required} prompts")
        if self.task is None:
            self.task = data_task({f"data.{split}_path": path for split, path in self.paths.items()}, self.task_name)
        for split in splits.get(stage, SPLITS):
            if self.paths[split] is not None and split not in self.examples:
                self.examples[split] = self._load(split)

    def train_dataloader(self) -> DataLoader:
        """Training prompts: this rank's share, reshuffled every epoch from `seed`; resumable mid-epoch."""
        rank, world = data_parallel_replica(self.trainer)
        examples = self.examples["train"]
        sampler = EpochSampler(examples, num_replicas=world, rank=rank, shuffle=self.shuffle, seed=self.seed)
        sampler.set_epoch(self.trainer.current_epoch if self.trainer is not None else 0)
        return ResumableLoader(
            ExampleList(examples),
            batch_size=self.batch_size,
            sampler=sampler,
            collate_fn=self._collate,
            num_workers=self.num_workers,
        )

    def draw_prompts(self, count: int, seed: int, exclude: Collection[int] = ()) -> dict[str, Any] | None:
        """A batch of up to `count` training prompts drawn at random from `seed`, none with an ``index`` in `exclude`.

        GRPO's dynamic sampling refills a step's rollouts with these (`bridge_pl.modules.grpo`); the draw is
        independent of the epoch's order, so a run that refills sees the same training batches as one that does
        not. Returns None when every prompt is excluded.
        """
        excluded = set(exclude)
        pool = [e for e in self.examples["train"] if e["index"] not in excluded]
        if not pool:
            return None
        return self._collate(random.Random(seed).sample(pool, min(count, len(pool))))

    def val_dataloader(self) -> DataLoader | list:
        """Validation prompts in file order ([] without val_path)."""
        return self._loader(self.examples["val"]) if "val" in self.examples else []

    def test_dataloader(self) -> DataLoader:
        """Test prompts in file order."""
        return self._loader(self.examples["test"])

    def predict_dataloader(self) -> DataLoader:
        """The test prompts, for ``bridge predict``."""
        return self.test_dataloader()

    # ------------------------------------------------------------------------------------------- helpers
    def _loader(self, examples: list[dict[str, Any]], sampler: DistributedSampler | None = None) -> DataLoader:
        return DataLoader(
            ExampleList(examples),
            batch_size=self.batch_size,
            sampler=sampler,  # None: file order
            collate_fn=self._collate,
            num_workers=self.num_workers,
        )

    def _collate(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        return prompt_collate(examples, self.pad_id)

    def _load(self, split: str) -> list[dict[str, Any]]:
        path, key = self.paths[split], f"data.{split}_path"
        rows, locations = read_rows(path, key, ("query", "final_answer"), self.limits[split])
        check_text_columns(rows, ("query",), locations, key)
        check_final_answers(rows, locations, key, self.task)
        return self._fit(encode_prompts(self.tokenizer, rows), split, key)

    def _fit(self, examples: list[dict[str, Any]], split: str, key: str) -> list[dict[str, Any]]:
        """Apply the over-length policy to prompts and record what it did in `overlong_report`."""
        lengths = [len(e["input_ids"]) for e in examples]
        over = [n for n in lengths if n > self.max_prompt_length]
        self.overlong_report[split] = {
            "prompts": len(examples),
            "over_length": len(over),
            "longest": max(lengths),
            "dropped": len(over) if self.overlong == "drop" else 0,
        }
        if not over:
            return examples
        what = (
            f"{key}: {len(over)} of {len(examples)} prompts are longer than data.max_prompt_length="
            f"{self.max_prompt_length} tokens (longest: {max(over)})"
        )
        if self.overlong == "error":
            raise ValueError(f"{what}; raise data.max_prompt_length or set data.overlong to warn or drop")
        rank_zero_warn(f"{what}; data.overlong={self.overlong}: " + ("kept" if self.overlong == "warn" else "dropped"))
        if self.overlong == "drop":
            examples = [e for e in examples if len(e["input_ids"]) <= self.max_prompt_length]
        return examples


def _validate_args(
    train_path: str | None,
    val_path: str | None,
    test_path: str | None,
    max_prompt_length: int,
    batch_size: int,
    num_workers: int,
    limits: dict[str, int | None],
) -> None:
    """Raise one ValueError listing every invalid argument by its YAML key."""
    issues = []
    if train_path is None and val_path is None and test_path is None:
        issues.append("data.train_path, data.val_path and data.test_path are all null: set at least one")
    if max_prompt_length < 1:
        issues.append(f"data.max_prompt_length={max_prompt_length}: need at least 1 token")
    if batch_size < 1:
        issues.append(f"data.batch_size={batch_size}: need at least 1")
    if num_workers < 0:
        issues.append(f"data.num_workers={num_workers}: need 0 or more")
    issues += [
        f"data.{name}={value}: need at least 1, or null for all"
        for name, value in limits.items()
        if value is not None and value < 1
    ]
    if issues:
        raise ValueError("invalid prompt data configuration:\n  " + "\n  ".join(issues))
