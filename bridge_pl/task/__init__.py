"""The iGSM-reasoning task: vocabulary, problem generator, renderers and verifier (pure Python, no torch)."""

from bridge_pl.task.cot import StepWriter, render_no_cot, render_plain_cot
from bridge_pl.task.extract import ExtractionError, extract_problem
from bridge_pl.task.generator import GenerationError, GeneratorConfig, generate_problem, iter_problems, stream_rng
from bridge_pl.task.problem import Node, Problem, ProblemError
from bridge_pl.task.question import render_question

__all__ = [
    "ExtractionError",
    "GenerationError",
    "GeneratorConfig",
    "Node",
    "Problem",
    "ProblemError",
    "StepWriter",
    "extract_problem",
    "generate_problem",
    "iter_problems",
    "render_no_cot",
    "render_plain_cot",
    "render_question",
    "stream_rng",
]
