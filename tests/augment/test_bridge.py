"""BRIDGE behavior injection: switches, invariants of the exploration schedule, checker-valid answers."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge_pl.augment.bridge import PRESETS, BehaviorConfig, behavior_preset, render_bridge_answer
from bridge_pl.task.cot import render_plain_cot
from bridge_pl.task.generator import GeneratorConfig, generate_problem, iter_problems
from bridge_pl.task.verify import check_cot


def _steps(text: str) -> list[str]:
    return [line for line in text.split("\n") if line.startswith("- ")]


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10**9), preset=st.sampled_from(sorted(PRESETS)), modulus=st.sampled_from([None, 23]))
def test_every_preset_passes_the_checker(seed, preset, modulus):
    problem = generate_problem(GeneratorConfig(modulus=modulus), seed)
    text, stats = render_bridge_answer(problem, random.Random(seed), behavior_preset(preset))
    check = check_cot(text, expected_answer=problem.answer, modulus=modulus)
    assert check.ok, check.errors
    assert stats.steps == len(_steps(text))


def test_vanilla_preset_is_exactly_plain_cot():
    for seed in range(30):
        problem = generate_problem(GeneratorConfig(), seed)
        text, stats = render_bridge_answer(problem, random.Random(seed), PRESETS["vanilla"])
        assert text == render_plain_cot(problem, random.Random(seed))
        assert stats.failed_attempts == stats.revisits == stats.analyses == 0


@pytest.mark.parametrize("exploration", [0.1, 0.5, 1.0])
def test_exploration_schedule_invariants(exploration):
    config = BehaviorConfig(exploration=exploration)
    failed_total = 0
    for problem in iter_problems(GeneratorConfig(), seed=9, count=60):
        text, stats = render_bridge_answer(problem, random.Random(problem.index), config)
        steps = _steps(text)
        failed = [" = " not in line for line in steps]
        assert not failed[0] and not failed[-1]  # first and target steps are real steps
        assert not any(a and b for a, b in zip(failed, failed[1:], strict=False))  # never two failures in a row
        assert sum(failed) == stats.failed_attempts
        assert stats.revisits <= stats.failed_attempts
        assert steps[-1].split(" = ")[-1].rstrip(".") == str(problem.answer)
        failed_total += stats.failed_attempts
    assert failed_total > 0


def test_full_bridge_injects_each_behavior_at_plausible_rates():
    totals = {"failed": 0, "analysis": 0, "revisit": 0, "with_failure": 0}
    problems = list(iter_problems(GeneratorConfig(), seed=100, count=200))
    for problem in problems:
        _, stats = render_bridge_answer(problem, random.Random(problem.index), PRESETS["full"])
        totals["failed"] += stats.failed_attempts
        totals["analysis"] += stats.analyses
        totals["revisit"] += stats.revisits
        totals["with_failure"] += stats.failed_attempts > 0
    n = len(problems)
    # paper_spec §A.7: 0.73 failed attempts per answer (52% with one), 3.78 analyses, 0.75 revisits.
    assert 0.4 < totals["failed"] / n < 1.1
    assert 0.3 < totals["with_failure"] / n < 0.7
    assert 2.5 < totals["analysis"] / n < 5.0
    assert 0.4 < totals["revisit"] / n < 1.1


def test_subgoal_links_perform_one_operation_each():
    problem = generate_problem(GeneratorConfig(), 12)
    text, _ = render_bridge_answer(problem, random.Random(0), PRESETS["exploitation"])
    for line in _steps(text):
        chain = line.rsplit(". ", 1)[-1] if " = " in line else ""
        numeric = [link for link in chain.rstrip(".").split(" = ")[2:]]
        ops = [sum(link.count(op) for op in (" + ", " - ", " * ")) for link in numeric]
        assert all(a - b == 1 for a, b in zip(ops, ops[1:], strict=False)), line


def test_analysis_level_four_restates_every_instance_condition():
    problem = generate_problem(GeneratorConfig(), 13)
    config = BehaviorConfig(exploration=0.0, subgoal=False, analysis_level=4)
    _, stats = render_bridge_answer(problem, random.Random(0), config)
    expected = sum(1 for i in problem.topo if problem.nodes[i].kind == "instance" and problem.nodes[i].inputs)
    assert stats.analyses == expected


def test_behavior_config_validation():
    with pytest.raises(ValueError) as info:
        BehaviorConfig(exploration=1.5, analysis_level=9)
    assert "exploration=1.5" in str(info.value) and "analysis_level=9" in str(info.value)
    with pytest.raises(ValueError, match="unknown behavior preset"):
        behavior_preset("wild")
