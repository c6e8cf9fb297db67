"""Every test named in the bad-input table of tests/README.md exists (the table cannot name a test that is gone)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def table_tests() -> list[tuple[str, str]]:
    """(file, test name) for every `path::name` reference in the "Bad input and faults" table."""
    text = (ROOT / "tests" / "README.md").read_text(encoding="utf-8")
    table = text.split("## Bad input and faults", 1)[1]
    return re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", table)


def test_every_row_names_tests_that_exist():
    references = table_tests()
    assert len(references) >= 40
    missing = []
    for path, name in references:
        tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
        names = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        if name not in names:
            missing.append(f"{path}::{name}")
    assert missing == []
