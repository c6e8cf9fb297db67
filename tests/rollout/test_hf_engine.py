"""HFEngine and the engine contract on a tiny model: shapes, stop handling, seeds, greedy parity, staleness."""

from __future__ import annotations

import pytest
import torch

from bridge_pl.data.prompts import format_prompt
from bridge_pl.models.model_io import init_model_dir, load_model, load_tokenizer
from bridge_pl.rollout import Completion, HFEngine, SamplingConfig, cut_at_stop


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return init_model_dir(tmp_path_factory.mktemp("model"), preset="llama-1m", seed=3)


@pytest.fixture(scope="module")
def tokenizer(model_dir):
    return load_tokenizer(model_dir)


@pytest.fixture()
def engine(model_dir, tokenizer):
    engine = HFEngine(batch_size=5, return_logprobs=True)
    engine.bind(load_model(model_dir), tokenizer, str(model_dir))
    return engine


def prompts(tokenizer, n=3):
    questions = ["How many Pens does each Bag have?", "The number of each Bag's Pen equals 3.", "Hello"][:n]
    return [tokenizer(format_prompt(tokenizer, q), add_special_tokens=False)["input_ids"] for q in questions]


def test_shapes_lengths_and_finish_reasons(engine, tokenizer):
    groups = engine.generate(prompts(tokenizer), n=4, sampling=SamplingConfig(max_new_tokens=12), seed=0)
    assert [len(g) for g in groups] == [4, 4, 4]
    for completion in (c for g in groups for c in g):
        assert isinstance(completion, Completion) and 1 <= len(completion.token_ids) <= 12
        assert len(completion.logprobs) == len(completion.token_ids)
        assert all(lp <= 0 for lp in completion.logprobs)
        assert completion.finish_reason in ("stop", "length")
        if completion.finish_reason == "length":
            assert len(completion.token_ids) == 12
        assert completion.text == tokenizer.decode(completion.token_ids, skip_special_tokens=True)


def test_same_seed_same_samples_other_seed_other_samples(engine, tokenizer):
    sampling = SamplingConfig(max_new_tokens=10)
    first = engine.generate(prompts(tokenizer), 3, sampling, seed=7)
    again = engine.generate(prompts(tokenizer), 3, sampling, seed=7)
    other = engine.generate(prompts(tokenizer), 3, sampling, seed=8)
    ids = lambda groups: [c.token_ids for g in groups for c in g]  # noqa: E731
    assert ids(first) == ids(again) and ids(first) != ids(other)


def test_greedy_matches_a_plain_argmax_loop(engine, model_dir, tokenizer):
    model = load_model(model_dir).eval()
    sampling = SamplingConfig(temperature=0.0, max_new_tokens=8, stop=())
    for prompt in prompts(tokenizer):
        (completion,) = engine.generate([prompt], 1, sampling)[0]
        ids = list(prompt)
        with torch.no_grad():
            for _ in range(len(completion.token_ids)):
                ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
        assert completion.token_ids == ids[len(prompt) :]


def test_logprobs_are_those_of_the_tempered_distribution(engine, model_dir, tokenizer):
    model = load_model(model_dir).eval()
    prompt = prompts(tokenizer, 1)[0]
    (completion,) = engine.generate([prompt], 1, SamplingConfig(temperature=0.7, max_new_tokens=6, stop=()), seed=1)[0]
    with torch.no_grad():
        logits = model(torch.tensor([prompt + completion.token_ids])).logits[0, len(prompt) - 1 : -1] / 0.7
    expected = torch.log_softmax(logits, -1).gather(-1, torch.tensor(completion.token_ids)[:, None]).squeeze(-1)
    assert completion.logprobs == pytest.approx(expected.tolist(), abs=1e-4)


def test_cut_at_stop_keeps_the_stop_string_and_drops_the_rest(tokenizer):
    ids = tokenizer("x = 3.\n</answer> junk after", add_special_tokens=False)["input_ids"]
    kept, text, finish = cut_at_stop(ids + [tokenizer.pad_token_id] * 3, tokenizer, ("</answer>",), set())
    assert text.endswith("</answer>") and finish == "stop"
    assert tokenizer.decode(kept).endswith("</answer>")
    eos = tokenizer.eos_token_id
    kept, _, finish = cut_at_stop([*ids[:2], eos, 5, 6], tokenizer, ("</answer>",), {eos})
    assert kept == [*ids[:2], eos] and finish == "stop"
    kept, _, finish = cut_at_stop(ids[:2], tokenizer, ("</answer>",), {eos})
    assert kept == ids[:2] and finish == "length"


def test_engine_refuses_use_before_bind_and_pushes_when_stale(model_dir, tokenizer):
    engine = HFEngine()
    with pytest.raises(RuntimeError, match="bind"):
        engine.generate([[1, 2]], 1, SamplingConfig())
    policy = load_model(model_dir)
    engine.bind(policy, tokenizer, str(model_dir))
    other = load_model(model_dir)
    engine.mark_stale()
    engine.generate([[1, 2]], 1, SamplingConfig(max_new_tokens=2), policy=other)
    assert engine.policy is other and not engine._stale  # a stale engine pushes before it generates
    with pytest.raises(ValueError, match="batch_size"):
        HFEngine(batch_size=0)


def test_sampling_config_reports_every_problem():
    problems = SamplingConfig(temperature=-1, top_p=0, top_k=-2, max_new_tokens=0).config_errors("rollout")
    assert len(problems) == 4 and all(p.startswith("rollout.") for p in problems)
