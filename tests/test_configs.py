"""Every shipped config goes through the real CLI entry point (`bridge_pl.train_cli.main`).

SFT configs run a 2-step fit on the tiny model (the paper configs with their model swapped for the tiny one and
their GPU/FSDP trainer settings turned into a CPU run); their YAML keys are thereby checked against the current
signatures. Trainer snippets are parsed on top of tiny.yaml here; the multi-process ones run in test_strategies.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bridge_pl.cli import main as bridge_main
from bridge_pl.data.loaders import BatchPlanSampler
from bridge_pl.models.model_io import load_model
from bridge_pl.train_cli import main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SFT_CONFIGS = sorted((CONFIGS / "sft").glob("*.yaml"))
TRAINER_CONFIGS = sorted((CONFIGS / "trainer").glob("*.yaml"))
GRPO_CONFIGS = sorted((CONFIGS / "grpo").glob("*.yaml"))
PAPER = {"qwen2.5-1.5b.yaml", "qwen2.5-3b.yaml", "llama-3.2-1b-instruct.yaml"}


def test_every_config_is_covered():
    experiments = sorted((CONFIGS / "experiments").glob("*.yaml"))  # run by tests/test_experiment.py
    covered = {p.resolve() for p in SFT_CONFIGS + TRAINER_CONFIGS + GRPO_CONFIGS + experiments}
    assert covered == {p.resolve() for p in CONFIGS.rglob("*.yaml")}
    assert {p.name for p in SFT_CONFIGS} >= PAPER | {"tiny.yaml", "tiny_bridge.yaml"}
    assert {p.name for p in GRPO_CONFIGS} >= PAPER | {"tiny.yaml"}


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "sft"
    argv = ["data", "generate", "--split", "sft", "--size", "8", "--style", "plain", "--out", str(out)]
    assert bridge_main(argv) == 0
    return out


def tiny_overrides(model_dir: Path, sft_dir: Path, runs: Path) -> list[str]:
    """A 2-step CPU fit of any SFT config on the tiny model and data."""
    return [
        "--model.init_args.model_path", str(model_dir),
        "--data.init_args.train_path", str(sft_dir),
        "--data.init_args.max_length", "256",
        "--data.init_args.truncation", "truncate",
        "--data.init_args.batch_size", "2",
        "--trainer.max_steps", "2",
        "--trainer.val_check_interval", "2",
        "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(runs),
        "--model.init_args.hf_output_dir", "null",  # the model then lands in the run directory
    ]  # fmt: skip


PAPER_ON_CPU = [
    "--trainer.accelerator", "cpu",
    "--trainer.devices", "1",
    "--trainer.strategy", "auto",
    "--trainer.precision", "32-true",
    "--trainer.accumulate_grad_batches", "1",
    "--model.init_args.save_hf_every_n_steps", "1",
]  # fmt: skip


@pytest.mark.parametrize("config", SFT_CONFIGS, ids=lambda p: p.name)
def test_sft_config_runs_two_steps(config, model_dir, sft_dir, tmp_path, capsys):
    argv = ["fit", "--config", str(config), *tiny_overrides(model_dir, sft_dir, tmp_path)]
    if config.name in PAPER:
        argv += PAPER_ON_CPU
    assert main(argv) == 0
    run_dir = next(tmp_path.glob("*/version_0"))
    assert (run_dir / "config.yaml").is_file()  # the resolved config, beside the outputs
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["model"]["init_args"]["model_path"] == str(model_dir)
    assert saved["trainer"]["max_steps"] == 2
    load_model(run_dir / "hf_model")
    if config.name in PAPER:
        assert (run_dir / "hf_model" / "step_2" / "config.json").is_file()


@pytest.mark.parametrize("config", [p for p in SFT_CONFIGS if p.name in PAPER], ids=lambda p: p.name)
def test_paper_config_keeps_the_paper_settings(config, capsys):
    assert main(["fit", "--config", str(config), "--print_config"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    trainer, model, data = resolved["trainer"], resolved["model"]["init_args"], resolved["data"]["init_args"]
    assert model["optimizer"] == {"lr": 5e-6, "betas": [0.9, 0.95], "weight_decay": 0.01, "eps": 1e-8}
    assert model["scheduler"]["name"] == "constant" and model["scheduler"]["warmup_steps"] == 0
    assert trainer["gradient_clip_val"] == 1.0 and trainer["max_epochs"] == 5
    assert trainer["precision"] == "bf16-mixed" and trainer["devices"] == 2
    assert data["batch_size"] * trainer["devices"] * trainer["accumulate_grad_batches"] == 128
    assert data["chat_template"] == ("llama-minimal" if "llama" in config.name else "model")
    assert data["max_length"] == 2048 and data["loss_on"] == "all"
    # 2000 conversations: 250 micro-batches per GPU, 15 whole optimizer steps (the paper's drop_last), not 16
    per_rank = BatchPlanSampler([100] * 2000, data["batch_size"], num_replicas=trainer["devices"],
                                multiple_of=trainer["accumulate_grad_batches"] if data["drop_last"] else 1)  # fmt: skip
    assert per_rank.num_batches // trainer["accumulate_grad_batches"] == 15 == model["save_hf_every_n_steps"]
    assert trainer["strategy"]["class_path"].endswith("FSDPStrategy")


def test_paper_config_without_a_model_says_how_to_fix_it(capsys):
    assert main(["fit", "--config", str(CONFIGS / "sft" / "qwen2.5-1.5b.yaml")]) == 2
    err = capsys.readouterr().err
    assert "model.init_args.model_path='/path/to/Qwen2.5-1.5B'" in err and "bridge model init" in err


@pytest.mark.parametrize("config", TRAINER_CONFIGS, ids=lambda p: p.name)
def test_trainer_snippet_stacks_on_tiny(config, capsys):
    argv = ["fit", "--config", str(CONFIGS / "sft" / "tiny.yaml"), "--config", str(config), "--print_config"]
    assert main(argv) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    snippet = yaml.safe_load(config.read_text())["trainer"]
    for key, value in snippet.items():
        if isinstance(value, dict):
            assert resolved["trainer"][key]["class_path"] == value["class_path"]
        else:
            assert resolved["trainer"][key] == value


def test_single_device_snippet_runs(model_dir, sft_dir, tmp_path):
    argv = ["fit", "--config", str(CONFIGS / "sft" / "tiny.yaml"), "--config", str(CONFIGS / "trainer" / "single.yaml")]
    assert main([*argv, *tiny_overrides(model_dir, sft_dir, tmp_path), "--trainer.accelerator", "cpu"]) == 0
    load_model(next(tmp_path.glob("*/version_0")) / "hf_model")


# ------------------------------------------------------------------------------------------------ GRPO configs
@pytest.fixture(scope="module")
def prompt_dirs(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("prompts")
    for split in ("tiny_rl_train", "tiny_rl_val"):
        assert bridge_main(["data", "generate", "--split", split, "--size", "6", "--out", str(out / split)]) == 0
    return {"train": out / "tiny_rl_train", "val": out / "tiny_rl_val"}


def cpu_grpo_config(config: Path, tmp_path: Path) -> Path:
    """The config with the CPU stand-ins a 2-step test needs: one CPU process, fp32, the HF engine."""
    settings = yaml.safe_load(config.read_text())
    settings["trainer"].update(accelerator="cpu", devices=1, strategy="auto", precision="32-true")
    settings["model"]["init_args"]["engine"] = {"class_path": "bridge_pl.rollout.HFEngine"}
    settings["model"]["init_args"]["gradient_checkpointing"] = False
    path = tmp_path / config.name
    path.write_text(yaml.safe_dump(settings))
    return path


@pytest.mark.parametrize("config", GRPO_CONFIGS, ids=lambda p: p.name)
def test_grpo_config_runs_two_steps(config, model_dir, prompt_dirs, tmp_path):
    argv = [
        "fit", "--config", str(cpu_grpo_config(config, tmp_path)),
        "--model.init_args.model_path", str(model_dir),
        "--model.init_args.hf_output_dir", str(tmp_path / "policy"),
        "--model.init_args.rollout.num_generations", "2",
        "--model.init_args.rollout.sampling.max_new_tokens", "8",
        "--data.init_args.train_path", str(prompt_dirs["train"]),
        "--data.init_args.val_path", str(prompt_dirs["val"]),
        "--data.init_args.batch_size", "2",
        "--trainer.max_steps", "2",
        "--trainer.val_check_interval", "2",
        "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false",
        "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"),
    ]  # fmt: skip
    assert main(argv) == 0
    run_dir = next((tmp_path / "runs").glob("*/version_0"))
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["model"]["class_path"] == "bridge_pl.modules.GRPOModule"
    load_model(tmp_path / "policy")  # the policy as a Hugging Face directory


@pytest.mark.parametrize("config", [p for p in GRPO_CONFIGS if p.name in PAPER], ids=lambda p: p.name)
def test_grpo_paper_config_keeps_the_paper_settings(config, capsys):
    assert main(["fit", "--config", str(config), "--print_config"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    trainer, model, data = resolved["trainer"], resolved["model"]["init_args"], resolved["data"]["init_args"]
    llama = "llama" in config.name
    assert trainer["max_steps"] == (100 if "3b" in config.name else 200) and trainer["val_check_interval"] == 5
    assert trainer["strategy"]["class_path"].endswith("ModelParallelStrategy") and trainer["devices"] == 2
    assert data["batch_size"] * trainer["devices"] == 32 and data["max_prompt_length"] == 512 and data["seed"] == 1
    assert model["engine"]["class_path"] == "bridge_pl.rollout.VLLMEngine"
    rollout, loss, update = model["rollout"], model["loss"], model["update"]
    sampling = rollout["sampling"]
    assert rollout["num_generations"] == 32 and sampling["max_new_tokens"] == 2560 and sampling["temperature"] == 1.0
    assert rollout["format_reward_scale"] == (0.05 if llama else 0.0)
    assert loss["kl_coef"] == (0.01 if llama else 0.001) and loss["kl_mask_threshold"] == (0.15 if llama else None)
    assert loss["aggregation"] == "grpo" and loss["advantage_scale"] == "group" and loss["epsilon_low"] == 0.2
    assert update["max_grad_norm"] == (0.2 if llama else 1.0) and update["ppo_epochs"] == update["mini_batches"] == 1
    assert model["optimizer"] == {"lr": 1e-6, "betas": [0.9, 0.999], "weight_decay": 0.01, "eps": 1e-8}
    assert data["chat_template"] == ("llama-minimal" if llama else "model")
