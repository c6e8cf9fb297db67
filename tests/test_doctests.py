"""Every example in a docstring of the package runs and prints what it says (python -m doctest semantics)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import bridge_pl
import callbacks

MODULES = sorted(
    name
    for package in (bridge_pl, callbacks)
    for _, name, _ in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}.")
)


def test_modules_are_found():
    assert {"bridge_pl.rl.losses", "bridge_pl.rl.advantages", "bridge_pl.rollout.weight_sync"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
