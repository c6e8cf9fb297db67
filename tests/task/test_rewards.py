"""The reward plug-ins on hand-worked inputs: each shipped reward, DAPO's formula at its boundaries, names,
argument checks, linear work on adversarial text, and `score_rewards`' checks naming the failing reward."""

from __future__ import annotations

import math

import pytest

from bridge_pl.task import rewards as rewards_module
from bridge_pl.task.rewards import (
    BooleanMatch,
    BoxedMatch,
    FormatBonus,
    NumericMatch,
    OverlongPunishment,
    Reward,
    RewardError,
    score_rewards,
)
from bridge_pl.task.verify import format_ok, strict_match_reward

WELL_FORMED = "\nx = 7.\n</think>\n<answer>\nThe answer is \\boxed{7}.\n</answer>"


# ------------------------------------------------------------------------------------------ BoxedMatch
def test_boxed_match_is_the_papers_strict_match():
    cases = [
        ("So \\boxed{7}.", "7"),
        ("\\boxed{7} then \\boxed{8}", "8"),  # only the first box counts
        ("\\boxed{ 7}", "7"),  # no stripping
        ("\\boxed{7.0}", "7"),  # no number parsing
        ("\\boxed{{7}}", "7"),  # no nested braces: the box holds "{7"
        ("no box at all", "7"),
        ("\\boxed{7", "7"),  # unclosed
        ("\\boxed{-3}", "-3"),
    ]
    expected = [strict_match_reward(c, t) for c, t in cases]
    assert BoxedMatch()([c for c, _ in cases], [t for _, t in cases]) == expected == [1, 0, 0, 0, 0, 0, 0, 1]


# ---------------------------------------------------------------------------------------- NumericMatch
def test_numeric_match_uses_dyvals_relative_tolerance():
    # |gt - pred| / (|gt| + 1e-7) < 1e-4, with gt = 1.4: the bound on |gt - pred| is 1.4e-4 (+ 1e-11)
    truths = ["1.4"] * 6
    boxes = ["1.40013", "1.39987", "1.40015", "1.39985", "1.4", "1.400"]
    completions = [f"\\boxed{{{b}}}" for b in boxes]
    assert NumericMatch()(completions, truths) == [1.0, 1.0, 0.0, 0.0, 1.0, 1.0]
    assert NumericMatch(rel_tol=1e-3)(completions, truths) == [1.0] * 6  # 1.5e-4 < 1.4e-3


def test_numeric_match_reads_plain_decimals_only():
    cases = [
        ("\\boxed{ 1,000 }", "1000", 1.0),  # commas dropped, spaces stripped (DyVal drops commas)
        ("\\boxed{1e3}", "1000", 1.0),
        ("\\boxed{-0.5}", "-.5", 1.0),
        ("\\boxed{+2.}", "2", 1.0),
        ("\\boxed{0}", "0", 1.0),  # zero: |pred| < 1e-4 * 1e-7
        ("\\boxed{1e-10}", "0", 0.0),
        ("\\boxed{1/2}", "0.5", 0.0),  # a fraction is not a plain decimal
        ("\\boxed{3+4}", "7", 0.0),  # nor an expression: nothing is evaluated
        ("\\boxed{seven}", "7", 0.0),
        ("\\boxed{nan}", "7", 0.0),
        ("\\boxed{inf}", "inf", 1.0),  # a non-number truth is matched as text ...
        ("\\boxed{1e999}", "1e999", 1.0),  # ... also one that overflows to inf
        ("\\boxed{1e999}", "7", 0.0),
        ("\\boxed{ N/A }", "N/A", 1.0),  # DyVal's "cannot be computed"
        ("\\boxed{n/a}", "N/A", 0.0),
        ("7", "7", 0.0),  # no box
    ]
    got = NumericMatch()([c for c, _, _ in cases], [t for _, t, _ in cases])
    assert got == [score for _, _, score in cases]


# ---------------------------------------------------------------------------------------- BooleanMatch
def test_boolean_match_compares_truth_values_case_insensitively():
    cases = [
        ("\\boxed{True}", "True", 1.0),
        ("\\boxed{ TRUE }", "true", 1.0),
        ("\\boxed{yes}", "True", 1.0),
        ("\\boxed{Yes}", True, 1.0),
        ("\\boxed{False}", "no", 1.0),
        ("\\boxed{no}", False, 1.0),
        ("\\boxed{False}", "True", 0.0),
        ("\\boxed{maybe}", "True", 0.0),
        ("\\boxed{N/A}", "n/a", 1.0),  # a non-boolean truth: case-insensitive text
        ("\\boxed{True}", "N/A", 0.0),
        ("True", "True", 0.0),  # no box
        ("\\boxed{True} \\boxed{False}", "False", 0.0),  # the first box only
    ]
    got = BooleanMatch()([c for c, _, _ in cases], [t for _, t, _ in cases])
    assert got == [score for _, _, score in cases]


