"""Reward rules and the CoT checker, on the official answer format and on corrupted answers."""

import ast
import doctest
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from bridge_pl.task import verify
from bridge_pl.task.verify import (
    CoTCheck,
    batch_rewards,
    check_cot,
    compute_reward,
    extract_answer,
    format_ok,
    strict_match_reward,
)

# Official-format answers (the public benchmark's format), verbatim. Line numbers used below: in VANILLA the
# steps are lines 3-18, the conclusion line 19 and the box line 22; in BRIDGE the steps are lines 3-10, the
# conclusion line 11 and the box line 14.
VANILLA = r"""<think>
Let's compute the answer step by step.
- According to the information given, the number of each Wholesale World's Pretzels is 1. Let it be L. So L = 1.
- We can then calculate the number of each Wholesale World's Product. Let's call it W. Then W = L = 1.
- We can then calculate the number of each Costco Market's Potato Chips. Let's denote it as R. Then R = W = 1.
- We can then calculate the number of each Costco Market's Product. Let it be s. Then s = R = 1.
- Then, let's denote the number of each EconomyMart's Chocolate Bar as T. Then T = s = 1.
- Then, let's denote the number of each EconomyMart's Product as x. Then x = T = 1.
- We can then calculate the number of each Potato Chips's Barley. Let it be D. Then D = x = 1.
- Next, let's define the number of each Potato Chips's Quinoa as K. Then K = 4 + R = 4 + 1 = 5.
- Next, let's define the number of each Potato Chips's Ingredient as t. Then t = K + D = 5 + 1 = 6.
- We can then calculate the number of each Costco Market's Ingredient. Let it be d. Then d = R * t = 1 * 6 = 6.
- Then, let's denote the number of each Chocolate Bar's Cornmeal as o. Then o = 4 * d = 4 * 6 = 24.
- We can then calculate the number of each Chocolate Bar's Ingredient. Let's call it l. Then l = o = 24.
- Now, we can find the number of each EconomyMart's Ingredient. Let's call it F. Then F = T * l = 1 * 24 = 24.
- Next, let's define the number of each Pretzels's Quinoa as G. Then G = 7 + (F + x) = 7 + (24 + 1) = 32.
- Then, let's denote the number of each Pretzels's Ingredient as z. Then z = G = 32.
- We can then calculate the number of each Wholesale World's Ingredient. Let's denote it as q. Then q = L * z = 1 * 32 = 32.
Thus, the answer is 32.
</think>
<answer>
The final answer is \boxed{32}.
</answer>"""

BRIDGE = r"""<think>
Let's compute the answer step by step.
- The number of each Dolphin's Spine is 1. Let's call it F. So F = 1.
- Now, we can find the number of each Shark's Limb. Let it be W. We know that it equals 3 more than the sum of each Sea Otter's Skull and each Sea Otter's Bone. However, we don't know the number of each Sea Otter's Skull, each Sea Otter's Bone, thus we cannot calculate it now.
- Next, let's define the number of each Sea Otter's Skull as U. Then U = F = 1.
- Then, let's denote the number of each Sea Otter's Vertebra as V. We know that it equals 3 more than the sum of each Sea Otter's Skull and each Dolphin's Spine. Then V = 3 + (U + F) = 3 + (1 + 1) = 3 + 2 = 5.
- Next, let's define the number of each Sea Otter's Spine as t. We know that it equals 3 more than the sum of each Sea Otter's Skull, each Sea Otter's Vertebra and each Dolphin's Spine. Then t = 3 + (U + V + F) = 3 + (1 + 5 + 1) = 3 + (6 + 1) = 3 + 7 = 10.
- We can then calculate the number of each Sea Otter's Limb. Let it be x. We know that it equals 7 more than the sum of each Sea Otter's Skull, each Sea Otter's Vertebra and each Sea Otter's Spine. Then x = 7 + (U + V + t) = 7 + (1 + 5 + 10) = 7 + (6 + 10) = 7 + 16 = 23.
- We can then calculate the number of each Sea Otter's Bone. Let's call it z. Then z = x + U + t + V = 23 + 1 + 10 + 5 = 24 + 10 + 5 = 34 + 5 = 39.
- Now, we can find the number of each Shark's Limb. Remember that it has been denoted as W. Then W = 3 + (U + z) = 3 + (1 + 39) = 3 + 40 = 43.
Thus, the answer is 43.
</think>
<answer>
The final answer is \boxed{43}.
</answer>"""

