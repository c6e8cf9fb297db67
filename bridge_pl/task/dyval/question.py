"""DyVal's public question format: render it from a problem, and parse it back from the text alone.

The sentences are DyVal's, verbatim (promptbench/dyval/DAG/math_dag.py ``ArithmeticDAGDescriber.
describe_question_node`` and logic_dag.py ``BoolDAGDescriber.describe_question_node``); the frame around them is
DyVal's prompt (promptbench/dyval/dyval_utils.py ``DYVAL_PROMPTS["arithmetic"]`` / ``["bool_logic"]``)::

    Here is a description of an arithmetic problem:
    The value of aaa is 3.
    aac gets its value by adding together the value of aaa and aab.
    ...
    Compute the result of aac. If the solution cannot be calculated, answer 'N/A'. Ensure your result ...

`parse_dyval_question` reads one sentence per line with anchored patterns (linear in the text) and
`evaluate_definitions` recomputes every value without recursion, so a question is checked from its text alone.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bridge_pl.task.dyval.problem import (
    UNARY_OPS,
    DyValNode,
    DyValProblem,
    DyValProblemError,
    Family,
    Value,
    apply_op,
    format_value,
)

__all__ = [
    "DyValParseError",
    "HEADERS",
    "ParsedQuestion",
    "dyval_answer_of",
    "evaluate_definitions",
    "parse_dyval_question",
    "render_dyval_description",
    "render_dyval_question",
]

HEADERS: dict[str, str] = {
    "arithmetic": "Here is a description of an arithmetic problem:",
    "logic": "Here is a description of a boolean logic problem:",
}
"""DyVal's first prompt line per family."""
QUERY = "Compute the result of {target}."
INSTRUCTIONS: dict[str, str] = {
    "arithmetic": (
        " If the solution cannot be calculated, answer 'N/A'. Ensure your result is within a relative precision of "
        "0.0001 (or 0.01%) compared to the ground truth value. Ensure your final result begins with '<<<' and ends "
        "with '>>>', for example, if the answer is 1, your final result should be <<<1>>>."
    ),
    "logic": (
        " If the solution can not be calculated, answer 'N/A'. Ensure your final result begins with '<<<' and ends "
        "with '>>>', for example, if the answer is True, your final result should be <<<True>>>."
    ),
}
"""DyVal's prompt after the query sentence (its answer-format instruction), per family."""
MAX_QUESTION_CHARS = 1_000_000  # parsing is linear; this only bounds the work on hostile input

_ARITH_VERBS = {
    "+": "adding together",
    "*": "multiplying together",
    "sqrt": "taking the square root of",
    "**": "squaring",
}
_NAME = r"[a-z]+"
_NAMES = rf"{_NAME}(?: and {_NAME})*"
_NUMBER = r"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?"
_BY = rf"({_NAME}) gets its value by"
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        ("leaf", rf"The value of ({_NAME}) is ({_NUMBER})\."),
        ("+", rf"({_NAME}) gets its value by adding together the value of ({_NAMES})\."),
        ("*", rf"({_NAME}) gets its value by multiplying together the value of ({_NAMES})\."),
        ("-2", rf"({_NAME}) gets its value by subtracting the value of ({_NAME}) from the value of ({_NAME})\."),
        (
            "-",
            rf"{_BY} subtracting the sum of the values of ({_NAMES}) from the value of ({_NAME})\.",
        ),
        ("/2", rf"({_NAME}) gets its value by dividing the value of ({_NAME}) by those of ({_NAME})\."),
        (
            "/",
            rf"{_BY} dividing the value of ({_NAME}) by the product of the values of ({_NAMES})\.",
        ),
        ("sqrt", rf"({_NAME}) gets its value by taking the square root of the value that ({_NAME}) has\."),
        ("**", rf"({_NAME}) gets its value by squaring the value that ({_NAME}) has\."),
        ("bool", rf"({_NAME}) is (True|False)\."),
        ("not", rf"The value of ({_NAME}) equals to \(NOT ({_NAME})\)\."),
        ("and", rf"The value of ({_NAME}) equals to \(({_NAME}(?: AND {_NAME})*)\)\."),
        ("or", rf"The value of ({_NAME}) equals to \(({_NAME}(?: OR {_NAME})*)\)\."),
    )
)
_QUERY = re.compile(rf"Compute the result of ({_NAME})\.")


