"""DyVal (PromptBench) DAG reasoning tasks: arithmetic and boolean logic, as a seeded pure-Python generator.

Questions use DyVal's public format (promptbench/dyval); answers use the paper's answer frame with bridge-pl's
own wording, and `DyValStepWriter` lets `bridge_pl.augment.bridge.render_bridge_answer` inject BRIDGE behaviors.
"""

from bridge_pl.task.dyval.cot import DyValStepWriter, render_dyval_chain, render_dyval_no_cot, render_dyval_plain_cot
from bridge_pl.task.dyval.generator import (
    DyValConfig,
    GenerationError,
    dyval_rng,
    generate_dyval_problem,
    iter_dyval_problems,
)
from bridge_pl.task.dyval.names import FORBIDDEN_NAMES, dyval_names
from bridge_pl.task.dyval.problem import DyValNode, DyValProblem, DyValProblemError, format_value
from bridge_pl.task.dyval.question import (
    DyValParseError,
    ParsedQuestion,
    dyval_answer_of,
    parse_dyval_question,
    render_dyval_question,
)
from bridge_pl.task.dyval.verify import answer_matches, check_dyval_answer, check_dyval_cot

__all__ = [
    "FORBIDDEN_NAMES",
    "DyValConfig",
    "DyValNode",
    "DyValParseError",
    "DyValProblem",
    "DyValProblemError",
    "DyValStepWriter",
    "GenerationError",
    "ParsedQuestion",
    "answer_matches",
    "check_dyval_answer",
    "check_dyval_cot",
    "dyval_answer_of",
    "dyval_names",
    "dyval_rng",
    "format_value",
    "generate_dyval_problem",
    "iter_dyval_problems",
    "parse_dyval_question",
    "render_dyval_chain",
    "render_dyval_no_cot",
    "render_dyval_plain_cot",
    "render_dyval_question",
]