FIXTURES = {"vanilla": VANILLA, "bridge": BRIDGE}


def _answer(body: str, box: str) -> str:
    """A small answer in the official frame around step lines `body`."""
    return f"<think>\nGo.\n{body}\nThus, the answer is {box}.\n</think>\n<answer>\nThe final answer is \\boxed{{{box}}}.\n</answer>"


def _errors(text: str, **kwargs) -> str:
    result = check_cot(text, **kwargs)
    assert not result.ok
    return " | ".join(result.errors)


def _corrupt(name: str, old: str, new: str) -> str:
    text = FIXTURES[name]
    assert text.count(old) == 1, old
    return text.replace(old, new)


# ------------------------------------------------------------------------------------------ the fixtures
@pytest.mark.parametrize(("name", "answer", "chains"), [("vanilla", 32, 16), ("bridge", 43, 7)])
def test_official_answers_pass(name, answer, chains):
    result = check_cot(FIXTURES[name], expected_answer=answer)
    assert result == CoTCheck(ok=True, errors=[], num_equations=chains, final_value=answer)
    assert check_cot(FIXTURES[name], expected_answer=str(answer)).ok
    assert strict_match_reward(FIXTURES[name], answer) == 1.0
    assert format_ok(FIXTURES[name], prompt_suffix="")
    assert format_ok(FIXTURES[name].removeprefix("<think>"))


@pytest.mark.parametrize(
    ("name", "old", "new", "message"),
    [
        # wrong arithmetic in a middle link: the slip is reported once, at the link where it happens
        (
            "bridge",
            "= 34 + 5 = 39.",
            "= 35 + 5 = 39.",
            "line 9: link '35 + 5' evaluates to 40, but '24 + 10 + 5' gives 39",
        ),
        ("vanilla", "= 7 + (24 + 1) = 32.", "= 7 + (24 + 1) = 33.", "line 16: link '33' evaluates to 33"),
        # wrong substitution, even when the value happens to be right
        (
            "vanilla",
            "t = K + D = 5 + 1 = 6.",
            "t = K + D = 1 + 5 = 6.",
            "line 11: '1 + 5' is not 'K + D' with the values substituted (expected '5 + 1')",
        ),
        (
            "bridge",
            "= 3 + (1 + 39) = 3 + 40",
            "= 3 + (39 + 1) = 3 + 40",
            "line 10: '3 + (39 + 1)' is not '3 + (U + z)'",
        ),
        ("vanilla", "o = 4 * d = 4 * 6 = 24.", "o = 4 * d = 4 * 6 + 0 = 24.", "line 13: '4 * 6 + 0' is not '4 * d'"),
        # a variable used before its defining chain (or never defined)
        (
            "vanilla",
            "K = 4 + R = 4 + 1 = 5.",
            "K = 4 + Q = 4 + 1 = 5.",
            "line 10: variable 'Q' used before it is defined",
        ),
        ("bridge", "Then U = F = 1.", "Then U = V = 1.", "line 5: variable 'V' used before it is defined"),
        ("vanilla", "So L = 1.", "So L = L = 1.", "line 3: variable 'L' used before it is defined"),
        # a variable defined twice with different values
        ("vanilla", "Then z = G = 32.", "Then z = G = 32. So L = 2.", "line 17: 'L' is now 2 but was 1 on line 3"),
        ("bridge", "Then W = 3 + (U + z)", "Then F = 3 + (U + z)", "line 10: 'F' is now 43 but was 1 on line 3"),
        # the answer disagrees with the last computed value
        (
            "vanilla",
            r"\boxed{32}",
            r"\boxed{31}",
            "line 22: boxed '31' differs from the last computed value 32 (line 18)",
        ),
        (
            "bridge",
            "Thus, the answer is 43.",
            "Thus, the answer is 42.",
            "line 11: conclusion says '42', last computed value is 43 (line 10)",
        ),
        (
            "vanilla",
            "Thus, the answer is 32.",
            "Thus, the answer for all 3 stores is 30.",
            "line 19: conclusion says '30'",
        ),
        # malformed terms and links
        (
            "vanilla",
            "d = R * t = 1 * 6 = 6.",
            "d = R * t = 1 ** 6 = 6.",
            "line 12: cannot evaluate '1 ** 6': unexpected '*'",
        ),
        ("vanilla", "d = R * t = 1 * 6 = 6.", "d = R * t = 1 * (6 = 6.", "line 12: cannot evaluate '1 * (6'"),
        (
            "vanilla",
            "d = R * t = 1 * 6 = 6.",
            "d = R * t = 1 * t = 6.",
            "line 12: cannot evaluate '1 * t': variable 't' after the first term",
        ),
        ("bridge", "= 3 + 40 = 43.", "= 3 + 40.", "line 10: the chain for 'W' does not end in a number ('3 + 40')"),
        # the frame and the box
        ("vanilla", r"The final answer is \boxed{32}.", "The final answer is 32.", "frame: no \\boxed{...} answer"),
        ("vanilla", r"\boxed{32}", r"\boxed{32.0}", "line 22: boxed answer '32.0' is not an integer"),
        ("vanilla", "</think>\n", "", "frame: missing </think>"),
        ("vanilla", "</answer>", "", "frame: missing </answer>"),
        ("vanilla", "<answer>\nThe final answer is \\boxed{32}.\n</answer>", "", "frame: missing <answer>, </answer>"),
        ("bridge", "</answer>", "</answer>\n<answer>\n</answer>", "line 16: a second <answer> tag"),
        (
            "vanilla",
            "Thus, the answer is 32.",
            r"Thus, the answer is \boxed{32}.",
            "line 19: the boxed answer is outside <answer>",
        ),
    ],
)
def test_corruptions_are_caught_with_the_line(name, old, new, message):
    assert message in _errors(_corrupt(name, old, new))


