"""`bridge data ...` input mistakes end with one `bridge: error: ...` line, exit status 2, and lose nothing."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge_pl.cli import main
from bridge_pl.data.io import CONFIG_FILE, read_dataset
from bridge_pl.task.generator import GenerationError

TINY = ("--split", "tiny_test_id", "--size", "8", "--quiet")
IMPOSSIBLE = ("--min-op", "200", "--max-op", "210", "--size", "2", "--max-attempts", "3", "--quiet")


def _generate(out: Path, *flags: str) -> int:
    return main(["data", "generate", "--out", str(out), *flags])


def _one_error_line(capsys) -> str:
    """The stderr of a failed command: exactly one `bridge: error:` line, no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bridge: error: "), err
    return lines[0]


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def _corrupt_middle(path: Path, length: int = 200) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 3
    data[middle : middle + length] = b"\xff" * length
    path.write_bytes(bytes(data))


# ------------------------------------------------------------------------------------------------ 1. corrupt files
@pytest.mark.parametrize("command", [["stats"], ["verify"], ["show", "--index", "2"]])
def test_corrupt_parquet_body_is_one_error_naming_the_file(tmp_path, capsys, command):
    assert _generate(tmp_path / "pq", *TINY, "--format", "parquet") == 0
    data = tmp_path / "pq" / "data.parquet"
    _corrupt_middle(data)
    capsys.readouterr()
    assert main(["data", *command[:1], str(tmp_path / "pq"), *command[1:]]) == 2
    line = _one_error_line(capsys)
    assert f"{data} is corrupt or unreadable" in line and "regenerate" in line
    assert "sha256 differs from the one in dataset_config.json" in line


