"""SFT data from a dataset on disk: conversations tokenized once, batched by length, sharded per rank.

`SFTDataModule` reads a dataset (ours, a single JSONL/parquet file, or the official iGSM-reasoning layout)
with `bridge_pl.data.io.iter_dataset`, renders each row as the conversation [system, user, assistant]
through the tokenizer's chat template (paper_spec §C.2) and serves right-padded batches in the contract of
`bridge_pl.data.collate.sft_collate`.

The pieces the other data modules share live here too: `load_chat_tokenizer` (with the pad-id fallback),
`read_rows` and `check_text_columns` (errors naming the file and line), `encode_conversations` (token ids and
labels), `fit_to_length` (over-long examples), `BatchPlanSampler` (a seeded, per-epoch, rank-sharded batch plan
that Lightning leaves alone under DDP) and `ResumableLoader` (a DataLoader whose place in the epoch is saved in
checkpoints).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from typing import Any, Literal

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from transformers import PreTrainedTokenizerBase

from bridge_pl.data.collate import (
    IGNORE_INDEX,
    balance_batches,
    length_buckets,
    pack_examples,
    real_token_fraction,
    sft_collate,
)
from bridge_pl.data.io import DatasetError, RowLocation, iter_located_rows
from bridge_pl.models.model_io import load_tokenizer
from bridge_pl.models.tokenizer import CHAT_TEMPLATES, format_conversation, format_prompt

__all__ = [
    "BatchPlanSampler",
    "ExampleList",
    "ResumableLoader",
    "SFTDataModule",
    "check_text_columns",
    "data_parallel_replica",
    "describe_rows",
    "encode_conversations",
    "fit_to_length",
    "load_chat_tokenizer",
    "read_rows",
]

LossOn = Literal["all", "answer"]
ChatTemplate = Literal["model", "llama-minimal"]
Truncation = Literal["error", "drop", "truncate"]
Batching = Literal["bucket", "pack", "pad"]
MEGA_BATCH = 50  # batches per length-sorted group of the bucketed plan
MAX_LISTED = 5  # bad rows quoted in one error message


# ------------------------------------------------------------------------------------------------ tokenizer
def load_chat_tokenizer(
    path: str, key: str = "data.tokenizer_path", chat_template: ChatTemplate = "model", trust_remote_code: bool = False
) -> tuple[PreTrainedTokenizerBase, int]:
    """The tokenizer of a local model directory and the id to pad with (eos when it has no pad token).

    Args:
        path: Model directory holding the tokenizer files and a chat template.
        key: The YAML key that named `path`, for error messages.
        chat_template: "model": the directory's own template; "llama-minimal": the paper's minimal Llama template
            (paper_spec §C.2), which replaces it.
        trust_remote_code: Allow tokenizer code shipped inside the directory.

    Raises:
        ValueError: No such directory, no chat template, or neither a pad nor an eos token.
    """
    try:
        tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:  # FileNotFoundError included
        raise ValueError(f"{key}: {err}") from err
    if CHAT_TEMPLATES[chat_template] is not None:
        tokenizer.chat_template = CHAT_TEMPLATES[chat_template]
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"{key}={path!r}: the tokenizer has no chat template, which renders the prompts (paper_spec §C.2); "
            "use a model directory whose tokenizer_config.json has a chat_template (e.g. an Instruct model's)"
        )
    if tokenizer.pad_token_id is not None:
        return tokenizer, tokenizer.pad_token_id
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{key}={path!r}: the tokenizer has neither a pad nor an eos token to pad with")
    rank_zero_info(
        f"{key}={path!r}: the tokenizer has no pad token; padding with its eos token {tokenizer.eos_token!r} "
        f"(id {tokenizer.eos_token_id}). Padded positions get attention 0 and no loss, so real eos tokens still train."
    )
    return tokenizer, tokenizer.eos_token_id


# ------------------------------------------------------------------------------------------------ rows
def read_rows(
    path: str, key: str, required: tuple[str, ...], limit: int | None = None
) -> tuple[list[dict[str, Any]], list[RowLocation]]:
    """The rows of a dataset and where each sits in its file (`iter_located_rows`); errors name the key.

    Only the first `limit` rows are read (all with None).
    """
    try:
        located = list(itertools.islice(iter_located_rows(path, required=required), limit))
    except DatasetError as err:
        raise DatasetError(f"{key}: {err}") from err
    return [row for _, row in located], [where for where, _ in located]


def describe_rows(found: Sequence[tuple[RowLocation, str]]) -> str:
    """(where, what is wrong) pairs as one listing that names each file once, the first `MAX_LISTED` only.

    >>> from pathlib import Path
    >>> describe_rows([(RowLocation(Path("d.jsonl"), "line", 9), "empty response")])
    'd.jsonl: line 9: empty response'
    """
    parts, file = [], None
    for where, what in found[:MAX_LISTED]:
        head = f"{where.file}: " if where.file != file else ""
        parts.append(f"{head}{where.unit} {where.number}: {what}")
        file = where.file
    more = f" (and {len(found) - MAX_LISTED} more)" if len(found) > MAX_LISTED else ""
    return "; ".join(parts) + more


def check_text_columns(
    rows: Sequence[dict[str, Any]], columns: tuple[str, ...], locations: Sequence[RowLocation], key: str
) -> None:
    """Refuse rows whose `columns` are not non-empty text, listing them all in one error.

    Args:
        rows: The rows, as `read_rows` returns them.
        columns: The columns that must hold text.
        locations: Where each row sits in its file (`read_rows`' second list).
        key: The YAML key that named the data.

    Raises:
        DatasetError: Naming the key, each file and its 1-based lines (or rows), and the fix.
    """
    bad = [
        (where, f"empty or non-text {column}")
        for row, where in zip(rows, locations, strict=True)
        for column in columns
        if not isinstance(row.get(column), str) or not row[column].strip()
    ]
    if bad:
        raise DatasetError(
            f"{key}: {len(bad)} value(s) are not non-empty text: {describe_rows(bad)}. "
            f"Every row needs text in {', '.join(columns)}: fix or remove those rows"
        )


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


# ------------------------------------------------------------------------------------------------ tokens
def encode_conversations(
    tokenizer: PreTrainedTokenizerBase, pairs: Sequence[tuple[str, str]], loss_on: LossOn = "all"
) -> list[dict[str, list[int]]]:
    """Token ids and labels of (question, answer) conversations rendered by the chat template.

    Tokenized with ``add_special_tokens=False``: the chat template decides about a BOS token, so the RL
    prompt (`format_prompt`) is a prefix of the SFT conversation token for token.

    Args:
        tokenizer: A tokenizer with a chat template.
        pairs: (question, answer) texts; answers start with "<think>".
        loss_on: "all": every token but the first carries a label (the paper: system prompt and question
            included; the first token is never predicted, so its label is -100 and counts stay exact).
            "answer": only the assistant's answer, from its first token ("<think>") to the end.

    Returns:
        One ``{"input_ids", "labels"}`` dict per conversation.
    """
    if not pairs:
        return []  # the tokenizer refuses an empty batch
    texts = [format_conversation(tokenizer, question, answer) for question, answer in pairs]
    offsets = loss_on == "answer" and tokenizer.is_fast
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=offsets)
    examples = []
    for number, ((question, answer), text) in enumerate(zip(pairs, texts, strict=True)):
        ids = list(encoded["input_ids"][number])
        labels = [IGNORE_INDEX, *ids[1:]]
        if loss_on == "answer":
            start = _answer_token(tokenizer, text, question, answer, encoded, number, offsets)
            labels[:start] = [IGNORE_INDEX] * start
        examples.append({"input_ids": ids, "labels": labels})
    return examples


def _answer_token(tokenizer, text: str, question: str, answer: str, encoded, number: int, offsets: bool) -> int:
    """Index of the first token of the answer inside the tokenized conversation `text`."""
    prefix = format_prompt(tokenizer, question).removesuffix("<think>")  # [system, user] + generation prompt
    boundary = len(prefix) if text.startswith(prefix) else text.rfind(answer)
    if boundary < 0:
        raise ValueError("the chat template does not keep the answer text verbatim; use loss_on: all")
    if offsets:  # the first token that ends after the boundary (robust to merges across it)
        spans = encoded["offset_mapping"][number]
        return next((i for i, (_, end) in enumerate(spans) if end > boundary), len(spans))
    return len(tokenizer(text[:boundary], add_special_tokens=False)["input_ids"])


def fit_to_length(
    examples: list[dict[str, list[int]]], max_length: int, mode: Truncation, key: str
) -> tuple[list[dict[str, list[int]]], dict[str, Any]]:
    """Apply the over-length policy: raise, drop or cut examples longer than `max_length` (never silently).

    Args:
        examples: ``{"input_ids", "labels"}`` dicts.
        max_length: Longest allowed example.
        mode: "error" raises; "drop" skips them; "truncate" keeps their first `max_length` tokens. Both
            of the latter warn with the count.
        key: YAML key of the data they came from (error and warning text).

    Returns:
        The kept examples and a report: mode, max_length, examples, over_length, longest, dropped, truncated.

    Raises:
        ValueError: With mode "error", stating how many are too long, the longest length and the fix.
    """
    lengths = [len(e["input_ids"]) for e in examples]
    over = [i for i, n in enumerate(lengths) if n > max_length]
    report = {
        "mode": mode,
        "max_length": max_length,
        "examples": len(examples),
        "over_length": len(over),
        "longest": max(lengths, default=0),
        "dropped": 0,
        "truncated": 0,
    }
    if not over:
        return examples, report
    what = f"{len(over)} of {len(examples)} examples are longer than data.max_length={max_length} tokens"
    if mode == "error":
        raise ValueError(
            f"{key}: {what} (longest: {report['longest']}). Raise data.max_length to at least {report['longest']}, "
            "or set data.truncation to drop (skip them) or truncate (cut them at max_length)"
        )
    if mode == "drop":
        skip = set(over)
        examples = [e for i, e in enumerate(examples) if i not in skip]
        report["dropped"] = len(over)
        done = f"dropped {len(over)}"
    else:
        examples = [_truncated(e, max_length) for e in examples]
        report["truncated"] = len(over)
        done = f"cut {len(over)} to their first {max_length} tokens (their endings are not trained)"
    rank_zero_warn(f"{key}: {what} (longest: {report['longest']}); data.truncation={mode}: {done}")
    return examples, report


def _truncated(example: dict[str, list[int]], max_length: int) -> dict[str, list[int]]:
    return {key: value[:max_length] for key, value in example.items()}


# ------------------------------------------------------------------------------------------------ sampling
class ExampleList(Dataset):
    """A list of examples that also answers a list of indices with the list of examples (one batch per call)."""

    def __init__(self, examples: Sequence[Any]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int | list[int]) -> Any:
        if isinstance(index, list):
            return [self.examples[i] for i in index]
        return self.examples[index]


class BatchPlanSampler(DistributedSampler):
    """This rank's batches (lists of indices) of a seeded length-grouped plan that changes every epoch.

    The plan of epoch e is ``length_buckets(lengths, batch_size, mega_batch=..., seed=seed + e)``, balanced so
    that every rank gets the same number of batches (`balance_batches`); rank r takes batches r, r + R, ....
    Every example appears once per epoch over all ranks. It is a `DistributedSampler`, so Lightning does not
    replace it under DDP, and calls `set_epoch` on it at each epoch. Use it as ``ResumableLoader(ExampleList(...),
    sampler=..., batch_size=None, collate_fn=...)``: each item it yields is a whole batch. ``start`` skips that
    many of this rank's batches (`ResumableLoader` sets it while a resumed epoch starts).

    Args:
        lengths: Token count of every example.
        batch_size: Examples per batch (some batches are smaller: the last one, and those split for balance).
        mega_batch: Batches per length-sorted group (1: random batches, no length grouping).
        seed: Seed of the plan.
        num_replicas: Data-parallel ranks.
        rank: This rank.
        epoch: Epoch to start with.
        multiple_of: Keep a multiple of this many batches per rank and epoch (the rest of the shuffled plan is
            left out, a different part every epoch): whole optimizer steps under gradient accumulation.
    """

    start = 0

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        mega_batch: int = MEGA_BATCH,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        epoch: int = 0,
        multiple_of: int = 1,
    ) -> None:
        super().__init__(lengths, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)  # type: ignore[arg-type]
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.mega_batch = mega_batch
        self.epoch = epoch
        per_rank = len(self.plan(epoch)) // num_replicas  # the same in every epoch
        self.num_batches = per_rank - per_rank % multiple_of
        if multiple_of > 1 and self.num_batches == 0:
            raise ValueError(
                f"{per_rank} batch(es) per rank is fewer than one optimizer step of {multiple_of}: use more data, "
                "a smaller batch_size or accumulate_grad_batches, or drop_last: false"
            )

    def plan(self, epoch: int) -> list[list[int]]:
        """The batches of all ranks in epoch `epoch`."""
        batches = length_buckets(self.lengths, self.batch_size, mega_batch=self.mega_batch, seed=self.seed + epoch)
        return balance_batches(batches, self.num_replicas)

    def __iter__(self):
        return iter(self.plan(self.epoch)[self.rank :: self.num_replicas][self.start : self.num_batches])

    def __len__(self) -> int:
        return self.num_batches  # the whole epoch's, also when it starts part-way: Lightning counts on it


class ResumableLoader(DataLoader):
    """A DataLoader whose place in the epoch is saved in Lightning checkpoints, so a resumed run goes on mid-epoch.

    Lightning stores ``state_dict()`` of stateful loaders in the checkpoint and hands it back through
    ``load_state_dict`` before the resumed epoch iterates: the batches already trained on are then skipped,
    and the run sees the batches an uninterrupted run would have seen. The next epochs are whole.

    The sampler must have ``epoch`` (Lightning's `set_epoch`) and ``start``: how many of its items an
    iteration skips (e.g. `BatchPlanSampler`, whose items are whole batches with ``batch_size=None``). Batches
    are counted as this loader hands them to the training loop, in the main process, so loader workers fetching
    ahead (``num_workers > 0``) never count as trained.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not hasattr(self.sampler, "start") or not hasattr(self.sampler, "epoch"):
            raise TypeError(f"ResumableLoader needs a sampler with `epoch` and `start`, not {type(self.sampler)}")
        self._batches = 0  # batches handed out in epoch `_epoch`
        self._epoch: int | None = None
        self._resume: dict[str, int] | None = None

    def __iter__(self):
        # A generator: the skip is decided at the first batch, after Lightning's load_state_dict and set_epoch.
        done = 0
        if self._resume is not None and self._resume["epoch"] == self.sampler.epoch:
            done = self._resume["batches"]
        self._resume = None
        self._batches, self._epoch = done, self.sampler.epoch
        self.sampler.start = done * (self.batch_size or 1)  # batch_size None: each sampler item is a batch
        try:
            for batch in super().__iter__():
                # With workers torch calls iter() on the sampler twice, both times before the first batch is
                # out: the skip may end only now.
                self.sampler.start = 0
                self._batches += 1
                yield batch
        finally:
            self.sampler.start = 0

    def state_dict(self) -> dict[str, int]:
        """The epoch and how many of its batches were handed out (a pending resume if none was yet)."""
        if self._resume is not None:
            return dict(self._resume)
        # A checkpoint taken after set_epoch but before the new epoch's first batch: none of it is done yet.
        batches = self._batches if self._epoch == self.sampler.epoch else 0
        return {"epoch": self.sampler.epoch, "batches": batches}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume the saved epoch after its saved batches (at the next iteration)."""
        self._resume = {"epoch": int(state["epoch"]), "batches": int(state["batches"])}


def data_parallel_replica(trainer: Any) -> tuple[int, int]:
    """(rank, number of ranks) of data parallelism under `trainer` ((0, 1) without one or on one device)."""
    kwargs = getattr(trainer, "distributed_sampler_kwargs", None) if trainer is not None else None
    if not kwargs:
        return 0, 1
    return int(kwargs.get("rank", 0)), int(kwargs.get("num_replicas", 1))


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
    ) -> None:
        super().__init__()
        _validate_args(max_length, batch_size, val_fraction, val_path, num_workers, limit)
        self.save_hyperparameters()
        self.train_path, self.val_path, self.tokenizer_path = train_path, val_path, tokenizer_path
        self.max_length, self.batch_size, self.loss_on = max_length, batch_size, loss_on
        self.batching, self.truncation, self.val_fraction = batching, truncation, val_fraction
        self.num_workers, self.seed, self.limit, self.chat_template = num_workers, seed, limit, chat_template
        self.drop_last, self.trust_remote_code = drop_last, trust_remote_code
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