def test_expected_answer_is_compared_as_exact_text():
    assert "line 22: boxed '32', expected '33'" in _errors(VANILLA, expected_answer=33)
    assert "boxed '32', expected '032'" in _errors(VANILLA, expected_answer="032")
    no_box = _corrupt("vanilla", r"\boxed{32}", "32")
    assert "answer: no boxed answer, expected '32'" in _errors(no_box, expected_answer=32)


def test_two_boxes_are_flagged_but_the_reward_reads_the_first():
    text = _corrupt("vanilla", r"\boxed{32}.", r"\boxed{32}. Or maybe \boxed{31}.")
    assert "line 22: another \\boxed{} answer ('31'); the reward reads only the first ('32', line 22)" in _errors(text)
    assert strict_match_reward(text, 32) == 1.0 and strict_match_reward(text, 31) == 0.0
    early = _corrupt("vanilla", "Thus, the answer is 32.", r"Thus, the answer is \boxed{31}.")
    assert strict_match_reward(early, 31) == 1.0 and strict_match_reward(early, 32) == 0.0
    assert "line 22: another \\boxed{} answer ('32')" in _errors(early)


def test_re_deriving_a_variable_with_the_same_value_is_fine():
    text = _corrupt("vanilla", "Then z = G = 32.", "Then z = G = 32. So L = 1. Then W = L = 1.")
    result = check_cot(text, expected_answer=32)
    assert result.ok, result.errors
    assert result.num_equations == 18


def test_reflection_lines_and_prose_mentions_are_not_chains():
    # BRIDGE line 4 names W, U and z in prose and line 10 says "it has been denoted as W": no chains there
    assert check_cot(BRIDGE).num_equations == 7
    text = _answer("- Let it be W. Wait, the value of W is unknown. Note a=b and c =d here. So W = 2.", "2")
    assert check_cot(text).num_equations == 1 and check_cot(text).ok


def test_line_numbers_count_from_the_start_of_the_response():
    text = "Some preamble.\n\n" + _corrupt("vanilla", "= 7 + (24 + 1) = 32.", "= 7 + (24 + 1) = 33.")
    assert "line 18: link '33' evaluates to 33" in _errors(text)


def test_errors_after_a_slip_do_not_cascade():
    # the printed result is what later steps use, so a slip is reported where it happens, not at every use
    slip = check_cot(_answer("- So a = 2. Then b = a * 3 = 2 * 3 = 7. Then c = b + 1 = 7 + 1 = 8.", "8"))
    assert slip.errors == ["line 3: link '7' evaluates to 7, but '2 * 3' gives 6"] and slip.final_value == 8
    # a malformed formula still defines its variable from the numeric links, so later uses are not "undefined"
    malformed = check_cot(_corrupt("vanilla", "K = 4 + R = 4 + 1 = 5.", "K = 4 +* R = 4 + 1 = 5."))
    assert len(malformed.errors) == 1 and malformed.errors[0].startswith("line 10: cannot evaluate '4 +* R'")


