"""Expression trees: evaluation, rendering and the one-operation-at-a-time subgoal chain."""

import pytest

from bridge_pl.task.expression import Chain, Num, Product, Ref, evaluate, reduce_once, render, subgoal_chain, substitute


def _chain_text(expr, modulus=None):
    return " = ".join(render(e, str) for e in subgoal_chain(expr, modulus))


def test_innermost_bracket_reduces_leftmost_pair_first():
    # paper_spec §A.6: 7 + (1 + 5 + 10) = 7 + (6 + 10) = 7 + 16 = 23
    expr = Chain((Num(7), Chain((Num(1), Num(5), Num(10)), ("+", "+"))), ("+",))
    assert _chain_text(expr) == "7 + (1 + 5 + 10) = 7 + (6 + 10) = 7 + 16 = 23"


def test_flat_sum_reduces_left_to_right():
    expr = Chain((Num(23), Num(1), Num(10), Num(5)), ("+", "+", "+"))
    assert _chain_text(expr) == "23 + 1 + 10 + 5 = 24 + 10 + 5 = 34 + 5 = 39"


def test_negative_intermediate_is_parenthesised():
    expr = Product(Num(4), Chain((Num(1), Num(6)), ("-",)))
    assert _chain_text(expr) == "4 * (1 - 6) = 4 * (-5) = -20"


def test_products_before_sums():
    expr = Chain((Product(Num(2), Num(3)), Product(Num(4), Num(5))), ("+",))
    assert _chain_text(expr) == "2 * 3 + 4 * 5 = 6 + 4 * 5 = 6 + 20 = 26"


def test_modulus_applies_to_every_operation():
    expr = Chain((Num(20), Num(5), Num(9)), ("+", "-"))
    assert _chain_text(expr, modulus=23) == "20 + 5 - 9 = 2 - 9 = 16"
    assert evaluate(expr, {}, modulus=23) == 16


def test_render_and_substitute_with_names():
    expr = Chain((Num(7), Chain((Ref(0), Ref(1)), ("+",))), ("+",))
    letters = {0: "F", 1: "x"}
    assert render(expr, letters.__getitem__) == "7 + (F + x)"
    numeric = substitute(expr, {0: 24, 1: -1})
    assert render(numeric, str) == "7 + (24 + (-1))"
    assert evaluate(expr, {0: 24, 1: -1}) == 30


def test_reduce_once_refuses_references():
    with pytest.raises(ValueError, match="node references"):
        reduce_once(Chain((Ref(0), Num(1)), ("+",)))


def test_single_operation_is_one_link():
    assert _chain_text(Chain((Num(2), Num(2)), ("-",))) == "2 - 2 = 0"
    assert _chain_text(Num(5)) == "5"
