"""DyVal arithmetic and boolean logic as `Task`s, with the paper's split presets (paper_spec §F.4).

| split     | seed | size  | depth | redundant descriptions | answers |
|-----------|------|-------|-------|------------------------|---------|
| sft       | +100 | 2000  | 4     | 0                      | CoT     |
| rl_train  | +200 | 10000 | 5     | 0-8                    | no-CoT  |
| rl_val    | +300 | 500   | 5     | 0-8                    | no-CoT  |
| test_id   | +400 | 500   | 5     | 0-8                    | no-CoT  |
| test_ood  | +500 | 500   | 5     | 20-22                  | no-CoT  |

Seeds are the task's base (arithmetic 5000, logic 6000) plus the offset, so no split shares problems with an
iGSM one. The ``tiny_*`` splits scale the design to a CPU (depth 3: 2-3 operations, as iGSM's tiny splits):
no redundant description for SFT, 0-2 for RL and the in-distribution test, 4-5 for the out-of-distribution test.

Questions are DyVal's text without its ``<<<>>>`` answer instruction: the chat prompt of `bridge_pl.data.prompts`
asks for the paper's ``\\boxed{}`` frame instead.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

from bridge_pl.task.base import Task
from bridge_pl.task.dyval.cot import DyValStepWriter, render_dyval_no_cot, render_dyval_plain_cot
from bridge_pl.task.dyval.generator import DyValConfig, generate_dyval_problem
from bridge_pl.task.dyval.problem import DyValNode, DyValProblem, DyValProblemError, format_value
from bridge_pl.task.dyval.question import DyValParseError, ParsedQuestion, parse_dyval_question, render_dyval_question
from bridge_pl.task.dyval.verify import check_dyval_cot, value_matches
from bridge_pl.task.presets import SplitPreset
from bridge_pl.task.verify import extract_answer

__all__ = ["DyValArithmeticTask", "DyValLogicTask", "DyValTask", "dyval_splits", "problem_from_question"]


def dyval_splits(family: str, base_seed: int) -> dict[str, SplitPreset]:
    """The paper's DyVal splits and their tiny_* versions for one family."""
    at = DyValConfig(family=family)  # type: ignore[arg-type]
    rl = replace(at, depth=5, redundant_min=0, redundant_max=8)
    tiny = replace(at, depth=3, redundant_min=0, redundant_max=2)
    table = {
        "sft": (100, 2000, replace(at, depth=4), True),
        "rl_train": (200, 10000, rl, False),
        "rl_val": (300, 500, rl, False),
        "test_id": (400, 500, rl, False),
        "test_ood": (500, 500, replace(rl, redundant_min=20, redundant_max=22), False),
        "tiny_sft": (1100, 4000, replace(at, depth=3), True),
        "tiny_rl_train": (1200, 4000, tiny, False),
        "tiny_rl_val": (1300, 200, tiny, False),
        "tiny_test_id": (1400, 500, tiny, False),
        "tiny_test_ood": (1500, 500, replace(tiny, redundant_min=4, redundant_max=5), False),
    }
    return {
        name: SplitPreset(name, base_seed + offset, size, config, cot=cot)
        for name, (offset, size, config, cot) in table.items()
    }


