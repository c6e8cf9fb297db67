"""The dataset pipelines of `bridge_pl.data.pipeline`, called directly (no command line), and the config flags."""

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass, fields

import pytest

from bridge_pl.augment.bridge import BehaviorConfig
from bridge_pl.cli import build_parser
from bridge_pl.data.io import read_dataset, read_dataset_config
from bridge_pl.data.pipeline import (
    augment_dataset,
    describe_dataset,
    generate_dataset,
    generation_plan,
    read_row,
    verify_dataset,
)
from bridge_pl.flags import add_config_flags, field_docs
from bridge_pl.task.generator import GeneratorConfig


@pytest.fixture(scope="module")
def plan():
    """12 problems of the tiny SFT split with full BRIDGE answers."""
    return generation_plan(split="tiny_sft", size=12, style="bridge")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, plan):
    out = tmp_path_factory.mktemp("pipeline") / "tiny"
    generate_dataset(out, plan)
    return out


def _files(directory):
    return {name: (directory / name).read_bytes() for name in ("data.jsonl", "dataset_config.json")}


def test_generation_is_byte_identical_again_and_for_two_workers(tmp_path, plan, tiny):
    generate_dataset(tmp_path / "again", plan)
    written = generate_dataset(tmp_path / "two", plan, workers=2)
    assert _files(tmp_path / "again") == _files(tiny) == _files(tmp_path / "two")
    assert written == read_dataset_config(tiny)
    assert (written["rows"], written["style"], written["seed"], written["generator"]["modulus"]) == (
        12,
        "bridge:full",
        1100,
        23,
    )


def test_plan_overrides_and_progress(tmp_path):
    plan = generation_plan(
        size=5, seed=3, augmentation="pp-aug", copies=2, behaviors="exploration",
        generator_overrides={"min_op": 2, "max_op": 3, "max_instance_params": 6, "modulus": 23},
        behavior_overrides={"exploration": 0.5},
    )  # fmt: skip
    assert plan.style.behaviors == BehaviorConfig(exploration=0.5, subgoal=False, analysis_level=0)
    assert (plan.generator.min_op, plan.generator.max_op, plan.copies) == (2, 3, 2)
    calls = []
    written = generate_dataset(tmp_path / "pp", plan, progress=lambda done, total: calls.append((done, total)))
    assert written["rows"] == 10 and sum(done for done, _ in calls) == 5 and {total for _, total in calls} == {5}
    assert {row["num_ops"] for row in read_dataset(tmp_path / "pp")} <= {2, 3}


def test_plan_errors_are_listed_at_once_in_flag_words():
    with pytest.raises(ValueError) as caught:
        generation_plan(
            size=0, style="plain", generator_overrides={"min_op": 30, "max_layers": 1},
            behavior_overrides={"exploration": 0.3},
        )  # fmt: skip
    message = str(caught.value)
    assert message.startswith("invalid options:\n")
    for part in ("--size 0", "--min-op=30, --max-op=20", "--max-layers=1", "behavior flags (--exploration)"):
        assert part in message
    with pytest.raises(ValueError, match="--size is required without --split"):
        generation_plan()
    with pytest.raises(ValueError, match="unknown GeneratorConfig fields \\['min_ops'\\]"):
        generation_plan(size=2, generator_overrides={"min_ops": 3})
    with pytest.raises(ValueError, match="--workers 0"):
        generate_dataset("unused", generation_plan(size=2), workers=0)


def test_augment_rewrites_a_dataset_and_lists_failures(tmp_path, tiny):
    report = augment_dataset(tiny, tmp_path / "rc", "rc-aug", copies=2)
    assert (report.rows, report.rewritten, report.failures, report.failures_file) == (12, 12, [], None)
    assert report.written["rows"] == 24 and len(read_dataset(tmp_path / "rc")) == 24
    assert report.written["modulus"] == 23  # from the source config
    rows = read_dataset(tiny)[:3]
    rows[1]["query"], rows[1]["dag"] = "The number of each Nothing equals nothing.", None
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    report = augment_dataset(tmp_path / "in.jsonl", tmp_path / "plain", "plain", modulus=23)
    assert (report.rows, report.rewritten, [f.row for f in report.failures]) == (3, 2, [1])
    assert report.failures_file.read_text().count("\n") == 1
    assert [row["style"] for row in read_dataset(tmp_path / "plain")] == ["plain", "plain"]
    with pytest.raises(ValueError, match="behavior flags only apply to --method bridge"):
        augment_dataset(tiny, tmp_path / "x", "pp-aug", behaviors="full")
    with pytest.raises(ValueError, match="would overwrite the input"):
        augment_dataset(tiny, tiny, "plain")


