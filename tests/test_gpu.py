"""The gpu tier: SFT and GRPO on a CUDA device with bf16 autocast (`bash scripts/test.sh -m gpu`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bridge_pl.cli import main as bridge_main
from bridge_pl.models.model_io import init_model_dir, load_model
from bridge_pl.train_cli import main

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning"),
]
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
GPU = ["--trainer.accelerator", "gpu", "--trainer.devices", "1", "--trainer.precision", "bf16-mixed",
       "--trainer.enable_progress_bar", "false"]  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return init_model_dir(tmp_path_factory.mktemp("model"), preset="llama-10m")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data")
    for split, extra in (("tiny_sft", ["--style", "plain", "--size", "64"]), ("tiny_rl_train", ["--size", "32"]),
                         ("tiny_rl_val", ["--size", "8"])):  # fmt: skip
        assert bridge_main(["data", "generate", "--split", split, *extra, "--out", str(out / split), "--quiet"]) == 0
    return out


def test_sft_on_gpu(model_dir, data, tmp_path):
    argv = ["fit", "--config", str(CONFIGS / "sft" / "tiny.yaml"), *GPU, "--trainer.max_steps", "4",
            "--model.init_args.model_path", str(model_dir), "--model.init_args.hf_output_dir", str(tmp_path / "sft"),
            "--data.init_args.train_path", str(data / "tiny_sft"), "--trainer.logger.init_args.save_dir",
            str(tmp_path / "runs")]  # fmt: skip
    assert main(argv) == 0
    trained = load_model(tmp_path / "sft").state_dict()
    assert any(not torch.equal(v, trained[k]) for k, v in load_model(model_dir).state_dict().items())


def test_grpo_on_gpu(model_dir, data, tmp_path):
    argv = ["fit", "--config", str(CONFIGS / "grpo" / "tiny.yaml"), *GPU, "--trainer.max_steps", "3",
            "--trainer.val_check_interval", "3", "--model.init_args.model_path", str(model_dir),
            "--model.init_args.hf_output_dir", str(tmp_path / "rft"),
            "--model.init_args.rollout.sampling.max_new_tokens", "64",
            "--data.init_args.train_path", str(data / "tiny_rl_train"), "--data.init_args.val_path",
            str(data / "tiny_rl_val"), "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")]  # fmt: skip
    assert main(argv) == 0
    load_model(tmp_path / "rft")
