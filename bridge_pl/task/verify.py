"""Verifier: the paper's strict-match reward and a checker for every equation chain of an answer.

Reward (paper_spec §C.3): take the **first** ``\\boxed{...}`` of the completion and compare its text with
``str(ground_truth)`` exactly (no stripping, no number parsing), plus an optional format bonus when
``"<think>" + completion`` has the ``<think>...</think> <answer>...</answer>`` shape. Model text is only
ever matched with regular expressions and parsed by a small arithmetic parser: it is never executed.

The CoT checker validates an answer as a proof: every ``X = t0 = t1 = ... = v`` chain has links that
agree, uses only variables defined by earlier chains, substitutes their values faithfully, and ends at
the boxed answer. It is what proves every renderer correct on thousands of problems.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "BOXED",
    "CoTCheck",
    "batch_rewards",
    "check_cot",
    "compute_reward",
    "extract_answer",
    "format_ok",
    "strict_match_reward",
]

BOXED = re.compile(r"\\boxed\{([^}]*)\}")
FORMAT = re.compile(r"^<think>.*?</think>\s*<answer>.*?</answer>$", re.DOTALL | re.MULTILINE)
CHAIN = re.compile(r"(?<![A-Za-z])([A-Za-z]) = ([-+*() 0-9A-Za-z=]+?)\.(?= |$)")
TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z])|([-+*()]))")
INTEGER = re.compile(r"-?\d+")
MAX_DEPTH = 64


def extract_answer(text: str) -> str | None:
    """Return the text inside the first \\boxed{...} of `text`, or None when there is none."""
    match = BOXED.search(text)
    return None if match is None else match.group(1)


def strict_match_reward(completion: str, ground_truth: str | int) -> float:
    """1.0 when the first boxed answer equals str(ground_truth) exactly as text, else 0.0."""
    return 1.0 if extract_answer(completion) == str(ground_truth) else 0.0


def format_ok(completion: str, prompt_suffix: str = "<think>") -> bool:
    """Whether prompt_suffix + completion fully matches <think>...</think> <answer>...</answer>."""
    return FORMAT.fullmatch(prompt_suffix + completion) is not None


def compute_reward(
    completion: str, ground_truth: str | int, format_reward_scale: float = 0.0, prompt_suffix: str = "<think>"
) -> float:
    """Strict-match reward plus format_reward_scale when the completion is well formed."""
    reward = strict_match_reward(completion, ground_truth)
    if format_reward_scale and format_ok(completion, prompt_suffix):
        reward += format_reward_scale
    return reward


def batch_rewards(
    completions: Sequence[str],
    ground_truths: Sequence[str | int],
    format_reward_scale: float = 0.0,
    prompt_suffix: str = "<think>",
) -> list[float]:
    """Reward of each completion against its ground truth (TRL-style batch reward function).

    Contract: ``completions[i]`` is the generated text after the prompt (which ends in ``prompt_suffix``);
    ``ground_truths[i]`` is compared as ``str()``; the result has one float per completion, in order.

    >>> batch_rewards(["\\nSo \\\\boxed{7}.", "\\\\boxed{ 7}", "no box"], [7, 7, "7"])
    [1.0, 0.0, 0.0]
    """
    if len(completions) != len(ground_truths):
        raise ValueError(f"got {len(completions)} completions but {len(ground_truths)} ground truths")
    pairs = zip(completions, ground_truths, strict=True)
    return [compute_reward(completion, truth, format_reward_scale, prompt_suffix) for completion, truth in pairs]


# ----------------------------------------------------------------------------------------- the checker
@dataclass
class CoTCheck:
    """Result of `check_cot`.

    Attributes:
        ok: Whether the answer passed every check.
        errors: Readable problems, each naming the 1-based line of the response.
        num_equations: Number of equation chains found.
        final_value: Value of the last chain's variable (None without chains).
    """

    ok: bool
    errors: list[str] = field(default_factory=list)
    num_equations: int = 0
    final_value: int | None = None


class _ParseError(ValueError):
    pass


class _Parser:
    """Recursive-descent parser and evaluator for chain terms: integers, letters, + - *, parentheses."""

    def __init__(self, text: str, env: dict[str, int], modulus: int | None):
        self.tokens = _tokenize(text)
        self.pos = 0
        self.env = env
        self.modulus = modulus
        self.depth = 0

    def parse(self) -> int:
        value = self._sum()
        if self.pos != len(self.tokens):
            raise _ParseError(f"unexpected {self.tokens[self.pos]!r}")
        return value

    def _peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _reduce(self, value: int) -> int:
        return value if self.modulus is None else value % self.modulus

    def _sum(self) -> int:
        value = self._product()
        while self._peek() in ("+", "-"):
            op = self.tokens[self.pos]
            self.pos += 1
            right = self._product()
            value = self._reduce(value + right if op == "+" else value - right)
        return value

    def _product(self) -> int:
        value = self._factor()
        while self._peek() == "*":
            self.pos += 1
            value = self._reduce(value * self._factor())
        return value

    def _factor(self) -> int:
        token = self._peek()
        if token is None:
            raise _ParseError("expression ends too early")
        self.pos += 1
        if token == "-":
            return self._nested(lambda: self._reduce(-self._factor()))
        if token == "(":
            value = self._nested(self._sum)
            if self._peek() != ")":
                raise _ParseError("missing ')'")
            self.pos += 1
            return value
        if token.isdigit():
            return int(token)
        if token.isalpha():
            if token not in self.env:
                raise _ParseError(f"variable '{token}' used before it is defined")
            return self.env[token]
        raise _ParseError(f"unexpected {token!r}")

    def _nested(self, parse) -> int:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _ParseError(f"nested deeper than {MAX_DEPTH} levels")
        try:
            return parse()
        finally:
            self.depth -= 1


def _tokenize(text: str) -> list[str]:
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise _ParseError(f"cannot read {text[pos:pos + 10]!r}")
        tokens.append(match.group(match.lastindex))
        pos = match.end()
    return tokens


def _literal_shape(tokens: list[str]) -> list[str]:
    """Tokens with negative literals "(-5)" and unary "-5" folded into one token "-5"."""
    shape: list[str] = []
    i = 0
    while i < len(tokens):
        window = tokens[i : i + 4]
        if len(window) == 4 and window[:2] == ["(", "-"] and window[2].isdigit() and window[3] == ")":
            shape.append(f"-{window[2]}")
            i += 4
        elif len(window) >= 2 and window[0] == "-" and window[1].isdigit() and (not shape or shape[-1] in "+-*("):
            shape.append(f"-{window[1]}")
            i += 2
        else:
            shape.append(tokens[i])
            i += 1
    return shape


def _substitution_error(formula: str, numeric: str, env: dict[str, int]) -> str | None:
    """Why `numeric` is not `formula` with each variable replaced by its value, or None if it is."""
    expected = [str(env[t]) if t.isalpha() else t for t in _literal_shape(_tokenize(formula))]
    actual = _literal_shape(_tokenize(numeric))
    if expected != actual:
        return f"'{numeric}' is not '{formula}' with the values substituted (expected '{' '.join(expected)}')"
    return None


def _frame_errors(response: str) -> tuple[list[str], str | None, str]:
    """Problems with the <think>/<answer> frame and the box; returns (errors, boxed text, think body)."""
    errors = []
    tags = ["<think>", "</think>", "<answer>", "</answer>"]
    positions = [response.find(tag) for tag in tags]
    if any(p < 0 for p in positions) or positions != sorted(positions):
        missing = [t for t, p in zip(tags, positions, strict=True) if p < 0]
        errors.append(f"frame: expected <think>...</think> then <answer>...</answer> (missing: {missing or 'order'})")
    boxes = BOXED.findall(response)
    boxed = boxes[0] if boxes else None
    if not boxes:
        errors.append("frame: no \\boxed{...} answer")
    elif len(boxes) > 1:
        errors.append(f"frame: {len(boxes)} \\boxed{{}} answers; the reward reads only the first ({boxes[0]!r})")
    if boxed is not None and not INTEGER.fullmatch(boxed):
        errors.append(f"frame: boxed answer {boxed!r} is not an integer")
    start, end = positions[0], positions[1]
    body = response[start + len("<think>") : end] if 0 <= start < end else response
    return errors, boxed, body


def _check_chain(variable: str, terms: list[str], env: dict[str, int], modulus: int | None, where: str) -> list[str]:
    """Check one chain and record its variable's value in `env`; returns the problems found."""
    values = []
    for k, term in enumerate(terms):
        try:
            values.append(_Parser(term, env if k == 0 else {}, modulus).parse())
        except _ParseError as err:
            return [f"{where}: cannot evaluate '{term}' ({err})"]
    errors = []
    if modulus is not None:
        for term in terms:
            errors += [f"{where}: {n} is not in [0, {modulus})" for n in re.findall(r"\d+", term) if int(n) >= modulus]
    for k in range(1, len(values)):
        if values[k] != values[0]:
            errors.append(f"{where}: link '{terms[k]}' evaluates to {values[k]}, but '{terms[0]}' gives {values[0]}")
    if len(terms) > 1 and any(t.isalpha() for t in _tokenize(terms[0])):
        problem = _substitution_error(terms[0], terms[1], env)
        if problem:
            errors.append(f"{where}: {problem}")
    if variable in env and env[variable] != values[-1]:
        errors.append(f"{where}: '{variable}' was {env[variable]} and is now {values[-1]}")
    env[variable] = values[-1]
    return errors


