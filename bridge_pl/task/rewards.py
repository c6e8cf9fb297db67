"""GRPO rewards as plug-ins: batch functions with a weight, TRL's ``reward_funcs`` / ``reward_weights`` contract.

A reward is a `Reward` object called on a batch of completions::

    reward(completions: list[str], ground_truth: list[str], **columns) -> list[float]

``completions[i]`` is the text generated after the i-th prompt (which ends in ``<think>``), ``ground_truth[i]``
its expected answer (the ``final_answer`` column, as text), and ``columns`` the other per-completion columns,
each a list as long as ``completions``. The GRPO module passes ``prompts``, ``num_ops`` and ``index`` (the
prompt batch's columns), ``completion_tokens`` (each completion's length in tokens) and ``max_new_tokens``
(the rollout's longest completion). A reward takes the columns it needs by name and must accept the others
(``**columns``), as TRL's do. It returns one finite number per completion, in order (TRL also allows None
for "does not apply"; here every reward applies to every completion).

The total reward of a completion is ``sum(reward.weight * value)`` over the rewards (`score_rewards`), as TRL
sums ``reward_weights[k] * reward_funcs[k](...)``; each reward's unweighted mean is logged under its `name`.

Shipped: `BoxedMatch` (the paper's strict match), `NumericMatch` (DyVal's numeric judge), `BooleanMatch`
(True/False answers), `FormatBonus` (the think/answer frame) and `OverlongPunishment` (DAPO's soft overlong
punishment). Rewards only read model text, with the linear scans of `bridge_pl.task.verify`: no model text is
ever executed. Standard library only: rewards run where torch may not be imported.

Example (YAML, ``model.init_args``)::

    rewards:
      - class_path: bridge_pl.task.rewards.BoxedMatch
        init_args: {weight: 1.0}
      - class_path: bridge_pl.task.rewards.FormatBonus
        init_args: {weight: 0.1}
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from bridge_pl.task.verify import extract_answer, format_ok

__all__ = [
    "BooleanMatch",
    "BoxedMatch",
    "FormatBonus",
    "NumericMatch",
    "OverlongPunishment",
    "Reward",
    "RewardError",
    "score_rewards",
]

_NAME = re.compile(r"[A-Za-z0-9_.-]+")  # a reward's name becomes the metric train/rewards/<name>
# An unambiguous decimal (no two ways to split a digit run), so a failed full match costs one pass.
_DECIMAL = re.compile(r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_DYVAL_EPS = 1e-7  # DyVal's guard in |gt - pred| / (|gt| + 1e-7): a zero answer must be matched to ~1e-11
_TRUE, _FALSE = frozenset({"true", "yes"}), frozenset({"false", "no"})
MAX_SHOWN = 80  # characters of a reward's bad output quoted in an error
# Longest boxed text read as a number: far past float precision, and it keeps a giant box from costing more
# than verify's linear scan for it.
MAX_NUMBER_CHARS = 400


class RewardError(RuntimeError):
    """A reward function raised, or returned something other than one finite number per completion."""


def _snake_case(name: str) -> str:
    """``NumericMatch`` -> ``numeric_match`` (``HTTPReward`` -> ``http_reward``)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


class Reward:
    """Base class of GRPO rewards: a weighted batch function with a name.

    Subclasses set their own fields, then call ``super().__init__(weight, name)`` (which validates them through
    `config_errors`), and implement `__call__`.

    Args:
        weight: Factor of this reward in the total (negative: a penalty; 0: logged only).
        name: Metric name, ``train/rewards/<name>`` (default: `default_name`, else the class name in snake_case).

    Raises:
        ValueError: Every invalid argument at once, each named.
    """

    default_name: ClassVar[str | None] = None
    """The name when none is given (None: the class name in snake_case)."""

    def __init__(self, weight: float = 1.0, name: str | None = None) -> None:
        self.weight = weight
        self._name = name
        issues = self.config_errors(type(self).__name__)
        if issues:
            raise ValueError("; ".join(issues))

    @property
    def name(self) -> str:
        """The metric name: ``train/rewards/<name>``."""
        return getattr(self, "_name", None) or self.default_name or _snake_case(type(self).__name__)

    def config_errors(self, key: str) -> list[str]:
        """Every invalid field, each as ``<key>.<field>=<value>: <fix>``; subclasses add theirs."""
        issues = []
        weight, name = getattr(self, "weight", None), getattr(self, "_name", None)  # a subclass may skip __init__
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight):
            issues.append(f"{key}.weight={weight!r}: must be a finite number")
        if name is not None and not (isinstance(name, str) and _NAME.fullmatch(name)):
            issues.append(f"{key}.name={name!r}: use letters, digits, '_', '.' or '-' (it names a metric)")
        return issues

    def __call__(self, completions: list[str], ground_truth: list[str], **columns: Any) -> list[float]:
        """One reward per completion (the contract in the module docstring)."""
        raise NotImplementedError(f"{type(self).__name__} must implement __call__")

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({fields}, name={self.name!r})"


