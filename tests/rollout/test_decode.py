"""The engine's own decoding loop: transformers' distribution and greedy tokens, rows independent of their batch."""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from bridge_pl.data.prompts import format_prompt
from bridge_pl.models.model_io import load_model, load_tokenizer
from bridge_pl.rollout import HFEngine, SamplingConfig
from bridge_pl.rollout.decode import decode as decode_original
from bridge_pl.rollout.decode import process_logits


@pytest.fixture(scope="module")
def model_dir(loud_model_dir):
    """A random tiny model with large weights: its greedy answers vary instead of repeating one token."""
    return loud_model_dir("llama-1m")


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return load_tokenizer(model_dir)


def engine(model_dir, tokenizer, **kwargs):
    engine = HFEngine(**kwargs)
    engine.bind(load_model(model_dir), tokenizer, str(model_dir))
    return engine


def prompts(tokenizer):
    questions = ["How many Pens does each Bag have?", "The number of each Bag's Pen equals 3.", "Hello there"]
    return [tokenizer(format_prompt(tokenizer, q), add_special_tokens=False)["input_ids"] for q in questions]


def test_process_logits_hand_worked():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])  # softmax: 0.644, 0.237, 0.087, 0.032
    inf = float("-inf")
    assert process_logits(logits, SamplingConfig(temperature=0.5)).tolist() == [[4.0, 2.0, 0.0, -2.0]]
    assert process_logits(logits, SamplingConfig(top_k=2)).tolist() == [[2.0, 1.0, inf, inf]]
    # top-p 0.85: the tail whose mass is <= 0.15 goes (0.032 + 0.087 = 0.119), 0.237 more would pass it
    assert process_logits(logits, SamplingConfig(top_p=0.85)).tolist() == [[2.0, 1.0, inf, inf]]
    assert process_logits(logits, SamplingConfig(top_p=0.5)).tolist() == [[2.0, inf, inf, inf]]  # the top stays


@pytest.mark.parametrize("temperature,top_k,top_p", [(0.7, 0, 1.0), (1.0, 50, 1.0), (1.3, 20, 0.9), (1.0, 0, 0.3)])
def test_process_logits_equals_transformers_warpers(temperature, top_k, top_p):
    logits = torch.randn(6, 300, generator=torch.Generator().manual_seed(0)) * 3
    expected = TemperatureLogitsWarper(temperature)(None, logits.clone())
    if top_k:
        expected = TopKLogitsWarper(top_k)(None, expected)
    if top_p < 1:
        expected = TopPLogitsWarper(top_p)(None, expected)
    got = process_logits(logits, SamplingConfig(temperature=temperature, top_k=top_k, top_p=top_p))
    assert torch.equal(got, expected)


def test_greedy_equals_transformers_generate_with_rows_leaving_the_batch(model_dir, tokenizer):
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=40, stop=())
    ours, theirs = engine(model_dir, tokenizer), engine(model_dir, tokenizer, decoding="generate")
    free = [c.token_ids for g in theirs.generate(prompts(tokenizer), 1, sampling) for c in g]
    stop = {free[0][3], free[1][12]}  # tokens of the unstopped answers: rows end at different steps
    for e in (ours, theirs):
        e.policy.generation_config.eos_token_id = sorted(stop | {tokenizer.eos_token_id})
    got = ours.generate(prompts(tokenizer), 2, sampling)
    expected = theirs.generate(prompts(tokenizer), 2, sampling)
    lengths = {len(c.token_ids) for g in got for c in g}
    assert len(lengths) > 1  # rows did finish at different steps
    assert [[c.token_ids for c in g] for g in got] == [[c.token_ids for c in g] for g in expected]
    assert [[c.finish_reason for c in g] for g in got] == [[c.finish_reason for c in g] for g in expected]


def test_a_completion_does_not_depend_on_its_batch(model_dir, tokenizer):
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=24)
    whole = engine(model_dir, tokenizer, batch_size=64).generate(prompts(tokenizer), 4, sampling, seed=5)
    split = engine(model_dir, tokenizer, batch_size=3).generate(prompts(tokenizer), 4, sampling, seed=5)
    ids = lambda groups: [[c.token_ids for c in g] for g in groups]  # noqa: E731
    assert ids(whole) == ids(split)
    assert len({tuple(c.token_ids) for g in whole for c in g}) > 6  # the rows drew from different streams


def test_samples_follow_the_processed_distribution(model_dir, tokenizer):
    model = load_model(model_dir).eval()
    prompt = prompts(tokenizer)[0]
    sampling = SamplingConfig(temperature=1.0, top_k=4, max_new_tokens=1, stop=())
    with torch.no_grad():
        logits = model(torch.tensor([prompt])).logits[0, -1]
    expected = process_logits(logits[None], sampling).softmax(-1)[0]  # (V,) with 4 non-zero entries
    n = 4000
    groups = engine(model_dir, tokenizer, batch_size=n).generate([prompt], n, sampling, seed=11)
    counts = torch.bincount(torch.tensor([g.token_ids[0] for g in groups[0]]), minlength=expected.numel())
    assert set(counts.nonzero().squeeze(-1).tolist()) <= set(expected.nonzero().squeeze(-1).tolist())
    total_variation = 0.5 * (counts / n - expected).abs().sum()
    assert total_variation < 0.03  # 4 outcomes, 4000 draws: the sampling error is about 0.01


def test_decoding_setting_is_checked():
    with pytest.raises(ValueError, match="decoding='fast'"):
        HFEngine(decoding="fast")


def test_the_loop_runs_for_plain_and_lora_models_and_generate_where_asked(model_dir, tokenizer, monkeypatch):
    from peft import LoraConfig, get_peft_model

    import bridge_pl.rollout.hf as hf

    calls = []
    monkeypatch.setattr(hf, "decode", lambda *a, **k: calls.append(1) or decode_original(*a, **k))
    sampling = SamplingConfig(max_new_tokens=4)
    engine(model_dir, tokenizer).generate(prompts(tokenizer), 2, sampling)
    assert len(calls) == 1
    lora = HFEngine()
    lora.bind(get_peft_model(load_model(model_dir), LoraConfig(r=2, target_modules=["q_proj"])), tokenizer, "x")
    lora.generate(prompts(tokenizer), 2, sampling)
    assert len(calls) == 2
    engine(model_dir, tokenizer, decoding="generate").generate(prompts(tokenizer), 2, sampling)
    assert len(calls) == 2


def test_generate_ignores_the_models_generation_config_extras(model_dir, tokenizer):
    # Both paths sample the SamplingConfig distribution: a checkpoint's repetition penalty, no-repeat n-gram size
    # or suppressed tokens (which `generate` would take from model.generation_config) are not applied.
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=24, stop=())
    ours, theirs = engine(model_dir, tokenizer), engine(model_dir, tokenizer, decoding="generate")
    expected = [[c.token_ids for c in g] for g in ours.generate(prompts(tokenizer), 1, sampling)]
    # suppressing the first greedy token of the first prompt would change that answer: the extras would matter
    extras = {"repetition_penalty": 50.0, "no_repeat_ngram_size": 1, "suppress_tokens": [expected[0][0][0]]}
    for key, value in extras.items():
        setattr(theirs.policy.generation_config, key, value)
    got = [[c.token_ids for c in g] for g in theirs.generate(prompts(tokenizer), 1, sampling)]
    assert got == expected
    assert theirs.policy.generation_config.no_repeat_ngram_size == 1  # the model's own config is put back
