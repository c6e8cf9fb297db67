"""Batching math against hand-computed tensors: padding, SFT collation, packing, length-grouped batch plans."""

from __future__ import annotations

import random

import pytest
import torch

from bridge_pl.data.collate import balance_batches, length_buckets, pack_examples, real_token_fraction, sft_collate
from bridge_pl.data.encoding import IGNORE_INDEX, pad_left, pad_right

X = IGNORE_INDEX


def example(ids: list[int], labels: list[int] | None = None) -> dict[str, list[int]]:
    return {"input_ids": ids, "labels": list(ids) if labels is None else labels}


# ------------------------------------------------------------------------------------------------ padding
def test_pad_right_and_left_by_hand():
    assert torch.equal(pad_right([[1, 2, 3], [4]], 9), torch.tensor([[1, 2, 3], [4, 9, 9]]))
    assert torch.equal(pad_left([[1, 2, 3], [4]], 9), torch.tensor([[1, 2, 3], [9, 9, 4]]))
    assert torch.equal(pad_right([[5]], 0, length=3), torch.tensor([[5, 0, 0]]))
    assert pad_left([[1], [2]], 0).dtype == torch.long
    with pytest.raises(ValueError, match="longest sequence has 3"):
        pad_right([[1, 2, 3]], 0, length=2)


def test_sft_collate_by_hand():
    batch = sft_collate([example([5, 6, 7], [X, 6, 7]), example([8, 9], [X, X])], pad_id=0)
    assert torch.equal(batch["input_ids"], torch.tensor([[5, 6, 7], [8, 9, 0]]))
    assert torch.equal(batch["attention_mask"], torch.tensor([[1, 1, 1], [1, 1, 0]]))
    assert torch.equal(batch["labels"], torch.tensor([[X, 6, 7], [X, X, X]]))
    assert batch["num_tokens"] == 2 and isinstance(batch["num_tokens"], int)
    assert "position_ids" not in batch


def test_sft_collate_pads_packed_rows_with_a_position_run_of_their_own():
    rows = [
        {"input_ids": [1, 2, 3], "labels": [X, 2, X], "position_ids": [0, 1, 0]},
        {"input_ids": [4], "labels": [X], "position_ids": [0]},
    ]
    batch = sft_collate(rows, pad_id=0)
    assert torch.equal(batch["position_ids"], torch.tensor([[0, 1, 0], [0, 0, 1]]))
    assert torch.equal(batch["labels"], torch.tensor([[X, 2, X], [X, X, X]]))
    assert batch["num_tokens"] == 1


def test_sft_collate_refuses_mismatched_labels():
    with pytest.raises(ValueError, match="differ in length"):
        sft_collate([example([1, 2], [1])], pad_id=0)


# ------------------------------------------------------------------------------------------------ packing
def test_pack_examples_by_hand():
    rows = pack_examples([example([1, 2, 3]), example([4, 5]), example([6, 7, 8])], max_length=5)
    assert [r["input_ids"] for r in rows] == [[1, 2, 3, 4, 5], [6, 7, 8]]
    assert rows[0]["position_ids"] == [0, 1, 2, 0, 1]  # restarts at the second document
    assert rows[0]["labels"] == [X, 2, 3, X, 5]  # no label on a document's first token
    assert rows[1]["labels"] == [X, 7, 8]
    assert [r["lengths"] for r in rows] == [[3, 2], [3]]


def test_pack_examples_is_first_fit():
    # 3 and 3 open two rows of 4; the 1 goes into the FIRST row with room, not the last one opened.
    rows = pack_examples([example([1, 1, 1]), example([2, 2, 2]), example([3])], max_length=4)
    assert [r["input_ids"] for r in rows] == [[1, 1, 1, 3], [2, 2, 2]]


def test_pack_examples_keeps_answer_masks_and_conserves_tokens():
    rng = random.Random(0)
    docs = []
    for n in range(60):
        size = rng.randint(1, 40)
        ids = [n * 100 + i for i in range(size)]
        labels = [X if i < size // 2 else t for i, t in enumerate(ids)]  # a masked "prompt" half
        docs.append(example(ids, labels))
    rows = pack_examples(docs, max_length=64)
    assert all(len(r["input_ids"]) <= 64 for r in rows)
    assert sorted(t for r in rows for t in r["input_ids"]) == sorted(t for d in docs for t in d["input_ids"])
    for row in rows:
        starts = [i for i, p in enumerate(row["position_ids"]) if p == 0]
        assert len(starts) == len(row["lengths"]) and all(row["labels"][i] == X for i in starts)
    labelled = sum(t != X for r in rows for t in r["labels"])
    assert labelled == sum(t != X for d in docs for t in d["labels"][1:])


def test_pack_examples_refuses_an_overlong_example():
    with pytest.raises(ValueError, match="example 1 has 4 tokens, more than max_length=3"):
        pack_examples([example([1]), example([1, 2, 3, 4])], max_length=3)


# ------------------------------------------------------------------------------------------------ batch plans
def test_length_buckets_by_hand():
    # One mega-batch: sorted by length the pairs are (5, 4) and (2, 1), whatever the shuffle.
    batches = length_buckets([5, 1, 4, 2], 2, seed=0)
    assert sorted(sorted(b) for b in batches) == [[0, 2], [1, 3]]


def test_length_buckets_covers_every_index_once_and_is_seeded():
    lengths = [random.Random(1).randint(10, 500) for _ in range(203)]
    plan = length_buckets(lengths, 8, mega_batch=5, seed=3)
    assert sorted(i for b in plan for i in b) == list(range(203))
    assert max(len(b) for b in plan) == 8 and sum(len(b) < 8 for b in plan) == 1  # only one short batch
    assert plan == length_buckets(lengths, 8, mega_batch=5, seed=3)
    assert plan != length_buckets(lengths, 8, mega_batch=5, seed=4)


def test_length_buckets_pads_far_less_than_random_batches():
    rng = random.Random(2)
    lengths = [rng.randint(50, 1000) for _ in range(800)]
    bucketed = real_token_fraction(length_buckets(lengths, 8, seed=0), lengths)["real_token_fraction"]
    shuffled = real_token_fraction(length_buckets(lengths, 8, mega_batch=1, seed=0), lengths)["real_token_fraction"]
    assert bucketed > 0.95 and shuffled < 0.75


def test_balance_batches_by_hand():
    assert balance_batches([[0, 1, 2, 3], [4, 5, 6, 7], [8]], 2) == [[0, 1], [2, 3], [4, 5, 6, 7], [8]]
    assert balance_batches([[0, 1], [2, 3]], 2) == [[0, 1], [2, 3]]  # already balanced: unchanged
    balanced = balance_batches([[0, 1, 2], [3], [4]], 4)
    assert len(balanced) == 4 and sorted(i for b in balanced for i in b) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="3 examples cannot fill a batch on each of 4 ranks"):
        balance_batches([[0, 1, 2]], 4)


def test_real_token_fraction_by_hand():
    stats = real_token_fraction([[0, 1], [2]], [4, 2, 3])  # batch 1: 4 + 2 of 2 x 4; batch 2: 3 of 3
    assert stats == {"real_tokens": 9, "total_tokens": 11, "real_token_fraction": 9 / 11}
