"""scripts/validate_influence.py end to end on a from-scratch model: screening, prediction, measurement, JSON."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from bridge_pl.data.pipeline import generate_dataset, generation_plan

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "validate_influence.py"


def _script():
    spec = importlib.util.spec_from_file_location("validate_influence", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_script_screens_targets_and_writes_every_measurement(tmp_path, model_dir, monkeypatch, capsys):
    prompts = tmp_path / "prompts"
    generate_dataset(prompts, generation_plan(split="tiny_rl_val", size=6))
    out = tmp_path / "validation.json"
    argv = ["validate_influence.py", "--model", str(model_dir), "--probe", str(prompts), "--target", str(prompts),
            "--probe-size", "3", "--target-size", "2", "--target-pool", "6", "--target-alpha", "0", "1",
            "--screen-generations", "2", "--num-generations", "2", "--fresh-generations", "2",
            "--max-new-tokens", "6", "--parameters", "lm_head", "--out", str(out)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    _script().main()
    printed = capsys.readouterr().out
    assert "the first 2 of the 6 of 6 screened prompts" in printed and "measurement reliability" in printed
    result = json.loads(out.read_text())
    assert result["target_index"] == [0, 1] and len(result["alphas"]) == 3
    assert set(result["predicted"]) == {"lm_head", "all"} and all(len(v) == 3 for v in result["predicted"].values())
    for measured, error, alpha in zip(result["measured"], result["standard_errors"], result["alphas"], strict=True):
        assert (measured is None) == (alpha in (0.0, 1.0))  # a prompt with equal rewards takes no step
        assert measured is None or (math.isfinite(measured) and error >= 0)


def test_no_target_in_the_window_is_a_clear_error(tmp_path, model_dir, monkeypatch):
    prompts = tmp_path / "prompts"
    generate_dataset(prompts, generation_plan(split="tiny_rl_val", size=2))
    argv = ["validate_influence.py", "--model", str(model_dir), "--probe", str(prompts), "--target", str(prompts),
            "--target-alpha", "0.4", "0.6", "--screen-generations", "2", "--max-new-tokens", "4"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit, match="widen --target-alpha or raise --target-pool"):
        _script().main()