class DyValParseError(DyValProblemError):
    """A question text is not in DyVal's format, or its definitions are incomplete or cyclic."""


def render_dyval_description(problem: DyValProblem, node: DyValNode) -> str:
    """DyVal's sentence for one node."""
    names = [problem.nodes[i].name for i in node.inputs]
    if problem.family == "logic":
        if node.is_leaf:
            return f"{node.name} is {'True' if node.value else 'False'}."
        if node.op == "not":
            return f"The value of {node.name} equals to (NOT {names[0]})."
        return f"The value of {node.name} equals to ({f' {node.op.upper()} '.join(names)})."
    if node.is_leaf:
        return f"The value of {node.name} is {node.value}."
    lead = f"{node.name} gets its value by "
    if node.op in UNARY_OPS:
        return lead + f"{_ARITH_VERBS[node.op]} the value that {names[0]} has."
    if node.op == "-":
        if len(names) > 2:
            return (
                lead + f"subtracting the sum of the values of {' and '.join(names[1:])} from the value of {names[0]}."
            )
        return lead + f"subtracting the value of {names[1]} from the value of {names[0]}."
    if node.op == "/":
        if len(names) > 2:
            return lead + f"dividing the value of {names[0]} by the product of the values of {' and '.join(names[1:])}."
        return lead + f"dividing the value of {names[0]} by those of {names[1]}."
    return lead + f"{_ARITH_VERBS[node.op]} the value of {' and '.join(names)}."


def render_dyval_question(
    problem: DyValProblem, order: Sequence[int] | random.Random | None = None, *, instructions: bool = True
) -> str:
    """The question in DyVal's prompt format.

    Args:
        problem: The problem to describe.
        order: Node ids in description order; a `random.Random` to shuffle all descriptions (DyVal's ``random``
            order); None for the order drawn at generation (`problem.question_order`).
        instructions: Keep DyVal's answer-format instruction after "Compute the result of X." (its ``<<<>>>``
            request); False ends the question at the query sentence.
    """
    if order is None:
        ids = list(problem.question_order)
    elif isinstance(order, random.Random):
        ids = list(problem.question_order)
        order.shuffle(ids)
    else:
        ids = list(order)
    lines = [HEADERS[problem.family], *(render_dyval_description(problem, problem.nodes[i]) for i in ids)]
    query = QUERY.format(target=problem.nodes[problem.target].name)
    lines.append(query + (INSTRUCTIONS[problem.family] if instructions else ""))
    return "\n".join(lines)


@dataclass
class ParsedQuestion:
    """What a DyVal question says: each name's definition, the target, and the recomputed values."""

    family: Family
    """``arithmetic`` or ``logic``."""
    target: str
    """The name the question asks for."""
    definitions: dict[str, tuple[str | None, tuple[str, ...], Value | None]]
    """Name -> (operation or None for a leaf, input names, leaf value or None), in sentence order."""
    values: dict[str, Value | None]
    """Name -> recomputed value; None where an operation fails (the answer is then ``N/A``)."""

    @property
    def answer(self) -> str:
        """The ground truth as DyVal writes it (``N/A`` when the target cannot be computed)."""
        value = self.values[self.target]
        return "N/A" if value is None else format_value(value)


