"""Datasets on disk: our directory (JSONL / parquet), the official save_to_disk layout, and bad inputs."""

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bridge_pl.data.io import (
    CONFIG_FILE,
    DatasetError,
    RowLocation,
    iter_dataset,
    iter_located_rows,
    read_dataset,
    read_dataset_config,
    write_dataset,
)
from bridge_pl.data.records import COLUMNS, AnswerStyle, generate_rows
from bridge_pl.task.generator import GeneratorConfig

OFFICIAL = ("query", "response", "num_ops", "final_answer")


@pytest.fixture(scope="module")
def rows():
    return list(generate_rows(GeneratorConfig(), 7, 8, AnswerStyle("bridge"), split="sft"))


def _official_table(rows):
    return pa.table({c: [row[c] for row in rows] for c in OFFICIAL})


def _save_to_disk(directory, table, *, stream=True):
    """A directory laid out like `datasets.Dataset.save_to_disk` (one arrow shard)."""
    directory.mkdir(parents=True)
    name = "data-00000-of-00001.arrow"
    with pa.OSFile(str(directory / name), "wb") as sink:
        writer = pa.ipc.new_stream(sink, table.schema) if stream else pa.ipc.new_file(sink, table.schema)
        with writer:
            writer.write_table(table)
    (directory / "dataset_info.json").write_text(json.dumps({"features": {c: {} for c in table.column_names}}))
    (directory / "state.json").write_text(json.dumps({"_data_files": [{"filename": name}], "_split": None}))
    return directory


def test_jsonl_round_trip_and_config(tmp_path, rows):
    config = write_dataset(tmp_path / "ds", rows, config={"seed": 7, "size": 8, "split": "sft"})
    data = tmp_path / "ds" / "data.jsonl"
    lines = data.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 8 and list(json.loads(lines[0])) == list(COLUMNS)
    assert isinstance(json.loads(lines[0])["dag"], dict)
    assert read_dataset(tmp_path / "ds") == rows
    assert read_dataset(data) == rows  # the file alone reads the same
    on_disk = read_dataset_config(tmp_path / "ds")
    assert on_disk == config
    assert on_disk["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert on_disk["rows"] == 8 and on_disk["seed"] == 7 and on_disk["format"] == "jsonl"
    assert "bridge_pl_version" in on_disk
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["data.jsonl", CONFIG_FILE]  # no temp files


def test_writing_twice_is_byte_identical(tmp_path, rows):
    write_dataset(tmp_path / "a", iter(rows), config={})
    write_dataset(tmp_path / "b", rows, config={})
    assert (tmp_path / "a" / "data.jsonl").read_bytes() == (tmp_path / "b" / "data.jsonl").read_bytes()
    assert (tmp_path / "a" / CONFIG_FILE).read_bytes() == (tmp_path / "b" / CONFIG_FILE).read_bytes()


def test_parquet_round_trip(tmp_path, rows):
    config = write_dataset(tmp_path / "pq", rows, config={}, fmt="parquet")
    assert config["data_file"] == "data.parquet"
    schema = pq.read_schema(tmp_path / "pq" / "data.parquet")
    assert schema.names == list(COLUMNS) and schema.field("dag").type == pa.string()
    assert read_dataset(tmp_path / "pq") == rows
    assert read_dataset(tmp_path / "pq" / "data.parquet") == rows


def test_overwrite_is_refused_unless_asked(tmp_path, rows):
    write_dataset(tmp_path / "ds", rows, config={})
    with pytest.raises(DatasetError, match="--overwrite"):
        write_dataset(tmp_path / "ds", rows[:2], config={})
    assert len(read_dataset(tmp_path / "ds")) == 8
    write_dataset(tmp_path / "ds", rows[:2], config={}, fmt="parquet", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "ds").iterdir()) == ["data.parquet", CONFIG_FILE]
    assert read_dataset(tmp_path / "ds") == rows[:2]
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match="is a file"):
        write_dataset(tmp_path / "file", rows, config={})


def test_an_interrupted_write_leaves_nothing_that_looks_complete(tmp_path, rows):
    def broken():
        yield from rows[:3]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_dataset(tmp_path / "ds", broken(), config={})
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its staging copy


def test_reads_the_official_save_to_disk_layout(tmp_path, rows):
    directory = _save_to_disk(tmp_path / "SFT_2K_CoT_op_15-20", _official_table(rows))
    read = read_dataset(directory)
    assert [r["query"] for r in read] == [r["query"] for r in rows]
    assert [r["final_answer"] for r in read] == [r["final_answer"] for r in rows]
    assert all(r["dag"] is None and r["seed"] is None and r["style"] is None for r in read)
    assert list(read[0])[: len(COLUMNS)] == list(COLUMNS)
    assert read_dataset_config(directory) is None
    # the Arrow IPC *file* format is read too, and a single .arrow file alone
    other = _save_to_disk(tmp_path / "file_format", _official_table(rows), stream=False)
    assert read_dataset(other) == read
    assert read_dataset(other / "data-00000-of-00001.arrow") == read


