"""Compare the generator's datasets with the official iGSM-reasoning generator's (paper_spec §A.4, §A.5, §A.7).

python scripts/compare_paper_stats.py                                # ours and the paper's quoted values
python scripts/compare_paper_stats.py --official /tmp/official/iGSM-reasoning --out docs/generator_stats.md

With `--official` (or the environment variable BRIDGE_OFFICIAL_IGSM) pointing at a source tree of the official
generator (`git --git-dir=DIR archive HEAD iGSM-reasoning | tar -x -C /tmp/official`), the official generator runs in
this process at the same split settings and seeds (its own `generate_dataset.py` loop: SFT answers with the BRIDGE
flags from its `generate_cot_answer`), and every statistic is measured on both the same way: `dataset_stats` on the
rows, condition sentence forms from the question text (`condition_form`), node counts from each generator's graph.
A developer tool, never imported by tests or CI. Longer than the other scripts because the official loop has no
home in the package.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from pathlib import Path

from bridge_pl import __version__
from bridge_pl.data.records import AnswerStyle, generate_rows
from bridge_pl.data.stats import dataset_stats
from bridge_pl.task.generator import survey_draws
from bridge_pl.task.presets import split_preset
from bridge_pl.task.question import SENTENCE_FORMS, condition_form

# dataset: (split preset, answer style, problems)
DATASETS = {
    "SFT vanilla": ("sft", "plain", 2000),
    "SFT BRIDGE": ("sft", "bridge", 2000),
    "RL train (first 2000)": ("rl_train", "no-cot", 2000),
    "RL val": ("rl_val", "no-cot", 500),
    "test op 20": ("test_id", "no-cot", 500),
    "test op 25": ("test_ood", "no-cot", 500),
}
FORM_DATASETS = ("SFT vanilla", "test op 20", "test op 25")
RAW_DRAWS_COUNT = 4000
# The paper's quoted values: §A.4 table and "other measured values" (general), §A.7 answer table with the
# 2026-12-01 correction of the BRIDGE behavior counts (0.73 / 52 % were wrong).
GENERAL = {"zero answers": 0.18, "negative": 0.14}
# Measured by the paper on raw draws of the op 15-20 generator, before the answer filter (compared via survey_draws).
RAW_DRAWS = {"failed stage 3 or 4": 0.18, "abstract target": 0.54, "L=4": 0.45, "L=3": 0.37, "L=2": 0.18}
PAPER = {
    "SFT vanilla": {"op 15": 0.367, "op 16": 0.267, "op 17": 0.162, "op 18": 0.115, "op 19": 0.066, "op 20": 0.026}
    | {"necessary nodes": 12.0, "redundant nodes": 2.6, "condition sentences": 11.8, **GENERAL}
    | {"question length": 1270, "answer length": 1458, "step lines": 12.0, "failed attempts": 0, "analyses": 0},
    "SFT BRIDGE": {"answer length": 2130, "step lines": 13.0, "failed attempts": 0.89}
    | {"answers with a failed attempt": 0.588, "analyses": 3.76, "revisits": 0.83},
    "RL train (first 2000)": {"op 15": 0.351, "op 16": 0.263, "op 17": 0.188, "op 18": 0.117, "op 19": 0.062}
    | {"op 20": 0.02, "necessary nodes": 12.1, "redundant nodes": 2.7, "condition sentences": 12.0, **GENERAL}
    | {"question length": 1270},
    "RL val": {"op 21": 0.412, "op 22": 0.304, "op 23": 0.194, "op 24": 0.078, "op 25": 0.012}
    | {"necessary nodes": 14.9, "redundant nodes": 1.7, "condition sentences": 13.0},
    "test op 20": {"necessary nodes": 14.2, "redundant nodes": 1.9, "condition sentences": 12.5, "zero answers": 0.27},
    "test op 25": {"necessary nodes": 16.7, "redundant nodes": 1.3, "condition sentences": 13.8}
    | {"question length": 1570},
}
STATS_KEYS = {
    "failed stage 3 or 4": "failed_stage3_or_4",
    "necessary nodes": "necessary_nodes_mean",
    "redundant nodes": "redundant_nodes_mean",
    "condition sentences": "condition_sentences_mean",
    "abstract target": "abstract_target_share",
    "zero answers": "zero_answer_share",
    "negative": "negative_answer_share",
    "question length": "question_chars_mean",
    "answer length": "answer_chars_mean",
    "step lines": "step_lines_mean",
}
BEHAVIOR_KEYS = {
    "failed attempts": "failed_attempts_mean",
    "answers with a failed attempt": "failed_attempts_share",
    "analyses": "analyses_mean",
    "revisits": "revisits_mean",
}
SHARES = ("op ", "L=", "answers with", "failed stage", "abstract target", *GENERAL)


# ------------------------------------------------------------------------------------------------ official
def load_official(root: Path):
    """The official `ProblemGenerator`, imported from the source tree `root` (its iGSM-reasoning folder)."""
    if not (root / "igsm_reasoning" / "generation" / "graph_util.py").is_file():
        sys.exit(
            f"--official {root}: no igsm_reasoning/generation/graph_util.py there. Extract it with\n"
            "  git --git-dir=DIR archive HEAD iGSM-reasoning | tar -x -C /tmp/official"
        )
    sys.path.insert(0, str(root))
    from igsm_reasoning.generation import ProblemGenerator

    return ProblemGenerator


def official_config(preset_name: str, style: str) -> dict:
    """`generate_dataset.py`'s config for our split preset and answer style (BRIDGE: detailed, 0.1, level 2)."""
    generator = split_preset(preset_name).generator
    bridge = style == "bridge"
    return {
        "max_operations": generator.max_op,
        "min_operations": generator.min_op,
        "force": generator.force,
        "calculate_mod": False,
        "rng_range": generator.constant_range,
        "debug": False,
        "reflection_prob": 0.1 if bridge else 0.0,
        "analysis_prob_list": [0, 0.1, 0.4, 0.8] + [1] * 7 if bridge else [0] * 11,
        "shuffle_query": True,
        "redundant_query": True,
        "detailed_computation": bridge,
        "content_mask": False,
    }


