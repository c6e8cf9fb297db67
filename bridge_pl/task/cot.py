"""Answer writing: the answer frame, the step writer shared by every style, plain CoT and no-CoT answers.

Every answer has the frame (the benchmark's public format)::

    <think>
    <intro>
    - <step>
    ...
    <conclusion with V>
    </think>
    <answer>
    The final answer is \\boxed{V}.
    </answer>

A step names a node with a variable letter and, once its inputs are known, writes one equation chain
``X = <letters> = <numbers> = ... = v``. The wording of the sentences around the chains is bridge-pl's
own, with several paraphrases per kind of sentence. `StepWriter` also writes the behavior sentences
that BRIDGE injects (information analysis, failed attempts with reflection, revisits, subgoal chains);
the schedule that decides *when* to inject them lives in `bridge_pl.augment.bridge`.

Two rules keep every answer machine-readable (the DAG extractor relies on them): the first
"the number of <name>" of a step line names the node the step is about, and chains use exactly the
syntax of `bridge_pl.task.expression.render`.
"""

from __future__ import annotations

import random
import string
from collections.abc import Sequence

from bridge_pl.task.expression import render, subgoal_chain, substitute
from bridge_pl.task.problem import Node, Problem
from bridge_pl.task.question import condition_rhs, join_names

__all__ = [
    "ANSWER_TEMPLATE",
    "INTRO",
    "StepWriter",
    "analysis_probability",
    "assign_letters",
    "frame_answer",
    "render_no_cot",
    "render_plain_cot",
]

ANSWER_TEMPLATE = "<think>\n{body}\n</think>\n<answer>\nThe final answer is \\boxed{{{answer}}}.\n</answer>"
INTRO = "Let's work out the quantities we need one at a time."
CONCLUSIONS = ("Therefore, the answer is {v}.", "So the answer is {v}.", "Hence, the answer is {v}.")

# Our own paraphrases; {n} is a node name ("each B's A"), {x} its variable, {v} a value.
LEAF = (
    "The question tells us that the number of {n} is {v}.",
    "We are given that the number of {n} is {v}.",
    "From the question, the number of {n} is {v}.",
)
SELECT = (
    "Next we need the number of {n}.",
    "Now we look at the number of {n}.",
    "Let's work out the number of {n}.",
)
NAME = ("Call it {x}.", "Let {x} stand for it.", "We write {x} for it.")
SELECT_AND_NAME = (
    "Let {x} be the number of {n}.",
    "Next, write {x} for the number of {n}.",
    "Now let {x} denote the number of {n}.",
)
REVISIT = ("Recall that we already called it {x}.", "We named it {x} before.", "It is the {x} we met earlier.")
ANALYSIS = ("The question says it equals {rhs}.", "From the question, it equals {rhs}.")
REFLECTION = (
    "But the number of {u} {be} not known yet, so it cannot be computed now.",
    "However, we have not found the number of {u} yet, so we have to come back to it later.",
    "It needs the number of {u}, which we have not computed yet, so {x} stays unknown for now.",
)
EQUATION = ("Then {chain}.", "So {chain}.", "This gives {chain}.")
LEAF_EQUATION = "So {chain}."
NO_COT_STEP = "Let {x} be the number of {n}. So {chain}."

# Probability of the information-analysis sentence by number of inputs (the constant counts), per level.
ANALYSIS_TABLES: dict[int, tuple[float, ...]] = {
    0: (0.0,),
    1: (0.0, 0.0, 0.1, 0.4, 0.8, 1.0),
    2: (0.0, 0.1, 0.4, 0.8, 1.0),
    3: (0.0, 0.4, 0.8, 1.0),
    4: (0.0, 1.0),
}


def analysis_probability(level: int, num_inputs: int) -> float:
    """Chance that a step on an instance node with `num_inputs` inputs restates its condition (level 0-4)."""
    if level not in ANALYSIS_TABLES:
        raise ValueError(f"analysis_level={level}: choose one of {sorted(ANALYSIS_TABLES)}")
    table = ANALYSIS_TABLES[level]
    return table[min(num_inputs, len(table) - 1)]


def assign_letters(problem: Problem, rng: random.Random) -> dict[int, str]:
    """A distinct random variable letter (a-z, A-Z) for every node."""
    letters = list(string.ascii_letters)
    rng.shuffle(letters)
    if len(problem.nodes) > len(letters):
        raise ValueError(f"problem has {len(problem.nodes)} nodes; answers can name at most {len(letters)}")
    return {node.id: letters[node.id] for node in problem.nodes}


def frame_answer(step_lines: Sequence[str], answer: int, conclusion: str) -> str:
    """Wrap step lines in the answer frame."""
    body = "\n".join([INTRO, *(f"- {line}" for line in step_lines), conclusion])
    return ANSWER_TEMPLATE.format(body=body, answer=answer)


