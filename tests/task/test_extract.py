"""DAG extraction: the official worked examples, round trips on generated data, and precise failures."""

import random
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge_pl.augment.bridge import BehaviorConfig, render_bridge_answer
from bridge_pl.task import extract
from bridge_pl.task.cot import render_no_cot, render_plain_cot
from bridge_pl.task.extract import MAX_NODES, ExtractionError, extract_problem
from bridge_pl.task.generator import GeneratorConfig, generate_problem
from bridge_pl.task.problem import Problem
from bridge_pl.task.question import condition_sentence, render_question

# ------------------------------------------------------------------------------------------------ fixtures
# Verbatim from paper_spec §A.6.1 (seed 100, the first SFT problem) and §A.6.2 (problem 47 of the BRIDGE
# SFT stream); long lines are split into adjacent literals only to fit the line length.
EXAMPLE1_QUESTION = "\n".join(
    [
        "The number of each Chocolate Bar's Cornmeal equals 4 times each Costco Market's Ingredient.",
        "The number of each Potato Chips's Barley equals each EconomyMart's Product.",
        "The number of each Wholesale World's Pretzels equals 1.",
        "The number of each Pretzels's Quinoa equals 7 more than the sum of each EconomyMart's Ingredient "
        "and each EconomyMart's Product.",
        "The number of each Potato Chips's Quinoa equals 4 more than each Costco Market's Potato Chips.",
        "The number of each EconomyMart's Chocolate Bar equals each Costco Market's Product.",
        "The number of each Costco Market's Potato Chips equals each Wholesale World's Product.",
        "How many Ingredient does each Wholesale World have?",
    ]
)

EXAMPLE1_VANILLA = "\n".join(
    [
        "<think>",
        "Let's compute the answer step by step.",
        "- According to the information given, the number of each Wholesale World's Pretzels is 1. Let it be "
        "L. So L = 1.",
        "- We can then calculate the number of each Wholesale World's Product. Let's call it W. Then W = L = 1.",
        "- We can then calculate the number of each Costco Market's Potato Chips. Let's denote it as R. Then "
        "R = W = 1.",
        "- We can then calculate the number of each Costco Market's Product. Let it be s. Then s = R = 1.",
        "- Then, let's denote the number of each EconomyMart's Chocolate Bar as T. Then T = s = 1.",
        "- Then, let's denote the number of each EconomyMart's Product as x. Then x = T = 1.",
        "- We can then calculate the number of each Potato Chips's Barley. Let it be D. Then D = x = 1.",
        "- Next, let's define the number of each Potato Chips's Quinoa as K. Then K = 4 + R = 4 + 1 = 5.",
        "- Next, let's define the number of each Potato Chips's Ingredient as t. Then t = K + D = 5 + 1 = 6.",
        "- We can then calculate the number of each Costco Market's Ingredient. Let it be d. Then d = R * t "
        "= 1 * 6 = 6.",
        "- Then, let's denote the number of each Chocolate Bar's Cornmeal as o. Then o = 4 * d = 4 * 6 = 24.",
        "- We can then calculate the number of each Chocolate Bar's Ingredient. Let's call it l. Then l = o = 24.",
        "- Now, we can find the number of each EconomyMart's Ingredient. Let's call it F. Then F = T * l = 1 "
        "* 24 = 24.",
        "- Next, let's define the number of each Pretzels's Quinoa as G. Then G = 7 + (F + x) = 7 + (24 + 1) = 32.",
        "- Then, let's denote the number of each Pretzels's Ingredient as z. Then z = G = 32.",
        "- We can then calculate the number of each Wholesale World's Ingredient. Let's denote it as q. Then "
        "q = L * z = 1 * 32 = 32.",
        "Thus, the answer is 32.",
        "</think>",
        "<answer>",
        "The final answer is \\boxed{32}.",
        "</answer>",
    ]
)