class BoxedMatch(Reward):
    """1.0 when the first ``\\boxed{...}`` holds exactly ``str(ground_truth)``, else 0.0: the paper's reward.

    The same numbers as `bridge_pl.task.verify.strict_match_reward` (no stripping, no number parsing).

    >>> BoxedMatch()(["So \\\\boxed{7}.", "\\\\boxed{ 7}", "\\\\boxed{7.0}", "no box"], ["7"] * 4)
    [1.0, 0.0, 0.0, 0.0]
    """

    default_name = "strict_match"

    def __call__(self, completions: list[str], ground_truth: list[str], **columns: Any) -> list[float]:
        pairs = zip(completions, ground_truth, strict=True)
        return [1.0 if extract_answer(c) == str(t) else 0.0 for c, t in pairs]


def _number(text: str) -> float | None:
    """The finite value of a plain decimal (commas dropped, as DyVal reads answers), or None.

    Text longer than MAX_NUMBER_CHARS is not read (None).
    """
    if len(text) > MAX_NUMBER_CHARS:
        return None
    text = text.strip().replace(",", "")
    if not _DECIMAL.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


class NumericMatch(Reward):
    """1.0 when the first ``\\boxed{...}`` is a number within a relative tolerance of the ground truth.

    DyVal's arithmetic judge (promptbench ``dyval_utils.evaluate``): ``|gt - pred| / (|gt| + 1e-7) < rel_tol``
    with ``rel_tol = 1e-4``, after dropping commas. A boxed text counts as a number when it is a plain decimal
    (``-3``, ``2.50``, ``1e3``, ``1,024``; surrounding spaces allowed; at most MAX_NUMBER_CHARS characters) with a
    finite value; fractions, expressions and words are not numbers and score 0. A ground truth that is not a
    number (DyVal's ``N/A``) is matched as exact text (spaces stripped).

    Args:
        rel_tol: Relative tolerance (DyVal: 1e-4).
        weight: See `Reward`.
        name: See `Reward`.

    >>> boxed = ["\\\\boxed{1.40001}", "\\\\boxed{1.5}", "\\\\boxed{ 1,000 }", "\\\\boxed{N/A}"]
    >>> NumericMatch()(boxed, [1.4, 1.4, 1000, "N/A"])
    [1.0, 0.0, 1.0, 1.0]
    """

    def __init__(self, rel_tol: float = 1e-4, weight: float = 1.0, name: str | None = None) -> None:
        self.rel_tol = rel_tol
        super().__init__(weight, name)

    def config_errors(self, key: str) -> list[str]:
        issues = super().config_errors(key)
        if not (isinstance(self.rel_tol, numbers.Real) and 0 <= self.rel_tol < math.inf):
            issues.append(f"{key}.rel_tol={self.rel_tol!r}: must be a finite number >= 0")
        return issues

    def __call__(self, completions: list[str], ground_truth: list[str], **columns: Any) -> list[float]:
        return [self._score(c, str(t)) for c, t in zip(completions, ground_truth, strict=True)]

    def _score(self, completion: str, truth: str) -> float:
        boxed = extract_answer(completion)
        if boxed is None:
            return 0.0
        expected = _number(truth)
        if expected is None:
            return 1.0 if boxed.strip() == truth.strip() else 0.0
        value = _number(boxed)
        return 1.0 if value is not None and abs(expected - value) < self.rel_tol * (abs(expected) + _DYVAL_EPS) else 0.0


