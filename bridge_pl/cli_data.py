"""The `bridge data ...` subcommands: generate, augment, stats, verify, show (argparse wiring only).

The work is done by `bridge_pl.data.pipeline`; the flags of the generator and behavior knobs are derived from
`GeneratorConfig` and `BehaviorConfig` (`bridge_pl.flags.add_config_flags`), their help from the field docstrings.
Only argparse and the pure-Python layers are imported, so `bridge data ...` starts fast.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bridge_pl.flags import add_config_flags, given_fields

__all__ = ["SPLIT_NAMES", "add_data_commands"]

SPLIT_NAMES = (
    *("sft", "rl_train", "rl_val", "test_id", "test_ood"),
    *("tiny_sft", "tiny_rl_train", "tiny_rl_val", "tiny_test_id", "tiny_test_ood"),
)  # bridge_pl.task.presets.SPLITS (a test checks), listed so that importing the CLI loads no preset table
FLAG_METAVARS = {"zero_answer_drop": "P", "exploration": "P", "redundant_attempt": "P", "analysis_level": "K"}
MAX_LISTED_FAILURES = 20
DEFAULT_TASK = "igsm"  # bridge_pl.task.base.DEFAULT_TASK (a test checks)
TASK_IMPLIED = ("family",)  # config fields the task name sets (DyVal's family)


def add_data_commands(commands) -> None:
    """Add `bridge data` and its subcommands to the `bridge` parser's subcommands."""
    data = commands.add_parser("data", help="generate, augment, inspect and check datasets")
    data.set_defaults(help_parser=data)
    data_commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    _add_generate(data_commands)
    _add_augment(data_commands)
    _add_inspect(data_commands)


def _add_generate(commands) -> None:
    p = commands.add_parser(
        "generate",
        help="generate a dataset of a task (iGSM-reasoning by default, DyVal arithmetic or logic)",
        description="Generate a dataset. A --split preset sets seed, size, difficulty and answer style; "
        "explicit flags override it. Output is byte-identical for a given configuration and any --workers.",
    )
    p.add_argument("--out", required=True, type=Path, help="output dataset directory")
    _add_task_flag(p, "the task to generate")
    p.add_argument("--split", choices=SPLIT_NAMES, help="the paper's split preset (seed, size, ops, style)")
    p.add_argument("--size", type=int, help="number of problems (rows are more with --augment)")
    p.add_argument("--seed", type=int, help="seed of the problem stream (default: the split's, else 0)")
    flagged: set[str] = set()
    for config, names in _task_configs().items():  # one group per config; a field two share has one flag
        group = p.add_argument_group(f"difficulty of --task {' / '.join(names)} (override the split preset)")
        add_config_flags(group, config, metavars=FLAG_METAVARS, skip={*flagged, *TASK_IMPLIED})
        flagged |= {f.name for f in dataclasses.fields(config)}
    p.add_argument("--style", choices=("plain", "no-cot", "bridge"), help="answer style (default: the split's)")
    _add_behavior_flags(p)
    p.add_argument("--augment", choices=("pp-aug", "rc-aug"), help="PP-Aug or RC-Aug copies per problem")
    p.add_argument("--copies", type=int, help="rows per problem with --augment, the original included (default 4)")
    _add_output_flags(p)
    p.add_argument("--workers", type=int, default=1, help="processes (the output does not depend on it)")
    p.set_defaults(handler=_quiet_on_closed_stdout(_generate))


def _add_behavior_flags(p: argparse.ArgumentParser) -> None:
    from bridge_pl.augment.bridge import BehaviorConfig

    b = p.add_argument_group("BRIDGE behaviors (imply --style bridge / --method bridge)")
    b.add_argument("--behaviors", choices=("vanilla", "exploration", "exploitation", "full"), help="preset")
    add_config_flags(b, BehaviorConfig, metavars=FLAG_METAVARS)


def _add_task_flag(p: argparse.ArgumentParser, what: str, default: str | None = DEFAULT_TASK) -> None:
    from bridge_pl.task.base import TASK_NAMES

    hint = f"default: {default}" if default else "default: the one the data's dataset_config.json names"
    p.add_argument("--task", default=default, metavar="TASK", help=f"{what}: {', '.join(TASK_NAMES)} ({hint})")


def _task_configs() -> dict[type, list[str]]:
    """The tasks' generator configs, each with the names of the tasks it configures."""
    from bridge_pl.task.base import TASK_NAMES, get_task

    configs: dict[type, list[str]] = {}
    for name in TASK_NAMES:
        configs.setdefault(get_task(name).config_type, []).append(name)
    return configs


