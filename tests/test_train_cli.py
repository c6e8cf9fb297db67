"""The training CLI: errors before any work, the model_path -> tokenizer_path link, `bridge fit` dispatch, `-m`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bridge_pl.cli import main as bridge_main
from bridge_pl.models.model_io import init_model_dir
from bridge_pl.train_cli import build_cli, main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "sft" / "tiny.yaml"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return init_model_dir(tmp_path_factory.mktemp("model"), preset="llama-1m")


@pytest.fixture(scope="module")
def sft_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data") / "sft"
    argv = ["data", "generate", "--split", "sft", "--size", "4", "--style", "plain", "--out", str(out)]
    assert bridge_main(argv) == 0
    return out


def write_config(tmp_path: Path, edit) -> Path:
    config = yaml.safe_load(TINY.read_text())
    edit(config)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_unknown_model_key_fails_before_any_work_and_names_the_key(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the config's relative paths (runs/, data/) would land here
    config = write_config(tmp_path, lambda c: c["model"]["init_args"].update(learning_rate=0.1))
    assert main(["fit", "--config", str(config)]) != 0
    err = capsys.readouterr().err
    assert "learning_rate" in err and "not accepted" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]  # nothing was written


def test_unknown_nested_key_is_named(tmp_path, capsys):
    config = write_config(tmp_path, lambda c: c["model"]["init_args"]["optimizer"].update(momentum=0.9))
    assert main(["fit", "--config", str(config)]) != 0
    assert "momentum" in capsys.readouterr().err


def test_invalid_values_are_listed_together_with_their_keys(tmp_path, model_dir, capsys):
    def edit(config):
        config["model"]["init_args"].update(model_path=str(model_dir), save_hf_every_n_steps=0)
        config["model"]["init_args"]["optimizer"]["lr"] = -1.0

    assert main(["fit", "--config", str(write_config(tmp_path, edit))]) == 2
    err = capsys.readouterr().err
    assert "model.init_args.optimizer.lr=-1.0" in err and "model.init_args.save_hf_every_n_steps=0" in err
    assert "Traceback" not in err


def test_model_path_is_linked_to_the_tokenizer(model_dir, sft_dir):
    argv = ["--config", str(TINY), "--model.init_args.model_path", str(model_dir)]
    cli = build_cli([*argv, "--data.init_args.train_path", str(sft_dir)], run=False)
    assert cli.datamodule.tokenizer_path == str(model_dir) == cli.model.model_path


def test_bridge_fit_dispatches_to_the_training_cli(capsys):
    assert bridge_main(["fit", "--config", str(TINY), "--print_config"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    assert resolved["model"]["class_path"] == "bridge_pl.modules.SFTModule"
    assert "tokenizer_path" not in resolved["data"]["init_args"]  # it follows model_path


def test_python_dash_m_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "bridge_pl.train_cli", "fit", "--config", str(TINY), "--print_config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "bridge_pl.modules.SFTModule" in result.stdout
