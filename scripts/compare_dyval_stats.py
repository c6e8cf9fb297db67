"""Run bridge-pl's DyVal generator and PromptBench's own side by side, and compare statistics of their questions.

A developer tool, never imported by tests or CI: it needs a PromptBench source tree (microsoft/promptbench), which
the project does not depend on. Both generators run in this process at the same knobs, for arithmetic and boolean
logic at the paper's settings (paper_spec §F.4), and every statistic is measured the same way on both: from the
question text alone (parsed with `bridge_pl.task.dyval.parse_dyval_question`), plus the generator's own answer.

    python scripts/compare_dyval_stats.py --promptbench /tmp/promptbench_src --samples 2000 --out docs/dyval_fidelity.md

`--out` replaces the generated section of that file (between its BEGIN/END markers) and keeps the rest. Longer than
the other scripts because the loading shims and the measurements have no home in the package.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import itertools
import math
import random
import statistics
import sys
import time
import types
from pathlib import Path

from bridge_pl.task.dyval import generator as ours_generator
from bridge_pl.task.dyval.generator import DyValConfig, generate_dyval_problem
from bridge_pl.task.dyval.names import FORBIDDEN_NAMES, dyval_names
from bridge_pl.task.dyval.question import parse_dyval_question, render_dyval_question

BEGIN, END = "<!-- BEGIN compare_dyval_stats -->", "<!-- END compare_dyval_stats -->"
# (setting, depth, redundant_min, redundant_max): paper_spec §F.4; children 2 and extra links 1 are DyValDataset's
# defaults (promptbench/dyval/dyval_dataset.py), which the paper keeps.
SETTINGS = [("SFT", 4, 0, 0), ("RL / test ID", 5, 0, 8), ("test OOD", 5, 20, 22)]
FAMILIES = {"arithmetic": "arithmetic", "logic": "bool_logic"}  # ours -> PromptBench's dataset_type
OPS = {"arithmetic": ("+", "-", "*", "/", "sqrt", "**"), "logic": ("and", "or", "not")}
UNARY = {"sqrt", "**", "not"}
MAGNITUDES = [(0, 1), (1, 10), (10, 100), (100, 1000), (1000, 10_000), (10_000, math.inf)]
NAME_RANK = {name: rank for rank, name in enumerate(dyval_names())}


def load_promptbench(root: Path) -> types.SimpleNamespace:
    """PromptBench's DyValDataset and prompts, imported from `root` without its top-level package or NLTK."""
    if not (root / "promptbench" / "dyval" / "DAG").is_dir():
        sys.exit(
            f"--promptbench {root}: no promptbench/dyval/DAG there. Extract it with\n"
            "  git --git-dir=DIR archive HEAD promptbench/dyval | tar -x -C /tmp/promptbench_src"
        )
    # dag.py runs nltk.download('words') and forbids every NLTK word shorter than 4 letters. Names are 3 lowercase
    # letters, so only the 3-letter lowercase entries matter: exactly bridge-pl's FORBIDDEN_NAMES (names.py). The
    # stub makes both name streams identical by construction and keeps the run offline; names are not under test.
    nltk = types.ModuleType("nltk")
    nltk.download = lambda *args, **kwargs: True
    nltk.corpus = types.ModuleType("nltk.corpus")
    nltk.corpus.words = types.SimpleNamespace(words=lambda: sorted(FORBIDDEN_NAMES))
    sys.modules.update({"nltk": nltk, "nltk.corpus": nltk.corpus})
    for name in ("numpy", "tqdm"):  # used only by other DyVal tasks (numpy) and the progress bar (tqdm)
        if importlib.util.find_spec(name) is None:
            stub = types.ModuleType(name)
            stub.tqdm = lambda iterable, *args, **kwargs: iterable
            sys.modules[name] = stub
    # A bare namespace for `promptbench`, so its __init__ (models, datasets, torch) never runs.
    package = types.ModuleType("promptbench")
    package.__path__ = [str(root / "promptbench")]
    sys.modules["promptbench"] = package
    from promptbench.dyval.DAG.dag import TreeDAG
    from promptbench.dyval.dyval_dataset import DyValDataset
    from promptbench.dyval.dyval_utils import DYVAL_PROMPTS

    return types.SimpleNamespace(DyValDataset=DyValDataset, TreeDAG=TreeDAG, prompts=DYVAL_PROMPTS)