# ---------------------------------------------------------------------------------- modulus and negatives
def test_modulus_arithmetic():
    text = _answer("- So a = 20. So b = 5. Then x = a + b = 20 + 5 = 2.", "2")
    assert check_cot(text, modulus=23).ok
    assert "line 3: link '2' evaluates to 2, but '20 + 5' gives 25" in _errors(text)
    wrapped = _answer("- So a = 3. So b = 5. Then x = a - b = 3 - 5 = 21. Then y = a * x = 3 * 21 = 17.", "17")
    assert check_cot(wrapped, modulus=23).ok
    # every op is reduced, not only the end result: (20 + 5) * 2 = 2 * 2 = 4, the same either way mod 23
    nested = _answer("- So a = 20. Then x = (a + 5) * 2 = (20 + 5) * 2 = 2 * 2 = 4.", "4")
    assert check_cot(nested, modulus=23).ok


def test_modulus_must_be_positive():
    with pytest.raises(ValueError, match="modulus=0"):
        check_cot(VANILLA, modulus=0)


def test_numbers_outside_the_modulus_range_are_flagged():
    big = _answer("- So a = 30. Then x = a + 1 = 30 + 1 = 8.", "8")
    assert "line 3: 30 in '30' is not in [0, 23)" in _errors(big, modulus=23)
    assert "30 in '30 + 1' is not in [0, 23)" in _errors(big, modulus=23)
    negative = _answer("- So a = 3. Then x = a - 4 = 3 - 4 = -1.", "-1")
    assert "line 3: -1 in '-1' is not in [0, 23)" in _errors(negative, modulus=23)
    assert check_cot(negative).ok


@pytest.mark.parametrize("link", ["4 * (-5)", "4 * -5"])
def test_negative_numbers_in_both_spellings(link):
    text = _answer(f"- So R = 1. So t = 6. Then d = 4 * (R - t) = 4 * (1 - 6) = {link} = -20.", "-20")
    result = check_cot(text, expected_answer=-20)
    assert result.ok, result.errors
    assert result.final_value == -20


@pytest.mark.parametrize("substituted", ["2 - -3", "2 - (-3)"])
def test_negative_values_substituted_in_both_spellings(substituted):
    text = _answer(f"- So a = 2. So b = -3. Then c = a - b = {substituted} = 5. Then e = b * b = (-3) * (-3) = 9.", "9")
    assert check_cot(text).ok, check_cot(text).errors
    wrong = text.replace(f"= {substituted} =", "= 2 - 3 =")
    assert "'2 - 3' is not 'a - b' with the values substituted (expected '2 - -3')" in _errors(wrong)


def test_no_cot_answer_is_judged_on_frame_and_box_only():
    text = "<think>\nThe answer is 7.\n</think>\n<answer>\nThe final answer is \\boxed{7}.\n</answer>"
    assert check_cot(text, expected_answer=7) == CoTCheck(ok=True, errors=[], num_equations=0, final_value=None)
    assert "expected '8'" in _errors(text, expected_answer=8)
    assert "no \\boxed" in _errors(text.replace("\\boxed{7}", "7"))


# ------------------------------------------------------------------------------------- pathological input
def test_deep_nesting_is_an_error_not_a_recursion_error():
    deep = "(" * 10000 + "1" + ")" * 10000
    errors = _errors(_answer(f"- So a = {deep}.", "1"))
    assert "line 3: cannot evaluate '(((" in errors and "nested deeper than 64 levels" in errors
    assert len(errors) < 1000  # model text is quoted shortened
    signs = "(-" * 10000 + "1" + ")" * 10000
    assert "line 3: cannot evaluate" in _errors(_answer(f"- So a = {signs}.", "1"))


def test_huge_lines_numbers_and_repetitions_give_errors_not_exceptions():
    chain = "- So a = " + " + ".join(["1"] * 50000) + "."
    assert check_cot(_answer(chain, "50000")).ok
    assert check_cot(_answer("- " + "x = " * 50000, "1")).num_equations == 0  # no terminating "."
    repeated = check_cot(_answer("- So a = 1. Then b = " + " = ".join(["a"] * 5000) + ".", "1"))
    assert len(repeated.errors) == verify.MAX_ERRORS and repeated.errors[-1].startswith("... and")
    digits = "9" * 5000  # past Python's 4300-digit int() limit
    assert "more than 64 digits" in _errors(_answer(f"- So a = {digits}.", "1"))
    assert "differs from the last computed value 1" in _errors(_answer("- So a = 1.", digits))
    assert "exceeds 256 bits" in _errors(_answer("- So a = " + " * ".join(["999999999"] * 40) + ".", "1"))


