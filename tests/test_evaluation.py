"""Evaluation: pass@k, per-op accuracy, the report files and `bridge eval` on a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bridge_pl.cli import main as bridge_main
from bridge_pl.data.io import write_dataset
from bridge_pl.evaluation import evaluate_split, markdown_table, pass_at_k, split_metrics
from bridge_pl.models.model_io import load_model, load_tokenizer

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    rows = [{"query": f"The number of each Bag's Pen equals {k}. How many Pen does each Bag have?",
             "final_answer": k, "num_ops": 1 + k % 2} for k in range(5)]  # fmt: skip
    path = tmp_path_factory.mktemp("prompts") / "set"
    write_dataset(path, rows, config={"note": "eval test"})
    return path


def test_pass_at_k_matches_the_definition():
    # n = 3 samples, c = 1 right: pass@2 = 1 - C(2, 2) / C(3, 2) = 2/3
    assert pass_at_k(3, 1, 2) == pytest.approx(2 / 3)
    assert pass_at_k(5, 5, 3) == 1.0 and pass_at_k(5, 0, 5) == 0.0
    with pytest.raises(ValueError):
        pass_at_k(2, 3, 1)


def test_scores_and_breaks_down_by_op(model_dir, prompts, scripted_engine):
    engine = scripted_engine((1, 0, 1, 0, 1))  # greedy (n=1): right for prompts 0, 2, 4
    engine.bind(load_model(model_dir), load_tokenizer(model_dir), str(model_dir))
    result = evaluate_split(engine, load_tokenizer(model_dir), str(prompts), samples=4, batch_size=2)
    assert result["problems"] == 5 and result["accuracy"] == pytest.approx(3 / 5)
    assert result["per_op"]["1"]["accuracy"] == 1.0 and result["per_op"]["2"]["accuracy"] == 0.0  # ops of k=0,2,4: 1
    # sampled (n=4): prompts get 1, 0, 1, 0, 1 right answers (the scripted counts cycle over each batch's prompts)
    assert result["mean@4"] == pytest.approx(3 / 20) and result["pass@4"] == pytest.approx(3 / 5)
    assert [r["predicted"] for r in result["rows"]] == ["0", "2", "2", "4", "4"]
    table = markdown_table({"model": "m", "engine": "hf", "samples": 4, "splits": {"id": result}})
    assert "| id | 5 | 60.0% | 15.0% | 15.0% | 60.0% | 1: 100.0, 2: 0.0 |" in table
    metrics = split_metrics(result["rows"], "val", samples=4)  # the TensorBoard names of the same numbers
    assert metrics["val/accuracy"] == result["accuracy"] and metrics["val/mean@4"] == result["mean@4"]
    assert metrics["val/accuracy_op_1"] == 1.0 and metrics["val/pass@4"] == result["pass@4"]


def test_bridge_eval_writes_the_report(model_dir, prompts, tmp_path, capsys):
    argv = [
        "eval",
        "--model",
        str(model_dir),
        "--data",
        f"id={prompts}",
        "--max-new-tokens",
        "6",
        "--out",
        str(tmp_path),
    ]
    assert bridge_main(argv) == 0
    assert "| id | 5 | 0.0% |" in capsys.readouterr().out  # a random model boxes nothing
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["splits"]["id"]["problems"] == 5 and (tmp_path / "eval.md").is_file()
    assert bridge_main(["eval", "--model", str(model_dir), "--data", str(tmp_path / "missing")]) == 2


def test_bridge_eval_rejects_an_unwritable_out_before_loading_the_model(prompts, tmp_path, capsys, monkeypatch):
    # Tests run as root, whom chmod does not stop; a directory under a regular file cannot be created by anyone.
    (tmp_path / "file.txt").write_text("not a directory\n")
    out = tmp_path / "file.txt" / "out"

    def no_engine(*args, **kwargs):
        raise AssertionError("the model was loaded before --out was checked")

    monkeypatch.setattr("bridge_pl.evaluation.bound_engine", no_engine)
    argv = ["eval", "--model", str(tmp_path / "model"), "--data", f"id={prompts}", "--out", str(out)]
    assert bridge_main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and str(out) in lines[0] and "--out" in lines[0], captured.err
    assert not captured.out


def test_write_report_names_an_unwritable_directory(tmp_path):
    from bridge_pl.evaluation import ensure_writable, write_report

    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="file.txt/out.*--out"):
        write_report({"splits": {}}, tmp_path / "file.txt" / "out")
    assert ensure_writable(tmp_path / "new" / "dir").is_dir() and not any((tmp_path / "new" / "dir").iterdir())