def order_from_root(pb) -> None:
    """Make PromptBench's topological order bridge-pl's: one DFS from the root, children in list order.

    DyVal's ``generate_cycles`` shuffles ``dag.nodes`` even with add_cycles=0, and ``topological_sort`` starts a DFS
    from each node in that order over ``set(node.children)``; this probe isolates that from everything else.
    """

    def topological_sort(self):
        seen, order = set(), []

        def visit(node):
            if node.name not in seen:
                seen.add(node.name)
                for child in dict.fromkeys(node.children):
                    visit(child)
                order.append(node.name)

        for node in [self.root, *self.nodes]:
            visit(node)
        return order

    pb.TreeDAG.topological_sort = topological_sort


def count_calls(owner: type, method: str, counter: list[int]) -> None:
    """Wrap `owner.method` so each call adds 1 to counter[0] (one call = one DAG draw, to measure rejections)."""
    original = getattr(owner, method)

    def counted(self, *args, **kwargs):
        counter[0] += 1
        return original(self, *args, **kwargs)

    setattr(owner, method, counted)


def theirs_samples(pb, family: str, depth: int, low: int, high: int, n: int, seed: int, draws: list[int]):
    """(question, answer, draws) from PromptBench's DyValDataset._generate_sample, add_rand_desc ~ U{low..high}."""
    random.seed(seed)
    with contextlib.redirect_stderr(io.StringIO()):  # its empty tqdm progress bar
        dataset = pb.DyValDataset(FAMILIES[family], num_samples=0, depth=depth)  # children 2, extra links 1
    for _ in range(n):
        draws[0] = 0
        sample = dataset._generate_sample(add_rand_desc=random.randint(low, high))
        prompt = pb.prompts[FAMILIES[family]][0]
        yield (
            prompt.format(descriptions=sample["descriptions"]["topological"], vars=sample["vars"]),
            sample["answers"],
            draws[0],
        )


def ours_samples(family: str, depth: int, low: int, high: int, n: int, seed: int, draws: list[int]):
    """(question, answer, draws) from bridge-pl's generator at the same knobs."""
    config = DyValConfig(family=family, depth=depth, redundant_min=low, redundant_max=high)
    for index in range(n):
        draws[0] = 0
        problem = generate_dyval_problem(config, seed, index)
        yield render_dyval_question(problem), problem.nodes[problem.target].value, draws[0]


def measure(question: str, answer, draws: int, family: str) -> dict[str, float]:
    """Every per-problem statistic, read from the question text (plus the generator's answer and draw count)."""
    parsed = parse_dyval_question(question)
    defs, target = parsed.definitions, parsed.target
    necessary, stack = set(), [target]
    while stack:
        name = stack.pop()
        if name not in necessary:
            necessary.add(name)
            stack.extend(defs[name][1])
    levels: dict[str, int] = {}

    def level(name: str) -> int:  # the DAG is at most ~10 levels deep, so recursion is safe
        if name not in levels:
            levels[name] = 1 + max((level(i) for i in defs[name][1]), default=0)
        return levels[name]

    op_nodes = [defs[name] for name in necessary if defs[name][0] is not None]
    wide = [inputs for op, inputs, _ in op_nodes if op not in UNARY]
    stats = {
        "sentences": len(defs),
        "nodes (necessary)": len(necessary),
        "redundant sentences": len(defs) - len(necessary),
        "leaves (necessary)": len(necessary) - len(op_nodes),
        "depth reached": level(target),
        "inputs per n-ary node": statistics.fmean(len(i) for i in wide) if wide else 0.0,
        "n-ary nodes with an extra link": statistics.fmean(len(i) > 2 for i in wide) if wide else 0.0,
        "repeated input (link = existing child)": statistics.fmean(len(set(i)) < len(i) for i in wide) if wide else 0,
        "definition-to-use gap (sentences)": use_gap(list(defs), defs, necessary - {target}),
        "draws per problem (1 = no rejection)": draws,
        "target name rank": NAME_RANK[target],
        "question chars": len(question),
        "question words": len(question.split()),
        "answer recomputed from text = generator's": float(parsed.values[target] == answer),
    }
    stats |= {f"op {op}": sum(op_node[0] == op for op_node in op_nodes) for op in OPS[family]}
    stats |= answer_stats(answer, family)
    return stats


def use_gap(order: list[str], defs: dict, names: set[str]) -> float:
    """Mean distance in sentences from a node's description to the first description that uses it."""
    position = {name: k for k, name in enumerate(order)}
    first_use: dict[str, int] = {}
    for k, name in enumerate(order):
        for i in defs[name][1]:
            first_use.setdefault(i, k)
    gaps = [first_use[name] - position[name] for name in names if name in first_use]
    return statistics.fmean(gaps) if gaps else 0.0


