"""Expression trees: evaluation, rendering, the one-operation-at-a-time subgoal chain, and reading text back."""

import pytest

from bridge_pl.task.expression import (
    MAX_BITS,
    MAX_DEPTH,
    MAX_DIGITS,
    Chain,
    ExpressionError,
    Num,
    Product,
    Ref,
    evaluate,
    evaluate_bounded,
    fold_signs,
    literals,
    parse_expression,
    reduce_once,
    render,
    subgoal_chain,
    substitute,
    tokenize_equation,
)
from bridge_pl.task.generator import GeneratorConfig, generate_problem


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


# ------------------------------------------------------------------------------ reading equation text
@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("7 + (F + x)", ["7", "+", "(", "F", "+", "x", ")"]),
        ("4 * (-5)", ["4", "*", "(", "-", "5", ")"]),
        ("2 - -3", ["2", "-", "-", "3"]),
        ("L*z+K*w", ["L", "*", "z", "+", "K", "*", "w"]),
        ("12ab", ["12", "a", "b"]),  # letters are one token each; the grammar rejects the juxtaposition
        ("", []),
    ],
)
def test_tokenize_equation(text, tokens):
    assert tokenize_equation(text) == tokens


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # worked by hand: a chain is flat and left-associative, a product left-nested, a bracket a nested chain
        ("7 + (F + x)", Chain((Num(7), Chain((Ref(0), Ref(1)), ("+",))), ("+",))),
        ("4 * (F - x)", Product(Num(4), Chain((Ref(0), Ref(1)), ("-",)))),
        ("F * x + K * w", Chain((Product(Ref(0), Ref(1)), Product(Ref(2), Ref(3))), ("+",))),
        ("F * x * K", Product(Product(Ref(0), Ref(1)), Ref(2))),
        ("1 - 2 + 3", Chain((Num(1), Num(2), Num(3)), ("-", "+"))),
        ("(1 - 2) + 3", Chain((Chain((Num(1), Num(2)), ("-",)), Num(3)), ("+",))),
        ("4 * (-5)", Product(Num(4), Num(-5))),
        ("4 * -5", Product(Num(4), Num(-5))),
        ("2 - -3", Chain((Num(2), Num(-3)), ("-",))),
        ("-7", Num(-7)),
        ("((5))", Num(5)),
        ("007", Num(7)),
    ],
)
def test_parse_expression_by_hand(text, expected):
    assert parse_expression(text, "FxKw".index) == expected
    assert parse_expression(tokenize_equation(text), "FxKw".index) == expected  # tokens work as well as text


def test_parsed_terms_evaluate_like_the_verifier_reads_them():
    # 7 + (24 + 1) = 32; 4 * (1 - 6) = -20; mod 23 every operation wraps: 20 + 5 - 9 = 2 - 9 = 16
    values = {0: 24, 1: 1}
    assert evaluate(parse_expression("7 + (F + x)", "Fx".index), values) == 32
    assert evaluate_bounded(parse_expression("4 * (1 - 6)"), {}) == -20
    assert evaluate_bounded(parse_expression("20 + 5 - 9"), {}, modulus=23) == 16
    assert literals(parse_expression("4 * (1 - 6) + (-2)")) == [4, 1, 6, -2]
    assert literals(parse_expression(" * ".join(["3"] * 50_000))) == [3] * 50_000  # no recursion along a product