EXAMPLE1_BRIDGE = "\n".join(
    [
        "<think>",
        "Let's compute the answer step by step.",
        "- According to the information given, the number of each Wholesale World's Pretzels is 1. Let it be "
        "L. So L = 1.",
        "- We can then calculate the number of each Wholesale World's Product. Let's call it W. Then W = L = 1.",
        "- We can then calculate the number of each Costco Market's Potato Chips. Let's denote it as R. Then "
        "R = W = 1.",
        "- Next, let l represent the number of each Chocolate Bar's Ingredient. Wait, the number of each "
        "Chocolate Bar's Cornmeal is unknown, so we cannot compute it.",
        "- Now, we can find the number of each Costco Market's Product. Let's call it s. Then s = R = 1.",
        "- Then, let's denote the number of each EconomyMart's Chocolate Bar as T. Then T = s = 1.",
        "- We can then calculate the number of each EconomyMart's Product. Let's call it x. Then x = T = 1.",
        "- Now, we can find the number of each Potato Chips's Barley. Let's call it D. Then D = x = 1.",
        "- Next, let's define the number of each Potato Chips's Quinoa as K. We know that it equals 4 more "
        "than each Costco Market's Potato Chips. Then K = 4 + R = 4 + 1 = 5.",
        "- Now, we can find the number of each Costco Market's Ingredient. Let's denote it as d. Wait, the "
        "number of each Potato Chips's Ingredient is unknown, so we cannot compute it.",
        "- Then, let's denote the number of each Potato Chips's Ingredient as t. Then t = K + D = 5 + 1 = 6.",
        "- We can then calculate the number of each Costco Market's Ingredient. Remember that it has been "
        "denoted as d. Then d = R * t = 1 * 6 = 6.",
        "- Now, we can find the number of each Chocolate Bar's Cornmeal. Let's call it o. Then o = 4 * d = 4 * 6 = 24.",
        "- We can then calculate the number of each Chocolate Bar's Ingredient. Remember that it has been "
        "denoted as l. Then l = o = 24.",
        "- Then, let's denote the number of each EconomyMart's Ingredient as F. Then F = T * l = 1 * 24 = 24.",
        "- Now, we can find the number of each Pretzels's Quinoa. Let it be G. We know that it equals 7 more "
        "than the sum of each EconomyMart's Ingredient and each EconomyMart's Product. Then G = 7 + (F + x) "
        "= 7 + (24 + 1) = 7 + 25 = 32.",
        "- Next, let z represent the number of each Pretzels's Ingredient. Then z = G = 32.",
        "- Then, let's denote the number of each Wholesale World's Ingredient as q. Then q = L * z = 1 * 32 = 32.",
        "Thus, the answer is 32.",
        "</think>",
        "<answer>",
        "The final answer is \\boxed{32}.",
        "</answer>",
    ]
)

EXAMPLE2_QUESTION = "\n".join(
    [
        "The number of each Dolphin's Limb equals 7 more than the sum of each Sea Otter's Skull, each "
        "Shark's Limb and each Sea Otter's Limb.",
        "The number of each Shark's Vertebra equals 4 times the difference of each Shark's Spine and each "
        "Sea Turtle's Skull.",
        "The number of each Sea Otter's Spine equals 3 more than the sum of each Sea Otter's Skull, each Sea "
        "Otter's Vertebra and each Dolphin's Spine.",
        "The number of each Sea Otter's Limb equals 7 more than the sum of each Sea Otter's Skull, each Sea "
        "Otter's Vertebra and each Sea Otter's Spine.",
        "The number of each Sea Turtle's Vertebra equals the sum of each Sea Otter's Vertebra, each Sea "
        "Otter's Skull and each Sea Otter's Limb.",
        "The number of each Dolphin's Spine equals 1.",
        "The number of each Sea Turtle's Spine equals the difference of each Shark's Limb and each Sea "
        "Otter's Vertebra.",
        "The number of each Shark's Spine equals 6.",
        "The number of each Sea Otter's Vertebra equals 3 more than the sum of each Sea Otter's Skull and "
        "each Dolphin's Spine.",
        "The number of each Shark's Limb equals 3 more than the sum of each Sea Otter's Skull and each Sea "
        "Otter's Bone.",
        "The number of each Sea Turtle's Skull equals 4.",
        "The number of each Sea Turtle's Limb equals the sum of each Dolphin's Spine, each Shark's Limb and "
        "each Sea Otter's Spine.",
        "The number of each Dolphin's Vertebra equals the sum of each Sea Otter's Skull and each Shark's Limb.",
        "The number of each Sea Otter's Skull equals each Dolphin's Spine.",
        "The number of each Dolphin's Skull equals 9 more than the sum of each Dolphin's Spine and each Sea "
        "Otter's Spine.",
        "The number of each Shark's Skull equals 0.",
        "How many Limb does each Shark have?",
    ]
)