def answer_stats(answer, family: str) -> dict[str, float]:
    if family == "logic":
        return {"answer True": float(answer is True)}
    value = float(answer)
    stats = {"answer": value, "answer integer": float(value.is_integer()), "answer negative": float(value < 0)}
    for low, high in MAGNITUDES:
        stats[f"|answer| in [{low:g}, {high:g})"] = float(low <= abs(value) < high)
    return stats


def summarise(rows: list[dict[str, float]], family: str) -> dict[str, tuple[float, float]]:
    """Statistic -> (value, standard error or nan); op counts become pooled shares, the answer its quantiles."""
    n = len(rows)
    out = {}
    for key in rows[0]:
        column = [row[key] for row in rows]
        if key == "answer":
            q = statistics.quantiles(column, n=20)
            out |= {f"answer p{p}": (q[p // 5 - 1], math.nan) for p in (5, 25, 50, 75, 95)}
        elif not key.startswith("op "):
            out[key] = (statistics.fmean(column), statistics.stdev(column) / math.sqrt(n))
    total = sum(row[f"op {op}"] for row in rows for op in OPS[family])
    out |= {f"op {op} (share of op nodes)": (sum(r[f"op {op}"] for r in rows) / total, math.nan) for op in OPS[family]}
    return out


def run_setting(pb, draws: list[int], family: str, depth: int, low: int, high: int, n: int, seed: int):
    started = time.perf_counter()
    theirs = [measure(*s, family) for s in theirs_samples(pb, family, depth, low, high, n, seed, draws)]
    ours = [measure(*s, family) for s in ours_samples(family, depth, low, high, n, seed, draws)]
    seconds = time.perf_counter() - started
    return summarise(theirs, family), summarise(ours, family), seconds


def table(theirs: dict, ours: dict) -> list[str]:
    """Markdown rows; ratios off by more than 5% are bold, z = (ours - theirs) / joint standard error."""
    lines = ["| statistic | PromptBench | bridge-pl | ours/theirs | z |", "|---|---|---|---|---|"]
    for key, (value, error) in theirs.items():
        mine, my_error = ours[key]
        ratio = mine / value if value else (1.0 if mine == value else math.inf)
        shown = f"{ratio:.3f}" if math.isfinite(ratio) else "n/a"
        if math.isfinite(ratio) and abs(ratio - 1) > 0.05 or not math.isfinite(ratio):
            shown = f"**{shown}**"
        joint = math.hypot(error, my_error)
        z = f"{(mine - value) / joint:+.1f}" if joint > 0 and math.isfinite(joint) else "-"
        lines.append(f"| {key} | {value:.4g} | {mine:.4g} | {shown} | {z} |")
    return lines


def write_section(path: Path, section: str) -> None:
    """Replace the generated section of `path` (or create the file with it)."""
    block = f"{BEGIN}\n{section}\n{END}"
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = (text.rstrip() + "\n\n" if text else "") + block + "\n"
    path.write_text(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--promptbench", type=Path, required=True, help="a tree holding promptbench/dyval/DAG")
    parser.add_argument("--samples", type=int, default=2000, help="problems per generator and setting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--order-from-root", action="store_true", help="probe: give PromptBench bridge-pl's topological order"
    )
    parser.add_argument("--out", type=Path, help="markdown file whose generated section is replaced")
    args = parser.parse_args(argv)
    pb = load_promptbench(args.promptbench)
    if args.order_from_root:
        order_from_root(pb)
    draws = [0]
    count_calls(pb.TreeDAG, "generate_dag", draws)  # one call per tree drawn (TreeDAG.__init__'s while loop)
    count_calls(ours_generator._Builder, "dag", draws)  # one call per draw (generate_dyval_problem's loop)
    lines = [f"Samples per generator and setting: {args.samples}; seeds {args.seed} + setting number (0-5).", ""]
    for k, (family, (name, depth, low, high)) in enumerate(itertools.product(FAMILIES, SETTINGS)):
        # Its own seed per setting, so that the settings are independent samples (bridge-pl draws a problem's DAG
        # before its redundant trees: at one seed, RL and OOD would share their DAGs).
        seed = args.seed + k
        theirs, ours, seconds = run_setting(pb, draws, family, depth, low, high, args.samples, seed)
        title = f"### {family}, {name}: depth {depth}, redundant {low}-{high}, children 2, extra links 1, seed {seed}"
        block = [title, "", *table(theirs, ours), "", f"({seconds:.1f} s for both generators)", ""]
        lines += block
        print("\n".join(block), flush=True)
    if args.out:
        write_section(args.out, "\n".join(lines).rstrip())
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
