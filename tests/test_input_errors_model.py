"""A model directory that cannot be used, or a length it cannot hold: one `bridge: error:` line, exit status 2.

Each case is the command a user would type (`bridge eval ...`) or the data module's ``setup`` that `bridge fit`
runs before training; the checks read file names and config.json only, so no model is loaded for a bad one.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from bridge_pl.cli import main as bridge_main
from bridge_pl.data.encoding import ModelDirError, check_model_dir
from bridge_pl.data.io import write_dataset
from bridge_pl.data.prompt_pool import PromptPoolDataModule
from bridge_pl.data.sft import SFTDataModule

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

CONFIG_ONLY = ("config.json", "generation_config.json")
TOKENIZER = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
WEIGHTS = ("model.safetensors",)


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    rows = [{"query": f"The number of each Bag's Pen equals {k}. How many Pen does each Bag have?",
             "final_answer": k, "num_ops": 1} for k in range(3)]  # fmt: skip
    path = tmp_path_factory.mktemp("prompts") / "set"
    write_dataset(path, rows, config={"note": "input error test"})
    return path


@pytest.fixture(scope="module")
def conversations(tmp_path_factory) -> Path:
    rows = [{"query": f"What is {k}?", "response": f"<think>\n{k}\n</think>\n<answer>\n\\boxed{{{k}}}\n</answer>"}
            for k in range(4)]  # fmt: skip
    path = tmp_path_factory.mktemp("sft") / "set"
    write_dataset(path, rows, config={"note": "input error test"})
    return path


def partial_copy(model_dir: Path, out: Path, files: tuple[str, ...], **config_changes) -> Path:
    """A copy of the tiny model directory with only `files`, its config.json updated with `config_changes`."""
    out.mkdir()
    for name in files:
        shutil.copy(model_dir / name, out / name)
    config = json.loads((model_dir / "config.json").read_text()) | config_changes
    (out / "config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not None}))
    return out


def eval_error(capsys, model: Path, prompts: Path, *extra: str) -> str:
    """Run `bridge eval` on a bad model and return its one error line (asserting status 2, no traceback)."""
    code = bridge_main(["eval", "--model", str(model), "--data", f"id={prompts}", "--max-new-tokens", "4", *extra])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("bridge: error: "), captured.err
    assert "Traceback" not in captured.err and not captured.out
    return lines[0]


def test_eval_of_a_missing_model_directory_says_how_to_make_one(prompts, tmp_path, capsys):
    line = eval_error(capsys, tmp_path / "nope", prompts)
    assert f"model directory '{tmp_path / 'nope'}' does not exist" in line and "bridge model init --out" in line
    assert not (tmp_path / "nope").exists()  # the default --out (<model>/eval) was not created


def test_eval_of_a_model_without_weights_names_the_weight_files(model_dir, prompts, tmp_path, capsys):
    model = partial_copy(model_dir, tmp_path / "noweights", CONFIG_ONLY + TOKENIZER)
    line = eval_error(capsys, model, prompts)
    assert "holds no weights (model.safetensors, model.safetensors.index.json, pytorch_model.bin" in line
    assert "save_pretrained" in line and "bridge model init" in line
    assert not (model / "eval").exists()


def test_eval_of_a_model_without_tokenizer_says_to_copy_it(model_dir, prompts, tmp_path, capsys):
    model = partial_copy(model_dir, tmp_path / "notokenizer", CONFIG_ONLY + WEIGHTS)
    line = eval_error(capsys, model, prompts)
    assert "holds no tokenizer (tokenizer.json, tokenizer.model or vocab files)" in line
    assert "copy the tokenizer" in line and "bridge model init" in line
    assert "sentencepiece" not in line


def test_every_problem_of_a_model_directory_in_one_message(model_dir, tmp_path):
    model = partial_copy(model_dir, tmp_path / "bare", CONFIG_ONLY)
    with pytest.raises(ModelDirError, match="holds no weights.*; it holds no tokenizer") as error:
        check_model_dir(model)
    assert isinstance(error.value, ValueError) and isinstance(error.value, FileNotFoundError)
    assert check_model_dir(model, weights=False, tokenizer=False) == model


def test_eval_of_remote_code_names_the_flag(model_dir, prompts, tmp_path, capsys):
    auto_map = {"AutoConfig": "configuration_x.XConfig", "AutoModelForCausalLM": "modeling_x.XForCausalLM"}
    files = CONFIG_ONLY + TOKENIZER + WEIGHTS
    model = partial_copy(model_dir, tmp_path / "remote", files, model_type="xmodel", auto_map=auto_map)
    line = eval_error(capsys, model, prompts)
    assert "ships its own modelling code (config.json auto_map; model_type 'xmodel'" in line
    assert "model.init_args.trust_remote_code: true" in line and "--trust-remote-code" in line
    line = eval_error(capsys, model, prompts, "--trust-remote-code")  # trusted, but the code is not there
    assert "lacks the modelling code its config.json auto_map names (configuration_x.py, modeling_x.py)" in line
    # A model type transformers knows loads with its own classes whatever auto_map says (many hub models ship both).
    known = partial_copy(model_dir, tmp_path / "known", files, auto_map=auto_map)
    assert check_model_dir(known) == known


def test_trust_remote_code_reaches_the_loaders(model_dir, prompts, tmp_path, monkeypatch, capsys):
    seen = {}

    def stop(model, kind, **kwargs):
        seen.update(kwargs)
        raise ValueError("stopped before loading")

    monkeypatch.setattr("bridge_pl.evaluation.bound_engine", stop)
    assert "stopped before loading" in eval_error(
        capsys, model_dir, prompts, "--trust-remote-code", "--out", str(tmp_path)
    )
    assert seen["trust_remote_code"] is True


def test_eval_with_vllm_missing_is_one_line(model_dir, prompts, tmp_path, monkeypatch, capsys):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else find_spec(name, *a))
    line = eval_error(capsys, model_dir, prompts, "--engine", "vllm", "--out", str(tmp_path / "out"))
    assert 'pip install "bridge-pl[vllm]"' in line and "--engine hf" in line


def test_sft_max_length_beyond_the_model_is_refused_at_setup(model_dir, conversations):
    data = SFTDataModule(train_path=str(conversations), tokenizer_path=str(model_dir), max_length=4096)
    message = f"data.max_length=4096 exceeds the model's max_position_embeddings=2048 ({model_dir / 'config.json'})"
    with pytest.raises(ValueError, match="set data.max_length to at most 2048") as error:
        data.setup("fit")
    assert message in str(error.value) and data.train_examples is None


def test_prompt_length_beyond_the_model_is_refused_at_setup(model_dir, prompts):
    data = PromptPoolDataModule(tokenizer_path=str(model_dir), train_path=str(prompts), max_prompt_length=3000)
    with pytest.raises(
        ValueError, match="data.max_prompt_length=3000 exceeds the model's max_position_embeddings=2048"
    ):
        data.setup("fit")
    assert PromptPoolDataModule(tokenizer_path=str(model_dir), train_path=str(prompts)).setup("fit") is None


def test_a_config_without_max_position_embeddings_sets_no_limit(model_dir, conversations, tmp_path):
    model = partial_copy(model_dir, tmp_path / "nolimit", CONFIG_ONLY + TOKENIZER, max_position_embeddings=None)
    data = SFTDataModule(train_path=str(conversations), tokenizer_path=str(model), max_length=4096)
    data.setup("fit")
    assert len(data.train_examples) == 4


def test_fit_data_module_reports_a_model_without_tokenizer(model_dir, conversations, tmp_path):
    model = partial_copy(model_dir, tmp_path / "notokenizer", CONFIG_ONLY + WEIGHTS)
    with pytest.raises(ValueError, match="^data.tokenizer_path: model directory .* holds no tokenizer"):
        SFTDataModule(train_path=str(conversations), tokenizer_path=str(model)).setup("fit")


def test_model_init_into_a_read_only_or_file_location_is_refused_before_building(read_only_dir, tmp_path, capsys):
    assert bridge_main(["model", "init", "--out", str(read_only_dir / "m"), "--preset", "llama-1m"]) == 2
    err = capsys.readouterr().err
    assert f"{read_only_dir} is not writable" in err and "Traceback" not in err
    assert not (read_only_dir / "m").exists()
    (tmp_path / "file").write_text("x")
    assert bridge_main(["model", "init", "--out", str(tmp_path / "file"), "--preset", "llama-1m"]) == 2
    assert "is a file" in capsys.readouterr().err


def test_fit_with_a_model_without_weights_is_one_line_at_instantiation(
    model_dir, conversations, tmp_path, capsys, monkeypatch
):
    from bridge_pl.train_cli import main as fit_main

    monkeypatch.chdir(tmp_path)

    broken = tmp_path / "no_weights"
    broken.mkdir()
    for name in (*CONFIG_ONLY, *TOKENIZER):
        shutil.copy(model_dir / name, broken / name)
    config = Path(__file__).resolve().parents[1] / "configs" / "sft" / "tiny.yaml"
    argv = [
        "fit",
        "--config",
        str(config),
        "--model.init_args.model_path",
        str(broken),
        "--data.init_args.train_path",
        str(conversations),
        "--trainer.default_root_dir",
        str(tmp_path / "runs"),
    ]
    assert fit_main(argv) == 2
    err = capsys.readouterr().err
    assert "model.init_args.model_path=" in err and "holds no weights" in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()
