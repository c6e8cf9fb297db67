"""The `Problem`: one iGSM-reasoning problem as a dependency DAG with values and a solution order.

A problem is the single object that every renderer reads (question, plain CoT, BRIDGE behaviors,
no-CoT), that datasets store (as JSON in each row) and that the DAG extractor rebuilds from text.
Nothing downstream re-parses text that the generator produced.

Vocabulary of the paper (spec §A.2–A.4):

* an **instance** node is "each B's A" for an edge of the structure graph (item B contains item A);
  its equation is spelled out in a question sentence (an *explicit* dependency);
* an **abstract** node is "each B's C" for an item B and a lower category C; its equation follows
  from the containment hierarchy and is never written (an *implicit* dependency);
* **necessary** nodes are the ancestors of the target, listed in `topo` (target last); **redundant**
  nodes are distractors that never feed a necessary node.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from bridge_pl.task.expression import Chain, Expr, Num, Product, Ref, evaluate

__all__ = ["Node", "Problem", "ProblemError", "NodeKind"]

NodeKind = Literal["instance", "abstract"]
SCHEMA_VERSION = 1


class ProblemError(ValueError):
    """A problem (or its JSON) is inconsistent: wrong values, a broken order, an unknown node."""


@dataclass(slots=True)
class Node:
    """One parameter of a problem and the equation that defines it.

    Attributes:
        id: Position in `Problem.nodes`.
        kind: "instance" (explicit, written in the question) or "abstract" (implicit, from the hierarchy).
        upper: Name of the containing item B in "each B's A".
        lower: Name of the contained item A (instance) or of the lower category C (abstract).
        upper_layer: Layer of `upper` (0 is the lowest layer of the problem).
        lower_layer: Layer of `lower`.
        inputs: Parent node ids in the order the equation uses them. For a weighted abstract node they
            alternate instance, abstract: ``i1 * a1 + i2 * a2 + ...``.
        constant: The random constant of an instance node, or None.
        combine: How the parents combine: "sum" or "diff" (instance, "diff" only with two parents),
            "sum" (abstract one level up) or "weighted" (abstract two or more levels up).
        constant_op: "add" (c more than ...) or "mul" (c times ...) when there are a constant and parents.
        necessary: Whether the node is an ancestor of the target (or the target).
        value: The node's value.
    """

    id: int
    kind: NodeKind
    upper: str
    lower: str
    upper_layer: int
    lower_layer: int
    inputs: list[int] = field(default_factory=list)
    constant: int | None = None
    combine: Literal["sum", "diff", "weighted"] = "sum"
    constant_op: Literal["add", "mul"] | None = None
    necessary: bool = True
    value: int = 0

    @property
    def name(self) -> str:
        """The parameter's name as written in problems, e.g. "each Riverside Library's Poetry Shelf"."""
        return f"each {self.upper}'s {self.lower}"

    @property
    def num_ops(self) -> int:
        """Operations needed to compute the node: in-degree (the constant counts) minus one, at least one."""
        return max(1, len(self.inputs) + (self.constant is not None) - 1)

    @property
    def is_leaf(self) -> bool:
        """Whether the node depends on nothing but its constant."""
        return not self.inputs

    def expression(self) -> Expr:
        """The node's equation as an expression tree over `Ref(parent)` and `Num(constant)`."""
        refs = tuple(Ref(i) for i in self.inputs)
        if self.kind == "abstract":
            if self.combine == "weighted":
                pairs = tuple(Product(refs[k], refs[k + 1]) for k in range(0, len(refs), 2))
                return pairs[0] if len(pairs) == 1 else Chain(pairs, ("+",) * (len(pairs) - 1))
            return refs[0] if len(refs) == 1 else Chain(refs, ("+",) * (len(refs) - 1))
        if not refs:
            return Num(self.constant if self.constant is not None else 0)
        if len(refs) == 1:
            inner: Expr = refs[0]
        else:
            inner = Chain(refs, ("-" if self.combine == "diff" else "+",) * (len(refs) - 1))
        if self.constant is None:
            return inner
        if self.constant_op == "mul":
            return Product(Num(self.constant), inner)
        return Chain((Num(self.constant), inner), ("+",))


