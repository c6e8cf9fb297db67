"""The Task interface: the registry, iGSM unchanged byte for byte, DyVal through every data command, task checks."""

from __future__ import annotations

import json
import random

import pytest

from bridge_pl.cli import main
from bridge_pl.data.io import read_dataset
from bridge_pl.task.base import TASK_NAMES, Task, TaskError, get_task

# sha256 of data.jsonl for these commands: byte-identical to before the Task interface (commit c1d0858) until issue 15
# changed the data deliberately: inputs of instance nodes now follow the official rule (a 1-op node with a stage-3
# parent gets the constant half the time, so "c more than P" / "c times P" instead of a plain copy; redundant nodes
# never sample the constant implicitly). Op counts are unchanged; values, hence accepted problems, differ.
IGSM_GOLDEN = {
    ("--split", "tiny_sft", "--size", "40", "--style", "bridge"): (
        "db31f8e6dc22d87ecbcded7d18629848a5c31b7d823116d5aafec79d54f6ed85"
    ),
    ("--split", "sft", "--size", "10", "--style", "plain"): (
        "bf8446d7299801d14b7d815545afeec49d36bbf9b47f54ec2412c7abc9ea8df4"
    ),
    ("--split", "rl_train", "--size", "20"): "40fdc7ccf3526b54cb2f73dcbfeb383e8786152b77307ce06ea6b419438945ef",
    ("--split", "tiny_sft", "--size", "10", "--augment", "rc-aug", "--style", "bridge", "--behaviors", "exploration"): (
        "097974953b0c8bf8b66a45962b4b4ed9a27769d5ba026c44fcf4534cc50cfe8d"
    ),
}
DYVAL = [name for name in TASK_NAMES if name.startswith("dyval")]


def test_unknown_task_names_the_known_ones():
    with pytest.raises(TaskError, match="unknown task 'gsm8k'; choose one of igsm, dyval-arithmetic, dyval-logic"):
        get_task("gsm8k")
    with pytest.raises(TaskError, match="my_pkg.tasks.Nope does not import"):
        get_task("my_pkg.tasks.Nope")
    with pytest.raises(TaskError, match="is not a bridge_pl.task.base.Task subclass"):
        get_task("bridge_pl.task.base.TaskError")
    assert get_task() is get_task("igsm") and get_task("bridge_pl.task.igsm_task.IGSMTask").name == "igsm"


@pytest.mark.parametrize("args", list(IGSM_GOLDEN))
def test_igsm_datasets_are_byte_identical_to_before_the_task_interface(tmp_path, capsys, args):
    out = tmp_path / "data"
    assert main(["data", "generate", *args, "--out", str(out), "--quiet"]) == 0
    assert f"sha256 {IGSM_GOLDEN[args]}" in capsys.readouterr().out
    assert "task" not in json.loads((out / "dataset_config.json").read_text())  # iGSM configs unchanged too


@pytest.mark.parametrize("name", DYVAL)
@pytest.mark.parametrize(
    "flags",
    [("--style", "plain"), ("--style", "no-cot"), ("--style", "bridge"), ("--augment", "pp-aug", "--copies", "2"),
     ("--augment", "rc-aug", "--style", "bridge", "--copies", "2")],
)  # fmt: skip
def test_dyval_datasets_of_every_style_pass_the_checker(tmp_path, capsys, name, flags):
    out = tmp_path / "data"
    argv = ["data", "generate", "--task", name, "--split", "tiny_sft", "--size", "30", *flags, "--out", str(out)]
    assert main([*argv, "--quiet"]) == 0
    assert json.loads((out / "dataset_config.json").read_text())["task"] == name
    assert main(["data", "verify", str(out)]) == 0, capsys.readouterr().out
    assert "checker failures: 0" in capsys.readouterr().out


