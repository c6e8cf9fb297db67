"""iGSM-reasoning as a `Task`: the generator, renderers, extractor and checker of this package, unchanged."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from bridge_pl.task.base import Task
from bridge_pl.task.cot import StepWriter, render_no_cot, render_plain_cot
from bridge_pl.task.generator import GeneratorConfig, generate_problem, iter_problems
from bridge_pl.task.problem import Problem
from bridge_pl.task.question import render_question
from bridge_pl.task.verify import check_cot, strict_match_reward

__all__ = ["IGSMTask"]


class IGSMTask(Task):
    """The paper's iGSM-reasoning problems (paper_spec §A): hierarchical item graphs, integer (or modular) answers."""

    name: ClassVar[str] = "igsm"
    config_type: ClassVar[type] = GeneratorConfig
    step_writer: ClassVar[type] = StepWriter

    def default_config(self) -> GeneratorConfig:
        """The generator's defaults (ops 15-20, plain integers)."""
        return GeneratorConfig()

    def splits(self) -> Mapping[str, Any]:
        """The paper's splits and their tiny_* versions (`bridge_pl.task.presets.SPLITS`)."""
        from bridge_pl.task.presets import SPLITS

        return SPLITS

    def generate(self, config: GeneratorConfig, seed: int, index: int) -> Problem:
        """Problem `index` of the stream `seed`."""
        return generate_problem(config, seed, index)

    def iter_problems(self, config: GeneratorConfig, seed: int, count: int, start: int = 0) -> Iterator[Problem]:
        """Problems `start` .. `start + count - 1` of the stream `seed`."""
        return iter_problems(config, seed, count, start)

    def problem_to_dict(self, problem: Problem) -> dict[str, Any]:
        """`Problem.to_dict`."""
        return problem.to_dict()

    def problem_from_dict(self, data: Mapping[str, Any]) -> Problem:
        """`Problem.from_dict` (checked)."""
        return Problem.from_dict(dict(data))

    def problem_from_text(self, query: str, response: str | None, *, modulus: int | None = None) -> Problem:
        """The DAG extractor (`bridge_pl.task.extract.extract_problem`)."""
        from bridge_pl.task.extract import extract_problem  # large; only text rows need it

        return extract_problem(query, response, modulus=modulus)

    def question(self, problem: Problem) -> str:
        """`render_question`."""
        return render_question(problem)

    def plain_cot(self, problem: Problem, rng: random.Random) -> str:
        """`render_plain_cot` along ``problem.topo``."""
        return render_plain_cot(problem, rng)

    def no_cot(self, problem: Problem, rng: random.Random) -> str:
        """`render_no_cot`."""
        return render_no_cot(problem, rng)

    def ground_truth(self, problem: Problem) -> int:
        """The target's value."""
        return problem.answer

    def num_ops(self, problem: Problem) -> int:
        """The problem's operation count."""
        return problem.num_ops

    def to_dot(self, problem: Problem) -> str:
        """`bridge_pl.task.draw.to_dot`: nodes coloured by role, layers, constants."""
        from bridge_pl.task.draw import to_dot

        return to_dot(problem)

    def truth_error(self, value: Any) -> str | None:
        """Not an integer: the reward compares the boxed text with it."""
        if isinstance(value, int) and not isinstance(value, bool):
            return None
        return 'must be an integer (or integer text such as "24")'

    def check_answer(self, query: str, response: str, final_answer: Any, *, modulus: int | None = None) -> list[str]:
        """`check_cot`'s errors: every chain's links, definitions before use, the boxed answer equal to final_answer."""
        check = check_cot(response, expected_answer=final_answer, modulus=modulus)
        return list(check.errors) or ([] if check.ok else ["the checker rejected the answer"])

    def answer_of_question(self, query: str, *, modulus: int | None = None) -> str | None:
        """The target's value of the question's DAG (None when the text cannot be read)."""
        try:
            return str(self.problem_from_text(query, None, modulus=modulus).answer)
        except ValueError:
            return None

    def is_correct(self, completion: str, truth: Any) -> bool:
        """Strict match of the first ``\\boxed{}`` (the paper's judge)."""
        return strict_match_reward(completion, truth) == 1.0

    def default_rewards(self) -> list[Any]:
        """Strict match of the first ``\\boxed{}`` (the paper's reward)."""
        from bridge_pl.task.rewards import BoxedMatch  # the rewards module is written alongside

        return [BoxedMatch(weight=1.0)]
