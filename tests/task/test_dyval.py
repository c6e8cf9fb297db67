"""DyVal (PromptBench) tasks: generation, DyVal's question format, answers, the checker and BRIDGE injection."""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import subprocess
import sys

import pytest

from bridge_pl.augment.bridge import PRESETS, BehaviorConfig, render_bridge_answer
from bridge_pl.task.dyval import (
    DyValConfig,
    DyValNode,
    DyValProblem,
    DyValProblemError,
    DyValStepWriter,
    check_dyval_cot,
    dyval_answer_of,
    dyval_names,
    generate_dyval_problem,
    render_dyval_no_cot,
    render_dyval_plain_cot,
    render_dyval_question,
)

FAMILIES = ("arithmetic", "logic")


def _problem(family, specs, target):
    """A hand-built problem from (name, op, inputs, value) rows, all necessary, described in row order."""
    nodes = [DyValNode(k, name, op, tuple(inputs), value, True) for k, (name, op, inputs, value) in enumerate(specs)]
    answer = str(nodes[target].value) if family == "logic" else str(round(float(nodes[target].value), 8))
    ids = list(range(len(nodes)))
    return DyValProblem(family, nodes, ids, [], target, answer, ids)


ARITHMETIC = _problem(
    "arithmetic",
    [
        ("aaa", None, [], 3),
        ("aab", None, [], 4),
        ("aac", "+", [0, 1], 7),
        ("aad", "**", [2], 49),
        ("aae", "-", [3, 0, 1], 42),
    ],
    4,
)
LOGIC = _problem(
    "logic",
    [("aaa", None, [], True), ("aab", None, [], False), ("aac", "and", [0, 1], False), ("aad", "not", [2], True)],
    3,
)


def test_hand_worked_arithmetic():
    question = render_dyval_question(ARITHMETIC, instructions=False)
    assert question == (
        "Here is a description of an arithmetic problem:\n"
        "The value of aaa is 3.\n"
        "The value of aab is 4.\n"
        "aac gets its value by adding together the value of aaa and aab.\n"
        "aad gets its value by squaring the value that aac has.\n"
        "aae gets its value by subtracting the sum of the values of aaa and aab from the value of aad.\n"
        "Compute the result of aae."
    )
    full = render_dyval_question(ARITHMETIC)
    assert full.endswith(
        "Compute the result of aae. If the solution cannot be calculated, answer 'N/A'. Ensure your result is within "
        "a relative precision of 0.0001 (or 0.01%) compared to the ground truth value. Ensure your final result "
        "begins with '<<<' and ends with '>>>', for example, if the answer is 1, your final result should be <<<1>>>."
    )
    assert ARITHMETIC.answer == "42.0" == dyval_answer_of(question) == dyval_answer_of(full)
    assert ARITHMETIC.check_values() == []
    subgoal = DyValStepWriter(ARITHMETIC, random.Random(0), subgoal=True)
    for node_id in ARITHMETIC.topo:
        subgoal.step(node_id)
    assert "aae = aad - aaa - aab = 49.0 - 3.0 - 4.0 = 46.0 - 4.0 = 42.0." in subgoal.lines[-1]
    assert "aad = (aac)^2 = (7.0)^2 = 7.0 * 7.0 = 49.0." in subgoal.lines[-2]
    assert check_dyval_cot(question, subgoal.finish()) == []


def test_hand_worked_logic():
    question = render_dyval_question(LOGIC, instructions=False)
    assert question == (
        "Here is a description of a boolean logic problem:\n"
        "aaa is True.\n"
        "aab is False.\n"
        "The value of aac equals to (aaa AND aab).\n"
        "The value of aad equals to (NOT aac).\n"
        "Compute the result of aad."
    )
    assert render_dyval_question(LOGIC).endswith(
        "Compute the result of aad. If the solution can not be calculated, answer 'N/A'. Ensure your final result "
        "begins with '<<<' and ends with '>>>', for example, if the answer is True, your final result should be "
        "<<<True>>>."
    )
    assert LOGIC.answer == "True" == dyval_answer_of(question)
    no_cot = render_dyval_no_cot(LOGIC)
    assert "aac = (aaa AND aab) = (True AND False) = False.\naad = (NOT aac) = (NOT False) = True." in no_cot
    assert no_cot.endswith("The final answer is \\boxed{True}.\n</answer>")
    assert check_dyval_cot(question, no_cot) == []


def test_names_skip_english_words_as_dyval_does():
    names = list(itertools.islice(dyval_names(), 40))
    assert names[:3] == ["aaa", "aab", "aac"]
    assert "aal" not in names and "aba" not in names and "abb" not in names
    assert names[names.index("aaz") + 1] == "abc"  # DyVal's own example: ... aaz, abc, abd


def _check_all_answers(problem, seed):
    question = render_dyval_question(problem)
    assert dyval_answer_of(question) == problem.answer
    plain = render_dyval_plain_cot(problem, random.Random(seed))
    assert check_dyval_cot(question, plain) == [], plain
    assert check_dyval_cot(question, render_dyval_no_cot(problem)) == []
    for name, behaviors in PRESETS.items():
        answer, _ = render_bridge_answer(problem, random.Random(seed), behaviors, make_writer=DyValStepWriter)
        assert check_dyval_cot(question, answer) == [], (name, answer)
        if name == "vanilla":
            assert answer == plain