def official_rows(generator_class, preset_name: str, style: str, size: int) -> list[dict]:
    """The first `size` problems of the official loop (same seed as the preset), with graph facts per row."""
    import numpy as np  # the official generator's dependency, seeded by it

    preset, config = split_preset(preset_name), official_config(preset_name, style)
    generator = generator_class(config, seed=preset.seed)
    rows: list[dict] = []
    while len(rows) < size:
        if not generator.draw_question():
            continue
        query = generator.generate_question()
        response = generator.generate_cot_answer() if style != "no-cot" else generator.generate_answer()
        graph, answer = generator.Gd, generator.Gd.topo[-1].value
        drop_zero = config["min_operations"] > 20 and answer == 0 and np.random.rand() < 0.6
        if abs(answer) >= preset.generator.answer_bound or drop_zero:
            continue
        rows.append({"query": query, "response": response, "num_ops": graph.final_num_op, "final_answer": answer})
        rows[-1]["graph"] = (len(graph.topo), len(graph.unnecessary_topo), graph.topo[-1].node_type == "abstract")
    return rows


def official_stats(rows: list[dict]) -> dict:
    """`dataset_stats` of official rows, node counts and the target's kind taken from the official graphs."""
    stats = dataset_stats({k: v for k, v in row.items() if k != "graph"} for row in rows)
    for k, key in enumerate(("necessary_nodes_mean", "redundant_nodes_mean", "abstract_target_share")):
        stats[key] = sum(row["graph"][k] for row in rows) / len(rows)
    return stats


def official_raw_draws(generator_class, draws: int) -> dict[str, float]:
    """`survey_draws`'s figures for the official generator: failures, layers and abstract targets of built graphs."""
    generator = generator_class(official_config("sft", "plain"), seed=0)
    tally: Counter = Counter()
    for _ in range(draws):
        if not generator.draw_question():
            tally["failed"] += 1
            continue
        tally[f"layers_{generator.Gs.num_layers}"] += 1
        tally["abstract_target"] += generator.Gd.topo[-1].node_type == "abstract"
    built = draws - tally["failed"]
    report = {"failed_stage3_or_4": tally["failed"] / draws, "abstract_target": tally["abstract_target"] / built}
    return report | {f"layers_{n}": tally[f"layers_{n}"] / built for n in (2, 3, 4)}


