"""The seeded iGSM-reasoning problem generator (paper_spec §A.2–A.4, §A.7).

`generate_problem(config, seed, index)` draws problem number `index` of the stream `seed`. Each index
has its own random stream, so any problem can be regenerated alone, datasets can be sharded over
processes, and the same (config, seed) always gives byte-identical problems.

The construction follows the official iGSM-reasoning generator stage by stage:

1. structure graph: L layers of items, edges between adjacent layers (one instance parameter per edge);
2. stage 1: abstract parameters with all their ancestors, within an op budget S1;
3. stage 2: extra instance parameters up to an op budget S2;
4. stage 3: a random topological order built backwards from a childless target, adding explicit
   edges into instance nodes where needed, so every node is an ancestor of the target;
5. stage 4: operation counts raised to exactly T, inputs and constants for every instance node;
6. stage 5: the remaining instance parameters become redundant (distractor) nodes.
"""

from __future__ import annotations

import functools
import math
import random
from bisect import bisect, insort
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from itertools import accumulate

from bridge_pl.task.problem import Node, Problem
from bridge_pl.task.vocabulary import Vocabulary, load_vocabulary

__all__ = [
    "GeneratorConfig",
    "GenerationError",
    "generate_problem",
    "iter_problems",
    "problem_rng",
    "stream_rng",
    "survey_draws",
]

MAX_NODES = 52  # one distinct letter a-z, A-Z per node in the written answers
RNG = -1  # the random-constant pseudo-parent


class GenerationError(RuntimeError):
    """No valid problem could be drawn within the attempt budget."""


