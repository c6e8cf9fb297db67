"""The project tokenizer: deterministic, lossless, one token per name and per digit, ChatML prompts."""

from __future__ import annotations

import statistics
import subprocess
import sys
from importlib.resources import files

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from bridge_pl.augment.bridge import render_bridge_answer
from bridge_pl.data.prompts import SYSTEM_PROMPT, format_conversation, format_prompt
from bridge_pl.models.tokenizer import (
    ANSWER_TAGS,
    EOS_TOKEN,
    IM_START,
    PAD_TOKEN,
    build_tokenizer,
    name_tokens,
    train_backend,
)
from bridge_pl.task.cot import render_no_cot, render_plain_cot
from bridge_pl.task.generator import GeneratorConfig, generate_problem, stream_rng
from bridge_pl.task.question import render_question
from bridge_pl.task.vocabulary import load_vocabulary

SYS_BLOCK = f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n"


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="module")
def samples() -> list[tuple[str, str, str, str]]:
    """(question, plain CoT, BRIDGE answer, no-CoT answer) for problems outside the training corpus's stream."""
    rows = []
    for index in range(60):
        problem = generate_problem(GeneratorConfig(), 7, index)
        rng = stream_rng("test-tokenizer", index)
        rows.append(
            (
                render_question(problem),
                render_plain_cot(problem, rng),
                render_bridge_answer(problem, rng)[0],
                render_no_cot(problem, rng),
            )
        )
    return rows


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_training_is_deterministic():
    first = train_backend(corpus_size=40, vocab_size=1600, seed=3).to_str()
    second = train_backend(corpus_size=40, vocab_size=1600, seed=3).to_str()
    assert first == second
    assert train_backend(corpus_size=40, vocab_size=1600, seed=4).to_str() != first


def test_special_tokens_and_size(tokenizer):
    assert len(tokenizer) <= 2048
    assert tokenizer.eos_token == EOS_TOKEN
    assert tokenizer.pad_token == PAD_TOKEN
    assert tokenizer.bos_token is None
    assert tokenizer.convert_tokens_to_ids([PAD_TOKEN, IM_START, EOS_TOKEN]) == [0, 1, 2]
    assert encode(tokenizer, "x") == tokenizer("x")["input_ids"]  # no bos or eos added by default


def test_vocabulary_file_gives_names_and_corpus():
    packaged = files("bridge_pl.task") / "vocabulary.json"
    from_file = train_backend(str(packaged), corpus_size=20, vocab_size=1600).to_str()
    assert from_file == train_backend(None, corpus_size=20, vocab_size=1600).to_str()


def test_too_small_vocab_size_is_refused():
    with pytest.raises(ValueError, match="vocab_size=300 is too small"):
        train_backend(corpus_size=1, vocab_size=300)


def test_generated_text_round_trips(tokenizer, samples):
    texts = [text for row in samples for text in row]
    texts += [format_conversation(tokenizer, question, answer) for question, _, answer, _ in samples[:10]]
    for text in texts:
        assert tokenizer.decode(encode(tokenizer, text)) == text


@settings(max_examples=300, deadline=None)
@given(text=st.text())
def test_any_text_round_trips(tokenizer, text):
    assert tokenizer.decode(encode(tokenizer, text)) == text


PIECES = [" Riverside", " Library", "'s", "\n", "\n\n", " ", "  ", "\t", "-", "=", "é", "🙂", "\\boxed{", "}", " 7"]


@settings(max_examples=200, deadline=None)
@given(pieces=st.lists(st.sampled_from(PIECES + list(ANSWER_TAGS) + ["<|im_end|>"]), max_size=30))
def test_mixed_names_tags_and_bytes_round_trip(tokenizer, pieces):
    text = "".join(pieces) + "".join(name_tokens(load_vocabulary())[:3])
    assert tokenizer.decode(encode(tokenizer, text)) == text


def test_every_name_is_one_token(tokenizer):
    names = name_tokens(load_vocabulary())
    assert len(names) > 50
    for name in names:
        assert name.startswith(" ")
        assert len(encode(tokenizer, name)) == 1, name
    name = names[0]
    ids = encode(tokenizer, f"The number of each{name}'s")
    assert tokenizer.convert_tokens_to_ids(name) in ids


def test_digits_are_single_tokens(tokenizer):
    assert len(encode(tokenizer, "1234")) == 4
    tokens = tokenizer.convert_ids_to_tokens(encode(tokenizer, "x = -1234 + 5"))
    digit_tokens = [t for t in tokens if any(c.isdigit() for c in t)]
    assert [sum(c.isdigit() for c in t) for t in digit_tokens] == [1] * 5