EXAMPLE2_BRIDGE = "\n".join(
    [
        "<think>",
        "Let's compute the answer step by step.",
        "- The number of each Dolphin's Spine is 1. Let's call it F. So F = 1.",
        "- Now, we can find the number of each Shark's Limb. Let it be W. We know that it equals 3 more than "
        "the sum of each Sea Otter's Skull and each Sea Otter's Bone. However, we don't know the number of "
        "each Sea Otter's Skull, each Sea Otter's Bone, thus we cannot calculate it now.",
        "- Next, let's define the number of each Sea Otter's Skull as U. Then U = F = 1.",
        "- Then, let's denote the number of each Sea Otter's Vertebra as V. We know that it equals 3 more "
        "than the sum of each Sea Otter's Skull and each Dolphin's Spine. Then V = 3 + (U + F) = 3 + (1 + 1) "
        "= 3 + 2 = 5.",
        "- Next, let's define the number of each Sea Otter's Spine as t. We know that it equals 3 more than "
        "the sum of each Sea Otter's Skull, each Sea Otter's Vertebra and each Dolphin's Spine. Then t = 3 + "
        "(U + V + F) = 3 + (1 + 5 + 1) = 3 + (6 + 1) = 3 + 7 = 10.",
        "- We can then calculate the number of each Sea Otter's Limb. Let it be x. We know that it equals 7 "
        "more than the sum of each Sea Otter's Skull, each Sea Otter's Vertebra and each Sea Otter's Spine. "
        "Then x = 7 + (U + V + t) = 7 + (1 + 5 + 10) = 7 + (6 + 10) = 7 + 16 = 23.",
        "- We can then calculate the number of each Sea Otter's Bone. Let's call it z. Then z = x + U + t + "
        "V = 23 + 1 + 10 + 5 = 24 + 10 + 5 = 34 + 5 = 39.",
        "- Now, we can find the number of each Shark's Limb. Remember that it has been denoted as W. Then W "
        "= 3 + (U + z) = 3 + (1 + 39) = 3 + 40 = 43.",
        "Thus, the answer is 43.",
        "</think>",
        "<answer>",
        "The final answer is \\boxed{43}.",
        "</answer>",
    ]
)

# Values printed by the answers (§A.6.1 / §A.6.2), and the redundant nodes of example 2 worked out by hand
# from its question sentences (e.g. Sea Turtle's Vertebra = V + U + x = 5 + 1 + 23 = 29).
EXAMPLE1_VALUES = {
    "each Wholesale World's Pretzels": 1,
    "each Wholesale World's Product": 1,
    "each Costco Market's Potato Chips": 1,
    "each Costco Market's Product": 1,
    "each EconomyMart's Chocolate Bar": 1,
    "each EconomyMart's Product": 1,
    "each Potato Chips's Barley": 1,
    "each Potato Chips's Quinoa": 5,
    "each Potato Chips's Ingredient": 6,
    "each Costco Market's Ingredient": 6,
    "each Chocolate Bar's Cornmeal": 24,
    "each Chocolate Bar's Ingredient": 24,
    "each EconomyMart's Ingredient": 24,
    "each Pretzels's Quinoa": 32,
    "each Pretzels's Ingredient": 32,
    "each Wholesale World's Ingredient": 32,
}
EXAMPLE2_NECESSARY = {
    "each Dolphin's Spine": 1,
    "each Sea Otter's Skull": 1,
    "each Sea Otter's Vertebra": 5,
    "each Sea Otter's Spine": 10,
    "each Sea Otter's Limb": 23,
    "each Sea Otter's Bone": 39,
    "each Shark's Limb": 43,
}
EXAMPLE2_REDUNDANT = {
    "each Dolphin's Limb": 7 + (1 + 43 + 23),
    "each Shark's Vertebra": 4 * (6 - 4),
    "each Sea Turtle's Vertebra": 5 + 1 + 23,
    "each Sea Turtle's Spine": 43 - 5,
    "each Shark's Spine": 6,
    "each Sea Turtle's Skull": 4,
    "each Sea Turtle's Limb": 1 + 43 + 10,
    "each Dolphin's Vertebra": 1 + 43,
    "each Dolphin's Skull": 9 + (1 + 10),
    "each Shark's Skull": 0,
}


