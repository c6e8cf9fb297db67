"""Completion log-probs with shared prompts equal those of one pass over [prompt | completion], gradients included."""

from __future__ import annotations

import random

import pytest
import torch

from bridge_pl.models.model_io import init_model_dir, load_model
from bridge_pl.rl.logprobs import CompletionBatch, _length_buckets, _logits_whole, completion_logprobs


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return init_model_dir(tmp_path_factory.mktemp("model"), preset="llama-1m", seed=2)


def batch() -> CompletionBatch:
    rng = random.Random(0)
    prompts = [[rng.randrange(10, 1500) for _ in range(n)] for n in (5, 9, 3)]
    rows = [p for p in prompts for _ in range(3)]  # 3 completions per prompt
    completions = [[rng.randrange(10, 1500) for _ in range(rng.randint(1, 7))] for _ in rows]
    return CompletionBatch.build(rows, completions, pad_id=0)


def test_prompts_are_stored_once():
    b = batch()
    assert b.prompt_ids.shape[0] == 3 and b.prompt_index.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert b.prompt_lengths().tolist() == [5, 5, 5, 9, 9, 9, 3, 3, 3]


def test_length_buckets_hand_worked():
    buckets = _length_buckets(torch.tensor([60, 300, 140, 70, 1, 151]))
    # longest first: 300, 151 (>= 150) | 140, 70 (>= 70) | 60 (< 70) | 1
    assert [b.tolist() for b in buckets] == [[1, 5], [2, 3], [0], [4]]
    assert len(_length_buckets(batch().completion_mask.sum(1).long())) >= 2  # the batch below runs in buckets


@pytest.mark.parametrize("rows", [None, [7, 0, 4, 5]], ids=["all", "mixed rows"])
def test_shared_prompt_logprobs_and_gradients_equal_the_whole_pass(model_dir, rows):
    model = load_model(model_dir)
    b = batch()
    rows = None if rows is None else torch.tensor(rows)
    selected = torch.arange(len(b)) if rows is None else rows
    logprobs, entropy, width = completion_logprobs(model, b, rows, temperature=0.8, with_entropy=True)
    mask = b.completion_mask[selected, :width]
    (logprobs * mask).sum().backward()
    shared = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    whole = _logits_whole(model, b, selected, width)
    reference = torch.log_softmax(whole.float() / 0.8, -1).gather(-1, b.completion_ids[selected, :width, None])[..., 0]
    assert torch.allclose(logprobs * mask, reference * mask, atol=1e-5)
    (reference * mask).sum().backward()
    for name, param in model.named_parameters():
        assert torch.allclose(shared[name], param.grad, atol=1e-5), name
    assert entropy.shape == logprobs.shape


def test_checkpointed_models_take_the_whole_pass(model_dir):
    model = load_model(model_dir, gradient_checkpointing=True)
    b = batch()
    logprobs, _, width = completion_logprobs(model, b)  # transformers drops caches under checkpointing
    reference = completion_logprobs(load_model(model_dir), b)[0]
    mask = b.completion_mask[:, :width]
    assert torch.allclose(logprobs * mask, reference * mask, atol=1e-5)


def test_entropy_keeps_its_gradient_only_when_asked(model_dir):
    from bridge_pl.rl.losses import token_entropy

    model, data = load_model(model_dir), batch()
    _, plain, _ = completion_logprobs(model, data, with_entropy=True, chunk_tokens=4)
    assert not plain.requires_grad
    _, entropy, width = completion_logprobs(model, data, with_entropy=True, entropy_grad=True, chunk_tokens=4)
    mask = data.completion_mask[:, :width]
    (entropy * mask).sum().backward()
    ours = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    logits = _logits_whole(model, data, torch.arange(len(data)), width)
    (token_entropy(logits) * mask).sum().backward()
    assert torch.allclose(entropy.detach(), plain, atol=1e-6)
    assert all(torch.allclose(a, p.grad, atol=1e-6) for a, p in zip(ours, model.parameters(), strict=True))