# ------------------------------------------------------------------------------------------------ measuring
def form_shares(rows: list[dict]) -> dict[str, float]:
    """Share of each `SENTENCE_FORMS` form among all condition sentences of the rows' questions."""
    forms = Counter(form for row in rows for line in row["query"].splitlines() if (form := condition_form(line)))
    total = max(sum(forms.values()), 1)
    return {form: forms[form] / total for form in SENTENCE_FORMS}


def value(stats: dict, metric: str) -> float | None:
    """The value of `metric` (a row name of the comparison) in `dataset_stats` output."""
    if metric.startswith("op "):
        return stats["num_ops"]["shares"].get(metric[3:], 0.0)
    if metric.startswith("L="):
        return stats["layers"]["shares"].get(metric[2:], 0.0)
    if metric in BEHAVIOR_KEYS:
        return stats["behaviors"][BEHAVIOR_KEYS[metric]]
    return stats[STATS_KEYS[metric]]


def _cell(x: float | None, share: bool) -> str:
    return "–" if x is None else f"{100 * x:.1f}%" if share else f"{x:.2f}"


def _difference(ours: float, anchor: float | None, share: bool) -> str:
    """Shares in percentage points (bold above 3), means relatively (bold above 5%)."""
    if anchor is None:
        return "–"
    if share:
        diff = 100 * (ours - anchor)
        return f"**{diff:+.1f} pp**" if abs(diff) > 3 else f"{diff:+.1f} pp"
    if anchor == 0:
        return "n/a"
    rel = f"{100 * (ours - anchor) / anchor:+.1f}%"
    return f"**{rel}**" if abs(ours - anchor) > 0.05 * abs(anchor) else rel


def table(metrics: dict[str, float | None], ours: dict, official: dict | None) -> list[str]:
    """metric | paper (quoted) | official (measured) | ours | ours - official (or - paper without official)."""
    anchor = "official" if official else "paper"
    lines = [f"| metric | paper (quoted) | official (measured) | ours | ours − {anchor} |", "|---|---|---|---|---|"]
    for metric, paper in metrics.items():
        share = metric.startswith(SHARES)
        measured = value(official, metric) if official else None
        mine = value(ours, metric)
        reference = measured if official else paper
        cells = (_cell(paper, share), _cell(measured, share), _cell(mine, share))
        lines.append(f"| {metric} | {' | '.join(cells)} | {_difference(mine, reference, share)} |")
    return [*lines, ""]


def _first_answers_note(rows: list[dict], count: int) -> str:
    """The BRIDGE behavior counts of the first `count` official answers (paper_spec §A.7 corrected from those)."""
    behaviors = dataset_stats({k: v for k, v in row.items() if k != "graph"} for row in rows[:count])["behaviors"]
    figures = ", ".join(
        f"{metric} {_cell(behaviors[key], metric.startswith(SHARES))}" for metric, key in BEHAVIOR_KEYS.items()
    )
    return (
        f"The first {count} official answers alone give {figures}: the figures quoted by paper_spec §A.7's "
        f"correction, which counted those {count}; the whole file is the measured column."
    )


def raw_draw_section(generator_class) -> list[str]:
    """The raw-draw measurements (failures, layer mix, abstract targets) against `survey_draws`."""
    ours = survey_draws(split_preset("sft").generator, seed=0, draws=RAW_DRAWS_COUNT)
    official = official_raw_draws(generator_class, RAW_DRAWS_COUNT) if generator_class else None
    lines = [f"## Raw draws at op 15-20 ({RAW_DRAWS_COUNT} draws, before the answer filter)", ""]
    return lines + table(RAW_DRAWS, _draw_stats(ours), _draw_stats(official) if official else None)


def _draw_stats(report: dict[str, float]) -> dict:
    """A `survey_draws` report in `dataset_stats`'s keys."""
    layers = {"shares": {str(n): report[f"layers_{n}"] for n in (2, 3, 4)}}
    return {"layers": layers, "failed_stage3_or_4": report["failed_stage3_or_4"]} | {
        "abstract_target_share": report["abstract_target"]
    }