def test_reads_a_dataset_dict_and_parquet_directories(tmp_path, rows):
    root = tmp_path / "dict"
    root.mkdir()
    _save_to_disk(root / "train", _official_table(rows))
    (root / "dataset_dict.json").write_text(json.dumps({"splits": ["train"]}))
    assert len(read_dataset(root)) == 8
    (root / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    with pytest.raises(DatasetError, match="2 splits"):
        read_dataset(root)
    shards = tmp_path / "shards"
    shards.mkdir()
    pq.write_table(_official_table(rows[:5]), shards / "train-00000-of-00002.parquet")
    pq.write_table(_official_table(rows[5:]), shards / "train-00001-of-00002.parquet")
    assert [r["query"] for r in read_dataset(shards)] == [r["query"] for r in rows]


def test_normalises_json_text_and_integer_text(tmp_path, rows):
    path = tmp_path / "rows.json"
    raw = [{**rows[0], "dag": json.dumps(rows[0]["dag"]), "final_answer": str(rows[0]["final_answer"]), "extra": 1}]
    path.write_text(json.dumps(raw))  # a .json file holding one array
    (read,) = read_dataset(path)
    assert read["dag"] == rows[0]["dag"] and read["final_answer"] == rows[0]["final_answer"]
    assert read["extra"] == 1 and list(read)[-1] == "extra"


def test_missing_path(tmp_path):
    with pytest.raises(DatasetError, match="no such file or directory.*expected a bridge-pl dataset directory"):
        read_dataset(tmp_path / "nowhere")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(DatasetError, match="no dataset files"):
        read_dataset(tmp_path / "empty_dir")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(DatasetError, match="unknown file type"):
        read_dataset(tmp_path / "notes.txt")


def test_empty_file(tmp_path):
    (tmp_path / "data.jsonl").write_text("")
    with pytest.raises(DatasetError, match="data.jsonl: the file is empty"):
        read_dataset(tmp_path / "data.jsonl")
    (tmp_path / "blank.jsonl").write_text("\n\n")
    with pytest.raises(DatasetError, match="no rows"):
        read_dataset(tmp_path / "blank.jsonl")


def test_missing_column(tmp_path, rows):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps({"query": "q"}) + "\n")
    with pytest.raises(DatasetError, match=r"d.jsonl, line 1: missing column\(s\) response"):
        read_dataset(path)
    assert read_dataset(path, required=("query",))[0]["response"] is None
    pq.write_table(pa.table({"response": ["r"]}), tmp_path / "x.parquet")
    with pytest.raises(DatasetError, match=r"missing column\(s\) query"):
        read_dataset(tmp_path / "x.parquet")


def test_malformed_json_line_names_the_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"query": "q", "response": "r"}\n{"query": "q", "response": \n')
    with pytest.raises(DatasetError, match=r"d.jsonl, line 2: not valid JSON .*fix or delete that line"):
        read_dataset(path)
    rows = iter_dataset(path)
    assert next(rows)["query"] == "q"  # the iterator yields the good rows before the bad one


def test_malformed_config(tmp_path, rows):
    write_dataset(tmp_path / "ds", rows, config={})
    (tmp_path / "ds" / CONFIG_FILE).write_text("{oops")
    with pytest.raises(DatasetError, match="dataset_config.json: not valid JSON"):
        read_dataset_config(tmp_path / "ds")


def test_locations_name_the_data_file_and_its_1_based_lines_or_rows(tmp_path, rows):
    write_dataset(tmp_path / "ds", rows[:2], config={})
    data = tmp_path / "ds" / "data.jsonl"
    first, second = data.read_text(encoding="utf-8").splitlines()
    data.write_text(f"\n{first}\n\n{second}\n", encoding="utf-8")  # blank lines still count as lines
    located = list(iter_located_rows(tmp_path / "ds"))
    assert [where for where, _ in located] == [RowLocation(data, "line", 2), RowLocation(data, "line", 4)]
    assert [row for _, row in located] == rows[:2] == read_dataset(tmp_path / "ds")
    assert str(located[1][0]) == f"{data}, line 4"

    write_dataset(tmp_path / "pq", rows[:2], config={}, fmt="parquet")
    parquet = tmp_path / "pq" / "data.parquet"
    assert [w for w, _ in iter_located_rows(tmp_path / "pq")] == [RowLocation(parquet, "row", n) for n in (1, 2)]
    array = tmp_path / "rows.json"
    array.write_text(json.dumps([{"query": "q", "response": "r"}, ["not", "an", "object"]]))
    with pytest.raises(DatasetError, match=r"rows.json, row 2: expected a JSON object per item of the array, got list"):
        read_dataset(array)