def test_long_products_are_evaluated_without_recursion():
    # one term of 20,000 factors is a 20,000-deep product tree; evaluation walks it in a loop
    product = " * ".join(["1"] * 20_000)
    for modulus in (None, 23):
        assert check_cot(_answer(f"- So a = {product}.", "1"), modulus=modulus).ok
    assert "exceeds 256 bits" in _errors(_answer("- So a = " + " * ".join(["7"] * 20_000) + ".", "1"))


@pytest.mark.parametrize("formula", ["-6 + a", "(-6) + a", "a * -1 + -5"])
def test_negative_literals_in_a_formula(formula):
    # a signed literal in the formula is a number, not a variable (the token-level check once raised KeyError)
    value = {"-6 + a": -5, "(-6) + a": -5, "a * -1 + -5": -6}[formula]
    numeric = formula.replace("a", "1")
    result = check_cot(_answer(f"- So a = 1. Then b = {formula} = {numeric} = {value}.", str(value)))
    assert result.ok, result.errors
    wrong = check_cot(_answer(f"- So a = 1. Then b = {formula} = {numeric.replace('1', '2')} = {value}.", str(value)))
    assert any("with the values substituted" in error for error in wrong.errors)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(list("=() +-*.\n0123456789aZ{}\\boxed<>/thinkanswer")), max_size=300))
def test_any_text_gives_a_verdict(body):
    for text in (body, f"<think>\n{body}\n</think>\n<answer>\n\\boxed{{1}}\n</answer>"):
        for modulus in (None, 23):
            result = check_cot(text, modulus=modulus)
            assert result.ok == (not result.errors)


# ---------------------------------------------------------------------------------------------- rewards
def test_extract_answer_reads_the_first_box_raw():
    assert extract_answer(r"a \boxed{24} b \boxed{25}") == "24"
    assert extract_answer(r"\boxed{ 24 }") == " 24 "
    assert extract_answer(r"\boxed{}") == ""
    assert extract_answer(r"\boxed{\frac{1}{2}}") == "\\frac{1"  # the paper's [^}]* rule: no brace matching
    assert extract_answer("no box, the answer is 24") is None


@pytest.mark.parametrize(
    ("completion", "truth", "reward"),
    [
        (r"\boxed{24}", 24, 1.0),
        (r"\boxed{24}", "24", 1.0),
        (r"\boxed{-3}", -3, 1.0),
        (r"\boxed{ 24}", 24, 0.0),
        (r"\boxed{24 }", 24, 0.0),
        (r"\boxed{24.0}", 24, 0.0),
        (r"\boxed{024}", 24, 0.0),
        (r"\boxed{24}", "24.0", 0.0),
        ("the answer is 24", 24, 0.0),
        (r"\boxed{23} then \boxed{24}", 24, 0.0),
        (r"\boxed{24} then \boxed{23}", 24, 1.0),
    ],
)
def test_strict_match_reward(completion, truth, reward):
    assert strict_match_reward(completion, truth) == reward


def test_format_ok():
    good = "\nsteps\n</think>\n<answer>\nThe final answer is \\boxed{3}.\n</answer>"
    assert format_ok(good)
    assert format_ok("x</think><answer>y</answer>")
    assert format_ok("<think>" + good, prompt_suffix="")
    assert not format_ok(good.replace("</answer>", ""))
    assert not format_ok(good + " trailing words")
    assert not format_ok(good + "\n")  # the paper's fullmatch: even a newline after </answer> fails
    assert not format_ok(good, prompt_suffix="")
    assert not format_ok(good.replace("</think>", ""))


def test_compute_and_batch_rewards():
    good = "\nstuff\n</think>\n<answer>\nThe final answer is \\boxed{3}.\n</answer>"
    assert compute_reward(good, 3) == 1.0
    assert compute_reward(good, 3, format_reward_scale=0.05) == pytest.approx(1.05)
    assert compute_reward(good, 4, format_reward_scale=0.05) == pytest.approx(0.05)
    assert compute_reward(good + "x", 3, format_reward_scale=0.05) == 1.0
    assert batch_rewards([good, good, "no box"], [3, "4", 3]) == [1.0, 0.0, 0.0]
    assert batch_rewards([good], [3], format_reward_scale=0.5) == [1.5]
    assert batch_rewards([], []) == []
    with pytest.raises(ValueError, match="2 completions but 1 ground truths"):
        batch_rewards([good, good], [3])