@dataclass(frozen=True)
class GeneratorConfig:
    """Difficulty knobs of the iGSM-reasoning generator (defaults: the paper's op 15-20 sets).

    Each field's docstring is also the help of its `bridge data generate` flag (`min_op` is `--min-op`).
    """

    min_op: int = 15
    """Smallest target operation count."""
    max_op: int = 20
    """Largest target operation count."""
    force: bool = False
    """Always use max_op instead of min(U{min..max}, U{min..max})."""
    max_instance_params: int = 20
    """Upper bound on the structure graph's edges (instance parameters), "ip"."""
    max_layers: int = 4
    """Largest number of structure layers; L is drawn from {2, ..., max_layers}."""
    max_in_degree: int = 4
    """Most inputs (the constant included) of a necessary instance node."""
    redundant: bool = True
    """Add redundant (distractor) nodes and their sentences."""
    shuffle: bool = True
    """Shuffle the question's condition sentences (else they follow the solution order)."""
    answer_bound: int = 1000
    """Keep only problems with |answer| < answer_bound."""
    zero_answer_drop: float | None = None
    """Probability of rejecting a problem whose answer is 0 (default: the paper's rule: 0.6 if min_op > 20, else 0)."""
    modulus: int | None = None
    """Reduce every operation modulo this number (23 reproduces the original iGSM arithmetic; default: none)."""
    constant_range: int = 10
    """Constants are uniform in {0, ..., constant_range - 1}."""
    order_attempts: int = 50
    """Graphs drawn for one difficulty shape (T, L, sizes) until one has a valid solution order."""
    max_attempts: int = 1000
    """Draws tried per problem before giving up."""
    vocabulary: str | None = None
    """Path of a vocabulary JSON file (default: the packaged one)."""

    def __post_init__(self) -> None:
        errors = self.config_errors()
        if errors:
            raise ValueError("invalid generator config:\n  " + "\n  ".join(errors))

    def config_errors(self) -> list[str]:
        """Every invalid setting, each naming the key and the fix."""
        errors = []
        if not 1 <= self.min_op <= self.max_op:
            errors.append(f"min_op={self.min_op}, max_op={self.max_op}: need 1 <= min_op <= max_op")
        if self.max_instance_params < 2:
            errors.append(f"max_instance_params={self.max_instance_params}: need at least 2")
        if self.max_layers < 2:
            errors.append(f"max_layers={self.max_layers}: need at least 2 layers")
        if self.max_in_degree < 2:
            errors.append(f"max_in_degree={self.max_in_degree}: need at least 2 (a constant and one parent)")
        if self.answer_bound < 1:
            errors.append(f"answer_bound={self.answer_bound}: need a positive bound")
        if self.zero_answer_drop is not None and not 0.0 <= self.zero_answer_drop <= 1.0:
            errors.append(f"zero_answer_drop={self.zero_answer_drop}: need a probability in [0, 1] or null")
        if self.modulus is not None and self.modulus < 2:
            errors.append(f"modulus={self.modulus}: need at least 2, or null for plain integers")
        if self.constant_range < 1:
            errors.append(f"constant_range={self.constant_range}: need at least 1")
        if self.order_attempts < 1:
            errors.append(f"order_attempts={self.order_attempts}: need at least 1")
        if self.max_attempts < 1:
            errors.append(f"max_attempts={self.max_attempts}: need at least 1")
        return errors

    @property
    def zero_drop_probability(self) -> float:
        """The effective probability of rejecting a zero answer."""
        if self.zero_answer_drop is not None:
            return self.zero_answer_drop
        return 0.6 if self.min_op > 20 else 0.0

    def to_dict(self) -> dict:
        """The config as a plain dict (field order)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def stream_rng(*parts: object) -> random.Random:
    """A random stream named by `parts`; string seeds hash identically in every process and platform."""
    return random.Random("bridge-pl/" + "/".join(map(str, parts)))


def problem_rng(seed: int, index: int) -> random.Random:
    """The random stream of problem `index` of stream `seed`."""
    return stream_rng("igsm", seed, index)


def generate_problem(config: GeneratorConfig, seed: int, index: int = 0) -> Problem:
    """Draw problem number `index` of the stream `seed`: the first valid draw of its own random stream."""
    vocabulary = load_vocabulary(config.vocabulary)
    rng = problem_rng(seed, index)
    for _ in range(config.max_attempts):
        problem = _draw(config, vocabulary, rng)
        if problem is None:
            continue
        problem.seed, problem.index = seed, index
        return problem
    raise GenerationError(
        f"no valid problem for seed={seed} index={index} after {config.max_attempts} attempts; "
        "raise max_attempts, widen min_op..max_op, or raise answer_bound"
    )


def survey_draws(config: GeneratorConfig, seed: int, draws: int) -> dict[str, float]:
    """Outcome shares of `draws` raw draws: failures, rejections, and the layer mix of the built graphs.

    The paper's layer mix and "about 18% of drawn problems fail stage 3 or stage 4" are measured on raw
    draws, before the answer filter; this reports the same quantities for comparison.
    """
    vocabulary = load_vocabulary(config.vocabulary)
    tally: Counter = Counter()
    for index in range(draws):
        _draw(config, vocabulary, stream_rng("survey", seed, index), tally)
    built = max(tally["built"], 1)
    report = {k: tally[k] / draws for k in ("failed_order", "failed_ops", "accepted")}
    report["failed_stage3_or_4"] = (tally["failed_order"] + tally["failed_ops"]) / draws
    for key in ("rejected_size", "rejected_bound", "rejected_zero"):
        report[key] = tally[key] / built
    report["abstract_target"] = tally["abstract_target"] / built
    for layers in range(2, config.max_layers + 1):
        report[f"layers_{layers}"] = tally[f"layers_{layers}"] / built
    return report


def iter_problems(config: GeneratorConfig, seed: int, count: int, start: int = 0) -> Iterator[Problem]:
    """Problems `start`, ..., `start + count - 1` of the stream `seed`."""
    for index in range(start, start + count):
        yield generate_problem(config, seed, index)


# ------------------------------------------------------------------------------------------------ drawing
# random.Random's choice/randint/sample spend most of their time in rejection sampling on getrandbits;
# these draw from random() directly, which is about twice as fast and just as deterministic.
def _pick(rng: random.Random, seq: Sequence):
    return seq[int(rng.random() * len(seq))]


def _randint(rng: random.Random, low: int, high: int) -> int:
    return low + int(rng.random() * (high - low + 1))


def _sample(rng: random.Random, seq: list, k: int) -> list:
    pool = list(seq)
    for i in range(k):
        j = i + int(rng.random() * (len(pool) - i))
        pool[i], pool[j] = pool[j], pool[i]
    return pool[:k]


def _shuffle(rng: random.Random, items: list) -> None:
    for i in range(len(items) - 1, 0, -1):
        j = int(rng.random() * (i + 1))
        items[i], items[j] = items[j], items[i]


def _softmax(scores: list[float]) -> list[float]:
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


@functools.lru_cache(maxsize=256)
def _size_cum_weights(choices: int, rel: float) -> tuple[float, ...]:
    """`_size_weights` accumulated, as `Random.choices(cum_weights=...)` takes them (rel repeats: one per T)."""
    return tuple(accumulate(_size_weights(choices, rel)))


def _weighted_pick(rng: random.Random, seq: Sequence, weights: Sequence[float]):
    """`rng.choices(seq, weights)[0]`, the same arithmetic and the same one random() call, minus its checks."""
    cum_weights = list(accumulate(weights))
    return seq[bisect(cum_weights, rng.random() * (cum_weights[-1] + 0.0), 0, len(cum_weights) - 1)]


def _size_weights(choices: int, rel: float) -> list[float]:
    """Weights over `choices` sizes with centres spread over [0.2, 0.8] (the paper's three for {2, 3, 4})."""
    centres = [0.2 + 0.6 * k / (choices - 1) for k in range(choices)] if choices > 1 else [0.5]
    return _softmax([-((rel - c) ** 2) for c in centres])


@dataclass(slots=True)
class _Structure:
    """The structure graph of one draw: items per layer and containment edges between adjacent layers."""

    num_layers: int
    items: list[list[str]]
    layer_names: list[str]
    children: list[list[list[int]]]  # children[layer][item] = lower-layer item indices it contains


@dataclass(frozen=True, slots=True)
class _Shape:
    """The difficulty of one draw: target ops, stage budgets, layers, items-per-layer range, edge count."""

    target_ops: int
    budget1: int
    budget2: int
    num_layers: int
    w0: int
    w1: int
    num_edges: int


def _draw_shape(config: GeneratorConfig, rng: random.Random) -> _Shape:
    """Target op count T, budgets S1 <= S2 <= T, layers L, item range [w0, w1] and edge count E (spec §A.3)."""
    if config.force:
        target_ops = config.max_op
    else:
        target_ops = min(_randint(rng, config.min_op, config.max_op), _randint(rng, config.min_op, config.max_op))
    budget1 = max(_randint(rng, 1, target_ops), _randint(rng, 1, target_ops))
    budget2 = _randint(rng, budget1, target_ops)
    ip = config.max_instance_params
    rel = (target_ops - 1) / (ip - 1)
    layer_choices = list(range(2, config.max_layers + 1))
    num_layers = rng.choices(layer_choices, cum_weights=_size_cum_weights(len(layer_choices), rel))[0]
    w0, w1 = sorted(rng.choices([2, 3, 4], cum_weights=_size_cum_weights(3, rel), k=2))
    num_edges = min(_randint(rng, (num_layers - 1) * w0, ip), _randint(rng, (num_layers - 1) * w0, ip))
    num_edges = min(num_edges, (num_layers - 1) * w1 * w1)
    return _Shape(target_ops, budget1, budget2, num_layers, w0, w1, num_edges)


def _draw_structure(shape: _Shape, vocabulary: Vocabulary, rng: random.Random) -> tuple[str, _Structure] | None:
    """Items per layer, their names (one system, one sub-category per layer) and the containment edges."""
    num_layers = shape.num_layers
    counts = _draw_layer_sizes(rng, num_layers, shape.w0, shape.w1, shape.num_edges)
    system = _pick(rng, vocabulary.systems)
    if len(system.categories) < num_layers:
        return None
    pools = [_pick(rng, category.subcategories)[1] for category in system.categories]
    offset = _randint(rng, 0, len(system.categories) - num_layers)
    pools, categories = pools[offset : offset + num_layers], system.categories[offset : offset + num_layers]
    if any(len(pool) < count for pool, count in zip(pools, counts, strict=True)):
        return None
    items = [_sample(rng, pool, count) for pool, count in zip(pools, counts, strict=True)]
    children = _draw_edges(rng, counts, shape.num_edges)
    return system.name, _Structure(num_layers, items, [c.name for c in categories], children)


def _draw_layer_sizes(rng: random.Random, num_layers: int, w0: int, w1: int, num_edges: int) -> list[int]:
    """Items per layer: start at w0, grow random layers towards w1 while more edges are needed or by chance."""
    counts = [w0] * num_layers
    grow_probability = rng.random()
    while True:
        open_layers = [i for i in range(num_layers) if counts[i] < w1]
        if not open_layers or sum(counts[1:]) == num_edges:
            return counts
        max_edges = sum(counts[i] * counts[i + 1] for i in range(num_layers - 1))
        if max_edges < num_edges or rng.random() < grow_probability:
            counts[_pick(rng, open_layers)] += 1
        else:
            return counts


def _draw_edges(rng: random.Random, counts: list[int], num_edges: int) -> list[list[list[int]]]:
    """Containment edges: every upper item contains one random lower item, then random extra edges."""
    children: list[list[list[int]]] = [[[] for _ in range(counts[0])]]
    for layer in range(1, len(counts)):
        children.append([[int(rng.random() * counts[layer - 1])] for _ in range(counts[layer])])
    missing = [
        (layer, item, lower)
        for layer in range(1, len(counts))
        for item, (first,) in enumerate(children[layer])
        for lower in range(counts[layer - 1])
        if lower != first
    ]
    extra = max(0, num_edges - sum(counts[1:]))
    for layer, item, lower in _sample(rng, missing, min(extra, len(missing))):
        children[layer][item].append(lower)
    for layer_children in children:
        for item_children in layer_children:
            item_children.sort()
    return children


@dataclass(slots=True)
class _Draft:
    """Mutable state of one draw. Parameters are integers: instance parameters first, then abstract ones.

    `spec[p]` is (upper_layer, upper_item, lower_item) for an instance parameter and
    (lower_layer, upper_layer, upper_item) for an abstract one.
    """

    structure: _Structure
    spec: list[tuple[int, int, int]]
    abstract: list[bool]
    parents: list[list[int]]  # implicit parents of abstract parameters; instance parents grow in stages 3-5
    num_instances: int
    by_level: dict[int, list[int]]  # abstract parameters by level (upper layer - lower layer), ascending
    in_graph: list[bool]
    graph: list[int]  # parameters in Gd, insertion order
    constants: list[int | None]
    combine: list[str]
    constant_op: list[str | None]
    base_ops: list[int]  # op cost before stage 3: 1 per instance parameter, in-degree - 1 per abstract one

    def ops(self, p: int) -> int:
        return max(1, len(self.parents[p]) + (self.constants[p] is not None) - 1)

    def add(self, params: list[int]) -> None:
        for p in params:
            if not self.in_graph[p]:
                self.in_graph[p] = True
                self.graph.append(p)


def _new_draft(structure: _Structure) -> _Draft:
    """All parameters of a structure graph: one instance parameter per edge, one abstract per (layer, item) pair."""
    layers, children = structure.num_layers, structure.children
    spec: list[tuple[int, int, int]] = []
    first_instance = []  # first_instance[layer][item]: id of the item's first instance parameter
    for layer in range(layers):
        firsts = []
        for item, lowers in enumerate(children[layer]):
            firsts.append(len(spec))
            spec += [(layer, item, lower) for lower in lowers]
        first_instance.append(firsts)
    num_instances = len(spec)
    parents: list[list[int]] = [[] for _ in spec]
    by_level: dict[int, list[int]] = {}
    block: dict[tuple[int, int], int] = {}  # (lower layer, upper layer) -> id of its item 0
    for upper_layer in range(1, layers):
        for lower_layer in range(upper_layer):
            block[lower_layer, upper_layer] = base = len(spec)
            spec += [(lower_layer, upper_layer, item) for item in range(len(children[upper_layer]))]
            by_level.setdefault(upper_layer - lower_layer, []).extend(range(base, len(spec)))
            below = block.get((lower_layer, upper_layer - 1))  # None one level up: a plain sum
            for first, lowers in zip(first_instance[upper_layer], children[upper_layer], strict=True):
                if below is None:
                    parents.append(list(range(first, first + len(lowers))))
                else:  # weighted: each child's count times that child's category total
                    parents.append([p for k, lower in enumerate(lowers) for p in (first + k, below + lower)])
    n = len(spec)
    return _Draft(
        structure=structure,
        spec=spec,
        abstract=[False] * num_instances + [True] * (n - num_instances),
        parents=parents,
        num_instances=num_instances,
        by_level=by_level,
        in_graph=[False] * n,
        graph=[],
        constants=[None] * n,
        combine=["sum"] * n,
        constant_op=[None] * n,
        base_ops=[1] * num_instances + [max(1, len(inputs) - 1) for inputs in parents[num_instances:]],
    )


def _draw(
    config: GeneratorConfig, vocabulary: Vocabulary, rng: random.Random, tally: Counter | None = None
) -> Problem | None:
    """One attempt at a problem; None when a stage fails or the answer is rejected (the caller draws again).

    With `tally`, counts the outcome of the draw (see `survey_draws`).
    """
    tally = Counter() if tally is None else tally
    shape = _draw_shape(config, rng)
    drafted = _draw_ordered_graph(config, vocabulary, rng, shape)
    if drafted is None:
        tally["failed_order"] += 1
        return None
    system_name, draft, topo = drafted
    if not _stage4_ops(draft, rng, topo, shape.target_ops, config):
        tally["failed_ops"] += 1
        return None
    tally["built"] += 1
    tally[f"layers_{shape.num_layers}"] += 1
    tally["abstract_target"] += draft.abstract[topo[-1]]
    # The answer depends on the necessary nodes only: filter it before spending time on redundant nodes.
    values = _values(draft, topo, config.modulus, {})
    answer = values[topo[-1]]
    if abs(answer) >= config.answer_bound:
        tally["rejected_bound"] += 1
        return None
    if answer == 0 and rng.random() < config.zero_drop_probability:
        tally["rejected_zero"] += 1
        return None
    redundant = _stage5_redundant(draft, rng, topo, config) if config.redundant else []
    if len(topo) + len(redundant) > MAX_NODES:
        tally["rejected_size"] += 1
        return None
    _values(draft, redundant, config.modulus, values)
    tally["accepted"] += 1
    return _build_problem(draft, rng, system_name, topo, redundant, values, config)


def _draw_ordered_graph(
    config: GeneratorConfig, vocabulary: Vocabulary, rng: random.Random, shape: _Shape
) -> tuple[str, _Draft, list[int]] | None:
    """Stages 1-3 for one shape, redrawing the whole graph when no topological order is found.

    The shape (T, L, item range, E) is kept across retries, as the official generator does: a failed
    order must not bias the problems towards shapes that fail less (it would skew the layer mix).
    """
    for _ in range(config.order_attempts):
        drawn = _draw_structure(shape, vocabulary, rng)
        if drawn is None:
            return None
        system_name, structure = drawn
        draft = _new_draft(structure)
        _stage1_abstract(draft, rng, shape.budget1)
        _stage2_instances(draft, rng, shape.budget2)
        topo = _stage3_order(draft, rng)
        if topo is not None:
            return system_name, draft, topo
    return None


def _ancestors(draft: _Draft, p: int) -> list[int]:
    """`p` and all its (implicit) ancestors, breadth first."""
    seen, queue = {p}, [p]
    for current in queue:
        for parent in draft.parents[current]:
            if parent not in seen:
                seen.add(parent)
                queue.append(parent)
    return queue


def _stage1_abstract(draft: _Draft, rng: random.Random, budget: int) -> None:
    """Add abstract parameters with their ancestors, top level first, while the op cost stays within budget."""
    in_graph, base_ops = draft.in_graph, draft.base_ops
    levels = [draft.by_level[level] for level in range(draft.structure.num_layers - 1, 0, -1)]
    ancestors: dict[int, list[int]] = {}  # a rejected candidate is often drawn again; parents are fixed here
    cost = 0
    accepted = True
    while accepted:
        accepted = False
        for level in levels:
            candidates = [p for p in level if not in_graph[p]]
            if not candidates:
                continue
            p = _pick(rng, candidates)
            if p not in ancestors:
                ancestors[p] = _ancestors(draft, p)
            new = [q for q in ancestors[p] if not in_graph[q]]
            added_cost = sum([base_ops[q] for q in new])
            if cost + added_cost <= budget:
                draft.add(new)
                cost += added_cost
                accepted = True
                break


def _stage2_instances(draft: _Draft, rng: random.Random, budget: int) -> None:
    """Add random instance parameters (one op each) while the op total is below budget."""
    cost = sum(draft.base_ops[p] for p in draft.graph)
    remaining = [p for p in range(draft.num_instances) if not draft.in_graph[p]]
    _shuffle(rng, remaining)
    while cost < budget and remaining:
        draft.add([remaining.pop()])
        cost += 1


def _choose_new_parent(draft: _Draft, rng: random.Random, pool: list[int], feeds_placed: list[bool]) -> int:
    """Softmax choice favouring abstract nodes and nodes already feeding placed nodes (score x |N(0,1)|)."""
    scores = [(draft.abstract[p] + feeds_placed[p]) * abs(rng.gauss(0.0, 1.0)) for p in pool]
    return _weighted_pick(rng, pool, _softmax(scores))


def _stage3_order(draft: _Draft, rng: random.Random) -> list[int] | None:
    """A random topological order built backwards from a childless target; None if it gets stuck."""
    n = len(draft.spec)
    rank = {p: i for i, p in enumerate(draft.graph)}
    pending = [0] * n  # children in Gd not placed yet
    for p in draft.graph:
        for parent in draft.parents[p]:
            pending[parent] += 1
    feeds_placed = [False] * n
    # Unplaced nodes of Gd whose children are all placed, in Gd order; kept up to date by place() rather than
    # rescanned every step (the scan was a third of the stage's time).
    ready = [p for p in draft.graph if pending[p] == 0]
    placed: list[int] = []

    def place(p: int) -> None:
        placed.append(p)
        ready.remove(p)
        for parent in draft.parents[p]:
            pending[parent] -= 1
            feeds_placed[parent] = True
            if pending[parent] == 0:
                insort(ready, parent, key=rank.__getitem__)

    place(_pick(rng, ready))
    while len(placed) < len(draft.graph):
        last = placed[-1]
        if not draft.abstract[last] and rng.random() < 0.5:
            _link(draft, feeds_placed, last, _choose_new_parent(draft, rng, ready, feeds_placed))
        candidates = [p for p in ready if feeds_placed[p]]
        if not candidates:
            if draft.abstract[last]:
                return None
            _link(draft, feeds_placed, last, _choose_new_parent(draft, rng, ready, feeds_placed))
            candidates = [p for p in ready if feeds_placed[p]]
        place(_pick(rng, candidates))
    placed.reverse()
    return placed


def _link(draft: _Draft, feeds_placed: list[bool], child: int, parent: int) -> None:
    """Add the explicit dependency parent -> child (child is a placed instance node, parent is not placed)."""
    if parent not in draft.parents[child]:
        draft.parents[child].append(parent)
        feeds_placed[parent] = True


def _stage4_ops(draft: _Draft, rng: random.Random, topo: list[int], target_ops: int, config: GeneratorConfig) -> bool:
    """Raise instance op counts to exactly `target_ops`, then give each instance node its inputs."""
    position = {p: i for i, p in enumerate(topo)}
    instance_ops = {p: max(1, len(draft.parents[p]) - 1) for p in topo if not draft.abstract[p]}
    caps = {p: min(config.max_in_degree - 1, max(1, position[p])) for p in instance_ops}
    total = sum(instance_ops.values()) + sum(draft.ops(p) for p in topo if draft.abstract[p])
    if total > target_ops or any(instance_ops[p] > caps[p] for p in instance_ops):
        return False
    raisable = [p for p in instance_ops if instance_ops[p] < caps[p]]
    while total < target_ops:
        if not raisable:
            return False
        p = _pick(rng, raisable)
        instance_ops[p] += 1
        total += 1
        if instance_ops[p] == caps[p]:
            raisable.remove(p)
    for p, ops in instance_ops.items():
        pool = [*topo[: position[p]], RNG]
        wanted = _randint(rng, 1, 2) if ops == 1 else ops + 1
        _assign_inputs(draft, rng, p, pool, min(wanted, len(pool)), config, explicit_rng=rng.random() < 0.5)
    return sum(draft.ops(p) for p in topo) == target_ops


def _assign_inputs(
    draft: _Draft,
    rng: random.Random,
    p: int,
    pool: list[int],
    count: int,
    config: GeneratorConfig,
    explicit_rng: bool,
    rng_in_sample: bool = True,
) -> None:
    """Pick the inputs of instance node `p` by the official rule (spec §A.4 stages 4-5), then its sentence form.

    `count` inputs are wanted, the stage-3 parent (kept) included. A pool with no more nodes than wanted is taken
    whole, the constant too. Otherwise, with `explicit_rng`, the constant is added even when the stage-3 parent
    alone fills `count`: a one-op node then reads "c more than P" / "c times P" instead of a plain copy, at the
    same op cost (max(1, k - 1) of k = 1 or 2 inputs is 1). The rest is sampled from the pool, which still holds
    the constant when `rng_in_sample` (stage 4) and does not in stage 5 (the official generator drops it there).
    """
    chosen = list(draft.parents[p])
    rest = [q for q in pool if q not in chosen]
    wanted = max(0, count - len(chosen))
    if wanted >= len(rest):
        chosen += rest
    else:
        if explicit_rng and RNG in rest:
            chosen.append(RNG)
            rest.remove(RNG)
            wanted = max(0, wanted - 1)
        if not rng_in_sample and RNG in rest:
            rest.remove(RNG)
        chosen += _sample(rng, rest, wanted)
    parents = [q for q in chosen if q != RNG]
    _shuffle(rng, parents)
    draft.parents[p] = parents
    if RNG in chosen or not parents:
        draft.constants[p] = int(rng.random() * config.constant_range)
    if len(parents) == 2:
        draft.combine[p] = "diff" if rng.random() < 0.5 else "sum"
    if draft.constants[p] is not None and parents:
        draft.constant_op[p] = "mul" if rng.random() < 0.5 else "add"


def _stage5_redundant(draft: _Draft, rng: random.Random, topo: list[int], config: GeneratorConfig) -> list[int]:
    """Turn every remaining instance parameter into a redundant node; returns them in creation order."""
    remaining = [p for p in range(draft.num_instances) if not draft.in_graph[p]]
    _shuffle(rng, remaining)
    redundant: list[int] = []
    chained: list[int] = []  # redundant nodes created from the "earlier redundant nodes" pool
    for p in remaining:
        from_chain = rng.random() < 0.5
        if from_chain:
            pool = [*chained, RNG]
        else:
            computable = [
                q
                for q in range(draft.num_instances, len(draft.spec))
                if not draft.in_graph[q] and all(draft.in_graph[r] for r in draft.parents[q])
            ]
            pool = [*topo, *computable, RNG]
        count = 1
        while count < min(4, len(pool)) and rng.random() < 0.5:
            count += 1
        _assign_inputs(draft, rng, p, pool, count, config, explicit_rng=rng.random() < 0.5, rng_in_sample=False)
        for parent in draft.parents[p]:
            if not draft.in_graph[parent]:  # a computable abstract parameter becomes a redundant node
                draft.add([parent])
                redundant.append(parent)
        draft.add([p])
        redundant.append(p)
        if from_chain:
            chained.append(p)
    return redundant


def _values(draft: _Draft, order: list[int], modulus: int | None, values: dict[int, int]) -> dict[int, int]:
    """Add the value of every parameter of `order` to `values` and return it.

    Exact integers reduced modulo at the end equal per-operation reduction, since + - * commute with mod.
    """
    for p in order:
        inputs = [values[q] for q in draft.parents[p]]
        if draft.abstract[p]:
            lower_layer, upper_layer, _ = draft.spec[p]
            if upper_layer - lower_layer > 1:
                value = sum(inputs[k] * inputs[k + 1] for k in range(0, len(inputs), 2))
            else:
                value = sum(inputs)
        else:
            value = inputs[0] - inputs[1] if draft.combine[p] == "diff" else sum(inputs)
            constant = draft.constants[p]
            if constant is not None and not inputs:
                value = constant
            elif constant is not None:
                value = constant * value if draft.constant_op[p] == "mul" else constant + value
        values[p] = value if modulus is None else value % modulus
    return values


def _build_problem(
    draft: _Draft,
    rng: random.Random,
    system: str,
    topo: list[int],
    redundant: list[int],
    values: dict[int, int],
    config: GeneratorConfig,
) -> Problem:
    """Turn the draft into a `Problem`; node ids follow topo, then redundant."""
    structure = draft.structure
    ids = {p: i for i, p in enumerate([*topo, *redundant])}
    necessary = set(topo)
    nodes = []
    for p, node_id in ids.items():
        a, b, c = draft.spec[p]
        if draft.abstract[p]:  # (lower_layer, upper_layer, upper_item)
            upper, lower, upper_layer, lower_layer = structure.items[b][c], structure.layer_names[a], b, a
            combine = "weighted" if b - a > 1 else "sum"
        else:  # (upper_layer, upper_item, lower_item)
            upper, lower, upper_layer, lower_layer = structure.items[a][b], structure.items[a - 1][c], a, a - 1
            combine = draft.combine[p]
        nodes.append(
            Node(
                id=node_id,
                kind="abstract" if draft.abstract[p] else "instance",
                upper=upper,
                lower=lower,
                upper_layer=upper_layer,
                lower_layer=lower_layer,
                inputs=[ids[q] for q in draft.parents[p]],
                constant=draft.constants[p],
                combine=combine,
                constant_op=draft.constant_op[p],
                necessary=p in necessary,
                value=values[p],
            )
        )
    question_order = [ids[p] for p in [*topo, *redundant] if not draft.abstract[p]]
    if config.shuffle:
        _shuffle(rng, question_order)
    return Problem(
        nodes=nodes,
        topo=[ids[p] for p in topo],
        redundant=[ids[p] for p in redundant],
        question_order=question_order,
        system=system,
        layer_names=list(structure.layer_names),
        modulus=config.modulus,
    )