def _values(problem: Problem, ids: list[int]) -> dict[str, int]:
    return {problem.nodes[i].name: problem.nodes[i].value for i in ids}


def _topo_names(problem: Problem) -> list[str]:
    return [problem.nodes[i].name for i in problem.topo]


def _no_cot_define_form(answer: str) -> str:
    """The official no-CoT answer form ("Define each X's Y as V. So V = ...") built from a plain CoT answer."""
    lines = []
    for line in answer.split("\n"):
        match = re.search(r"the number of (each [^.]+?)(?: is \d+| as [A-Za-z])?\..*?\b([A-Za-z]) = (.*)\.$", line)
        if line.startswith("- ") and match:
            lines.append(f"Define {match.group(1)} as {match.group(2)}. So {match.group(2)} = {match.group(3)}.")
        elif not line.startswith("- "):
            lines.append(line)
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ official examples
@pytest.mark.parametrize("answer", [EXAMPLE1_VANILLA, EXAMPLE1_BRIDGE, _no_cot_define_form(EXAMPLE1_VANILLA), None])
def test_official_example_1(answer):
    problem = extract_problem(EXAMPLE1_QUESTION, answer)
    assert (problem.answer, problem.num_ops, len(problem.topo), len(problem.redundant)) == (32, 17, 16, 0)
    assert _values(problem, problem.topo) == EXAMPLE1_VALUES
    assert render_question(problem) == EXAMPLE1_QUESTION
    assert problem.layer_names == ["Ingredient", "Product", "Supermarket"]  # named by the official vocabulary
    target = problem.target
    assert (target.kind, target.combine, target.upper_layer, target.lower_layer) == ("abstract", "weighted", 2, 0)
    if answer is not None:  # the answer's order (also the BRIDGE one: its early attempts failed)
        assert _topo_names(problem) == list(EXAMPLE1_VALUES)


def test_official_example_1_equations_follow_the_answer_and_sentences():
    problem = extract_problem(EXAMPLE1_QUESTION, EXAMPLE1_VANILLA)
    nodes = {node.name: node for node in problem.nodes}
    costco = nodes["each Costco Market's Ingredient"]  # "d = R * t": weighted, inputs in the answer's order
    assert [problem.nodes[i].name for i in costco.inputs] == [
        "each Costco Market's Potato Chips",
        "each Potato Chips's Ingredient",
    ]
    quinoa = nodes["each Pretzels's Quinoa"]  # "7 more than the sum of F and x"
    assert (quinoa.constant, quinoa.constant_op, quinoa.combine) == (7, "add", "sum")


@pytest.mark.parametrize("answer", [EXAMPLE2_BRIDGE, None])
def test_official_example_2(answer):
    problem = extract_problem(EXAMPLE2_QUESTION, answer)
    assert (problem.answer, problem.num_ops, len(problem.topo), len(problem.redundant)) == (43, 15, 7, 10)
    assert _values(problem, problem.topo) == EXAMPLE2_NECESSARY
    assert _values(problem, problem.redundant) == EXAMPLE2_REDUNDANT
    assert _topo_names(problem)[-1] == "each Shark's Limb"
    assert render_question(problem) == EXAMPLE2_QUESTION
    assert problem.layer_names == ["Bone", "Animal"]  # "Animal" from the official category order
    bone = next(node for node in problem.nodes if node.name == "each Sea Otter's Bone")
    children = [problem.nodes[i].lower for i in bone.inputs]
    if answer is None:  # the order the question's sentences first name the children
        assert children == ["Spine", "Limb", "Vertebra", "Skull"]
    else:  # the answer's order: z = x + U + t + V
        assert children == ["Limb", "Skull", "Spine", "Vertebra"]
        assert _topo_names(problem) == list(EXAMPLE2_NECESSARY)


def test_question_joins_and_whitespace_are_tolerated():
    flat = EXAMPLE1_QUESTION.replace(".\n", ". ").replace("\n", " ") + "  "
    padded = "\n".join(f"  {line}   " for line in EXAMPLE1_QUESTION.split("\n"))
    for question in (flat, padded):
        assert _values(extract_problem(question, EXAMPLE1_VANILLA), range(16)) == EXAMPLE1_VALUES


