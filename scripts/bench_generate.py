"""Benchmark: iGSM-reasoning problems per second on one core at op 15-20, against the official generator.

Three workloads: drawing problems only; problem + question + plain ("vanilla") CoT answer; problem + question
+ BRIDGE answer (our `full` preset; the official generator's detailed computation, reflection 0.1, analysis
level 2). Each measurement is its own process pinned to one core; ours and the official one alternate (back to
back, the order flipped every round). Printed: the median rate of each side over `--rounds` and the median of the
per-round ratios ours / official, all measured in this run.

The official generator (czp16/Bridge-LLM-reasoning, folder `iGSM-reasoning`, needs numpy) is run as an
external module from `--official DIR` or `$BRIDGE_OFFICIAL_IGSM`; without it only our figures are printed.

    python scripts/bench_generate.py --official /path/to/Bridge-LLM-reasoning/iGSM-reasoning
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

OFFICIAL_ENV = "BRIDGE_OFFICIAL_IGSM"
WORKLOADS = {"problem": "problem only", "plain": "problem + plain CoT", "bridge": "problem + BRIDGE"}
WARMUP = 20  # problems drawn before the clock starts (vocabulary, imports, caches)


def _ours(workload: str, count: int, seed: int) -> float:
    from bridge_pl.augment.bridge import PRESETS, render_bridge_answer
    from bridge_pl.task.cot import render_plain_cot
    from bridge_pl.task.generator import GeneratorConfig, generate_problem, stream_rng
    from bridge_pl.task.question import render_question

    config = GeneratorConfig(min_op=15, max_op=20)

    def one(index: int) -> None:
        problem = generate_problem(config, seed, index)
        if workload == "problem":
            return
        render_question(problem)
        if workload == "plain":
            render_plain_cot(problem, stream_rng("answer", "plain", seed, index))
        else:
            render_bridge_answer(problem, stream_rng("answer", "bridge", seed, index), PRESETS["full"])

    for index in range(WARMUP):
        one(count + index)
    start = time.perf_counter()
    for index in range(count):
        one(index)
    return count / (time.perf_counter() - start)


def _official(workload: str, count: int, seed: int) -> float:
    """The official pipeline per kept problem: draw until valid, question, answer, then the |answer| < 1000 filter."""
    from igsm_reasoning.generation import ProblemGenerator

    bridge = workload == "bridge"
    config = {
        "min_operations": 15,
        "max_operations": 20,
        "calculate_mod": False,
        "rng_range": 10,
        "detailed_computation": bridge,
        "reflection_prob": 0.1 if bridge else 0.0,
        # analysis level 2 for BRIDGE, 0 for the plain CoT (the official script's levels)
        "analysis_prob_list": [0, 0.1, 0.4, 0.8] + [1] * 7 if bridge else [0] * 11,
    }
    generator = ProblemGenerator(config, seed=seed)

    def one() -> None:
        while True:
            if not generator.draw_question():
                continue
            if workload != "problem":
                generator.generate_question()
                generator.generate_cot_answer()
            if abs(generator.Gd.topo[-1].value) < 1000:
                return

    for _ in range(WARMUP):
        one()
    start = time.perf_counter()
    for _ in range(count):
        one()
    return count / (time.perf_counter() - start)


def _official_dir(value: str | None) -> Path | None:
    """The `iGSM-reasoning` folder (the repository root holding it is accepted too), or None."""
    if not value:
        return None
    path = Path(value).expanduser().resolve()
    for candidate in (path, path / "iGSM-reasoning"):
        if (candidate / "igsm_reasoning" / "generation").is_dir():
            return candidate
    sys.exit(
        f"{value}: no igsm_reasoning/generation inside; point --official (or ${OFFICIAL_ENV}) at the "
        "iGSM-reasoning folder of czp16/Bridge-LLM-reasoning"
    )


def _measure(side: str, workload: str, args: argparse.Namespace, official: Path | None) -> float:
    """One measurement in a fresh process (single-threaded, pinned to `--core`)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if side == "official":
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(official), env.get("PYTHONPATH")]))
    command = [
        sys.executable,
        __file__,
        "--worker",
        side,
        workload,
        "--count",
        str(args.count),
        "--seed",
        str(args.seed),
        "--core",
        str(args.core),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
    if result.returncode != 0:
        sys.exit(f"{side} {workload} worker failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return float(result.stdout.split()[-1])


def _worker(side: str, workload: str, args: argparse.Namespace) -> None:
    os.sched_setaffinity(0, {args.core})
    rate = (_ours if side == "ours" else _official)(workload, args.count, args.seed)
    print(f"{rate:.3f}")


def main() -> None:
    """Alternate ours and the official generator per round and print the medians (and the ratio)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--official",
        default=os.environ.get(OFFICIAL_ENV),
        help=f"official iGSM-reasoning folder (default: ${OFFICIAL_ENV}); without it no ratio is printed",
    )
    parser.add_argument("--count", type=int, default=1000, help="problems per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="measurements per side and workload (median printed)")
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--core", type=int, default=min(os.sched_getaffinity(0)), help="CPU core to pin to")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per measurement before giving up")
    parser.add_argument("--worker", nargs=2, metavar=("SIDE", "WORKLOAD"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return _worker(*args.worker, args)
    official = _official_dir(args.official)
    sides = ("ours", "official") if official else ("ours",)
    rates: dict[tuple[str, str], list[float]] = {}
    for round_index in range(args.rounds):
        order = sides if round_index % 2 == 0 else sides[::-1]  # neither side always runs first
        for workload in WORKLOADS:
            for side in order:
                rates.setdefault((side, workload), []).append(_measure(side, workload, args, official))
    print(
        f"op 15-20, {args.count} problems x {args.rounds} rounds per figure, one process per measurement, core "
        f"{args.core}, medians"
    )
    for workload, name in WORKLOADS.items():
        ours = statistics.median(rates["ours", workload])
        if not official:
            print(f"{name:20s} ours {ours:7.0f}/s   (no ratio: pass --official DIR or set ${OFFICIAL_ENV})")
            continue
        anchor = statistics.median(rates["official", workload])
        # the two sides of a round ran back to back, under the same load from the rest of the machine
        pairs = zip(rates["ours", workload], rates["official", workload], strict=True)
        ratio = statistics.median([o / a for o, a in pairs])
        print(f"{name:20s} ours {ours:7.0f}/s   official {anchor:7.0f}/s   {ratio:5.2f}x the official")


if __name__ == "__main__":
    main()
