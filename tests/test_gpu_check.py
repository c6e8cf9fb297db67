"""scripts/gpu_check.sh (the GPU lane) on a CPU: its options, the commands it would run, and the clean skip.

The lane itself needs a CUDA device (`bash scripts/gpu_check.sh` there); here we check what can go wrong before
one is lent: a flag a bench script does not take, a config key the Lightning CLI refuses, a check left out.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
CHECKS = ("gpu-tier", "bench-sft", "bench-grpo", "bench-rollout", "grpo-run", "sft-fsdp2")

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def gpu_check(*args: str, out: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BRIDGE_PYTHON": sys.executable, "OUT": str(out or ROOT / "no-out-expected")}
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def commands(dry_run: str, marker: str) -> list[list[str]]:
    """The argument lists of the dry run's commands whose line holds `marker`, from the word after it."""
    found = []
    for line in dry_run.splitlines():
        if line.startswith("+ ") and marker in line:
            words = shlex.split(line[2:])
            found.append(words[words.index(marker) + 1 :])
    return found


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dry_run() -> str:
    result = gpu_check("--dry-run")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_help_names_every_option():
    result = gpu_check("--help")
    assert result.returncode == 0
    for option in ("--list", "--only", "--dry-run", "--cpu", "BRIDGE_PYTHON", "OUT", "BRIDGE_WHEELS"):
        assert option in result.stdout


def test_list_names_the_checks_within_nine_minutes_and_the_opt_in_one_apart():
    result = gpu_check("--list")
    assert result.returncode == 0
    rows = [line.split() for line in result.stdout.splitlines()]
    assert tuple(row[0] for row in rows) == (*CHECKS, "experiment")
    limits = [int(row[1].rstrip("s")) for row in rows]
    assert all(limit > 0 for limit in limits) and sum(limits[:-1]) <= 525
    assert "(opt-in: --only experiment)" in result.stdout.splitlines()[-1]


def test_the_opt_in_experiment_runs_only_when_named_with_a_budget_of_its_own():
    from bridge_pl.experiment import load_config

    assert "== experiment" not in gpu_check("--dry-run").stdout  # opt-in
    result = gpu_check("--only", "experiment", "--dry-run")
    assert result.returncode == 0, result.stderr
    (run,) = commands(result.stdout, "bridge_pl.cli")
    assert run == ["experiment", "run", "--config", "configs/experiments/gpu_small.yaml"]
    config = load_config(ROOT / run[-1])
    assert config.base_preset == "llama-30m" and "--trainer.accelerator=gpu" in config.grpo_args
    assert "<experiment report snippet> runs/experiments/gpu_small/report.json" in result.stdout
    assert "budget 575s" in result.stdout.splitlines()[0]  # its limit + 15 s, over the lane's 525
    assert "budget 525s" in gpu_check("--dry-run").stdout.splitlines()[0]


def test_unknown_check_is_refused_by_name():
    result = gpu_check("--only", "bench-sft,bench-rl", "--dry-run")
    assert result.returncode == 2
    assert "unknown check 'bench-rl'" in result.stderr
    assert all(name in result.stderr for name in CHECKS)  # the message lists the valid names
    assert result.stdout == ""
    assert gpu_check("--frobnicate").returncode == 2


def test_dry_run_prints_each_check_and_its_commands(dry_run):
    for name in CHECKS:
        assert re.search(rf"^== {name} \(limit \d+s\)", dry_run, re.M), name
    assert "+ " + shlex.quote(sys.executable) + " -m pytest -m gpu -q -rs -p no:cacheprovider tests" in dry_run
    (sdpa, flash) = commands(dry_run, "scripts/bench_sft.py")
    assert ["--accelerator", "gpu", "--precision", "bf16-mixed", "--attn-implementation", "sdpa"] == sdpa[:6]
    assert "flash_attention_2" in flash and flash[flash.index("--batching") + 1] == "pack"
    (grpo,) = commands(dry_run, "scripts/bench_grpo.py")
    assert grpo[:4] == ["--accelerator", "gpu", "--precision", "bf16-mixed"]
    inits = commands(dry_run, "bridge_pl.cli")
    assert [c[:4] for c in inits if c[0] == "model"] == [["model", "init", "--preset", "llama-30m"]] * 2
    fits = [c for c in inits if c[0] == "fit"]
    assert [c[2] for c in fits] == ["configs/grpo/tiny.yaml", "configs/sft/tiny.yaml"]
    assert "configs/trainer/fsdp2.yaml" in fits[1] and "--trainer.strategy.init_args.data_parallel_size" in fits[1]
    assert "HF_HUB_OFFLINE=1" in dry_run and f"PYTHONPATH={ROOT}" in dry_run


