"""The DyVal problem: a DAG of named nodes, each a leaf value or one operation over its inputs.

Operations and their values follow DyVal (promptbench/dyval/DAG/math_dag.py ``update_values`` and
logic_dag.py ``BoolDAG.update_values``):

* arithmetic: ``+`` sum, ``-`` first minus the sum of the rest, ``*`` product, ``/`` first divided by the product
  of the rest, ``sqrt`` square root, ``**`` square;
* logic: ``and`` (all), ``or`` (any), ``not``.

Answers are written as DyVal writes them (dyval_utils.py ``round_value`` and ``process_dyval_training_sample``):
arithmetic ``str(round(float(v), 8))`` (so 12 is ``"12.0"``), logic ``"True"`` / ``"False"``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "ARITHMETIC_OPS",
    "DyValNode",
    "DyValProblem",
    "DyValProblemError",
    "Family",
    "LOGIC_OPS",
    "UNARY_OPS",
    "Value",
    "apply_op",
    "format_value",
    "values_close",
]

Family = Literal["arithmetic", "logic"]
Value = int | float | bool

ARITHMETIC_OPS = ("+", "-", "*", "/", "sqrt", "**")
"""DyVal's arithmetic operations, drawn uniformly (dyval_dataset.py)."""
LOGIC_OPS = ("and", "or", "not")
"""DyVal's boolean-logic operations, drawn uniformly (dyval_dataset.py, ``bool_logic``)."""
UNARY_OPS = frozenset({"sqrt", "**", "not"})
"""Operations with exactly one input; they never receive extra links."""

RELATIVE_TOLERANCE = 1e-4
"""DyVal's arithmetic judge: ``abs(gt - pred) / (abs(gt) + 1e-7) < 0.0001`` (dyval_utils.py ``dyval_evaluate``)."""


class DyValProblemError(ValueError):
    """A DyVal problem (or its JSON) is malformed or its values do not add up."""


def apply_op(op: str, values: Sequence[Value]) -> Value:
    """The value of one operation over its input values, in input order.

    Raises:
        ArithmeticError: division by zero, the square root of a negative number, or a non-finite result.
    """
    if op == "+":
        result = sum(values)
    elif op == "-":
        result = values[0] - sum(values[1:])
    elif op == "*":
        result = math.prod(values)
    elif op == "/":
        result = values[0] / math.prod(values[1:])
    elif op == "sqrt":
        if values[0] < 0:
            raise ArithmeticError(f"square root of the negative number {values[0]}")
        result = math.sqrt(values[0])
    elif op == "**":
        result = values[0] ** 2
    elif op == "and":
        return all(values)
    elif op == "or":
        return any(values)
    elif op == "not":
        return not values[0]
    else:
        raise DyValProblemError(f"unknown operation {op!r}")
    if isinstance(result, float) and not math.isfinite(result):
        raise OverflowError(f"{op} gives a non-finite value")
    return result


def format_value(value: Value) -> str:
    """A value as DyVal writes it in answers: ``True``/``False``, or the number rounded to 8 decimals."""
    if isinstance(value, bool):
        return str(value)
    return str(round(float(value), 8))


def values_close(predicted: float, truth: float, *, absolute: float = 0.0) -> bool:
    """DyVal's arithmetic match (relative error < 1e-4), with an optional absolute slack for rounded steps."""
    return abs(truth - predicted) / (abs(truth) + 1e-7) < RELATIVE_TOLERANCE or abs(truth - predicted) <= absolute


@dataclass
class DyValNode:
    """One named node: a leaf (``op`` None, its given value) or an operation over earlier nodes."""

    id: int
    """Index in `DyValProblem.nodes`."""
    name: str
    """DyVal's three-letter name (``aaa``, ``aab``, ...)."""
    op: str | None
    """Operation (``+ - * / sqrt **`` or ``and or not``); None for a leaf."""
    inputs: tuple[int, ...]
    """Input node ids in the order the description names them (a node may repeat, as in DyVal)."""
    value: Value
    """The node's value (a leaf's given value)."""
    necessary: bool
    """Whether the target depends on this node (False: a redundant description)."""

    @property
    def is_leaf(self) -> bool:
        """Whether the node is given a value directly."""
        return self.op is None

    def to_dict(self) -> dict:
        """The node as a JSON-ready dict."""
        return {
            "id": self.id,
            "name": self.name,
            "op": self.op,
            "inputs": list(self.inputs),
            "value": self.value,
            "necessary": self.necessary,
        }