@dataclass(slots=True)
class Problem:
    """One iGSM-reasoning problem: the DAG, its values, the solution order and the question layout.

    Attributes:
        nodes: All nodes; `nodes[i].id == i`.
        topo: Necessary node ids in a topological (solution) order; the target is last.
        redundant: Redundant node ids in creation order (each after its own inputs).
        question_order: Instance node ids in the order their sentences appear in the question.
        system: Name of the vocabulary system the names come from.
        layer_names: Category name of each layer of the problem, lowest first.
        modulus: If set, every operation is reduced modulo this number (the original iGSM uses 23).
        seed: The seed the problem was generated from (None when extracted from text).
        index: Index of the problem within its seed's stream (None when extracted from text).
    """

    nodes: list[Node]
    topo: list[int]
    redundant: list[int]
    question_order: list[int]
    system: str
    layer_names: list[str]
    modulus: int | None = None
    seed: int | None = None
    index: int | None = None

    @property
    def target(self) -> Node:
        """The node the question asks for."""
        return self.nodes[self.topo[-1]]

    @property
    def answer(self) -> int:
        """The ground-truth answer."""
        return self.target.value

    @property
    def num_ops(self) -> int:
        """The problem's operation count: the sum of the necessary nodes' operation counts."""
        return sum(self.nodes[i].num_ops for i in self.topo)

    @property
    def num_layers(self) -> int:
        """Number of structure layers the problem uses."""
        return len(self.layer_names)

    def values(self) -> dict[int, int]:
        """Node id -> value."""
        return {node.id: node.value for node in self.nodes}

    def compute_values(self) -> None:
        """Recompute every node's value from its equation (necessary nodes first, then redundant)."""
        values: dict[int, int] = {}
        for i in [*self.topo, *self.redundant]:
            node = self.nodes[i]
            node.value = evaluate(node.expression(), values, self.modulus)
            values[i] = node.value

    def validate(self) -> None:
        """Raise `ProblemError` listing every inconsistency (order, parents, values, sentence list)."""
        errors = _problem_errors(self)
        if errors:
            raise ProblemError("inconsistent problem:\n  " + "\n  ".join(errors))

    # ---------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that `from_dict` turns back into an equal problem."""
        return {
            "version": SCHEMA_VERSION,
            "system": self.system,
            "layer_names": list(self.layer_names),
            "modulus": self.modulus,
            "seed": self.seed,
            "index": self.index,
            "topo": list(self.topo),
            "redundant": list(self.redundant),
            "question_order": list(self.question_order),
            "nodes": [asdict(node) for node in self.nodes],
        }

    def to_json(self) -> str:
        """Compact JSON text of `to_dict()` (what datasets store in their `dag` column)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Problem:
        """Rebuild a problem from `to_dict()` output, checking that it is consistent."""
        if data.get("version") != SCHEMA_VERSION:
            raise ProblemError(f"unsupported problem schema version {data.get('version')!r}; expected {SCHEMA_VERSION}")
        try:
            nodes = [Node(**{**raw, "inputs": list(raw["inputs"])}) for raw in data["nodes"]]
            problem = cls(
                nodes=nodes,
                topo=list(data["topo"]),
                redundant=list(data["redundant"]),
                question_order=list(data["question_order"]),
                system=data["system"],
                layer_names=list(data["layer_names"]),
                modulus=data.get("modulus"),
                seed=data.get("seed"),
                index=data.get("index"),
            )
        except (KeyError, TypeError) as err:
            raise ProblemError(f"malformed problem JSON: {err}") from err
        problem.validate()
        return problem

    @classmethod
    def from_json(cls, text: str) -> Problem:
        """Rebuild a problem from `to_json()` text."""
        return cls.from_dict(json.loads(text))


def _problem_errors(problem: Problem) -> list[str]:
    """Every inconsistency of `problem`, as readable messages."""
    errors: list[str] = []
    nodes = problem.nodes
    for i, node in enumerate(nodes):
        if node.id != i:
            errors.append(f"nodes[{i}] has id {node.id}")
    order = [*problem.topo, *problem.redundant]
    if sorted(order) != list(range(len(nodes))):
        errors.append("topo + redundant must list every node exactly once")
        return errors
    position = {node_id: pos for pos, node_id in enumerate(order)}
    values: dict[int, int] = {}
    for node_id in order:
        node = nodes[node_id]
        for parent in node.inputs:
            if parent not in position or position[parent] >= position[node_id]:
                errors.append(f"node {node_id} ({node.name}) uses node {parent} before it is computed")
        if node.necessary != (node_id in problem.topo):
            errors.append(f"node {node_id} ({node.name}) necessary flag disagrees with topo")
        if node.necessary and any(not nodes[p].necessary for p in node.inputs if 0 <= p < len(nodes)):
            errors.append(f"necessary node {node_id} ({node.name}) depends on a redundant node")
        if any(p not in values for p in node.inputs):
            continue
        expected = evaluate(node.expression(), values, problem.modulus)
        if expected != node.value:
            errors.append(f"node {node_id} ({node.name}) has value {node.value}, its equation gives {expected}")
        values[node_id] = node.value
    instance_ids = sorted(n.id for n in nodes if n.kind == "instance")
    if sorted(problem.question_order) != instance_ids:
        errors.append("question_order must list every instance node exactly once")
    if not problem.topo:
        errors.append("topo is empty: a problem needs a target")
    return errors