def check_cot(response: str, *, expected_answer: int | str | None = None, modulus: int | None = None) -> CoTCheck:
    """Check every equation chain of an answer: links agree, variables defined before use, answer consistent."""
    errors, boxed, body = _frame_errors(response)
    offset = response[: response.find(body)].count("\n") if body in response else 0
    env: dict[str, int] = {}
    final_value, count, conclusion = None, 0, None
    for number, line in enumerate(body.split("\n"), start=offset + 1):
        stripped = line.strip()
        if stripped and not stripped.startswith("- "):
            conclusion = (number, stripped)
        for match in CHAIN.finditer(line):
            terms = match.group(2).split(" = ")
            errors += _check_chain(match.group(1), terms, env, modulus, f"line {number}")
            final_value = env.get(match.group(1))
            count += 1
    if count and boxed is not None and INTEGER.fullmatch(boxed) and int(boxed) != final_value:
        errors.append(f"answer: boxed {boxed} differs from the last computed value {final_value}")
    if count and conclusion is not None:
        numbers = INTEGER.findall(conclusion[1])
        if numbers and int(numbers[-1]) != final_value:
            errors.append(f"line {conclusion[0]}: conclusion says {numbers[-1]}, last computed value is {final_value}")
    if expected_answer is not None and boxed != str(expected_answer):
        errors.append(f"answer: boxed {boxed!r} is not the expected {str(expected_answer)!r}")
    return CoTCheck(ok=not errors, errors=errors, num_equations=count, final_value=final_value)
