"""Answer writing: frame, plain CoT, no-CoT and the step writer's sentences, all checked by the CoT checker."""

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge_pl.task.cot import ANSWER_TEMPLATE, StepWriter, analysis_probability, render_no_cot, render_plain_cot
from bridge_pl.task.generator import GeneratorConfig, generate_problem
from bridge_pl.task.verify import check_cot, extract_answer

FRAME = re.compile(r"\A<think>\n.*\n</think>\n<answer>\nThe final answer is \\boxed\{(-?\d+)\}\.\n</answer>\Z", re.S)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 10**9), modulus=st.sampled_from([None, 23]))
def test_plain_and_no_cot_answers_pass_the_checker(seed, modulus):
    problem = generate_problem(GeneratorConfig(modulus=modulus), seed)
    for text in (render_plain_cot(problem, random.Random(seed)), render_no_cot(problem, random.Random(seed))):
        assert FRAME.match(text), text
        assert extract_answer(text) == str(problem.answer)
        check = check_cot(text, expected_answer=problem.answer, modulus=modulus)
        assert check.ok, check.errors
        assert check.num_equations == len(problem.topo)


def test_plain_cot_has_one_step_per_necessary_node_in_order():
    problem = generate_problem(GeneratorConfig(), 3)
    text = render_plain_cot(problem, random.Random(0))
    steps = [line for line in text.split("\n") if line.startswith("- ")]
    assert len(steps) == len(problem.topo)
    for line, node_id in zip(steps, problem.topo, strict=True):
        first_name = re.search(r"the number of (each .+?'s [^.]+?)(?: is | as |\.)", line).group(1)
        assert first_name == problem.nodes[node_id].name


def test_same_rng_same_text_and_wording_varies():
    problem = generate_problem(GeneratorConfig(), 4)
    assert render_plain_cot(problem, random.Random(1)) == render_plain_cot(problem, random.Random(1))
    texts = {render_plain_cot(problem, random.Random(k)) for k in range(5)}
    assert len(texts) == 5


def test_step_writer_reflects_on_locked_nodes_and_revisits_them():
    problem = generate_problem(GeneratorConfig(), 5)
    writer = StepWriter(problem, random.Random(0))
    target = problem.topo[-1]
    locked_line = writer.step(target)  # nothing solved yet: a failed attempt
    assert " = " not in locked_line and target not in writer.solved and writer.failed_attempts == 1
    for node_id in problem.topo:
        if node_id not in writer.solved:
            writer.step(node_id)
    assert writer.revisits == 1
    assert check_cot(writer.finish(), expected_answer=problem.answer).ok


def test_analysis_probability_tables():
    assert analysis_probability(0, 4) == 0.0
    assert analysis_probability(2, 1) == 0.1 and analysis_probability(2, 3) == 0.8 and analysis_probability(2, 9) == 1.0
    assert analysis_probability(4, 1) == 1.0
    with pytest.raises(ValueError, match="analysis_level=7"):
        analysis_probability(7, 1)


def test_template_is_the_benchmark_frame():
    assert ANSWER_TEMPLATE.format(body="x", answer=3).endswith("<answer>\nThe final answer is \\boxed{3}.\n</answer>")
