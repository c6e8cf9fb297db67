"""Seeded DyVal DAG generation (arithmetic and boolean logic), following DyVal's construction.

The construction (read from promptbench/dyval/DAG/dag.py ``TreeDAG``, math_dag.py ``ArithmeticDAG``,
logic_dag.py ``BoolDAG`` and describer.py ``TreeDAGDescriber``):

1. A full tree of `depth` levels (depth 1 is a leaf): each inner node draws an operation uniformly; a unary one
   gets one child, any other `num_children_per_node`. Children are built (and named) before their parent, so the
   root takes the last name. Leaves are U{1..10} (arithmetic) or a fair True/False (logic). A square root of a
   negative child or a zero divisor redraws the offending child; an overflow redraws all children.
2. Extra links: every non-leaf node in the tree's collection order scans all nodes in a fresh shuffled order,
   `extra_links_per_node` times, and appends the first allowed node that closes no cycle (unary nodes take no
   links; a ``/`` node takes no zero-valued divisor). The scan restarts each time, so as in DyVal a second link
   usually repeats the first. Values are then recomputed; a failing operation or (arithmetic) a root below 1e-4
   rejects the DAG and a fresh tree is drawn, the name stream running on.
3. Redundant descriptions: each of the ``add_rand_desc`` random trees of depth 2 (a root and its leaves, names
   continuing the stream) inserts its root's and then each leaf's description at a uniform position.
4. The question's order: topological (inputs first), reversed, or a shuffle of the topological list.

All randomness comes from one `random.Random` per (seed, index) built by `bridge_pl.task.generator.stream_rng`;
nothing iterates a set or uses `hash`, so the output is identical in every process.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Literal

from bridge_pl.task.dyval.names import dyval_names
from bridge_pl.task.dyval.problem import (
    ARITHMETIC_OPS,
    LOGIC_OPS,
    UNARY_OPS,
    DyValNode,
    DyValProblem,
    Family,
    Value,
    apply_op,
    format_value,
)
from bridge_pl.task.generator import GenerationError, stream_rng

__all__ = ["DyValConfig", "GenerationError", "dyval_rng", "generate_dyval_problem", "iter_dyval_problems"]

Order = Literal["topological", "reversed", "random"]
MAX_NODES = 2000  # a tree beyond this is a typo in depth, not a benchmark setting
REDRAW_BUDGET = 10_000  # child redraws (sqrt of a negative, zero divisor) before the whole draw is abandoned


@dataclass(frozen=True)
class DyValConfig:
    """Knobs of the DyVal DAG generator (defaults: DyVal's, at the paper's SFT depth 4).

    Each field's docstring is also the help of its command-line flag (`redundant_min` is `--redundant-min`).
    """

    family: Family = "arithmetic"
    """Task family: arithmetic (DyVal's arithmetic) or logic (DyVal's bool_logic)."""
    depth: int = 4
    """Levels of the tree, leaves included (the paper: 4 for SFT, 5 for RL and test)."""
    num_children_per_node: int = 2
    """Inputs of each non-unary node of the tree (DyVal's num_children_per_node)."""
    extra_links_per_node: int = 1
    """Extra input links tried per non-leaf node (DyVal's extra_links_per_node)."""
    redundant_min: int = 0
    """Fewest redundant random descriptions (DyVal's add_rand_desc, drawn uniformly in [min, max])."""
    redundant_max: int = 0
    """Most redundant random descriptions (the paper: 0-8 in distribution, 20-22 out of distribution)."""
    order: Order = "topological"
    """Order of the question's descriptions: topological, reversed or random."""
    min_answer: float | None = 1e-4
    """Reject arithmetic draws whose answer is below this (DyVal's rule, 1e-4; null keeps every draw)."""
    max_abs_value: float | None = None
    """Reject arithmetic draws with a node value beyond this magnitude (default: no bound, as DyVal)."""
    max_attempts: int = 1000
    """Draws tried per problem before giving up."""

    def __post_init__(self) -> None:
        errors = self.config_errors()
        if errors:
            raise ValueError("invalid DyVal config:\n  " + "\n  ".join(errors))

    def config_errors(self) -> list[str]:
        """Every invalid setting, each naming the key and the fix."""
        errors = []
        if self.family not in ("arithmetic", "logic"):
            errors.append(f"family={self.family!r}: choose 'arithmetic' or 'logic'")
        if not isinstance(self.depth, int) or self.depth < 1:
            errors.append(f"depth={self.depth}: need an integer >= 1")
        if not isinstance(self.num_children_per_node, int) or self.num_children_per_node < 2:
            errors.append(f"num_children_per_node={self.num_children_per_node}: need an integer >= 2")
        elif (
            isinstance(self.depth, int)
            and self.depth >= 1
            and self.num_children_per_node ** (self.depth - 1) > MAX_NODES
        ):
            errors.append(
                f"depth={self.depth}, num_children_per_node={self.num_children_per_node}: "
                f"trees over {MAX_NODES} leaves; lower one of them"
            )
        if not isinstance(self.extra_links_per_node, int) or self.extra_links_per_node < 0:
            errors.append(f"extra_links_per_node={self.extra_links_per_node}: need an integer >= 0")
        if not 0 <= self.redundant_min <= self.redundant_max:
            errors.append(
                f"redundant_min={self.redundant_min}, redundant_max={self.redundant_max}: "
                "need 0 <= redundant_min <= redundant_max"
            )
        if self.order not in ("topological", "reversed", "random"):
            errors.append(f"order={self.order!r}: choose 'topological', 'reversed' or 'random'")
        if self.min_answer is not None and not isinstance(self.min_answer, int | float):
            errors.append(f"min_answer={self.min_answer!r}: need a number or null")
        if self.max_abs_value is not None and not (
            isinstance(self.max_abs_value, int | float) and self.max_abs_value > 0
        ):
            errors.append(f"max_abs_value={self.max_abs_value!r}: need a positive number or null")
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            errors.append(f"max_attempts={self.max_attempts}: need an integer >= 1")
        return errors

    def to_dict(self) -> dict:
        """The config as a plain dict (field order)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def dyval_rng(family: str, seed: int, index: int) -> random.Random:
    """The random stream of DyVal problem `index` of stream `seed` (the iGSM seeding scheme, its own namespace)."""
    return stream_rng("dyval", family, seed, index)


class _Rejected(Exception):
    """This draw is invalid; draw a fresh DAG."""


@dataclass
class _Draft:
    """A node under construction."""

    name: str
    op: str | None
    value: Value
    children: list[_Draft]


class _Builder:
    """Builds DyVal DAGs from one random stream and one running name stream."""

    def __init__(self, config: DyValConfig, rng: random.Random):
        self.config = config
        self.rng = rng
        self.names: Iterator[str] = dyval_names()
        self.ops = ARITHMETIC_OPS if config.family == "arithmetic" else LOGIC_OPS
        self.redraws = 0

    def name(self) -> str:
        name = next(self.names, None)
        if name is None:
            raise GenerationError("DyVal's name stream (aaa..zzz) ran out; lower depth or max_attempts")
        return name

    def leaf(self) -> _Draft:
        name = self.name()
        if self.config.family == "arithmetic":
            return _Draft(name, None, self.rng.randint(1, 10), [])
        return _Draft(name, None, self.rng.random() < 0.5, [])

    def tree(self, depth: int) -> _Draft:
        """A full tree of `depth` levels, children named before their parent."""
        if depth == 1:
            return self.leaf()
        op = self.ops[self.rng.randrange(len(self.ops))]
        width = 1 if op in UNARY_OPS else self.config.num_children_per_node
        children = [self.tree(depth - 1) for _ in range(width)]
        while True:
            try:
                value = apply_op(op, [child.value for child in children])
                break
            except ZeroDivisionError:
                # As DyVal: redraw only the zero divisors (all children if the product underflowed to 0).
                if all(child.value != 0 for child in children[1:]):
                    children = [self._redraw(depth - 1) for _ in range(width)]
                for k in range(1, width):
                    while children[k].value == 0:
                        children[k] = self._redraw(depth - 1)
            except ArithmeticError:
                # sqrt of a negative (its single child) or an overflow: redraw every child.
                children = [self._redraw(depth - 1) for _ in range(width)]
        return _Draft(self.name(), op, value, children)

    def _redraw(self, depth: int) -> _Draft:
        self.redraws += 1
        if self.redraws > REDRAW_BUDGET:
            raise _Rejected
        return self.tree(depth)

    def add_links(self, nodes: list[_Draft]) -> None:
        """DyVal's extra links: per non-leaf node, the first allowed acyclic node of one shuffled scan, k times."""
        for node in nodes:
            if not node.children or node.op in UNARY_OPS:
                continue
            candidates = list(nodes)
            self.rng.shuffle(candidates)
            for _ in range(self.config.extra_links_per_node):
                for target in candidates:
                    if node.op == "/" and target.value == 0:
                        continue
                    if not _reaches(target, node):
                        node.children.append(target)
                        break

    def dag(self) -> tuple[_Draft, list[_Draft]]:
        """The root and the topological (inputs-first) node list of one valid DAG."""
        depth = self.config.depth
        root = self.tree(depth)
        nodes = _collect(root)
        self.add_links(nodes)
        order = _topological(nodes, self.rng)
        for node in order:
            if node.op is not None:
                try:
                    node.value = apply_op(node.op, [child.value for child in node.children])
                except ArithmeticError as exc:
                    raise _Rejected from exc
        self._check_bounds(root, order)
        return root, order

    def _check_bounds(self, root: _Draft, order: list[_Draft]) -> None:
        if self.config.family != "arithmetic":
            return
        if self.config.min_answer is not None and root.value < self.config.min_answer:
            raise _Rejected
        bound = self.config.max_abs_value
        if bound is not None and any(abs(node.value) > bound for node in order):
            raise _Rejected


def _collect(root: _Draft) -> list[_Draft]:
    """DyVal's collection order: pop a node, push its children (a stack walk from the root)."""
    out, stack = [], [root]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(node.children)
    return out


def _reaches(start: _Draft, goal: _Draft) -> bool:
    """Whether `goal` is `start` or one of its descendants (a link goal -> start would close a cycle)."""
    seen: set[int] = set()
    stack = [start]
    while stack:
        node = stack.pop()
        if node is goal:
            return True
        if id(node) not in seen:
            seen.add(id(node))
            stack.extend(node.children)
    return False


def _topological(nodes: list[_Draft], rng: random.Random) -> list[_Draft]:
    """Every node once, inputs before the nodes that use them, the root last: DyVal's order.

    As DyVal's ``topological_sort`` after its node shuffle: a depth-first search started from each node of the
    shuffled list in turn, so a description sits near where it is first used by chance, not always next to it.
    Children are searched in input order (DyVal iterates a set: its order varies from run to run).
    """
    starts = list(nodes)
    rng.shuffle(starts)
    out: list[_Draft] = []
    done: set[int] = set()
    for start in starts:
        if id(start) in done:
            continue
        done.add(id(start))
        stack: list[tuple[_Draft, int]] = [(start, 0)]
        while stack:
            node, k = stack.pop()
            if k < len(node.children):
                stack.append((node, k + 1))
                child = node.children[k]
                if id(child) not in done:
                    done.add(id(child))
                    stack.append((child, 0))
            else:
                out.append(node)
    return out


def generate_dyval_problem(config: DyValConfig, seed: int, index: int = 0) -> DyValProblem:
    """Draw DyVal problem number `index` of the stream `seed`: the first valid draw of its own random stream.

    Raises:
        GenerationError: no valid DAG within `config.max_attempts` draws.
    """
    rng = dyval_rng(config.family, seed, index)
    builder = _Builder(config, rng)
    for _ in range(config.max_attempts):
        builder.redraws = 0
        try:
            root, order = builder.dag()
        except _Rejected:
            continue
        return _assemble(config, builder, root, order, seed, index)
    raise GenerationError(f"no valid DyVal {config.family} DAG in {config.max_attempts} draws (seed={seed})")


def _assemble(
    config: DyValConfig, builder: _Builder, root: _Draft, order: list[_Draft], seed: int, index: int
) -> DyValProblem:
    """Number the nodes, add the redundant descriptions, and fix the question's sentence order."""
    rng = builder.rng
    ids = {id(draft): k for k, draft in enumerate(order)}
    nodes = [
        DyValNode(k, d.name, d.op, tuple(ids[id(c)] for c in d.children), d.value, True) for k, d in enumerate(order)
    ]
    topo = list(range(len(nodes)))
    descriptions = list(topo)
    redundant: list[int] = []
    num_random = rng.randint(config.redundant_min, config.redundant_max)
    for _ in range(num_random):
        tree = builder.tree(2)
        for draft in [tree, *tree.children]:
            node_id = len(nodes)
            inputs = tuple(range(node_id + 1, node_id + 1 + len(draft.children)))
            nodes.append(DyValNode(node_id, draft.name, draft.op, inputs, draft.value, False))
            redundant.append(node_id)
            descriptions.insert(rng.randint(0, len(descriptions)), node_id)
    if config.order == "reversed":
        descriptions.reverse()
    elif config.order == "random":
        rng.shuffle(descriptions)
    target = topo[-1]
    meta = {"depth": config.depth, "order": config.order, "redundant_trees": num_random}
    return DyValProblem(
        config.family, nodes, topo, redundant, target, format_value(root.value), descriptions, seed, index, meta
    )


def iter_dyval_problems(config: DyValConfig, seed: int, count: int, start: int = 0) -> Iterator[DyValProblem]:
    """Problems ``start .. start + count - 1`` of the stream `seed`."""
    for index in range(start, start + count):
        yield generate_dyval_problem(config, seed, index)