def test_parse_inverts_render_on_generated_equations():
    # every equation of a generated problem, its substituted form and every subgoal link reads back as itself
    problem = generate_problem(GeneratorConfig(min_op=15, max_op=20), seed=3, index=0)
    letters = {node.id: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"[node.id] for node in problem.nodes}
    values = {node.id: node.value for node in problem.nodes}
    for node in problem.nodes:
        expr = node.expression()
        ids = {letters[i]: i for i in node.inputs}
        assert parse_expression(render(expr, letters.__getitem__), ids.__getitem__) == expr
        numeric = substitute(expr, values)
        links = subgoal_chain(numeric)
        assert [parse_expression(render(link, str)) for link in links] == links
        assert evaluate_bounded(parse_expression(render(numeric, str)), {}) == node.value


def test_fold_signs_makes_both_spellings_of_a_negative_number_equal():
    assert fold_signs(tokenize_equation("4 * (-5)")) == fold_signs(tokenize_equation("4 * -5")) == ["4", "*", "-5"]
    assert fold_signs(tokenize_equation("-5 - 3")) == ["-5", "-", "3"]  # only a '-' in sign position folds
    assert fold_signs(tokenize_equation("(1) - 3")) == ["(", "1", ")", "-", "3"]
    assert fold_signs(tokenize_equation("((-5))")) == ["(", "-5", ")"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 ** 6", "unexpected '*'"),
        ("1 2", "unexpected '2'"),
        (")", "unexpected ')'"),
        ("1 * (6", "it ends too early"),
        ("3 *", "it ends too early"),
        ("", "it ends too early"),
        ("(1 2)", "missing ')'"),
        ("-x", "'-' must precede a number, not 'x'"),
        ("- -3", "'-' must precede a number, not '-'"),
        ("1 + x", "unexpected 'x'"),  # no `ref`: a number-only term
        ("1 = 2", "unexpected '= 2'"),
        ("1.5", "unexpected '.5'"),
        ("2 ^ 10 and then some more", "unexpected '^ 10 and t'"),  # quotes at most 10 characters
    ],
)
def test_unreadable_terms_raise_one_error_type(text, message):
    with pytest.raises(ExpressionError) as info:
        parse_expression(text)
    assert str(info.value) == message
    assert isinstance(info.value, ValueError)


def test_errors_of_ref_pass_through_in_reading_order():
    def ref(letter):
        raise KeyError(letter)

    with pytest.raises(KeyError, match="Q"):
        parse_expression("Q + 1 ** 2", ref)  # the letter comes before the bad operator
    with pytest.raises(ExpressionError, match="unexpected '\\*'"):
        parse_expression("1 ** Q", ref)


# ------------------------------------------------------------------------------ adversarial input
def test_nesting_is_capped_not_a_recursion_error():
    assert parse_expression("(" * MAX_DEPTH + "1" + ")" * MAX_DEPTH) == Num(1)
    with pytest.raises(ExpressionError, match=f"parentheses nested deeper than {MAX_DEPTH} levels"):
        parse_expression("(" * (MAX_DEPTH + 1) + "1" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(ExpressionError, match="nested deeper"):
        parse_expression("(" * 200_000)  # stops at level 65, never reads the rest
    with pytest.raises(ExpressionError, match="'-' must precede a number, not '\\('"):
        parse_expression("(-" * 100_000 + "1" + ")" * 100_000)


def test_number_size_is_capped_before_int_reads_it():
    assert parse_expression("9" * MAX_DIGITS) == Num(int("9" * MAX_DIGITS))
    for text in ("9" * (MAX_DIGITS + 1), "1 + " + "9" * 100_000, "-" + "9" * 5000):  # past int()'s 4300 digits
        with pytest.raises(ExpressionError, match=f"a number has more than {MAX_DIGITS} digits"):
            parse_expression(text)


def test_values_without_a_modulus_are_capped_at_max_bits():
    # 2**255 has 256 bits (allowed); doubling it once more is one bit too many
    assert evaluate_bounded(Product(Num(2**200), Num(2**55)), {}) == 2**255
    with pytest.raises(ExpressionError, match=f"a value exceeds {MAX_BITS} bits"):
        evaluate_bounded(Product(Product(Num(2**200), Num(2**55)), Num(2)), {})
    with pytest.raises(ExpressionError, match="exceeds 256 bits"):
        evaluate_bounded(Chain((Num(2**256 - 1), Num(1)), ("+",)), {})
    tower = parse_expression(" * ".join(["999999999"] * 50_000))  # would be a 1.5-million-bit number
    with pytest.raises(ExpressionError, match="exceeds 256 bits"):
        evaluate_bounded(tower, {})
    assert evaluate_bounded(tower, {}, modulus=23) == pow(999999999, 50_000, 23)  # a modulus bounds it already


def test_long_terms_are_read_in_linear_time():
    # 200k tokens: fine when well formed; a stray character at the very end is reported, quoted short
    long_sum = " + ".join(["1"] * 100_000)
    assert evaluate_bounded(parse_expression(long_sum), {}) == 100_000
    with pytest.raises(ExpressionError) as info:
        parse_expression(long_sum + " # trailing junk that goes on and on")
    assert str(info.value) == "unexpected '# trailing'"
    with pytest.raises(ExpressionError, match="unexpected '\\+'"):
        parse_expression("1 + " * 100_000 + "+")