def form_section(measured: dict[str, tuple[dict, dict | None]]) -> list[str]:
    """Shares of the condition sentence forms (paper_spec §A.5), official against ours per dataset."""
    lines = ["## Condition sentence forms (share of all condition sentences, redundant ones included)", ""]
    lines += [
        'c: a constant, P: a parameter; `c+P` is "c more than P", `c*(P-P)` "c times the difference of P1 and '
        'P2", `sum3+` "the sum of P1, P2 and P3 ..." (`bridge_pl.task.question.SENTENCE_FORMS`).',
        "",
    ]
    header, rule = ["form"], ["---"]
    for name in FORM_DATASETS:
        header += [f"{name}: official", "ours", "ours − official"]
        rule += ["---"] * 3
    lines += [f"| {' | '.join(header)} |", f"|{'|'.join(rule)}|"]
    for form in SENTENCE_FORMS:
        cells = [f"`{form}`"]
        for name in FORM_DATASETS:
            ours, official = measured[name]
            theirs = official["forms"][form] if official else None
            cells += [_cell(theirs, True), _cell(ours["forms"][form], True)]
            cells.append(_difference(ours["forms"][form], theirs, True))
        lines.append(f"| {' | '.join(cells)} |")
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the markdown here (e.g. docs/generator_stats.md)")
    parser.add_argument(
        "--official",
        type=Path,
        default=os.environ.get("BRIDGE_OFFICIAL_IGSM"),
        help="the official iGSM-reasoning source folder (default: $BRIDGE_OFFICIAL_IGSM); without it, only "
        "our figures and the paper's quoted ones",
    )
    parser.add_argument("--official-commit", default="", help="the official tree's commit, to name in the text")
    args = parser.parse_args()
    generator_class = load_official(args.official) if args.official else None
    commit = f" at commit {args.official_commit}" if args.official_commit else ""
    source = (
        f"the official generator (czp16/Bridge-LLM-reasoning iGSM-reasoning{commit}) run in the same process"
        if generator_class
        else "nothing (no --official)"
    )
    lines = [
        "# Generator statistics against the official generator",
        "",
        f"Made by `python scripts/compare_paper_stats.py{' --official DIR' if generator_class else ''} --out "
        f"docs/generator_stats.md` (bridge-pl {__version__}): the first problems of each split preset, generated in "
        "memory and measured with `bridge_pl.data.stats.dataset_stats`. Columns: the paper's values as quoted in "
        "paper_spec §A.4/§A.7 (BRIDGE behavior counts as corrected on 2026-12-01), the same statistics measured on "
        f"{source} at the same settings and seeds, ours, and the difference. Shares compare in percentage points "
        "(bold above 3 pp), means relatively (bold above 5%); both sides are samples (about ±2 pp on a 500-problem "
        "share, ±2.2 pp on a 2000-problem one near 50%). Question and answer lengths differ by design: bridge-pl's "
        "vocabulary and answer wording are its own. The paper's quoted condition-sentence counts include the final "
        "question (the official measured count plus 1). The layer mix and the abstract-target share are compared on "
        "raw draws, before the |answer| < 1000 filter (which rejects deep problems more often).",
        "",
        *raw_draw_section(generator_class),
    ]
    measured: dict[str, tuple[dict, dict | None]] = {}
    for name, (preset_name, style, size) in DATASETS.items():
        preset = split_preset(preset_name)
        rows = list(generate_rows(preset.generator, preset.seed, size, AnswerStyle(style), split=preset_name))
        ours = dataset_stats(rows) | {"forms": form_shares(rows)}
        official = None
        if generator_class:
            theirs = official_rows(generator_class, preset_name, style, size)
            official = official_stats(theirs) | {"forms": form_shares(theirs)}
        measured[name] = ours, official
        lines += [f"## {name} (split {preset_name}, {style} answers, {size} problems)", ""]
        lines += table(PAPER[name], ours, official)
        if official and style == "bridge":
            lines += [_first_answers_note(theirs, 500), ""]
    lines += form_section(measured)
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