def test_item_names_with_an_apostrophe():
    question = "\n".join(
        [
            "The number of each Kid's Petting Barn's Quokka equals 3.",
            "The number of each Quokka's Femur equals 2 more than each Kid's Petting Barn's Quokka.",
            "How many Bone does each Kid's Petting Barn have?",
        ]
    )
    answer = "\n".join(
        [
            "- The number of each Kid's Petting Barn's Quokka is 3. Let it be a. So a = 3.",
            "- Next, let b represent the number of each Quokka's Femur. Then b = 2 + a = 2 + 3 = 5.",
            "- Next, let c represent the number of each Quokka's Bone. Then c = b = 5.",
            "- Next, let d represent the number of each Kid's Petting Barn's Bone. Then d = a * c = 3 * 5 = 15.",
        ]
    )
    problem = extract_problem(question, answer)
    assert (problem.target.upper, problem.target.lower, problem.answer) == ("Kid's Petting Barn", "Bone", 15)
    assert render_question(problem) == question
    # Without the answer, the text lets "Bone" name either layer below the barn; the official zoo order puts Bone
    # lowest, and a problem's layers are a contiguous slice of its system's categories, so it is layer 0.
    assert extract_problem(question).layer_names == ["Bone", "Animal", "Enclosure"]
    # A category no vocabulary knows stays ambiguous: say so rather than guess.
    with pytest.raises(ExtractionError, match="cannot tell which layer category 'Piece' names: layers \\[0, 1\\]"):
        extract_problem(question.replace("How many Bone", "How many Piece"))


# The official generator writes the final question by cutting the target's name at its first "'s ", so a target
# of the zoo item "Kid's Animal Farm" is asked as "How many Animal Farm does each Kid have?" (official rows, written
# by hand in the official format: the question cannot tell the target; the answer's last step does).
CUT_QUESTION = "\n".join(
    [
        "The number of each Kid's Animal Farm's Raptor Arena equals 8 more than each Wildlife Center's Exotic Zone.",
        "The number of each Kid's Animal Farm's Exotic Zone equals 3.",
        "The number of each Wildlife Center's Exotic Zone equals 4.",
        "How many Animal Farm does each Kid have?",
    ]
)
CUT_ABSTRACT_TARGET = [
    "<think>",
    "Let's compute the answer step by step.",
    "- The number of each Wildlife Center's Exotic Zone is 4. Let it be r. So r = 4.",
    "- Next, let R represent the number of each Kid's Animal Farm's Raptor Arena. Then R = 8 + r = 8 + 4 = 12.",
    "- According to the information given, the number of each Kid's Animal Farm's Exotic Zone is 3. Let's call it t. "
    "So t = 3.",
    "- Then, let's denote the number of each Kid's Animal Farm's Enclosure as q. Then q = R + t = 12 + 3 = 15.",
    "Thus, the answer is 15.",
    "</think>",
    "<answer>\nThe final answer is \\boxed{15}.\n</answer>",
]
CUT_INSTANCE_TARGET = [
    "<think>",
    "Let's compute the answer step by step.",
    "Define each Wildlife Center's Exotic Zone as r. So r = 4.",
    "Define each Kid's Animal Farm's Raptor Arena as R. So R = 8 + r = 8 + 4 = 12.",
    "Thus, the answer is 12.",
    "</think>",
    "<answer>\nThe final answer is \\boxed{12}.\n</answer>",
]


@pytest.mark.parametrize(
    ("answer", "target", "value", "layers"),
    [
        pytest.param(CUT_ABSTRACT_TARGET, "Enclosure", 15, ["Enclosure", "zoo"], id="abstract-target-cot"),
        pytest.param(CUT_INSTANCE_TARGET, "Raptor Arena", 12, ["layer-0", "layer-1"], id="instance-target-no-cot"),
    ],
)
def test_official_final_question_cut_at_the_first_apostrophe(answer, target, value, layers):
    problem = extract_problem(CUT_QUESTION, "\n".join(answer))
    assert (problem.target.upper, problem.target.lower, problem.answer) == ("Kid's Animal Farm", target, value)
    assert problem.layer_names == layers  # "Enclosure" and the official zoo order name both layers
    # re-augmentable: the rebuilt problem renders a BRIDGE answer that reaches the same value
    bridge, _ = render_bridge_answer(problem, random.Random(0), BehaviorConfig())
    assert f"\\boxed{{{value}}}" in bridge
    assert extract_problem(CUT_QUESTION, bridge).answer == value
    assert render_question(problem).endswith(f"How many {target} does each Kid's Animal Farm have?")


