"""Drawing a problem's dependency DAG: Graphviz DOT text, and a PNG when Graphviz or matplotlib is present.

The four node kinds of the paper's figure: the **target** (red), **leaves** that only take a constant
(light blue), other **necessary** nodes (dark blue) and **redundant** nodes (grey). Solid arrows are
explicit dependencies (written in a question sentence); dashed arrows are implicit ones (category
totals that follow from the containment hierarchy).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from bridge_pl.task.problem import Node, Problem

__all__ = ["node_role", "to_dot", "draw"]

COLORS = {"target": "#d62728", "leaf": "#9ecae1", "necessary": "#2b5fa8", "redundant": "#bdbdbd"}
FONT_COLORS = {"target": "white", "leaf": "black", "necessary": "white", "redundant": "black"}


def node_role(problem: Problem, node: Node) -> str:
    """The node's kind in the paper's figure: target, leaf, necessary or redundant."""
    if node.id == problem.topo[-1]:
        return "target"
    if not node.necessary:
        return "redundant"
    return "leaf" if node.is_leaf else "necessary"


def _label(node: Node) -> str:
    text = f"{node.upper}'s {node.lower}\\n= {node.value}"
    return text.replace('"', '\\"')


def to_dot(problem: Problem) -> str:
    """Graphviz DOT text of the problem's DAG (one box per node, arrows from inputs to users)."""
    lines = [
        "digraph problem {",
        "  rankdir=LR;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
    ]
    for node in problem.nodes:
        role = node_role(problem, node)
        lines.append(
            f'  n{node.id} [label="{_label(node)}", fillcolor="{COLORS[role]}", fontcolor="{FONT_COLORS[role]}"];'
        )
    if any(node.constant is not None for node in problem.nodes):
        lines.append('  rng [label="constant", shape=ellipse, style=dashed];')
    for node in problem.nodes:
        style = "dashed" if node.kind == "abstract" else "solid"
        for parent in node.inputs:
            lines.append(f"  n{parent} -> n{node.id} [style={style}];")
        if node.constant is not None:
            lines.append(f'  rng -> n{node.id} [style=dotted, label="{node.constant}", fontsize=8];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw(problem: Problem, path: str | os.PathLike) -> Path:
    """Write the DAG to `path`: .dot always works; .png/.svg/.pdf use Graphviz's `dot`, else matplotlib (PNG)."""
    path = Path(path)
    dot = to_dot(problem)
    if path.suffix == ".dot":
        path.write_text(dot)
        return path
    if shutil.which("dot"):
        subprocess.run(["dot", f"-T{path.suffix.lstrip('.')}", "-o", str(path)], input=dot, text=True, check=True)
        return path
    if path.suffix != ".png":
        raise RuntimeError(f"drawing {path.suffix} files needs Graphviz (`apt-get install graphviz`); use .dot or .png")
    return _draw_matplotlib(problem, path)


def _depths(problem: Problem) -> dict[int, int]:
    depth: dict[int, int] = {}
    for node_id in [*problem.topo, *problem.redundant]:
        inputs = problem.nodes[node_id].inputs
        depth[node_id] = 1 + max((depth[i] for i in inputs), default=-1)
    return depth


def _draw_matplotlib(problem: Problem, path: Path) -> Path:
    """A layered drawing (column = longest path from a leaf) with matplotlib, for machines without Graphviz."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise RuntimeError("drawing a PNG needs Graphviz or matplotlib (`pip install matplotlib`)") from err
    depth = _depths(problem)
    columns: dict[int, list[int]] = {}
    for node_id, d in depth.items():
        columns.setdefault(d, []).append(node_id)
    position = {node_id: (d, -row) for d, ids in columns.items() for row, node_id in enumerate(ids)}
    height = max(len(ids) for ids in columns.values())
    fig, ax = plt.subplots(figsize=(3.2 * len(columns), 0.9 * height + 1))
    for node in problem.nodes:
        for parent in node.inputs:
            (x0, y0), (x1, y1) = position[parent], position[node.id]
            style = "--" if node.kind == "abstract" else "-"
            ax.annotate("", (x1 - 0.3, y1), (x0 + 0.3, y0), arrowprops={"arrowstyle": "->", "linestyle": style})
    for node in problem.nodes:
        role = node_role(problem, node)
        x, y = position[node.id]
        bbox = {"boxstyle": "round", "facecolor": COLORS[role]}
        label = f"{node.upper}'s {node.lower}\n= {node.value}"
        ax.text(x, y, label, ha="center", va="center", fontsize=7, color=FONT_COLORS[role], bbox=bbox)
    ax.set_xlim(-0.6, len(columns) - 0.4)
    ax.set_ylim(-height, 1)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