@pytest.mark.parametrize("name", DYVAL)
def test_dyval_rows_without_their_dag_are_rebuilt_from_the_question(tmp_path, capsys, name):
    out, bare = tmp_path / "data", tmp_path / "bare.jsonl"
    assert main(["data", "generate", "--task", name, "--split", "tiny_rl_train", "--size", "20", "--out", str(out),
                 "--quiet"]) == 0  # fmt: skip
    rows = [{k: row[k] for k in ("query", "response", "final_answer")} for row in read_dataset(out)]
    bare.write_text("".join(json.dumps(row) + "\n" for row in rows))
    assert main(["data", "augment", "--task", name, "--input", str(bare), "--method", "bridge",
                 "--out", str(tmp_path / "bridge"), "--quiet"]) == 0  # fmt: skip
    assert main(["data", "verify", "--task", name, str(tmp_path / "bridge")]) == 0
    rows[0]["final_answer"] = "12345.0"  # wrong for its question: caught from the text alone
    bare.write_text("".join(json.dumps(row) + "\n" for row in rows))
    capsys.readouterr()
    assert main(["data", "verify", "--task", name, str(bare)]) == 1
    assert "row 0:" in capsys.readouterr().out


def test_data_of_one_task_is_refused_by_a_command_or_module_of_another(tmp_path, capsys, model_dir):
    from bridge_pl.data.prompt_pool import PromptPoolDataModule

    out = tmp_path / "logic"
    assert main(["data", "generate", "--task", "dyval-logic", "--size", "8", "--out", str(out), "--quiet"]) == 0
    assert main(["data", "verify", "--task", "igsm", str(out)]) == 2
    assert "holds dyval-logic data (dataset_config.json) but the task is igsm" in capsys.readouterr().err
    data = PromptPoolDataModule(str(model_dir), train_path=str(out), task="dyval-arithmetic", batch_size=2)
    with pytest.raises(TaskError, match="data.train_path: .* holds dyval-logic data .* the task is dyval-arithmetic"):
        data.setup("fit")
    data = PromptPoolDataModule(str(model_dir), train_path=str(out), batch_size=2)
    data.setup("fit")
    assert data.task.name == "dyval-logic"  # taken from the files


def test_a_knob_of_another_task_is_refused(tmp_path, capsys):
    argv = ["data", "generate", "--task", "dyval-arithmetic", "--size", "3", "--min-op", "4", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "--min-op: not a knob of --task dyval-arithmetic" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["igsm", *DYVAL])
def test_every_task_judges_its_own_answers(name):
    task: Task = get_task(name)
    split = task.splits()["tiny_sft"]
    modulus = getattr(split.generator, "modulus", None)  # the tiny iGSM splits work mod 23
    for index in range(20):
        problem = task.generate(split.generator, split.seed, index)
        answer = task.plain_cot(problem, random.Random(index))
        truth = task.ground_truth(problem)
        assert task.is_correct(answer, truth)
        assert task.check_answer(task.question(problem), answer, truth, modulus=modulus) == []
        assert str(task.answer_of_question(task.question(problem), modulus=modulus)) == str(truth)
        assert not task.is_correct(answer.replace(f"\\boxed{{{truth}}}", "\\boxed{nothing}"), truth)


def test_the_on_the_fly_data_module_generates_any_task(model_dir):
    from bridge_pl.data.datamodules import IGSMDataModule

    data = IGSMDataModule(str(model_dir), task="dyval-logic", generator={"depth": 3}, style="bridge", val_size=4,
                          train_size=8, max_length=512, truncation="truncate")  # fmt: skip
    data.setup("fit")
    text = data.tokenizer.decode(data.val_examples[0]["input_ids"])
    assert "Here is a description of a boolean logic problem:" in text and "\\boxed{" in text
    with pytest.raises(ValueError, match="unknown field.*min_op for task dyval-logic"):
        IGSMDataModule(str(model_dir), task="dyval-logic", generator={"min_op": 3})


@pytest.mark.parametrize("name", DYVAL)
def test_stats_and_dot_of_dyval_data(tmp_path, capsys, name):
    out = tmp_path / "data"
    assert main(["data", "generate", "--task", name, "--split", "tiny_test_ood", "--size", "6", "--out", str(out),
                 "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["data", "stats", str(out)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["rows_with_dag"] == 6 and 8 <= stats["redundant_nodes_mean"] <= 15  # 4-5 trees of 2-3 nodes
    assert main(["data", "show", str(out), "--index", "2", "--dot"]) == 0
    dot = capsys.readouterr().out
    assert dot.startswith("digraph problem {") and "->" in dot
