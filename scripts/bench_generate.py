"""Benchmark: iGSM-reasoning problems per second on one core, plain and BRIDGE answers, op 15-20.

Prints problems/s for (a) drawing problems only, (b) problem + question + plain CoT answer, and
(c) problem + question + BRIDGE answer (full preset), and the ratio of (b) against the anchor: the
official generator's 450-570 problems/s on one core (paper_spec; the official code is not available
offline, so its figure is quoted, not re-measured; the midpoint 510 is used).

    python scripts/bench_generate.py --count 2000
"""

from __future__ import annotations

import argparse
import time

from bridge_pl.augment.bridge import PRESETS, render_bridge_answer
from bridge_pl.task.cot import render_plain_cot
from bridge_pl.task.generator import GeneratorConfig, generate_problem, stream_rng
from bridge_pl.task.question import render_question

OFFICIAL_PROBLEMS_PER_SECOND = 510.0  # midpoint of the quoted 450-570 problems/s


def _rate(count: int, work) -> float:
    start = time.perf_counter()
    for index in range(count):
        work(index)
    return count / (time.perf_counter() - start)


def main() -> None:
    """Run the three measurements and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000, help="problems per measurement")
    parser.add_argument("--seed", type=int, default=100)
    args = parser.parse_args()
    config = GeneratorConfig(min_op=15, max_op=20)
    generate_problem(config, args.seed, 0)  # load the vocabulary before timing

    def problem_only(i: int) -> None:
        generate_problem(config, args.seed, i)

    def plain(i: int) -> None:
        problem = generate_problem(config, args.seed, i)
        render_question(problem)
        render_plain_cot(problem, stream_rng("answer", "plain", args.seed, i))

    def bridge(i: int) -> None:
        problem = generate_problem(config, args.seed, i)
        render_question(problem)
        render_bridge_answer(problem, stream_rng("answer", "bridge", args.seed, i), PRESETS["full"])

    for name, work in (("problem only", problem_only), ("problem + plain CoT", plain), ("problem + BRIDGE", bridge)):
        rate = _rate(args.count, work)
        ratio = rate / OFFICIAL_PROBLEMS_PER_SECOND
        print(f"{name:22s} {rate:8.0f} problems/s   {ratio:4.2f}x the official generator (510/s, quoted)")


if __name__ == "__main__":
    main()
