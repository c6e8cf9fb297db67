"""The paper's data-volume baselines (paper_spec §A.7).

* **PP-Aug** (premise permutation): the original question plus k-1 versions with the condition sentences
  shuffled again (successive in-place shuffles, as the official script does); every version keeps the
  same answer.
* **RC-Aug** (reasoning-chain augmentation): the original answer plus k-1 plain-CoT answers that solve
  the necessary nodes in other random topological orders (randomised Kahn, target last).
"""

from __future__ import annotations

import random
from dataclasses import replace

from bridge_pl.task.problem import Problem

__all__ = ["permute_premises", "random_solution_order", "reorder_solution"]


def permute_premises(problem: Problem, rng: random.Random, copies: int = 4) -> list[Problem]:
    """The problem followed by `copies - 1` variants whose condition sentences are shuffled again."""
    if copies < 1:
        raise ValueError(f"copies={copies}: need at least 1 (the original)")
    order = list(problem.question_order)
    variants = [problem]
    for _ in range(copies - 1):
        rng.shuffle(order)
        variants.append(replace(problem, question_order=list(order)))
    return variants


def random_solution_order(problem: Problem, rng: random.Random) -> list[int]:
    """A uniformly chosen ready node at every step of Kahn's algorithm over the necessary nodes, target last."""
    target = problem.topo[-1]
    necessary = set(problem.topo)
    waiting = {i: sum(p in necessary for p in problem.nodes[i].inputs) for i in problem.topo}
    users: dict[int, list[int]] = {i: [] for i in problem.topo}
    for i in problem.topo:
        for parent in problem.nodes[i].inputs:
            users[parent].append(i)
    ready = sorted(i for i, count in waiting.items() if count == 0 and i != target)
    order: list[int] = []
    while ready:
        node_id = ready.pop(rng.randrange(len(ready)))
        order.append(node_id)
        for user in users[node_id]:
            waiting[user] -= 1
            if waiting[user] == 0 and user != target:
                ready.append(user)
    order.append(target)
    if len(order) != len(problem.topo):
        raise ValueError("the necessary nodes do not form a DAG ending at the target")
    return order


def reorder_solution(problem: Problem, rng: random.Random, copies: int = 4) -> list[Problem]:
    """The problem followed by `copies - 1` variants whose solution order is another random topological order."""
    if copies < 1:
        raise ValueError(f"copies={copies}: need at least 1 (the original)")
    return [problem] + [replace(problem, topo=random_solution_order(problem, rng)) for _ in range(copies - 1)]
