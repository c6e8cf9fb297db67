"""The question text of a problem, in the public iGSM grammar (paper_spec §A.5).

One sentence per instance node, in `Problem.question_order`, then the final question::

    The number of each Harbor Bakery's Croissant Tray equals 3 more than each Elm Market's Pastry.
    ...
    How many Pastry does each Harbor Bakery have?

The grammar is the benchmark's public format, so models move between our data and the official files.
"""

from __future__ import annotations

import re

from bridge_pl.task.problem import Node, Problem

__all__ = [
    "SENTENCE_FORMS",
    "condition_form",
    "condition_rhs",
    "condition_sentence",
    "final_question",
    "render_question",
    "join_names",
]

# The arithmetic forms of a condition sentence (paper_spec §A.5), c a constant and P a parameter name:
# "c" = "equals c", "P" = "equals P" (a plain copy), "c+P" = "equals c more than P", "c*P" = "c times P",
# "P+P" / "P-P" = "the sum / difference of P1 and P2", "sum3+" = "the sum of P1, P2 and P3 ...", and the
# constant forms of those: "c+(P+P)" = "c more than the sum of P1 and P2", "c*sum3+" = "c times the sum of ...".
SENTENCE_FORMS = (
    "c",
    "P",
    "c+P",
    "c*P",
    "P+P",
    "P-P",
    "sum3+",
    "c+(P+P)",
    "c+(P-P)",
    "c*(P+P)",
    "c*(P-P)",
    "c+sum3+",
    "c*sum3+",
)
_CONDITION_RHS = re.compile(r"^The number of each .+? equals (.+?)\.?$")
_RELATION = re.compile(r"^\d+ (more than|times) ")
_PARAMETER = re.compile(r"(?<![\w'])each ")


def join_names(names: list[str]) -> str:
    """ "A", "A and B", "A, B and C": the iGSM way of listing parameters."""
    if len(names) == 1:
        return names[0]
    return f"{', '.join(names[:-1])} and {names[-1]}"


def condition_rhs(problem: Problem, node: Node) -> str:
    """Right-hand side of an instance node's sentence, e.g. "3 more than the sum of each A's B and each C's D"."""
    names = [problem.nodes[i].name for i in node.inputs]
    if not names:
        return str(node.constant)
    if len(names) == 1:
        combined = names[0]
    else:
        word = "difference" if node.combine == "diff" else "sum"
        combined = f"the {word} of {join_names(names)}"
    if node.constant is None:
        return combined
    relation = "times" if node.constant_op == "mul" else "more than"
    return f"{node.constant} {relation} {combined}"


def condition_form(sentence: str) -> str | None:
    """The arithmetic form (one of `SENTENCE_FORMS`) of a condition sentence, ours or the official files'.

    Read from the text alone, so official rows are classified the same way as ours; None when `sentence`
    is not a condition "The number of each B's A equals ...".

    >>> condition_form("The number of each Oak's Pen equals 3 times the difference of each A's B and each C's D.")
    'c*(P-P)'
    """
    match = _CONDITION_RHS.match(sentence.strip())
    if match is None:
        return None
    rhs = match.group(1)
    parents = len(_PARAMETER.findall(rhs))
    if parents == 0:
        return "c"
    relation = _RELATION.match(rhs)
    prefix = "" if relation is None else ("c+" if relation.group(1) == "more than" else "c*")
    if parents == 1:
        return f"{prefix}P"
    if parents > 2:
        return f"{prefix}sum3+"
    pair = "P-P" if "the difference of " in rhs else "P+P"
    return f"{prefix}({pair})" if prefix else pair


def condition_sentence(problem: Problem, node: Node) -> str:
    """The question sentence that defines an instance node."""
    if node.kind != "instance":
        raise ValueError(f"node {node.id} ({node.name}) is abstract: abstract nodes have no sentence")
    return f"The number of {node.name} equals {condition_rhs(problem, node)}."


def final_question(problem: Problem) -> str:
    """The closing question, e.g. "How many Pastry does each Harbor Bakery have?"."""
    target = problem.target
    return f"How many {target.lower} does each {target.upper} have?"


def render_question(problem: Problem) -> str:
    """The whole question: one condition per line in `question_order`, then the final question."""
    lines = [condition_sentence(problem, problem.nodes[i]) for i in problem.question_order]
    lines.append(final_question(problem))
    return "\n".join(lines)