def test_a_cut_final_question_without_an_answer_step_raises():
    with pytest.raises(ExtractionError, match="cuts the target's name at its first \"'s \""):
        extract_problem(CUT_QUESTION)


def test_an_unpinned_category_takes_the_layer_its_system_allows():
    # Official district order: Ingredient < Product < Supermarket < District. Three item layers below a District
    # item are a contiguous slice, so "Supermarket" (used only by a redundant sentence) names layer 1, not 0.
    question = "\n".join(
        [
            "The number of each CornerStore's Bagel equals 2.",
            "The number of each School Zone's CornerStore equals 3.",
            "The number of each Knowledge Park's CornerStore equals 1 more than each School Zone's Supermarket.",
            "How many Bagel does each CornerStore have?",
        ]
    )
    problem = extract_problem(question, "- The number of each CornerStore's Bagel is 2. Let it be a. So a = 2.")
    assert problem.layer_names == ["Product", "Supermarket", "District"]
    assert _values(problem, problem.redundant)["each School Zone's Supermarket"] == 3  # its one CornerStore count


def test_a_layout_that_hides_category_totals_is_not_the_generated_one():
    # "Backpack" may name layer 0 or 1 below the classroom, and the official school order allows both slices. At
    # layer 0, "each Art Room's Backpack" would need "each Tote Bag's Backpack", which neither a sentence names nor
    # the (complete) answer computes: no generator makes such a problem, so "Backpack" is layer 1.
    question = "\n".join(
        [
            "The number of each Art Room's Tote Bag equals 2.",
            "The number of each Tote Bag's Pen equals 3.",
            "The number of each Lab's Tote Bag equals 1 more than each Art Room's Backpack.",
            "How many Pen does each Tote Bag have?",
        ]
    )
    problem = extract_problem(question, "- The number of each Tote Bag's Pen is 3. Let it be a. So a = 3.")
    assert problem.layer_names == ["Stationery", "Backpack", "Classroom"]
    assert _values(problem, problem.redundant)["each Lab's Tote Bag"] == 3  # 1 more than the art room's 2 bags
    with pytest.raises(ExtractionError, match="cannot tell which layer category 'Backpack' names: layers \\[0, 1\\]"):
        extract_problem(question)  # without an answer, necessary totals are invisible: the rule does not apply


# ------------------------------------------------------------------------------------------------ round trips
def _assert_same_problem(original: Problem, extracted: Problem) -> None:
    assert extracted.answer == original.answer
    assert extracted.num_ops == original.num_ops
    assert render_question(extracted) == render_question(original)
    for ids in ("topo", "redundant"):
        assert sorted(_values(extracted, getattr(extracted, ids)).items()) == sorted(
            _values(original, getattr(original, ids)).items()
        )
    equations = {node.name: condition_sentence(original, node) for node in original.nodes if node.kind == "instance"}
    assert {n.name: condition_sentence(extracted, n) for n in extracted.nodes if n.kind == "instance"} == equations


ROUND_TRIPS = [
    pytest.param(GeneratorConfig(), range(200), id="default"),
    pytest.param(GeneratorConfig(modulus=23), range(100), id="modulus-23"),
    pytest.param(GeneratorConfig(redundant=False), range(100), id="no-redundant"),
]


@pytest.mark.parametrize(("config", "seeds"), ROUND_TRIPS)
def test_round_trip_on_generated_problems(config, seeds):
    for seed in seeds:
        original = generate_problem(config, seed, 0)
        question = render_question(original)
        plain = render_plain_cot(original, random.Random(seed))
        bridge, stats = render_bridge_answer(original, random.Random(seed), BehaviorConfig())
        no_cot = render_no_cot(original, random.Random(seed))
        for answer in (plain, bridge, no_cot, None):
            extracted = extract_problem(question, answer, modulus=config.modulus, system=original.system)
            _assert_same_problem(original, extracted)
            assert extracted.modulus == config.modulus and extracted.system == original.system
            if answer is not None and (answer is not bridge or stats.early_solves == 0):
                assert _topo_names(extracted) == _topo_names(original)
        # Same node ids and abstract input order: the plain answer re-renders byte for byte.
        assert render_plain_cot(extract_problem(question, plain, modulus=config.modulus), random.Random(seed)) == plain