def test_docstring_examples_run():
    assert "Contract" in batch_rewards.__doc__
    result = doctest.testmod(verify, raise_on_error=False)
    assert result.attempted >= 1 and result.failed == 0


# --------------------------------------------------------------------- random well-formed chains (property)
def _evaluate(tree, modulus):
    if tree[0] == "num":
        return tree[1]
    left, right = _evaluate(tree[1], modulus), _evaluate(tree[2], modulus)
    value = left + right if tree[0] == "+" else left - right if tree[0] == "-" else left * right
    return value if modulus is None else value % modulus


def _render(tree, bare_negatives, top=True):
    """Render a tree as iGSM does: right operands of equal precedence bracketed, negatives as (-5)."""
    if tree[0] == "var":
        return tree[1]
    if tree[0] == "num":
        return str(tree[1]) if tree[1] >= 0 or top or bare_negatives else f"({tree[1]})"
    precedence = {"+": 1, "-": 1, "*": 2}
    parts = []
    for side, child in (("left", tree[1]), ("right", tree[2])):
        text = _render(child, bare_negatives, top=False)
        inner = precedence.get(child[0])
        if inner is not None and (inner < precedence[tree[0]] or (side == "right" and inner == precedence[tree[0]])):
            text = f"({text})"
        parts.append(text)
    return f"{parts[0]} {tree[0]} {parts[1]}"


def _substitute(tree, env):
    if tree[0] == "var":
        return ("num", env[tree[1]])
    if tree[0] == "num":
        return tree
    return (tree[0], _substitute(tree[1], env), _substitute(tree[2], env))


def _reduce_once(tree, modulus):
    """Evaluate the leftmost operation whose operands are both numbers."""
    if tree[1][0] == "num" and tree[2][0] == "num":
        return ("num", _evaluate(tree, modulus))
    if tree[1][0] != "num":
        return (tree[0], _reduce_once(tree[1], modulus), tree[2])
    return (tree[0], tree[1], _reduce_once(tree[2], modulus))


@st.composite
def _trees(draw, variables, low, high, depth=3):
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        if draw(st.booleans()):
            return ("var", draw(st.sampled_from(variables)))
        return ("num", draw(st.integers(low, high)))
    op = draw(st.sampled_from("+-*"))
    return (op, draw(_trees(variables, low, high, depth - 1)), draw(_trees(variables, low, high, depth - 1)))


def _links(formula, env, modulus):
    """The trees of every link: formula, substituted formula (when it has variables), one op at a time."""
    trees = [formula]
    current = _substitute(formula, env)
    if current != formula:
        trees.append(current)
    while current[0] != "num":
        current = _reduce_once(current, modulus)
        trees.append(current)
    return trees


def _leaves(tree, path=()):
    if tree[0] == "num":
        return [path]
    if tree[0] == "var":
        return []
    return _leaves(tree[1], (*path, 1)) + _leaves(tree[2], (*path, 2))


def _replace(tree, path, value):
    if not path:
        return ("num", value)
    children = list(tree)
    children[path[0]] = _replace(tree[path[0]], path[1:], value)
    return tuple(children)


def _leaf(tree, path):
    for step in path:
        tree = tree[step]
    return tree[1]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([None, 23]), st.booleans(), st.data())