@pytest.mark.parametrize("family", FAMILIES)
def test_thousands_of_seeds_check_out(family):
    config = DyValConfig(family=family, depth=3, redundant_min=0, redundant_max=8, order="random")
    for index in range(2000):
        problem = generate_dyval_problem(config, 11, index)
        assert problem.structure_errors() == [] and problem.check_values() == []
        _check_all_answers(problem, index)


@pytest.mark.parametrize("family", FAMILIES)
def test_paper_ood_setting_depth5_many_redundant(family):
    config = DyValConfig(family=family, depth=5, redundant_min=20, redundant_max=22, order="random")
    for index in range(40):
        problem = generate_dyval_problem(config, 5, index)
        assert 20 <= problem.meta["redundant_trees"] <= 22
        assert all(not problem.nodes[i].necessary for i in problem.redundant)
        _check_all_answers(problem, index)


def test_orders_follow_dyval():
    base = dict(family="arithmetic", depth=3, redundant_min=2, redundant_max=2)
    topo = generate_dyval_problem(DyValConfig(**base, order="topological"), 3, 0)
    rev = generate_dyval_problem(DyValConfig(**base, order="reversed"), 3, 0)
    assert rev.question_order == topo.question_order[::-1]
    necessary = [i for i in topo.question_order if topo.nodes[i].necessary]
    assert necessary == topo.topo  # redundant sentences are inserted among the topological ones


def _digest(seeds):
    lines = []
    for family in FAMILIES:
        config = DyValConfig(family=family, depth=4, redundant_min=0, redundant_max=8, order="random")
        for index in seeds:
            problem = generate_dyval_problem(config, 9, index)
            answer, _ = render_bridge_answer(
                problem, random.Random(index), PRESETS["full"], make_writer=DyValStepWriter
            )
            lines += [problem.to_json(), render_dyval_question(problem), answer]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def test_deterministic_across_processes_and_hash_seeds():
    code = "from tests.task.test_dyval import _digest; print(_digest(range(60)))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == _digest(range(60))


def _mean_stats(exploration, analysis_level=0, count=300):
    config = DyValConfig(family="arithmetic", depth=4, redundant_min=0, redundant_max=8)
    behaviors = BehaviorConfig(exploration=exploration, subgoal=False, analysis_level=analysis_level)
    failed = analyses = 0
    for index in range(count):
        problem = generate_dyval_problem(config, 21, index)
        _, stats = render_bridge_answer(problem, random.Random(index), behaviors, make_writer=DyValStepWriter)
        failed += stats.failed_attempts
        analyses += stats.analyses
    return failed / count, analyses / count


def test_behavior_counts_follow_probabilities():
    assert _mean_stats(0.0) == (0.0, 0.0)
    low, _ = _mean_stats(0.1)
    high, _ = _mean_stats(0.3)
    assert 0 < low < high
    _, analyses = _mean_stats(0.0, analysis_level=4)
    assert analyses > 5  # level 4 restates every node with an input


def test_json_round_trip_and_errors():
    problem = generate_dyval_problem(DyValConfig(redundant_min=3, redundant_max=3), 1, 2)
    again = DyValProblem.from_json(problem.to_json())
    assert again == problem and again.to_json() == problem.to_json()
    with pytest.raises(DyValProblemError, match="not a DyVal problem JSON"):
        DyValProblem.from_json("{")
    data = problem.to_dict()
    data["nodes"][problem.target]["value"] = 123456
    with pytest.raises(DyValProblemError, match="recomputed"):
        DyValProblem.from_json(data)
    data = problem.to_dict()
    data["topo"] = data["topo"][::-1]
    with pytest.raises(DyValProblemError, match="target"):
        DyValProblem.from_json(data)


def test_bad_config_lists_every_field():
    with pytest.raises(ValueError) as info:
        DyValConfig(
            family="geometry",
            depth=0,
            num_children_per_node=1,
            extra_links_per_node=-1,
            redundant_min=3,
            redundant_max=1,
            order="sideways",
            max_abs_value=-1.0,
            max_attempts=0,
        )
    message = str(info.value)
    for key in (
        "family=",
        "depth=",
        "num_children_per_node=",
        "extra_links_per_node=",
        "redundant_min=",
        "order=",
        "max_abs_value=",
        "max_attempts=",
    ):
        assert key in message
    assert DyValConfig().to_dict()["depth"] == 4


def test_checker_catches_wrong_answers():
    question = render_dyval_question(ARITHMETIC)
    good = render_dyval_no_cot(ARITHMETIC)
    assert check_dyval_cot(question, good.replace("\\boxed{42.0}", "\\boxed{41.0}"))
    assert check_dyval_cot(
        question,
        good.replace("= 46.0", "= 47.0").replace(
            "aae = aad - aaa - aab = 49.0 - 3.0 - 4.0 = 42.0", "aae = aad - aaa - aab = 49.0 - 3.0 - 4.0 = 43.0"
        ),
    )
    assert any("before computing" in e for e in check_dyval_cot(question, good.replace("aab = 4.0.\n", "")))
    assert check_dyval_cot(question, "The answer is 42.") != []
    assert check_dyval_cot("nonsense", good)[0].startswith("question:")
    assert check_dyval_cot(question, good.replace("\\boxed{42.0}", "\\boxed{42.00001}")) == []  # DyVal's 1e-4


def test_task_layer_imports_no_ml_stack():
    code = (
        "import sys, bridge_pl.task.dyval; print(any(m in sys.modules for m in ('torch', 'transformers', 'lightning')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