@pytest.mark.parametrize("token", [*ANSWER_TAGS, PAD_TOKEN, IM_START, EOS_TOKEN])
def test_tags_are_single_tokens(tokenizer, token):
    assert len(encode(tokenizer, token)) == 1
    assert len(encode(tokenizer, f"a{token}b")) == 3


def test_skip_special_tokens_keeps_answer_tags(tokenizer):
    text = "<think>\nSo x = 3.\n</think>\n<answer>\nThe final answer is \\boxed{3}.\n</answer><|im_end|><|endoftext|>"
    decoded = tokenizer.decode(encode(tokenizer, text), skip_special_tokens=True)
    assert decoded == text.removesuffix("<|im_end|><|endoftext|>")


def test_chat_template_is_chatml(tokenizer):
    messages = [
        {"role": "system", "content": "SYS"},
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": "A"},
    ]
    head = "<|im_start|>system\nSYS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n"
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == head + "<|im_start|>assistant\nA<|im_end|>\n"
    prompt = tokenizer.apply_chat_template(messages[:2], tokenize=False, add_generation_prompt=True)
    assert prompt == head + "<|im_start|>assistant\n<think>"  # chat APIs get the paper's prompt as is


def test_default_system_prompt_is_the_papers(tokenizer):
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Q"}], tokenize=False)
    assert text == SYS_BLOCK + "<|im_start|>user\nQ<|im_end|>\n"
    assert SYSTEM_PROMPT.startswith("A conversation that the assistant solves the user's problem.")
    assert SYSTEM_PROMPT.endswith(
        "<think> all the reasoning process here </think> <answer> final answer here </answer>."
    )


def test_prompt_and_conversation(tokenizer, samples):
    question, _, answer, _ = samples[0]
    prompt = format_prompt(tokenizer, question)
    assert prompt == SYS_BLOCK + f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n<think>"
    conversation = format_conversation(tokenizer, question, answer)
    assert conversation == prompt.removesuffix("<think>") + f"{answer}<|im_end|>\n"
    assert answer.startswith("<think>\n")
    assert conversation.startswith(prompt)
    # The prompt's tokens are a prefix of the conversation's, so SFT masks and RL prompts agree.
    prompt_ids, conversation_ids = encode(tokenizer, prompt), encode(tokenizer, conversation)
    assert conversation_ids[: len(prompt_ids)] == prompt_ids


def test_save_and_reload(tokenizer, samples, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert reloaded.backend_tokenizer.to_str() == tokenizer.backend_tokenizer.to_str()
    assert reloaded.chat_template == tokenizer.chat_template
    assert (reloaded.eos_token, reloaded.pad_token, reloaded.bos_token) == (EOS_TOKEN, PAD_TOKEN, None)
    assert len(reloaded) == len(tokenizer)
    question, plain, answer, _ = samples[1]
    for text in (format_prompt(tokenizer, question), format_conversation(tokenizer, question, answer), plain):
        assert encode(reloaded, text) == encode(tokenizer, text)
        assert reloaded.decode(encode(reloaded, text)) == text
    assert format_prompt(reloaded, question) == format_prompt(tokenizer, question)


def test_conversation_length(tokenizer, samples):
    lengths = [len(encode(tokenizer, format_conversation(tokenizer, q, a))) for q, _, a, _ in samples]
    mean = statistics.mean(lengths)
    print(f"tokens per SFT conversation (question + BRIDGE answer, op 15-20): mean {mean:.0f}, max {max(lengths)}")
    assert mean < 1000
    assert max(lengths) < tokenizer.model_max_length


def test_task_layer_does_not_import_models():
    code = (
        "import sys, bridge_pl, bridge_pl.task, bridge_pl.augment; "
        "assert 'bridge_pl.models' not in sys.modules and 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_llama_minimal_template_renders_the_paper_prompt(tmp_path):
    from bridge_pl.data.encoding import load_chat_tokenizer
    from bridge_pl.models.model_io import init_model_dir

    directory = init_model_dir(tmp_path, preset="llama-1m")
    tokenizer, _ = load_chat_tokenizer(str(directory), chat_template="llama-minimal")
    prompt = format_prompt(tokenizer, "Q?")
    header = "<|start_header_id|>{}<|end_header_id|>\n\n"
    assert prompt == (f"{header.format('system')}{SYSTEM_PROMPT}<|eot_id|>{header.format('user')}Q?<|eot_id|>"
                      f"{header.format('assistant')}<think>")  # fmt: skip
    assert format_conversation(tokenizer, "Q?", "<think>\nA").startswith(prompt.removesuffix("<think>"))