def test_random_chains_pass_and_a_single_digit_slip_in_a_middle_link_fails(modulus, bare_negatives, data):
    low, high = (-9, 30) if modulus is None else (0, modulus - 1)
    env = dict(zip("abcdef", data.draw(st.lists(st.integers(low, high), min_size=6, max_size=6)), strict=True))
    formula = data.draw(_trees(sorted(env), 0, high))
    trees = _links(formula, env, modulus)
    assume(len(trees) >= 3)
    value = trees[-1][1]
    lines = [f"- So {name} = {number}." for name, number in env.items()]

    def text_of(link_trees):
        links = " = ".join(_render(tree, bare_negatives) for tree in link_trees)
        return _answer("\n".join([*lines, f"- Then z = {links}."]), str(value))

    result = check_cot(text_of(trees), expected_answer=value, modulus=modulus)
    assert result.ok, (text_of(trees), result.errors)
    assert result.num_equations == len(env) + 1 and result.final_value == value

    # one digit of one printed number of a middle link becomes another digit
    k = data.draw(st.integers(1, len(trees) - 2))
    path = data.draw(st.sampled_from(_leaves(trees[k])))
    old = _leaf(trees[k], path)
    digits = str(abs(old))
    position = data.draw(st.integers(0, len(digits) - 1))
    digit = data.draw(st.sampled_from([d for d in "0123456789" if d != digits[position]]))
    new = (1 if old >= 0 else -1) * int(digits[:position] + digit + digits[position + 1 :])
    broken = _replace(trees[k], path, new)
    substitution_link = k == 1 and _substitute(formula, env) != formula  # only when the formula has variables
    in_range = modulus is None or 0 <= new < modulus
    # only a slip that keeps the link's value (say 0 * 7 -> 0 * 8) in a reduction link can go unnoticed
    expected_ok = not substitution_link and in_range and _evaluate(broken, modulus) == _evaluate(trees[k], modulus)
    event("slip caught" if not expected_ok else "slip keeps the value")
    corrupted = check_cot(text_of([*trees[:k], broken, *trees[k + 1 :]]), modulus=modulus)
    assert corrupted.ok == expected_ok, corrupted.errors
    if not expected_ok:
        assert any(error.startswith(f"line {len(env) + 3}: ") for error in corrupted.errors)


# ---------------------------------------------------------------------------------------------- imports
def _imported_modules(module) -> set[str]:
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    return imported | {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}


def test_module_imports_no_torch_and_only_the_standard_library():
    code = "import sys; import bridge_pl.task.verify; assert 'torch' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "ok"
    # The one project module the verifier reads equations with must itself import only the standard library.
    from bridge_pl.task import expression

    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    assert {name.split(".")[0] for name in _imported_modules(verify) - {"bridge_pl.task.expression"}} <= stdlib
    assert {name.split(".")[0] for name in _imported_modules(expression)} <= stdlib


# ------------------------------------------------------------------------------------------ linear scans
# The paper's format pattern as a regex: the reference `format_ok` must agree with on every input.
_FORMAT_REGEX = re.compile(r"^<think>.*?</think>\s*<answer>.*?</answer>$", re.DOTALL | re.MULTILINE)
_PIECES = ["<think>", "</think>", "<answer>", "</answer>", "\\boxed{", "}", " ", "\n", "\t", "x", "7"]


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=10), st.sampled_from(["<think>", ""]))
def test_linear_scans_agree_with_the_paper_regexes(pieces, prompt_suffix):
    text = "".join(pieces)
    assert format_ok(text, prompt_suffix) == (_FORMAT_REGEX.fullmatch(prompt_suffix + text) is not None)
    match = verify.BOXED.search(text)
    assert extract_answer(text) == (None if match is None else match.group(1))
    assert list(verify._boxes(text)) == [(m.start(), m.group(1)) for m in verify.BOXED.finditer(text)]


# Each input is 1 MB; a quadratic scan takes minutes on any of them (the old format regex: 229 s on the first).
_ADVERSARIAL = {
    "repeated_tags": "'</think><answer>' * 65536",
    "unclosed_boxes": "'\\\\boxed{' * 150000",
    "many_boxes": "'\\\\boxed{1}\\n' * 100000",
    "equals_line": "'<think>A = ' + '= ' * 500000 + '.</think><answer>\\\\boxed{1}</answer>'",
    "equals_run": "'<think>' + '=' * 1000000 + '. </think><answer>\\\\boxed{1}</answer>'",
}


@pytest.mark.parametrize("name", sorted(_ADVERSARIAL))
def test_every_scan_is_linear_on_adversarial_megabyte_inputs(name):
    # Bounded by a generous subprocess timeout, not by timing: the linear scans finish in well under a second.
    code = (
        "from bridge_pl.task.verify import check_cot, extract_answer, format_ok, strict_match_reward\n"
        f"text = {_ADVERSARIAL[name]}\n"
        "assert len(text) >= 1_000_000\n"
        "format_ok(text); format_ok(text, ''); extract_answer(text); strict_match_reward(text, 1)\n"
        "check = check_cot(text, expected_answer=1, modulus=23)\n"
        "assert len(check.errors) <= 50\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"
