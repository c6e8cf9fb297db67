"""Command-line flags derived from config dataclasses: one flag per field, helped by the field's docstring.

A new field of `GeneratorConfig` or `BehaviorConfig` reaches ``bridge data`` without editing the CLI. Standard
library only, so building the parser stays fast.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from collections.abc import Collection, Mapping
from typing import Any

__all__ = ["add_config_flags", "field_docs", "given_fields"]


def add_config_flags(
    group, config: type, *, metavars: Mapping[str, str] | None = None, skip: Collection[str] = ()
) -> None:
    """Add one flag per field of the dataclass `config` (`--min-op` for `min_op`), helped by the field's docstring.

    The type comes from the annotation (int, float, str, a Literal, or one of them | None); bool fields get
    `--x/--no-x`. Every flag defaults to None, "not given": the preset's value stays. Fields in `skip` get none
    (another config's flag of the same name serves them, or the field is implied).
    """
    hints, docs = typing.get_type_hints(config), field_docs(config)
    for field in dataclasses.fields(config):
        if field.name in skip:
            continue
        flag, help_ = "--" + field.name.replace("_", "-"), docs.get(field.name, "").replace("%", "%%") or None
        kind, choices = _flag_type(field.name, hints[field.name])
        metavar = (metavars or {}).get(field.name)
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            group.add_argument(flag, type=kind, choices=choices, metavar=metavar, help=help_)


def field_docs(config: type) -> dict[str, str]:
    """The attribute docstrings of a class: the string literal right after each annotated field, from its source."""
    try:
        body = ast.parse(textwrap.dedent(inspect.getsource(config))).body[0].body
    except (OSError, TypeError):  # no source (a class built at run time): flags without help
        return {}
    return {
        field.target.id: inspect.cleandoc(doc.value.value)
        for field, doc in zip(body, body[1:], strict=False)
        if isinstance(field, ast.AnnAssign) and isinstance(field.target, ast.Name) and isinstance(doc, ast.Expr)
        and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str)
    }  # fmt: skip


def _flag_type(name: str, hint: Any) -> tuple[type, tuple | None]:
    """The argparse type (and choices) of a field annotation; Optional is dropped (None means "not given")."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    options = [a for a in typing.get_args(hint) if a is not type(None)] if union else [hint]
    if len(options) == 1 and typing.get_origin(options[0]) is typing.Literal:
        choices = typing.get_args(options[0])
        return type(choices[0]), choices
    if len(options) == 1 and options[0] in (bool, int, float, str):
        return options[0], None
    raise TypeError(f"field {name}: {hint} has no flag type; use int, float, str, bool or a Literal (| None)")


def given_fields(args: argparse.Namespace, config: type) -> dict[str, Any]:
    """The fields of `config` whose flags were given (not None), in field order (fields without a flag: never)."""
    values = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(config)}
    return {name: value for name, value in values.items() if value is not None}