def test_truncated_parquet_and_corrupt_arrow_files(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.ipc as ipc

    assert _generate(tmp_path / "pq", *TINY, "--format", "parquet") == 0
    data = tmp_path / "pq" / "data.parquet"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    capsys.readouterr()
    assert main(["data", "stats", str(tmp_path / "pq")]) == 2
    assert "is not a readable parquet file" in _one_error_line(capsys)

    assert _generate(tmp_path / "js", *TINY) == 0
    rows = [{**row, "dag": json.dumps(row["dag"]), "behaviors": None} for row in read_dataset(tmp_path / "js")]
    table = pa.Table.from_pylist(rows * 30)
    stream = tmp_path / "rows.arrow"
    with ipc.new_stream(str(stream), table.schema) as writer:
        for batch in table.to_batches(max_chunksize=40):
            writer.write_batch(batch)
    assert main(["data", "stats", str(stream)]) == 0
    stream.write_bytes(stream.read_bytes()[: stream.stat().st_size // 2])  # breaks off inside a batch
    capsys.readouterr()
    assert main(["data", "verify", str(stream)]) == 2
    line = _one_error_line(capsys)
    assert f"{stream} is corrupt or unreadable: reading stopped after row " in line and "copy the file again" in line


def test_bad_jsonl_lines_name_the_line(tmp_path, capsys):
    assert _generate(tmp_path / "js", *TINY) == 0
    data = tmp_path / "js" / "data.jsonl"
    lines = data.read_bytes().splitlines(keepends=True)
    data.write_bytes(b"".join([*lines[:2], b'{"query": "q", "response": \n', *lines[3:]]))
    capsys.readouterr()
    assert main(["data", "stats", str(tmp_path / "js")]) == 2
    assert f"{data}, line 3: not valid JSON" in _one_error_line(capsys)
    data.write_bytes(b"".join([*lines[:4], b"\xff\xfe garbage\n", *lines[5:]]))
    assert main(["data", "show", str(tmp_path / "js"), "--index", "6"]) == 2
    assert f"{data}, line 5: not UTF-8 text" in _one_error_line(capsys)


# ------------------------------------------------------------------------------------------------ 2. failed generate
def test_impossible_difficulty_names_the_flags_and_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "new" / "mo"
    assert _generate(out, *IMPOSSIBLE) == 2
    line = _one_error_line(capsys)
    assert "raise --max-attempts, widen --min-op/--max-op, or raise --answer-bound" in line
    assert not (tmp_path / "new").exists()  # nor the parent it would have created
    assert _generate(tmp_path / "w", *IMPOSSIBLE, "--workers", "2") == 2
    assert "--max-attempts" in _one_error_line(capsys)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------ 3. failed overwrite
def test_failed_generate_overwrite_keeps_the_old_dataset(tmp_path, capsys, monkeypatch):
    out = tmp_path / "ds"
    assert _generate(out, *TINY) == 0
    (out / "NOTES.txt").write_text("mine")
    before = _snapshot(out)
    assert _generate(out, *IMPOSSIBLE, "--overwrite") == 2
    _one_error_line(capsys)
    assert _snapshot(out) == before

    import bridge_pl.data.pipeline as pipeline

    real = pipeline.rows_chunk

    def fails_midway(plan, start, count):
        if start > 0:
            raise GenerationError(f"no valid problem for seed=0 index={start}; raise max_attempts")
        return real(plan, start, count)

    monkeypatch.setattr(pipeline, "rows_chunk", fails_midway)
    assert _generate(out, "--size", "60", "--format", "parquet", "--overwrite", "--quiet") == 2
    assert "raise --max-attempts" in _one_error_line(capsys)
    assert _snapshot(out) == before  # no parquet file, no staging folder, the old config in place
    monkeypatch.undo()
    assert _generate(out, "--split", "tiny_test_id", "--size", "3", "--format", "parquet", "--overwrite") == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([CONFIG_FILE, "NOTES.txt", "data.parquet"])
    assert (out / "NOTES.txt").read_text() == "mine" and len(read_dataset(out)) == 3


def test_failed_augment_overwrite_keeps_the_old_dataset(tmp_path, capsys, monkeypatch):
    assert _generate(tmp_path / "src", *TINY) == 0
    out = tmp_path / "out"
    assert main(["data", "augment", "--input", str(tmp_path / "src"), "--out", str(out), "--method", "plain"]) == 0
    before = _snapshot(out)

    import bridge_pl.data.io as data_io

    def disk_full(path, rows):
        path.write_bytes(b"{}\n")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(data_io, "_write_jsonl", disk_full)
    args = ["data", "augment", "--input", str(tmp_path / "src"), "--out", str(out), "--method", "rc-aug"]
    with pytest.raises(OSError, match="No space left"):
        main([*args, "--overwrite", "--quiet"])
    assert _snapshot(out) == before
    monkeypatch.undo()
    capsys.readouterr()
    assert main([*args, "--overwrite", "--quiet", "--copies", "2"]) == 0
    assert len(read_dataset(out)) == 16


def test_augment_that_rewrites_nothing_leaves_an_old_dataset_alone(tmp_path, capsys):
    assert _generate(tmp_path / "src", *TINY) == 0
    assert _generate(tmp_path / "out", *TINY, "--seed", "5") == 0
    before = _snapshot(tmp_path / "out")
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps({"query": "The number of each Nothing equals nothing.", "response": "r"}) + "\n")
    args = ["data", "augment", "--input", str(broken), "--out", str(tmp_path / "out"), "--method", "plain"]
    assert main([*args, "--overwrite", "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "no dataset written" in out and "left as it was" in out and "row 0:" in out
    assert _snapshot(tmp_path / "out") == before


# ------------------------------------------------------------------------------------------------ 4. read-only output
@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_parent_is_refused_before_generation(tmp_path, capsys):
    parent = tmp_path / "readonly"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        assert _generate(parent / "place" / "x", *TINY) == 2
        line = _one_error_line(capsys)
        assert f"{parent} is not writable" in line
        assert _generate(tmp_path / "src", *TINY) == 0
        args = ["data", "augment", "--input", str(tmp_path / "src"), "--out", str(parent / "x"), "--method", "plain"]
        capsys.readouterr()
        assert main(args) == 2
        assert f"{parent} is not writable" in _one_error_line(capsys)
        assert list(parent.iterdir()) == []
    finally:
        parent.chmod(0o755)


def test_unwritable_output_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    """The same check with os.access answering "no" (runs as root too)."""
    import bridge_pl.data.io as data_io
    import bridge_pl.data.pipeline as pipeline

    assert _generate(tmp_path / "src", *TINY) == 0
    parent = tmp_path / "readonly"
    parent.mkdir()
    real_access = os.access
    monkeypatch.setattr(data_io.os, "access", lambda path, mode: Path(path) != parent and real_access(path, mode))
    monkeypatch.setattr(pipeline, "plan_rows", lambda *a, **k: pytest.fail("generation started"))
    monkeypatch.setattr(pipeline, "read_dataset", lambda *a, **k: pytest.fail("the input was read"))
    capsys.readouterr()
    assert _generate(parent / "place" / "x", *TINY) == 2
    assert f"{parent} is not writable, so {parent / 'place' / 'x'} cannot be written" in _one_error_line(capsys)
    args = ["data", "augment", "--input", str(tmp_path / "src"), "--out", str(parent), "--method", "plain"]
    assert main(args) == 2
    assert f"{parent} is not writable" in _one_error_line(capsys)
    assert list(parent.iterdir()) == []


# ------------------------------------------------------------------------------------------------ 5. verify modulus
def test_verify_without_the_modulus_suggests_it(tmp_path, capsys):
    flags = ("--size", "6", "--min-op", "8", "--max-op", "12", "--modulus", "23", "--style", "plain", "--quiet")
    assert _generate(tmp_path / "m", *flags) == 0
    assert main(["data", "verify", str(tmp_path / "m")]) == 0  # the modulus is read from dataset_config.json
    copied = tmp_path / "copied"
    copied.mkdir()
    (copied / "data.jsonl").write_bytes((tmp_path / "m" / "data.jsonl").read_bytes())
    assert main(["data", "verify", str(copied)]) == 0  # no config: each row's dag holds the modulus
    rows = read_dataset(tmp_path / "m")
    text_only = tmp_path / "text.jsonl"
    text_only.write_text("".join(json.dumps({**row, "dag": None}) + "\n" for row in rows))
    capsys.readouterr()
    assert main(["data", "verify", str(text_only)]) == 1
    out = capsys.readouterr().out
    assert "hint: the links look like arithmetic modulo 23" in out and "pass --modulus 23" in out
    assert main(["data", "verify", str(text_only), "--modulus", "23"]) == 0
    assert "hint" not in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ 6. closed stdout
def test_stdout_closed_early_ends_quietly(tmp_path):
    assert _generate(tmp_path / "ds", *TINY) == 0
    for command in (["stats"], ["verify"], ["show", "--index", "1"]):
        process = subprocess.Popen(
            [sys.executable, "-m", "bridge_pl.cli", "data", command[0], str(tmp_path / "ds"), *command[1:]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        process.stdout.close()  # `| head -0`: the reader is gone before anything is printed
        err = process.stderr.read().decode()
        assert process.wait() in (0, 141) and err == "", err


def test_broken_pipe_while_printing_returns_quietly(tmp_path, capsys, monkeypatch):
    assert _generate(tmp_path / "ds", *TINY) == 0

    class ClosedPipe(io.StringIO):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

    stats_file = tmp_path / "stats.json"
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["data", "stats", str(tmp_path / "ds"), "--out", str(stats_file)]) == 141
    assert main(["data", "verify", str(tmp_path / "ds")]) == 141
    monkeypatch.undo()
    assert capsys.readouterr().err == ""
    assert json.loads(stats_file.read_text())["rows"] == 8  # the file is written before anything is printed
