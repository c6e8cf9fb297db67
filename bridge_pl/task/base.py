"""The `Task` interface: one object per task family, and the registry that names them.

A task is everything bridge-pl needs to know about a DAG-structured reasoning benchmark, and nothing about
training: how to draw a seeded problem from its config, the question text, the solution plan (nodes with their
inputs, the necessary ones in ``topo`` with the target last, the ``redundant`` ones), answers in the plain-CoT
and no-CoT styles, the step writer that gives BRIDGE's behaviors their wording, the ground truth, a checker of
CoT answers and the rewards and correctness that judge a model's completion. The behavior *schedule* (when to
attempt early, revisit, analyse) is task-neutral and lives in `bridge_pl.augment.bridge`; PP-Aug and RC-Aug
(`bridge_pl.augment.baselines`) work on any problem with ``question_order``, ``topo`` and node ``inputs``.

    task = get_task("igsm")                      # or "dyval-arithmetic", "dyval-logic", or a class path
    problem = task.generate(task.default_config(), seed=0, index=3)
    task.question(problem), task.plain_cot(problem, rng), task.ground_truth(problem)

Tasks are chosen by name (``--task`` on the command line, ``task:`` in YAML, ``"task"`` in a dataset's
``dataset_config.json``) or by the import path of a `Task` subclass (``my_pkg.tasks.MyTask``).
"""

from __future__ import annotations

import importlib
import random
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

__all__ = ["DEFAULT_TASK", "TASK_NAMES", "Task", "TaskError", "get_task", "task_of_config"]

DEFAULT_TASK = "igsm"  # datasets without a "task" entry (all iGSM files, ours and the official ones)
# name -> "module:Class"; imported on first use so that choosing one task never loads another's code
_REGISTRY: dict[str, str] = {
    "igsm": "bridge_pl.task.igsm_task:IGSMTask",
    "dyval-arithmetic": "bridge_pl.task.dyval.task:DyValArithmeticTask",
    "dyval-logic": "bridge_pl.task.dyval.task:DyValLogicTask",
}
TASK_NAMES: tuple[str, ...] = tuple(_REGISTRY)


class TaskError(ValueError):
    """An unknown task, or data of one task given to something configured for another."""