class BooleanMatch(Reward):
    """1.0 when the first ``\\boxed{...}`` states the ground truth's truth value (true/yes, false/no; any case).

    DyVal's logic judge (promptbench ``dyval_utils.evaluate``), on the boxed text with spaces stripped. A ground
    truth that is neither true/yes nor false/no (DyVal's ``N/A``) is matched as case-insensitive text.

    >>> boxed = ["\\\\boxed{ TRUE }", "\\\\boxed{yes}", "\\\\boxed{no}", "\\\\boxed{n/a}", "true"]
    >>> BooleanMatch()(boxed, ["True", True, "yes", "N/A", "true"])
    [1.0, 1.0, 0.0, 1.0, 0.0]
    """

    def __call__(self, completions: list[str], ground_truth: list[str], **columns: Any) -> list[float]:
        return [self._score(c, t) for c, t in zip(completions, ground_truth, strict=True)]

    @staticmethod
    def _score(completion: str, truth: Any) -> float:
        boxed = extract_answer(completion)
        if boxed is None:
            return 0.0
        answer, expected = boxed.strip().lower(), str(truth).strip().lower()
        for words in (_TRUE, _FALSE):
            if expected in words:
                return 1.0 if answer in words else 0.0
        return 1.0 if answer == expected else 0.0


class FormatBonus(Reward):
    """1.0 when ``prompt_suffix + completion`` is ``<think>...</think> <answer>...</answer>``, else 0.0.

    `bridge_pl.task.verify.format_ok`, the paper's format pattern; its weight is the paper's
    ``format_reward_scale`` (0.05 for Llama-1B).

    Args:
        prompt_suffix: Text the prompt ends with (the RL prompt ends in ``<think>``).
        weight: See `Reward`.
        name: See `Reward` (default ``format``).

    >>> FormatBonus()(["x</think> <answer>\\\\boxed{7}</answer>", "x</think> \\\\boxed{7}"], ["7", "7"])
    [1.0, 0.0]
    """

    default_name = "format"

    def __init__(self, prompt_suffix: str = "<think>", weight: float = 1.0, name: str | None = None) -> None:
        self.prompt_suffix = prompt_suffix
        super().__init__(weight, name)

    def __call__(self, completions: list[str], ground_truth: list[str], **columns: Any) -> list[float]:
        return [1.0 if format_ok(c, self.prompt_suffix) else 0.0 for c in completions]


class OverlongPunishment(Reward):
    """DAPO's soft overlong punishment (Yu et al. 2025, eq. 13) of each completion's length L in tokens.

    With ``L_max = max_length`` and ``L_cache = cache_length``::

        0                              if L <= L_max - L_cache
        ((L_max - L_cache) - L) / L_cache  if L_max - L_cache < L <= L_max   (linear from 0 down to -1)
        -1                             if L > L_max

    Reads the ``completion_tokens`` column (and ``max_new_tokens`` when `max_length` is None), which the GRPO
    module passes. Use a positive weight (DAPO adds it to the correctness reward as is: weight 1).

    Args:
        cache_length: L_cache, the soft band below L_max in which the penalty grows (DAPO: 4096 of 20480).
        max_length: L_max (default: each row's ``max_new_tokens``, the rollout's longest completion).
        weight: See `Reward`.
        name: See `Reward`.

    >>> OverlongPunishment(cache_length=4, max_length=10)(["a"] * 4, ["7"] * 4, completion_tokens=[6, 8, 10, 11])
    [0.0, -0.5, -1.0, -1.0]
    """

    def __init__(
        self, cache_length: int, max_length: int | None = None, weight: float = 1.0, name: str | None = None
    ) -> None:
        self.cache_length, self.max_length = cache_length, max_length
        super().__init__(weight, name)

    def config_errors(self, key: str) -> list[str]:
        issues = super().config_errors(key)
        if not isinstance(self.cache_length, int) or self.cache_length < 1:
            issues.append(f"{key}.cache_length={self.cache_length!r}: must be an integer >= 1")
        elif self.max_length is not None and (
            not isinstance(self.max_length, int) or self.max_length < self.cache_length
        ):
            issues.append(
                f"{key}.max_length={self.max_length!r}: must be an integer >= cache_length={self.cache_length} "
                "(or null for the rollout's max_new_tokens)"
            )
        return issues

    def __call__(self, completions: list[str], ground_truth: list[str], **columns: Any) -> list[float]:
        lengths = _column(columns, "completion_tokens", len(completions))
        limits = (
            [self.max_length] * len(completions)
            if self.max_length is not None
            else _column(columns, "max_new_tokens", len(completions))
        )
        return [self.penalty(length, limit) for length, limit in zip(lengths, limits, strict=True)]

    def penalty(self, length: int, max_length: int) -> float:
        """The punishment of one completion of `length` tokens under L_max = `max_length`."""
        if max_length < self.cache_length:
            raise ValueError(
                f"max_length={max_length} is below cache_length={self.cache_length}: lower cache_length or raise "
                "the rollout's max_new_tokens"
            )
        expected = max_length - self.cache_length
        if length <= expected:
            return 0.0
        if length <= max_length:
            return (expected - length) / self.cache_length
        return -1.0