def test_bridge_answers_with_early_solves_keep_only_necessary_nodes_in_topo():
    config, seen = BehaviorConfig(exploration=0.5, redundant_attempt=0.5), 0
    for seed in range(40):
        original = generate_problem(GeneratorConfig(), seed, 0)
        answer, stats = render_bridge_answer(original, random.Random(seed), config)
        extracted = extract_problem(render_question(original), answer)
        _assert_same_problem(original, extracted)
        assert set(_topo_names(extracted)) == set(_topo_names(original))
        seen += stats.early_solves
    assert seen > 0


# ------------------------------------------------------------------------------------------------ failures
def _replace(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new)


@pytest.mark.parametrize(
    ("question", "answer", "message"),
    [
        pytest.param(
            _replace(EXAMPLE1_QUESTION, "Pretzels equals 1.", "Pretzels is about 1."),
            None,
            "sentence is not 'The number of each B's A equals ...': \"The number of each Wholesale World's Pretzels is",
            id="garbled-sentence",
        ),
        pytest.param(
            _replace(EXAMPLE1_QUESTION, "Pretzels equals 1.", "Pretzels equals one."),
            None,
            "'one' is not a parameter name",
            id="garbled-number",
        ),
        pytest.param(
            _replace(
                EXAMPLE1_QUESTION,
                "Chocolate Bar equals each Costco Market's Product",
                "Chocolate Bar equals each Costco Market's Barley",
            ),
            None,
            "condition 'each EconomyMart's Chocolate Bar' uses 'each Costco Market's Barley', which no sentence "
            "defines and which is not a category total",
            id="undefined-name",
        ),
        pytest.param(
            EXAMPLE1_QUESTION,
            _replace(EXAMPLE1_VANILLA, "t = K + D = 5 + 1 = 6.", "t = K + D = 5 + 2 = 7."),
            "says 'each Potato Chips's Ingredient' = 7, but the question's equations give 6",
            id="tampered-value",
        ),
        pytest.param(
            EXAMPLE1_QUESTION,
            _replace(EXAMPLE1_VANILLA, "t = K + D = 5 + 1 = 6.", "t = K + D = 5 + 1 = 7."),
            "'5 \\+ 1' evaluates to 6, not 7",
            id="tampered-link",
        ),
        pytest.param(
            EXAMPLE1_QUESTION,
            _replace(EXAMPLE1_VANILLA, "K = 4 + R = 4 + 1 = 5.", "K = 4 * R = 4 * 1 = 4."),
            "the equation does not match the sentence",
            id="equation-against-sentence",
        ),
        pytest.param(
            EXAMPLE1_QUESTION,
            _replace(EXAMPLE1_VANILLA, "\\boxed{32}", "\\boxed{31}"),
            "the final answer 31 differs from 'each Wholesale World's Ingredient' = 32",
            id="final-answer",
        ),
        pytest.param(
            EXAMPLE1_QUESTION,
            "\n".join(line for line in EXAMPLE1_VANILLA.split("\n") if " q = " not in line),
            "the answer never computes 'each Wholesale World's Ingredient', which the target",
            id="target-never-computed",
        ),
        pytest.param(
            EXAMPLE1_QUESTION,
            "\n".join(line for line in EXAMPLE1_VANILLA.split("\n") if "So L = 1" not in line),
            "uses 'L' before any step computes it",
            id="letter-before-its-step",
        ),
        pytest.param(
            EXAMPLE1_QUESTION.rsplit("\n", 1)[0],
            None,
            "the question does not end with 'How many Y does each Z have\\?'",
            id="missing-final-question",
        ),
        pytest.param(
            _replace(
                EXAMPLE1_QUESTION,
                "Pretzels equals 1.",
                "Pretzels equals 1.\nThe number of each Wholesale World's Pretzels equals 2.",
            ),
            None,
            "two sentences define 'each Wholesale World's Pretzels'",
            id="duplicate-sentence",
        ),
        pytest.param(
            "How many Ingredient does each Wholesale World have?\n" + EXAMPLE1_QUESTION,
            None,
            "the final question must come last",
            id="final-question-first",
        ),
        pytest.param(
            "The number of each Box's Item0 equals 1.\nThe number of each Item0's Pin equals 2.\n"
            "The number of each Box's Pin equals 3.\nHow many Pin does each Box have?",
            None,
            "structure is not layered",
            id="not-layered",
        ),
        pytest.param(
            "The number of each Kid's Farm's Hoof equals 1.\nThe number of each Kid's Calf equals 2.\n"
            "The number of each Farm's Hoof equals 3.\nHow many Calf does each Kid have?",
            None,
            "cannot tell where 'each Kid's Farm's Hoof' splits",
            id="ambiguous-split",
        ),
        pytest.param(
            "\n".join(f"The number of each Box's Item{k} equals 1." for k in range(MAX_NODES + 1))
            + "\nHow many Item0 does each Box have?",
            None,
            f"the problem has {MAX_NODES + 1} nodes \\(1 necessary, {MAX_NODES} redundant\\); at most {MAX_NODES}",
            id="too-many-nodes",
        ),
    ],
)
def test_unreadable_rows_raise_a_precise_error(question, answer, message):
    with pytest.raises(ExtractionError, match=message):
        extract_problem(question, answer)


