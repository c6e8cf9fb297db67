"""Dataset statistics: values on hand-made rows, text-only rows, and behavior counting from text."""

import pytest

from bridge_pl.augment.bridge import BehaviorConfig
from bridge_pl.data.records import AnswerStyle, generate_rows
from bridge_pl.data.stats import count_behaviors, dataset_stats
from bridge_pl.task import cot
from bridge_pl.task.generator import GeneratorConfig

KEYS = {
    "rows",
    "rows_with_dag",
    "num_ops",
    "necessary_nodes_mean",
    "redundant_nodes_mean",
    "condition_sentences_mean",
    "layers",
    "abstract_target_share",
    "zero_answer_share",
    "negative_answer_share",
    "question_chars_mean",
    "answer_chars_mean",
    "step_lines_mean",
    "sentence_forms",
    "behaviors",
}

# The official BRIDGE sentences (paper_spec §A.6.2 and §B.2), one of each kind per line.
OFFICIAL_ANSWER = "\n".join(
    [
        "<think>",
        "Let's compute the answer step by step.",
        "- The number of each Dolphin's Spine is 1. Let's call it F. So F = 1.",
        "- Now, we can find the number of each Shark's Limb. Let it be W. We know that it equals 3 more than the "
        "sum of each Sea Otter's Skull and each Sea Otter's Bone. However, we don't know the number of each Sea "
        "Otter's Skull, each Sea Otter's Bone, thus we cannot calculate it now.",
        "- Next, let l represent the number of each Chocolate Bar's Ingredient. Wait, the number of each Chocolate "
        "Bar's Cornmeal is unknown, so we cannot compute it.",
        "- Now, we can find the number of each Pretzels's Quinoa. Let it be G. But we haven't calculated the number "
        "of each EconomyMart's Ingredient yet, thus the value of G is still unknown.",
        "- Next, let's define the number of each Sea Otter's Skull as U. Then U = F = 1.",
        "- Now, we can find the number of each Shark's Limb. Remember that it has been denoted as W. Then W = 3 + "
        "(U + z) = 3 + (1 + 39) = 3 + 40 = 43.",
        "Thus, the answer is 43.",
        "</think>",
        "<answer>",
        "The final answer is \\boxed{43}.",
        "</answer>",
    ]
)


def _dag(kind_of_target, layers, necessary, redundant, conditions, answer):
    """A minimal `Problem.to_dict()`-shaped dag: `necessary` one-op nodes, the last one the target."""
    nodes = [{"inputs": [], "constant": 1, "kind": "instance", "value": 0} for _ in range(necessary + redundant)]
    nodes[necessary - 1] = {"inputs": [], "constant": 1, "kind": kind_of_target, "value": answer}
    return {
        "nodes": nodes,
        "topo": list(range(necessary)),
        "redundant": list(range(necessary, necessary + redundant)),
        "question_order": list(range(conditions)),
        "layer_names": ["x"] * layers,
    }


def test_values_on_hand_made_rows():
    rows = [
        {"query": "q" * 10, "response": "- a\n- b\nend", "dag": _dag("abstract", 2, 4, 1, 3, 0)},
        {"query": "q" * 30, "response": "- a\nend", "dag": _dag("instance", 4, 6, 3, 7, -5)},
        {"query": "q" * 20, "response": "- a\n- b\n- c", "dag": _dag("abstract", 4, 5, 2, 5, 12)},
        {
            "query": "q",
            "response": "x",
            "dag": _dag("instance", 3, 5, 0, 5, 1),
            "behaviors": {"failed_attempts": 2, "analyses": 4, "revisits": 1, "early_solves": 1},
        },
    ]
    stats = dataset_stats(rows)
    assert set(stats) == KEYS and stats["rows"] == 4 and stats["rows_with_dag"] == 4
    assert stats["num_ops"] == {
        "counts": {"4": 1, "5": 2, "6": 1},
        "shares": {"4": 0.25, "5": 0.5, "6": 0.25},
        "mean": 5.0,
    }
    assert stats["necessary_nodes_mean"] == 5.0 and stats["redundant_nodes_mean"] == 1.5
    assert stats["condition_sentences_mean"] == 5.0
    assert stats["layers"]["shares"] == {"2": 0.25, "3": 0.25, "4": 0.5}
    assert stats["abstract_target_share"] == 0.5
    assert stats["zero_answer_share"] == 0.25 and stats["negative_answer_share"] == 0.25
    assert stats["question_chars_mean"] == 15.25 and stats["step_lines_mean"] == 1.5
    behaviors = stats["behaviors"]
    assert behaviors["from_column"] == 1 and behaviors["from_text"] == 3
    assert behaviors["failed_attempts_mean"] == 0.5 and behaviors["failed_attempts_share"] == 0.25
    assert behaviors["analyses_mean"] == 1.0 and behaviors["early_solves_mean"] == 1.0


