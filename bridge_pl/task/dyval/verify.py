"""Check a DyVal answer against values recomputed from the question text alone.

The judge is DyVal's (promptbench/dyval/dyval_utils.py ``dyval_evaluate``): an arithmetic answer is right when
``abs(gt - pred) / (abs(gt) + 1e-7) < 0.0001``; a logic answer when it reads ``true``/``false`` (any case) as the
truth; ``N/A`` must match exactly. Step chains write rounded numbers (8 decimals), so each link of a chain gets the
same relative test plus an absolute slack of `STEP_ABSOLUTE_SLACK`.
"""

from __future__ import annotations

import re

from bridge_pl.task.dyval.problem import Value, apply_op, values_close
from bridge_pl.task.dyval.question import DyValParseError, ParsedQuestion, parse_dyval_question

__all__ = ["value_matches", "STEP_ABSOLUTE_SLACK", "answer_matches", "check_dyval_cot", "check_dyval_answer"]

STEP_ABSOLUTE_SLACK = 1e-6
"""Absolute slack of one chain link (rounding to 8 decimals, then folding a few operations)."""

_FRAME = re.compile(
    r"<think>\n(?P<body>.*)\n</think>\n<answer>\nThe final answer is \\boxed\{(?P<answer>[^{}\n]*)\}\.\n</answer>",
    re.DOTALL,
)
_CHAIN_START = re.compile(r"(?<![A-Za-z])([a-z]+) = ")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?")
_INFIX = {" + ": "+", " - ": "-", " * ": "*", " / ": "/", " AND ": "and", " OR ": "or"}


class _BadStep(Exception):
    """One chain link cannot be read or evaluated."""


def answer_matches(predicted: str, question: ParsedQuestion) -> bool:
    """DyVal's judge: relative error < 1e-4 (arithmetic), true/false in any case (logic), ``N/A`` exactly."""
    return value_matches(predicted, question.values[question.target])


def value_matches(predicted: str, truth: Value | None) -> bool:
    """DyVal's judge of an answer text against a value (None: the target is not computable, ``N/A``)."""
    text = predicted.strip()
    if truth is None:
        return text == "N/A"
    if isinstance(truth, bool):
        return text.lower() == str(truth).lower()
    try:
        return values_close(float(text.replace(",", "")), float(truth))
    except ValueError:
        return False


def _term(text: str, question: ParsedQuestion, computed: set[str]) -> Value:
    if text in ("True", "False"):
        return text == "True"
    if _NUMBER.fullmatch(text):
        return float(text)
    if text not in question.definitions:
        raise _BadStep(f"{text!r} is neither a number nor a name of the question")
    if text not in computed:
        raise _BadStep(f"uses {text} before computing it")
    value = question.values[text]
    if value is None:
        raise _BadStep(f"{text} cannot be computed")
    return value


def _link_value(text: str, question: ParsedQuestion, computed: set[str]) -> Value:
    """Evaluate one chain link: a term, sqrt(t), (t)^2, (NOT t), or one infix operation folded left to right."""
    for pattern, op in ((r"sqrt\((.+)\)", "sqrt"), (r"\((.+)\)\^2", "**"), (r"\(NOT (\S+)\)", "not")):
        match = re.fullmatch(pattern, text)
        if match:
            return apply_op(op, [_term(match.group(1), question, computed)])
    inner = text[1:-1] if text.startswith("(") and text.endswith(")") else text
    ops = [op for symbol, op in _INFIX.items() if symbol in inner]
    if not ops:
        return _term(text, question, computed)
    if len(ops) > 1:
        raise _BadStep(f"link {text!r} mixes operations")
    symbol = next(s for s, o in _INFIX.items() if o == ops[0])
    return apply_op(ops[0], [_term(t, question, computed) for t in inner.split(symbol)])


def _same(value: Value, truth: Value) -> bool:
    if isinstance(truth, bool) or isinstance(value, bool):
        return value is truth
    return values_close(float(value), float(truth), absolute=STEP_ABSOLUTE_SLACK)


def _check_line(number: int, line: str, question: ParsedQuestion, computed: set[str]) -> list[str]:
    """Errors of one step line holding ``name = link = ... = value.``; the name joins `computed`."""
    start = next((m for m in _CHAIN_START.finditer(line) if m.group(1) in question.definitions), None)
    if start is None:
        return [f"line {number}: an equation about no node of the question: {line!r}"]
    chain = line[start.start() :]
    if not chain.endswith("."):
        return [f"line {number}: the equation must end the line with '.': {line!r}"]
    name, *links = chain[:-1].split(" = ")
    truth = question.values[name]
    if truth is None:
        return [f"line {number}: {name} cannot be computed, yet the answer writes a value for it"]
    errors = []
    for link in links:
        try:
            value = _link_value(link, question, computed)
        except (_BadStep, ArithmeticError) as exc:
            errors.append(f"line {number}: {name}: {exc}")
            continue
        if not _same(value, truth):
            errors.append(f"line {number}: {name}: {link!r} gives {value!r}, but {name} is {truth!r}")
    computed.add(name)
    return errors


def check_dyval_answer(question: ParsedQuestion, response: str) -> list[str]:
    """Every error of a framed answer to an already parsed question ([] when it is valid)."""
    frame = _FRAME.fullmatch(response)
    if frame is None:
        return ["the response is not in the answer frame (<think>...</think> then <answer> with \\boxed{V})"]
    errors = []
    if not answer_matches(frame.group("answer"), question):
        errors.append(f"boxed answer {frame.group('answer')!r}, but {question.target} is {question.answer}")
    computed: set[str] = set()
    for number, raw in enumerate(frame.group("body").split("\n"), start=1):
        line = raw.removeprefix("- ")
        if " = " in line:
            errors += _check_line(number, line, question, computed)
    if question.target not in computed:
        errors.append(f"the steps never compute the target {question.target}")
    return errors


def check_dyval_cot(question_text: str, response: str) -> list[str]:
    """Every error of a DyVal answer, checked against the question text alone ([] when it is valid).

    Checks the frame, the boxed answer (DyVal's judge), and every equation chain: each link must evaluate to the
    value of the chain's node recomputed from the question, and may only use nodes computed on earlier lines.
    """
    try:
        question = parse_dyval_question(question_text)
    except DyValParseError as exc:
        return [f"question: {exc}"]
    return check_dyval_answer(question, response)
