"""Measured properties of a dataset, comparable with the paper's tables (paper_spec §A.4, §A.7).

`dataset_stats(rows)` reads the `dag` column where a row has one (node counts, layers, target kind);
rows without it (official files) contribute what their text shows: op counts and answers from the
`num_ops` / `final_answer` columns, condition sentences and the target's kind from the question,
lengths and step lines from the text. Behavior counts come from the `behaviors` column when present,
otherwise from the answer text, matching both bridge-pl's wording (`bridge_pl.task.cot`) and the
official BRIDGE sentences. Early solves look like ordinary steps in text, so they are counted only
from the `behaviors` column.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from bridge_pl.task import cot
from bridge_pl.task.question import SENTENCE_FORMS, condition_form

__all__ = ["BEHAVIOR_PATTERNS", "count_behaviors", "dataset_stats"]

# The official iGSM-reasoning BRIDGE sentences (paper_spec §B.2); {u} is a list of names, {x} a letter.
OFFICIAL_REFLECTION = (
    "Wait, the number of {u} {be} unknown, so we cannot compute it.",
    "However, we don't know the number of {u}, thus we cannot calculate it now.",
    "But we haven't calculated the number of {u} yet, thus the value of {x} is still unknown.",
)
OFFICIAL_ANALYSIS = ("We know that it equals {rhs}.",)
OFFICIAL_REVISIT = ("Remember that it has been denoted as {x}.",)

_PLACEHOLDERS = {
    "u": r"[^\n]+?",
    "be": r"(?:is|are)",
    "x": r"[A-Za-z]",
    "rhs": r"[^\n]+?",
    "n": r"[^\n]+?",
    "v": r"-?\d+",
}


def _template_regex(templates: Iterable[str]) -> re.Pattern[str]:
    """One regex matching any of `templates`, each {placeholder} standing for the text it is filled with."""
    alternatives = []
    for template in templates:
        parts = re.split(r"\{(\w+)\}", template)
        alternatives.append("".join(re.escape(p) if i % 2 == 0 else _PLACEHOLDERS[p] for i, p in enumerate(parts)))
    return re.compile("|".join(f"(?:{a})" for a in alternatives))


BEHAVIOR_PATTERNS: dict[str, re.Pattern[str]] = {
    "failed_attempts": _template_regex((*cot.REFLECTION, *OFFICIAL_REFLECTION)),
    "analyses": _template_regex((*cot.ANALYSIS, *OFFICIAL_ANALYSIS)),
    "revisits": _template_regex((*cot.REVISIT, *OFFICIAL_REVISIT)),
}
_CONDITION = re.compile(r"The number of (each .+?'s .+?) equals ")
_FINAL_QUESTION = re.compile(r"How many (.+?) does (each .+?) have\?")


def count_behaviors(response: str) -> dict[str, int]:
    """Failed attempts, information analyses and revisits written in an answer (ours or the official wording)."""
    return {name: len(pattern.findall(response)) for name, pattern in BEHAVIOR_PATTERNS.items()}


def dataset_stats(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Statistics of a dataset as a JSON-ready dict (means and shares rounded to 4 decimals).

    Keys: rows, rows_with_dag, num_ops (histogram: counts, shares, mean), necessary_nodes_mean,
    redundant_nodes_mean, condition_sentences_mean, layers (counts, shares), abstract_target_share,
    zero_answer_share, negative_answer_share, question_chars_mean, answer_chars_mean, step_lines_mean,
    sentence_forms (share of each `SENTENCE_FORMS` form among all condition sentences, from the text),
    behaviors (failed_attempts_mean, failed_attempts_share (answers with at least one), analyses_mean,
    revisits_mean, early_solves_mean, from_column, from_text). A value is None when no row shows it.
    """
    per_row = [_row_facts(row) for row in rows]
    if not per_row:
        return {"rows": 0}
    column = [f for f in per_row if f["from_column"]]
    return {
        "rows": len(per_row),
        "rows_with_dag": sum(f["has_dag"] for f in per_row),
        "num_ops": _histogram(f["num_ops"] for f in per_row),
        "necessary_nodes_mean": _mean(f["necessary"] for f in per_row),
        "redundant_nodes_mean": _mean(f["redundant"] for f in per_row),
        "condition_sentences_mean": _mean(f["conditions"] for f in per_row),
        "layers": _histogram([f["layers"] for f in per_row], with_mean=False),
        "abstract_target_share": _mean(f["abstract_target"] for f in per_row),
        "zero_answer_share": _mean(_is(f["answer"], lambda a: a == 0) for f in per_row),
        "negative_answer_share": _mean(_is(f["answer"], lambda a: a < 0) for f in per_row),
        "question_chars_mean": _mean(f["question_chars"] for f in per_row),
        "answer_chars_mean": _mean(f["answer_chars"] for f in per_row),
        "step_lines_mean": _mean(f["step_lines"] for f in per_row),
        "sentence_forms": _form_shares(form for f in per_row for form in f["forms"]),
        "behaviors": {
            "failed_attempts_mean": _mean(f["failed_attempts"] for f in per_row),
            "failed_attempts_share": _mean(_is(f["failed_attempts"], lambda n: n >= 1) for f in per_row),
            "analyses_mean": _mean(f["analyses"] for f in per_row),
            "revisits_mean": _mean(f["revisits"] for f in per_row),
            "early_solves_mean": _mean(f["early_solves"] for f in column),
            "from_column": len(column),
            "from_text": sum(f["failed_attempts"] is not None and not f["from_column"] for f in per_row),
        },
    }