def _add_output_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=("jsonl", "parquet"), default="jsonl", help="data file format")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_augment(commands) -> None:
    p = commands.add_parser(
        "augment",
        help="rewrite an existing dataset (ours or the official files)",
        description="Rewrite each row's answer (bridge, plain, no-cot) or add PP-Aug / RC-Aug copies. Rows "
        "without a dag column are rebuilt from their text; rows that fail are listed and written to "
        "OUT/failures.jsonl.",
    )
    p.add_argument("--input", required=True, type=Path, help="dataset directory or file (ours or official)")
    p.add_argument("--out", required=True, type=Path, help="output dataset directory")
    p.add_argument("--method", required=True, choices=("bridge", "pp-aug", "rc-aug", "plain", "no-cot"))
    _add_task_flag(p, "the input's task", default=None)
    _add_behavior_flags(p)
    p.add_argument("--copies", type=int, help="rows per input row for pp-aug / rc-aug (default 4)")
    p.add_argument("--modulus", type=int, help="arithmetic modulus of text-only rows (default: none)")
    _add_output_flags(p)
    p.add_argument("--allow-failures", action="store_true", help="exit 0 even if some rows failed")
    p.set_defaults(handler=_quiet_on_closed_stdout(_augment))


def _add_inspect(commands) -> None:
    p = commands.add_parser("stats", help="print a dataset's statistics as JSON")
    p.add_argument("path", type=Path, help="dataset directory or file")
    _add_task_flag(p, "the data's task", default=None)
    p.add_argument("--out", type=Path, help="also write the JSON to this file")
    p.set_defaults(handler=_quiet_on_closed_stdout(_stats))
    p = commands.add_parser("verify", help="check every answer: reward against final_answer and the CoT checker")
    p.add_argument("path", type=Path, help="dataset directory or file")
    _add_task_flag(p, "the data's task", default=None)
    p.add_argument("--modulus", type=int, help="arithmetic modulus (default: the dataset config's, else none)")
    p.set_defaults(handler=_quiet_on_closed_stdout(_verify))
    p = commands.add_parser("show", help="print one row")
    p.add_argument("path", type=Path, help="dataset directory or file")
    _add_task_flag(p, "the data's task", default=None)
    p.add_argument("--index", type=int, default=0, help="0-based row number (default 0)")
    p.add_argument("--dot", action="store_true", help="print the problem's DAG as Graphviz DOT instead")
    p.add_argument("--modulus", type=int, help="arithmetic modulus of text-only rows (for --dot)")
    p.set_defaults(handler=_quiet_on_closed_stdout(_show))


# ------------------------------------------------------------------------------------------------ handlers
def _generate(args: argparse.Namespace) -> int:
    from bridge_pl.augment.bridge import BehaviorConfig
    from bridge_pl.data.pipeline import generate_dataset, generation_plan
    from bridge_pl.task.base import get_task

    task = get_task(args.task)
    config = task.config_type
    workers = [f"--workers {args.workers}: need at least 1"] if args.workers < 1 else []
    own = {f.name for f in dataclasses.fields(config)}
    foreign = [
        "--" + name.replace("_", "-")
        for other in _task_configs()
        for name in given_fields(args, other)
        if name not in own
    ]
    if foreign:
        workers.insert(0, f"{', '.join(dict.fromkeys(foreign))}: not a knob of --task {task.name}")
    try:
        plan = generation_plan(
            split=args.split, size=args.size, seed=args.seed, style=args.style, augmentation=args.augment,
            copies=args.copies, behaviors=args.behaviors, generator_overrides=given_fields(args, config),
            behavior_overrides=given_fields(args, BehaviorConfig), task=task,
        )  # fmt: skip
    except ValueError as err:  # one message listing every problem, --workers included
        raise ValueError("\n  ".join([str(err), *workers])) from err
    if workers:
        raise ValueError("invalid options:\n  " + workers[0])
    with _progress_bar("problems", args.quiet) as progress:
        written = generate_dataset(
            args.out, plan, workers=args.workers, fmt=args.format, overwrite=args.overwrite, progress=progress
        )
    print(
        f"wrote {written['rows']} rows ({plan.size} problems, style {written['style']}) to "
        f"{Path(args.out) / written['data_file']}\nsha256 {written['sha256']}"
    )
    return 0