def test_only_runs_the_named_checks():
    result = gpu_check("--only", "grpo-run", "--dry-run")
    assert result.returncode == 0
    assert "== grpo-run" in result.stdout and "== bench-sft" not in result.stdout


def test_dry_run_fit_commands_pass_the_lightning_cli_parser(dry_run):
    """Every override the lane gives `bridge fit` is a key the configs and modules have (--print_config)."""
    from bridge_pl.train_cli import main

    fits = [c for c in commands(dry_run, "bridge_pl.cli") if c[0] == "fit"]
    assert len(fits) == 2
    for argv in fits:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert main([*argv, "--print_config"]) == 0
        config = printed.getvalue()
        assert "accelerator: gpu" in config and "precision: bf16-mixed" in config
    assert "data_parallel_size: 1" in config  # the FSDP2 run: a one-rank mesh


def test_dry_run_bench_commands_pass_the_bench_parsers(dry_run, monkeypatch):
    """The flags the lane gives the bench scripts exist there (a CUDA device and flash-attn faked present)."""
    bench_sft, bench_grpo = load_script("bench_sft"), load_script("bench_grpo")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name == "flash_attn" else find_spec(name))
    sdpa, flash = (bench_sft.parse_args(argv) for argv in commands(dry_run, "scripts/bench_sft.py"))
    assert (sdpa.accelerator, sdpa.precision, sdpa.attn_implementation) == ("gpu", "bf16-mixed", "sdpa")
    assert (flash.attn_implementation, flash.batching) == ("flash_attention_2", "pack")
    (grpo,) = commands(dry_run, "scripts/bench_grpo.py")
    args = bench_grpo.parse_args(grpo)
    assert (args.accelerator, args.precision, args.skip_trl) == ("gpu", "bf16-mixed", True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a CUDA machine the lane runs for real")
def test_without_cuda_every_check_is_skipped_cleanly(tmp_path):
    result = gpu_check(out=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no CUDA device" in result.stdout and "skipping all checks" in result.stdout
    rows = [line.split()[:2] for line in (tmp_path / "summary.txt").read_text().splitlines()[2:-1]]
    assert rows == [[name, "skip"] for name in CHECKS]


def test_a_python_without_torch_is_refused(tmp_path):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n")
    fake.chmod(0o755)
    env = {**os.environ, "BRIDGE_PYTHON": str(fake), "OUT": str(tmp_path / "out")}
    result = subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "cannot import torch" in result.stderr and "BRIDGE_PYTHON" in result.stderr


def test_bench_sft_defaults_and_refusals(monkeypatch, capsys):
    bench_sft = load_script("bench_sft")
    args = bench_sft.parse_args([])
    assert (args.accelerator, args.precision, args.attn_implementation, args.batching) == (
        "cpu", "32-true", "sdpa", "bucket",
    )  # fmt: skip
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for argv, message in (
        (["--accelerator", "gpu"], "torch sees no CUDA device"),
        (["--attn-implementation", "flash_attention_2"], "runs on CUDA only"),
        (["--steps", "0"], "need steps >= 1"),
    ):
        with pytest.raises(SystemExit) as exit_:
            bench_sft.parse_args(argv)
        assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_bench_sft_refuses_flash_attention_without_flash_attn(monkeypatch, capsys):
    bench_sft = load_script("bench_sft")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "flash_attn" else find_spec(name))
    with pytest.raises(SystemExit):
        bench_sft.parse_args(["--accelerator", "gpu", "--attn-implementation", "flash_attention_2"])
    assert "needs the flash-attn package" in capsys.readouterr().err


def test_bench_grpo_measures_ours_alone_without_trl(monkeypatch, capsys):
    bench_grpo = load_script("bench_grpo")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "trl" else find_spec(name))
    args = bench_grpo.parse_args([])
    assert (args.accelerator, args.precision, args.skip_trl) == ("cpu", "32-true", True)
    assert "TRL is not installed" in capsys.readouterr().out
    assert bench_grpo.parse_args(["--skip-trl"]).skip_trl
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        bench_grpo.parse_args(["--accelerator", "gpu"])
