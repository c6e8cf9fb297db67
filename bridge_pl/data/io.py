"""Datasets on disk: write a dataset directory, read ours or the official iGSM-reasoning files.

A bridge-pl dataset is a directory::

    DIR/data.jsonl            one JSON object per line, columns in `COLUMNS` order, `dag` nested
    DIR/data.parquet          (instead, with --format parquet; `dag` and `behaviors` as JSON text)
    DIR/dataset_config.json   how it was made: generator config, style, seed, size, split, version,
                              row count and the sha256 of the data file (check byte-identity with it)

A new dataset is written into a staging directory and swapped in when complete, data first and the config
last: an interrupted or failed run leaves the output as it was, an old dataset in it byte-identical.

`read_dataset` also accepts a single ``.jsonl`` / ``.json`` / ``.parquet`` / ``.arrow`` file, a directory
written by HF ``datasets.save_to_disk`` (``*.arrow`` in Arrow streaming IPC format beside
``dataset_info.json`` / ``state.json``; a ``DatasetDict`` with one split), or a directory of parquet
files: the official files are read as they are, without the ``datasets`` package. pyarrow is imported
only for parquet and arrow files.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, NamedTuple

from bridge_pl import __version__
from bridge_pl.data.records import COLUMNS
from bridge_pl.task.base import DEFAULT_TASK, Task, TaskError, get_task, task_of_config

__all__ = [
    "CONFIG_FILE",
    "DATA_FILES",
    "FAILURES_FILE",
    "DatasetError",
    "RowLocation",
    "data_task",
    "dataset_task",
    "iter_dataset",
    "iter_located_rows",
    "prepare_output_dir",
    "read_dataset",
    "read_dataset_config",
    "row_to_json",
    "staged_output",
    "unwritable_dir",
    "write_dataset",
    "write_dataset_files",
    "write_failures",
]

Format = Literal["jsonl", "parquet"]
DATA_FILES: dict[str, str] = {"jsonl": "data.jsonl", "parquet": "data.parquet"}
CONFIG_FILE = "dataset_config.json"
FAILURES_FILE = "failures.jsonl"
JSON_COLUMNS = ("behaviors", "dag")  # nested objects: JSON text in parquet
EXPECTED = (
    "a bridge-pl dataset directory (data.jsonl or data.parquet), a .jsonl/.json/.parquet/.arrow file, "
    "a datasets.save_to_disk directory (*.arrow) or a directory of .parquet files"
)
_INTEGER = re.compile(r"^-?\d+$")
_BATCH = 1000


class DatasetError(ValueError):
    """A dataset cannot be read or written; the message names the file and the fix."""


class RowLocation(NamedTuple):
    """Where a row sits in its data file, 1-based: ``line`` of a JSONL file, ``row`` of any other format.

    >>> str(RowLocation(Path("ds/data.jsonl"), "line", 9))
    'ds/data.jsonl, line 9'
    """

    file: Path
    unit: Literal["line", "row"]
    number: int

    def __str__(self) -> str:
        return f"{self.file}, {self.unit} {self.number}"


# ------------------------------------------------------------------------------------------------ writing
def row_to_json(row: dict[str, Any]) -> str:
    """One JSONL line (no newline): the `COLUMNS` in order, compact, non-ASCII kept as is."""
    return json.dumps({c: row.get(c) for c in COLUMNS}, ensure_ascii=False, separators=(",", ":"))


def write_dataset(
    path: str | os.PathLike,
    rows: Iterable[dict[str, Any]],
    *,
    config: dict[str, Any],
    fmt: Format = "jsonl",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write `rows` and their config into the dataset directory `path`.

    The files are written into a staging directory and swapped in only when complete (`staged_output`):
    an error or Ctrl-C while `rows` are produced leaves `path` as it was, an old dataset byte-identical.

    Args:
        path: The dataset directory (created if needed).
        rows: The rows (any iterable; written as they come, so a generator is not held in memory for JSONL).
        config: How the data was made (generator, style, seed, size, split, ...); stored in
            dataset_config.json after the bridge-pl version and before the file facts added here.
        fmt: "jsonl" or "parquet".
        overwrite: Replace an existing dataset in `path`.

    Returns:
        The config as written (with `format`, `data_file`, `rows` and `sha256` added).

    Raises:
        DatasetError: `path` is a file, is not writable, or holds files and `overwrite` is False.
    """
    if fmt not in DATA_FILES:
        raise DatasetError(f"format {fmt!r}: choose one of {', '.join(DATA_FILES)} (--format)")
    with staged_output(path, overwrite) as stage:
        return write_dataset_files(stage, rows, config=config, fmt=fmt)


