"""The text the project tokenizer's BPE is trained on: generated questions and answers of every style.

It lives in the data layer because it renders answers with behavior injection (`bridge_pl.augment`); the
tokenizer (`bridge_pl.models.tokenizer`) takes it as an argument and reaches the augmentation only through this
module (its default corpus).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from bridge_pl.augment.bridge import render_bridge_answer
from bridge_pl.data.prompts import SYSTEM_PROMPT
from bridge_pl.task.base import DEFAULT_TASK, TASK_NAMES, Task, get_task
from bridge_pl.task.cot import render_no_cot, render_plain_cot
from bridge_pl.task.generator import GeneratorConfig, generate_problem, stream_rng
from bridge_pl.task.question import render_question

__all__ = ["training_corpus"]


def training_corpus(vocabulary: str | os.PathLike[str] | None, corpus_size: int, seed: int) -> Iterator[str]:
    """The BPE training text: per problem its question, three answers (plain, BRIDGE, no-CoT) and the prompt frame.

    Every other registered task adds a fifth as many problems of its SFT split, so that the one project tokenizer
    keeps their sequences short too (DyVal's three-letter names, operation words and decimals).

    Args:
        vocabulary: Vocabulary JSON file to draw problems from; None uses the packaged one.
        corpus_size: Number of iGSM problems.
        seed: Problem stream (op 15-20, the paper's SFT and RL difficulty).

    Yields:
        Texts, each at most one problem's answer long.
    """
    config = GeneratorConfig(vocabulary=None if vocabulary is None else os.fspath(vocabulary))
    for index in range(corpus_size):
        problem = generate_problem(config, seed, index)
        rng = stream_rng("tokenizer-corpus", seed, index)
        yield render_question(problem)
        yield render_plain_cot(problem, rng)
        yield render_bridge_answer(problem, rng)[0]
        yield render_no_cot(problem, rng)
        # The frame of every conversation, as often as the conversations themselves.
        yield f"system\n{SYSTEM_PROMPT}\nuser\nassistant\n"
    for name in TASK_NAMES:
        if name != DEFAULT_TASK:
            yield from _task_corpus(get_task(name), corpus_size // 5, seed)


def _task_corpus(task: Task, count: int, seed: int) -> Iterator[str]:
    """Question and plain, BRIDGE and no-CoT answers of `count` problems of the task's SFT split."""
    config = task.splits()["sft"].generator
    for index in range(count):
        problem = task.generate(config, seed, index)
        rng = stream_rng("tokenizer-corpus", task.name, seed, index)
        yield task.question(problem)
        yield task.plain_cot(problem, rng)
        yield render_bridge_answer(problem, rng, make_writer=task.step_writer)[0]
        yield task.no_cot(problem, rng)