def _row_facts(row: dict[str, Any]) -> dict[str, Any]:
    """What one row tells: DAG facts when it has a DAG, text facts otherwise (None: unknown)."""
    query, response = row.get("query"), row.get("response")
    dag = row.get("dag")
    if isinstance(dag, dict):
        facts = _dag_facts(dag) if "layer_names" in dag else _plan_facts(dag)
    else:
        facts = _text_facts(query)
    if facts["num_ops"] is None:
        facts["num_ops"] = row.get("num_ops")
    if facts["answer"] is None:
        facts["answer"] = _integer(row.get("final_answer"))
    facts["question_chars"] = len(query) if isinstance(query, str) else None
    lines = query.splitlines() if isinstance(query, str) else []
    facts["forms"] = [form for line in lines if (form := condition_form(line))]
    facts["answer_chars"] = len(response) if isinstance(response, str) else None
    facts["step_lines"] = _step_lines(response) if isinstance(response, str) else None
    facts.update(_behavior_facts(row.get("behaviors"), response))
    return facts


def _dag_facts(dag: dict[str, Any]) -> dict[str, Any]:
    """Node counts, layers, target kind, op count and answer from a `Problem.to_dict()`."""
    nodes = dag["nodes"]
    target = nodes[dag["topo"][-1]]
    # Node.num_ops on the raw dict (building a Problem would re-validate every equation of every row)
    num_ops = sum(max(1, len(nodes[i]["inputs"]) + (nodes[i]["constant"] is not None) - 1) for i in dag["topo"])
    return {
        "has_dag": True,
        "num_ops": num_ops,
        "necessary": len(dag["topo"]),
        "redundant": len(dag["redundant"]),
        "conditions": len(dag["question_order"]),
        "layers": len(dag["layer_names"]),
        "abstract_target": target["kind"] == "abstract",
        "answer": target["value"],
    }


def _plan_facts(dag: dict[str, Any]) -> dict[str, Any]:
    """Node and sentence counts of another task's problem (``topo``, ``redundant``, ``question_order``)."""
    return {
        "has_dag": True,
        "num_ops": None,  # the row's num_ops column (the task's own count)
        "necessary": len(dag.get("topo", ())),
        "redundant": len(dag.get("redundant", ())),
        "conditions": len(dag["question_order"]) if "question_order" in dag else None,
        "layers": None,
        "abstract_target": None,
        "answer": None,
    }


def _text_facts(query: str | None) -> dict[str, Any]:
    """Condition sentences and the target's kind from a question in the iGSM grammar."""
    facts: dict[str, Any] = dict.fromkeys(("num_ops", "necessary", "redundant", "layers", "answer"))
    facts.update(has_dag=False, conditions=None, abstract_target=None)
    if not isinstance(query, str):
        return facts
    defined = set(_CONDITION.findall(query))
    facts["conditions"] = len(_CONDITION.findall(query))
    final = _FINAL_QUESTION.search(query)
    if final:  # an instance target has its own sentence; an abstract one ("How many <category> ...") has none
        facts["abstract_target"] = f"{final.group(2)}'s {final.group(1)}" not in defined
    return facts


def _behavior_facts(behaviors: Any, response: Any) -> dict[str, Any]:
    """Behavior counts from the `behaviors` column, else from the answer text."""
    if isinstance(behaviors, dict):
        counts = {k: behaviors.get(k) for k in ("failed_attempts", "analyses", "revisits", "early_solves")}
        return {**counts, "from_column": True}
    if isinstance(response, str):
        return {**count_behaviors(response), "early_solves": None, "from_column": False}
    return {"failed_attempts": None, "analyses": None, "revisits": None, "early_solves": None, "from_column": False}


def _form_shares(forms: Iterable[str]) -> dict[str, float] | None:
    """Share of each sentence form (all of `SENTENCE_FORMS`, in order), None without condition sentences."""
    counts = Counter(forms)
    total = sum(counts.values())
    return {form: round(counts[form] / total, 4) for form in SENTENCE_FORMS} if total else None


def _step_lines(response: str) -> int:
    return sum(line.startswith("- ") for line in response.splitlines())


def _integer(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
        return int(value)
    return None


def _is(value: Any, test) -> bool | None:
    return None if value is None else test(value)


def _mean(values: Iterable[Any]) -> float | None:
    known = [float(v) for v in values if v is not None]
    return round(sum(known) / len(known), 4) if known else None


def _histogram(values: Iterable[Any], *, with_mean: bool = True) -> dict[str, Any] | None:
    """Counts and shares keyed by value (as text, sorted by value), plus the mean."""
    known = [int(v) for v in values if v is not None]
    if not known:
        return None
    counts = Counter(known)
    histogram: dict[str, Any] = {
        "counts": {str(k): counts[k] for k in sorted(counts)},
        "shares": {str(k): round(counts[k] / len(known), 4) for k in sorted(counts)},
    }
    if with_mean:
        histogram["mean"] = round(sum(known) / len(known), 4)
    return histogram
