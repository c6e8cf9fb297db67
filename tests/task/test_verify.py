"""Reward rules and the CoT checker, on the official answer format and on corrupted answers."""

import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge_pl.task.verify import (
    batch_rewards,
    check_cot,
    compute_reward,
    extract_answer,
    format_ok,
    strict_match_reward,
)

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


def _errors(text, **kwargs):
    result = check_cot(text, **kwargs)
    assert not result.ok
    return " | ".join(result.errors)


def test_official_answers_pass():
    for text, answer, chains in ((VANILLA, 32, 16), (BRIDGE, 43, 7)):
        result = check_cot(text, expected_answer=answer)
        assert result.ok, result.errors
        assert result.num_equations == chains and result.final_value == answer


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("= 7 + (24 + 1) = 32.", "= 7 + (24 + 1) = 33.", "line 16: link '33' evaluates to 33"),
        ("Then t = K + D = 5 + 1 = 6.", "Then t = K + D = 5 + 2 = 7.", "line 11: '5 + 2' is not 'K + D'"),
        ("Then K = 4 + R = 4 + 1 = 5.", "Then K = 4 + Q = 4 + 1 = 5.", "line 10: cannot evaluate '4 + Q'"),
        ("Then z = G = 32.", "Then z = G = 32. So L = 2.", "'L' was 1 and is now 2"),
        (r"\boxed{32}", r"\boxed{31}", "boxed 31 differs from the last computed value 32"),
        (r"The final answer is \boxed{32}.", "The final answer is 32.", "no \\boxed"),
        ("Thus, the answer is 32.", "Thus, the answer is 30.", "conclusion says 30"),
    ],
)
def test_corruptions_are_caught_with_the_line(old, new, message):
    assert old in VANILLA
    assert message in _errors(VANILLA.replace(old, new, 1))


def test_two_boxes_are_flagged_but_reward_reads_the_first():
    text = VANILLA.replace("Thus, the answer is 32.", r"Thus, the answer is \boxed{31}.")
    assert "2 \\boxed{} answers" in _errors(text)
    assert strict_match_reward(text, 31) == 1.0 and strict_match_reward(text, 32) == 0.0


def test_expected_answer_and_missing_frame():
    assert "not the expected '33'" in _errors(VANILLA, expected_answer=33)
    assert "frame" in _errors(VANILLA.replace("</think>", ""))


def test_modulus_arithmetic():
    text = "<think>\nGo.\n- So a = 20. So b = 5. Then x = a + b = 20 + 5 = 2.\nSo 2.\n</think>\n<answer>\n\\boxed{2}\n</answer>"
    assert check_cot(text, modulus=23).ok
    assert "gives 25" in _errors(text)
    assert "30 is not in [0, 23)" in _errors(text.replace("So a = 20.", "So a = 30."), modulus=23)


def test_negative_numbers_in_both_spellings():
    base = "<think>\nGo.\n- So a = 1. So b = 6. Then d = 4 * (a - b) = {} = -20.\nSo -20.\n</think>\n<answer>\n\\boxed{{-20}}\n</answer>"
    assert check_cot(base.format("4 * (1 - 6) = 4 * (-5)")).ok
    assert check_cot(base.format("4 * (1 - 6) = 4 * -5")).ok
    older = "<think>\nGo.\n- So a = 2. So b = -3. Then c = a - b = 2 - -3 = 5.\nSo 5.\n</think>\n<answer>\n\\boxed{5}\n</answer>"
    assert check_cot(older).ok


def test_no_cot_answer_without_chains():
    text = "<think>\nI just know.\n</think>\n<answer>\nThe final answer is \\boxed{7}.\n</answer>"
    result = check_cot(text, expected_answer=7)
    assert result.ok and result.num_equations == 0


def test_deep_nesting_is_an_error_not_a_crash():
    deep = "(" * 10000 + "1" + ")" * 10000
    text = f"<think>\nGo.\n- So a = {deep}.\nSo 1.\n</think>\n<answer>\n\\boxed{{1}}\n</answer>"
    assert "nested deeper" in _errors(text)


def test_reward_rules():
    assert extract_answer(r"a \boxed{24} b \boxed{25}") == "24"
    assert extract_answer("nothing") is None
    assert strict_match_reward(r"\boxed{24}", 24) == 1.0
    assert strict_match_reward(r"\boxed{24}", "24") == 1.0
    assert strict_match_reward(r"\boxed{ 24}", 24) == 0.0
    assert strict_match_reward(r"\boxed{24.0}", 24) == 0.0
    assert strict_match_reward("24", 24) == 0.0


def test_format_bonus():
    good = "\nstuff\n</think>\n<answer>\nThe final answer is \\boxed{3}.\n</answer>"
    assert format_ok(good)
    assert not format_ok(good.replace("</answer>", ""))
    assert not format_ok(good + " trailing words")
    assert compute_reward(good, 3, format_reward_scale=0.05) == pytest.approx(1.05)
    assert compute_reward(good, 4, format_reward_scale=0.05) == pytest.approx(0.05)
    assert batch_rewards([good, good], [3, 4]) == [1.0, 0.0]
    with pytest.raises(ValueError, match="2 completions but 1 ground truths"):
        batch_rewards([good, good], [3])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 9), min_size=2, max_size=6), st.data())
def test_random_sum_chains_pass_and_corruptions_fail(numbers, data):
    letters = "abcdefg"
    lines = [f"- So {letters[i]} = {n}." for i, n in enumerate(numbers)]
    links = [" + ".join(letters[: len(numbers)]), " + ".join(map(str, numbers))]
    running = list(numbers)
    while len(running) > 1:
        running = [running[0] + running[1], *running[2:]]
        links.append(" + ".join(map(str, running)))
    lines.append(f"- Then z = {' = '.join(links)}.")
    total = sum(numbers)
    text = "<think>\nGo.\n" + "\n".join(lines) + f"\nSo {total}.\n</think>\n<answer>\n\\boxed{{{total}}}\n</answer>"
    assert check_cot(text, expected_answer=total).ok
    k = data.draw(st.integers(2, len(links) - 1))
    broken = links[:k] + [links[k] + " + 1"] + links[k + 1 :]
    assert not check_cot(text.replace(" = ".join(links), " = ".join(broken))).ok


def test_module_does_not_import_torch():
    code = "import sys, bridge_pl.task.verify, bridge_pl.task, bridge_pl.augment; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
