"""Chunked log-probs and entropy: hand-worked numbers, and the same values and gradients as the full-logits path."""

from __future__ import annotations

import math
import random

import pytest
import torch

from bridge_pl.models.model_io import apply_lora, build_model, load_model, load_tokenizer
from bridge_pl.rl.chunked import chunked_logprobs_and_entropy
from bridge_pl.rl.logprobs import CompletionBatch, _decoder_and_head, completion_logprobs


def test_three_token_vocabulary_by_hand():
    # h = (1, 0) and (0, 1); W's rows give logits (0, 0, 2) and (1, 1, 1); bias (0, 0, -2) makes them (0, 0, 0) and
    # (1, 1, -1). Token 2 of the first: 1/3. Token 0 of the second: e / (2e + e^-1).
    hidden = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (1, 2, 2)
    weight = torch.tensor([[0.0, 1.0], [0.0, 1.0], [2.0, 1.0]])  # (3, 2)
    bias = torch.tensor([0.0, 0.0, -2.0])
    logprobs, entropy = chunked_logprobs_and_entropy(hidden, weight, bias, torch.tensor([[2, 0]]), chunk_tokens=1)
    p = math.e / (2 * math.e + math.exp(-1))  # tokens 0 and 1 of the second position
    q = math.exp(-1) / (2 * math.e + math.exp(-1))
    assert logprobs[0].tolist() == pytest.approx([math.log(1 / 3), math.log(p)], abs=1e-6)
    assert entropy[0].tolist() == pytest.approx([math.log(3), -(2 * p * math.log(p) + q * math.log(q))], abs=1e-6)


def test_temperature_divides_the_logits_by_hand():
    # logits (0, 0, 2) at temperature 2 are (0, 0, 1): p(token 2) = e / (2 + e).
    hidden, weight = torch.ones(1, 1, 1), torch.tensor([[0.0], [0.0], [2.0]])
    logprobs, entropy = chunked_logprobs_and_entropy(hidden, weight, None, torch.tensor([[2]]), temperature=2.0)
    p, q = math.e / (2 + math.e), 1 / (2 + math.e)
    assert float(logprobs) == pytest.approx(math.log(p), abs=1e-6)
    assert float(entropy) == pytest.approx(-(p * math.log(p) + 2 * q * math.log(q)), abs=1e-6)


def test_gradient_of_the_target_logprob_by_hand():
    # d log softmax(z)_k / dz = onehot(k) - softmax(z); z = W h with h = 1:
    # dW = onehot - softmax, dh = sum_j (onehot - softmax)_j W_j.
    hidden = torch.ones(1, 1, 1, requires_grad=True)
    weight = torch.tensor([[0.0], [0.0], [2.0]], requires_grad=True)
    logprobs, entropy = chunked_logprobs_and_entropy(hidden, weight, None, torch.tensor([[2]]))
    logprobs.sum().backward()
    p = math.exp(2) / (2 + math.exp(2))
    assert weight.grad[:, 0].tolist() == pytest.approx([-(1 - p) / 2, -(1 - p) / 2, 1 - p], abs=1e-6)
    assert float(hidden.grad) == pytest.approx(2 * (1 - p), abs=1e-6)
    assert not entropy.requires_grad


def test_entropy_gradient_by_hand():
    # logits (0, ln 3) from h = 1: p = (1/4, 3/4), H = 0.5623, dH/dz_i = -p_i (ln p_i + H) = (+0.205990, -0.205990);
    # z = W h, so dH/dW = dH/dz and dH/dh = sum_i dH/dz_i W_i = -0.2060 ln 3 = -0.2263.
    hidden = torch.ones(1, 1, 1, requires_grad=True)
    weight = torch.tensor([[0.0], [math.log(3.0)]], requires_grad=True)
    _, entropy = chunked_logprobs_and_entropy(hidden, weight, None, torch.tensor([[0]]), entropy_grad=True)
    entropy.sum().backward()
    assert float(entropy.detach()) == pytest.approx(0.562335, abs=1e-6)
    assert weight.grad[:, 0].tolist() == pytest.approx([0.205990, -0.205990], abs=1e-6)
    assert float(hidden.grad) == pytest.approx(-0.205990 * math.log(3.0), abs=1e-6)


@pytest.mark.parametrize("chunk_tokens", [1, 4, 1000])
def test_entropy_gradient_matches_the_full_logits(chunk_tokens):
    torch.manual_seed(2)
    hidden = torch.randn(2, 5, 8, requires_grad=True)
    head = torch.nn.Linear(8, 30)
    targets = torch.randint(0, 30, (2, 5))
    logprobs, entropy = chunked_logprobs_and_entropy(
        hidden, head.weight, head.bias, targets, 0.7, chunk_tokens, entropy_grad=True
    )
    (logprobs.sum() + 0.3 * entropy.sum()).backward()  # a policy term plus an entropy bonus, as GRPO's loss
    grads = [t.grad.clone() for t in (hidden, head.weight, head.bias)]
    for t in (hidden, head.weight, head.bias):
        t.grad = None
    logp = torch.log_softmax(head(hidden) / 0.7, -1)
    (logp.gather(-1, targets[..., None]).sum() + 0.3 * -(logp.exp() * logp).sum()).backward()
    assert torch.allclose(entropy.detach(), -(logp.exp() * logp).sum(-1).detach(), atol=1e-6)
    for grad, t in zip(grads, (hidden, head.weight, head.bias), strict=True):
        assert torch.allclose(grad, t.grad, atol=1e-6)


