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
Wiring only: the work is done by library functions (`bridge_pl.data.pipeline` for `bridge data ...`, whose
subcommands live in `bridge_pl.cli_data`; `bridge_pl.evaluation`, `bridge_pl.experiment`, `bridge_pl.models`).
Only argparse and the pure-Python layers are imported here, so `bridge data ...` starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from bridge_pl import __version__
from bridge_pl.cli_data import SPLIT_NAMES, add_data_commands

__all__ = ["SPLIT_NAMES", "build_parser", "main"]

TRAIN_COMMANDS = ("fit", "validate", "test", "predict")


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
    add_data_commands(commands)
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
    p.add_argument(
        "--trust-remote-code", action="store_true", help="run modelling code shipped in the model directory (auto_map)"
    )
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
    from bridge_pl.data.encoding import check_model_dir
    from bridge_pl.evaluation import ensure_writable, evaluate, markdown_table, write_report

    if args.out is None:  # the default --out lies inside the model directory: check it before creating <model>/eval
        check_model_dir(args.model, trust_remote_code=args.trust_remote_code)
    out_dir = ensure_writable(args.out or args.model / "eval")  # before the model loads: results must not be lost
    results = evaluate(
        str(args.model), datasets, engine_kind=args.engine, max_new_tokens=args.max_new_tokens, samples=args.samples,
        temperature=args.temperature, batch_size=args.batch_size, limit=args.limit, seed=args.seed, dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
    )  # fmt: skip
    print(markdown_table(results), end="", flush=True)  # the table first, so a failed write loses nothing shown
    out = write_report(results, out_dir)
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
    run.add_argument("--force", action="store_true", help="redo stages made with other settings (and all after them)")
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
    run_experiment(config, methods, seeds, force=args.force)
    print(f"report: {config.report_path() / 'report.md'}")
    print((config.report_path() / "report.md").read_text(encoding="utf-8"), end="")
    return 0


def _experiment_report(args: argparse.Namespace) -> int:
    from bridge_pl.experiment import build_report, load_config

    config = load_config(args.config)
    build_report(config)
    print((config.report_path() / "report.md").read_text(encoding="utf-8"), end="")
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
    from bridge_pl.data.io import unwritable_dir

    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} is a file; a model is saved as a directory")
    if args.out.exists() and any(args.out.iterdir()) and not args.overwrite:
        raise ValueError(f"{args.out} is not empty; pass --overwrite to replace the model there")
    blocked = unwritable_dir(args.out) or unwritable_dir(args.out.absolute().parent)  # the save renames in the parent
    if blocked is not None:
        raise ValueError(f"--out {args.out}: {blocked} is not writable; choose another --out or change its permissions")
    from bridge_pl.models.model_io import TINY_PRESETS, count_parameters, init_model_dir, load_model

    if args.preset not in TINY_PRESETS:
        raise ValueError(f"--preset {args.preset!r} is unknown; choose one of {', '.join(TINY_PRESETS)}")
    path = init_model_dir(args.out, preset=args.preset, seed=args.seed)
    params = count_parameters(load_model(path))
    print(f"wrote {args.preset} ({params / 1e6:.2f}M parameters) and the project tokenizer to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
