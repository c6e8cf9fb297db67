"""Batching math for SFT batches: collation, packing and length-grouped batch plans (padding: `encoding`).

Pure functions over token-id lists and tensors, each with a worked example in ``tests/data/test_collate.py``.
Labels follow the Hugging Face convention the `SFTModule` expects: aligned with ``input_ids`` (not
shifted; the module shifts them) and `IGNORE_INDEX` (-100) wherever a token carries no loss.

The SFT batch contract (`sft_collate`)::

    input_ids       (B, T) long, right-padded with the pad id
    attention_mask  (B, T) long, 1 on real tokens, 0 on padding
    labels          (B, T) long, -100 on padding and on every token without loss
    position_ids    (B, T) long, only for packed rows: 0, 1, ... restarting at every packed document
    num_tokens      int, the number of labels != -100 in the batch
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch

from bridge_pl.data.encoding import IGNORE_INDEX, pad_right

__all__ = [
    "balance_batches",
    "length_buckets",
    "pack_examples",
    "real_token_fraction",
    "sft_collate",
]


def sft_collate(examples: Sequence[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Right-pad SFT examples (or packed rows) into one training batch (the contract in the module docstring).

    Args:
        examples: Dicts with ``input_ids`` and ``labels`` (lists of equal length) and, for packed rows,
            ``position_ids``. Other keys are ignored.
        pad_id: Token id written on padded positions (they get attention 0 and label -100 whatever it is).

    Returns:
        ``input_ids``, ``attention_mask``, ``labels`` (B, T), ``position_ids`` (B, T) when the examples have
        them, and ``num_tokens``. The padded tail of a packed row gets positions 0, 1, ... of its own, so it
        acts as one more document that no real token attends to.
    """
    ids = [e["input_ids"] for e in examples]
    for e in examples:
        if len(e["labels"]) != len(e["input_ids"]):
            raise ValueError(f"labels ({len(e['labels'])}) and input_ids ({len(e['input_ids'])}) differ in length")
    labels = pad_right([e["labels"] for e in examples], IGNORE_INDEX)  # (B, T)
    batch = {
        "input_ids": pad_right(ids, pad_id),  # (B, T)
        "attention_mask": pad_right([[1] * len(s) for s in ids], 0),  # (B, T)
        "labels": labels,
    }
    if examples and "position_ids" in examples[0]:
        width = labels.shape[1]
        batch["position_ids"] = torch.tensor(
            [list(e["position_ids"]) + list(range(width - len(e["position_ids"]))) for e in examples],
            dtype=torch.long,
        )  # (B, T)
    batch["num_tokens"] = int((labels != IGNORE_INDEX).sum())
    return batch


def pack_examples(examples: Sequence[dict[str, Any]], max_length: int) -> list[dict[str, list[int]]]:
    """Pack examples into rows of at most `max_length` tokens by greedy first-fit, in the given order.

    Each example goes into the first row that still has room for it, or opens a new row. Pass the examples
    longest first for first-fit-decreasing (fewer, fuller rows). No loss crosses documents: every document's
    first token gets label -100 (it would be predicted from the previous document's last token), and
    ``position_ids`` restart at 0 with every document.

    Args:
        examples: Dicts with ``input_ids`` and ``labels`` lists, each at most `max_length` long.
        max_length: Longest row.

    Returns:
        Rows ``{"input_ids", "labels", "position_ids", "lengths"}`` (``lengths``: the documents' lengths in
        row order); all tokens of the input appear exactly once.

    >>> rows = pack_examples([{"input_ids": [1, 2, 3], "labels": [1, 2, 3]}, {"input_ids": [4], "labels": [4]}], 4)
    >>> rows[0]["position_ids"], rows[0]["labels"]
    ([0, 1, 2, 0], [-100, 2, 3, -100])
    """
    if max_length < 1:
        raise ValueError(f"max_length={max_length}: need at least 1 token per row")
    shortest = min((len(e["input_ids"]) for e in examples), default=0)
    rows: list[dict[str, list[int]]] = []
    room: list[int] = []  # free tokens per row
    open_rows: list[int] = []  # rows that can still take the shortest example: first-fit scans only these
    for number, example in enumerate(examples):
        size = len(example["input_ids"])
        if size > max_length:
            raise ValueError(f"example {number} has {size} tokens, more than max_length={max_length}")
        target = next((r for r in open_rows if room[r] >= size), None)
        if target is None:
            target = len(rows)
            rows.append({"input_ids": [], "labels": [], "position_ids": [], "lengths": []})
            room.append(max_length)
            open_rows.append(target)
        _append_document(rows[target], example)
        room[target] -= size
        if room[target] < shortest:
            open_rows.remove(target)
    return rows


