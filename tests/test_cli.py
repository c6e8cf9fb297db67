"""The `bridge` command line, run in-process through `main([...])` (plus one run of the real script)."""

import hashlib
import json
import subprocess
import sys

import pyarrow as pa
import pytest

from bridge_pl import __version__
from bridge_pl.cli import main
from bridge_pl.data.io import read_dataset, read_dataset_config


def _generate(out, *flags):
    return main(["data", "generate", "--out", str(out), "--quiet", *flags])


@pytest.fixture(scope="module")
def sft(tmp_path_factory):
    """20 problems of the SFT split, plain CoT."""
    out = tmp_path_factory.mktemp("cli") / "sft"
    assert _generate(out, "--split", "sft", "--size", "20") == 0
    return out


def _official(tmp_path, rows):
    """A datasets.save_to_disk-style directory holding the official four columns of `rows`."""
    directory = tmp_path / "official"
    directory.mkdir()
    table = pa.table({c: [row[c] for row in rows] for c in ("query", "response", "num_ops", "final_answer")})
    with (
        pa.OSFile(str(directory / "data-00000-of-00001.arrow"), "wb") as sink,
        pa.ipc.new_stream(sink, table.schema) as writer,
    ):
        writer.write_table(table)
    (directory / "dataset_info.json").write_text("{}")
    return directory


def test_generate_is_deterministic_for_any_worker_count(tmp_path, sft):
    assert _generate(tmp_path / "again", "--split", "sft", "--size", "20") == 0
    assert _generate(tmp_path / "two", "--split", "sft", "--size", "20", "--workers", "2") == 0
    data = (sft / "data.jsonl").read_bytes()
    assert (tmp_path / "again" / "data.jsonl").read_bytes() == data
    assert (tmp_path / "two" / "data.jsonl").read_bytes() == data
    assert (tmp_path / "two" / "dataset_config.json").read_bytes() == (sft / "dataset_config.json").read_bytes()
    config = read_dataset_config(sft)
    assert config["sha256"] == hashlib.sha256(data).hexdigest()
    assert (config["split"], config["seed"], config["size"], config["style"], config["rows"]) == (
        "sft",
        100,
        20,
        "plain",
        20,
    )
    assert config["generator"]["min_op"] == 15 and config["bridge_pl_version"] == __version__


def test_split_presets_and_overrides(tmp_path):
    assert _generate(tmp_path / "val", "--split", "rl_val", "--size", "4") == 0
    config = read_dataset_config(tmp_path / "val")
    assert (config["seed"], config["style"], config["generator"]["min_op"]) == (300, "no-cot", 21)
    assert {row["split"] for row in read_dataset(tmp_path / "val")} == {"rl_val"}
    flags = ["--split", "test_id", "--size", "3", "--seed", "9", "--max-op", "12", "--min-op", "10"]
    assert _generate(tmp_path / "custom", *flags, "--no-redundant", "--behaviors", "exploration") == 0
    config = read_dataset_config(tmp_path / "custom")
    assert (config["seed"], config["style"]) == (9, "bridge:exploration")
    assert config["generator"]["force"] is True and config["generator"]["redundant"] is False
    assert {row["num_ops"] for row in read_dataset(tmp_path / "custom")} == {12}


def test_bridge_and_vanilla_share_questions(tmp_path, sft):
    assert _generate(tmp_path / "bridge", "--split", "sft", "--size", "20", "--style", "bridge") == 0
    plain, bridge = read_dataset(sft), read_dataset(tmp_path / "bridge")
    assert [r["query"] for r in plain] == [r["query"] for r in bridge]
    assert all(r["style"] == "bridge:full" for r in bridge)


def test_augmented_generation_row_counts(tmp_path):
    assert _generate(tmp_path / "pp", "--split", "sft", "--size", "5", "--augment", "pp-aug", "--copies", "3") == 0
    rows = read_dataset(tmp_path / "pp")
    assert len(rows) == 15 and read_dataset_config(tmp_path / "pp")["copies"] == 3
    assert [len({r["response"] for r in rows[i : i + 3]}) for i in range(0, 15, 3)] == [1] * 5
    assert (
        _generate(tmp_path / "rc", "--split", "sft", "--size", "5", "--augment", "rc-aug", "--format", "parquet") == 0
    )
    rows = read_dataset(tmp_path / "rc")
    assert len(rows) == 20 and [len({r["query"] for r in rows[i : i + 4]}) for i in range(0, 20, 4)] == [1] * 5


def test_overwrite_refusal(tmp_path, sft, capsys):
    before = (sft / "data.jsonl").read_bytes()
    assert _generate(sft, "--split", "sft", "--size", "3") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (sft / "data.jsonl").read_bytes() == before
    assert _generate(tmp_path / "x", "--size", "2") == 0
    assert _generate(tmp_path / "x", "--size", "3", "--overwrite") == 0
    assert len(read_dataset(tmp_path / "x")) == 3


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--min-op", "30"], "--min-op=30"),
        (["--size", "0"], "--size 0"),
        (["--style", "plain", "--exploration", "0.3"], "only apply to bridge"),
        (["--exploration", "2"], "--exploration=2"),
        (["--workers", "0"], "--workers 0"),
        (["--copies", "2"], "--copies only applies"),
        (["--augment", "rc-aug", "--copies", "0"], "--copies 0"),
    ],
)
def test_bad_options_give_one_clean_error(tmp_path, capsys, flags, message):
    assert _generate(tmp_path / "bad", "--size", "2", *flags) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists()


