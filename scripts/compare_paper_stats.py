"""Compare the generator's datasets with the values measured on the official generator (paper_spec §A.4, §A.7).

python scripts/compare_paper_stats.py                                # print the markdown
python scripts/compare_paper_stats.py --out docs/generator_stats.md  # and write it
"""

import argparse
from pathlib import Path

from bridge_pl import __version__
from bridge_pl.data.records import AnswerStyle, generate_rows
from bridge_pl.data.stats import dataset_stats
from bridge_pl.task.generator import survey_draws
from bridge_pl.task.presets import split_preset

# dataset: (split preset, answer style, problems)
DATASETS = {
    "SFT vanilla": ("sft", "plain", 2000),
    "SFT BRIDGE": ("sft", "bridge", 2000),
    "RL train (first 2000)": ("rl_train", "no-cot", 2000),
    "RL val": ("rl_val", "no-cot", 500),
    "test op 20": ("test_id", "no-cot", 500),
    "test op 25": ("test_ood", "no-cot", 500),
}
# The paper's measured values: §A.4 table and "other measured values" (general), §A.7 answer table.
GENERAL = {"zero answers": 0.18, "negative": 0.14}
# Measured by the paper on raw draws of the op 15-20 generator, before the answer filter (compared via survey_draws).
RAW_DRAWS = {"failed stage 3 or 4": 0.18, "abstract target": 0.54, "L=4": 0.45, "L=3": 0.37, "L=2": 0.18}
RAW_KEYS = {"failed stage 3 or 4": "failed_stage3_or_4", "abstract target": "abstract_target"}
PAPER = {
    "SFT vanilla": {"op 15": 0.367, "op 16": 0.267, "op 17": 0.162, "op 18": 0.115, "op 19": 0.066, "op 20": 0.026}
    | {"necessary nodes": 12.0, "redundant nodes": 2.6, "condition sentences": 11.8, **GENERAL}
    | {"question length": 1270, "answer length": 1458, "step lines": 12.0, "failed attempts": 0, "analyses": 0},
    "SFT BRIDGE": {
        "answer length": 2130,
        "step lines": 13.0,
        "failed attempts": 0.73,
        "answers with a failed attempt": 0.52,
    }
    | {"analyses": 3.78, "revisits": 0.75},
    "RL train (first 2000)": {"op 15": 0.351, "op 16": 0.263, "op 17": 0.188, "op 18": 0.117, "op 19": 0.062}
    | {"op 20": 0.02, "necessary nodes": 12.1, "redundant nodes": 2.7, "condition sentences": 12.0, **GENERAL}
    | {"question length": 1270},
    "RL val": {"op 21": 0.412, "op 22": 0.304, "op 23": 0.194, "op 24": 0.078, "op 25": 0.012}
    | {"necessary nodes": 14.9, "redundant nodes": 1.7, "condition sentences": 13.0},
    "test op 20": {"necessary nodes": 14.2, "redundant nodes": 1.9, "condition sentences": 12.5, "zero answers": 0.27},
    "test op 25": {
        "necessary nodes": 16.7,
        "redundant nodes": 1.3,
        "condition sentences": 13.8,
        "question length": 1570,
    },
}
STATS_KEYS = {
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


def ours(stats: dict, metric: str) -> float:
    """Our value of `metric` (a row name of the comparison) in `dataset_stats` output."""
    if metric.startswith("op "):
        return stats["num_ops"]["shares"].get(metric[3:], 0.0)
    if metric.startswith("L="):
        return stats["layers"]["shares"].get(metric[2:], 0.0)
    if metric in BEHAVIOR_KEYS:
        return stats["behaviors"][BEHAVIOR_KEYS[metric]]
    return stats[STATS_KEYS[metric]]


def _row(metric: str, paper: float, value: float, share: bool) -> str:
    """One table row; shares compare in percentage points (bold above 3), means relatively (bold above 5%)."""
    if share:
        diff = 100 * (value - paper)
        text = f"{diff:+.1f} pp"
        return f"| {metric} | {100 * paper:.1f}% | {100 * value:.1f}% | {f'**{text}**' if abs(diff) > 3 else text} |"
    rel = "n/a" if paper == 0 else f"{100 * (value - paper) / paper:+.1f}%"
    rel = f"**{rel}**" if paper and abs(value - paper) > 0.05 * abs(paper) else rel
    return f"| {metric} | {paper:.2f} | {value:.2f} | {rel} |"


def section(name: str, stats: dict) -> list[str]:
    """One markdown table: metric | paper | ours | difference."""
    preset, style, size = DATASETS[name]
    lines = [f"## {name} (split {preset}, {style} answers, {size} problems)", ""]
    lines += ["| metric | paper | ours | difference |", "|---|---|---|---|"]
    for metric, paper in PAPER[name].items():
        share = metric.startswith(("op ", "L=")) or metric in GENERAL or metric.startswith("answers with")
        lines.append(_row(metric, paper, ours(stats, metric), share))
    return [*lines, ""]


def raw_draw_section(draws: int = 4000) -> list[str]:
    """The paper's raw-draw measurements (failures, layer mix, abstract targets) against `survey_draws`."""
    report = survey_draws(split_preset("sft").generator, seed=0, draws=draws)
    lines = [f"## Raw draws at op 15-20 ({draws} draws, before the answer filter)", ""]
    lines += ["| metric | paper | ours | difference |", "|---|---|---|---|"]
    for metric, paper in RAW_DRAWS.items():
        key = RAW_KEYS.get(metric, f"layers_{metric[2:]}")
        lines.append(_row(metric, paper, report[key], share=True))
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the markdown here (e.g. docs/generator_stats.md)")
    args = parser.parse_args()
    lines = [
        "# Generator statistics against the paper",
        "",
        f"Made by `python scripts/compare_paper_stats.py --out docs/generator_stats.md` (bridge-pl {__version__}): "
        "the first problems of each split preset, generated in memory and measured with "
        "`bridge_pl.data.stats.dataset_stats`, against the values measured on the official generator "
        "(paper_spec §A.4, §A.7). Shares are compared in percentage points (bold above 3 pp), means relatively "
        "(bold above 5%); the paper's values are samples of the same size, so they carry sampling noise too "
        "(about ±2 pp on a 500-problem share). Question and answer lengths differ by design: bridge-pl's "
        "vocabulary and answer wording are its own. The layer mix and the abstract-target share are measured by "
        "the paper on raw draws, before the |answer| < 1000 filter (which rejects deep problems more often), so "
        "they are compared on raw draws too.",
        "",
        *raw_draw_section(),
    ]
    for name, (preset_name, style, size) in DATASETS.items():
        preset = split_preset(preset_name)
        rows = generate_rows(preset.generator, preset.seed, size, AnswerStyle(style), split=preset_name)
        lines += section(name, dataset_stats(rows))
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