def _parse_sentence(line: str) -> tuple[str, str | None, tuple[str, ...], Value | None]:
    for kind, pattern in _PATTERNS:
        match = pattern.fullmatch(line)
        if match is None:
            continue
        groups = match.groups()
        if kind == "leaf":
            number = groups[1]
            value = int(number) if re.fullmatch(r"-?\d+", number) else float(number)
            return groups[0], None, (), value
        if kind == "bool":
            return groups[0], None, (), groups[1] == "True"
        if kind in ("-2", "/2"):
            return groups[0], kind[0], (groups[2], groups[1]), None
        if kind == "-":  # "... the sum of the values of B and C from the value of A."
            return groups[0], kind, (groups[2], *groups[1].split(" and ")), None
        if kind == "/":  # "... the value of A by the product of the values of B and C."
            return groups[0], kind, (groups[1], *groups[2].split(" and ")), None
        separator = {"and": " AND ", "or": " OR "}.get(kind, " and ")
        return groups[0], kind, tuple(groups[1].split(separator)), None
    raise DyValParseError(f"not a DyVal description: {line!r}")


def parse_dyval_question(text: str) -> ParsedQuestion:
    """Read a DyVal question (with or without DyVal's header and instructions) and recompute every value.

    Raises:
        DyValParseError: an unknown sentence, a name defined twice or never, a cycle, or no query sentence.
    """
    if len(text) > MAX_QUESTION_CHARS:
        raise DyValParseError(f"question has {len(text)} characters; the parser reads at most {MAX_QUESTION_CHARS}")
    family: Family | None = None
    target = None
    definitions: dict[str, tuple[str | None, tuple[str, ...], Value | None]] = {}
    for raw in text.split("\n"):
        line = raw.strip()
        if not line:
            continue
        for name, header in HEADERS.items():
            if line == header:
                family = name  # type: ignore[assignment]
                break
        else:
            query = _QUERY.match(line)
            if query is not None:
                target = query.group(1)
                continue
            name, op, inputs, value = _parse_sentence(line)
            if name in definitions:
                raise DyValParseError(f"{name} is described twice")
            definitions[name] = (op, inputs, value)
    if target is None:
        raise DyValParseError("no 'Compute the result of X.' sentence")
    if target not in definitions:
        raise DyValParseError(f"the question asks for {target}, which is never described")
    family = family or _family_of(definitions)
    return ParsedQuestion(family, target, definitions, evaluate_definitions(definitions))


def _family_of(definitions: dict) -> Family:
    ops = {op for op, _, _ in definitions.values()}
    values = [v for _, _, v in definitions.values() if v is not None]
    logic = ops & {"and", "or", "not"} or any(isinstance(v, bool) for v in values)
    return "logic" if logic else "arithmetic"


def evaluate_definitions(
    definitions: dict[str, tuple[str | None, tuple[str, ...], Value | None]],
) -> dict[str, Value | None]:
    """Every name's value (None where an operation fails or uses a failed value), without recursion.

    Raises:
        DyValParseError: an input that is never described, or a cycle.
    """
    values: dict[str, Value | None] = {}
    active: set[str] = set()
    for start in definitions:
        stack = [start]
        while stack:
            name = stack[-1]
            if name in values:
                stack.pop()
                continue
            op, inputs, leaf = definitions[name]
            if op is None:
                values[name] = leaf
                stack.pop()
                continue
            active.add(name)
            pending = [i for i in inputs if i not in values]
            for i in pending:
                if i not in definitions:
                    raise DyValParseError(f"{name} uses {i}, which is never described")
                if i in active:
                    raise DyValParseError(f"the descriptions of {name} and {i} form a cycle")
            if pending:
                stack.extend(dict.fromkeys(pending))
                continue
            args = [values[i] for i in inputs]
            try:
                values[name] = None if any(a is None for a in args) else apply_op(op, args)
            except ArithmeticError:
                values[name] = None
            active.discard(name)
            stack.pop()
    return values


def dyval_answer_of(question_text: str) -> str:
    """The ground-truth answer recomputed from the question text alone, as DyVal writes it."""
    return parse_dyval_question(question_text).answer
