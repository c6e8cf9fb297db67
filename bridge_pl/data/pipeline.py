"""Dataset pipelines: generate, augment, verify and describe datasets (pure Python, no torch).

The functions behind `bridge data ...`, callable as they are by the benchmarks and the experiment runner:

    plan = generation_plan(split="tiny_sft", size=300, style="bridge")
    generate_dataset("data/tiny_sft", plan, workers=4)      # byte-identical for any number of workers
    augment_dataset("official/SFT", "data/sft_bridge", "bridge", behaviors="exploration")
    verify_dataset("data/tiny_sft").failures                 # [] when every answer checks out

Errors are ValueErrors that list every problem at once. Like the other data layers they name the settings
as the `bridge data` flags do: `--min-op` is `generator_overrides["min_op"]`, `--augment` is `augmentation`,
`--behaviors` is `behaviors` and `--exploration` is `behavior_overrides["exploration"]`.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from bridge_pl.augment.bridge import BehaviorConfig, Preset, behavior_preset
from bridge_pl.data.io import (
    CONFIG_FILE,
    DATA_FILES,
    FAILURES_FILE,
    Format,
    dataset_task,
    iter_dataset,
    prepare_output_dir,
    read_dataset,
    read_dataset_config,
    staged_output,
    write_dataset,
    write_dataset_files,
    write_failures,
)
from bridge_pl.data.records import (
    AUGMENTATIONS,
    AnswerStyle,
    Augmentation,
    AugmentResult,
    Method,
    RowFailure,
    StyleKind,
    augment_rows,
    generate_rows,
    row_problem,
)
from bridge_pl.data.stats import dataset_stats
from bridge_pl.task.base import DEFAULT_TASK, Task, get_task
from bridge_pl.task.generator import GenerationError

__all__ = [
    "AugmentReport",
    "GenerationPlan",
    "Progress",
    "VerifyReport",
    "augment_dataset",
    "describe_dataset",
    "generate_dataset",
    "generation_plan",
    "plan_rows",
    "read_row",
    "rows_chunk",
    "verify_dataset",
]

Progress = Callable[[int, int], None]
"""Called as `progress(done, total)` after each piece of work: items just finished, items in all."""

PathLike = str | os.PathLike


# ------------------------------------------------------------------------------------------------ generate
@dataclass(frozen=True)
class GenerationPlan:
    """Everything that determines a generated dataset (and nothing that does not, e.g. the worker count)."""

    generator: Any
    seed: int
    size: int
    split: str | None
    style: AnswerStyle
    augmentation: Augmentation | None
    copies: int
    task: str = DEFAULT_TASK
    """The task's registry name (`bridge_pl.task.base.get_task`)."""

    def config(self) -> dict[str, Any]:
        """The dataset_config.json entries of this plan (``task`` only for another task than the default)."""
        named = {} if self.task == DEFAULT_TASK else {"task": self.task}  # iGSM configs stay byte-identical
        return {
            **named,
            "command": "generate",
            "split": self.split,
            "seed": self.seed,
            "size": self.size,
            "style": self.style.tag,
            "answer_style": self.style.to_dict(),
            "augmentation": self.augmentation,
            "copies": self.copies if self.augmentation else 1,
            "generator": self.generator.to_dict(),
        }