def test_augment_official_files(tmp_path, sft, capsys):
    official = _official(tmp_path, read_dataset(sft)[:6])
    assert main(["data", "augment", "--input", str(official), "--out", str(tmp_path / "b"), "--method", "bridge"]) == 0
    assert "rewrote 6 of 6 rows" in capsys.readouterr().out
    rows = read_dataset(tmp_path / "b")
    assert len(rows) == 6 and all(r["style"] == "bridge:full" and r["dag"] for r in rows)
    assert read_dataset_config(tmp_path / "b")["source"]["rows"] == 6
    assert not (tmp_path / "b" / "failures.jsonl").exists()
    flags = ["--method", "rc-aug", "--copies", "2", "--format", "parquet"]
    assert main(["data", "augment", "--input", str(official), "--out", str(tmp_path / "rc"), *flags]) == 0
    assert len(read_dataset(tmp_path / "rc")) == 12


def test_augment_reports_failed_rows(tmp_path, sft, capsys):
    rows = read_dataset(sft)[:4]
    rows[2]["query"] = "The number of each Nothing equals nothing."
    (tmp_path / "in.jsonl").write_text(
        "".join(json.dumps({k: r[k] for k in ("query", "response", "final_answer")}) + "\n" for r in rows)
    )
    argv = ["data", "augment", "--input", str(tmp_path / "in.jsonl"), "--method", "plain", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 1
    out = capsys.readouterr().out
    assert "rewrote 3 of 4 rows" in out and "row 2:" in out
    failures = [json.loads(line) for line in (tmp_path / "out" / "failures.jsonl").read_text().splitlines()]
    assert [f["row"] for f in failures] == [2] and failures[0]["reason"]
    assert len(read_dataset(tmp_path / "out")) == 3
    assert main([*argv, "--out", str(tmp_path / "out2"), "--allow-failures"]) == 0


def test_augment_rejects_bad_flags(tmp_path, sft, capsys):
    argv = ["data", "augment", "--input", str(sft), "--out", str(tmp_path / "o")]
    assert main([*argv, "--method", "pp-aug", "--exploration", "0.5"]) == 2
    assert "--method bridge" in capsys.readouterr().err
    assert (
        main(["data", "augment", "--input", str(tmp_path / "none"), "--out", str(tmp_path / "o"), "--method", "plain"])
        == 2
    )
    assert "no such file or directory" in capsys.readouterr().err


def test_stats(tmp_path, sft, capsys):
    assert main(["data", "stats", str(sft), "--out", str(tmp_path / "s.json")]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats == json.loads((tmp_path / "s.json").read_text())
    assert stats["rows"] == 20 and set(stats["num_ops"]["counts"]) <= {str(n) for n in range(15, 21)}
    for key in ("necessary_nodes_mean", "layers", "abstract_target_share", "zero_answer_share", "behaviors"):
        assert key in stats


def test_verify_passes_on_generated_data_and_fails_on_a_corrupted_answer(tmp_path, sft, capsys):
    assert main(["data", "verify", str(sft)]) == 0
    assert "reward mean: 1.0000" in capsys.readouterr().out
    rows = read_dataset(sft)
    rows[5]["response"] = rows[5]["response"].replace("\\boxed{", "\\boxed{1")
    (tmp_path / "bad.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["data", "verify", str(tmp_path / "bad.jsonl")]) != 0
    out = capsys.readouterr().out
    assert "checker failures: 1" in out and "row 5" in out


def test_show(sft, capsys):
    assert main(["data", "show", str(sft), "--index", "3"]) == 0
    out = capsys.readouterr().out
    row = read_dataset(sft)[3]
    assert row["query"] in out and row["response"] in out and f"final answer: {row['final_answer']}" in out
    assert main(["data", "show", str(sft), "--dot"]) == 0
    assert capsys.readouterr().out.startswith("digraph")
    assert main(["data", "show", str(sft), "--index", "20"]) == 2
    assert "out of range" in capsys.readouterr().err


def test_top_level(capsys):
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out
    assert main(["--help"]) == 0
    assert "data" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["data"]) == 2
    # `bridge fit` hands over to the LightningCLI: a missing config file is a clean non-zero exit.
    assert main(["fit", "--config", "does-not-exist.yaml"]) != 0


def test_the_installed_script_runs_without_torch(tmp_path):
    out = tmp_path / "tiny"
    cmd = [
        sys.executable,
        "-X",
        "importtime",
        "-m",
        "bridge_pl.cli",
        "data",
        "generate",
        "--size",
        "3",
        "--out",
        str(out),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "wrote 3 rows" in result.stdout and len(read_dataset(out)) == 3
    # -X importtime lists every imported module on stderr: `bridge data` must stay free of the heavy stack
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import")}
    assert "bridge_pl.data.records" in imported
    assert not imported & {"torch", "lightning", "transformers", "pyarrow"}


def test_model_init_writes_a_loadable_model(tmp_path, capsys):
    from bridge_pl.models.model_io import load_model, load_tokenizer

    out = tmp_path / "tiny"
    assert main(["model", "init", "--out", str(out), "--preset", "llama-1m"]) == 0
    assert "llama-1m" in capsys.readouterr().out
    model, tokenizer = load_model(out), load_tokenizer(out)
    assert model.config.vocab_size == len(tokenizer)
    assert main(["model", "init", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["model", "init", "--out", str(tmp_path / "x"), "--preset", "huge"]) == 2


def test_split_choices_are_the_presets():
    from bridge_pl.cli import SPLIT_NAMES
    from bridge_pl.task.presets import SPLITS

    assert SPLIT_NAMES == tuple(SPLITS)