class DyValTask(Task):
    """A DyVal DAG family: seeded problems, DyVal's question text, our answers, DyVal's judge."""

    family: ClassVar[str]
    base_seed: ClassVar[int]
    config_type: ClassVar[type] = DyValConfig
    step_writer: ClassVar[type] = DyValStepWriter

    def default_config(self) -> DyValConfig:
        """Depth 4, two children per node, one extra link, no redundant descriptions."""
        return DyValConfig(family=self.family)  # type: ignore[arg-type]

    def splits(self) -> Mapping[str, SplitPreset]:
        """The §F.4 splits and their tiny_* versions (see the module table)."""
        return dyval_splits(self.family, self.base_seed)

    def config_from_dict(self, data: Mapping[str, Any]) -> DyValConfig:
        """The config of a dataset_config.json ``generator`` entry."""
        return DyValConfig(**data)

    def generate(self, config: DyValConfig, seed: int, index: int) -> DyValProblem:
        """Problem `index` of the stream `seed` (the config's family must be the task's)."""
        if config.family != self.family:
            raise ValueError(f"family={config.family!r}: the {self.name} task draws {self.family} problems")
        return generate_dyval_problem(config, seed, index)

    def problem_to_dict(self, problem: DyValProblem) -> dict[str, Any]:
        """`DyValProblem.to_dict`."""
        return problem.to_dict()

    def problem_from_dict(self, data: Mapping[str, Any]) -> DyValProblem:
        """`DyValProblem.from_json` (checked)."""
        return DyValProblem.from_json(dict(data))

    def problem_from_text(self, query: str, response: str | None, *, modulus: int | None = None) -> DyValProblem:
        """The problem a DyVal question describes (the response is not needed: the text defines every node)."""
        try:
            return problem_from_question(parse_dyval_question(query))
        except DyValParseError as err:
            raise DyValProblemError(f"the question is not DyVal text: {err}") from err

    def question(self, problem: DyValProblem) -> str:
        """DyVal's description and query sentences, in the problem's description order."""
        return render_dyval_question(problem, instructions=False)

    def plain_cot(self, problem: DyValProblem, rng: random.Random) -> str:
        """One step per necessary node along ``problem.topo``."""
        return render_dyval_plain_cot(problem, rng)

    def no_cot(self, problem: DyValProblem, rng: random.Random) -> str:
        """One bare chain per necessary node."""
        return render_dyval_no_cot(problem, rng)

    def ground_truth(self, problem: DyValProblem) -> str:
        """The answer as DyVal writes it ("12.0", "True")."""
        return problem.answer

    def num_ops(self, problem: DyValProblem) -> int:
        """Operations among the necessary nodes (leaves cost none)."""
        return sum(not problem.nodes[i].is_leaf for i in problem.topo)

    def to_dot(self, problem: DyValProblem) -> str:
        """Graphviz DOT of the DAG: a box per node (name, operation, value); the target and redundant ones coloured."""
        lines = ["digraph problem {", "  rankdir=LR;", '  node [shape=box, style="rounded,filled", fontsize=10];']
        for node in problem.nodes:
            what = f"{node.op} = {format_value(node.value)}" if node.op else format_value(node.value)
            fill = "#f4a261" if node.id == problem.target else ("#e9ecef" if not node.necessary else "#a8dadc")
            lines.append(f'  n{node.id} [label="{node.name}\\n{what}", fillcolor="{fill}"];')
        lines += [f"  n{i} -> n{node.id};" for node in problem.nodes for i in node.inputs]
        return "\n".join([*lines, "}"]) + "\n"

    def truth_error(self, value: Any) -> str | None:
        """Not DyVal answer text: a number ("12.0") for arithmetic, True/False for logic, or N/A."""
        text = str(value).strip()
        if text == "N/A":
            return None
        if self.family == "logic":
            return None if text.lower() in ("true", "false") else "must be True or False (or N/A)"
        try:
            float(text)
        except ValueError:
            return 'must be a number such as "12.0" (or N/A)'
        return None

    def check_answer(self, query: str, response: str, final_answer: Any, *, modulus: int | None = None) -> list[str]:
        """`check_dyval_cot` (every step recomputed from the question) plus the boxed answer against final_answer."""
        errors = check_dyval_cot(query, response)
        if not errors and not self.is_correct(response, final_answer):
            errors.append(f"the boxed answer {extract_answer(response)!r} does not match final_answer {final_answer}")
        return errors

    def answer_of_question(self, query: str, *, modulus: int | None = None) -> str | None:
        """The target's value recomputed from the question text (None when it is not DyVal text)."""
        try:
            return parse_dyval_question(query).answer
        except DyValParseError:
            return None

    def is_correct(self, completion: str, truth: Any) -> bool:
        """DyVal's judge on the first ``\\boxed{}``: relative error below 1e-4, or the same truth value."""
        predicted = extract_answer(completion)
        if predicted is None:
            return False
        return value_matches(predicted, _truth_value(str(truth), self.family))

    def default_rewards(self) -> list[Any]:
        """The judge as the reward: numeric match with DyVal's tolerance, or boolean match."""
        from bridge_pl.task import rewards

        reward = rewards.NumericMatch if self.family == "arithmetic" else rewards.BooleanMatch
        return [reward(weight=1.0)]


class DyValArithmeticTask(DyValTask):
    """DyVal arithmetic: + - * / square and square root over a DAG of named values."""

    name: ClassVar[str] = "dyval-arithmetic"
    family: ClassVar[str] = "arithmetic"
    base_seed: ClassVar[int] = 5000


class DyValLogicTask(DyValTask):
    """DyVal boolean logic: AND, OR and NOT over a DAG of named truth values."""

    name: ClassVar[str] = "dyval-logic"
    family: ClassVar[str] = "logic"
    base_seed: ClassVar[int] = 6000


def _truth_value(text: str, family: str) -> Any:
    """A ground-truth string as a value of the family (None for "N/A")."""
    if text == "N/A":
        return None
    if family == "logic":
        return text.strip().lower() == "true"
    return float(text)


def problem_from_question(parsed: ParsedQuestion) -> DyValProblem:
    """The problem a parsed DyVal question describes: necessary nodes are the target's ancestors.

    Raises:
        DyValProblemError: The target cannot be computed (an operation fails on the given values).
    """
    names = list(parsed.definitions)
    ids = {name: i for i, name in enumerate(names)}
    if parsed.values.get(parsed.target) is None:
        raise DyValProblemError(f"the value of {parsed.target} cannot be computed from the question (N/A)")
    needed: set[str] = set()
    stack = [parsed.target]
    while stack:
        name = stack.pop()
        if name not in needed:
            needed.add(name)
            stack.extend(parsed.definitions[name][1])
    nodes = []
    for name in names:
        op, inputs, given = parsed.definitions[name]
        value = given if op is None else parsed.values[name]
        nodes.append(DyValNode(ids[name], name, op, tuple(ids[i] for i in inputs), value, name in needed))
    topo = _post_order(nodes, ids[parsed.target])
    redundant = [node.id for node in nodes if not node.necessary]
    return DyValProblem(
        family=parsed.family, nodes=nodes, topo=topo, redundant=redundant, target=ids[parsed.target],
        answer=parsed.answer, question_order=list(range(len(nodes))),
    )  # fmt: skip


def _post_order(nodes: list[DyValNode], target: int) -> list[int]:
    """The target's ancestors, inputs before their users in input order, the target last (iterative)."""
    order: list[int] = []
    seen = {target}  # a node is pushed once, when first seen, and listed once all its inputs are
    stack = [(target, 0)]
    while stack:
        node_id, k = stack.pop()
        inputs = nodes[node_id].inputs
        if k < len(inputs):
            stack.append((node_id, k + 1))
            if inputs[k] not in seen:
                seen.add(inputs[k])
                stack.append((inputs[k], 0))
        else:
            order.append(node_id)
    return order