@pytest.mark.parametrize("chunk_tokens", [1, 5, 1000])
def test_matches_the_full_logits_for_any_chunk_size(chunk_tokens):
    torch.manual_seed(0)
    hidden = torch.randn(3, 7, 16, requires_grad=True)
    head = torch.nn.Linear(16, 50)
    targets = torch.randint(0, 50, (3, 7))
    logprobs, entropy = chunked_logprobs_and_entropy(hidden, head.weight, head.bias, targets, 0.7, chunk_tokens)
    logprobs.sum().backward()
    grads = [t.grad.clone() for t in (hidden, head.weight, head.bias)]
    for t in (hidden, head.weight, head.bias):
        t.grad = None
    logp = torch.log_softmax(head(hidden) / 0.7, -1)
    reference = logp.gather(-1, targets[..., None])[..., 0]
    reference.sum().backward()
    assert torch.allclose(logprobs, reference, atol=1e-6)
    assert torch.allclose(entropy, -(logp.exp() * logp).sum(-1).detach(), atol=1e-6)
    for grad, t in zip(grads, (hidden, head.weight, head.bias), strict=True):
        assert torch.allclose(grad, t.grad, atol=1e-6)


def batch() -> CompletionBatch:
    rng = random.Random(1)
    prompts = [[rng.randrange(10, 1500) for _ in range(n)] for n in (4, 8, 2)]
    rows = [p for p in prompts for _ in range(3)]  # 3 completions per prompt
    completions = [[rng.randrange(10, 1500) for _ in range(rng.randint(1, 9))] for _ in rows]
    return CompletionBatch.build(rows, completions, pad_id=0)


def forward_backward(model, rows, temperature, chunk_tokens):
    """Masked log-prob sum and entropy of `rows`, and every parameter's gradient of that sum."""
    b = batch()
    logprobs, entropy, width = completion_logprobs(
        model, b, rows, temperature=temperature, with_entropy=True, chunk_tokens=chunk_tokens
    )
    mask = b.completion_mask[torch.arange(len(b)) if rows is None else rows, :width]
    loss = (logprobs * mask).sum()
    model.zero_grad()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return logprobs * mask, entropy * mask, grads


def assert_same(chunked, full, atol):
    """Equal log-probs, entropies and gradients of every parameter, to `atol`."""
    assert torch.allclose(chunked[0], full[0], atol=atol)
    assert torch.allclose(chunked[1], full[1], atol=atol)
    assert full[2].keys() == chunked[2].keys()
    for name, grad in full[2].items():
        assert torch.allclose(chunked[2][name], grad, atol=atol), name


@pytest.mark.parametrize("checkpointing", [False, True], ids=["shared-prompt cache", "whole sequence"])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("rows", [None, [7, 0, 4, 5]], ids=["all", "mixed rows"])
def test_completion_logprobs_chunked_equal_full_logits(model_dir, checkpointing, temperature, rows):
    # float64, so that 1e-6 tests the computation and not the summation order: in float32 the chunks' sums of
    # the output layer's gradient round differently (~1e-7 relative, up to ~8e-6 absolute on gradients ~9).
    model = load_model(model_dir, gradient_checkpointing=checkpointing).double()
    rows = None if rows is None else torch.tensor(rows)
    full = forward_backward(model, rows, temperature, None)
    chunked = forward_backward(model, rows, temperature, 5)  # 5 does not divide the tokens: a ragged last chunk
    assert_same(chunked, full, atol=1e-6)


def test_float32_chunked_equals_full_logits_to_rounding(model_dir):
    model = load_model(model_dir)
    assert_same(forward_backward(model, None, 0.7, 5), forward_backward(model, None, 0.7, None), atol=5e-5)


def test_no_grad_chunked_equals_full(model_dir):
    model = load_model(model_dir)
    with torch.no_grad():
        full, _, width = completion_logprobs(model, batch())
        chunked, entropy, _ = completion_logprobs(model, batch(), chunk_tokens=3)
    mask = batch().completion_mask[:, :width]
    assert torch.allclose(chunked * mask, full * mask, atol=1e-6) and entropy is None


def test_lora_models_are_recognised_and_match(model_dir):
    model = apply_lora(load_model(model_dir).double(), r=4)
    assert _decoder_and_head(model) is not None
    for p in model.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.02)  # LoRA's B starts at zero: make the adapters matter
    assert_same(forward_backward(model, None, 1.0, 4), forward_backward(model, None, 1.0, None), atol=1e-6)


def test_unrecognised_structures_fall_back_to_full_logits(model_dir):
    tokenizer = load_tokenizer(model_dir)
    model = build_model("llama-1m", tokenizer)
    model.config.final_logit_softcapping = 30.0  # a soft-capped model: lm_head's output is not the logits
    assert _decoder_and_head(model) is None
    model.config.final_logit_softcapping = None
    assert _decoder_and_head(model) is not None
    model.lm_head = torch.nn.Sequential(model.lm_head)  # not a plain Linear
    assert _decoder_and_head(model) is None
