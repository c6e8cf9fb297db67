"""Dataset rows: styles, reproducibility, shared problems across styles, PP-Aug / RC-Aug, rewriting rows."""

import pytest

from bridge_pl.augment.bridge import PRESETS, BehaviorConfig
from bridge_pl.data.records import (
    COLUMNS,
    AnswerStyle,
    augment_rows,
    generate_rows,
    problem_rows,
    row_problem,
)
from bridge_pl.task.generator import GeneratorConfig, generate_problem
from bridge_pl.task.problem import Problem

CONFIG = GeneratorConfig()
SEED = 100
COUNT = 12


@pytest.fixture(scope="module")
def plain_rows():
    return list(generate_rows(CONFIG, SEED, COUNT, AnswerStyle()))


@pytest.fixture(scope="module")
def bridge_rows():
    return list(generate_rows(CONFIG, SEED, COUNT, AnswerStyle("bridge")))


def _text_only(row):
    """A row as the official files have it: the four official columns and nothing else."""
    return {k: row[k] for k in ("query", "response", "num_ops", "final_answer")}


def test_style_tags_round_trip():
    assert AnswerStyle().tag == "plain"
    assert AnswerStyle("no-cot").tag == "no-cot"
    assert AnswerStyle("bridge").tag == "bridge:full"
    assert AnswerStyle("bridge").behaviors == PRESETS["full"]
    assert AnswerStyle("bridge", PRESETS["exploration"]).tag == "bridge:exploration"
    custom = AnswerStyle("bridge", BehaviorConfig(exploration=0.25, analysis_level=3))
    assert custom.tag == "bridge:exploration=0.25,redundant_attempt=0.3,subgoal=True,analysis_level=3"
    for style in (AnswerStyle(), AnswerStyle("no-cot"), AnswerStyle("bridge"), custom):
        assert AnswerStyle.from_tag(style.tag) == style


def test_style_rejects_bad_combinations():
    with pytest.raises(ValueError, match="choose one of"):
        AnswerStyle("fancy")
    with pytest.raises(ValueError, match="--style bridge"):
        AnswerStyle("plain", BehaviorConfig())
    with pytest.raises(ValueError, match="unknown answer style"):
        AnswerStyle.from_tag("plain:extra")


def test_rows_have_every_column_in_order(plain_rows, bridge_rows):
    for row in [*plain_rows, *bridge_rows]:
        assert tuple(row) == COLUMNS
    row = plain_rows[3]
    problem = Problem.from_dict(row["dag"])
    assert (row["seed"], row["index"], row["copy"], row["style"]) == (SEED, 3, 0, "plain")
    assert row["num_ops"] == problem.num_ops and row["final_answer"] == problem.answer
    assert row["response"].endswith(f"\\boxed{{{problem.answer}}}.\n</answer>")
    assert plain_rows[0]["behaviors"] is None
    assert set(bridge_rows[0]["behaviors"]) == {"failed_attempts", "early_solves", "revisits", "analyses", "steps"}


def test_rows_are_deterministic_and_reproducible_alone(plain_rows):
    assert list(generate_rows(CONFIG, SEED, COUNT, AnswerStyle())) == plain_rows
    # problem 7 alone, generated without the 7 before it, gives the same row
    alone = problem_rows(generate_problem(CONFIG, SEED, 7), AnswerStyle())
    assert alone == [plain_rows[7]]
    assert list(generate_rows(CONFIG, SEED, 3, AnswerStyle(), start=7))[0] == plain_rows[7]


def test_vanilla_and_bridge_files_hold_the_same_problems(plain_rows, bridge_rows):
    for plain, bridge in zip(plain_rows, bridge_rows, strict=True):
        for column in ("query", "num_ops", "final_answer", "seed", "index", "dag"):
            assert plain[column] == bridge[column]
    assert sum(p["response"] != b["response"] for p, b in zip(plain_rows, bridge_rows, strict=True)) == COUNT
    assert sum(row["behaviors"]["failed_attempts"] for row in bridge_rows) > 0


def test_pp_aug_shares_the_answer_and_permutes_the_premises(plain_rows):
    rows = list(generate_rows(CONFIG, SEED, 5, AnswerStyle(), augmentation="pp-aug", copies=4))
    assert len(rows) == 5 * 4
    assert [row["copy"] for row in rows[:4]] == [0, 1, 2, 3]
    for k in range(5):
        group = rows[4 * k : 4 * k + 4]
        assert {row["response"] for row in group} == {plain_rows[k]["response"]}
        assert {row["style"] for row in group} == {"pp-aug"}
        assert {tuple(sorted(row["query"].splitlines())) for row in group} == {
            tuple(sorted(plain_rows[k]["query"].splitlines()))
        }
        assert len({row["query"] for row in group}) > 1
        assert {row["query"].splitlines()[-1] for row in group} == {plain_rows[k]["query"].splitlines()[-1]}
        assert group[0] == {**plain_rows[k], "style": "pp-aug"}


