"""The vLLM version range: pyproject's extra equals the engine's documented range, and a too-old vllm is refused.

No vllm needed: a fake module with a `__version__` stands in for it.
"""

from __future__ import annotations

import sys
import tomllib
import types
import warnings
from pathlib import Path

import pytest

from bridge_pl.rollout import vllm as engine

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


@pytest.fixture
def fake_vllm(monkeypatch):
    """Install a stand-in `vllm` module of a given version (and keep import_vllm's env defaults out of os.environ)."""
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "WARNING")

    def install(version: str | None) -> types.ModuleType:
        module = types.ModuleType("vllm")
        if version is not None:
            module.__version__ = version
        monkeypatch.setitem(sys.modules, "vllm", module)
        return module

    return install


def test_pyproject_extra_pins_the_engine_range():
    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    assert extras["vllm"] == [f"vllm>={engine.MIN_VLLM},<{engine.VLLM_BELOW}"]


@pytest.mark.parametrize("old", ["0.8.1", "0.10.1", "0.31.9", "0.12.0+cu128"])
def test_too_old_vllm_names_installed_and_required_versions(fake_vllm, old):
    fake_vllm(old)
    with pytest.raises(ImportError) as caught:
        engine.import_vllm()
    message = str(caught.value)
    assert f"vllm {old} is installed" in message
    assert f"vllm>={engine.MIN_VLLM},<{engine.VLLM_BELOW}" in message
    assert "bridge-pl[vllm]" in message and "HFEngine" in message


@pytest.mark.parametrize("version", ["0.32.0", "0.32.0+cpu", "0.32.1.dev3+gabc1234"])
def test_tested_vllm_imports_silently(fake_vllm, version):
    module = fake_vllm(version)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert engine.import_vllm() is module


def test_newer_vllm_warns_but_imports(fake_vllm):
    module = fake_vllm("0.33.0")
    with pytest.warns(UserWarning, match=r"vllm 0\.33\.0 is newer than .*>=0\.32\.0,<0\.33"):
        assert engine.import_vllm() is module


@pytest.mark.parametrize("version", [None, "dev"])
def test_unversioned_build_is_let_through(fake_vllm, version):
    module = fake_vllm(version)
    assert engine.import_vllm() is module
