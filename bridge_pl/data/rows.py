"""The rows of a dataset as the DataModules read them: with where each sits in its file, and checks that list
every bad row at once (file and 1-based line), naming the YAML key and the fix. Pure Python.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

from bridge_pl.data.io import DatasetError, RowLocation, iter_located_rows
from bridge_pl.task.base import Task, get_task

__all__ = ["check_final_answers", "check_text_columns", "describe_rows", "read_rows"]

MAX_LISTED = 5  # bad rows quoted in one error message


def read_rows(
    path: str, key: str, required: tuple[str, ...], limit: int | None = None
) -> tuple[list[dict[str, Any]], list[RowLocation]]:
    """The rows of a dataset and where each sits in its file (`iter_located_rows`); errors name the key.

    Only the first `limit` rows are read (all with None).
    """
    try:
        located = list(itertools.islice(iter_located_rows(path, required=required), limit))
    except DatasetError as err:
        raise DatasetError(f"{key}: {err}") from err
    return [row for _, row in located], [where for where, _ in located]


def describe_rows(found: Sequence[tuple[RowLocation, str]]) -> str:
    """(where, what is wrong) pairs as one listing that names each file once, the first `MAX_LISTED` only.

    >>> from pathlib import Path
    >>> describe_rows([(RowLocation(Path("d.jsonl"), "line", 9), "empty response")])
    'd.jsonl: line 9: empty response'
    """
    parts, file = [], None
    for where, what in found[:MAX_LISTED]:
        head = f"{where.file}: " if where.file != file else ""
        parts.append(f"{head}{where.unit} {where.number}: {what}")
        file = where.file
    more = f" (and {len(found) - MAX_LISTED} more)" if len(found) > MAX_LISTED else ""
    return "; ".join(parts) + more


def check_text_columns(
    rows: Sequence[dict[str, Any]], columns: tuple[str, ...], locations: Sequence[RowLocation], key: str
) -> None:
    """Refuse rows whose `columns` are not non-empty text, listing them all in one error.

    Args:
        rows: The rows, as `read_rows` returns them.
        columns: The columns that must hold text.
        locations: Where each row sits in its file (`read_rows`' second list).
        key: The YAML key that named the data.

    Raises:
        DatasetError: Naming the key, each file and its 1-based lines (or rows), and the fix.
    """
    bad = [
        (where, f"empty or non-text {column}")
        for row, where in zip(rows, locations, strict=True)
        for column in columns
        if not isinstance(row.get(column), str) or not row[column].strip()
    ]
    if bad:
        raise DatasetError(
            f"{key}: {len(bad)} value(s) are not non-empty text: {describe_rows(bad)}. "
            f"Every row needs text in {', '.join(columns)}: fix or remove those rows"
        )


def check_final_answers(
    rows: list[dict[str, Any]], locations: list[RowLocation], key: str, task: Task | None = None
) -> None:
    """Refuse rows whose final_answer is not a ground truth of `task` (iGSM: an integer), all in one error.

    Raises:
        DatasetError: Naming the key, each file and its 1-based lines (or rows), the values and the fix.
    """
    task = get_task(task)
    found = [(where, row["final_answer"]) for row, where in zip(rows, locations, strict=True)]
    bad = [(where, repr(value)) for where, value in found if task.truth_error(value) is not None]
    if bad:
        reason = task.truth_error(next(value for where, value in found if task.truth_error(value) is not None))
        raise DatasetError(
            f"{key}: {len(bad)} final_answer value(s) are not {task.name} answers: {describe_rows(bad)}. The "
            f"ground truth {reason}: fix or remove those rows"
        )
