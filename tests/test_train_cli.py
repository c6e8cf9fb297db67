"""The training CLI: errors before any work, the model_path -> tokenizer_path link, `bridge fit` dispatch, `-m`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bridge_pl.cli import main as bridge_main
from bridge_pl.train_cli import build_cli, main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "sft" / "tiny.yaml"


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
    assert cli.datamodule.trust_remote_code is cli.model.trust_remote_code is False
    trusted = build_cli([*argv, "--data.init_args.train_path", str(sft_dir), "--model.init_args.trust_remote_code",
                         "true"], run=False)  # fmt: skip
    assert trusted.datamodule.trust_remote_code is trusted.model.trust_remote_code is True


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


def test_bad_data_fails_before_the_trainer_writes_anything(tmp_path, model_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"query": "What is 1 + 1?"}\n')  # no response column
    argv = ["fit", "--config", str(TINY), "--model.init_args.model_path", str(model_dir)]
    assert main([*argv, "--data.init_args.train_path", str(rows)]) == 2
    err = capsys.readouterr().err
    assert f"{rows}, line 1: missing column(s) response" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.jsonl"]  # no run directory was made


def test_resume_keeps_the_settings_given_and_names_those_that_differ(tmp_path, model_dir, sft_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["fit", "--config", str(TINY), "--model.init_args.model_path", str(model_dir),
            "--data.init_args.train_path", str(sft_dir), "--data.init_args.batch_size", "2",
            "--trainer.val_check_interval", "null", "--trainer.limit_val_batches", "0",
            "--trainer.enable_progress_bar", "false"]  # fmt: skip
    assert main([*argv, "--trainer.max_steps", "1", "--model.init_args.hf_output_dir", "first"]) == 0
    ckpt = tmp_path / "runs" / "sft_tiny" / "version_0" / "checkpoints" / "last.ckpt"
    with pytest.warns(UserWarning, match="hf_output_dir is 'second' here but 'first' in the checkpoint"):
        resumed = [*argv, "--trainer.max_steps", "2", "--model.init_args.hf_output_dir", "second"]
        assert main([*resumed, "--ckpt_path", str(ckpt)]) == 0
    assert (tmp_path / "second" / "config.json").is_file()  # LightningCLI alone would have written to first/
    saved = yaml.safe_load((tmp_path / "runs" / "sft_tiny" / "version_1" / "config.yaml").read_text())
    assert saved["model"]["init_args"]["hf_output_dir"] == "second"


# ------------------------------------------------------------------------------- refused runs, one line each
def quick_fit(model_dir: Path, sft_dir: Path, *extra: str) -> list[str]:
    """`bridge fit` argv of a 1-step tiny SFT run, without validation, plus `extra`."""
    return ["fit", "--config", str(TINY), "--model.init_args.model_path", str(model_dir),
            "--data.init_args.train_path", str(sft_dir), "--data.init_args.batch_size", "2",
            "--trainer.val_check_interval", "null", "--trainer.limit_val_batches", "0",
            "--trainer.max_steps", "1", *extra]  # fmt: skip


def refused(capsys, argv: list[str], *expected: str) -> str:
    """Run argv, check it exits 2 with one `bridge: error:` message holding `expected` and no traceback."""
    capsys.readouterr()  # what earlier runs printed
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "\nbridge: error: " in f"\n{err}", err  # after the loaders' own progress
    assert all(text in err for text in expected), err
    return err


def test_an_export_over_the_base_model_or_a_dataset_is_refused_before_any_run_dir(
    tmp_path, model_dir, sft_dir, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    before = sorted(model_dir.iterdir())
    refused(capsys, quick_fit(model_dir, sft_dir, "--model.init_args.hf_output_dir", str(model_dir)),
            "is model.init_args.model_path", "overwrite_output_dir: true")  # fmt: skip
    refused(capsys, quick_fit(model_dir, sft_dir, "--model.init_args.hf_output_dir", str(sft_dir)), "a dataset")
    assert sorted(model_dir.iterdir()) == before
    assert list(tmp_path.iterdir()) == []  # no run directory for a refused run


def test_a_second_run_keeps_the_first_runs_export_unless_asked(tmp_path, model_dir, sft_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = quick_fit(model_dir, sft_dir, "--model.init_args.hf_output_dir", "hf")
    assert main(argv) == 0
    first = json.loads((tmp_path / "hf" / "bridge_export.json").read_text())
    ckpt = tmp_path / "runs" / "sft_tiny" / "version_0" / "checkpoints" / "last.ckpt"
    refused(capsys, argv, "already holds the model exported by another run", f"run id {first['run_id'][:8]}")
    assert json.loads((tmp_path / "hf" / "bridge_export.json").read_text()) == first
    assert main([*argv, "--ckpt_path", str(ckpt), "--trainer.max_steps", "2"]) == 0
    resumed = json.loads((tmp_path / "hf" / "bridge_export.json").read_text())
    assert resumed["run_id"] == first["run_id"] and resumed["step"] == 2  # the same run may replace its export
    assert main([*argv, "--model.init_args.overwrite_output_dir", "true"]) == 0
    assert json.loads((tmp_path / "hf" / "bridge_export.json").read_text())["run_id"] != first["run_id"]


def test_a_missing_or_truncated_checkpoint_is_one_line_before_any_run_dir(
    tmp_path, model_dir, sft_dir, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    refused(capsys, quick_fit(model_dir, sft_dir, "--ckpt_path", "nope.ckpt"), "--ckpt_path nope.ckpt: no such")
    assert main(quick_fit(model_dir, sft_dir, "--model.init_args.hf_output_dir", "hf")) == 0
    ckpt = tmp_path / "runs" / "sft_tiny" / "version_0" / "checkpoints" / "last.ckpt"
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    refused(capsys, quick_fit(model_dir, sft_dir, "--ckpt_path", str(cut)), "not a readable checkpoint", "cut short")
    assert sorted(p.name for p in (tmp_path / "runs" / "sft_tiny").iterdir()) == ["version_0"]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_accelerator_without_a_gpu_is_one_line(tmp_path, model_dir, sft_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    refused(
        capsys, quick_fit(model_dir, sft_dir, "--trainer.accelerator", "gpu"), "trainer:", "--trainer.accelerator cpu"
    )
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_log_directory_is_refused_before_the_work(read_only_dir, model_dir, sft_dir, capsys):
    argv = quick_fit(model_dir, sft_dir, "--trainer.logger.init_args.save_dir", str(read_only_dir / "runs"))
    refused(capsys, argv, f"{read_only_dir} is not writable", "trainer.logger.init_args.save_dir")


def test_early_stopping_that_min_steps_would_silence_is_refused(tmp_path, model_dir, sft_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the repository: a quick start's runs/sft_tiny/hf_model there is refused first
    stop = ["--trainer.callbacks+=lightning.pytorch.callbacks.EarlyStopping", "--trainer.callbacks.monitor=val/loss",
            "--trainer.min_steps=2"]  # fmt: skip
    refused(capsys, quick_fit(model_dir, sft_dir, *stop), "EarlyStopping", "--trainer.min_epochs=0")


def test_a_diverged_run_ends_with_one_line_and_exports_nothing(tmp_path, model_dir, sft_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = quick_fit(model_dir, sft_dir, "--model.init_args.hf_output_dir", "hf", "--model.init_args.optimizer.lr",
                     "1e6", "--trainer.max_steps", "12", "--trainer.gradient_clip_val", "null")  # fmt: skip
    refused(capsys, argv, "non-finite", "at optimizer step", "learning rate")
    assert not (tmp_path / "hf" / "config.json").exists()


def test_progress_is_plain_lines_when_the_output_is_not_a_terminal(tmp_path, model_dir, sft_dir, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BRIDGE_PROGRESS", raising=False)
    assert main(quick_fit(model_dir, sft_dir, "--trainer.max_steps", "2")) == 0  # capsys: stderr is no TTY
    out = capsys.readouterr().out
    assert "step 1/2 | loss " in out and "train done | step 2/2" in out and "\r" not in out
    monkeypatch.setenv("BRIDGE_PROGRESS", "fancy")
    refused(capsys, quick_fit(model_dir, sft_dir), "BRIDGE_PROGRESS='fancy'")
