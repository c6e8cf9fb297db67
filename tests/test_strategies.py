"""DDP, FSDP2 and FSDP1 SFT runs, and GRPO under FSDP2, with 2 CPU processes (gloo), through the real CLI.

Each run trains the tiny model for 2 steps from tiny.yaml + a configs/trainer snippet and must write the Hugging
Face model once (rank 0, after gathering the shards under FSDP), loadable, with changed weights.

FSDP1 on CPU needs a shim, written below, because two checks refuse it (measured with torch 2.13, lightning
2.6.6): Lightning's accelerator connector raises "The strategy `fsdp` requires a GPU accelerator, but received
`accelerator='cpu'`" for `FSDPStrategy` itself (a subclass is not checked), and torch's FSDP1, which Lightning
hands `device_id=None` on CPU, raises "FSDP needs a non-CPU accelerator device, but no accelerator device is
detected". The shim subclass only passes `device_id=cpu`; wrapping, sharding, clipping and the gathers are the
real FSDPStrategy + FSDP1 code. Its checkpoints are sharded: Lightning's full-state-dict checkpoint
(offload_to_cpu=True) segfaults in FSDP1's state-dict hook on CPU. On a GPU configs/trainer/fsdp.yaml runs as is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bridge_pl.cli import main as bridge_main
from bridge_pl.models.model_io import build_model, load_model
from bridge_pl.models.tokenizer import build_tokenizer
from bridge_pl.modules.parallel import DecoderLayerPolicy, decoder_layer_classes

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
SAVED = "saved the Hugging Face model to"
CPU_FSDP_SHIM = '''
import torch
from lightning.pytorch.strategies import FSDPStrategy


class CPUFSDPStrategy(FSDPStrategy):
    """FSDPStrategy with FSDP1 placed on the CPU (test only)."""

    def _setup_model(self, model):
        from torch.distributed.fsdp import FullyShardedDataParallel

        return FullyShardedDataParallel(
            module=model,
            cpu_offload=self.cpu_offload,
            mixed_precision=self.mixed_precision_config,
            sharding_strategy=self.sharding_strategy,
            device_id=torch.device("cpu"),
            **self.kwargs,
        )
'''


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "sft"
    argv = ["data", "generate", "--split", "sft", "--size", "16", "--style", "plain", "--out", str(out)]
    assert bridge_main(argv) == 0
    return out


def fit_two_processes(tmp_path: Path, model_dir: Path, sft_dir: Path, snippet: str, *extra: str) -> Path:
    """Run `python -m bridge_pl.train_cli fit` of tiny SFT on 2 CPU processes; returns the run's log directory."""
    return run_two_processes(
        tmp_path, CONFIGS / "sft" / "tiny.yaml", snippet, model_dir,
        "--trainer.val_check_interval", "2",
        "--data.init_args.train_path", str(sft_dir),
        "--data.init_args.max_length", "256",
        "--data.init_args.truncation", "truncate",
        "--data.init_args.batch_size", "2",
        *extra,
    )  # fmt: skip


def run_two_processes(tmp_path: Path, config: Path, snippet: str, model_dir: Path, *extra: str) -> Path:
    """`config` + a trainer snippet on 2 CPU processes for 2 steps; returns the run's log directory."""
    argv = [
        sys.executable, "-m", "bridge_pl.train_cli", "fit",
        "--config", str(config),
        "--config", str(CONFIGS / "trainer" / snippet),
        "--trainer.accelerator", "cpu",
        "--trainer.devices", "2",
        "--trainer.max_steps", "2",
        "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
        "--model.init_args.model_path", str(model_dir),
        "--model.init_args.hf_output_dir", "null",  # the model lands in the run directory
        *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=540)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert output.count(SAVED) == 1, output[-3000:]  # rank 0 writes it, once
    (run_dir,) = (tmp_path / "runs").glob("*/version_*")
    return run_dir


def assert_trained_model_saved(run_dir: Path, model_dir: Path) -> None:
    (hf_dir,) = run_dir.glob("hf_model")
    trained, initial = load_model(hf_dir).state_dict(), load_model(model_dir).state_dict()
    assert trained.keys() == initial.keys()
    changed = [k for k in initial if not torch.equal(initial[k], trained[k])]
    assert len(changed) >= len(initial) - 1  # every weight moved (bar at most a buffer)


def test_decoder_layer_policy_wraps_each_decoder_layer():
    for preset in ("llama-1m", "qwen2-3m"):
        model = build_model(preset, build_tokenizer())
        targets = DecoderLayerPolicy()._run_policy(model, set(), {})
        layers = list(model.model.layers)
        assert list(targets) == layers and len(layers) == model.config.num_hidden_layers
        expected = "LlamaDecoderLayer" if "llama" in preset else "Qwen2DecoderLayer"
        assert {type(m).__name__ for m in targets} == {expected}
    with pytest.raises(ValueError, match="layer_class_names"):
        decoder_layer_classes(torch.nn.Linear(2, 2))


def test_ddp_two_processes(tmp_path, model_dir, sft_dir):
    run_dir = fit_two_processes(tmp_path, model_dir, sft_dir, "ddp.yaml")
    assert_trained_model_saved(run_dir, model_dir)


def test_fsdp2_two_processes(tmp_path, model_dir, sft_dir):
    run_dir = fit_two_processes(tmp_path, model_dir, sft_dir, "fsdp2.yaml")
    assert_trained_model_saved(run_dir, model_dir)
    assert list(run_dir.glob("checkpoints/*.ckpt"))  # one file: the full state dict gathered on rank 0


def test_grpo_under_fsdp2_two_processes(tmp_path, model_dir):
    for split in ("tiny_rl_train", "tiny_rl_val"):
        argv = ["data", "generate", "--split", split, "--size", "8", "--out", str(tmp_path / split), "--quiet"]
        assert bridge_main(argv) == 0
    run_dir = run_two_processes(
        tmp_path, CONFIGS / "grpo" / "tiny.yaml", "fsdp2.yaml", model_dir,
        "--data.init_args.train_path", str(tmp_path / "tiny_rl_train"),
        "--data.init_args.val_path", str(tmp_path / "tiny_rl_val"),
        "--data.init_args.batch_size", "2",
        "--model.init_args.rollout.num_generations", "2",
        "--model.init_args.rollout.sampling.max_new_tokens", "8",
        "--trainer.val_check_interval", "2",
        "--trainer.limit_val_batches", "1",
    )  # fmt: skip
    assert_trained_model_saved(run_dir, model_dir)
    assert (run_dir / "completions" / "step_0.jsonl").is_file()  # rank 0 wrote the rollouts of step 0


@pytest.mark.slow
def test_fsdp1_two_processes_on_cpu(tmp_path, model_dir, sft_dir):
    (tmp_path / "cpu_fsdp.py").write_text(CPU_FSDP_SHIM)
    run_dir = fit_two_processes(
        tmp_path,
        model_dir,
        sft_dir,
        "fsdp.yaml",
        "--trainer.strategy.class_path", "cpu_fsdp.CPUFSDPStrategy",
        "--trainer.strategy.init_args.state_dict_type", "sharded",
    )  # fmt: skip
    assert_trained_model_saved(run_dir, model_dir)
    assert (run_dir / "config.yaml").read_text().count("DecoderLayerPolicy") == 2  # wrap + checkpointing units


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA devices")
def test_fsdp1_on_gpus(tmp_path, model_dir, sft_dir):
    run_dir = fit_two_processes(tmp_path, model_dir, sft_dir, "fsdp.yaml", "--trainer.accelerator", "gpu")
    assert_trained_model_saved(run_dir, model_dir)