def test_rc_aug_shares_the_question_and_reorders_the_solution(plain_rows):
    rows = list(generate_rows(CONFIG, SEED, 5, AnswerStyle(), augmentation="rc-aug", copies=3))
    assert len(rows) == 5 * 3
    for k in range(5):
        group = rows[3 * k : 3 * k + 3]
        assert {row["query"] for row in group} == {plain_rows[k]["query"]}
        assert {row["final_answer"] for row in group} == {plain_rows[k]["final_answer"]}
        assert group[0] == {**plain_rows[k], "style": "rc-aug"}
        assert len({row["response"] for row in group}) == 3
        for row in group:
            problem = Problem.from_dict(row["dag"])  # validates the reordered solution order
            assert problem.topo[-1] == Problem.from_dict(plain_rows[k]["dag"]).topo[-1]


def test_augmentation_copies_are_validated():
    problem = generate_problem(CONFIG, SEED, 0)
    with pytest.raises(ValueError, match="--copies"):
        problem_rows(problem, AnswerStyle(), augmentation="pp-aug", copies=0)
    with pytest.raises(ValueError, match="augmentation"):
        problem_rows(problem, AnswerStyle(), augmentation="shuffle")
    assert len(problem_rows(problem, AnswerStyle(), augmentation="rc-aug", copies=1)) == 1


def test_augment_rows_with_dag_reproduces_generation(plain_rows, bridge_rows):
    result = augment_rows(plain_rows, "bridge")
    assert result.failures == [] and result.rewritten == COUNT
    assert result.rows == bridge_rows
    pp = augment_rows(plain_rows[:3], "pp-aug", copies=4)
    assert pp.rows == list(generate_rows(CONFIG, SEED, 3, AnswerStyle(), augmentation="pp-aug"))
    rc = augment_rows(plain_rows[:3], "rc-aug", copies=2)
    assert rc.rows == list(generate_rows(CONFIG, SEED, 3, AnswerStyle(), augmentation="rc-aug", copies=2))


def test_augmenting_bridge_rows_keeps_their_style(bridge_rows):
    bridge = AnswerStyle("bridge")
    pp = augment_rows(bridge_rows[:2], "pp-aug", copies=2)
    assert {row["style"] for row in pp.rows} == {"pp-aug+bridge:full"}
    assert pp.rows == list(generate_rows(CONFIG, SEED, 2, bridge, augmentation="pp-aug", copies=2))
    rc = augment_rows(bridge_rows[:2], "rc-aug", copies=2)
    assert rc.rows == list(generate_rows(CONFIG, SEED, 2, bridge, augmentation="rc-aug", copies=2))


def test_augment_rows_from_text_only(plain_rows):
    rows = [_text_only(row) for row in plain_rows[:6]]
    result = augment_rows(rows, "bridge", behaviors=PRESETS["full"])
    assert result.failures == [] and len(result.rows) == 6
    for before, after in zip(rows, result.rows, strict=True):
        assert after["query"] == before["query"]  # the question is kept verbatim
        assert after["final_answer"] == before["final_answer"] and after["num_ops"] == before["num_ops"]
        assert after["style"] == "bridge:full" and after["seed"] is None and after["dag"] is not None
        assert after["response"] != before["response"]
    # keyed by the question text: the same input gives the same output
    assert augment_rows(rows, "bridge").rows == result.rows
    pp = augment_rows(rows[:2], "pp-aug", copies=3)
    assert len(pp.rows) == 6 and {r["response"] for r in pp.rows[:3]} == {rows[0]["response"]}


def test_augment_rows_reports_failures_with_row_numbers(plain_rows):
    rows = [_text_only(row) for row in plain_rows[:4]]
    rows[1] = {**rows[1], "query": "What is the meaning of life?"}
    rows[2] = {**rows[2], "final_answer": rows[2]["final_answer"] + 1}
    result = augment_rows(rows, "plain")
    assert result.rewritten == 2 and len(result.rows) == 2
    assert [f.row for f in result.failures] == [1, 2]
    assert "final_answer" in result.failures[1].reason
    assert result.failures[0].query == "What is the meaning of life?"
    assert all(f.reason for f in result.failures)


def test_augment_rows_validates_arguments(plain_rows):
    with pytest.raises(ValueError, match="method"):
        augment_rows(plain_rows, "shuffle")
    with pytest.raises(ValueError, match="--method bridge"):
        augment_rows(plain_rows, "plain", behaviors=BehaviorConfig())
    no_answer = [{"query": plain_rows[0]["query"], "dag": plain_rows[0]["dag"]}]
    failures = augment_rows(no_answer, "pp-aug").failures
    assert len(failures) == 1 and "no response" in failures[0].reason


def test_row_problem_prefers_the_dag(plain_rows):
    row = plain_rows[2]
    assert row_problem(row).to_dict() == row["dag"]
    rebuilt = row_problem(_text_only(row))
    assert rebuilt.answer == row["final_answer"] and rebuilt.num_ops == row["num_ops"]
