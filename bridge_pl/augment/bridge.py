"""BRIDGE behavior injection: rewrite a problem's answer so it carries exploration and exploitation.

Behaviors (paper_spec §B.2-B.3), each with its own switch:

* **exploration**: with probability `exploration` per step, attempt a later (possibly locked) node or,
  with probability `redundant_attempt`, a redundant node, ahead of time; a locked attempt ends in a
  reflection that names the unsolved inputs. Never two failed attempts in a row; the first step and
  the target's own step are never replaced.
* **revisit**: a node attempted too early is later solved "as named before" (always on: it follows
  from exploration).
* **subgoal computation**: equation chains reduce one operation per ``=`` link.
* **information analysis**: an instance node's condition is restated, with a probability that grows
  with its number of inputs (`analysis_level` 0-4).

With every behavior off the answer is exactly the plain CoT of `bridge_pl.task.cot.render_plain_cot`.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Literal, Protocol

from bridge_pl.task.cot import ANALYSIS_TABLES, StepWriter

__all__ = [
    "BehaviorConfig",
    "BehaviorStats",
    "PRESETS",
    "Plan",
    "Preset",
    "StepWriterLike",
    "behavior_preset",
    "render_bridge_answer",
]


class Plan(Protocol):
    """The task-neutral solution plan behavior injection walks: any DAG-structured problem."""

    topo: Sequence[int]
    """The necessary nodes in a solution order, the target last."""
    redundant: Sequence[int]
    """Nodes that feed no necessary node (distractors), candidates for a premature attempt."""


class StepWriterLike(Protocol):
    """A task's answer writer: its wording of each step; the schedule of `render_bridge_answer` decides the steps.

    ``step(node)`` writes the node's step: computed when every input is solved (the node joins `solved`), else
    a failed attempt whose reflection names the missing inputs (`failed_attempts` + 1); a node stepped on
    again after it was named is a revisit. `finish` wraps the lines in the answer frame.
    """

    solved: set[int]
    lines: list[str]
    failed_attempts: int
    revisits: int
    analyses: int

    def step(self, node_id: int) -> str: ...

    def finish(self) -> str: ...


WriterFactory = Callable[..., StepWriterLike]  # (plan, rng, *, subgoal, analysis_level) -> writer

Preset = Literal["vanilla", "exploration", "exploitation", "full"]


@dataclass(frozen=True)
class BehaviorConfig:
    """Which behaviors to inject and how often (defaults: the paper's full BRIDGE).

    Each field's docstring is also the help of its `bridge data` flag (`analysis_level` is `--analysis-level`).
    """

    exploration: float = 0.1
    """Probability of a premature attempt before a step (the paper's reflection_prob, 0.1)."""
    redundant_attempt: float = 0.3
    """Share of attempts aimed at a redundant node when the problem has any (0.3)."""
    subgoal: bool = True
    """Reduce equation chains one operation per link (the paper's detailed computation)."""
    analysis_level: int = 2
    """Level 0-4 of the information-analysis probability table (the paper uses 2)."""

    def __post_init__(self) -> None:
        errors = []
        if not 0.0 <= self.exploration <= 1.0:
            errors.append(f"exploration={self.exploration}: need a probability in [0, 1]")
        if not 0.0 <= self.redundant_attempt <= 1.0:
            errors.append(f"redundant_attempt={self.redundant_attempt}: need a probability in [0, 1]")
        if self.analysis_level not in ANALYSIS_TABLES:
            errors.append(f"analysis_level={self.analysis_level}: choose one of {sorted(ANALYSIS_TABLES)}")
        if errors:
            raise ValueError("invalid behavior config:\n  " + "\n  ".join(errors))

    def to_dict(self) -> dict:
        """The config as a plain dict."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


PRESETS: dict[str, BehaviorConfig] = {
    "vanilla": BehaviorConfig(exploration=0.0, subgoal=False, analysis_level=0),
    "exploration": BehaviorConfig(exploration=0.1, subgoal=False, analysis_level=0),
    "exploitation": BehaviorConfig(exploration=0.0, subgoal=True, analysis_level=2),
    "full": BehaviorConfig(exploration=0.1, subgoal=True, analysis_level=2),
}


def behavior_preset(name: str) -> BehaviorConfig:
    """The named preset: vanilla, exploration (only), exploitation (only) or full BRIDGE."""
    if name not in PRESETS:
        raise ValueError(f"unknown behavior preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


@dataclass(frozen=True)
class BehaviorStats:
    """What was injected into one answer."""

    failed_attempts: int
    early_solves: int
    revisits: int
    analyses: int
    steps: int


def render_bridge_answer(
    problem: Plan, rng: random.Random, config: BehaviorConfig | None = None, *, make_writer: WriterFactory = StepWriter
) -> tuple[str, BehaviorStats]:
    """Write a CoT answer with the behaviors of `config` injected; returns the text and what was injected.

    `make_writer` builds the task's step writer (default: iGSM's `StepWriter`); the schedule here is the task's
    only in `problem.topo` and `problem.redundant`.
    """
    config = config or BehaviorConfig()
    writer = make_writer(problem, rng, subgoal=config.subgoal, analysis_level=config.analysis_level)
    topo = problem.topo
    cursor, last_ok, early_solves = 0, False, 0
    while cursor < len(topo):
        if (
            0 < cursor < len(topo) - 1
            and last_ok
            and config.exploration > 0
            and _can_attempt(problem, config, writer.solved, cursor)
            and rng.random() < config.exploration
        ):
            node_id = _attempt_target(problem, rng, config, cursor)
            if node_id in writer.solved:
                continue
            writer.step(node_id)
            last_ok = node_id in writer.solved
            early_solves += last_ok
            continue
        node_id = topo[cursor]
        if node_id not in writer.solved:
            writer.step(node_id)
            last_ok = True
        cursor += 1
    stats = BehaviorStats(writer.failed_attempts, early_solves, writer.revisits, writer.analyses, len(writer.lines))
    return writer.finish(), stats


def _can_attempt(problem: Plan, config: BehaviorConfig, solved: set[int], cursor: int) -> bool:
    """Whether an attempt could hit an unsolved node (keeps high exploration rates from looping forever).

    Once the target is solved early the answer is complete, so exploration stops there and the target's
    step stays the last one.
    """
    if problem.topo[-1] in solved:
        return False
    later_open = any(i not in solved for i in problem.topo[cursor + 1 :])
    if not problem.redundant:
        return later_open
    redundant_open = any(i not in solved for i in problem.redundant)
    return (later_open and config.redundant_attempt < 1) or (redundant_open and config.redundant_attempt > 0)


def _attempt_target(problem: Plan, rng: random.Random, config: BehaviorConfig, cursor: int) -> int:
    """The node of a premature attempt: a redundant node, or a later necessary node (the target included)."""
    if problem.redundant and rng.random() < config.redundant_attempt:
        return rng.choice(problem.redundant)
    return problem.topo[rng.randint(cursor + 1, len(problem.topo) - 1)]