class StepWriter:
    """Writes the step lines of one answer and tracks which nodes are named and solved.

    Args:
        problem: The problem being solved.
        rng: Source of every wording and behavior choice.
        subgoal: Write equation chains one operation per link (BRIDGE subgoal computation).
        analysis_level: Probability table (0-4) of restating an instance node's condition.
    """

    def __init__(self, problem: Problem, rng: random.Random, *, subgoal: bool = False, analysis_level: int = 0):
        analysis_probability(analysis_level, 0)  # validates the level
        self.problem = problem
        self.rng = rng
        self.subgoal = subgoal
        self.analysis_level = analysis_level
        self.letters = assign_letters(problem, rng)
        self.values = problem.values()
        self.named: set[int] = set()
        self.solved: set[int] = set()
        self.lines: list[str] = []
        self.failed_attempts = 0
        self.revisits = 0
        self.analyses = 0

    def unsolved_inputs(self, node_id: int) -> list[int]:
        """The inputs of a node that are not solved yet, in equation order."""
        return [i for i in self.problem.nodes[node_id].inputs if i not in self.solved]

    def is_locked(self, node_id: int) -> bool:
        """Whether a node cannot be computed yet because an input is unsolved."""
        return bool(self.unsolved_inputs(node_id))

    def step(self, node_id: int) -> str:
        """Write the step for a node: compute it if unlocked, else a failed attempt with reflection."""
        node = self.problem.nodes[node_id]
        x = self.letters[node_id]
        pick = self._pick
        if node.is_leaf:
            sentences = [pick(LEAF).format(n=node.name, v=node.value), pick(NAME).format(x=x)]
        elif node_id in self.named:
            sentences = [pick(SELECT).format(n=node.name), pick(REVISIT).format(x=x)]
            self.revisits += 1
        elif self.rng.random() < 0.5:
            sentences = [pick(SELECT).format(n=node.name), pick(NAME).format(x=x)]
        else:
            sentences = [pick(SELECT_AND_NAME).format(n=node.name, x=x)]
        self.named.add(node_id)
        if node.kind == "instance" and node.inputs and self._wants_analysis(node):
            sentences.append(pick(ANALYSIS).format(rhs=condition_rhs(self.problem, node)))
            self.analyses += 1
        unsolved = self.unsolved_inputs(node_id)
        if unsolved:
            sentences.append(self._reflection(unsolved, x))
            self.failed_attempts += 1
        else:
            template = LEAF_EQUATION if node.is_leaf else pick(EQUATION)
            sentences.append(template.format(chain=self.equation(node)))
            self.solved.add(node_id)
        line = " ".join(sentences)
        self.lines.append(line)
        return line

    def equation(self, node: Node) -> str:
        """The chain ``X = <letters> = <numbers> = ... = v`` of a node whose inputs are solved."""
        expr = node.expression()
        links = [render(expr, self.letters.__getitem__)]
        numeric = substitute(expr, self.values)
        if self.subgoal:
            chain = [render(e, str) for e in subgoal_chain(numeric, self.problem.modulus)]
        else:
            chain = [render(numeric, str), str(node.value)]
        for link in chain:
            if link != links[-1]:
                links.append(link)
        return " = ".join([self.letters[node.id], *links])

    def conclusion(self) -> str:
        """The closing sentence with the answer."""
        return self._pick(CONCLUSIONS).format(v=self.problem.answer)

    def finish(self) -> str:
        """The full answer text from the steps written so far."""
        return frame_answer(self.lines, self.problem.answer, self.conclusion())

    def _pick(self, options: Sequence[str]) -> str:
        # random() indexing is about twice as fast as Random.choice and as deterministic.
        return options[int(self.rng.random() * len(options))]

    def _wants_analysis(self, node: Node) -> bool:
        num_inputs = len(node.inputs) + (node.constant is not None)
        probability = analysis_probability(self.analysis_level, num_inputs)
        return probability > 0 and self.rng.random() < probability

    def _reflection(self, unsolved: list[int], x: str) -> str:
        names = [self.problem.nodes[i].name for i in unsolved]
        template = self._pick(REFLECTION)
        return template.format(u=join_names(names), be="is" if len(names) == 1 else "are", x=x)


def render_plain_cot(problem: Problem, rng: random.Random, *, order: Sequence[int] | None = None) -> str:
    """The plain ("vanilla") chain-of-thought answer: one step per necessary node in solution order."""
    writer = StepWriter(problem, rng)
    for node_id in problem.topo if order is None else order:
        writer.step(node_id)
    return writer.finish()


def render_no_cot(problem: Problem, rng: random.Random) -> str:
    """The short answer kept beside RL prompts: one terse definition line per necessary node."""
    letters = assign_letters(problem, rng)
    values = problem.values()
    lines = []
    for node_id in problem.topo:
        node = problem.nodes[node_id]
        expr = node.expression()
        links = [render(expr, letters.__getitem__), render(substitute(expr, values), str), str(node.value)]
        chain = [letters[node_id]]
        for link in links:
            if link != chain[-1]:
                chain.append(link)
        lines.append(NO_COT_STEP.format(x=letters[node_id], n=node.name, chain=" = ".join(chain)))
    body = "\n".join([INTRO, *lines, CONCLUSIONS[0].format(v=problem.answer)])
    return ANSWER_TEMPLATE.format(body=body, answer=problem.answer)
