"""DyVal answers in the paper's answer frame: plain CoT, no-CoT, and the step writer BRIDGE drives.

Every computed value is one equation chain at the end of a step line, ``name = <names> = <numbers> = ... = v.``,
using DyVal's node names (the question's names stay the variables). Chain syntax per operation:

* arithmetic: ``a + b + c`` (also ``-``, ``*``, ``/``, evaluated left to right), ``sqrt(a)``, ``(a)^2``;
* logic: ``(a AND b)``, ``(a OR b)``, ``(NOT a)``.

Numbers are written as DyVal writes them (`format_value`: rounded to 8 decimals), with more digits where that
rounding would lose precision (`step_number`). The sentences around the
chains are bridge-pl's own wording; no other sentence contains ``" = "``, so `check_dyval_cot` can find every
chain. The frame is iGSM's (`bridge_pl.task.cot.frame_answer`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from bridge_pl.task.cot import ANSWER_TEMPLATE, EQUATION, INTRO, analysis_probability, frame_answer
from bridge_pl.task.dyval.problem import DyValNode, DyValProblem, Value, apply_op, format_value

__all__ = ["DyValStepWriter", "render_dyval_chain", "render_dyval_no_cot", "render_dyval_plain_cot", "step_number"]

LEAF = ("The question gives {n} directly: {chain}.", "We are told that {chain}.", "From the question, {chain}.")
SELECT = ("Next we need {n}.", "Now we turn to {n}.", "Let's work out {n}.")
REVISIT = ("We come back to {n}, which we tried before.", "Now we can return to {n}.", "Back to {n} from earlier.")
ANALYSIS = ("The question defines it as {rhs}.", "By the question, {n} is {rhs}.")
REFLECTION = (
    "But {u} {be} not known yet, so {n} cannot be computed now.",
    "However, we have not found {u} yet, so we have to come back to {n} later.",
    "It needs {u}, which we have not computed yet, so {n} stays unknown for now.",
)
CONCLUSIONS = ("Therefore, {t} is {v}.", "So the value of {t} is {v}.", "Hence, {t} equals {v}.")
NO_COT_STEP = "{chain}."


def step_number(value: Value) -> str:
    """A value in a step chain: DyVal's 8-decimal rounding, or 12 significant digits where that rounding loses
    precision (tiny quotients such as 1.275e-05 would otherwise drift past the checker's tolerance)."""
    text = format_value(value)
    if not isinstance(value, bool) and abs(float(text) - value) > 1e-10 * abs(value):
        text = f"{float(value):.12g}"
    return text


_INFIX = {"+": " + ", "-": " - ", "*": " * ", "/": " / ", "and": " AND ", "or": " OR "}


def _term(op: str, terms: Sequence[str]) -> str:
    """One chain link: the operation written over its terms."""
    if op == "sqrt":
        return f"sqrt({terms[0]})"
    if op == "**":
        return f"({terms[0]})^2"
    if op == "not":
        return f"(NOT {terms[0]})"
    body = _INFIX[op].join(terms)
    return f"({body})" if op in ("and", "or") else body


def render_dyval_chain(problem: DyValProblem, node: DyValNode, *, subgoal: bool = False) -> str:
    """The equation chain of a node: ``name = <names> = <values> = ... = v`` (one operation per link if subgoal)."""
    value = step_number(node.value)
    if node.is_leaf:
        return f"{node.name} = {value}"
    names = [problem.nodes[i].name for i in node.inputs]
    inputs: list[Value] = [problem.nodes[i].value for i in node.inputs]
    links = [_term(node.op, names), _term(node.op, [step_number(v) for v in inputs])]
    if subgoal:
        links += _subgoal_links(node.op, inputs)
    links.append(value)
    chain = [node.name]
    for link in links:
        if link != chain[-1]:
            chain.append(link)
    return " = ".join(chain)


def _subgoal_links(op: str, inputs: list[Value]) -> list[str]:
    """Intermediate links folding the inputs left to right, one operation per link (squares as a product)."""
    if op == "**":
        return [f"{step_number(inputs[0])} * {step_number(inputs[0])}"]
    if op in ("sqrt", "not"):
        return []
    links = []
    folded = list(inputs)
    while len(folded) > 2:
        # a - b - c = a - (b + c) and a / b / c = a / (b * c): DyVal's definitions, one step at a time.
        head = apply_op(op, folded[:2])
        folded = [head, *folded[2:]]
        links.append(_term(op, [step_number(v) for v in folded]))
    return links


def _definition(problem: DyValProblem, node: DyValNode) -> str:
    """A node's definition in chain syntax over names, for the information-analysis sentence."""
    return _term(node.op, [problem.nodes[i].name for i in node.inputs])


class DyValStepWriter:
    """Writes the step lines of one DyVal answer and tracks which nodes are named and solved.

    Implements `bridge_pl.augment.bridge.StepWriterLike`, so `render_bridge_answer(problem, rng, config,
    make_writer=DyValStepWriter)` injects BRIDGE's behaviors into DyVal answers.

    Args:
        problem: The problem being solved.
        rng: Source of every wording and behavior choice.
        subgoal: Write equation chains one operation per link (BRIDGE subgoal computation).
        analysis_level: Probability table (0-4) of restating a node's definition, by its number of inputs.
    """

    def __init__(self, problem: DyValProblem, rng: random.Random, *, subgoal: bool = False, analysis_level: int = 0):
        analysis_probability(analysis_level, 0)  # validates the level
        self.problem = problem
        self.rng = rng
        self.subgoal = subgoal
        self.analysis_level = analysis_level
        self.named: set[int] = set()
        self.solved: set[int] = set()
        self.lines: list[str] = []
        self.failed_attempts = 0
        self.revisits = 0
        self.analyses = 0

    def unsolved_inputs(self, node_id: int) -> list[int]:
        """The distinct unsolved inputs of a node, in description order."""
        inputs = self.problem.nodes[node_id].inputs
        return [i for i in dict.fromkeys(inputs) if i not in self.solved]

    def step(self, node_id: int) -> str:
        """Write the step for a node: compute it if its inputs are solved, else a failed attempt with reflection."""
        node = self.problem.nodes[node_id]
        pick = self._pick
        if node.is_leaf:
            self.named.add(node_id)
            self.solved.add(node_id)
            line = pick(LEAF).format(n=node.name, chain=render_dyval_chain(self.problem, node))
            self.lines.append(line)
            return line
        if node_id in self.named:
            sentences = [pick(REVISIT).format(n=node.name)]
            self.revisits += 1
        else:
            sentences = [pick(SELECT).format(n=node.name)]
        self.named.add(node_id)
        probability = analysis_probability(self.analysis_level, len(node.inputs))
        if probability > 0 and self.rng.random() < probability:
            sentences.append(pick(ANALYSIS).format(n=node.name, rhs=_definition(self.problem, node)))
            self.analyses += 1
        unsolved = self.unsolved_inputs(node_id)
        if unsolved:
            names = [self.problem.nodes[i].name for i in unsolved]
            be = "is" if len(names) == 1 else "are"
            sentences.append(pick(REFLECTION).format(u=_join(names), be=be, n=node.name))
            self.failed_attempts += 1
        else:
            chain = render_dyval_chain(self.problem, node, subgoal=self.subgoal)
            sentences.append(pick(EQUATION).format(chain=chain))
            self.solved.add(node_id)
        line = " ".join(sentences)
        self.lines.append(line)
        return line

    def conclusion(self) -> str:
        """The closing sentence with the answer."""
        return self._pick(CONCLUSIONS).format(t=self.problem.nodes[self.problem.target].name, v=self.problem.answer)

    def finish(self) -> str:
        """The full answer text from the steps written so far."""
        return frame_answer(self.lines, self.problem.answer, self.conclusion())

    def _pick(self, options: Sequence[str]) -> str:
        return options[int(self.rng.random() * len(options))]


def _join(names: list[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def render_dyval_plain_cot(problem: DyValProblem, rng: random.Random) -> str:
    """The plain ("vanilla") CoT answer: one step per necessary node in topological order."""
    writer = DyValStepWriter(problem, rng)
    for node_id in problem.topo:
        writer.step(node_id)
    return writer.finish()


def render_dyval_no_cot(problem: DyValProblem, rng: random.Random | None = None) -> str:
    """The terse answer kept beside RL prompts: one bare chain per necessary node (`rng` is unused)."""
    lines = [NO_COT_STEP.format(chain=render_dyval_chain(problem, problem.nodes[i])) for i in problem.topo]
    conclusion = CONCLUSIONS[0].format(t=problem.nodes[problem.target].name, v=problem.answer)
    body = "\n".join([INTRO, *lines, conclusion])
    return ANSWER_TEMPLATE.format(body=body, answer=problem.answer)