def test_sentence_forms_are_shares_of_condition_sentences():
    query = "\n".join(
        [
            "The number of each A's B equals 3.",
            "The number of each A's C equals each A's B.",
            "The number of each D's B equals 2 times each A's C.",
            "The number of each D's C equals 5 more than the difference of each A's B and each D's B.",
            "How many B does each D have?",
        ]
    )
    forms = dataset_stats([{"query": query}])["sentence_forms"]
    assert {form: share for form, share in forms.items() if share} == {
        "c": 0.25,
        "P": 0.25,
        "c*P": 0.25,
        "c+(P-P)": 0.25,
    }
    assert dataset_stats([{"query": "How many B does each D have?"}])["sentence_forms"] is None


def test_counts_the_official_behavior_sentences():
    assert count_behaviors(OFFICIAL_ANSWER) == {"failed_attempts": 3, "analyses": 1, "revisits": 1}


def test_counts_every_bridge_pl_phrase():
    fill = {"u": "each A's B and each C's D", "be": "are", "x": "Q", "rhs": "3 more than each A's B"}
    for name, templates in (("failed_attempts", cot.REFLECTION), ("analyses", cot.ANALYSIS), ("revisits", cot.REVISIT)):
        for template in templates:
            counts = count_behaviors("- Let Q be the number of each Z's Y. " + template.format(**fill))
            assert counts[name] == 1 and sum(counts.values()) == 1, template


def test_text_counts_agree_with_the_behaviors_column():
    style = AnswerStyle("bridge", BehaviorConfig(exploration=0.3))
    rows = list(generate_rows(GeneratorConfig(), 3, 25, style))
    assert sum(row["behaviors"]["failed_attempts"] for row in rows) > 5
    for row in rows:
        counts = count_behaviors(row["response"])
        assert counts == {k: row["behaviors"][k] for k in counts}
    from_column = dataset_stats(rows)["behaviors"]
    from_text = dataset_stats([{**row, "behaviors": None} for row in rows])["behaviors"]
    for key in ("failed_attempts_mean", "failed_attempts_share", "analyses_mean", "revisits_mean"):
        assert from_text[key] == from_column[key]
    assert from_text["early_solves_mean"] is None and from_column["early_solves_mean"] is not None


def test_text_only_rows_give_what_the_text_shows():
    rows = list(generate_rows(GeneratorConfig(), 5, 25, AnswerStyle()))
    with_dag = dataset_stats(rows)
    text_only = dataset_stats([{k: row[k] for k in ("query", "response", "num_ops", "final_answer")} for row in rows])
    assert text_only["rows_with_dag"] == 0
    for key in (
        "num_ops",
        "condition_sentences_mean",
        "abstract_target_share",
        "zero_answer_share",
        "negative_answer_share",
        "question_chars_mean",
        "answer_chars_mean",
        "step_lines_mean",
    ):
        assert text_only[key] == with_dag[key], key
    assert text_only["necessary_nodes_mean"] is None and text_only["layers"] is None


@pytest.mark.parametrize("rows", [[], [{"query": None, "response": None}]])
def test_degenerate_inputs(rows):
    stats = dataset_stats(rows)
    assert stats["rows"] == len(rows)