def _append_document(row: dict[str, list[int]], example: dict[str, Any]) -> None:
    size = len(example["input_ids"])
    row["input_ids"] += list(example["input_ids"])
    row["labels"] += [IGNORE_INDEX, *list(example["labels"])[1:]] if size else []
    row["position_ids"] += list(range(size))
    row["lengths"].append(size)


def length_buckets(lengths: Sequence[int], batch_size: int, *, mega_batch: int = 50, seed: int = 0) -> list[list[int]]:
    """Plan batches of similar lengths with randomness: the classic length-grouped sampler.

    Shuffle all indices, cut them into mega-batches of ``mega_batch * batch_size``, sort each mega-batch by
    length (longest first) and cut it into batches, then shuffle the order of the batches. Padding inside a
    batch is then near zero while batch contents and order still change with the seed. `mega_batch=1` is
    plain random batching.

    Args:
        lengths: Length of every example.
        batch_size: Examples per batch (the last batch of the last mega-batch may be smaller).
        mega_batch: Batches per sorted group; larger means less padding and less randomness.
        seed: Same seed, same plan (Python's `random`, identical in every process).

    Returns:
        Batches of example indices; every index appears exactly once.

    >>> length_buckets([5, 1, 4, 2], 2, seed=0)  # one mega-batch: {0, 2} and {1, 3} pair up
    [[0, 2], [3, 1]]
    """
    if batch_size < 1 or mega_batch < 1:
        raise ValueError(f"batch_size={batch_size}, mega_batch={mega_batch}: both must be >= 1")
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    group = batch_size * mega_batch
    batches = []
    for start in range(0, len(order), group):
        chunk = sorted(order[start : start + group], key=lambda i: -lengths[i])  # stable: ties keep shuffle order
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def balance_batches(batches: list[list[int]], multiple: int) -> list[list[int]]:
    """Split the largest batches in two until the number of batches is a multiple of `multiple` (the ranks).

    Every rank then gets the same number of batches without dropping or repeating an example.

    >>> balance_batches([[0, 1, 2, 3], [4, 5, 6, 7], [8]], 2)
    [[0, 1], [2, 3], [4, 5, 6, 7], [8]]
    """
    total = sum(len(b) for b in batches)
    if total < multiple:
        raise ValueError(f"{total} examples cannot fill a batch on each of {multiple} ranks; use more data")
    batches = list(batches)
    while len(batches) % multiple:
        largest = max(range(len(batches)), key=lambda i: len(batches[i]))  # the first of the largest
        batch = batches[largest]
        half = (len(batch) + 1) // 2
        batches[largest : largest + 1] = [batch[:half], batch[half:]]
    return batches


def real_token_fraction(batches: list[list[int]], lengths: Sequence[int]) -> dict[str, float | int]:
    """Share of real (non-pad) tokens when each batch is right-padded to its longest member.

    >>> real_token_fraction([[0, 1], [2]], [4, 2, 3])
    {'real_tokens': 9, 'total_tokens': 11, 'real_token_fraction': 0.8181818181818182}
    """
    real = sum(lengths[i] for batch in batches for i in batch)
    total = sum(max((lengths[i] for i in batch), default=0) * len(batch) for batch in batches)
    return {"real_tokens": real, "total_tokens": total, "real_token_fraction": real / total if total else 1.0}