# ----------------------------------------------------------------------------------------- FormatBonus
def test_format_bonus_is_format_ok():
    completions = [WELL_FORMED, WELL_FORMED + "\n", "no tags \\boxed{7}", "x</think><answer>a</answer>"]
    assert FormatBonus()(completions, ["7"] * 4) == [float(format_ok(c)) for c in completions] == [1, 0, 0, 1]
    full = "<think>" + WELL_FORMED
    assert FormatBonus(prompt_suffix="")([full, WELL_FORMED], ["7", "7"]) == [1.0, 0.0]


# ---------------------------------------------------------------------------------- OverlongPunishment
def test_overlong_punishment_follows_dapo_at_the_boundaries():
    # L_max = 10, L_cache = 4: 0 up to L = 6, then (6 - L) / 4 down to -1 at L = 10, then -1.
    reward = OverlongPunishment(cache_length=4, max_length=10)
    lengths = [0, 5, 6, 7, 8, 9, 10, 11, 1000]
    got = reward(["c"] * len(lengths), ["7"] * len(lengths), completion_tokens=lengths, num_ops=[1] * len(lengths))
    assert got == [0.0, 0.0, 0.0, -0.25, -0.5, -0.75, -1.0, -1.0, -1.0]


def test_overlong_punishment_defaults_to_the_rollouts_max_new_tokens():
    reward = OverlongPunishment(cache_length=2)
    got = reward(["c"] * 4, ["7"] * 4, completion_tokens=[3, 4, 3, 4], max_new_tokens=[4, 4, 8, 8])
    assert got == [-0.5, -1.0, 0.0, 0.0]
    whole = OverlongPunishment(cache_length=8)  # L_cache = L_max: the penalty grows from the first token
    assert whole(["c"] * 3, ["7"] * 3, completion_tokens=[0, 2, 8], max_new_tokens=[8] * 3) == [0.0, -0.25, -1.0]


def test_overlong_punishment_says_what_it_is_missing():
    reward = OverlongPunishment(cache_length=4)
    with pytest.raises(ValueError, match="needs the 'completion_tokens' column"):
        reward(["c"], ["7"], num_ops=[1])
    with pytest.raises(ValueError, match="needs the 'max_new_tokens' column"):
        reward(["c"], ["7"], completion_tokens=[3])
    with pytest.raises(ValueError, match="max_length=3 is below cache_length=4"):
        reward(["c"], ["7"], completion_tokens=[3], max_new_tokens=[3])
    with pytest.raises(ValueError, match="'completion_tokens' has 2 values for 1 completions"):
        reward(["c"], ["7"], completion_tokens=[3, 4], max_new_tokens=[8])


# ------------------------------------------------------------------------------------ names and checks
def test_names_default_to_snake_case_and_can_be_set():
    class HTTPStatusReward(Reward):
        def __call__(self, completions, ground_truth, **columns):
            return [0.0] * len(completions)

    assert BoxedMatch().name == "strict_match" and FormatBonus().name == "format"  # today's metric names
    assert NumericMatch().name == "numeric_match" and BooleanMatch().name == "boolean_match"
    assert OverlongPunishment(4).name == "overlong_punishment"
    assert HTTPStatusReward().name == "http_status_reward"
    assert BoxedMatch(name="exact").name == "exact"
    assert repr(FormatBonus(weight=0.1)) == "FormatBonus(prompt_suffix='<think>', weight=0.1, name='format')"


def test_bad_arguments_are_reported_at_once_by_field():
    with pytest.raises(ValueError) as err:
        NumericMatch(rel_tol=-1.0, weight=math.nan, name="a/b")
    message = str(err.value)
    for part in ("NumericMatch.rel_tol=-1.0", "NumericMatch.weight=nan", "NumericMatch.name='a/b'"):
        assert part in message, part
    with pytest.raises(ValueError, match=r"OverlongPunishment.cache_length=0: must be an integer >= 1"):
        OverlongPunishment(cache_length=0)
    with pytest.raises(ValueError, match=r"OverlongPunishment.max_length=3: must be an integer >= cache_length=4"):
        OverlongPunishment(cache_length=4, max_length=3)
    assert Reward(weight=-2.0).weight == -2.0  # a negative weight is a penalty


