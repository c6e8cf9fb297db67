"""PP-Aug and RC-Aug baselines."""

import random

from bridge_pl.augment.baselines import permute_premises, random_solution_order, reorder_solution
from bridge_pl.task.cot import render_plain_cot
from bridge_pl.task.generator import GeneratorConfig, iter_problems
from bridge_pl.task.question import render_question
from bridge_pl.task.verify import check_cot


def test_permute_premises_keeps_problem_and_shuffles_sentences():
    for problem in iter_problems(GeneratorConfig(), seed=1, count=20):
        variants = permute_premises(problem, random.Random(0), copies=4)
        assert len(variants) == 4 and variants[0] is problem
        questions = [render_question(v) for v in variants]
        for variant, question in zip(variants, questions, strict=True):
            assert sorted(variant.question_order) == sorted(problem.question_order)
            assert question.split("\n")[-1] == questions[0].split("\n")[-1]
            assert variant.answer == problem.answer
    assert len({render_question(v) for v in variants}) > 1


def test_random_solution_orders_are_topological_and_end_at_target():
    orders = set()
    for problem in iter_problems(GeneratorConfig(), seed=2, count=30):
        for k in range(5):
            order = random_solution_order(problem, random.Random(k))
            assert sorted(order) == sorted(problem.topo) and order[-1] == problem.topo[-1]
            position = {node_id: i for i, node_id in enumerate(order)}
            for node_id in order:
                assert all(position[p] < position[node_id] for p in problem.nodes[node_id].inputs)
            orders.add(tuple(order))
    assert len(orders) > 30


def test_reordered_answers_pass_the_checker():
    for problem in iter_problems(GeneratorConfig(), seed=3, count=20):
        variants = reorder_solution(problem, random.Random(0), copies=4)
        assert len(variants) == 4 and variants[0] is problem
        for variant in variants:
            text = render_plain_cot(variant, random.Random(1))
            assert check_cot(text, expected_answer=problem.answer).ok