def _column(columns: Mapping[str, Any], name: str, count: int) -> Sequence[Any]:
    """The column `name`, checked to hold one value per completion."""
    if name not in columns:
        raise ValueError(f"needs the {name!r} column (given: {', '.join(sorted(columns)) or 'none'})")
    values = columns[name]
    if len(values) != count:
        raise ValueError(f"column {name!r} has {len(values)} values for {count} completions")
    return values


# -------------------------------------------------------------------------------------------- scoring
def _shown(value: Any) -> str:
    """`value` quoted for an error, shortened so a huge output cannot flood the report."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _checked(values: Any, count: int, label: str) -> list[float]:
    """`values` as floats, or a RewardError saying what `label` returned instead of `count` finite numbers."""
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise RewardError(f"{label} returned {_shown(values)} ({type(values).__name__}), not a list of {count} floats")
    if len(values) != count:
        raise RewardError(f"{label} returned {len(values)} values for {count} completions: {_shown(values)}")
    out = []
    for i, value in enumerate(values):
        if not isinstance(value, numbers.Real):
            raise RewardError(f"{label} returned {_shown(value)} ({type(value).__name__}) at index {i}, not a number")
        if not math.isfinite(value):
            raise RewardError(f"{label} returned the non-finite value {value!r} at index {i}")
        out.append(float(value))
    return out


def score_rewards(
    rewards: Sequence[Reward],
    completions: Sequence[str],
    truths: Sequence[Any],
    columns: Mapping[str, Sequence[Any]] | None = None,
    key: str = "rewards",
) -> tuple[list[list[float]], list[float]]:
    """Every reward of every completion, checked, and the weighted total of each completion.

    Args:
        rewards: The rewards, in order.
        completions: Generated texts (B of them).
        truths: Expected answers, one per completion (passed as text, ``str(truth)``).
        columns: Other per-completion columns, each with B values (passed to every reward as keywords).
        key: What the rewards are called in errors (the module passes its YAML key).

    Returns:
        (values, total): ``values[k][i]`` is reward k's unweighted value of completion i, and
        ``total[i] = sum_k rewards[k].weight * values[k][i]``.

    Raises:
        RewardError: A reward raised, or returned a wrong count or a non-finite / non-number value; the message
            starts with ``<key>[k] (<Class>)``.
        ValueError: `truths` or a column does not hold one value per completion.

    >>> score_rewards([BoxedMatch(), FormatBonus(weight=0.5)], ["x</think> <answer>\\\\boxed{7}</answer>", "8"], [7, 7])
    ([[1.0, 0.0], [1.0, 0.0]], [1.5, 0.0])
    """
    count = len(completions)
    columns = dict(columns or {})
    for name, values in [("truths", truths), *columns.items()]:
        if len(values) != count:
            raise ValueError(f"{name} has {len(values)} values for {count} completions")
    texts, answers = list(completions), [str(t) for t in truths]
    values, total = [], [0.0] * count
    for k, reward in enumerate(rewards):
        label = f"{key}[{k}] ({type(reward).__name__})"
        try:
            returned = reward(list(texts), list(answers), **{n: list(v) for n, v in columns.items()})
        except Exception as err:
            raise RewardError(f"{label}: {type(err).__name__}: {err}") from err
        scores = _checked(returned, count, label)
        values.append(scores)
        total = [t + reward.weight * s for t, s in zip(total, scores, strict=True)]
    return values, total
