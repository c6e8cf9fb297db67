"""The `bridge` command: dataset tools (`bridge data ...`), the tiny model, evaluation, and the Lightning CLI.

    bridge data generate --split sft --out data/sft                      # the paper's vanilla SFT file
    bridge data generate --split sft --style bridge --out data/sft_bridge  # same problems, BRIDGE answers
    bridge data generate --split sft --augment pp-aug --out data/sft_pp    # 4 rows per problem
    bridge data generate --split rl_train --workers 4 --out data/rl_train
    bridge data augment --input official/SFT_2K_CoT... --method bridge --out data/sft_bridge2
    bridge data stats data/sft          bridge data verify data/sft          bridge data show data/sft --index 3
    bridge model init --out runs/tiny_model
    bridge eval --model runs/grpo_tiny/hf_model --data id=data/tiny_test_id --data ood=data/tiny_test_ood
    bridge experiment run --config configs/experiments/tiny.yaml

`bridge fit|validate|test|predict ...` hand over to `bridge_pl.train_cli` when it is installed.
Only argparse and the pure-Python layers are imported here, so `bridge data ...` starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge_pl import __version__

if TYPE_CHECKING:  # imported lazily at run time: `bridge --help` needs none of them
    from bridge_pl.data.records import AnswerStyle, AugmentResult
    from bridge_pl.task.generator import GeneratorConfig

__all__ = ["build_parser", "main"]

TRAIN_COMMANDS = ("fit", "validate", "test", "predict")
SPLIT_NAMES = (
    *("sft", "rl_train", "rl_val", "test_id", "test_ood"),
    *("tiny_sft", "tiny_rl_train", "tiny_rl_val", "tiny_test_id", "tiny_test_ood"),
)  # bridge_pl.task.presets.SPLITS, listed here so that `bridge --help` imports nothing
GENERATOR_FLAGS = (
    "min_op",
    "max_op",
    "force",
    "max_instance_params",
    "max_layers",
    "max_in_degree",
    "redundant",
    "shuffle",
    "answer_bound",
    "zero_answer_drop",
    "modulus",
    "vocabulary",
)
BEHAVIOR_FLAGS = ("exploration", "redundant_attempt", "subgoal", "analysis_level")
MAX_LISTED_FAILURES = 20


def main(argv: list[str] | None = None) -> int:
    """Run the `bridge` command line; returns the exit status (0 ok, 1 failed rows/checks, 2 bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in TRAIN_COMMANDS:
        return _train(argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors: argparse has printed the message
        return exit_.code if isinstance(exit_.code, int) else 2
    if not hasattr(args, "handler"):  # "bridge" or "bridge data" alone
        getattr(args, "help_parser", parser).print_help(sys.stderr)
        return 2
    try:
        return args.handler(args)
    except Exception as err:
        if not _is_input_error(err):
            raise
        print(f"bridge: error: {err}", file=sys.stderr)
        return 2


def _is_input_error(err: Exception) -> bool:
    """Whether an error comes from the user's input (bad file, flag or config), not from a bug."""
    from bridge_pl.task.generator import GenerationError

    return isinstance(err, ValueError | GenerationError)  # DatasetError, ExtractionError, ... are ValueErrors


def _train(argv: list[str]) -> int:
    """Hand `bridge fit ...` over to the Lightning CLI, which lives in its own (heavy) module."""
    try:
        train_cli = importlib.import_module("bridge_pl.train_cli")
    except ModuleNotFoundError as err:
        if err.name not in ("bridge_pl.train_cli",):
            raise
        print(f"bridge {argv[0]}: the training CLI is not installed in this version", file=sys.stderr)
        return 2
    return train_cli.main(argv)


# ------------------------------------------------------------------------------------------------ parser
def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `bridge` (data subcommands; training commands are dispatched before it)."""
    parser = argparse.ArgumentParser(
        prog="bridge",
        description="bridge-pl: iGSM-reasoning data, BRIDGE behavior injection, SFT and GRPO.",
        epilog="Training: bridge fit|validate|test|predict --config CONFIG.yaml (LightningCLI).",
    )
    parser.add_argument("--version", action="version", version=f"bridge-pl {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    data = commands.add_parser("data", help="generate, augment, inspect and check datasets")
    data.set_defaults(help_parser=data)
    data_commands = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    _add_generate(data_commands)
    _add_augment(data_commands)
    _add_stats(data_commands)
    _add_verify(data_commands)
    _add_show(data_commands)
    _add_eval(commands)
    _add_experiment(commands)
    model = commands.add_parser("model", help="build the embedded default model (tiny, from scratch)")
    model.set_defaults(help_parser=model)
    _add_model_init(model.add_subparsers(dest="model_command", metavar="SUBCOMMAND"))
    return parser


def _add_eval(commands) -> None:
    p = commands.add_parser(
        "eval",
        help="strict-match accuracy of a model directory on prompt sets (greedy, mean@k, pass@k, per op)",
        description="Evaluate a local Hugging Face model as the paper does: greedy decoding of the chat template + "
        "'<think>' prompt, stop at </answer>, strict match of the first \\boxed{}. With --samples k also mean@k "
        "and pass@k. Writes eval.json and eval.md to --out and prints the table.",
    )
    p.add_argument("--model", required=True, type=Path, help="model directory (e.g. runs/grpo_tiny/hf_model)")
    what = "prompt set with query and final_answer (repeat for several; NAME defaults to the folder name)"
    p.add_argument("--data", required=True, action="append", metavar="[NAME=]PATH", help=what)
    p.add_argument("--engine", choices=["hf", "vllm"], default="hf", help="rollout engine (vllm needs the extra)")
    p.add_argument("--samples", type=int, default=1, help="sampled answers per question for mean@k / pass@k")
    p.add_argument("--temperature", type=float, default=1.0, help="temperature of the sampled answers")
    p.add_argument("--max-new-tokens", type=int, default=1024)
    p.add_argument("--batch-size", type=int, default=64, help="questions per generate call")
    p.add_argument("--limit", type=int, help="first N questions of each set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    p.add_argument("--out", type=Path, help="directory for eval.json and eval.md (default: <model>/eval)")
    p.set_defaults(handler=_eval)


def _eval(args: argparse.Namespace) -> int:
    datasets = {}
    for item in args.data:
        name, _, path = item.rpartition("=")
        datasets[name or Path(path).name] = path
    for name, path in datasets.items():
        if not Path(path).exists():
            raise ValueError(
                f"--data {name}={path}: no such dataset; write it with `bridge data generate --out {path}`"
            )
    if args.samples < 1 or args.max_new_tokens < 1 or args.batch_size < 1:
        raise ValueError("--samples, --max-new-tokens and --batch-size must be >= 1")
    from bridge_pl.evaluation import evaluate, markdown_table, write_report

    results = evaluate(
        str(args.model), datasets, engine=args.engine, max_new_tokens=args.max_new_tokens, samples=args.samples,
        temperature=args.temperature, batch_size=args.batch_size, limit=args.limit, seed=args.seed, dtype=args.dtype,
    )  # fmt: skip
    out = write_report(results, args.out or args.model / "eval")
    print(markdown_table(results), end="")
    print(f"written to {out}/eval.json and {out}/eval.md")
    return 0


def _add_experiment(commands) -> None:
    experiment = commands.add_parser(
        "experiment", help="run a whole comparison (data -> SFT -> eval -> probe -> GRPO -> eval) and report it"
    )
    experiment.set_defaults(help_parser=experiment)
    sub = experiment.add_subparsers(dest="experiment_command", metavar="SUBCOMMAND")
    run = sub.add_parser("run", help="run (or continue: finished stages are skipped) and write the report")
    report = sub.add_parser("report", help="rebuild report.md/json, figures and TensorBoard from finished runs")
    for p in (run, report):
        p.add_argument(
            "--config", required=True, type=Path, help="experiment YAML (e.g. configs/experiments/tiny.yaml)"
        )
    run.add_argument("--methods", help="comma-separated subset of the config's methods")
    run.add_argument("--seeds", help="comma-separated subset of the config's seeds")
    run.set_defaults(handler=_experiment_run)
    report.set_defaults(handler=_experiment_report)


def _experiment_run(args: argparse.Namespace) -> int:
    from bridge_pl.experiment import load_config, run_experiment

    config = load_config(args.config)
    methods = args.methods.split(",") if args.methods else None
    unknown = [m for m in methods or [] if m not in config.methods]
    if unknown:
        raise ValueError(f"--methods {','.join(unknown)}: not in {args.config} (methods: {', '.join(config.methods)})")
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    run_experiment(config, methods, seeds)
    print(f"report: {Path(config.out_dir) / 'report.md'}")
    print((Path(config.out_dir) / "report.md").read_text(encoding="utf-8"), end="")
    return 0


def _experiment_report(args: argparse.Namespace) -> int:
    from bridge_pl.experiment import build_report, load_config

    config = load_config(args.config)
    build_report(config)
    print((Path(config.out_dir) / "report.md").read_text(encoding="utf-8"), end="")
    return 0


def _add_model_init(commands) -> None:
    from_presets = "llama-1m, llama-3m, llama-10m, llama-30m, llama-100m, qwen2-3m, qwen2-10m"  # no torch for --help
    p = commands.add_parser(
        "init",
        help="write a from-scratch tiny model and the project tokenizer as a Hugging Face directory",
        description="Build the project tokenizer (iGSM vocabulary) and a randomly initialised causal LM, and save "
        "both with save_pretrained: the local model every config can load. Nothing is downloaded.",
    )
    p.add_argument("--out", required=True, type=Path, help="output model directory")
    p.add_argument("--preset", default="llama-3m", help=f"model size preset ({from_presets})")
    p.add_argument("--seed", type=int, default=0, help="initialisation seed")
    p.add_argument("--overwrite", action="store_true", help="replace an existing model directory")
    p.set_defaults(handler=_model_init)


def _model_init(args: argparse.Namespace) -> int:
    if args.out.exists() and any(args.out.iterdir()) and not args.overwrite:
        raise ValueError(f"{args.out} is not empty; pass --overwrite to replace the model there")
    from bridge_pl.models.model_io import TINY_PRESETS, count_parameters, init_model_dir, load_model

    if args.preset not in TINY_PRESETS:
        raise ValueError(f"--preset {args.preset!r} is unknown; choose one of {', '.join(TINY_PRESETS)}")
    path = init_model_dir(args.out, preset=args.preset, seed=args.seed)
    params = count_parameters(load_model(path))
    print(f"wrote {args.preset} ({params / 1e6:.2f}M parameters) and the project tokenizer to {path}")
    return 0


def _add_generate(commands) -> None:
    p = commands.add_parser(
        "generate",
        help="generate an iGSM-reasoning dataset",
        description="Generate a dataset. A --split preset sets seed, size, difficulty and answer style; "
        "explicit flags override it. Output is byte-identical for a given configuration and any --workers.",
    )
    p.add_argument("--out", required=True, type=Path, help="output dataset directory")
    p.add_argument("--split", choices=SPLIT_NAMES, help="the paper's split preset (seed, size, ops, style)")
    p.add_argument("--size", type=int, help="number of problems (rows are more with --augment)")
    p.add_argument("--seed", type=int, help="seed of the problem stream (default: the split's, else 0)")
    g = p.add_argument_group("difficulty (override the split preset)")
    g.add_argument("--min-op", type=int)
    g.add_argument("--max-op", type=int)
    g.add_argument("--force", action=argparse.BooleanOptionalAction, default=None, help="always use --max-op")
    g.add_argument("--max-instance-params", type=int)
    g.add_argument("--max-layers", type=int)
    g.add_argument("--max-in-degree", type=int)
    g.add_argument("--redundant", action=argparse.BooleanOptionalAction, default=None, help="distractor nodes")
    g.add_argument("--shuffle", action=argparse.BooleanOptionalAction, default=None, help="shuffle premises")
    g.add_argument("--answer-bound", type=int, help="keep problems with |answer| < this")
    g.add_argument("--zero-answer-drop", type=float, metavar="P", help="probability of rejecting a 0 answer")
    g.add_argument("--modulus", type=int, help="reduce every operation modulo M (default: none)")
    g.add_argument("--vocabulary", help="vocabulary JSON file (default: the packaged one)")
    p.add_argument("--style", choices=("plain", "no-cot", "bridge"), help="answer style (default: the split's)")
    _add_behavior_flags(p)
    p.add_argument("--augment", choices=("pp-aug", "rc-aug"), help="PP-Aug or RC-Aug copies per problem")
    p.add_argument("--copies", type=int, help="rows per problem with --augment, the original included (default 4)")
    _add_output_flags(p)
    p.add_argument("--workers", type=int, default=1, help="processes (the output does not depend on it)")
    p.set_defaults(handler=_generate)


def _add_behavior_flags(p: argparse.ArgumentParser) -> None:
    b = p.add_argument_group("BRIDGE behaviors (imply --style bridge / --method bridge)")
    b.add_argument("--behaviors", choices=("vanilla", "exploration", "exploitation", "full"), help="preset")
    b.add_argument("--exploration", type=float, metavar="P", help="premature-attempt probability per step")
    b.add_argument("--redundant-attempt", type=float, metavar="P", help="share of attempts on redundant nodes")
    b.add_argument("--subgoal", action=argparse.BooleanOptionalAction, default=None, help="one operation per link")
    b.add_argument("--analysis-level", type=int, metavar="K", help="information-analysis table 0-4")


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
    _add_behavior_flags(p)
    p.add_argument("--copies", type=int, help="rows per input row for pp-aug / rc-aug (default 4)")
    p.add_argument("--modulus", type=int, help="arithmetic modulus of text-only rows (default: none)")
    _add_output_flags(p)
    p.add_argument("--allow-failures", action="store_true", help="exit 0 even if some rows failed")
    p.set_defaults(handler=_augment)


def _add_stats(commands) -> None:
    p = commands.add_parser("stats", help="print a dataset's statistics as JSON")
    p.add_argument("path", type=Path, help="dataset directory or file")
    p.add_argument("--out", type=Path, help="also write the JSON to this file")
    p.set_defaults(handler=_stats)


def _add_verify(commands) -> None:
    p = commands.add_parser("verify", help="check every answer: reward against final_answer and the CoT checker")
    p.add_argument("path", type=Path, help="dataset directory or file")
    p.add_argument("--modulus", type=int, help="arithmetic modulus (default: the dataset config's, else none)")
    p.set_defaults(handler=_verify)


def _add_show(commands) -> None:
    p = commands.add_parser("show", help="print one row")
    p.add_argument("path", type=Path, help="dataset directory or file")
    p.add_argument("--index", type=int, default=0, help="0-based row number (default 0)")
    p.add_argument("--dot", action="store_true", help="print the problem's DAG as Graphviz DOT instead")
    p.add_argument("--modulus", type=int, help="arithmetic modulus of text-only rows (for --dot)")
    p.set_defaults(handler=_show)


# ------------------------------------------------------------------------------------------------ generate
@dataclass(frozen=True)
class GenerationPlan:
    """Everything that determines a generated dataset (and nothing that does not, e.g. --workers)."""

    generator: GeneratorConfig
    seed: int
    size: int
    split: str | None
    style: AnswerStyle
    augmentation: str | None
    copies: int

    def config(self) -> dict[str, Any]:
        """The dataset_config.json entries of this plan."""
        return {
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


def generation_plan(args: argparse.Namespace) -> GenerationPlan:
    """The plan of `bridge data generate` from its flags; a ValueError lists every problem at once."""
    from bridge_pl.task.generator import GeneratorConfig
    from bridge_pl.task.presets import split_preset

    preset = split_preset(args.split) if args.split else None
    errors = []
    size = args.size if args.size is not None else (preset.size if preset else None)
    if size is None:
        errors.append("--size is required without --split (e.g. --size 2000)")
    elif size < 1:
        errors.append(f"--size {size}: need at least 1 problem")
    if args.workers < 1:
        errors.append(f"--workers {args.workers}: need at least 1")
    try:
        copies = _copies(args, args.augment)
    except ValueError as err:
        errors.append(str(err))
    overrides = {name: getattr(args, name) for name in GENERATOR_FLAGS if getattr(args, name) is not None}
    generator = None
    try:
        generator = replace(preset.generator if preset else GeneratorConfig(), **overrides)
    except ValueError as err:
        errors.extend(_error_lines(_flag_words(str(err))))
    default_style = "plain" if preset is None or preset.cot else "no-cot"
    try:
        style = _answer_style(args, args.style, default_style)
    except ValueError as err:
        errors.append(str(err))
    if errors:
        raise ValueError("invalid options:\n  " + "\n  ".join(errors))
    seed = args.seed if args.seed is not None else (preset.seed if preset else 0)
    return GenerationPlan(generator, seed, size, args.split, style, args.augment, copies)


def _copies(args: argparse.Namespace, augmentation: str | None) -> int:
    """--copies, checked: only with an augmentation, at least 1 (default 4)."""
    if args.copies is None:
        return 4
    if augmentation not in ("pp-aug", "rc-aug"):
        raise ValueError("--copies only applies to pp-aug / rc-aug (--augment for generate, --method for augment)")
    if args.copies < 1:
        raise ValueError(f"--copies {args.copies}: need at least 1 (the original row)")
    return args.copies


def _error_lines(message: str) -> list[str]:
    """The items of a multi-line config error ("invalid ...:\n  a\n  b" -> ["a", "b"])."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return lines[1:] if len(lines) > 1 and lines[0].endswith(":") else lines


def _flag_words(message: str) -> str:
    """A config error in the words the user typed: "min_op=25" -> "--min-op=25"."""
    for name in (*GENERATOR_FLAGS, *BEHAVIOR_FLAGS):
        message = message.replace(f"{name}=", f"--{name.replace('_', '-')}=")
    return message


def _answer_style(args: argparse.Namespace, kind: str | None, default: str) -> AnswerStyle:
    """The answer style from --style / --method and the behavior flags (any behavior flag implies bridge)."""
    from bridge_pl.augment.bridge import behavior_preset
    from bridge_pl.data.records import AnswerStyle

    given = [
        f"--{name.replace('_', '-')}" for name in ("behaviors", *BEHAVIOR_FLAGS) if getattr(args, name) is not None
    ]
    if not given:
        return AnswerStyle(kind or default)
    if kind not in (None, "bridge"):
        raise ValueError(f"behavior flags ({', '.join(given)}) only apply to bridge answers; drop them or use bridge")
    overrides = {name: getattr(args, name) for name in BEHAVIOR_FLAGS if getattr(args, name) is not None}
    try:
        return AnswerStyle("bridge", replace(behavior_preset(args.behaviors or "full"), **overrides))
    except ValueError as err:
        raise ValueError(_flag_words(str(err))) from err


def _generate(args: argparse.Namespace) -> int:
    from bridge_pl.data.io import prepare_output_dir, write_dataset

    plan = generation_plan(args)
    prepare_output_dir(args.out, args.overwrite)  # refuse before spending minutes on generation
    with _progress(plan.size, "problems", args.quiet) as bar:
        written = write_dataset(
            args.out, plan_rows(plan, args.workers, bar), config=plan.config(), fmt=args.format, overwrite=True
        )
    print(
        f"wrote {written['rows']} rows ({plan.size} problems, style {plan.config()['style']}) to "
        f"{Path(args.out) / written['data_file']}\nsha256 {written['sha256']}"
    )
    return 0


def rows_chunk(plan: GenerationPlan, start: int, count: int) -> list[dict[str, Any]]:
    """The rows of problems `start` .. `start + count - 1` of a plan (one worker task)."""
    from bridge_pl.data.records import generate_rows

    rows = generate_rows(
        plan.generator,
        plan.seed,
        count,
        plan.style,
        start=start,
        split=plan.split,
        augmentation=plan.augmentation,
        copies=plan.copies,
    )
    return list(rows)


def plan_rows(plan: GenerationPlan, workers: int, bar=None) -> Iterator[dict[str, Any]]:
    """All rows of a plan, in problem order; with workers > 1 chunks of problems run in processes.

    Every row depends only on (seed, index, copy), so the rows are the same for any number of workers.
    """
    per_chunk = max(1, min(200, -(-plan.size // (workers * 8)))) if workers > 1 else 25
    chunks = [(start, min(per_chunk, plan.size - start)) for start in range(0, plan.size, per_chunk)]
    if workers == 1:
        yield from _progressed(chunks, (rows_chunk(plan, s, c) for s, c in chunks), bar)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: the parent may hold threads (tqdm's monitor), which fork does not copy safely.
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        results = pool.map(rows_chunk, [plan] * len(chunks), *zip(*chunks, strict=True))
        yield from _progressed(chunks, results, bar)
    finally:
        pool.shutdown(cancel_futures=True)


def _progressed(chunks: list[tuple[int, int]], results: Iterable[list[dict]], bar) -> Iterator[dict[str, Any]]:
    for (_, count), rows in zip(chunks, results, strict=True):
        yield from rows
        if bar is not None:
            bar.update(count)


def _progress(total: int, unit: str, quiet: bool):
    """A tqdm bar on stderr, off with --quiet or when stderr is not a terminal."""
    from tqdm import tqdm

    return tqdm(total=total, unit=f" {unit}", file=sys.stderr, disable=quiet or not sys.stderr.isatty())


# ------------------------------------------------------------------------------------------------ augment
def _augment(args: argparse.Namespace) -> int:
    from bridge_pl.data.io import prepare_output_dir, read_dataset, read_dataset_config
    from bridge_pl.data.records import AUGMENTATIONS, augment_rows

    style, copies = _augment_style(args), _copies(args, args.method)
    prepare_output_dir(args.out, args.overwrite)
    source_config = read_dataset_config(args.input)
    modulus = args.modulus if args.modulus is not None else _config_modulus(source_config)
    required = ("query", "response") if args.method in AUGMENTATIONS else ("query",)
    rows = read_dataset(args.input, required=required)
    behaviors = style.behaviors if style is not None else None
    with _progress(len(rows), "rows", args.quiet) as bar:
        result = augment_rows(_counted(rows, bar), args.method, behaviors=behaviors, copies=copies, modulus=modulus)
    config = {
        "command": "augment",
        "method": args.method,
        "style": style.tag if style else args.method,
        "answer_style": style.to_dict() if style else None,
        "copies": copies if args.method in AUGMENTATIONS else 1,
        "modulus": modulus,
        "source": {"path": str(args.input), "rows": len(rows), "config": source_config},
        "failures": len(result.failures),
    }
    return _write_augmented(args, result, config, len(rows))


def _augment_style(args: argparse.Namespace) -> AnswerStyle | None:
    """The answer style of a rewriting method (None for pp-aug / rc-aug), after checking the flags."""
    if args.method in ("pp-aug", "rc-aug") and any(
        getattr(args, n) is not None for n in ("behaviors", *BEHAVIOR_FLAGS)
    ):
        raise ValueError(f"behavior flags only apply to --method bridge, not --method {args.method}")
    if args.out.resolve() in (args.input.resolve(), args.input.resolve().parent):
        raise ValueError(f"--out {args.out} would overwrite the input {args.input}; choose another --out directory")
    return None if args.method in ("pp-aug", "rc-aug") else _answer_style(args, args.method, args.method)


def _write_augmented(args: argparse.Namespace, result: AugmentResult, config: dict[str, Any], total: int) -> int:
    """Write the rewritten rows and the failures; exit status 1 when rows failed (unless --allow-failures)."""
    from bridge_pl.data.io import write_dataset, write_failures

    if result.rows:
        written = write_dataset(args.out, result.rows, config=config, fmt=args.format, overwrite=True)
        print(
            f"rewrote {result.rewritten} of {total} rows into {written['rows']} rows ({args.method}) "
            f"-> {Path(args.out) / written['data_file']}"
        )
    else:
        print(f"rewrote 0 of {total} rows ({args.method}); no dataset written")
    if not result.failures:
        return 0
    path = write_failures(args.out, result.failures)
    _print_failures(result.failures, path)
    return 0 if args.allow_failures else 1


def _counted(rows: list[dict], bar) -> Iterator[dict]:
    for row in rows:
        yield row
        bar.update(1)


def _config_modulus(config: dict | None) -> int | None:
    """The modulus recorded in one of our dataset configs (None for official configs and plain integers)."""
    generator = (config or {}).get("generator")
    return generator.get("modulus") if isinstance(generator, dict) else None


def _print_failures(failures: list, path: Path) -> None:
    print(f"{len(failures)} row(s) failed (row numbers are 0-based; all in {path}):")
    for failure in failures[:MAX_LISTED_FAILURES]:
        print(f"  row {failure.row}: {failure.reason}")
    if len(failures) > MAX_LISTED_FAILURES:
        print(f"  ... and {len(failures) - MAX_LISTED_FAILURES} more")


# ------------------------------------------------------------------------------------------------ stats, verify, show
def _stats(args: argparse.Namespace) -> int:
    from bridge_pl.data.io import iter_dataset
    from bridge_pl.data.stats import dataset_stats

    text = json.dumps(dataset_stats(iter_dataset(args.path, required=("query",))), indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from bridge_pl.data.io import iter_dataset, read_dataset_config
    from bridge_pl.task.verify import check_cot, strict_match_reward

    modulus = args.modulus if args.modulus is not None else _config_modulus(read_dataset_config(args.path))
    rows = rewards = 0
    failures: list[tuple[int, list[str]]] = []
    for number, row in enumerate(iter_dataset(args.path, required=("query", "response", "final_answer"))):
        rows += 1
        reward = strict_match_reward(row["response"], row["final_answer"])
        rewards += reward
        check = check_cot(row["response"], expected_answer=row["final_answer"], modulus=modulus)
        errors = list(check.errors)
        if reward < 1 and not errors:
            errors.append(f"the boxed answer does not match final_answer {row['final_answer']}")
        if errors or not check.ok:
            failures.append((number, errors or ["the checker rejected the answer"]))
    print(f"rows: {rows}\nreward mean: {rewards / rows:.4f}\nchecker failures: {len(failures)}")
    for number, errors in failures[:MAX_LISTED_FAILURES]:
        print(f"  row {number}: " + "; ".join(errors[:3]))
    if len(failures) > MAX_LISTED_FAILURES:
        print(f"  ... and {len(failures) - MAX_LISTED_FAILURES} more")
    return 1 if failures else 0


def _show(args: argparse.Namespace) -> int:
    from bridge_pl.data.io import iter_dataset

    if args.index < 0:
        raise ValueError(f"--index {args.index}: rows are numbered from 0")
    row, count = None, 0
    for count, candidate in enumerate(iter_dataset(args.path, required=("query",)), start=1):
        if count - 1 == args.index:  # stream rather than load: a big file is read only up to this row
            row = candidate
            break
    if row is None:
        raise ValueError(f"--index {args.index} is out of range: the dataset has {count} rows (0-{count - 1})")
    if args.dot:
        return _show_dot(row, args.modulus)
    origin = ", ".join(f"{k} {row[k]}" for k in ("split", "style", "seed", "index", "copy") if row.get(k) is not None)
    print(f"row {args.index}" + (f" ({origin})" if origin else ""))
    print(f"num_ops: {row.get('num_ops')}    final answer: {row.get('final_answer')}")
    print(f"\nQuestion:\n{row['query']}\n\nAnswer:\n{row.get('response')}")
    return 0


def _show_dot(row: dict[str, Any], modulus: int | None) -> int:
    from bridge_pl.data.records import row_problem

    try:
        draw = importlib.import_module("bridge_pl.task.draw")
    except ModuleNotFoundError:
        print("bridge data show --dot: bridge_pl.task.draw is not installed in this version", file=sys.stderr)
        return 2
    print(draw.to_dot(row_problem(row, modulus=modulus)), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
