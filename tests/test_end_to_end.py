"""The slow tier's end-to-end check: the tiny default SFT model gains from GRPO (the README's main job, in full).

Runs the real pipeline (`bridge experiment run`) for vanilla SFT data and seed 0 of configs/experiments/tiny.yaml
(pretrain, SFT, 2000-problem evaluations, 100 GRPO steps) in a scratch directory: ~33 minutes on 2 CPU cores.
Measured on the dev machine (2026-12-02): test_id 14.85% -> 15.00%, test_ood 12.10% -> 13.15% (greedy, strict
match).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bridge_pl.cli import main as bridge_main

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")]
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "experiments" / "tiny.yaml"


def test_grpo_raises_the_accuracy_of_the_tiny_sft_model(tmp_path):
    settings = yaml.safe_load(CONFIG.read_text()) | {"out_dir": str(tmp_path / "out"), "seeds": [0]}
    settings["methods"] = {"vanilla": settings["methods"]["vanilla"]}
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(settings))
    assert bridge_main(["experiment", "run", "--config", str(config)]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    row = report["table"]["vanilla"]
    assert row["test_id"]["sft"]["mean"] > 0.05  # the SFT model learned the task somewhat
    assert row["test_id"]["gain"]["mean"] > 0.0 and row["test_ood"]["gain"]["mean"] > 0.0
    curve = report["runs"]["vanilla/seed_0"]["reward_curve"]
    assert len(curve) == 100 and all(0.0 <= reward <= 1.0 for _, reward in curve)