class Task(ABC):
    """A task family (iGSM, DyVal arithmetic, DyVal logic, ...): problems, questions, answers and judging.

    Problems are the task's own objects; what the rest of bridge-pl reads of them is ``seed`` and ``index``
    (their stream), ``topo`` and ``redundant`` (the solution plan, through `bridge_pl.augment.bridge.Plan`),
    ``question_order`` and ``nodes[i].inputs`` (PP-Aug / RC-Aug), and what the methods below return.
    """

    name: ClassVar[str]
    """The registry name (``--task``)."""
    config_type: ClassVar[type]
    """The dataclass of the generator's knobs (its fields become ``bridge data generate`` flags)."""
    step_writer: ClassVar[Callable[..., Any]]
    """Builds the BRIDGE step writer: ``step_writer(problem, rng, *, subgoal, analysis_level)``."""

    # ------------------------------------------------------------------------------------------ problems
    @abstractmethod
    def default_config(self) -> Any:
        """The generator config used without a split preset."""

    @abstractmethod
    def splits(self) -> Mapping[str, Any]:
        """The task's split presets by name (`bridge_pl.task.presets.SplitPreset` with this task's config)."""

    @abstractmethod
    def generate(self, config: Any, seed: int, index: int) -> Any:
        """Problem `index` of the seeded stream `seed` (deterministic in any process)."""

    def iter_problems(self, config: Any, seed: int, count: int, start: int = 0) -> Iterator[Any]:
        """Problems `start` .. `start + count - 1` of the stream `seed`."""
        for index in range(start, start + count):
            yield self.generate(config, seed, index)

    @abstractmethod
    def problem_to_dict(self, problem: Any) -> dict[str, Any]:
        """The problem as JSON-ready data (the ``dag`` column)."""

    @abstractmethod
    def problem_from_dict(self, data: Mapping[str, Any]) -> Any:
        """The problem of a ``dag`` column, checked (a ValueError names what is inconsistent)."""

    @abstractmethod
    def problem_from_text(self, query: str, response: str | None, *, modulus: int | None = None) -> Any:
        """The problem rebuilt from a row's text (rows without a ``dag``, e.g. another tool's files)."""

    # ------------------------------------------------------------------------------------------- texts
    @abstractmethod
    def question(self, problem: Any) -> str:
        """The question text (the benchmark's public format)."""

    @abstractmethod
    def plain_cot(self, problem: Any, rng: random.Random) -> str:
        """The plain chain-of-thought answer: one step per necessary node in ``problem.topo`` order."""

    @abstractmethod
    def no_cot(self, problem: Any, rng: random.Random) -> str:
        """The terse reference answer kept beside RL prompts."""

    @abstractmethod
    def ground_truth(self, problem: Any) -> Any:
        """The ``final_answer`` column: what a correct completion boxes."""

    @abstractmethod
    def num_ops(self, problem: Any) -> int:
        """The ``num_ops`` column: the problem's operation count (the difficulty the paper reports by)."""

    # ----------------------------------------------------------------------------------------- judging
    @abstractmethod
    def check_answer(self, query: str, response: str, final_answer: Any, *, modulus: int | None = None) -> list[str]:
        """Every error of a CoT answer to `query` ([] when it is a valid solution with the right answer)."""

    @abstractmethod
    def answer_of_question(self, query: str, *, modulus: int | None = None) -> str | None:
        """The ground truth recomputed from the question text alone (None when the text cannot be read)."""

    @abstractmethod
    def is_correct(self, completion: str, truth: Any) -> bool:
        """Whether a completion's answer counts as right (accuracy, pass@k, rollout-accuracy histograms)."""

    @abstractmethod
    def default_rewards(self) -> list[Any]:
        """The GRPO rewards of the task when the config names none (`bridge_pl.task.rewards.Reward` objects)."""

    def to_dot(self, problem: Any) -> str:
        """Graphviz DOT text of the problem's DAG (`bridge data show --dot`)."""
        raise TaskError(f"the {self.name} task does not draw its problems (Task.to_dot)")

    def truth_error(self, value: Any) -> str | None:
        """Why `value` cannot be a ``final_answer`` of this task ("must be ..."), or None when it can."""
        if isinstance(value, bool | int | float) or (isinstance(value, str) and value.strip()):
            return None
        return "must be a number, a truth value or non-empty text"

    def config_from_dict(self, data: Mapping[str, Any]) -> Any:
        """The generator config of a dataset_config.json ``generator`` entry."""
        return self.config_type(**data)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_INSTANCES: dict[str, Task] = {}


def get_task(name: str | Task | None = None) -> Task:
    """The task named `name` (a registry name or the import path of a Task subclass; None: the default).

    Raises:
        TaskError: An unknown name (the known ones are listed) or a path that does not import a Task.
    """
    if isinstance(name, Task):
        return name
    name = name or DEFAULT_TASK
    if name in _INSTANCES:
        return _INSTANCES[name]
    target = _REGISTRY.get(name)
    if target is None and "." not in name:
        raise TaskError(f"unknown task {name!r}; choose one of {', '.join(TASK_NAMES)} (or a Task class path)")
    module_name, _, class_name = (target or name.replace(":", ".")).replace(":", ".").rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise TaskError(f"task {name!r}: {module_name}.{class_name} does not import ({err})") from err
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TaskError(f"task {name!r}: {module_name}.{class_name} is not a bridge_pl.task.base.Task subclass")
    _INSTANCES[name] = cls()
    return _INSTANCES[name]


def task_of_config(config: Mapping[str, Any] | None) -> Task:
    """The task a dataset_config.json was written by (the default task when it names none)."""
    return get_task((config or {}).get("task") or DEFAULT_TASK)