def write_dataset_files(
    directory: Path, rows: Iterable[dict[str, Any]], *, config: dict[str, Any], fmt: Format = "jsonl"
) -> dict[str, Any]:
    """Write the data file and dataset_config.json into the empty (staging) `directory` (see `write_dataset`)."""
    data_path = directory / DATA_FILES[fmt]
    writer = _write_jsonl if fmt == "jsonl" else _write_parquet
    count = _atomic_write(data_path, lambda tmp: writer(tmp, rows))
    full = {
        "bridge_pl_version": __version__,
        **config,
        "format": fmt,
        "data_file": data_path.name,
        "rows": count,
        "sha256": _sha256(data_path),
    }
    text = json.dumps(full, indent=2, ensure_ascii=False) + "\n"
    _atomic_write(directory / CONFIG_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return full


def write_failures(path: str | os.PathLike, failures: Iterable[Any]) -> Path:
    """Write failures (objects with `to_dict()`, e.g. `RowFailure`) as `path`/failures.jsonl."""
    target = Path(path) / FAILURES_FILE
    lines = "".join(json.dumps(f.to_dict(), ensure_ascii=False) + "\n" for f in failures)
    _atomic_write(target, lambda tmp: tmp.write_text(lines, encoding="utf-8"))
    return target


def prepare_output_dir(path: str | os.PathLike, overwrite: bool) -> Path:
    """Check, before any work, that a dataset can be written to `path`; creates and deletes nothing.

    Raises:
        DatasetError: `path` (or a parent) is a file, the directory that would receive it is not writable,
            or `path` is a non-empty directory and `overwrite` is False.
    """
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise DatasetError(f"{directory} is a file; the output must be a directory (--out DIR)")
    if directory.is_dir() and any(directory.iterdir()) and not overwrite:
        raise DatasetError(
            f"{directory} already exists and is not empty; pass --overwrite to replace the dataset in it "
            "(or choose another --out)"
        )
    # An existing directory receives the staging folder, a new one is created in its nearest existing parent.
    receiver = unwritable_dir(directory)
    if receiver is not None and not receiver.is_dir():
        raise DatasetError(f"{receiver} is a file, so {directory} cannot be created; choose another --out")
    if receiver is not None:
        raise DatasetError(
            f"{receiver} is not writable, so {directory} cannot be written; choose another --out "
            "or make the directory writable"
        )
    return directory


def unwritable_dir(path: str | os.PathLike) -> Path | None:
    """What stops files from being written at `path` (itself, or the nearest existing parent that would hold it),
    when it is not a writable directory; None when nothing does."""
    path = Path(path)
    receiver = path if path.is_dir() else _existing_parent(path)
    return None if receiver.is_dir() and os.access(receiver, os.W_OK | os.X_OK) else receiver


@contextlib.contextmanager
def staged_output(path: str | os.PathLike, overwrite: bool) -> Iterator[Path]:
    """An empty staging directory for the files of a new dataset, swapped into `path` when the block succeeds.

    The dataset files found in the staging directory (data file, dataset_config.json, failures.jsonl) replace
    those of `path`; other files in `path` are kept. On any error (Ctrl-C included) the staging directory is
    removed and `path` is left as it was: not created when it did not exist, an old dataset byte-identical.

    Raises:
        DatasetError: As `prepare_output_dir`.
    """
    directory = prepare_output_dir(path, overwrite)
    in_place = directory.is_dir()
    if in_place:
        # Staged inside the directory itself and moved in file by file: the directory may be a mount point
        # or sit in a read-only parent, and files that are not part of the dataset stay where they are.
        stage = directory / f".staging-{os.getpid()}"
        created: list[Path] = []
    else:
        created = _make_parents(directory.parent)
        stage = directory.parent / f".{directory.name}.staging-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)  # left by a killed run with our pid
    try:
        stage.mkdir()
        yield stage
        if in_place:
            _swap_in_files(stage, directory)
        else:
            os.replace(stage, directory)  # a new directory appears complete, in one step
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        for parent in reversed(created):
            with contextlib.suppress(OSError):
                parent.rmdir()
        raise


def _swap_in_files(stage: Path, directory: Path) -> None:
    """Replace the dataset files of `directory` by those of `stage` (config removed first, written last)."""
    new = {p.name for p in stage.iterdir()}
    (directory / CONFIG_FILE).unlink(missing_ok=True)  # without its config the directory does not look complete
    for name in (*DATA_FILES.values(), FAILURES_FILE):
        if name not in new:  # a stale file of the other format, or old failures, would be mistaken for the new
            (directory / name).unlink(missing_ok=True)
    for name in sorted(new, key=lambda name: name == CONFIG_FILE):
        os.replace(stage / name, directory / name)
    stage.rmdir()


def _existing_parent(path: Path) -> Path:
    """The nearest ancestor of `path` that exists (the current directory for a relative path)."""
    for parent in path.absolute().parents:
        if parent.exists():
            return parent
    return Path(path.absolute().anchor)


def _make_parents(path: Path) -> list[Path]:
    """Create `path` and its missing parents; returns the directories created, outermost first."""
    missing = [p for p in [path, *path.parents] if not p.exists()][::-1]
    path.mkdir(parents=True, exist_ok=True)
    return missing


def _atomic_write(path: Path, write: Callable[[Path], Any]) -> Any:
    """Run `write(tmp)` on a temporary sibling of `path`, then move it into place (removed on failure)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        result = write(tmp)
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C included: never leave the partial file behind
        tmp.unlink(missing_ok=True)
        raise
    return result


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    count = 0
    with open(path, "wb") as f:
        for row in rows:
            f.write(row_to_json(row).encode("utf-8") + b"\n")
            count += 1
    return count


def _parquet_schema():
    import pyarrow as pa

    integers = {"num_ops", "final_answer", "seed", "index", "copy"}
    return pa.schema([(c, pa.int64() if c in integers else pa.string()) for c in COLUMNS])


def _write_parquet(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _parquet_schema()
    count = 0
    with pq.ParquetWriter(path, schema) as writer:
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append(_parquet_row(row))
            if len(batch) == _BATCH:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                count, batch = count + len(batch), []
        if batch or count == 0:
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
            count += len(batch)
    return count


def _parquet_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {c: row.get(c) for c in COLUMNS}
    for column in JSON_COLUMNS:
        if out[column] is not None and not isinstance(out[column], str):
            out[column] = json.dumps(out[column], ensure_ascii=False, separators=(",", ":"))
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ reading
def read_dataset(path: str | os.PathLike, *, required: tuple[str, ...] = ("query", "response")) -> list[dict[str, Any]]:
    """All rows of a dataset (see `iter_dataset`)."""
    return list(iter_dataset(path, required=required))


def iter_dataset(
    path: str | os.PathLike, *, required: tuple[str, ...] = ("query", "response")
) -> Iterator[dict[str, Any]]:
    """The rows of a dataset, normalised: every column of `COLUMNS` present (None when missing), `dag`
    and `behaviors` as dicts, integer text in `final_answer` / `num_ops` as int; other columns kept after.

    Args:
        path: Our dataset directory, a single .jsonl/.json/.parquet/.arrow file, or an official
            iGSM-reasoning directory (datasets.save_to_disk, or parquet files).
        required: Columns every row must have ("query" alone is enough for prompts; SFT needs "response").

    Raises:
        DatasetError: Missing path, unknown layout, empty file, missing column, malformed JSON line
            (the message names the file, the 1-based line and the fix).
    """
    for _, row in iter_located_rows(path, required=required):
        yield row


def iter_located_rows(
    path: str | os.PathLike, *, required: tuple[str, ...] = ("query", "response")
) -> Iterator[tuple[RowLocation, dict[str, Any]]]:
    """(where, row) pairs of a dataset: the rows of `iter_dataset` and where each sits, for error messages.

    The location names the data file itself (``DIR/data.jsonl`` when `path` is a dataset directory) and
    the row's 1-based line (JSONL, blank lines counted) or row (other formats): what the reader opens.
    """
    count = 0
    for file in _data_files(Path(path)):
        for where, row in _raw_rows(file, required):
            yield where, _normalise(row, where)
            count += 1
    if count == 0:
        raise DatasetError(
            f"{path}: the dataset has no rows; expected at least one row with columns {', '.join(required)}"
        )


def dataset_task(path: str | os.PathLike, task: str | Task | None = None, config: dict | None = None) -> Task:
    """The task of the dataset at `path`: its dataset_config.json's, checked against `task` when one is given.

    Raises:
        TaskError: `task` is given and the dataset was written by another task (both are named).
    """
    config = read_dataset_config(path) if config is None else config
    recorded = task_of_config(config)
    if task is None:
        return recorded
    wanted = get_task(task)
    if config is not None and (config.get("task") or DEFAULT_TASK) != wanted.name and "command" in config:
        raise TaskError(
            f"{path} holds {recorded.name} data (dataset_config.json) but the task is {wanted.name}; "
            f"use --task {recorded.name} or data of the {wanted.name} task"
        )
    return wanted


def data_task(paths: dict[str, str | os.PathLike | None], task: str | Task | None = None) -> Task:
    """The one task of several data files (`paths` by config key): `task` checked against each, else theirs.

    Raises:
        TaskError: A file of another task than `task`, or (without `task`) files of two tasks, naming both.
    """
    found: dict[str, tuple[str, Task]] = {}
    for key, path in paths.items():
        if path is not None:
            try:
                found[key] = (str(path), dataset_task(path, task))
            except TaskError as err:
                raise TaskError(f"{key}: {err}") from err
    names = {t.name for _, t in found.values()}
    if len(names) > 1:
        listed = "; ".join(f"{key}={path} is {t.name}" for key, (path, t) in found.items())
        raise TaskError(f"the data files are of different tasks ({listed}); use files of one task")
    return get_task(task) if task is not None or not found else next(iter(found.values()))[1]


def read_dataset_config(path: str | os.PathLike) -> dict[str, Any] | None:
    """The dataset_config.json of a dataset directory (or beside a data file), or None if there is none."""
    path = Path(path)
    config_path = path / CONFIG_FILE if path.is_dir() else path.parent / CONFIG_FILE
    if not config_path.is_file():
        return None
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DatasetError(
            f"{config_path}: not valid JSON ({err.msg}, line {err.lineno}); fix or delete the file"
        ) from err
    if not isinstance(config, dict):
        raise DatasetError(f"{config_path}: expected a JSON object")
    return config


def _data_files(path: Path) -> list[Path]:
    """The data files behind `path`, in reading order."""
    if not path.exists():
        raise DatasetError(f"{path}: no such file or directory; expected {EXPECTED}")
    if path.is_file():
        if path.suffix not in _READERS:
            raise DatasetError(f"{path}: unknown file type {path.suffix!r}; expected {EXPECTED}")
        return [path]
    for candidate in _directory_candidates(path):
        if candidate:
            return candidate
    raise DatasetError(f"{path}: no dataset files in this directory; expected {EXPECTED}")


def _directory_candidates(path: Path) -> Iterator[list[Path]]:
    """Possible data files of a directory, most specific layout first (the first non-empty one wins)."""
    config = read_dataset_config(path)
    if config and isinstance(config.get("data_file"), str):
        yield [f for f in [path / config["data_file"]] if f.is_file()]
    yield [path / name for name in DATA_FILES.values() if (path / name).is_file()][:1]
    if (path / "dataset_dict.json").is_file():
        yield _arrow_files(_single_split(path))
    yield _arrow_files(path)
    yield sorted(path.glob("*.parquet")) or sorted(path.glob("data/*.parquet"))
    yield sorted(path.glob("*.jsonl"))


def _single_split(path: Path) -> Path:
    """The one split directory of a `DatasetDict.save_to_disk` directory."""
    try:
        splits = json.loads((path / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
    except (json.JSONDecodeError, AttributeError) as err:
        raise DatasetError(f"{path / 'dataset_dict.json'}: not a valid datasets split list") from err
    if len(splits) != 1:
        choices = ", ".join(str(path / s) for s in splits)
        raise DatasetError(f"{path} holds {len(splits)} splits; pass one of them instead: {choices}")
    if not _arrow_files(path / splits[0]):
        raise DatasetError(f"{path / splits[0]}: no .arrow files in this split directory")
    return path / splits[0]


def _arrow_files(path: Path) -> list[Path]:
    """The *.arrow files of a save_to_disk directory, in state.json order when it lists them."""
    state = path / "state.json"
    if state.is_file():
        try:
            names = [entry["filename"] for entry in json.loads(state.read_text(encoding="utf-8"))["_data_files"]]
            return [path / name for name in names]
        except (json.JSONDecodeError, KeyError, TypeError):
            pass  # an unfamiliar state.json: fall back to the sorted file names
    return sorted(path.glob("*.arrow"))


def _raw_rows(file: Path, required: tuple[str, ...]) -> Iterator[tuple[RowLocation, dict[str, Any]]]:
    """(location, row) pairs of one data file."""
    if not file.is_file():
        raise DatasetError(f"{file}: listed by the dataset's metadata but missing; re-copy the dataset")
    if file.stat().st_size == 0:
        raise DatasetError(f"{file}: the file is empty; expected rows with at least the columns {', '.join(required)}")
    where: RowLocation | None = None
    try:
        for where, row in _READERS[file.suffix](file, required):
            yield where, row
    except DatasetError:
        raise
    except Exception as err:
        if not _is_read_error(err):
            raise
        raise DatasetError(_unreadable(file, err, where)) from err


def _is_read_error(err: Exception) -> bool:
    """Whether `err` says a data file's bytes cannot be read or decoded (not a bug of ours)."""
    pyarrow = sys.modules.get("pyarrow")  # imported by the parquet and arrow readers only
    arrow_error = pyarrow is not None and isinstance(err, pyarrow.ArrowException)
    return arrow_error or isinstance(err, OSError | UnicodeDecodeError)


def _unreadable(file: Path, err: Exception, last: RowLocation | None) -> str:
    """The message of a data file that breaks off while being read: which file, how far, and the fix."""
    if isinstance(err, PermissionError):
        return f"{file}: cannot be read (permission denied); fix the file's permissions"
    after = f"after {last.unit} {last.number}" if last else "before the first row"
    try:
        config = read_dataset_config(file)
    except DatasetError:
        config = None
    changed = (
        " (its sha256 differs from the one in dataset_config.json)"
        if config and config.get("data_file") == file.name and config.get("sha256") not in (None, _sha256(file))
        else ""
    )
    reason = str(err).strip() or type(err).__name__
    return (
        f"{file} is corrupt or unreadable{changed}: reading stopped {after} ({reason}); "
        "regenerate the dataset (bridge data generate ...) or copy the file again"
    )


def _missing_columns(
    file: Path, columns: Iterable[str], required: tuple[str, ...], where: RowLocation | None = None
) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        present = ", ".join(columns) or "none"
        raise DatasetError(
            f"{where or file}: missing column(s) {', '.join(missing)} (columns: {present}); "
            f"every row needs {', '.join(required)}"
        )


def _jsonl_rows(file: Path, required: tuple[str, ...]) -> Iterator[tuple[RowLocation, dict[str, Any]]]:
    with open(file, "rb") as f:  # bytes, decoded line by line: a bad byte is reported with its line
        head = f.read(64).lstrip()
        f.seek(0)
        if head.startswith(b"["):  # a .json file holding one array of row objects
            yield from _json_array_rows(file, _decoded(f.read(), RowLocation(file, "line", 1)), required)
            return
        for number, raw in enumerate(f, start=1):
            where = RowLocation(file, "line", number)
            line = _decoded(raw, where)
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DatasetError(
                    f"{where}: not valid JSON ({err.msg} at column {err.colno}); each line must be "
                    "one JSON object: fix or delete that line"
                ) from err
            if not isinstance(row, dict):
                raise DatasetError(f"{where}: expected a JSON object per line, got {type(row).__name__}")
            _missing_columns(file, row, required, where)
            yield where, row


def _decoded(raw: bytes, where: RowLocation) -> str:
    """UTF-8 text of a line (or a whole .json file starting at `where`); bad bytes are a DatasetError."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DatasetError(
            f"{where}: not UTF-8 text (byte {err.start + 1} of the line); the file is corrupt or not a "
            "dataset: regenerate it or copy the file again"
        ) from err


def _json_array_rows(file: Path, text: str, required: tuple[str, ...]) -> Iterator[tuple[RowLocation, dict[str, Any]]]:
    """The objects of a .json file holding one array; "row N" is the N-th object (1-based)."""
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{file}: not valid JSON ({err.msg}, line {err.lineno} column {err.colno})") from err
    for number, row in enumerate(rows, start=1):
        where = RowLocation(file, "row", number)
        if not isinstance(row, dict):
            raise DatasetError(f"{where}: expected a JSON object per item of the array, got {type(row).__name__}")
        _missing_columns(file, row, required, where)
        yield where, row


def _parquet_rows(file: Path, required: tuple[str, ...]) -> Iterator[tuple[RowLocation, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(file)
    except (pa.ArrowInvalid, OSError) as err:
        raise DatasetError(
            f"{file} is not a readable parquet file ({err}); regenerate the dataset or copy the file again"
        ) from err
    _missing_columns(file, parquet.schema_arrow.names, required)
    yield from _numbered(file, parquet.iter_batches(batch_size=_BATCH))


def _arrow_rows(file: Path, required: tuple[str, ...]) -> Iterator[tuple[RowLocation, dict[str, Any]]]:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    with pa.OSFile(str(file)) as source:
        try:
            reader = ipc.open_stream(source)  # what datasets.save_to_disk writes
        except pa.ArrowInvalid:
            source.seek(0)
            try:
                reader = ipc.open_file(source)
            except pa.ArrowInvalid as err:
                raise DatasetError(
                    f"{file} is not an Arrow IPC stream or file ({err}); regenerate it or copy the file again"
                ) from err
        _missing_columns(file, reader.schema.names, required)
        batches = reader if isinstance(reader, ipc.RecordBatchStreamReader) else _file_batches(reader)
        yield from _numbered(file, batches)


def _numbered(file: Path, batches: Iterable[Any]) -> Iterator[tuple[RowLocation, dict[str, Any]]]:
    """The rows of Arrow record batches, numbered from 1 in file order."""
    number = 0
    for batch in batches:
        for row in batch.to_pylist():
            number += 1
            yield RowLocation(file, "row", number), row


def _file_batches(reader) -> Iterator[Any]:
    for i in range(reader.num_record_batches):
        yield reader.get_batch(i)


_READERS: dict[str, Callable[[Path, tuple[str, ...]], Iterator[tuple[RowLocation, dict[str, Any]]]]] = {
    ".jsonl": _jsonl_rows,
    ".json": _jsonl_rows,
    ".parquet": _parquet_rows,
    ".arrow": _arrow_rows,
}


def _normalise(row: dict[str, Any], where: RowLocation) -> dict[str, Any]:
    """Our columns first (None when missing), JSON text decoded, integer text as int; other columns after."""
    out = {c: row.get(c) for c in COLUMNS}
    out.update((k, v) for k, v in row.items() if k not in out)
    for column in JSON_COLUMNS:
        if isinstance(out[column], str):
            try:
                out[column] = json.loads(out[column])
            except json.JSONDecodeError as err:
                raise DatasetError(f"{where}: column {column} holds text that is not valid JSON ({err.msg})") from err
    for column in ("final_answer", "num_ops"):
        if isinstance(out[column], str) and _INTEGER.match(out[column].strip()):
            out[column] = int(out[column])
    return out
