"""DAG drawing: DOT text with the paper's four node kinds, and a PNG file."""

import re

from bridge_pl.task.draw import COLORS, draw, node_role, to_dot
from bridge_pl.task.generator import GeneratorConfig, generate_problem


def _problem_with_redundant_and_abstract():
    for seed in range(100):
        problem = generate_problem(GeneratorConfig(), seed)
        kinds = {node.kind for node in problem.nodes}
        if problem.redundant and kinds == {"instance", "abstract"}:
            return problem
    raise AssertionError("no problem with redundant and abstract nodes in 100 seeds")


def test_dot_has_every_node_edge_and_role_color():
    problem = _problem_with_redundant_and_abstract()
    dot = to_dot(problem)
    assert dot.startswith("digraph problem {") and dot.rstrip().endswith("}")
    assert len(re.findall(r"^  n\d+ \[label=", dot, re.M)) == len(problem.nodes)
    edges = sum(len(node.inputs) for node in problem.nodes)
    assert len(re.findall(r"^  n\d+ -> n\d+", dot, re.M)) == edges
    roles = {node_role(problem, node) for node in problem.nodes}
    assert {"target", "leaf", "redundant"} <= roles
    for role in roles:
        assert COLORS[role] in dot
    assert "style=dashed" in dot  # implicit (abstract) dependencies
    assert node_role(problem, problem.target) == "target"


def test_draw_writes_dot_and_png(tmp_path):
    problem = generate_problem(GeneratorConfig(), 1)
    assert draw(problem, tmp_path / "p.dot").read_text() == to_dot(problem)
    png = draw(problem, tmp_path / "p.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