@dataclass
class DyValProblem:
    """A DyVal DAG problem: nodes, the solution plan BRIDGE walks, and the question's sentence order."""

    family: Family
    """``arithmetic`` or ``logic`` (DyVal's ``bool_logic``)."""
    nodes: list[DyValNode]
    """Every node, necessary and redundant, indexed by id."""
    topo: list[int]
    """Necessary node ids in a topological order (inputs first), the target last."""
    redundant: list[int]
    """Ids of the redundant-description nodes (they feed no necessary node)."""
    target: int
    """Id of the node the question asks for."""
    answer: str
    """The ground truth exactly as DyVal writes it (``"12.0"``, ``"True"``)."""
    question_order: list[int]
    """Node ids in the order the question describes them."""
    seed: int | None = None
    """Stream seed the problem was drawn from (None when built by hand)."""
    index: int | None = None
    """Index of the problem in its stream."""
    meta: dict = field(default_factory=dict)
    """Generation settings worth keeping (depth, order, number of redundant trees)."""

    def node_by_name(self) -> dict[str, DyValNode]:
        """Nodes keyed by name."""
        return {node.name: node for node in self.nodes}

    def check_values(self) -> list[str]:
        """Every inconsistency: recomputes each operation node from its inputs and the answer from the target."""
        errors = []
        for node in self.nodes:
            if node.is_leaf:
                continue
            try:
                expected = apply_op(node.op, [self.nodes[i].value for i in node.inputs])
            except (ArithmeticError, IndexError) as exc:
                errors.append(f"node {node.name}: {exc}")
                continue
            if expected != node.value:
                errors.append(f"node {node.name}: stored value {node.value!r}, recomputed {expected!r}")
        truth = format_value(self.nodes[self.target].value)
        if truth != self.answer:
            errors.append(f"answer {self.answer!r} but the target {self.nodes[self.target].name} is {truth}")
        return errors

    def structure_errors(self) -> list[str]:
        """Every structural problem: ids, input references, arity, the plan's order and the necessary flags."""
        errors = []
        n = len(self.nodes)
        for position, node in enumerate(self.nodes):
            if node.id != position:
                errors.append(f"node at position {position} has id {node.id}")
            if any(not 0 <= i < n for i in node.inputs):
                errors.append(f"node {node.name}: input id out of range in {list(node.inputs)}")
            elif node.is_leaf and node.inputs:
                errors.append(f"node {node.name}: a leaf has inputs")
            elif node.op in UNARY_OPS and len(node.inputs) != 1:
                errors.append(f"node {node.name}: {node.op} takes exactly one input")
            elif node.op is not None and len(node.inputs) < 1:
                errors.append(f"node {node.name}: {node.op} has no inputs")
        if errors:
            return errors
        if not self.topo or self.topo[-1] != self.target:
            errors.append("topo must end with the target")
        position = {node_id: k for k, node_id in enumerate(self.topo)}
        for node_id in self.topo:
            for i in self.nodes[node_id].inputs:
                if position.get(i, n) >= position[node_id]:
                    errors.append(f"topo puts {self.nodes[node_id].name} before its input {self.nodes[i].name}")
        if sorted(self.topo + self.redundant) != list(range(n)):
            errors.append("topo and redundant must partition the node ids")
        if any(not self.nodes[i].necessary for i in self.topo) or any(self.nodes[i].necessary for i in self.redundant):
            errors.append("necessary flags disagree with topo/redundant")
        if sorted(self.question_order) != list(range(n)):
            errors.append("question_order must list every node id once")
        return errors

    def to_dict(self) -> dict:
        """The problem as a JSON-ready dict."""
        return {
            "family": self.family,
            "nodes": [node.to_dict() for node in self.nodes],
            "topo": list(self.topo),
            "redundant": list(self.redundant),
            "target": self.target,
            "answer": self.answer,
            "question_order": list(self.question_order),
            "seed": self.seed,
            "index": self.index,
            "meta": dict(self.meta),
        }

    def to_json(self) -> str:
        """The problem as one line of JSON (keys in a fixed order)."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | dict) -> DyValProblem:
        """Read a problem written by `to_json`, checking structure and values.

        Raises:
            DyValProblemError: the JSON is malformed, or the problem is inconsistent.
        """
        try:
            data = json.loads(text) if isinstance(text, str) else text
            nodes = [
                DyValNode(
                    int(d["id"]),
                    str(d["name"]),
                    d["op"],
                    tuple(int(i) for i in d["inputs"]),
                    d["value"],
                    d["necessary"],
                )
                for d in data["nodes"]
            ]
            problem = cls(
                family=data["family"],
                nodes=nodes,
                topo=[int(i) for i in data["topo"]],
                redundant=[int(i) for i in data["redundant"]],
                target=int(data["target"]),
                answer=str(data["answer"]),
                question_order=[int(i) for i in data["question_order"]],
                seed=data.get("seed"),
                index=data.get("index"),
                meta=dict(data.get("meta") or {}),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DyValProblemError(f"not a DyVal problem JSON: {exc}") from exc
        if problem.family not in ("arithmetic", "logic"):
            raise DyValProblemError(f"family {problem.family!r}: choose 'arithmetic' or 'logic'")
        errors = problem.structure_errors() or problem.check_values()
        if errors:
            raise DyValProblemError("invalid DyVal problem:\n  " + "\n  ".join(errors))
        return problem
