"""Verifier: the paper's strict-match reward and a checker for every equation chain of an answer.

Reward (paper_spec §C.3): take the **first** ``\\boxed{...}`` of the completion and compare its text with
``str(ground_truth)`` exactly (no stripping, no number parsing), plus an optional format bonus when
``"<think>" + completion`` has the ``<think>...</think> <answer>...</answer>`` shape.

The CoT checker validates an answer as a proof: every ``X = t0 = t1 = ... = v`` chain has links that
agree, uses only variables defined by earlier chains, substitutes their values faithfully, and ends at
the boxed answer. It is what proves every renderer correct on thousands of problems.

Model text is only ever matched with regular expressions and read by the task layer's equation tokenizer
and recursive-descent parser (`bridge_pl.task.expression`, shared with the extractor): it is never
executed. Every scan is linear in the text and the parser's recursion is capped, so pathological
completions (huge lines, deep parentheses, giant numbers) give errors, not hangs or crashes. Standard
library plus that standard-library-only module: the reward runs inside data workers that must not pay for
importing torch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from bridge_pl.task.expression import (
    MAX_BITS,
    MAX_DEPTH,
    MAX_DIGITS,
    Expr,
    ExpressionError,
    evaluate_bounded,
    fold_signs,
    literals,
    parse_expression,
    tokenize_equation,
)

__all__ = [
    "BOXED",
    "MAX_BITS",
    "MAX_DEPTH",
    "MAX_DIGITS",
    "CoTCheck",
    "batch_rewards",
    "check_cot",
    "compute_reward",
    "extract_answer",
    "format_ok",
    "strict_match_reward",
]

BOXED = re.compile(r"\\boxed\{([^}]*)\}")  # the paper's rule, as a pattern; scanned with str.find (`_boxes`)
# The paper's format pattern, r"^<think>.*?</think>\s*<answer>.*?</answer>$" (DOTALL, MULTILINE), fully matched:
# backtracking it over repeated tags is quadratic, so `format_ok` decides the same language with str.find.
_WHITESPACE = re.compile(r"\s*")
_BOX_OPEN = "\\boxed{"
TAGS = ("<think>", "</think>", "<answer>", "</answer>")
# MAX_DEPTH, MAX_DIGITS and MAX_BITS, the limits every term is read under, are the parser's (`expression`).
MAX_ERRORS = 50  # a degenerate completion can repeat one slip thousands of times
MAX_QUOTE = 60  # characters of model text quoted in one error

# A chain lives in one maximal run of term characters that ends in "." before a space or the line end.
# Scanning runs (instead of a lazy regex tried from every letter) keeps long lines linear.
_RUN = re.compile(r"[-+*() 0-9A-Za-z=]+")
_CHAIN_START = re.compile(r"(?<![A-Za-z])([A-Za-z]) = ")
_INTEGER = re.compile(r"-?[0-9]+")


# ------------------------------------------------------------------------------------------------ reward
def extract_answer(text: str) -> str | None:
    """Return the text inside the first \\boxed{...} of `text`, or None when there is none.

    Args:
        text: Any text, typically a completion.

    Returns:
        The raw boxed text (no stripping, no nested-brace handling: the paper's rule), or None.
    """
    first = next(_boxes(text), None)
    return None if first is None else first[1]


def _boxes(text: str):
    """Yield (start, content) of each non-overlapping ``\\boxed{...}`` in order, like ``BOXED.finditer``.

    Linear: once no "}" follows a box opening, none follows any later one either, so the scan stops.
    """
    position = 0
    while (start := text.find(_BOX_OPEN, position)) >= 0:
        close = text.find("}", start + len(_BOX_OPEN))
        if close < 0:
            return
        yield start, text[start + len(_BOX_OPEN) : close]
        position = close + 1


def strict_match_reward(completion: str, ground_truth: str | int) -> float:
    """1.0 when the first boxed answer equals str(ground_truth) exactly as text, else 0.0.

    Args:
        completion: Generated text.
        ground_truth: The expected answer; ``" 24"`` and ``"24.0"`` do not match ``24``.

    Returns:
        1.0 or 0.0.
    """
    return 1.0 if extract_answer(completion) == str(ground_truth) else 0.0


def format_ok(completion: str, prompt_suffix: str = "<think>") -> bool:
    """Whether prompt_suffix + completion fully matches <think>...</think> <answer>...</answer>.

    Args:
        completion: Generated text after the prompt.
        prompt_suffix: Text the prompt ends with (the RL prompt ends in ``<think>``); "" for a full answer.

    Returns:
        Whether the paper's format pattern matches the whole text (so even a trailing newline fails).
    """
    text = prompt_suffix + completion
    think, answer_close = len("<think>"), len(text) - len("</answer>")
    if not (text.startswith("<think>") and text.endswith("</answer>")):
        return False
    # The earliest "</think>" followed by whitespace and "<answer>" leaves the most room for the answer body;
    # whitespace runs after different "</think>"s are disjoint, so the whole scan is linear.
    position = think
    while (close := text.find("</think>", position)) >= 0:
        after = _WHITESPACE.match(text, close + len("</think>")).end()
        if text.startswith("<answer>", after):
            return after + len("<answer>") <= answer_close
        position = close + 1
    return False


def compute_reward(
    completion: str, ground_truth: str | int, format_reward_scale: float = 0.0, prompt_suffix: str = "<think>"
) -> float:
    """Strict-match reward plus format_reward_scale when the completion is well formed.

    Args:
        completion: Generated text after the prompt.
        ground_truth: The expected answer, compared as ``str(ground_truth)``.
        format_reward_scale: Bonus added when `format_ok` holds; 0 disables the format check.
        prompt_suffix: Text the prompt ends with, prepended for the format check.

    Returns:
        The reward: 0 or 1, plus the bonus when it applies.
    """
    reward = strict_match_reward(completion, ground_truth)
    if format_reward_scale and format_ok(completion, prompt_suffix):
        reward += format_reward_scale
    return reward


def batch_rewards(
    completions: Sequence[str],
    ground_truths: Sequence[str | int],
    format_reward_scale: float = 0.0,
    prompt_suffix: str = "<think>",
) -> list[float]:
    """Reward of each completion against its ground truth (TRL-style batch reward function).

    Contract:
        ``completions[i]`` is the generated text after a prompt ending in ``prompt_suffix``, and
        ``ground_truths[i]`` its expected answer, compared as ``str()``. The result holds one float per
        completion, in order: 1.0 when the first ``\\boxed{...}`` of the completion is exactly that text,
        else 0.0, plus ``format_reward_scale`` when the completion is well formed (see `format_ok`).
        Pure and deterministic; safe to call from any process.

    Args:
        completions: Generated texts.
        ground_truths: Expected answers, one per completion.
        format_reward_scale: Bonus for a well-formed completion.
        prompt_suffix: Text the prompt ends with.

    Returns:
        One reward per completion.

    Raises:
        ValueError: When the two sequences differ in length.

    >>> batch_rewards(["\\nSo \\\\boxed{7}.", "\\\\boxed{ 7}", "no box"], [7, 7, "7"])
    [1.0, 0.0, 0.0]
    """
    if len(completions) != len(ground_truths):
        raise ValueError(f"got {len(completions)} completions but {len(ground_truths)} ground truths")
    pairs = zip(completions, ground_truths, strict=True)
    return [compute_reward(completion, truth, format_reward_scale, prompt_suffix) for completion, truth in pairs]


# ----------------------------------------------------------------------------------------- the checker
@dataclass
class CoTCheck:
    """Result of `check_cot`.

    Attributes:
        ok: Whether the answer passed every check.
        errors: Readable problems, each naming the 1-based line of the response (or "frame" when none applies).
        num_equations: Number of equation chains found.
        final_value: Value of the last chain's variable (None without chains or when it cannot be computed).
    """

    ok: bool
    errors: list[str] = field(default_factory=list)
    num_equations: int = 0
    final_value: int | None = None


@dataclass
class _Chain:
    """One ``X = t0 = ... = tk`` found in the text."""

    line: int
    variable: str
    terms: list[str]


@dataclass
class _Definition:
    value: int
    line: int


class _UndefinedError(ExpressionError):
    """A term uses a variable no earlier chain defined."""


def _quote(text: str) -> str:
    """Quote model text for an error message, shortened so a huge term cannot flood the report."""
    return repr(text if len(text) <= MAX_QUOTE else text[: MAX_QUOTE - 3] + "...")


# ----------------------------------------------------------------------------------------- the frame
def _line_of(text: str, offset: int) -> int:
    """1-based line number of a character offset."""
    return text.count("\n", 0, offset) + 1


def _frame_errors(response: str) -> tuple[list[str], tuple[str, int] | None, tuple[int, int]]:
    """Problems with the <think>/<answer> frame and the box.

    Returns:
        The errors, the first box as (text, line) (None without one), and the [start, end) span of the think body
        (the whole response when the think tags are missing or out of order).
    """
    errors = []
    positions = [response.find(tag) for tag in TAGS]
    missing = [tag for tag, pos in zip(TAGS, positions, strict=True) if pos < 0]
    if missing:
        errors.append(f"frame: missing {', '.join(missing)}")
    elif positions != sorted(positions):
        errors.append("frame: expected <think>...</think> then <answer>...</answer>, in that order")
    for tag in TAGS:
        if response.count(tag) > 1:
            second = response.find(tag, response.find(tag) + 1)
            errors.append(f"line {_line_of(response, second)}: a second {tag} tag")
    box = _box_errors(response, positions, errors)
    start, end = positions[0], positions[1]
    span = (start + len(TAGS[0]), end) if 0 <= start < end else (0, len(response))
    return errors, box, span


def _box_errors(response: str, positions: list[int], errors: list[str]) -> tuple[str, int] | None:
    """Append the box's problems to `errors` and return the first box as (text, line)."""
    boxes = _boxes(response)
    first = next(boxes, None)
    if first is None:
        errors.append("frame: no \\boxed{...} answer")
        return None
    first_start, first_text = first
    line = _line_of(response, first_start)
    # Count newlines from the previous box on, so thousands of boxes stay linear in the text.
    offset, extra_line = first_start, line
    for extra_start, extra_text in boxes:
        extra_line += response.count("\n", offset, extra_start)
        offset = extra_start
        errors.append(
            f"line {extra_line}: another \\boxed{{}} answer ({_quote(extra_text)}); "
            f"the reward reads only the first ({_quote(first_text)}, line {line})"
        )
    if not _INTEGER.fullmatch(first_text):
        errors.append(f"line {line}: boxed answer {_quote(first_text)} is not an integer")
    answer_start, answer_end = positions[2], positions[3]
    if 0 <= answer_start < answer_end and not answer_start < first_start < answer_end:
        errors.append(f"line {line}: the boxed answer is outside <answer>...</answer>")
    return first_text, line


# ----------------------------------------------------------------------------------------- the chains
def _find_chains(body: str, first_line: int) -> tuple[list[_Chain], tuple[int, str] | None]:
    """Every equation chain of the think body, and its conclusion line (number, text) if it has one."""
    chains, lines = [], body.split("\n")
    for number, raw in enumerate(lines, start=first_line):
        line = raw.rstrip("\r")
        for run in _RUN.finditer(line):
            end = run.end()
            if line[end : end + 1] != "." or line[end + 1 : end + 2] not in ("", " "):
                continue
            start = _CHAIN_START.search(line, run.start(), end)
            if start is not None:
                chains.append(_Chain(number, start.group(1), line[start.end() : end].split(" = ")))
    conclusion = None
    for number, raw in reversed(list(enumerate(lines, start=first_line))):
        if raw.strip():
            conclusion = None if raw.strip().startswith("- ") else (number, raw.strip())
            break
    return chains, conclusion


def _evaluate_term(tokens: list[str], env: dict[str, _Definition], modulus: int | None) -> tuple[int, Expr]:
    """Value of one term (reduced mod `modulus`, printed numbers included) and its tree."""
    values: dict[int, int] = {}

    def ref(letter: str) -> int:
        definition = env.get(letter)
        if definition is None:
            raise _UndefinedError(f"variable '{letter}' used before it is defined")
        values[ord(letter)] = definition.value
        return ord(letter)

    expr = parse_expression(tokens, ref)
    value = evaluate_bounded(expr, values, modulus)
    # Operations already reduce; this also reduces a term that is one printed number, "30" under 23.
    return (value if modulus is None else value % modulus), expr


def _term_values(
    chain: _Chain, env: dict[str, _Definition], modulus: int | None, errors: list[str]
) -> tuple[list[int | None], list[list[str] | None]]:
    """Value and tokens of each term (None where it cannot be computed or read), appending problems to `errors`."""
    where = f"line {chain.line}"
    values: list[int | None] = []
    tokens: list[list[str] | None] = []
    for k, term in enumerate(chain.terms):
        term_tokens, value = None, None
        try:
            term_tokens = tokenize_equation(term)
            variables = [t for t in term_tokens if t.isalpha()]
            if k > 0 and variables:
                raise ExpressionError(
                    f"variable '{variables[0]}' after the first term; only the formula may use variables"
                )
            value, expr = _evaluate_term(term_tokens, env, modulus)
        except _UndefinedError as err:
            errors.append(f"{where}: {err}")
        except ExpressionError as err:
            errors.append(f"{where}: cannot evaluate {_quote(term)}: {err}")
        else:
            if modulus is not None:
                errors.extend(
                    f"{where}: {n} in {_quote(term)} is not in [0, {modulus})"
                    for n in literals(expr)
                    if not 0 <= n < modulus
                )
        tokens.append(term_tokens)
        values.append(value)
    return values, tokens


def _substitution_error(
    chain: _Chain, formula: list[str] | None, numeric: list[str] | None, env: dict[str, _Definition]
) -> str | None:
    """Why the second term is not the formula with each variable replaced by its value, or None if it is.

    Compared token by token (signed literals folded, so "(-3)" and "-3" agree), which also rejects redundant
    parentheses: the numeric link must be the formula's text with numbers for letters.
    """
    if formula is None or numeric is None:
        return None  # already reported by _term_values
    if not any(t.isalpha() for t in formula) or any(t.isalpha() and t not in env for t in formula):
        return None
    expected = [str(env[t].value) if t.isalpha() else t for t in fold_signs(formula)]
    if expected != fold_signs(numeric):
        shown = " ".join(expected).replace("( ", "(").replace(" )", ")")
        formula_text, numeric_text = _quote(chain.terms[0]), _quote(chain.terms[1])
        return f"{numeric_text} is not {formula_text} with the values substituted (expected {_quote(shown)})"
    return None


def _check_chain(chain: _Chain, env: dict[str, _Definition], modulus: int | None) -> tuple[list[str], int | None]:
    """Check one chain and record its variable's value in `env`; returns the problems and that value."""
    where, errors = f"line {chain.line}", []
    values, tokens = _term_values(chain, env, modulus, errors)
    errors += _link_errors(chain, values)
    if len(chain.terms) > 1 and values[0] is not None:  # a formula that failed is already reported
        problem = _substitution_error(chain, tokens[0], tokens[1], env)
        if problem:
            errors.append(f"{where}: {problem}")
    last = fold_signs(tokens[-1] or [])
    if len(chain.terms) > 1 and not (len(last) == 1 and _INTEGER.fullmatch(last[0])):
        errors.append(f"{where}: the chain for '{chain.variable}' does not end in a number ({_quote(chain.terms[-1])})")
    known = [v for v in values if v is not None]
    if not known:
        return errors, None
    value = known[-1]  # the printed result is what later steps use, so keep it even after a slip
    earlier = env.get(chain.variable)
    if earlier is not None and earlier.value != value:
        errors.append(f"{where}: '{chain.variable}' is now {value} but was {earlier.value} on line {earlier.line}")
    env[chain.variable] = _Definition(value, chain.line)
    return errors, value


def _link_errors(chain: _Chain, values: list[int | None]) -> list[str]:
    """Links whose value differs from the link before them."""
    errors, previous = [], None
    for term, value in zip(chain.terms, values, strict=True):
        if value is None:
            continue
        # Compare with the last computable link, not the formula, so a slip carried on is reported once.
        if previous is not None and value != previous[1]:
            errors.append(
                f"line {chain.line}: link {_quote(term)} evaluates to {value}, "
                f"but {_quote(previous[0])} gives {previous[1]}"
            )
        previous = (term, value)
    return errors


def _same_integer(text: str, value: int) -> bool:
    """Whether integer text equals `value`, without int() on text too long to be any value we compute."""
    return len(text) <= MAX_DIGITS + 1 and int(text) == value


def _answer_errors(
    box: tuple[str, int] | None,
    final: tuple[int, int] | None,
    conclusion: tuple[int, str] | None,
    expected_answer: int | str | None,
) -> list[str]:
    """Problems linking the final (value, line), the conclusion line, the box and the expected answer."""
    errors = []
    if final is not None and box is not None and _INTEGER.fullmatch(box[0]) and not _same_integer(box[0], final[0]):
        errors.append(
            f"line {box[1]}: boxed {_quote(box[0])} differs from the last computed value {final[0]} (line {final[1]})"
        )
    if final is not None and conclusion is not None:
        numbers = _INTEGER.findall(conclusion[1])
        if numbers and not _same_integer(numbers[-1], final[0]):
            errors.append(
                f"line {conclusion[0]}: conclusion says {_quote(numbers[-1])}, "
                f"last computed value is {final[0]} (line {final[1]})"
            )
    if expected_answer is not None and (box is None or box[0] != str(expected_answer)):
        where = "answer" if box is None else f"line {box[1]}"
        shown = "no boxed answer" if box is None else f"boxed {_quote(box[0])}"
        errors.append(f"{where}: {shown}, expected {_quote(str(expected_answer))}")
    return errors


def check_cot(response: str, *, expected_answer: int | str | None = None, modulus: int | None = None) -> CoTCheck:
    """Check every equation chain of an answer: links agree, variables defined before use, answer consistent.

    Args:
        response: The full answer, ``<think>...</think>`` then ``<answer>...\\boxed{V}...</answer>``.
        expected_answer: When given, the boxed text must equal ``str(expected_answer)`` exactly.
        modulus: When given, every operation is reduced mod it and every printed number must lie in
            ``[0, modulus)``; None means plain integers.

    Returns:
        The verdict with every problem found. An answer without chains (no CoT) is judged on its frame,
        box and expected answer only.

    Raises:
        ValueError: When `modulus` is not positive.
    """
    if modulus is not None and modulus < 1:
        raise ValueError(f"modulus={modulus}: need a positive modulus or None")
    errors, box, (start, end) = _frame_errors(response)
    chains, conclusion = _find_chains(response[start:end], _line_of(response, start))
    env: dict[str, _Definition] = {}
    final_value = None
    for chain in chains:
        chain_errors, final_value = _check_chain(chain, env, modulus)
        errors += chain_errors
    final = None if final_value is None else (final_value, chains[-1].line)
    errors += _answer_errors(box, final, conclusion, expected_answer)
    if len(errors) > MAX_ERRORS:
        errors[MAX_ERRORS - 1 :] = [f"... and {len(errors) - MAX_ERRORS + 1} more errors"]
    return CoTCheck(ok=not errors, errors=errors, num_equations=len(chains), final_value=final_value)
