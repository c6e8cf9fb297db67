"""Condition sentence forms (paper_spec §A.5): the text classifier, and the generator's mix against the official one."""

from collections import Counter

import pytest

from bridge_pl.task.generator import GeneratorConfig, iter_problems
from bridge_pl.task.question import SENTENCE_FORMS, condition_form, condition_sentence, render_question

P1, P2, P3 = "each Oak School's Art Room", "each Elm School's Lab", "each Kid's Animal Farm's Bone"


@pytest.mark.parametrize(
    ("rhs", "form"),
    [
        ("7", "c"),
        (P1, "P"),
        (f"3 more than {P1}", "c+P"),
        (f"0 times {P3}", "c*P"),
        (f"the sum of {P1} and {P2}", "P+P"),
        (f"the difference of {P3} and {P1}", "P-P"),
        (f"the sum of {P1}, {P2} and {P3}", "sum3+"),
        (f"4 more than the sum of {P1} and {P2}", "c+(P+P)"),
        (f"4 more than the difference of {P1} and {P2}", "c+(P-P)"),
        (f"9 times the sum of {P1} and {P3}", "c*(P+P)"),
        (f"9 times the difference of {P1} and {P3}", "c*(P-P)"),
        (f"1 more than the sum of {P1}, {P2} and {P3}", "c+sum3+"),
        (f"2 times the sum of {P3}, {P1}, {P2} and {P3}", "c*sum3+"),
    ],
)
def test_every_form_is_read_from_the_text(rhs, form):
    assert condition_form(f"The number of each Peach Hall's Bone equals {rhs}.") == form
    assert condition_form(f"  The number of each Peach Hall's Bone equals {rhs}  ") == form  # no full stop


def test_other_sentences_have_no_form():
    assert condition_form("How many Bone does each Kid have?") is None
    assert condition_form("Thus, the answer is 3.") is None


def _form_of(node) -> str:
    """The form a node's fields call for: constant, inputs, sum/difference, "more than"/"times"."""
    k = len(node.inputs)
    inner = {0: "", 1: "P", 2: "P-P" if node.combine == "diff" else "P+P"}.get(k, "sum3+")
    if node.constant is None:
        return inner
    if k == 0:
        return "c"
    prefix = "c*" if node.constant_op == "mul" else "c+"
    return prefix + (f"({inner})" if k == 2 else inner)


def test_generated_sentences_are_classified_by_their_node():
    for problem in iter_problems(GeneratorConfig(), seed=3, count=60):
        for node in problem.nodes:
            if node.kind == "instance":
                assert condition_form(condition_sentence(problem, node)) == _form_of(node)


def test_generator_sentence_mix_matches_the_official_one():
    """The shares docs/generator_stats.md measures on the official generator (op 15-20, 2000 problems).

    Official: constant 21.3 %, plain copy 16.0 %, "c more than P" 13.6 %, "c times P" 13.1 %, two-parent sum 4.6 %
    and difference 5.1 %. Before issue 15 a one-op node with a stage-3 parent never got the constant: copies were
    24.8 % and each constant form about 9.5 %. Bounds are about 6 standard errors of these 400 problems.
    """
    forms = Counter(
        condition_form(line)
        for problem in iter_problems(GeneratorConfig(), seed=100, count=400)
        for line in render_question(problem).splitlines()[:-1]
    )
    assert set(forms) <= set(SENTENCE_FORMS)
    total = sum(forms.values())
    shares = {form: forms[form] / total for form in SENTENCE_FORMS}
    assert 0.12 < shares["P"] < 0.20
    assert 0.10 < shares["c+P"] < 0.17 and 0.10 < shares["c*P"] < 0.17
    assert 0.17 < shares["c"] < 0.26
    assert 0.03 < shares["P+P"] < 0.07 and 0.03 < shares["P-P"] < 0.07