# ------------------------------------------------------------------------------------- linear scanning
def test_rewards_do_bounded_work_past_the_box_scan_on_a_1mb_completion(monkeypatch):
    """Beyond verify's linear first-box scan, NumericMatch reads at most MAX_NUMBER_CHARS characters per box."""
    megabyte = 1 << 20
    adversarial = [
        "\\boxed{" + "1" * megabyte + "x}",  # a giant almost-number
        "\\boxed{" + "1," * (megabyte // 2) + "}",  # a giant number with commas
        "\\boxed{" * (megabyte // 7),  # boxes that never close
        "\\boxed{" + "9" * megabyte + "}",  # a giant valid number
        "<think></think>" * (megabyte // 15),
    ]
    scanned = []

    class CountingPattern:
        def fullmatch(self, text):
            scanned.append(len(text))
            return pattern.fullmatch(text)

    pattern = rewards_module._DECIMAL
    monkeypatch.setattr(rewards_module, "_DECIMAL", CountingPattern())
    truths = ["1"] * len(adversarial)
    for reward in (BoxedMatch(), NumericMatch(), BooleanMatch(), FormatBonus()):
        assert reward(adversarial, truths) == [0.0] * len(adversarial)
    assert len(scanned) <= 2 * len(adversarial)  # the truth and at most one box per completion
    assert max(scanned) <= rewards_module.MAX_NUMBER_CHARS


# ---------------------------------------------------------------------------------------- score_rewards
class Exploding(Reward):
    def __call__(self, completions, ground_truth, **columns):
        raise KeyError("num_ops_missing")


class Returning(Reward):
    def __init__(self, values, weight: float = 1.0, name: str | None = None):
        self.values = values
        super().__init__(weight, name)

    def __call__(self, completions, ground_truth, **columns):
        return self.values


def test_score_rewards_sums_weighted_values_and_passes_columns():
    seen = {}

    class Spy(Reward):
        def __call__(self, completions, ground_truth, **columns):
            seen.update(columns, truths=ground_truth)
            return [float(n) for n in columns["num_ops"]]

    completions = [WELL_FORMED, WELL_FORMED.replace("{7}", "{8}"), "junk"]
    values, total = score_rewards(
        [BoxedMatch(weight=1.0), FormatBonus(weight=0.2), Spy(weight=-0.5)],
        completions,
        [7, 7, 7],
        {"num_ops": [1, 2, 4]},
    )
    assert values == [[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 2.0, 4.0]]
    assert total == pytest.approx([1.0 + 0.2 - 0.5, 0.2 - 1.0, -2.0])
    assert seen == {"num_ops": [1, 2, 4], "truths": ["7", "7", "7"]}  # truths as text


def test_score_rewards_default_numbers_equal_the_old_hard_coded_reward():
    completions = [WELL_FORMED, WELL_FORMED + " ", "\\boxed{7}", "nothing"]
    _, total = score_rewards([BoxedMatch(weight=1.0), FormatBonus(weight=0.05)], completions, ["7"] * 4)
    assert total == [strict_match_reward(c, "7") + 0.05 * format_ok(c) for c in completions]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (Exploding(), r"rewards\[1\] \(Exploding\): KeyError: 'num_ops_missing'"),
        (Returning([1.0]), r"rewards\[1\] \(Returning\) returned 1 values for 2 completions: \[1\.0\]"),
        (Returning([1.0, math.nan]), r"rewards\[1\] \(Returning\) returned the non-finite value nan at index 1"),
        (Returning([1.0, math.inf]), r"rewards\[1\] \(Returning\) returned the non-finite value inf at index 1"),
        (Returning([1.0, None]), r"rewards\[1\] \(Returning\) returned None \(NoneType\) at index 1, not a number"),
        (Returning(["1", 0.0]), r"rewards\[1\] \(Returning\) returned '1' \(str\) at index 0, not a number"),
        (Returning(None), r"rewards\[1\] \(Returning\) returned None \(NoneType\), not a list of 2 floats"),
        (Returning("10"), r"rewards\[1\] \(Returning\) returned '10' \(str\), not a list of 2 floats"),
    ],
)
def test_score_rewards_names_the_reward_that_failed(bad, message):
    with pytest.raises(RewardError, match=message):
        score_rewards([BoxedMatch(), bad], ["a", "b"], ["7", "7"])


def test_score_rewards_checks_its_inputs_and_uses_the_given_key():
    with pytest.raises(ValueError, match="truths has 1 values for 2 completions"):
        score_rewards([BoxedMatch()], ["a", "b"], ["7"])
    with pytest.raises(ValueError, match="num_ops has 3 values for 2 completions"):
        score_rewards([BoxedMatch()], ["a", "b"], ["7", "7"], {"num_ops": [1, 2, 3]})
    with pytest.raises(RewardError, match=r"^model\.init_args\.rewards\[0\] \(Exploding\)"):
        score_rewards([Exploding()], ["a"], ["7"], key="model.init_args.rewards")
    huge = Returning([1.0] * 1000)
    with pytest.raises(RewardError) as err:
        score_rewards([huge], ["a"], ["7"])
    assert len(str(err.value)) < 200  # the output is quoted, shortened
