"""Fault drills: a real `kill -9` of a real training process, a resume, and the weights of a run never killed.

Each drill trains a tiny model twice with the same settings: once straight through, once killed (SIGKILL, no
cleanup, no Python `finally`) by `KillAtStep` mid-run and then resumed (`bridge fit --ckpt_path last.ckpt`, or
`bridge experiment run` again). The exported ``model.safetensors`` must be bit-identical, which holds only if the
checkpoint carries the model, the optimizer, the scheduler, the RNG and the data loader's place in its epoch.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback
from safetensors.torch import load_file

from bridge_pl.models.model_io import init_model_dir

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
KILL_ENV = "BRIDGE_TEST_KILL_AT_STEP"
KILLED = (-signal.SIGKILL, 128 + signal.SIGKILL)  # the child itself, or a shell between us and it


class KillAtStep(Callback):
    """SIGKILL the training process at the end of optimizer step ``$BRIDGE_TEST_KILL_AT_STEP`` (no-op when unset).

    Lightning runs ModelCheckpoint after the other callbacks, so a kill at a checkpointed step lands before that
    step's checkpoint is written.
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        at = os.environ.get(KILL_ENV)
        if at and trainer.global_step == int(at):
            os.kill(os.getpid(), signal.SIGKILL)


CALLBACKS = {
    "trainer": {
        "callbacks": [
            {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
             "init_args": {"every_n_train_steps": 2, "save_last": True, "save_top_k": -1}},
            {"class_path": "tests.test_fault_drills.KillAtStep"},
        ]
    }
}  # fmt: skip