def generation_plan(
    *,
    split: str | None = None,
    size: int | None = None,
    seed: int | None = None,
    style: StyleKind | None = None,
    augmentation: Augmentation | None = None,
    copies: int | None = None,
    behaviors: Preset | None = None,
    generator_overrides: Mapping[str, Any] | None = None,
    behavior_overrides: Mapping[str, Any] | None = None,
    task: str | Task | None = None,
) -> GenerationPlan:
    """The plan of a dataset: a split preset (or the defaults) with overrides; a ValueError lists every problem.

    Args:
        split: A preset of the task's splits (iGSM: `bridge_pl.task.presets.SPLITS`): seed, size, difficulty
            and answer style.
        size: Number of problems (rows are `copies` times more with an augmentation); required without `split`.
        seed: Seed of the problem stream (default: the split's, else 0).
        style: "plain", "no-cot" or "bridge" (default: the split's; behaviors imply "bridge").
        augmentation: "pp-aug" or "rc-aug": `copies` rows per problem.
        copies: Rows per problem with an augmentation, the original included (default 4).
        behaviors: BRIDGE behavior preset ("vanilla", "exploration", "exploitation", "full"; default "full").
        generator_overrides: `GeneratorConfig` fields replacing the split's, e.g. {"min_op": 10}.
        behavior_overrides: `BehaviorConfig` fields replacing the preset's, e.g. {"exploration": 0.3}.
        task: The task (registry name or Task; default iGSM).
    """
    task = get_task(task)
    splits = task.splits()
    if split and split not in splits:
        raise ValueError(f"unknown split {split!r} for task {task.name}; choose one of {', '.join(splits)}")
    preset = splits[split] if split else None
    errors = []
    size = size if size is not None else (preset.size if preset else None)
    if size is None:
        errors.append("--size is required without --split (e.g. --size 2000)")
    elif size < 1:
        errors.append(f"--size {size}: need at least 1 problem")
    errors.extend(_copies_errors(copies, augmentation))
    generator = None
    try:
        generator = _replaced(preset.generator if preset else task.default_config(), generator_overrides)
    except ValueError as err:
        errors.extend(_error_lines(_flag_words(str(err), task.config_type)))
    default_style = "plain" if preset is None or preset.cot else "no-cot"
    try:
        answer_style = _answer_style(style, default_style, behaviors, behavior_overrides)
    except ValueError as err:
        errors.append(str(err))
    if errors:
        raise ValueError("invalid options:\n  " + "\n  ".join(errors))
    seed = seed if seed is not None else (preset.seed if preset else 0)
    copies = 4 if copies is None else copies
    return GenerationPlan(generator, seed, size, split, answer_style, augmentation, copies, task.name)


