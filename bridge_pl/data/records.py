"""Dataset rows: a problem becomes one row (or `copies` rows) of question, answer and provenance.

Columns, in the order they are written (the first four are the official iGSM-reasoning ones):

| column | meaning |
|---|---|
| `query` | the question text |
| `response` | the answer text (`<think> ... </think>\\n<answer> ... \\boxed{V} ... </answer>`) |
| `num_ops` | the problem's operation count |
| `final_answer` | the ground-truth answer (int) |
| `seed`, `index` | the problem's stream and its position in it (null for problems read from text) |
| `split` | the preset split name, or null |
| `style` | how the answer is written: "plain", "no-cot", "bridge:full", "pp-aug", "rc-aug", ... |
| `copy` | 0 for the original row, 1.. for augmented copies of the same problem |
| `behaviors` | counts of the injected BRIDGE behaviors, or null |
| `dag` | the problem itself (`Problem.to_dict()`) |

**Answer randomness.** The answer of (seed, index, copy) written in style `tag` draws from
``stream_rng("answer", tag, seed, index, copy)``, the problem from its own stream. So files written
in different styles from the same seed hold the same problems (the official generator does not: its
behavior draws shift the problem stream), and every row can be regenerated alone. Rows without a seed
(read from official files) are keyed by a digest of their question text instead.

**Augmentations** (paper_spec §A.7). PP-Aug keeps the answer and shuffles the premises again for each
copy; RC-Aug keeps the question and rewrites the answer along other random solution orders. Copy 0 of
both is the original row, so a PP-Aug or RC-Aug file starts with the same rows as the plain file of the
same seed. Their own shuffles draw from ``stream_rng("pp-aug" | "rc-aug", seed, index)``.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

from bridge_pl.augment.baselines import permute_premises, reorder_solution
from bridge_pl.augment.bridge import PRESETS, BehaviorConfig, render_bridge_answer
from bridge_pl.task.base import Task, get_task
from bridge_pl.task.generator import stream_rng

__all__ = [
    "AUGMENTATIONS",
    "COLUMNS",
    "METHODS",
    "OFFICIAL_COLUMNS",
    "AnswerStyle",
    "AugmentResult",
    "RowFailure",
    "answer_rng",
    "augment_rows",
    "augmented_tag",
    "generate_rows",
    "make_row",
    "problem_rows",
    "row_problem",
]

StyleKind = Literal["no-cot", "plain", "bridge"]
Augmentation = Literal["pp-aug", "rc-aug"]
Method = Literal["bridge", "pp-aug", "rc-aug", "plain", "no-cot"]
STYLE_KINDS: tuple[str, ...] = get_args(StyleKind)
AUGMENTATIONS: tuple[str, ...] = get_args(Augmentation)
METHODS: tuple[str, ...] = get_args(Method)

OFFICIAL_COLUMNS = ("query", "response", "num_ops", "final_answer")
COLUMNS = (*OFFICIAL_COLUMNS, "seed", "index", "split", "style", "copy", "behaviors", "dag")


@dataclass(frozen=True)
class AnswerStyle:
    """How answers are written.

    Attributes:
        kind: "plain" (vanilla chain of thought), "no-cot" (the terse reference answer of the RL files)
            or "bridge" (chain of thought with injected behaviors).
        behaviors: The behaviors of a "bridge" answer (default: the paper's full BRIDGE); None otherwise.
    """

    kind: StyleKind = "plain"
    behaviors: BehaviorConfig | None = None

    def __post_init__(self) -> None:
        if self.kind not in STYLE_KINDS:
            raise ValueError(f"answer style {self.kind!r}: choose one of {', '.join(STYLE_KINDS)}")
        if self.kind == "bridge" and self.behaviors is None:
            object.__setattr__(self, "behaviors", BehaviorConfig())
        elif self.kind != "bridge" and self.behaviors is not None:
            raise ValueError(f"behavior settings only apply to the bridge style, not {self.kind!r}; use --style bridge")

    @property
    def tag(self) -> str:
        """The style's name in the `style` column and in the answer's random stream, e.g. "bridge:full"."""
        if self.kind != "bridge":
            return self.kind
        for name, preset in PRESETS.items():
            if preset == self.behaviors:
                return f"bridge:{name}"
        return "bridge:" + ",".join(f"{key}={value}" for key, value in self.behaviors.to_dict().items())

    @classmethod
    def from_tag(cls, tag: str) -> AnswerStyle:
        """The style named by `tag` ("plain", "no-cot", "bridge:full", "bridge:exploration=0.2,...")."""
        kind, _, detail = tag.partition(":")
        if kind != "bridge" and detail:
            raise ValueError(f"unknown answer style {tag!r}: only bridge styles take settings after ':'")
        if kind != "bridge" or not detail:
            return cls(kind)  # type: ignore[arg-type]
        if detail in PRESETS:
            return cls("bridge", PRESETS[detail])
        try:
            values = dict(part.split("=", 1) for part in detail.split(","))
            return cls("bridge", BehaviorConfig(**_behavior_values(values)))
        except (TypeError, ValueError) as err:
            raise ValueError(f"unknown answer style {tag!r}: {err}") from err

    def render(self, problem: Any, rng: random.Random, task: Task | None = None) -> tuple[str, dict[str, int] | None]:
        """The answer text in `task`'s wording (default iGSM) and, for BRIDGE, the counts of what was injected."""
        task = get_task(task)
        if self.kind == "plain":
            return task.plain_cot(problem, rng), None
        if self.kind == "no-cot":
            return task.no_cot(problem, rng), None
        text, stats = render_bridge_answer(problem, rng, self.behaviors, make_writer=task.step_writer)
        return text, asdict(stats)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (kind, tag, behaviors)."""
        return {"kind": self.kind, "tag": self.tag, "behaviors": self.behaviors.to_dict() if self.behaviors else None}


def _behavior_values(values: dict[str, str]) -> dict[str, Any]:
    """Typed `BehaviorConfig` fields from the strings of a custom style tag."""
    typed: dict[str, Any] = {}
    for key, value in values.items():
        if key == "subgoal":
            typed[key] = value == "True"
        elif key == "analysis_level":
            typed[key] = int(value)
        else:
            typed[key] = float(value)
    return typed


def augmented_tag(augmentation: str, style_tag: str) -> str:
    """The `style` column of augmented rows: "pp-aug" over plain answers, else e.g. "pp-aug+bridge:full"."""
    return augmentation if style_tag == "plain" else f"{augmentation}+{style_tag}"


def answer_rng(style_tag: str, seed: object, index: object, copy: int = 0) -> random.Random:
    """The random stream of the answer to problem (seed, index), copy `copy`, written in style `style_tag`."""
    return stream_rng("answer", style_tag, seed, index, copy)


def _stream_id(problem: Any, query: str | None = None, task: Task | None = None) -> tuple[object, object]:
    """(seed, index) naming a problem's answer streams; problems read from text use a digest of their question."""
    if problem.seed is not None and problem.index is not None:
        return problem.seed, problem.index
    text = get_task(task).question(problem) if query is None else query
    return "text", hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def make_row(
    problem: Any,
    response: str,
    *,
    style: str,
    split: str | None = None,
    copy: int = 0,
    behaviors: dict[str, int] | None = None,
    query: str | None = None,
    task: Task | None = None,
) -> dict[str, Any]:
    """One dataset row (every column of `COLUMNS`, in order); the query defaults to the rendered question."""
    task = get_task(task)
    return {
        "query": task.question(problem) if query is None else query,
        "response": response,
        "num_ops": task.num_ops(problem),
        "final_answer": task.ground_truth(problem),
        "seed": problem.seed,
        "index": problem.index,
        "split": split,
        "style": style,
        "copy": copy,
        "behaviors": behaviors,
        "dag": task.problem_to_dict(problem),
    }


def problem_rows(
    problem: Any,
    style: AnswerStyle,
    *,
    split: str | None = None,
    augmentation: Augmentation | None = None,
    copies: int = 4,
    task: Task | None = None,
) -> list[dict[str, Any]]:
    """The rows of one problem: one row, or `copies` rows (the original first) with an augmentation.

    Args:
        problem: The problem (its `seed` and `index` name the answer's random stream).
        style: How the answers are written.
        split: Value of the `split` column.
        augmentation: None, "pp-aug" (same answer, premises shuffled) or "rc-aug" (same question, other
            solution orders).
        copies: Rows per problem with an augmentation, the original included; unused without one.
        task: The problem's task (default iGSM).

    Returns:
        The rows, copy 0 first.
    """
    task = get_task(task)
    seed, index = _stream_id(problem, task=task)
    if augmentation is None:
        text, behaviors = style.render(problem, answer_rng(style.tag, seed, index), task)
        return [make_row(problem, text, style=style.tag, split=split, behaviors=behaviors, task=task)]
    variants = _variants(problem, augmentation, copies, seed, index)
    tag = augmented_tag(augmentation, style.tag)
    rows = []
    for copy, variant in enumerate(variants):
        # PP-Aug: every copy shares the original answer (copy 0's stream); RC-Aug: each order has its own.
        answer_source = problem if augmentation == "pp-aug" else variant
        answer_copy = 0 if augmentation == "pp-aug" else copy
        text, behaviors = style.render(answer_source, answer_rng(style.tag, seed, index, answer_copy), task)
        rows.append(make_row(variant, text, style=tag, split=split, copy=copy, behaviors=behaviors, task=task))
    return rows


def _variants(problem: Any, augmentation: str, copies: int, seed: object, index: object) -> list[Any]:
    """The problem and its `copies - 1` augmented variants (premise orders or solution orders)."""
    if augmentation not in AUGMENTATIONS:
        raise ValueError(f"augmentation {augmentation!r}: choose one of {', '.join(AUGMENTATIONS)}")
    if copies < 1:
        raise ValueError(f"copies={copies}: need at least 1 (the original row); pass --copies 1 or more")
    rng = stream_rng(augmentation, seed, index)
    if augmentation == "pp-aug":
        return permute_premises(problem, rng, copies)
    return reorder_solution(problem, rng, copies)


def generate_rows(
    config: Any,
    seed: int,
    count: int,
    style: AnswerStyle,
    *,
    start: int = 0,
    split: str | None = None,
    augmentation: Augmentation | None = None,
    copies: int = 4,
    task: Task | None = None,
) -> Iterator[dict[str, Any]]:
    """Rows of problems `start`, ..., `start + count - 1` of `task`'s stream `seed` (see `problem_rows`)."""
    task = get_task(task)
    for problem in task.iter_problems(config, seed, count, start):
        yield from problem_rows(problem, style, split=split, augmentation=augmentation, copies=copies, task=task)


# ------------------------------------------------------------------------------------------------ rewriting
@dataclass(frozen=True)
class RowFailure:
    """An input row that could not be rewritten.

    Attributes:
        row: 0-based position of the row in the input (the `--index` of `bridge data show`).
        reason: Why, in words.
        query: The row's question text, to find it again.
    """

    row: int
    reason: str
    query: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (one line of failures.jsonl)."""
        return {"row": self.row, "reason": self.reason, "query": self.query}


@dataclass
class AugmentResult:
    """What `augment_rows` produced.

    Attributes:
        rows: The rewritten rows, in input order (several per input row for PP-Aug / RC-Aug).
        failures: The input rows that could not be rewritten, with the reason.
        rewritten: How many input rows were rewritten.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    failures: list[RowFailure] = field(default_factory=list)
    rewritten: int = 0


def row_problem(row: dict[str, Any], *, modulus: int | None = None, task: Task | None = None) -> Any:
    """The problem of a row: its `dag` column when present, else rebuilt from `query` and `response`.

    Raises:
        ValueError: The row has no question, its DAG or text cannot be read (`ExtractionError`,
            `ProblemError`), or its `final_answer` / `num_ops` disagree with the problem.
    """
    task = get_task(task)
    dag = row.get("dag")
    if dag:
        problem = task.problem_from_dict(json.loads(dag) if isinstance(dag, str) else dag)
    else:
        query = row.get("query")
        if not isinstance(query, str) or not query.strip():
            raise ValueError("the row has no question text in its query column")
        problem = task.problem_from_text(query, row.get("response"), modulus=modulus)
        if problem.seed is None and row.get("seed") is not None and row.get("index") is not None:
            problem.seed, problem.index = row["seed"], row["index"]
    _check_labels(row, problem, task)
    return problem


def _check_labels(row: dict[str, Any], problem: Any, task: Task) -> None:
    """Refuse a row whose stored answer or op count disagrees with its problem (a wrong label stays wrong)."""
    final_answer, truth = row.get("final_answer"), task.ground_truth(problem)
    if final_answer is not None and str(final_answer) != str(truth):
        raise ValueError(f"final_answer is {final_answer} but the problem's equations give {truth}")
    num_ops, ops = row.get("num_ops"), task.num_ops(problem)
    if num_ops is not None and str(num_ops) != str(ops):
        raise ValueError(f"num_ops is {num_ops} but the problem has {ops} operations")


def augment_rows(
    rows: Iterable[dict[str, Any]],
    method: Method,
    *,
    behaviors: BehaviorConfig | None = None,
    copies: int = 4,
    modulus: int | None = None,
    task: Task | None = None,
) -> AugmentResult:
    """Rewrite existing rows (ours or official ones): new answers, or PP-Aug / RC-Aug copies.

    Each row's problem comes from its `dag` column, else from `extract_problem(query, response)`. The
    question text is kept as it is (PP-Aug copies 1.. are re-rendered). Rows that fail are reported in
    `AugmentResult.failures` with their position and the reason; none is dropped silently.

    Args:
        rows: Input rows with at least `query` (and `response` for PP-Aug / RC-Aug, which keep it).
        method: "bridge", "plain", "no-cot" (new answers), "pp-aug" or "rc-aug" (`copies` rows each).
        behaviors: The behaviors of "bridge" (default: the paper's full BRIDGE).
        copies: Rows per input row for PP-Aug / RC-Aug, the original included.
        modulus: The arithmetic modulus of text-only rows (None: plain integers, as the paper).
        task: The rows' task (default iGSM).

    Returns:
        The rewritten rows, the failures and the number of rewritten input rows.
    """
    if method not in METHODS:
        raise ValueError(f"method {method!r}: choose one of {', '.join(METHODS)}")
    if behaviors is not None and method != "bridge":
        raise ValueError(f"behavior settings only apply to --method bridge, not {method!r}")
    if method in AUGMENTATIONS and copies < 1:
        raise ValueError(f"copies={copies}: need at least 1 (the original row); pass --copies 1 or more")
    result, task = AugmentResult(), get_task(task)
    for number, row in enumerate(rows):
        try:
            problem = row_problem(row, modulus=modulus, task=task)
            new_rows = _rewrite(row, problem, method, behaviors, copies, task)
        except ValueError as err:  # ExtractionError and ProblemError are ValueErrors: the row's own fault
            result.failures.append(RowFailure(number, str(err), row.get("query")))
            continue
        result.rows.extend(new_rows)
        result.rewritten += 1
    return result


def _base_style(tag: str | None) -> AnswerStyle:
    """The answer style an input row was written in ("pp-aug+bridge:full" -> bridge:full); plain if unknown."""
    if tag is None:
        return AnswerStyle()
    head, plus, rest = tag.partition("+")
    if head in AUGMENTATIONS:
        tag = rest if plus else "plain"
    try:
        return AnswerStyle.from_tag(tag)
    except ValueError:
        return AnswerStyle()


def _rewrite(
    row: dict[str, Any], problem: Any, method: str, behaviors: BehaviorConfig | None, copies: int, task: Task
) -> list[dict[str, Any]]:
    """The new rows of one input row."""
    query, split = row["query"], row.get("split")
    seed, index = _stream_id(problem, query, task)
    if method not in AUGMENTATIONS:
        style = AnswerStyle(method, behaviors if method == "bridge" else None)  # type: ignore[arg-type]
        text, counts = style.render(problem, answer_rng(style.tag, seed, index), task)
        return [make_row(problem, text, style=style.tag, split=split, behaviors=counts, query=query, task=task)]
    response = row.get("response")
    if not isinstance(response, str) or not response:
        raise ValueError(f"{method} keeps the original answer, but the row has no response")
    base = _base_style(row.get("style"))
    tag = augmented_tag(method, base.tag)
    variants = _variants(problem, method, copies, seed, index)
    keep = row.get("behaviors")
    out = [make_row(problem, response, style=tag, split=split, behaviors=keep, query=query, task=task)]
    for copy, variant in enumerate(variants[1:], start=1):
        if method == "pp-aug":
            text, counts = response, row.get("behaviors")
        else:
            text, counts = base.render(variant, answer_rng(base.tag, seed, index, copy), task)
        out.append(make_row(variant, text, style=tag, split=split, copy=copy, behaviors=counts, task=task))
    return out