def _augment(args: argparse.Namespace) -> int:
    from bridge_pl.augment.bridge import BehaviorConfig
    from bridge_pl.data.pipeline import augment_dataset

    with _progress_bar("rows", args.quiet) as progress:
        report = augment_dataset(
            args.input, args.out, args.method, behaviors=args.behaviors,
            behavior_overrides=given_fields(args, BehaviorConfig), copies=args.copies, modulus=args.modulus,
            fmt=args.format, overwrite=args.overwrite, progress=progress, task=args.task,
        )  # fmt: skip
    written = report.written
    if written:
        into = f"into {written['rows']} rows ({args.method}) -> {Path(args.out) / written['data_file']}"
        print(f"rewrote {report.rewritten} of {report.rows} rows {into}")
    else:
        print(f"rewrote 0 of {report.rows} rows ({args.method}); no dataset written")
    if not report.failures:
        return 0
    listed = [f"  row {failure.row}: {failure.reason}" for failure in report.failures]
    if report.failures_file:
        print(f"{len(report.failures)} row(s) failed (row numbers are 0-based; all in {report.failures_file}):")
        _print_listed(listed)
    else:  # nothing rewritten and --out holds an earlier dataset, left untouched: the list is only here
        print(f"{len(report.failures)} row(s) failed (row numbers are 0-based; {args.out} left as it was):")
        print("\n".join(listed))
    return 0 if args.allow_failures else 1


def _quiet_on_closed_stdout(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """`handler`, ending quietly with status 141 (as killed by SIGPIPE) when stdout is a pipe closed early.

    `bridge data stats DIR | head -1` closes the pipe while we print: Python's recipe is to flush inside the
    handler, catch BrokenPipeError and point stdout at devnull, so that the flush at exit does not fail again.
    """

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            status = handler(args)
            sys.stdout.flush()
        except BrokenPipeError:
            with contextlib.suppress(OSError, ValueError):  # no file descriptor (a test's fake stdout)
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
            return 141
        return status

    return run


@contextlib.contextmanager
def _progress_bar(unit: str, quiet: bool):
    """A `progress(done, total)` callback drawing a tqdm bar on stderr; None with --quiet or without a terminal."""
    if quiet or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    with tqdm(unit=f" {unit}", file=sys.stderr) as bar:

        def update(done: int, total: int) -> None:
            bar.total = total
            bar.update(done)

        yield update


def _print_listed(lines: list[str]) -> None:
    print("\n".join(lines[:MAX_LISTED_FAILURES]))
    if len(lines) > MAX_LISTED_FAILURES:
        print(f"  ... and {len(lines) - MAX_LISTED_FAILURES} more")


def _stats(args: argparse.Namespace) -> int:
    from bridge_pl.data.io import dataset_task
    from bridge_pl.data.pipeline import describe_dataset

    dataset_task(args.path, args.task)  # a --task other than the data's is refused, naming both
    text = json.dumps(describe_dataset(args.path), indent=2)
    if args.out:  # before printing: a closed stdout pipe must not cost the file
        try:
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(text + "\n", encoding="utf-8")
        except OSError as err:
            problem = f"cannot write the statistics ({err.strerror or err})"
            raise ValueError(f"--out {args.out}: {problem}; choose another path") from err
    print(text)
    return 0


def _verify(args: argparse.Namespace) -> int:
    from bridge_pl.data.pipeline import verify_dataset

    report = verify_dataset(args.path, modulus=args.modulus, task=args.task)
    print(f"rows: {report.rows}\nreward mean: {report.reward_mean:.4f}\nchecker failures: {len(report.failures)}")
    if report.failures:
        _print_listed([f"  row {number}: " + "; ".join(errors[:3]) for number, errors in report.failures])
    if report.notes:
        print(f"notes ({len(report.notes)} rows whose question could not be re-read, so their answer is unchecked):")
        _print_listed([f"  row {number}: {note}" for number, note in report.notes])
    if report.modulus_hint:
        print(f"hint: {report.modulus_hint}")
    return 1 if report.failures else 0


def _show(args: argparse.Namespace) -> int:
    from bridge_pl.data.io import dataset_task
    from bridge_pl.data.pipeline import read_row

    dataset_task(args.path, args.task)  # a --task other than the data's is refused, naming both
    row = read_row(args.path, args.index)
    if args.dot:
        return _show_dot(row, args.modulus, args.path, args.task)
    origin = ", ".join(f"{k} {row[k]}" for k in ("split", "style", "seed", "index", "copy") if row.get(k) is not None)
    print(f"row {args.index}" + (f" ({origin})" if origin else ""))
    print(f"num_ops: {row.get('num_ops')}    final answer: {row.get('final_answer')}")
    print(f"\nQuestion:\n{row['query']}\n\nAnswer:\n{row.get('response')}")
    return 0


def _show_dot(row: dict[str, Any], modulus: int | None, path: Path, task: str | None) -> int:
    from bridge_pl.data.io import dataset_task
    from bridge_pl.data.records import row_problem

    task = dataset_task(path, task)
    print(task.to_dot(row_problem(row, modulus=modulus, task=task)), end="")
    return 0