def bridge(argv: list[str], cwd: Path, kill_at: int | None = None) -> subprocess.CompletedProcess:
    """Run `python -m bridge_pl.cli ...` in a fresh process (killed at step `kill_at` when given)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "BRIDGE_PROGRESS": "plain"}
    env.pop(KILL_ENV, None)
    if kill_at is not None:
        env[KILL_ENV] = str(kill_at)
    command = [sys.executable, "-m", "bridge_pl.cli", *argv]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]


def killed(result: subprocess.CompletedProcess) -> None:
    assert result.returncode in KILLED, f"exit {result.returncode}:\n{(result.stdout + result.stderr)[-4000:]}"


def assert_same_weights(a: Path, b: Path) -> None:
    """Every tensor of two exported models is bit-identical (names listed where they differ)."""
    first, second = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert sorted(first) == sorted(second)
    differ = [name for name in first if not torch.equal(first[name], second[name])]
    assert not differ, f"{len(differ)} of {len(first)} tensors differ, e.g. " + ", ".join(
        f"{n} (max |diff| {(first[n].double() - second[n].double()).abs().max().item():.3g})" for n in differ[:5]
    )


@pytest.fixture(scope="module")
def callbacks_yaml(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("callbacks") / "callbacks.yaml"
    path.write_text(yaml.safe_dump(CALLBACKS))
    return path


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("work")


def generate(work: Path, name: str, *args: str) -> Path:
    out = work / name
    if not out.exists():
        ok(bridge(["data", "generate", *args, "--out", str(out)], work))
    return out


def drill(tmp_path: Path, fit: list[str], name: str, max_steps: int, kill_at: int, checkpoints: list[int]) -> None:
    """Straight run vs killed-at-`kill_at` + resumed run of `fit` (a `bridge fit` argv); equal weights at the end."""

    def run(where: str, *extra: str, kill: int | None = None) -> subprocess.CompletedProcess:
        argv = [*fit, "--trainer.max_steps", str(max_steps),
                "--trainer.logger.init_args.save_dir", str(tmp_path / where / "runs"),
                "--model.init_args.hf_output_dir", str(tmp_path / where / "hf"), *extra]  # fmt: skip
        return bridge(argv, tmp_path, kill)

    ok(run("straight"))
    killed(run("drill", kill=kill_at))
    hf = tmp_path / "drill" / "hf"
    assert not (hf / "config.json").exists()  # killed before the export
    saved = tmp_path / "drill" / "runs" / name / "version_0" / "checkpoints"
    assert sorted(p.name for p in saved.iterdir()) == sorted(
        ["last.ckpt", *(f"epoch=0-step={s}.ckpt" for s in checkpoints)]
    )
    last = torch.load(saved / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["global_step"] == checkpoints[-1]
    ok(run("drill", "--ckpt_path", str(saved / "last.ckpt")))
    export = json.loads((hf / "bridge_export.json").read_text())
    assert export["step"] == max_steps and export["run_id"] == last["bridge_run_id"]
    resumed = torch.load(tmp_path / "drill" / "runs" / name / "version_1" / "checkpoints" / "last.ckpt",
                         map_location="cpu", weights_only=False)  # fmt: skip
    assert resumed["global_step"] == max_steps
    assert_same_weights(tmp_path / "straight" / "hf", hf)


def test_sft_killed_mid_run_resumes_to_the_same_weights(tmp_path, model_dir, work, callbacks_yaml):
    data = generate(work, "sft", "--split", "sft", "--size", "24", "--style", "plain")
    fit = ["fit", "--config", str(ROOT / "configs" / "sft" / "tiny.yaml"), "--config", str(callbacks_yaml),
           "--model.init_args.model_path", str(model_dir), "--data.init_args.train_path", str(data),
           "--data.init_args.batch_size", "2", "--trainer.val_check_interval", "null",
           "--trainer.limit_val_batches", "0", "--trainer.enable_progress_bar", "false"]  # fmt: skip
    drill(tmp_path, fit, "sft_tiny", max_steps=6, kill_at=5, checkpoints=[2, 4])


@pytest.fixture(scope="module")
def reference_dir(tmp_path_factory) -> Path:
    """Another llama-1m (seed 1): the KL reference of the GRPO drill."""
    return init_model_dir(tmp_path_factory.mktemp("reference"), preset="llama-1m", seed=1)


def test_grpo_killed_mid_run_resumes_to_the_same_weights(tmp_path, model_dir, reference_dir, work, callbacks_yaml):
    # A random policy earns no reward, so every advantage is 0 and the policy loss gives no gradient: a KL to
    # another model (kl_coef 1) gives a real one, which depends on the sampled rollouts (the engine's seeds per
    # step), the prompts drawn (the loader's place) and the mini-batch shuffle, all of which a resume must restore.
    prompts = generate(work, "rl", "--split", "tiny_rl_train", "--size", "16")
    fit = ["fit", "--config", str(ROOT / "configs" / "grpo" / "tiny.yaml"), "--config", str(callbacks_yaml),
           "--model.init_args.model_path", str(model_dir), "--model.init_args.ref_model_path", str(reference_dir),
           "--model.init_args.loss.kl_coef", "1.0", "--data.init_args.train_path", str(prompts),
           "--data.init_args.val_path", "null", "--data.init_args.batch_size", "2",
           "--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0",
           "--trainer.val_check_interval", "null", "--model.init_args.rollout.num_generations", "2",
           "--model.init_args.rollout.sampling.max_new_tokens", "16",
           "--model.init_args.update.micro_batch_size", "4", "--trainer.enable_progress_bar", "false"]  # fmt: skip
    drill(tmp_path, fit, "grpo_tiny", max_steps=4, kill_at=3, checkpoints=[2])


# ------------------------------------------------------------------------------------------------ experiment
MICRO_SFT = [
    "--trainer.max_steps", "4", "--trainer.val_check_interval", "null", "--trainer.limit_val_batches", "0",
    "--data.init_args.limit", "16", "--data.init_args.batch_size", "4", "--data.init_args.max_length", "512",
    "--data.init_args.truncation", "truncate",
]  # fmt: skip
MICRO_GRPO = [
    "--trainer.max_steps", "1", "--trainer.val_check_interval", "null", "--trainer.limit_val_batches", "0",
    "--trainer.num_sanity_val_steps", "0", "--data.init_args.batch_size", "2",
    "--model.init_args.rollout.num_generations", "2", "--model.init_args.rollout.sampling.max_new_tokens", "8",
]  # fmt: skip


def micro_experiment(tmp_path: Path, out_dir: Path, callbacks_yaml: Path) -> Path:
    """configs/experiments/tiny.yaml shrunk to seconds a stage; its SFT runs carry `KillAtStep` (a no-op unless
    $BRIDGE_TEST_KILL_AT_STEP is set), so the killed and the straight experiments have the same settings."""
    settings = yaml.safe_load((ROOT / "configs" / "experiments" / "tiny.yaml").read_text())
    settings |= {
        "out_dir": str(out_dir), "seeds": [0], "methods": {"vanilla": {"style": "plain"}}, "base_preset": "llama-1m",
        "pretrain": None, "sets": {"rl_train": "tiny_rl_train", "rl_val": "tiny_rl_val", "test_id": "tiny_test_id"},
        "sft_config": str(ROOT / "configs" / "sft" / "tiny.yaml"),
        "grpo_config": str(ROOT / "configs" / "grpo" / "tiny.yaml"),
        "sft_args": ["--config", str(callbacks_yaml), *MICRO_SFT], "grpo_args": MICRO_GRPO,
        "test_sets": ["test_id"], "eval_max_new_tokens": 8, "eval_limit": 2,
        "probe": {"prompts": "rl_train", "targets": "rl_val", "size": 2, "num_generations": 2, "max_new_tokens": 8,
                  "influence": False},
    }  # fmt: skip
    path = tmp_path / f"{out_dir.name}.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def test_an_experiment_whose_sft_stage_is_killed_redoes_it_on_rerun(tmp_path, callbacks_yaml):
    drilled, straight = tmp_path / "drilled", tmp_path / "straight"
    run = ["experiment", "run", "--config", str(micro_experiment(tmp_path, drilled, callbacks_yaml))]
    first = bridge(run, tmp_path, kill_at=3)
    assert first.returncode != 0 and "failed (exit -9)" in first.stderr, (first.stdout + first.stderr)[-4000:]
    sft_model = drilled / "vanilla" / "seed_0" / "sft_model"
    assert not (sft_model / ".stage.json").exists() and not (sft_model / "config.json").exists()
    second = bridge(run, tmp_path)
    ok(second)
    assert "vanilla seed 0: sft" in second.stdout  # the interrupted stage is redone, not taken as finished
    ok(bridge(["experiment", "run", "--config", str(micro_experiment(tmp_path, straight, callbacks_yaml))], tmp_path))
    for model in ("sft_model", "rft_model"):
        assert_same_weights(straight / "vanilla" / "seed_0" / model, drilled / "vanilla" / "seed_0" / model)
