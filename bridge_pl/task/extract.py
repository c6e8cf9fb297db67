"""Rebuild a `Problem` from an iGSM-format question and chain-of-thought answer (ours or the official files).

Any (question, answer) pair in the public iGSM grammar (paper_spec §A.5-A.6) can be turned back into the
DAG with values, so datasets made elsewhere (e.g. the official iGSM-reasoning files with columns
``query, response, num_ops, final_answer``) can be re-rendered with behaviors.

Where each piece of the problem comes from:

* **instance nodes** ("each B's A", B contains A): one question sentence each, which spells out the
  inputs, the constant, sum/difference and "more than"/"times";
* **the structure graph**: the edges B ⊃ A of the instance sentences (with redundant sentences on, the
  question lists every edge); item layers follow from "B is one layer above A";
* **abstract nodes** ("each B's C", C a category = a layer name): their equations are never written in
  the question. For nodes the answer computes, the letter equation ``q = L * z`` shows the inputs and
  their order and pins C's layer; other abstract nodes are rebuilt from the structure graph (children
  in the order their sentences first appear);
* **category layers**: pinned by the answer's abstract equations, by a known vocabulary (the official
  systems' category order, §A.1, and our packaged vocabulary's categories and items; dropped where they
  contradict the text; the layers must be a contiguous slice of the system's categories), or by
  elimination: distinct categories name distinct layers below every item that uses them, and a layout
  whose equations form a cycle or print other values is ruled out;
* **the target**: the final question, except where the official generator cut the target's name at its first
  "'s " ("How many Animal Farm does each Kid have?" about "each Kid's Animal Farm's Enclosure"): then the node
  of the answer's last step;
* **solution order**: the order of the answer's first successful equation chains, kept to the necessary
  nodes (the target and its ancestors); without chains, a deterministic topological order (question
  sentence order, inputs first);
* **values**: recomputed with `Problem.compute_values` and checked against every value the answer
  prints, each number-only link included (a wrong parse or a wrong `modulus` surfaces as a mismatch).

Without an answer, abstract nodes can only be rebuilt when the question lists every containment (true of
the official files and of ours with redundant sentences on); a question that visibly omits some (an item
that contains nothing above layer 0) raises, one that hides it cannot be told apart.

Anything that cannot be read unambiguously raises `ExtractionError` with the reason.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bridge_pl.task.expression import (
    Chain,
    Expr,
    ExpressionError,
    Product,
    Ref,
    evaluate_bounded,
    parse_expression,
    render,
)
from bridge_pl.task.problem import Node, Problem, ProblemError
from bridge_pl.task.vocabulary import load_vocabulary

__all__ = ["ExtractionError", "MAX_NODES", "extract_problem"]

MAX_NODES = 52  # one distinct letter a-z, A-Z per node in the written answers

Key = tuple[str, str]  # (upper, lower) of "each <upper>'s <lower>"


class ExtractionError(ValueError):
    """A (question, answer) pair cannot be turned into a problem; the message says why."""


def extract_problem(
    query: str, response: str | None = None, *, modulus: int | None = None, system: str = "unknown"
) -> Problem:
    """Rebuild a problem's DAG, values and solution order from its question and (optional) CoT answer.

    Args:
        query: The question: condition sentences "The number of each B's A equals ...", then
            "How many Y does each Z have?". Sentences may be joined by newlines or spaces.
        response: The answer (plain CoT, BRIDGE, or the no-CoT "Define ... So X = ..." form). Its
            equation chains give the solution order, the abstract equations and values to check against.
            None (or an answer without chains) gives a deterministic order of the target's ancestors.
        modulus: Reduce every operation modulo this number (23 for the original iGSM), as the data did.
        system: Vocabulary system name to store in the problem (the text does not say it); a known name
            also limits which vocabulary may help place the layers ("unknown": any that fits).

    Returns:
        The problem. Node ids list the necessary nodes in solution order, then the redundant nodes.
        `layer_names[k]` is the category name of layer k when the text or a known vocabulary names it,
        else the placeholder "layer-k" (the top layer, for one, is never named by an abstract parameter).

    Raises:
        ExtractionError: The text is not in the iGSM grammar, names an undefined parameter, is
            ambiguous, has more than 52 nodes, or prints a value its own equations do not give.
    """
    question = _parse_question(query, response)
    structure = _Structure.build(question)
    steps, final_answer = _parse_answer(response or "", structure)
    solved = _read_equations(steps, question, structure, modulus)
    known = _matching_system(structure, system)
    item_layers, pinned, gap = _solve_layers(question, structure, solved, known)
    assignments = _category_assignments(structure, item_layers, pinned)
    built: list[tuple[dict[str, int], Problem]] = []
    errors: list[ExtractionError] = []
    for categories in assignments:
        assembly = _Assembly(question, structure, solved, _Layout(item_layers, categories, known, gap))
        try:
            problem = assembly.problem(modulus, system)
            _check_printed_values(problem, assembly, steps, final_answer)
        except ExtractionError as err:
            errors.append(err)
            continue
        built.append((categories, problem))
    if not built:
        raise errors[0]
    if len(built) > 1 and solved:  # several layouts fit the text: keep those that show every category total
        built = [b for b in built if _shows_every_total(b[1], question, solved)] or built
    if len(built) > 1 and known is not None:  # prefer the vocabulary's order
        built = [b for b in built if known.offset(b[0], len(b[1].layer_names)) is not None] or built
    if len(built) > 1:
        raise ExtractionError(_ambiguity_message([categories for categories, _ in built]))
    return built[0][1]


def _shows_every_total(problem: Problem, question: _Question, solved: dict[Key, _Solved]) -> bool:
    """Whether every category total of `problem` is named by a sentence or computed by the answer.

    Both generators put a category total into a problem only as an ancestor of the target, which a complete
    answer computes, or as an input of a (redundant) sentence, which names it. A layout whose totals need others
    (a level-2 total needs its children's totals) is not the one that was generated.
    """
    named = {key for condition in question.conditions for key in condition.inputs} | set(solved) | {question.target}
    return all((n.upper, n.lower) in named for n in problem.nodes if n.kind == "abstract")


# ------------------------------------------------------------------------------------------------ question
_LIST_SEPARATOR = re.compile(r", (?=each )| and (?=each )")
_SENTENCE_BREAK = re.compile(r"(?<=\.)\s+(?=The number of |How many )")
_CONDITION = re.compile(r"^The number of (each .+?) equals (.+)$")
_FINAL = re.compile(r"^How many (.+?) does each (.+) have\?$")
_RELATION = re.compile(r"^(-?\d+) (more than|times) (.+)$")
_COMBINATION = re.compile(r"^the (sum|difference) of (.+)$")
_INTEGER = re.compile(r"^-?\d+$")


@dataclass(slots=True)
class _Condition:
    """One condition sentence: "The number of <key> equals <rhs>."."""

    key: Key
    inputs: list[Key]
    constant: int | None
    combine: str
    constant_op: str | None
    text: str


@dataclass(slots=True)
class _Question:
    """The parsed question: condition sentences in order and the target's key."""

    conditions: list[_Condition]
    target: Key

    def condition(self, key: Key) -> _Condition | None:
        """The sentence defining `key`, if any."""
        return next((c for c in self.conditions if c.key == key), None)


@dataclass(slots=True)
class _RawCondition:
    """A condition sentence before names are split into (upper, lower)."""

    name: str
    inputs: list[str]
    constant: int | None
    combine: str
    constant_op: str | None
    text: str


def _split_sentences(query: str) -> list[str]:
    """The question's sentences, tolerant of newline or space joins and stray whitespace."""
    sentences = []
    for line in query.splitlines():
        sentences.extend(part.strip() for part in _SENTENCE_BREAK.split(line.strip()) if part.strip())
    return sentences


def _parse_question(query: str, response: str | None = None) -> _Question:
    """Condition sentences and the final question, names resolved to (upper, lower) keys.

    The official generator writes the final question by cutting the target's name at its first "'s ", so for an
    item name with an apostrophe ("Kid's Animal Farm") it asks "How many Animal Farm does each Kid have?" about
    "each Kid's Animal Farm's Enclosure". So when the answer's last step (the target is always computed last) is
    about a name that begins with the asked one plus "'s ", that name is the target.
    """
    sentences = _split_sentences(query)
    if not sentences or not _FINAL.match(sentences[-1]):
        last = sentences[-1] if sentences else ""
        raise ExtractionError(
            f"the question does not end with 'How many Y does each Z have?' (last sentence: {last!r})"
        )
    final = _FINAL.match(sentences[-1])
    assert final is not None
    asked = (final.group(2), final.group(1))
    raws = [_parse_condition(sentence) for sentence in sentences[:-1]]
    raw_names = [r.name for r in raws] + [n for r in raws for n in r.inputs]
    whole = _whole_target_name(asked, {r.name for r in raws}, raw_names, response)
    names = _resolve_names([*raw_names, whole] if whole else raw_names, None if whole else asked)
    target = names[whole] if whole else asked
    conditions = [
        _Condition(names[r.name], [names[n] for n in r.inputs], r.constant, r.combine, r.constant_op, r.text)
        for r in raws
    ]
    seen: set[Key] = set()
    for condition in conditions:
        if condition.key in seen:
            raise ExtractionError(f"two sentences define '{_name(condition.key)}'")
        seen.add(condition.key)
    return _Question(conditions, target)


def _parse_condition(sentence: str) -> _RawCondition:
    """One condition sentence into raw names (without "each ") and its arithmetic form."""
    text = sentence.rstrip(". ")
    match = _CONDITION.match(text)
    if match is None:
        if sentence.startswith("How many "):
            raise ExtractionError(f"the final question must come last, found it before other sentences: {sentence!r}")
        raise ExtractionError(f"sentence is not 'The number of each B's A equals ...': {sentence!r}")
    name, rhs = match.group(1), match.group(2)
    constant, constant_op, combine = None, None, "sum"
    if _INTEGER.match(rhs):
        return _RawCondition(_bare(name, sentence), [], int(rhs), "sum", None, sentence)
    relation = _RELATION.match(rhs)
    if relation:
        constant, constant_op = int(relation.group(1)), "mul" if relation.group(2) == "times" else "add"
        rhs = relation.group(3)
    combination = _COMBINATION.match(rhs)
    if combination:
        combine = "diff" if combination.group(1) == "difference" else "sum"
        inputs = _LIST_SEPARATOR.split(combination.group(2))
        if len(inputs) < 2 or (combine == "diff" and len(inputs) != 2):
            wanted = "two" if combine == "diff" else "two or more"
            raise ExtractionError(f"'the {combination.group(1)} of' needs {wanted} names: {sentence!r}")
    else:
        inputs = [rhs]
    return _RawCondition(
        _bare(name, sentence), [_bare(n, sentence) for n in inputs], constant, combine, constant_op, sentence
    )


_NAME_END = re.compile(r"\.(?:\s|$)| as [A-Za-z]\.(?:\s|$)| is -?\d+\.(?:\s|$)")


def _whole_target_name(asked: Key, defined: set[str], raw_names: list[str], response: str | None) -> str | None:
    """The target's whole raw name when the final question cuts it at its first "'s ", else None.

    Read from the answer's last step when its node's name begins with the asked name plus "'s "; without such a
    step, a question whose asked name nobody defines while other names extend it cannot be read.
    """
    prefix = f"{asked[0]}'s {asked[1]}'s "
    whole = _last_step_name(response, prefix) if response else None
    if whole is not None:
        return whole
    longer = sorted({name for name in raw_names if name.startswith(prefix)})
    if longer and f"{asked[0]}'s {asked[1]}" not in defined:
        raise ExtractionError(
            f"the final question asks about 'each {asked[0]}'s {asked[1]}', which no sentence defines, while "
            f"{', '.join(f'each {name}' for name in longer)} begin with it: the question cuts the target's name at "
            'its first "\'s " (as the official generator does), and no answer step names the whole target'
        )
    return None


def _last_step_name(response: str, prefix: str) -> str | None:
    """The name of the node the answer's last equation line is about, if that name begins with `prefix`."""
    for raw_line in reversed(response.splitlines()):
        line = raw_line.strip()
        if _first_chain(line) is None:
            continue
        opening = _SUBJECT.search(line)
        start = opening.end() + len("each ") if opening else -1
        if start < 0 or not line.startswith(prefix, start):
            return None
        end = _NAME_END.search(line, start + len(prefix))
        return line[start : end.start()] if end else None
    return None


def _bare(name: str, sentence: str) -> str:
    """ "each B's A" -> "B's A", checking the form."""
    if not name.startswith("each ") or "'s " not in name:
        raise ExtractionError(f"{name!r} is not a parameter name 'each B's A' in sentence {sentence!r}")
    return name[len("each ") :]


def _resolve_names(raws: list[str], target: Key | None) -> dict[str, Key]:
    """Split every raw name "B's A" into (B, A); names with several "'s " use the other names as evidence.

    A name with one "'s " splits there. A name with several (item names may hold an apostrophe, e.g.
    "Kid's Animal Farm's Bone") splits where a part is a name known from the unambiguous ones; with no
    such evidence it splits at the last "'s "; with evidence for two splits it is ambiguous. A final question
    that names its item and part separately (`target`) is evidence too; None when it cut the target's name.
    """
    names: dict[str, Key] = {f"{target[0]}'s {target[1]}": target} if target else {}
    known = set(target or ())
    pending = []
    for raw in dict.fromkeys(raws):
        if raw in names:
            continue
        if raw.count("'s ") == 1:
            names[raw] = tuple(raw.split("'s "))  # type: ignore[assignment]
            known.update(names[raw])
        else:
            pending.append(raw)
    while pending:
        raw = next((raw for raw in pending if _supported_splits(raw, known)), pending[0])
        supported = _supported_splits(raw, known)
        if len(supported) > 1:
            options = " or ".join(f"'{upper}' / '{lower}'" for upper, lower in supported)
            raise ExtractionError(f"cannot tell where 'each {raw}' splits into item and part: {options}")
        names[raw] = supported[0] if supported else _splits(raw)[-1]
        known.update(names[raw])
        pending.remove(raw)
    return names


def _splits(raw: str) -> list[Key]:
    return [(raw[: m.start()], raw[m.end() :]) for m in re.finditer("'s ", raw)]


def _supported_splits(raw: str, known: set[str]) -> list[Key]:
    """The splits of a name with several "'s " in which a part is a name seen elsewhere."""
    return [split for split in _splits(raw) if split[0] in known or split[1] in known]


def _name(key: Key) -> str:
    return f"each {key[0]}'s {key[1]}"


# ------------------------------------------------------------------------------------------------ structure
@dataclass(slots=True)
class _Structure:
    """The structure graph the question reveals: items, their children, and the category names used."""

    children: dict[str, list[str]]  # item -> contained items, in order of first sentence
    items: set[str]
    category_users: dict[str, set[str]]  # category -> items B with a name "each B's <category>"

    @classmethod
    def build(cls, question: _Question) -> _Structure:
        """Items and edges from the instance sentences; check every referenced name is defined."""
        children: dict[str, list[str]] = {}
        items: set[str] = set()
        for condition in question.conditions:
            upper, lower = condition.key
            children.setdefault(upper, []).append(lower)
            items.update(condition.key)
        structure = cls(children, items, {})
        defined = {c.key for c in question.conditions}
        for condition in question.conditions:
            for key in condition.inputs:
                if key not in defined:
                    structure.register_category(key, f"condition '{_name(condition.key)}' uses '{_name(key)}'")
        if question.target not in defined:
            structure.register_category(question.target, f"the question asks for '{_name(question.target)}'")
        return structure

    def register_category(self, key: Key, context: str) -> None:
        """Record "each B's C" as an abstract parameter, or fail if it is neither defined nor a category total."""
        upper, lower = key
        if lower in self.items or upper not in self.children:
            raise ExtractionError(f"{context}, which no sentence defines and which is not a category total")
        self.category_users.setdefault(lower, set()).add(upper)

    def is_abstract(self, key: Key) -> bool:
        """Whether `key` names a category total (not an instance sentence)."""
        return key[1] not in self.items and key[0] in self.children

    def matcher(self) -> re.Pattern[str]:
        """A regex that reads a known parameter name "each B's X" at a position (longest names first)."""
        uppers = sorted(self.items, key=len, reverse=True)
        lowers = sorted(self.items | set(self.category_users), key=len, reverse=True)
        alt = lambda names: "|".join(map(re.escape, names))  # noqa: E731
        return re.compile(rf"each (?P<upper>{alt(uppers)})'s (?P<lower>{alt(lowers)})(?![\w'])")


# ------------------------------------------------------------------------------------------------ answer
# A chain "X = t0 = ... = tk" lies in one maximal run of term characters that ends in "." before a space, or at
# the line end. Scanning runs (instead of a lazy regex tried from every letter) keeps long lines linear.
_RUN = re.compile(r"[-+*()0-9A-Za-z =]+")
_CHAIN_START = re.compile(r"(?<![\w'])([A-Za-z]) = ")
_CHAIN_END = re.compile(r"\.(?:\s|$)")
_SUBJECT = re.compile(r"(?i:the number of )(?=each )|^(?:- )?Define (?=each )")
_BOXED = re.compile(r"\\boxed\{\s*(-?\d+)\s*\}")
_ANSWER_IS = re.compile(r"the answer is (-?\d+)", re.I)


@dataclass(slots=True)
class _Step:
    """One equation chain of the answer: ``letter = formula = link = ... = value`` about node `key`."""

    line_no: int
    key: Key
    letter: str
    formula: str
    links: list[str]
    value: int
    text: str


def _parse_answer(response: str, structure: _Structure) -> tuple[list[_Step], int | None]:
    """Every equation chain of the answer (one per line, about the line's first named node) and the final answer."""
    matcher = structure.matcher()
    steps = []
    for line_no, raw_line in enumerate(response.splitlines(), 1):
        line = raw_line.strip()
        chain = _first_chain(line)
        if chain is None:
            continue  # failed attempts, reflections, frame lines: no DAG information
        text, letter, body = chain
        terms = [term.strip() for term in body.split(" = ")]
        where = f"answer line {line_no} ({text!r})"
        if not _INTEGER.match(terms[-1]):
            raise ExtractionError(f"{where}: the chain does not end in a number")
        key = _subject(line, matcher)
        if key is None:
            raise ExtractionError(f"{where}: the line names no parameter of the question: {line!r}")
        last = _parse_term(terms[-1], None, where)  # a number; read by the parser so its digit limit guards int()
        steps.append(_Step(line_no, key, letter, terms[0], terms[1:], evaluate_bounded(last, {}), text))
    boxed = _BOXED.search(response) or _ANSWER_IS.search(response)
    return steps, int(boxed.group(1)) if boxed else None


def _first_chain(line: str) -> tuple[str, str, str] | None:
    """The line's first equation chain as (its text, its letter, the text after "X = "), or None."""
    for run in _RUN.finditer(line):
        end = run.end()
        if end < len(line) and _CHAIN_END.match(line, end) is None:
            continue
        start = _CHAIN_START.search(line, run.start(), end)
        if start is not None and start.end() < end:
            return line[start.start() : end], start.group(1), line[start.end() : end]
    return None


def _subject(line: str, matcher: re.Pattern[str]) -> Key | None:
    """The node a step line is about: the first "the number of each ..." (or "Define each ...") name."""
    opening = _SUBJECT.search(line)
    if opening is None:
        return None
    match = matcher.match(line, opening.end())
    return (match.group("upper"), match.group("lower")) if match else None


def _parse_term(text: str, ref: Callable[[str], int] | None, where: str) -> Expr:
    """`parse_expression`, its error turned into an `ExtractionError` that names the answer line."""
    try:
        return parse_expression(text, ref)
    except ExpressionError as err:
        raise ExtractionError(f"{where}: cannot read {text!r} as an equation ({err})") from err


# ------------------------------------------------------------------------------------------------ equations
@dataclass(slots=True)
class _Solved:
    """What the answer says about one node: its first chain, and for abstract nodes inputs and level."""

    step: _Step
    inputs: list[Key]
    combine: str
    level: int | None  # abstract: d = layer(B) - layer(C)


class _KeyIndex:
    """Stable integer ids for keys, so equations can be compared as `expression` trees."""

    def __init__(self) -> None:
        self.ids: dict[Key, int] = {}
        self.keys: list[Key] = []

    def __call__(self, key: Key) -> int:
        if key not in self.ids:
            self.ids[key] = len(self.keys)
            self.keys.append(key)
        return self.ids[key]


def _read_equations(
    steps: list[_Step], question: _Question, structure: _Structure, modulus: int | None
) -> dict[Key, _Solved]:
    """Check every chain against the question and collect the abstract equations (first chain per node)."""
    letters: dict[str, Key] = {}
    solved: dict[Key, _Solved] = {}
    index = _KeyIndex()
    for step in steps:
        where = f"answer line {step.line_no} ({step.text!r})"
        _check_letter(letters, step, where)
        if step.key in solved:
            if solved[step.key].step.formula != step.formula or solved[step.key].step.value != step.value:
                raise ExtractionError(f"{where}: '{_name(step.key)}' was already computed differently")
            continue

        def ref(letter: str, where: str = where) -> int:
            if letter not in letters or letters[letter] not in solved:
                raise ExtractionError(f"{where}: uses {letter!r} before any step computes it")
            return index(letters[letter])

        expr = _parse_term(step.formula, ref, where)
        _check_links(step, modulus, where)
        condition = question.condition(step.key)
        if condition is not None:
            _check_instance_equation(condition, expr, index, where)
            solved[step.key] = _Solved(step, condition.inputs, condition.combine, None)
        elif structure.is_abstract(step.key):
            structure.category_users.setdefault(step.key[1], set()).add(step.key[0])
            solved[step.key] = _abstract_equation(step, expr, index, structure, solved, where)
        else:
            raise ExtractionError(f"{where}: '{_name(step.key)}' has no sentence and is not a category total")
        letters[step.letter] = step.key
    return solved


def _check_letter(letters: dict[str, Key], step: _Step, where: str) -> None:
    """One letter per node and one node per letter."""
    if letters.get(step.letter, step.key) != step.key:
        raise ExtractionError(f"{where}: {step.letter!r} already names '{_name(letters[step.letter])}'")
    for letter, key in letters.items():
        if key == step.key and letter != step.letter:
            raise ExtractionError(f"{where}: '{_name(step.key)}' was called {letter!r} before")


def _check_links(step: _Step, modulus: int | None, where: str) -> None:
    """Every number-only link of the chain must evaluate to the chain's value."""
    for link in step.links:
        expr = _parse_term(link, None, where)
        try:
            value = evaluate_bounded(expr, {}, modulus)
        except ExpressionError as err:
            raise ExtractionError(f"{where}: cannot evaluate {link!r} ({err})") from err
        if value != step.value:
            raise ExtractionError(f"{where}: {link!r} evaluates to {value}, not {step.value} (modulus={modulus})")


def _instance_expression(condition: _Condition, index: _KeyIndex) -> Expr:
    node = Node(
        id=index(condition.key),
        kind="instance",
        upper=condition.key[0],
        lower=condition.key[1],
        upper_layer=0,
        lower_layer=0,
        inputs=[index(key) for key in condition.inputs],
        constant=condition.constant,
        combine=condition.combine,  # type: ignore[arg-type]
        constant_op=condition.constant_op,  # type: ignore[arg-type]
    )
    return node.expression()


def _check_instance_equation(condition: _Condition, expr: Expr, index: _KeyIndex, where: str) -> None:
    expected = _instance_expression(condition, index)
    if expr != expected:
        letters = {i: f"[{_name(key)}]" for key, i in index.ids.items()}
        raise ExtractionError(
            f"{where}: the equation does not match the sentence {condition.text!r} "
            f"(expected {render(expected, letters.__getitem__)})"
        )


def _abstract_equation(
    step: _Step, expr: Expr, index: _KeyIndex, structure: _Structure, solved: dict[Key, _Solved], where: str
) -> _Solved:
    """Inputs, combine and level of an abstract node from its letter equation, checked against the structure.

    "z = x + U + t + V" adds the instance counts of B's children (level 1); "q = L * z + ..." weights each
    child's count by that child's own total of the category (level 1 + the child total's level).
    """
    upper, category = step.key
    terms = list(expr.terms) if isinstance(expr, Chain) and set(expr.ops) == {"+"} else [expr]
    weighted = isinstance(terms[0], Product)
    inputs: list[Key] = []
    levels: set[int | None] = set()
    for term in terms:
        if not weighted and isinstance(term, Ref):
            inputs.append(index.keys[term.node])
            levels.add(1)
        elif weighted and isinstance(term, Product) and isinstance(term.left, Ref) and isinstance(term.right, Ref):
            first, second = index.keys[term.left.node], index.keys[term.right.node]
            count, total = (second, first) if second[0] == upper else (first, second)
            inputs += [count, total]
            sub = solved[total].level if total == (count[1], category) else None
            levels.add(None if sub is None else sub + 1)
        else:
            levels.add(None)
    counts = inputs[::2] if weighted else inputs
    children = [lower for (count_upper, lower) in counts if count_upper == upper]
    if (
        len(levels) != 1
        or None in levels
        or len(children) != len(counts)
        or sorted(children) != sorted(structure.children[upper])
    ):
        part = f" * each <child>'s {category}" if weighted else ""
        raise ExtractionError(
            f"{where}: '{_name(step.key)}' is a category total, so its equation must add "
            f"each {upper}'s <child>{part} over the children the question gives {upper}: {structure.children[upper]}"
        )
    level = levels.pop()
    assert level is not None
    return _Solved(step, inputs, "weighted" if weighted else "sum", level)


# ------------------------------------------------------------------------------------------------ vocabulary
# Category names of the official iGSM-reasoning systems, lowest layer first (paper_spec §A.1).
OFFICIAL_CATEGORIES: dict[str, tuple[str, ...]] = {
    "district_system": ("Ingredient", "Product", "Supermarket", "District"),
    "zoo_system": ("Bone", "Animal", "Enclosure", "zoo"),
    "school_system": ("Stationery", "Backpack", "Classroom", "School"),
}


@dataclass(frozen=True, slots=True)
class _KnownSystem:
    """A vocabulary system the names may come from: category names (lowest first) and item -> category."""

    name: str
    categories: tuple[str, ...]
    item_category: dict[str, str]

    def offset(self, categories: dict[str, int], num_layers: int = 0) -> int | None:
        """The shift layer - rank shared by all `categories`, or None if they do not follow this system's order.

        With `num_layers`, also None unless layers 0 .. num_layers - 1 all map onto this system's categories: a
        problem's layers are a contiguous slice of its system's categories.
        """
        offsets = {
            layer - self.categories.index(c) if c in self.categories else None for c, layer in categories.items()
        }
        offset = offsets.pop() if len(offsets) == 1 else None
        if offset is not None and num_layers and not num_layers - len(self.categories) <= offset <= 0:
            return None
        return offset


@functools.cache
def _known_systems() -> tuple[_KnownSystem, ...]:
    """The official systems (categories only) and the packaged vocabulary (categories and items)."""
    systems = [_KnownSystem(name, categories, {}) for name, categories in OFFICIAL_CATEGORIES.items()]
    for system in load_vocabulary().systems:
        item_category: dict[str, str] = {}
        shared: set[str] = set()
        for category in system.categories:
            for _, names in category.subcategories:
                for item in names:
                    (shared if item_category.setdefault(item, category.name) != category.name else set()).add(item)
        for item in shared:  # an item listed under two categories says nothing about its layer
            del item_category[item]
        systems.append(_KnownSystem(system.name, tuple(c.name for c in system.categories), item_category))
    return tuple(systems)


def _matching_system(structure: _Structure, system: str) -> _KnownSystem | None:
    """The one known system whose categories hold every category the problem names (and that knows its items)."""
    categories = set(structure.category_users)
    candidates = [s for s in _known_systems() if system in ("unknown", s.name) and categories <= set(s.categories)]
    knowing = [s for s in candidates if any(item in s.item_category for item in structure.items)]
    if len(knowing) == 1:
        return knowing[0]
    orders = {s.categories for s in candidates}
    return candidates[0] if len(orders) == 1 and categories and not knowing else None


def _vocabulary_relations(structure: _Structure, known: _KnownSystem) -> list[_Relation]:
    """Layer relations the vocabulary implies: category order, and each known item's category."""
    members = {item: known.item_category[item] for item in sorted(structure.items) if item in known.item_category}
    categories = sorted(set(structure.category_users) | set(members.values()), key=known.categories.index)
    reason = f"the category order of the vocabulary system '{known.name}'"
    rank = known.categories.index
    relations: list[_Relation] = [
        (("category", upper), ("category", lower), rank(upper) - rank(lower), reason)
        for lower, upper in itertools.pairwise(categories)
    ]
    for item, category in members.items():
        relations.append((("item", item), ("category", category), 0, f"the vocabulary ('{item}' is a {category})"))
    return relations


# ------------------------------------------------------------------------------------------------ layers
_Entity = tuple[str, str]  # ("item", name) or ("category", name)
_Relation = tuple[_Entity, _Entity, int, str]  # layer(x) - layer(y) = d, because of <reason>


def _solve_layers(
    question: _Question, structure: _Structure, solved: dict[Key, _Solved], known: _KnownSystem | None
) -> tuple[dict[str, int], dict[str, int], str | None]:
    """Item layers, the category layers the evidence pins, and a sign that the question omits containments.

    Every sentence "each B's A" puts B one layer above A; every abstract equation the answer solves puts
    B `level` layers above its category; a known vocabulary adds its category order and its items'
    categories (dropped if they contradict the text). Each connected group is shifted so its lowest member
    is layer 0, which is right when the question lists every containment (redundant sentences on). An
    item that contains nothing yet sits above layer 0, with no vocabulary to vouch for it, shows that the
    question omits containments: the third value says so (None otherwise).
    """
    relations: list[_Relation] = []
    for condition in question.conditions:
        upper, lower = condition.key
        relations.append((("item", upper), ("item", lower), 1, f"the sentence {condition.text!r}"))
    for key, entry in solved.items():
        if entry.level is not None:
            reason = f"the answer's equation {entry.step.text!r} (level {entry.level})"
            relations.append((("item", key[0]), ("category", key[1]), entry.level, reason))
    layers, vouched = None, set()
    if known is not None:
        try:
            layers = _layers_from(relations + _vocabulary_relations(structure, known))
            vouched = set(known.item_category)
        except ExtractionError:
            pass  # the text wins over the vocabulary
    items, pinned = layers or _layers_from(relations)
    gaps = [item for item, layer in items.items() if layer > 0 and item not in structure.children.keys() | vouched]
    gap = f"'{gaps[0]}' contains nothing yet sits at layer {items[gaps[0]]}" if gaps else None
    return items, pinned, gap


def _layers_from(relations: list[_Relation]) -> tuple[dict[str, int], dict[str, int]]:
    """Item layers and pinned category layers; categories in a group without items stay unpinned."""
    items: dict[str, int] = {}
    pinned: dict[str, int] = {}
    for group in _potentials(relations):
        if any(kind == "item" for kind, _ in group):
            for (kind, name), layer in group.items():
                (items if kind == "item" else pinned)[name] = layer
    by_layer: dict[int, list[str]] = {}
    for name, layer in pinned.items():
        by_layer.setdefault(layer, []).append(name)
    for layer, names in by_layer.items():
        if len(names) > 1:
            raise ExtractionError(f"categories {sorted(names)} would all name layer {layer}; a layer has one category")
    return items, pinned


def _potentials(relations: list[_Relation]) -> list[dict[_Entity, int]]:
    """Connected groups with integer layers, layer(x) - layer(y) = d for every relation, each starting at 0."""
    edges: dict[_Entity, list[tuple[_Entity, int, str]]] = {}
    for x, y, d, reason in relations:
        edges.setdefault(x, []).append((y, -d, reason))
        edges.setdefault(y, []).append((x, d, reason))
    seen: set[_Entity] = set()
    groups = []
    for start in edges:
        if start in seen:
            continue
        group, order = {start: 0}, [start]
        for current in order:
            for other, d, reason in edges[current]:
                if other not in group:
                    group[other] = group[current] + d
                    order.append(other)
                elif group[other] != group[current] + d:
                    raise ExtractionError(
                        f"structure is not layered: {reason} puts {other[0]} '{other[1]}' "
                        f"{group[current] + d - group[other]:+d} layers away from where the other sentences put it"
                    )
        low = min(group.values())
        groups.append({entity: layer - low for entity, layer in group.items()})
        seen.update(group)
    return groups


def _category_assignments(structure: _Structure, items: dict[str, int], pinned: dict[str, int]) -> list[dict[str, int]]:
    """Every way to give the categories distinct layers below all items that use them (pinned ones fixed)."""
    free = sorted(c for c in structure.category_users if c not in pinned)
    options = []
    for category in free:
        users = sorted(structure.category_users[category])
        top = min(items[user] for user in users)
        choices = [layer for layer in range(top) if layer not in pinned.values()]
        if not choices:
            raise ExtractionError(
                f"category '{category}' fits no layer: it must lie below {users} (lowest at layer {top}) "
                f"and the layers there are taken by {sorted(pinned)}"
            )
        options.append(choices)
    assignments = [
        {**pinned, **dict(zip(free, combo, strict=True))}
        for combo in itertools.product(*options)
        if len(set(combo)) == len(combo)
    ]
    if not assignments:
        raise ExtractionError(f"categories {free} cannot name distinct layers below the items that use them")
    return assignments


def _layer_names(num_layers: int, categories: dict[str, int], known: _KnownSystem | None) -> list[str]:
    """Category name per layer: from the text, else from a known vocabulary's order, else "layer-k"."""
    names = {layer: category for category, layer in categories.items()}
    offset = known.offset(categories) if known is not None else None
    if known is not None and offset is not None:
        for layer in range(num_layers):
            if layer not in names and 0 <= layer - offset < len(known.categories):
                names[layer] = known.categories[layer - offset]
    return [names.get(layer, f"layer-{layer}") for layer in range(num_layers)]


def _ambiguity_message(assignments: list[dict[str, int]]) -> str:
    parts = []
    for category in sorted(assignments[0]):
        options = sorted({a[category] for a in assignments})
        if len(options) > 1:
            parts.append(f"cannot tell which layer category '{category}' names: layers {options} all fit")
    return "; ".join(parts) + " (no equation in the answer pins it)"


# ------------------------------------------------------------------------------------------------ assembly
@dataclass(slots=True)
class _Draft:
    """A node before ids are given: kind, inputs (as keys) and arithmetic form."""

    kind: str
    inputs: list[Key]
    constant: int | None = None
    combine: str = "sum"
    constant_op: str | None = None


@dataclass(slots=True)
class _Layout:
    """Where everything sits: item and category layers, the vocabulary system, and any omitted containment."""

    items: dict[str, int]
    categories: dict[str, int]
    known: _KnownSystem | None
    gap: str | None


class _Assembly:
    """Builds the problem for one assignment of category layers."""

    def __init__(self, question: _Question, structure: _Structure, solved: dict[Key, _Solved], layout: _Layout):
        self.question = question
        self.conditions = {c.key: c for c in question.conditions}
        self.structure = structure
        self.solved = solved
        self.items = layout.items
        self.categories = layout.categories
        self.layout = layout
        self.drafts: dict[Key, _Draft] = {}
        self.ids: dict[Key, int] = {}

    def draft(self, key: Key, context: str) -> _Draft:
        """The node for `key`: from its sentence, the answer's abstract equation, or the structure graph."""
        if key not in self.drafts:
            condition = self.conditions.get(key)
            if condition is not None:
                draft = _Draft(
                    "instance", condition.inputs, condition.constant, condition.combine, condition.constant_op
                )
            elif key in self.solved:
                draft = _Draft("abstract", self.solved[key].inputs, combine=self.solved[key].combine)
            else:
                draft = self._category_total(key, context)
            self.drafts[key] = draft
        return self.drafts[key]

    def _category_total(self, key: Key, context: str) -> _Draft:
        """An abstract node no equation shows, rebuilt from the children the question gives its item."""
        upper, category = key
        if upper not in self.structure.children or category not in self.categories:
            raise ExtractionError(
                f"{context} uses '{_name(key)}', which no sentence defines and which is not a category total"
            )
        if self.layout.gap is not None:
            raise ExtractionError(
                f"'{_name(key)}' must be rebuilt from the containments the question lists, but the question omits "
                f"some ({self.layout.gap}); only an answer that computes it can say what it is"
            )
        level = self.items[upper] - self.categories[category]
        children = self.structure.children[upper]
        if level == 1:
            return _Draft("abstract", [(upper, child) for child in children])
        for child in children:
            if child not in self.structure.children:
                raise ExtractionError(
                    f"'{_name(key)}' needs '{_name((child, category))}', but the question gives '{child}' no parts"
                )
        return _Draft(
            "abstract", [k for child in children for k in ((upper, child), (child, category))], combine="weighted"
        )

    def problem(self, modulus: int | None, system: str) -> Problem:
        """The problem with values computed (not yet checked against the answer)."""
        target = self.question.target
        necessary = self._ancestors(target)
        topo = self._solution_order(necessary)
        redundant = self._redundant(necessary)
        extra = [s.step for key, s in self.solved.items() if key not in necessary and key not in redundant]
        if extra:
            raise ExtractionError(
                f"answer line {extra[0].line_no} computes '{_name(extra[0].key)}', which neither the target "
                "nor any sentence uses"
            )
        total = len(topo) + len(redundant)
        if total > MAX_NODES:
            raise ExtractionError(
                f"the problem has {total} nodes ({len(topo)} necessary, {len(redundant)} redundant); "
                f"at most {MAX_NODES} fit the answer's letters"
            )
        self.ids = {key: i for i, key in enumerate([*topo, *redundant])}
        nodes = [self._node(key, key in necessary) for key in self.ids]
        num_layers = max(self.items.values()) + 1
        problem = Problem(
            nodes=nodes,
            topo=[self.ids[k] for k in topo],
            redundant=[self.ids[k] for k in redundant],
            question_order=[self.ids[c.key] for c in self.question.conditions],
            system=system,
            layer_names=_layer_names(num_layers, self.categories, self.layout.known),
            modulus=modulus,
        )
        problem.compute_values()
        try:
            problem.validate()
        except ProblemError as err:  # a bug here, not in the data: say so plainly
            raise ExtractionError(f"extracted problem is inconsistent: {err}") from err
        return problem

    def _node(self, key: Key, necessary: bool) -> Node:
        draft = self.drafts[key]
        upper, lower = key
        lower_layer = self.items[lower] if draft.kind == "instance" else self.categories[lower]
        return Node(
            id=self.ids[key],
            kind=draft.kind,  # type: ignore[arg-type]
            upper=upper,
            lower=lower,
            upper_layer=self.items[upper],
            lower_layer=lower_layer,
            inputs=[self.ids[k] for k in draft.inputs],
            constant=draft.constant,
            combine=draft.combine,  # type: ignore[arg-type]
            constant_op=draft.constant_op,  # type: ignore[arg-type]
            necessary=necessary,
        )

    def _ancestors(self, target: Key) -> set[Key]:
        seen, stack = {target}, [target]
        while stack:
            key = stack.pop()
            for parent in self.draft(key, f"'{_name(key)}'").inputs:
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return seen

    def _solution_order(self, necessary: set[Key]) -> list[Key]:
        """The answer's order of first chains (necessary nodes only), else sentences' order, inputs first."""
        target = self.question.target
        if self.solved:
            topo = [key for key in self.solved if key in necessary]
            missing = sorted(necessary - set(topo))
            if missing:
                names = ", ".join(f"'{_name(k)}'" for k in missing[:5])
                raise ExtractionError(f"the answer never computes {names}, which the target '{_name(target)}' needs")
            return topo
        order: list[Key] = []
        starts = [c.key for c in self.question.conditions if c.key in necessary and c.key != target]
        self._post_order([*starts, target], order, stop=set())
        return order

    def _redundant(self, necessary: set[Key]) -> list[Key]:
        """Sentences the target does not need, plus the category totals they use; each after its inputs."""
        order: list[Key] = []
        self._post_order([c.key for c in self.question.conditions], order, stop=necessary)
        return order

    def _post_order(self, starts: Iterable[Key], order: list[Key], stop: set[Key]) -> None:
        """Append the not-yet-listed nodes reachable from `starts` (not through `stop`) inputs first."""
        done = set(order) | stop
        for start in starts:
            if start in done:
                continue
            stack: list[tuple[Key, int]] = [(start, 0)]
            active = {start}
            while stack:
                key, position = stack.pop()
                inputs = self.draft(key, f"'{_name(key)}'").inputs
                pending = [k for k in inputs[position:] if k not in done]
                if not pending:
                    active.discard(key)
                    done.add(key)
                    order.append(key)
                    continue
                nxt = pending[0]
                if nxt in active:
                    raise ExtractionError(f"the conditions form a cycle through '{_name(key)}' and '{_name(nxt)}'")
                stack.append((key, inputs.index(nxt, position)))
                stack.append((nxt, 0))
                active.add(nxt)


def _check_printed_values(problem: Problem, assembly: _Assembly, steps: list[_Step], final_answer: int | None) -> None:
    """Every value the answer prints must equal the recomputed one (catches wrong parses and wrong moduli)."""
    for step in steps:
        node = problem.nodes[assembly.ids[step.key]]
        if node.value != step.value:
            raise ExtractionError(
                f"answer line {step.line_no} ({step.text!r}) says '{node.name}' = {step.value}, but the question's "
                f"equations give {node.value} (modulus={problem.modulus})"
            )
    if final_answer is not None and final_answer != problem.answer:
        raise ExtractionError(
            f"the final answer {final_answer} differs from '{problem.target.name}' = {problem.answer} "
            f"computed from the question (modulus={problem.modulus})"
        )