def generate_dataset(
    out: PathLike,
    plan: GenerationPlan,
    *,
    workers: int = 1,
    fmt: Format = "jsonl",
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write the rows of `plan` as the dataset directory `out`; returns its dataset_config.json entries."""
    if workers < 1:
        raise ValueError(f"invalid options:\n  --workers {workers}: need at least 1")
    prepare_output_dir(out, overwrite)  # refuse before spending minutes on generation
    rows = plan_rows(plan, workers=workers, progress=progress)
    try:  # staged: a failure leaves `out` as it was (not created, or the old dataset byte-identical)
        return write_dataset(out, rows, config=plan.config(), fmt=fmt, overwrite=overwrite)
    except GenerationError as err:
        raise GenerationError(_knob_flags(str(err), get_task(plan.task).config_type)) from err


def rows_chunk(plan: GenerationPlan, start: int, count: int) -> list[dict[str, Any]]:
    """The rows of problems `start` .. `start + count - 1` of a plan (one worker task)."""
    rows = generate_rows(
        plan.generator,
        plan.seed,
        count,
        plan.style,
        start=start,
        split=plan.split,
        augmentation=plan.augmentation,
        copies=plan.copies,
        task=plan.task,
    )
    return list(rows)


def plan_rows(plan: GenerationPlan, *, workers: int = 1, progress: Progress | None = None) -> Iterator[dict[str, Any]]:
    """All rows of a plan, in problem order; with workers > 1 chunks of problems run in processes.

    Every row depends only on (seed, index, copy), so the rows are the same for any number of workers.
    `progress` counts problems.
    """
    per_chunk = max(1, min(200, -(-plan.size // (workers * 8)))) if workers > 1 else 25
    chunks = [(start, min(per_chunk, plan.size - start)) for start in range(0, plan.size, per_chunk)]
    if workers == 1:
        yield from _progressed(chunks, (rows_chunk(plan, s, c) for s, c in chunks), progress, plan.size)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the parent may hold threads (tqdm's monitor), which fork does not copy safely.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        results = pool.map(rows_chunk, [plan] * len(chunks), *zip(*chunks, strict=True))
        yield from _progressed(chunks, results, progress, plan.size)
    finally:
        pool.shutdown(cancel_futures=True)


def _progressed(
    chunks: list[tuple[int, int]], results: Iterable[list[dict]], progress: Progress | None, total: int
) -> Iterator[dict[str, Any]]:
    for (_, count), rows in zip(chunks, results, strict=True):
        yield from rows
        if progress is not None:
            progress(count, total)


def _replaced(config: Any, overrides: Mapping[str, Any] | None) -> Any:
    """`config` with some fields replaced; an unknown field name is a ValueError listing the known ones."""
    names = [f.name for f in fields(config)]
    unknown = [key for key in overrides or {} if key not in names]
    if unknown:
        raise ValueError(f"unknown {type(config).__name__} fields {unknown}; choose from {', '.join(names)}")
    return replace(config, **(overrides or {}))


def _copies_errors(copies: int | None, augmentation: str | None) -> list[str]:
    """What is wrong with `copies`: it only applies to an augmentation and counts at least the original row."""
    if copies is None:
        return []
    if augmentation not in AUGMENTATIONS:
        return ["--copies only applies to pp-aug / rc-aug (--augment for generate, --method for augment)"]
    if copies < 1:
        return [f"--copies {copies}: need at least 1 (the original row)"]
    return []


def _answer_style(
    kind: str | None, default: str, behaviors: str | None, overrides: Mapping[str, Any] | None
) -> AnswerStyle:
    """The answer style of `kind` with BRIDGE behaviors (a preset and field overrides imply bridge)."""
    given = [_flag(name) for name in (["behaviors"] if behaviors is not None else []) + list(overrides or {})]
    if not given:
        return AnswerStyle(kind or default)
    if kind not in (None, "bridge"):
        raise ValueError(f"behavior flags ({', '.join(given)}) only apply to bridge answers; drop them or use bridge")
    try:
        return AnswerStyle("bridge", _replaced(behavior_preset(behaviors or "full"), overrides))
    except ValueError as err:
        raise ValueError(_flag_words(str(err))) from err


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _flag_words(message: str, generator: type | None = None) -> str:
    """A config error in the words of the flags: "min_op=25" -> "--min-op=25" (`generator`: the task's config)."""
    configs = (generator or get_task().config_type, BehaviorConfig)
    names = [f.name for config in configs for f in fields(config)]
    return re.sub(rf"(?<![\w-])({'|'.join(names)})=", lambda match: _flag(match[1]) + "=", message)


def _knob_flags(message: str, generator: type) -> str:
    """A generator hint in the words of the flags: "raise max_attempts" -> "raise --max-attempts"."""
    message = re.sub(r"(?<![\w-])min_op\.\.max_op(?![\w-])", "--min-op/--max-op", _flag_words(message, generator))
    names = [f.name for f in fields(generator)]
    return re.sub(rf"(?<![\w-])({'|'.join(names)})(?![\w=-])", lambda match: _flag(match[1]), message)


def _error_lines(message: str) -> list[str]:
    """The items of a multi-line config error ("invalid ...:\n  a\n  b" -> ["a", "b"])."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[1:] if len(lines) > 1 and lines[0].endswith(":") else lines


# ------------------------------------------------------------------------------------------------ augment
@dataclass(frozen=True)
class AugmentReport:
    """What `augment_dataset` did.

    Attributes:
        rows: Input rows read.
        rewritten: Input rows rewritten (the others are in `failures`).
        failures: The input rows that could not be rewritten, with the reason.
        written: The dataset_config.json entries as written, None when no row was rewritten.
        failures_file: The failures.jsonl written next to the dataset, None without failures.
    """

    rows: int
    rewritten: int
    failures: list[RowFailure]
    written: dict[str, Any] | None
    failures_file: Path | None


def augment_dataset(
    input: PathLike,
    out: PathLike,
    method: Method,
    *,
    behaviors: Preset | None = None,
    behavior_overrides: Mapping[str, Any] | None = None,
    copies: int | None = None,
    modulus: int | None = None,
    fmt: Format = "jsonl",
    overwrite: bool = False,
    progress: Progress | None = None,
    task: str | Task | None = None,
) -> AugmentReport:
    """Rewrite the dataset `input` (ours or the official files) with `method` into `out`, failures listed apart.

    Args:
        input: Dataset directory or file.
        out: Output dataset directory (failures.jsonl is written there too).
        method: "bridge", "plain", "no-cot" (new answers) or "pp-aug", "rc-aug" (`copies` rows per input row).
        behaviors: BRIDGE behavior preset of "bridge" (default "full").
        behavior_overrides: `BehaviorConfig` fields replacing the preset's, e.g. {"exploration": 0.3}.
        copies: Rows per input row for pp-aug / rc-aug, the original included (default 4).
        modulus: Arithmetic modulus of text-only rows (default: the one in the input's config, else none).
        fmt: "jsonl" or "parquet".
        overwrite: Replace an existing dataset in `out`.
        progress: Called as input rows are rewritten.
        task: The input's task (default: the one its dataset_config.json names, else iGSM); a different one
            than the config names is refused.
    """
    style = _augment_style(Path(input), Path(out), method, behaviors, behavior_overrides)
    copies_errors = _copies_errors(copies, method)
    if copies_errors:
        raise ValueError(copies_errors[0])
    copies = 4 if copies is None else copies
    prepare_output_dir(out, overwrite)
    source_config = read_dataset_config(input)
    task = dataset_task(input, task, source_config)
    modulus = modulus if modulus is not None else _config_modulus(source_config)
    rows = read_dataset(input, required=("query", "response") if method in AUGMENTATIONS else ("query",))
    counted = _counted(rows, progress)
    behaviors = style.behaviors if style else None
    result = augment_rows(counted, method, behaviors=behaviors, copies=copies, modulus=modulus, task=task)
    config = {
        **({} if task.name == DEFAULT_TASK else {"task": task.name}),
        "command": "augment",
        "method": method,
        "style": style.tag if style else method,
        "answer_style": style.to_dict() if style else None,
        "copies": copies if method in AUGMENTATIONS else 1,
        "modulus": modulus,
        "source": {"path": str(input), "rows": len(rows), "config": source_config},
        "failures": len(result.failures),
    }
    written, failures_file = _write_augmented(Path(out), result, config, fmt, overwrite)
    return AugmentReport(len(rows), result.rewritten, result.failures, written, failures_file)


def _write_augmented(
    out: Path, result: AugmentResult, config: dict[str, Any], fmt: Format, overwrite: bool
) -> tuple[dict[str, Any] | None, Path | None]:
    """Swap the rewritten rows and failures.jsonl into `out` together; a run that rewrote nothing replaces nothing.

    Returns the dataset_config.json entries (None without rows) and the failures file (None without failures,
    and None when nothing was rewritten and `out` still holds an earlier dataset, which is left untouched).
    """
    if not result.rows and any((out / name).is_file() for name in (CONFIG_FILE, *DATA_FILES.values())):
        return None, None
    written = None
    with staged_output(out, overwrite) as stage:
        if result.rows:
            written = write_dataset_files(stage, result.rows, config=config, fmt=fmt)
        if result.failures:
            write_failures(stage, result.failures)
    return written, out / FAILURES_FILE if result.failures else None


def _augment_style(
    input: Path, out: Path, method: str, behaviors: str | None, overrides: Mapping[str, Any] | None
) -> AnswerStyle | None:
    """The answer style of a rewriting method (None for pp-aug / rc-aug), after checking the arguments."""
    if method in AUGMENTATIONS and (behaviors is not None or overrides):
        raise ValueError(f"behavior flags only apply to --method bridge, not --method {method}")
    if out.resolve() in (input.resolve(), input.resolve().parent):
        raise ValueError(f"--out {out} would overwrite the input {input}; choose another --out directory")
    return None if method in AUGMENTATIONS else _answer_style(method, method, behaviors, overrides)


def _counted(rows: list[dict], progress: Progress | None) -> Iterator[dict]:
    for row in rows:
        yield row
        if progress is not None:
            progress(1, len(rows))


def _config_modulus(config: dict | None) -> int | None:
    """The modulus recorded in one of our dataset configs (None for official configs and plain integers)."""
    generator = (config or {}).get("generator")
    return generator.get("modulus") if isinstance(generator, dict) else None


# ------------------------------------------------------------------------------------------------ verify, stats, rows
@dataclass(frozen=True)
class VerifyReport:
    """What `verify_dataset` found.

    Attributes:
        rows: Rows checked.
        reward_mean: Mean strict-match reward of the responses against `final_answer`.
        failures: (0-based row number, errors) of every row whose answer is wrong or fails the CoT checker.
    """

    rows: int
    reward_mean: float
    failures: list[tuple[int, list[str]]]
    notes: list[tuple[int, str]] = field(default_factory=list)
    """(0-based row number, why) of every text-only row whose question could not be re-parsed to recheck its answer."""
    modulus_hint: str | None = None
    """Without a known modulus: why the failures look like arithmetic modulo a number, and which --modulus to pass."""


def verify_dataset(path: PathLike, *, modulus: int | None = None, task: str | Task | None = None) -> VerifyReport:
    """Check every answer of a dataset: the task's judge against final_answer and its CoT checker.

    The modulus is `modulus`, else the dataset config's, else each row's own `dag` (plain integers without one).
    The task is the one the dataset's config names (`task`, when given, must agree).
    """
    config = read_dataset_config(path)
    task = dataset_task(path, task, config)
    modulus = modulus if modulus is not None else _config_modulus(config)
    rows = rewards = 0
    failures: list[tuple[int, list[str]]] = []
    notes: list[tuple[int, str]] = []
    unknown_modulus: list[dict[str, Any]] = []  # failed rows checked as plain integers, for the hint
    for number, row in enumerate(iter_dataset(path, required=("query", "response", "final_answer"))):
        rows += 1
        reward = float(task.is_correct(row["response"], row["final_answer"]))
        rewards += reward
        row_modulus = modulus if modulus is not None else _dag_modulus(row)
        errors = task.check_answer(row["query"], row["response"], row["final_answer"], modulus=row_modulus)
        question_error = _question_answer_error(row, row_modulus, notes, number, task)
        if question_error:
            errors.append(question_error)
        if reward < 1 and not errors:
            errors.append(f"the boxed answer does not match final_answer {row['final_answer']}")
        if errors:
            failures.append((number, errors))
            if row_modulus is None and len(unknown_modulus) < MODULUS_HINT_ROWS:
                unknown_modulus.append({"row": row, "errors": errors})
    hint = _modulus_hint(unknown_modulus, task) if unknown_modulus else None
    return VerifyReport(rows, rewards / rows if rows else 0.0, failures, notes, hint)


MODULUS_HINT_ROWS = 50
_LINK_MISMATCH = re.compile(r"link '[^']*' evaluates to (-?\d+), but '[^']*' gives (-?\d+)")
_WRONG_ANSWER = re.compile(r"final_answer (-?\d+) is wrong for the row's question: expected (-?\d+)")


def _dag_modulus(row: dict[str, Any]) -> int | None:
    """The modulus the row's own `dag` was generated with (None without a dag or a modulus)."""
    dag = row.get("dag")
    modulus = dag.get("modulus") if isinstance(dag, dict) else None
    return modulus if isinstance(modulus, int) and not isinstance(modulus, bool) and modulus > 0 else None


def _modulus_hint(failed: list[dict[str, Any]], task: Task) -> str | None:
    """Whether rows checked as plain integers fail as arithmetic modulo N would, and the `--modulus N` to pass.

    Each mismatch "printed a, computed b" with 0 <= a says b = a (mod N) for a modulus N > a: N divides
    the gcd of every b - a. The smallest such N is proposed when re-checking the rows with it passes.
    """
    pairs = [
        (int(a), int(b))
        for item in failed
        for error in item["errors"]
        for pattern in (_LINK_MISMATCH, _WRONG_ANSWER)
        for a, b in pattern.findall(error)
    ]
    if len(pairs) < 2 or any(a < 0 for a, _ in pairs):
        return None
    divisor = math.gcd(*(b - a for a, b in pairs))
    largest = max(a for a, _ in pairs)
    if divisor <= largest:
        return None
    candidate = _smallest_divisor_above(divisor, largest)
    passing = all(
        not task.check_answer(row["query"], row["response"], row["final_answer"], modulus=candidate)
        for row in (item["row"] for item in failed)
    )
    seen = f"every mismatch is a multiple of {divisor} and every printed number lies in 0..{largest}"
    if passing:
        return (
            f"the links look like arithmetic modulo {candidate} ({seen}); the modulus is not recorded "
            f"(no dataset_config.json, no dag): pass --modulus {candidate}"
        )
    return f"the links may hold modulo a number ({seen}); pass --modulus N if the data was generated with one"


def _smallest_divisor_above(number: int, floor: int) -> int:
    """The smallest divisor of `number` greater than `floor` (`number` itself at worst)."""
    small = [d for d in range(1, math.isqrt(number) + 1) if number % d == 0]
    return min(d for d in (*small, *(number // d for d in small)) if d > floor)


def _question_answer_error(
    row: dict[str, Any], modulus: int | None, notes: list[tuple[int, str]], number: int, task: Task
) -> str | None:
    """Why final_answer is not the answer of the row's own question (its `dag`, else its re-parsed text), or None.

    A consistently edited response and final_answer pass every other check; only the question catches them.
    A text-only row whose question cannot be re-parsed gets a note in `notes`, not a failure.
    """
    # The question alone: the response under test must not shape the problem it is checked against.
    unlabelled = {key: value for key, value in row.items() if key not in ("final_answer", "num_ops", "response")}
    try:
        problem = row_problem(unlabelled, modulus=modulus, task=task)
    except ValueError as err:
        if row.get("dag"):
            return f"cannot read the row's dag to recheck final_answer: {err}"
        notes.append((number, f"question not re-parsed, final_answer unchecked against it: {err}"))
        return None
    truth = task.ground_truth(problem)
    if str(truth) != str(row["final_answer"]):
        source = "dag" if row.get("dag") else "question"
        return f"final_answer {row['final_answer']} is wrong for the row's {source}: expected {truth}"
    return None


def describe_dataset(path: PathLike) -> dict[str, Any]:
    """The measured properties of a dataset (`bridge_pl.data.stats.dataset_stats`), JSON-ready."""
    return dataset_stats(iter_dataset(path, required=("query",)))


def read_row(path: PathLike, index: int) -> dict[str, Any]:
    """Row number `index` (0-based) of a dataset, reading a big file only up to that row."""
    if index < 0:
        raise ValueError(f"--index {index}: rows are numbered from 0")
    count = 0
    for count, row in enumerate(iter_dataset(path, required=("query",)), start=1):
        if count - 1 == index:
            return row
    raise ValueError(f"--index {index} is out of range: the dataset has {count} rows (0-{count - 1})")