def test_wrong_modulus_is_a_value_mismatch():
    original = generate_problem(GeneratorConfig(modulus=23), 1, 0)
    question, answer = render_question(original), render_plain_cot(original, random.Random(1))
    assert extract_problem(question, answer, modulus=23).answer == original.answer
    with pytest.raises(ExtractionError, match="modulus=None"):
        for seed in range(20):  # some problem's value chain differs without the modulus
            problem = generate_problem(GeneratorConfig(modulus=23), seed, 0)
            extract_problem(render_question(problem), render_plain_cot(problem, random.Random(seed)))


def test_extraction_error_is_a_value_error():
    assert issubclass(ExtractionError, ValueError)


# ------------------------------------------------------------------------------------- pathological answers
# The chain pattern extract.py used before it scanned runs: a lazy regex tried from every letter, quadratic on
# long lines. It stays here as the reference the run scanner must agree with.
_REGEX_CHAIN = re.compile(r"(?<![\w'])([A-Za-z]) = ([-+*()0-9A-Za-z =]+?)(?=\.(?:\s|$)|$)")


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("x=Ab 1+*()-.'_é\t")), max_size=60))
def test_chain_scanner_matches_the_reference_regex(line):
    match = _REGEX_CHAIN.search(line)
    assert extract._first_chain(line) == (None if match is None else (match.group(0), match.group(1), match.group(2)))


def _with_link(old: str, new: str) -> str:
    return _replace(EXAMPLE1_VANILLA, old, new)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (
            _with_link("= 1 * 6 = 6.", "= " + "(" * 5000 + "1 * 6" + ")" * 5000 + " = 6."),
            "nested deeper than 64 levels",
        ),
        # past the 4300 digits where int() itself refuses
        (_with_link("So L = 1.", "So L = " + "1" * 5000 + "."), "a number has more than 64 digits"),
        (_with_link("= 1 * 6 = 6.", "= 1 * 6 * " + " * ".join(["999999999"] * 50) + " = 6."), "exceeds 256 bits"),
        # the verifier gives the same reason for the same term: one parser reads both
        (_with_link("= 1 * 6 = 6.", "= 1 * (6 = 6."), r"cannot read '1 \* \(6' as an equation \(it ends too early\)"),
    ],
)
def test_pathological_links_raise_an_extraction_error(answer, message):
    with pytest.raises(ExtractionError, match=message):
        extract_problem(EXAMPLE1_QUESTION, answer)


def test_long_answer_lines_are_scanned_in_linear_time():
    # 50,000 "x = " with no chain end: the lazy regex took minutes on this line; runs read it once
    noise = "- " + "x = " * 50_000 + ".x"
    answer = _replace(EXAMPLE1_VANILLA, "Thus, the answer is 32.", noise + "\nThus, the answer is 32.")
    assert extract_problem(EXAMPLE1_QUESTION, answer).answer == 32
    product = _with_link("= 1 * 6 = 6.", "= 1 * 6" + " * 1" * 20_000 + " = 6.")  # a 20,000-deep Product tree
    assert extract_problem(EXAMPLE1_QUESTION, product).answer == 32
