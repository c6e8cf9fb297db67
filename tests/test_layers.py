"""The package's layers import only downward: every import of every module is read (AST) and checked.

The layer order is declared once, in `LAYERS` (README "Layout" draws it). A module may import its own package, any
package of a lower layer, and the root ``bridge_pl`` (its version); packages that share a layer are siblings and
never import each other. Imports inside functions count too: a lazy import is still an arrow between layers.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bridge_pl", "callbacks")

# Lowest first. One tuple per layer; the names in a tuple are siblings.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("bridge_pl.flags",),  # command-line flags from config dataclasses (standard library only)
    ("bridge_pl.task",),  # task families: generator, renderers, verifier (pure Python)
    ("bridge_pl.augment",),  # behavior injection and the baselines (pure Python)
    ("bridge_pl.data",),  # datasets on disk, prompt formats, encoding, loaders, DataModules
    ("bridge_pl.models",),  # the project tokenizer, tiny models, loading and saving, LoRA
    ("bridge_pl.rollout", "bridge_pl.rl"),  # rollout engines | RL tensor math (no Lightning)
    ("bridge_pl.analysis", "bridge_pl.evaluation"),  # alpha histograms, influence | the one evaluator
    ("bridge_pl.modules",),  # the recipes: SFTModule, GRPOModule (GRPO validation scores with the evaluator)
    ("callbacks",),  # observers of a fit
    ("bridge_pl.experiment",),  # the paper's comparison, stage by stage
    ("bridge_pl.train_cli",),  # LightningCLI wiring
    ("bridge_pl.cli_data",),  # the `bridge data` subcommands: argparse wiring only
    ("bridge_pl.cli",),  # the `bridge` command: argparse wiring only
)
VLLM_MODULE = "bridge_pl.rollout.vllm"  # the only module that imports vllm


def layer_of(module: str) -> tuple[int, str] | None:
    """(rank, layer package) of a module of ours; None for the root package and for foreign modules."""
    for rank, layer in enumerate(LAYERS):
        for package in layer:
            if module == package or module.startswith(package + "."):
                return rank, package
    return None


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported module) of every import in a file, relative imports resolved."""
    found = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            if layer_of(base) is None:  # `from bridge_pl import modules`: the names are the modules
                found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
            found.append((node.lineno, base))
    return found


def violations(root: Path) -> list[str]:
    """Every import that goes up a layer or sideways to a sibling, and every vllm import outside `VLLM_MODULE`."""
    problems = []
    files = [f for package in PACKAGES if (root / package).is_dir() for f in sorted((root / package).rglob("*.py"))]
    for path in files:
        module = module_name(path, root)
        own = layer_of(module)
        for line, target in imports(path, module):
            where = f"{path.relative_to(root)}:{line}"
            if target.split(".")[0] == "vllm" and module != VLLM_MODULE:
                problems.append(f"{where}: imports vllm; only {VLLM_MODULE} may")
            theirs = layer_of(target)
            if own is None or theirs is None or theirs[1] == own[1]:
                continue
            if theirs[0] > own[0]:
                problems.append(f"{where}: {module} (layer {own[1]}) imports {target}, a higher layer ({theirs[1]})")
            elif theirs[0] == own[0]:
                problems.append(f"{where}: {module} imports {target}: {own[1]} and {theirs[1]} are siblings")
    return problems


def test_every_module_belongs_to_a_layer():
    unplaced = [
        module_name(f, ROOT)
        for package in PACKAGES
        for f in sorted((ROOT / package).rglob("*.py"))
        if layer_of(module_name(f, ROOT)) is None and module_name(f, ROOT) != "bridge_pl"
    ]
    assert not unplaced, f"add these modules to a layer in LAYERS: {unplaced}"


def test_the_package_imports_only_downward():
    assert violations(ROOT) == []


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")


@pytest.mark.parametrize(
    ("relative", "text", "expected"),
    [
        ("bridge_pl/task/planted.py", "from bridge_pl.models import model_io\n", "a higher layer (bridge_pl.models)"),
        ("bridge_pl/analysis/planted.py", "def f():\n    import bridge_pl.modules.grpo\n", "(bridge_pl.modules)"),
        ("bridge_pl/rl/planted.py", "from bridge_pl.rollout.base import Completion\n", "are siblings"),
        ("bridge_pl/data/planted.py", "from ..modules import sft\n", "a higher layer (bridge_pl.modules)"),
        ("bridge_pl/modules/planted.py", "import vllm\n", "only bridge_pl.rollout.vllm may"),
    ],
)
def test_a_planted_violation_fails(tmp_path, relative, text, expected):
    for package in PACKAGES:  # a copy of the real tree, then one bad import planted in it
        for source in (ROOT / package).rglob("*.py"):
            write(tmp_path, str(source.relative_to(ROOT)), source.read_text(encoding="utf-8"))
    assert violations(tmp_path) == []
    write(tmp_path, relative, text)
    (found,) = violations(tmp_path)
    assert found.startswith(relative) and expected in found


def test_evaluation_and_analysis_load_no_lightning_and_no_recipe():
    code = (
        "import sys; import bridge_pl.analysis.measure, bridge_pl.analysis.plots, bridge_pl.evaluation; "
        "loaded = [m for m in ('lightning', 'pytorch_lightning', 'bridge_pl.modules') if m in sys.modules]; "
        "print(loaded)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_task_and_augment_layers_load_no_torch():
    code = (
        "import sys; import bridge_pl.task, bridge_pl.augment, bridge_pl.data.records, bridge_pl.data.io; "
        "print([m for m in ('torch', 'transformers', 'lightning') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_scripts_call_the_library_not_the_command_line():
    found = [
        f"{path.relative_to(ROOT)}:{line}: imports {target}"
        for path in sorted((ROOT / "scripts").glob("*.py"))
        for line, target in imports(path, path.stem)
        if target in ("bridge_pl.cli", "bridge_pl.cli_data") or target.startswith("bridge_pl.cli.")
    ]
    assert found == []