def test_verify_catches_a_wrong_answer(tmp_path, tiny):
    report = verify_dataset(tiny)
    assert (report.rows, report.reward_mean, report.failures) == (12, 1.0, [])
    rows = read_dataset(tiny)
    rows[4]["response"] = rows[4]["response"].replace("\\boxed{", "\\boxed{1")
    (tmp_path / "bad.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    report = verify_dataset(tmp_path / "bad.jsonl", modulus=23)
    assert report.reward_mean == pytest.approx(11 / 12)
    assert [number for number, _ in report.failures] == [4] and report.failures[0][1]


def test_describe_and_read_row(tiny):
    assert describe_dataset(tiny)["rows"] == 12
    assert read_row(tiny, 3) == read_dataset(tiny)[3]
    with pytest.raises(ValueError, match="out of range: the dataset has 12 rows"):
        read_row(tiny, 12)


# ------------------------------------------------------------------------------------------------ config flags
@dataclass(frozen=True)
class _Knobs:
    """A config that grows a field: its flag must appear without touching the parser code."""

    new_knob: int = 3
    """A knob added later."""
    drop: float | None = None
    """Probability of something."""
    enabled: bool = True
    """Whether it is on."""
    path: str | None = None


def test_a_new_config_field_becomes_a_flag():
    parser = argparse.ArgumentParser()
    add_config_flags(parser, _Knobs, metavars={"drop": "P"})
    args = parser.parse_args(["--new-knob", "7", "--drop", "0.5", "--no-enabled", "--path", "x.json"])
    assert (args.new_knob, args.drop, args.enabled, args.path) == (7, 0.5, False, "x.json")
    assert vars(parser.parse_args([])) == {"new_knob": None, "drop": None, "enabled": None, "path": None}
    text = parser.format_help()
    assert "A knob added later." in text and "--drop P" in text and "--enabled, --no-enabled" in text
    assert field_docs(_Knobs) == {"new_knob": "A knob added later.", "drop": "Probability of something.",
                                  "enabled": "Whether it is on."}  # fmt: skip


def test_every_generator_and_behavior_field_has_a_documented_flag():
    for config in (GeneratorConfig, BehaviorConfig):
        assert set(field_docs(config)) == {f.name for f in fields(config)}, config
    parser = build_parser()
    args = parser.parse_args(
        ["data", "generate", "--out", "o", "--max-attempts", "9", "--no-force", "--exploration", "0"]
    )
    assert (args.max_attempts, args.force, args.exploration, args.min_op, args.subgoal) == (9, False, 0.0, None, None)
    args = parser.parse_args(["data", "augment", "--input", "i", "--out", "o", "--method", "bridge", "--no-subgoal"])
    assert args.subgoal is False and not hasattr(args, "min_op")


def test_the_pipeline_imports_no_heavy_stack():
    heavy = "{'torch', 'lightning', 'transformers'}"
    code = f"import sys, bridge_pl.data.pipeline; print(sorted({heavy} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


@pytest.mark.parametrize("with_dag", [True, False])
def test_verify_catches_an_answer_wrong_for_its_question(tmp_path, tiny, with_dag):
    rows = read_dataset(tiny)
    other = next(i for i, row in enumerate(rows) if str(row["final_answer"]) != str(rows[4]["final_answer"]))
    # Another question's response and final_answer agree with each other: only the question can catch them.
    rows[4]["response"], rows[4]["final_answer"] = rows[other]["response"], rows[other]["final_answer"]
    if not with_dag:
        rows = [{key: value for key, value in row.items() if key != "dag"} for row in rows]
    (tmp_path / "swapped.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    report = verify_dataset(tmp_path / "swapped.jsonl", modulus=23)
    assert report.reward_mean == 1.0 and [number for number, _ in report.failures] == [4], report
    expected = read_dataset(tiny)[4]["final_answer"]
    assert any(f"expected {expected}" in error for error in report.failures[0][1]), report.failures
