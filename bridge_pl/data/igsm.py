"""SFT data generated on the fly: problems of a task (iGSM by default) written as conversations while training runs.

`IGSMDataModule` draws problems from the task layer (`Task.generate`; any task with ``task:``), or reads them
from a file written by ``bridge data generate``, and writes their answers with `bridge_pl.data.records` (plain
CoT, BRIDGE behaviors, or no-CoT), so a run needs no SFT dataset on disk. Training data is an endless stream,
a fixed set of `train_size` generated problems, or the problems of a file (`path`); validation is a fixed set
from a separate seed stream. Batches follow the SFT contract of `bridge_pl.data.collate.sft_collate`.

**Which problems each process draws.** With R data-parallel ranks and W loader workers there are R*W slots;
slot ``s = rank * W + worker`` draws problem indices ``start + s, start + s + R*W, start + s + 2*R*W, ...``
of the stream `seed`, so no two workers or ranks ever produce the same problem, and the same settings give
the same batches. ``start`` is the number of problems the run has already consumed (0 on a fresh run), so a
resumed run goes on with new problems.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, Literal

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from transformers import PreTrainedTokenizerBase

from bridge_pl.augment.bridge import PRESETS
from bridge_pl.data.collate import sft_collate
from bridge_pl.data.encoding import LossOn, Truncation, encode_conversations, fit_to_length, load_chat_tokenizer
from bridge_pl.data.io import DatasetError, dataset_task
from bridge_pl.data.loaders import BatchPlanSampler, ExampleList, ResumableLoader, data_parallel_replica
from bridge_pl.data.prompts import ChatTemplate
from bridge_pl.data.records import AnswerStyle, augment_rows, problem_rows
from bridge_pl.data.rows import check_text_columns, describe_rows, read_rows
from bridge_pl.task.base import Task, get_task

__all__ = ["IGSMDataModule", "ProblemStream", "stream_indices"]

KEY = "data"
MAX_DROPPED_IN_A_ROW = 100


def stream_indices(start: int, slot: int, slots: int) -> Iterator[int]:
    """Problem indices of one slot (rank * workers + worker) among `slots`: start + slot, + slots, ... forever.

    >>> import itertools
    >>> list(itertools.islice(stream_indices(10, 1, 4), 3))
    [11, 15, 19]
    """
    index = start + slot
    while True:
        yield index
        index += slots


class ProblemStream(IterableDataset):
    """An endless stream of tokenized SFT examples, one per generated problem, sharded by rank and worker.

    Args:
        config: Difficulty of the problems (the task's generator config).
        seed: Problem stream.
        style: How answers are written.
        tokenizer: Tokenizer with a chat template.
        loss_on: "all" or "answer" (see `encode_conversations`).
        max_length: Longest example; longer ones follow `truncation`.
        truncation: "error", "drop" or "truncate" (the first drop or cut of each worker is warned about).
        rank: Data-parallel rank.
        world: Data-parallel ranks.
        start: Problems already consumed by the run (resume).
        task: The task drawing the problems (default iGSM).
    """

    def __init__(
        self,
        config: Any,
        seed: int,
        style: AnswerStyle,
        tokenizer: PreTrainedTokenizerBase,
        *,
        loss_on: LossOn = "all",
        max_length: int = 1024,
        truncation: Truncation = "error",
        rank: int = 0,
        world: int = 1,
        start: int = 0,
        task: Task | None = None,
    ) -> None:
        super().__init__()
        self.config, self.seed, self.style, self.tokenizer = config, seed, style, tokenizer
        self.task = get_task(task)
        self.loss_on, self.max_length, self.truncation = loss_on, max_length, truncation
        self.rank, self.world, self.start = rank, world, start

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        return self.examples(info.id, info.num_workers) if info is not None else self.examples()

    def examples(self, worker: int = 0, workers: int = 1) -> Iterator[dict[str, Any]]:
        """The examples of loader worker `worker` of `workers` on this rank (``problem``: the problem index)."""
        reported, dropped_in_a_row = False, 0
        for index in stream_indices(self.start, self.rank * workers + worker, self.world * workers):
            example = encode_problems(
                self.config, self.seed, [index], self.style, self.tokenizer, self.loss_on, self.task
            )[0]
            if len(example["input_ids"]) > self.max_length:
                example = self._fit(example, report=not reported)
                reported = True
            dropped_in_a_row = dropped_in_a_row + 1 if example is None else 0
            if dropped_in_a_row == MAX_DROPPED_IN_A_ROW:  # else a too-small max_length would hang the run
                raise ValueError(
                    f"data: the last {MAX_DROPPED_IN_A_ROW} problems were all longer than data.max_length="
                    f"{self.max_length} tokens and dropped; raise data.max_length or make the problems easier"
                )
            if example is not None:
                yield example

    def _fit(self, example: dict[str, Any], report: bool) -> dict[str, Any] | None:
        """An over-long example dropped (None) or cut, or an error; the first drop or cut of a worker is warned."""
        size, index = len(example["input_ids"]), example["problem"]
        what = f"data: problem {index} of stream {self.seed} has {size} tokens"
        what += f", more than data.max_length={self.max_length}"
        if self.truncation == "error":
            raise ValueError(f"{what}; raise data.max_length or set data.truncation to drop or truncate")
        if report:
            rank_zero_warn(f"{what}: {self.truncation} (data.truncation); later ones of this worker are not reported")
        if self.truncation == "drop":
            return None
        return {**{k: example[k][: self.max_length] for k in ("input_ids", "labels")}, "problem": index}


def encode_problems(
    config: Any,
    seed: int,
    indices: list[int],
    style: AnswerStyle,
    tokenizer: PreTrainedTokenizerBase,
    loss_on: LossOn,
    task: Task | None = None,
) -> list[dict[str, Any]]:
    """Tokenized SFT examples of `task`'s problems `indices` of stream `seed` (each with its index as ``problem``)."""
    task = get_task(task)
    rows = [problem_rows(task.generate(config, seed, index), style, task=task)[0] for index in indices]
    examples = encode_conversations(tokenizer, [(row["query"], row["response"]) for row in rows], loss_on)
    return [{**example, "problem": index} for example, index in zip(examples, indices, strict=True)]


class IGSMDataModule(L.LightningDataModule):
    """SFT conversations of a task's problems (iGSM by default) generated while training runs, or read from a file.

    Batches follow the SFT contract (right-padded ``input_ids``, ``attention_mask``, ``labels``,
    ``num_tokens``). With ``train_size: null`` and ``path: null`` the training data is endless: set
    ``trainer.max_steps`` and an integer ``trainer.val_check_interval``. A fixed set (`train_size` or `path`) is
    batched by length, reshuffled every epoch from `seed`, sharded per rank and resumable mid-epoch.

    Args:
        tokenizer_path: Local model directory whose tokenizer and chat template to use (the CLI links it to the
            model's ``model_path``).
        generator: Fields of the task's generator config (iGSM's `GeneratorConfig`, e.g. ``{min_op: 15, max_op:
            20}``; DyVal's `DyValConfig`, e.g. ``{depth: 4}``); None for the defaults. With `path` it shapes the
            validation set only.
        style: Answers: "plain" chain of thought, "bridge" (with injected behaviors) or "no-cot".
        behaviors: BRIDGE behavior preset (vanilla, exploration, exploitation, full); used with style bridge.
        seed: Problem stream of the training data (with `path`: seed of the per-epoch shuffle).
        val_seed: Problem stream of the validation set (default: seed + 1, disjoint from the training stream).
        max_length: Longest conversation in tokens.
        batch_size: Conversations per batch and per device.
        loss_on: "all": loss on every token, prompt included (the paper); "answer": on the answer only.
        truncation: Conversations longer than max_length: "error", "drop" or "truncate" (both warn).
        val_size: Problems in the fixed validation set (0 for none).
        train_size: Problems in a fixed training set (the first ones of `path` when it is set); None for an
            endless stream (or the whole file).
        num_workers: DataLoader worker processes (each draws its own problems).
        path: Training problems on disk instead of the generator: a dataset directory or file written by
            ``bridge data generate`` (the ``dag`` column holds each problem; official files without it are
            read from their text). Answers are written in `style`, as ``bridge data augment --method STYLE``
            writes them, so a file generated in that style trains on its own rows. None: generate problems.
        chat_template: "model" (the tokenizer's own) or "llama-minimal" (the paper's template for Llama models).
        trust_remote_code: Allow tokenizer code shipped inside the model directory (the CLI links it to the
            model's ``trust_remote_code``).
        task: The task of the problems (`bridge_pl.task.base.get_task` name: igsm, dyval-arithmetic, dyval-logic);
            a `path` of another task is refused.

    Example:
        ``bridge data generate --split sft --out data/sft`` then ``data: {class_path:
        bridge_pl.data.datamodules.IGSMDataModule, init_args: {path: data/sft, style: bridge}}``
    """

    def __init__(
        self,
        tokenizer_path: str,
        generator: dict[str, Any] | None = None,
        style: Literal["plain", "bridge", "no-cot"] = "bridge",
        behaviors: str = "full",
        seed: int = 0,
        val_seed: int | None = None,
        max_length: int = 1024,
        batch_size: int = 8,
        loss_on: LossOn = "all",
        truncation: Truncation = "error",
        val_size: int = 64,
        train_size: int | None = None,
        num_workers: int = 0,
        path: str | None = None,
        chat_template: ChatTemplate = "model",
        trust_remote_code: bool = False,
        task: str = "igsm",
    ) -> None:
        super().__init__()
        self.task = get_task(task)
        self.config = _generator_config(generator, self.task)
        _validate_args(behaviors, max_length, batch_size, val_size, train_size, num_workers, seed, val_seed)
        self.save_hyperparameters()
        self.tokenizer_path, self.path, self.chat_template = tokenizer_path, path, chat_template
        self.trust_remote_code = trust_remote_code
        self.style = AnswerStyle(style, PRESETS[behaviors] if style == "bridge" else None)
        self.seed, self.val_seed = seed, seed + 1 if val_seed is None else val_seed
        self.max_length, self.batch_size, self.loss_on, self.truncation = max_length, batch_size, loss_on, truncation
        self.val_size, self.train_size, self.num_workers = val_size, train_size, num_workers
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.pad_id: int | None = None
        self.train_examples: list[dict[str, Any]] | None = None  # only with a fixed train_size or a path
        self.val_examples: list[dict[str, Any]] = []
        self.truncation_report: dict[str, dict[str, Any]] = {}

    def setup(self, stage: str | None = None) -> None:
        """Load the tokenizer and build the validation set (and the fixed training set); once per process.

        Raises:
            DatasetError: `path` is missing, empty, lacks a query column, or holds rows without a readable problem.
            ValueError: Over-long conversations with ``truncation: error``, or validation problems in `path`.
        """
        if self.tokenizer is not None:
            return
        self.tokenizer, self.pad_id = load_chat_tokenizer(
            self.tokenizer_path, chat_template=self.chat_template, trust_remote_code=self.trust_remote_code
        )
        # The validation set comes first: an over-long setting fails here, before the stream starts.
        self.val_examples = self._fixed_set(self.val_seed, self.val_size, "val")
        if self.path is not None:
            self.train_examples = self._file_set()
        elif self.train_size is not None:
            self.train_examples = self._fixed_set(self.seed, self.train_size, "train")

    def train_dataloader(self) -> DataLoader:
        """The endless stream of this rank (or its share of the fixed training set, resumable mid-epoch)."""
        rank, world = data_parallel_replica(self.trainer)
        if self.train_examples is not None:
            epoch = self.trainer.current_epoch if self.trainer is not None else 0
            lengths = [len(e["input_ids"]) for e in self.train_examples]
            sampler = BatchPlanSampler(lengths, self.batch_size, seed=self.seed, num_replicas=world, rank=rank)
            sampler.set_epoch(epoch)
            return ResumableLoader(
                ExampleList(self.train_examples),
                sampler=sampler,
                batch_size=None,
                collate_fn=self._collate,
                num_workers=self.num_workers,
            )
        return DataLoader(
            self.train_stream(rank, world, self._consumed(world)),
            batch_size=self.batch_size,
            collate_fn=self._collate,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader | list:
        """The fixed validation set in order, plainly right-padded ([] when val_size is 0)."""
        if not self.val_examples:
            return []
        return DataLoader(
            ExampleList(self.val_examples),
            batch_size=self.batch_size,
            shuffle=False,
            collate_fn=self._collate,
            num_workers=self.num_workers,
        )

    def train_stream(self, rank: int = 0, world: int = 1, start: int = 0) -> ProblemStream:
        """The endless training stream of rank `rank` of `world`, from problem offset `start`."""
        return ProblemStream(
            self.config,
            self.seed,
            self.style,
            self.tokenizer,
            loss_on=self.loss_on,
            max_length=self.max_length,
            truncation=self.truncation,
            rank=rank,
            world=world,
            start=start,
            task=self.task,
        )

    # ------------------------------------------------------------------------------------------- helpers
    def _collate(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        return sft_collate(examples, self.pad_id)

    def _fixed_set(self, seed: int, size: int, name: str) -> list[dict[str, Any]]:
        examples = encode_problems(
            self.config, seed, list(range(size)), self.style, self.tokenizer, self.loss_on, self.task
        )
        examples, self.truncation_report[name] = fit_to_length(
            examples, self.max_length, self.truncation, f"{KEY} ({name} set)"
        )
        return examples

    def _file_set(self) -> list[dict[str, Any]]:
        """The problems of `path` (the first `train_size`), answered in `style` and tokenized."""
        rows, locations = read_rows(self.path, "data.path", ("query",), self.train_size)
        check_text_columns(rows, ("query",), locations, "data.path")
        dataset_task(self.path, self.task)  # a file of another task is refused, naming both
        written = augment_rows(rows, self.style.kind, behaviors=self.style.behaviors, task=self.task)
        if written.failures:
            bad = [(locations[failure.row], failure.reason) for failure in written.failures]
            raise DatasetError(
                f"data.path: {len(bad)} row(s) hold no readable problem: {describe_rows(bad)}. Each row needs its "
                "problem in the dag column (as `bridge data generate` writes it) or as iGSM question text: fix or "
                "remove those rows"
            )
        pairs = [(row["query"], row["response"]) for row in written.rows]
        examples = encode_conversations(self.tokenizer, pairs, self.loss_on)
        examples, self.truncation_report["train"] = fit_to_length(
            examples, self.max_length, self.truncation, "data.path"
        )
        self._check_disjoint(rows)
        return examples

    def _check_disjoint(self, rows: list[dict[str, Any]]) -> None:
        """Refuse validation problems whose question is also in `path` (answers may be worded differently)."""
        questions = {row["query"] for row in rows}
        val = [
            problem_rows(self.task.generate(self.config, self.val_seed, i), self.style, task=self.task)[0]
            for i in range(self.val_size)
        ]
        shared = sum(row["query"] in questions for row in val)
        if shared:
            raise ValueError(
                f"data.path: {shared} of the {self.val_size} validation problems (stream data.val_seed="
                f"{self.val_seed}) are also in the file; choose another data.val_seed, or data.val_size: 0"
            )

    def _consumed(self, world: int) -> int:
        """Problems drawn before this dataloader (a resumed run): micro-batches done x batch size x ranks."""
        if self.trainer is None:
            return 0
        consumed = self.trainer.global_step * self.trainer.accumulate_grad_batches * self.batch_size * world
        if consumed:
            rank_zero_warn(f"data: resuming the problem stream after the {consumed} problems already trained on")
        return consumed


def _generator_config(generator: dict[str, Any] | None, task: Task) -> Any:
    """The task's generator config of the ``data.generator`` mapping, or an error naming the key and the fields."""
    if generator is None:
        return task.default_config()
    names = [f.name for f in dataclasses.fields(task.config_type)]
    unknown = sorted(set(generator) - set(names))
    if unknown:
        raise ValueError(
            f"data.generator: unknown field(s) {', '.join(unknown)} for task {task.name}; valid fields: "
            + ", ".join(names)
        )
    try:
        return dataclasses.replace(task.default_config(), **generator)
    except ValueError as err:
        raise ValueError(f"data.generator: {err}") from err


def _validate_args(
    behaviors: str,
    max_length: int,
    batch_size: int,
    val_size: int,
    train_size: int | None,
    num_workers: int,
    seed: int,
    val_seed: int | None,
) -> None:
    """Raise one ValueError listing every invalid argument by its YAML key."""
    issues = []
    if behaviors not in PRESETS:
        issues.append(f"data.behaviors={behaviors!r}: choose one of {', '.join(PRESETS)}")
    if max_length < 2:
        issues.append(f"data.max_length={max_length}: need at least 2 tokens")
    if batch_size < 1:
        issues.append(f"data.batch_size={batch_size}: need at least 1")
    if val_size < 0:
        issues.append(f"data.val_size={val_size}: need 0 or more")
    if train_size is not None and train_size < 1:
        issues.append(f"data.train_size={train_size}: need at least 1, or null for an endless stream")
    if num_workers < 0:
        issues.append(f"data.num_workers={num_workers}: need 0 or more")
    if val_seed is not None and val_seed == seed:
        issues.append(f"data.val_seed={val_seed} equals data.seed: validation problems would be training problems")
    if issues:
        raise ValueError("invalid iGSM data configuration:\n  " + "\n  ".join(issues))
