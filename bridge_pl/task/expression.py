"""Arithmetic expressions of iGSM equations: evaluation, rendering and one-operation-at-a-time reduction.

Every node of a problem computes its value with a small expression over constants and other nodes:
``7 + (F + x)``, ``4 * (R - t)``, ``L * z + K * w``. The same tree renders the variable form (letters),
the value form (numbers) and, for the BRIDGE "subgoal computation" behavior, the chain of partial
results obtained by performing one binary operation at a time::

    7 + (1 + 5 + 10) = 7 + (6 + 10) = 7 + 16 = 23

Negative numbers inside a larger expression are written in parentheses, ``4 * (-5)``, so that every
printed link stays unambiguous for the verifier.

Equation text is read back by one tokenizer and recursive-descent parser (`tokenize_equation`,
`parse_expression`), shared by the CoT verifier and the problem extractor. Model text is never executed,
every scan is linear in the text, and the limits below (nesting, digits, bits) turn pathological input into
an `ExpressionError` instead of a hang or a crash.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "MAX_BITS",
    "MAX_DEPTH",
    "MAX_DIGITS",
    "Chain",
    "Expr",
    "ExpressionError",
    "Num",
    "Product",
    "Ref",
    "evaluate",
    "evaluate_bounded",
    "fold_signs",
    "literals",
    "parse_expression",
    "reduce_once",
    "render",
    "subgoal_chain",
    "substitute",
    "tokenize_equation",
]

MAX_DEPTH = 64  # parenthesis nesting; iGSM formulas need 2-3 levels
MAX_DIGITS = 64  # per number; keeps int() under Python's 4300-digit limit and * fast
MAX_BITS = 256  # per intermediate value without a modulus, so a chain of products cannot grow without bound


@dataclass(frozen=True, slots=True)
class Num:
    """An integer literal."""

    value: int


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference to another node of the problem, by node id."""

    node: int


@dataclass(frozen=True, slots=True)
class Chain:
    """A left-associative chain ``t0 op1 t1 op2 t2 ...`` of additions and subtractions."""

    terms: tuple[Expr, ...]
    ops: tuple[str, ...]  # len(terms) - 1 entries, each "+" or "-"


@dataclass(frozen=True, slots=True)
class Product:
    """A binary multiplication ``left * right``."""

    left: Expr
    right: Expr


Expr = Num | Ref | Chain | Product


def _mod(value: int, modulus: int | None) -> int:
    return value if modulus is None else value % modulus


def evaluate(expr: Expr, values: Mapping[int, int], modulus: int | None = None) -> int:
    """Value of `expr` with node values from `values`; every operation is reduced mod `modulus` if given."""
    kind = type(expr)  # type dispatch: several times faster than `match` on these hot paths
    if kind is Num:
        return expr.value
    if kind is Ref:
        return values[expr.node]
    if kind is Product:
        return _mod(evaluate(expr.left, values, modulus) * evaluate(expr.right, values, modulus), modulus)
    if kind is Chain:
        total = evaluate(expr.terms[0], values, modulus)
        for op, term in zip(expr.ops, expr.terms[1:], strict=True):
            term_value = evaluate(term, values, modulus)
            total = _mod(total + term_value if op == "+" else total - term_value, modulus)
        return total
    raise TypeError(f"not an expression: {expr!r}")


def render(expr: Expr, name: Callable[[int], str], *, nested: bool = False) -> str:
    """Text of `expr`, writing node references with `name(node_id)` (a variable letter, say)."""
    return _render(expr, name, nested)


def _render(expr: Expr, name: Callable[[int], str], nested: bool) -> str:
    kind = type(expr)
    if kind is Num:
        return f"({expr.value})" if nested and expr.value < 0 else str(expr.value)
    if kind is Ref:
        return name(expr.node)
    if kind is Product:
        return f"{_render(expr.left, name, True)} * {_render(expr.right, name, True)}"
    if kind is Chain:
        terms = expr.terms
        parts = [_render(terms[0], name, True)]
        for op, term in zip(expr.ops, terms[1:], strict=True):
            parts.append(op)
            parts.append(_render(term, name, True))
        text = " ".join(parts)
        return f"({text})" if nested else text
    raise TypeError(f"not an expression: {expr!r}")


def substitute(expr: Expr, values: Mapping[int, int]) -> Expr:
    """Copy of `expr` with every node reference replaced by its value."""
    kind = type(expr)
    if kind is Num:
        return expr
    if kind is Ref:
        return Num(values[expr.node])
    if kind is Product:
        return Product(substitute(expr.left, values), substitute(expr.right, values))
    if kind is Chain:
        return Chain(tuple(substitute(term, values) for term in expr.terms), expr.ops)
    raise TypeError(f"not an expression: {expr!r}")


def _apply(left: int, op: str, right: int, modulus: int | None) -> int:
    if op == "+":
        return _mod(left + right, modulus)
    if op == "-":
        return _mod(left - right, modulus)
    return _mod(left * right, modulus)


def _reduce_chain(chain: Chain, modulus: int | None) -> Expr:
    """Perform the leftmost + or - of a chain of numbers."""
    terms = chain.terms
    merged = Num(_apply(terms[0].value, chain.ops[0], terms[1].value, modulus))
    if len(terms) == 2:
        return merged
    return Chain((merged, *terms[2:]), chain.ops[1:])


def _all_numbers(chain: Chain) -> bool:
    for term in chain.terms:
        if type(term) is not Num:
            return False
    return True


def _reduce_bracket(expr: Expr, modulus: int | None, top: bool) -> Expr | None:
    """Reduce the leftmost innermost bracket (a nested chain of numbers), or None when there is none."""
    kind = type(expr)  # type dispatch, as in `evaluate`: `match` was a fifth of a BRIDGE answer's time
    if kind is Chain:
        if not top and _all_numbers(expr):
            # A bracket with two or more operators loses its leftmost pair; otherwise it is evaluated whole.
            return _reduce_chain(expr, modulus)
        terms = expr.terms
        for i, term in enumerate(terms):
            if type(term) is Num:
                continue
            reduced = _reduce_bracket(term, modulus, False)
            if reduced is not None:
                return Chain((*terms[:i], reduced, *terms[i + 1 :]), expr.ops)
    elif kind is Product:
        left, right = expr.left, expr.right
        reduced = None if type(left) is Num else _reduce_bracket(left, modulus, False)
        if reduced is not None:
            return Product(reduced, right)
        reduced = None if type(right) is Num else _reduce_bracket(right, modulus, False)
        if reduced is not None:
            return Product(left, reduced)
    return None


def _reduce_product(expr: Expr, modulus: int | None) -> Expr | None:
    """Perform the leftmost multiplication of two numbers, or None when there is none."""
    kind = type(expr)
    if kind is Product:
        left, right = expr.left, expr.right
        if type(left) is Num and type(right) is Num:
            return Num(_apply(left.value, "*", right.value, modulus))
        reduced = _reduce_product(left, modulus)
        if reduced is not None:
            return Product(reduced, right)
        reduced = _reduce_product(right, modulus)
        return None if reduced is None else Product(left, reduced)
    if kind is Chain:
        terms = expr.terms
        for i, term in enumerate(terms):
            if type(term) is Num:
                continue
            reduced = _reduce_product(term, modulus)
            if reduced is not None:
                return Chain((*terms[:i], reduced, *terms[i + 1 :]), expr.ops)
    return None


def reduce_once(expr: Expr, modulus: int | None = None) -> Expr:
    """Perform one binary operation of a number-only expression, in the BRIDGE subgoal order.

    Order: the innermost bracket first (its leftmost pair when it holds two or more operators), then the
    leftmost multiplication, then the leftmost addition or subtraction.
    """
    if type(expr) is Num:
        return expr
    reduced = _reduce_bracket(expr, modulus, True)
    if reduced is None:
        reduced = _reduce_product(expr, modulus)
    if reduced is not None:
        return reduced
    if type(expr) is Chain and _all_numbers(expr):
        return _reduce_chain(expr, modulus)
    raise ValueError(f"cannot reduce {expr!r}: it still holds node references")


def subgoal_chain(expr: Expr, modulus: int | None = None) -> list[Expr]:
    """Every intermediate expression from the number-only `expr` down to its value, one operation per link.

    >>> [render(e, str) for e in subgoal_chain(Chain((Num(7), Chain((Num(1), Num(5), Num(10)), ("+", "+"))), ("+",)))]
    ['7 + (1 + 5 + 10)', '7 + (6 + 10)', '7 + 16', '23']
    """
    links = [expr]
    while not isinstance(links[-1], Num):
        links.append(reduce_once(links[-1], modulus))
    return links


# ------------------------------------------------------------------------------------------ reading text
class ExpressionError(ValueError):
    """Equation text that cannot be read, or evaluated within the limits; the message says why."""


_TOKEN = re.compile(r"[0-9]+|[A-Za-z]|[-+*()]")
_NOT_TERM = re.compile(r"[^ 0-9A-Za-z+*()-]")
_BEFORE_SIGN = frozenset("+-*(")  # after these (or at the start) a '-' is a sign, not a subtraction


def tokenize_equation(text: str) -> list[str]:
    """Split one term of an equation into numbers, single letters and the operators ``+ - * ( )``.

    Args:
        text: A term such as ``"7 + (F + x)"``; spaces separate tokens and are dropped.

    Returns:
        The tokens, e.g. ``["7", "+", "(", "F", "+", "x", ")"]``. Letters are one token each
        (``"ab"`` is two variables), so a caller's grammar decides what two adjacent letters mean.

    Raises:
        ExpressionError: On any other character ("unexpected '...'" quotes up to 10 characters from it).
    """
    bad = _NOT_TERM.search(text)
    if bad is not None:
        raise ExpressionError(f"unexpected {text[bad.start() : bad.start() + 10]!r}")
    return _TOKEN.findall(text)  # every character left is a space or part of a token, so nothing is skipped


def fold_signs(tokens: Sequence[str]) -> list[str]:
    """Tokens with each signed literal as one token, so that two spellings of the same numbers compare equal.

    ``"(-5)"`` becomes ``"-5"``, and so does ``"- 5"`` where the '-' is a sign (at the start or after
    ``+ - * (``); a '-' after a number, letter or ')' stays a subtraction.

    >>> fold_signs(tokenize_equation("2 - -3")) == fold_signs(tokenize_equation("2 - (-3)")) == ["2", "-", "-3"]
    True
    """
    folded: list[str] = []
    i, n = 0, len(tokens)
    while i < n:
        token = tokens[i]
        if token == "(" and i + 3 < n and tokens[i + 1] == "-" and tokens[i + 2].isdigit() and tokens[i + 3] == ")":
            folded.append(f"-{tokens[i + 2]}")
            i += 4
        elif token == "-" and i + 1 < n and tokens[i + 1].isdigit() and (not folded or folded[-1] in _BEFORE_SIGN):
            folded.append(f"-{tokens[i + 1]}")
            i += 2
        else:
            folded.append(token)
            i += 1
    return folded


def parse_expression(source: str | Sequence[str], ref: Callable[[str], int] | None = None) -> Expr:
    """Read one term of an equation into an expression tree.

    Grammar: chain := product (('+' | '-') product)*; product := factor ('*' factor)*;
    factor := number | '-' number | letter | '(' chain ')'. A chain is left-associative and a product a
    left-nested binary `Product`, so what `render` writes for a problem's equations and subgoal links reads
    back as the same tree; only numbers carry a sign (``"(-5)"``, ``"2 - -3"``).

    Args:
        source: The term's text, or its tokens from `tokenize_equation` (to tokenize once for several uses).
        ref: Node id of a letter; it may raise its own error (an undefined variable, say), which passes
            through unchanged. None for number-only terms, where a letter is an error.

    Returns:
        The tree; redundant parentheses leave no trace (``"((5))"`` is ``Num(5)``).

    Raises:
        ExpressionError: When the term is not in the grammar, nests parentheses deeper than `MAX_DEPTH`
            or prints a number of more than `MAX_DIGITS` digits.

    >>> parse_expression("7 + (F + x)", "Fx".index)
    Chain(terms=(Num(value=7), Chain(terms=(Ref(node=0), Ref(node=1)), ops=('+',))), ops=('+',))
    """
    tokens = tokenize_equation(source) if isinstance(source, str) else source
    if len(tokens) == 1 and tokens[0].isdigit():  # most links are one number: skip the parser
        return _number(tokens[0], 1)
    return _Parser(tokens, ref).parse()


class _Parser:
    """Recursive descent over the tokens of one term; recursion only deepens at '(' and is capped there."""

    __slots__ = ("tokens", "pos", "ref", "depth")

    def __init__(self, tokens: Sequence[str], ref: Callable[[str], int] | None):
        self.tokens = [*tokens, ""]  # "" marks the end, so looking ahead needs no bounds check
        self.pos = 0
        self.ref = ref
        self.depth = 0

    def parse(self) -> Expr:
        expr = self._chain()
        if self.tokens[self.pos]:
            raise ExpressionError(f"unexpected {self.tokens[self.pos]!r}")
        return expr

    def _chain(self) -> Expr:
        first = self._product()
        op = self.tokens[self.pos]
        if op != "+" and op != "-":
            return first
        terms, ops = [first], []
        while op == "+" or op == "-":
            self.pos += 1
            ops.append(op)
            terms.append(self._product())
            op = self.tokens[self.pos]
        return Chain(tuple(terms), tuple(ops))

    def _product(self) -> Expr:
        expr = self._factor()
        while self.tokens[self.pos] == "*":
            self.pos += 1
            expr = Product(expr, self._factor())
        return expr

    def _factor(self) -> Expr:
        token = self.tokens[self.pos]
        self.pos += 1
        if token.isdigit():
            return _number(token, 1)
        if token == "(":
            return self._parenthesized()
        if token == "-":
            return self._negative()
        if token.isalpha() and self.ref is not None:
            return Ref(self.ref(token))
        raise ExpressionError(f"unexpected {token!r}" if token else "it ends too early")

    def _negative(self) -> Num:
        # Only numbers carry a sign: "(-5)", "-5", "2 - -3"; "-x" and "-(1)" are not in the grammar.
        number = self.tokens[self.pos]
        self.pos += 1
        if not number.isdigit():
            raise ExpressionError(f"'-' must precede a number, not {number!r}" if number else "it ends too early")
        return _number(number, -1)

    def _parenthesized(self) -> Expr:
        # Depth is capped so "((((...))))" is an error instead of a RecursionError.
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"parentheses nested deeper than {MAX_DEPTH} levels")
        inner = self._chain()
        close = self.tokens[self.pos]
        self.pos += 1
        if close != ")":
            raise ExpressionError("missing ')'" if close else "it ends too early")
        self.depth -= 1
        return inner


def _number(digits: str, sign: int) -> Num:
    if len(digits) > MAX_DIGITS:
        raise ExpressionError(f"a number has more than {MAX_DIGITS} digits")
    return Num(sign * int(digits))


def evaluate_bounded(expr: Expr, values: Mapping[int, int], modulus: int | None = None) -> int:
    """`evaluate` for trees read from untrusted text: bounded in size and in recursion.

    Without a modulus every intermediate value must fit in `MAX_BITS` bits. Long products are walked in a
    loop: ``"1 * 1 * ... * 1"`` parses into a left-nested `Product` as deep as it has factors, which would
    overflow `evaluate`'s recursion, while brackets (the only other nesting) are capped at `MAX_DEPTH`.

    Raises:
        ExpressionError: "a value exceeds `MAX_BITS` bits", at the first operation that passes the bound.
    """
    kind = type(expr)
    if kind is Num:
        return expr.value
    if kind is Ref:
        return values[expr.node]
    if kind is Product:
        factors = []
        while type(expr) is Product:
            factors.append(expr.right)
            expr = expr.left
        total = evaluate_bounded(expr, values, modulus)
        for factor in reversed(factors):
            total = _bounded(total * evaluate_bounded(factor, values, modulus), modulus)
        return total
    if kind is Chain:
        total = evaluate_bounded(expr.terms[0], values, modulus)
        for op, term in zip(expr.ops, expr.terms[1:], strict=True):
            term_value = evaluate_bounded(term, values, modulus)
            total = _bounded(total + term_value if op == "+" else total - term_value, modulus)
        return total
    raise TypeError(f"not an expression: {expr!r}")


def _bounded(value: int, modulus: int | None) -> int:
    if modulus is not None:
        return value % modulus
    if value.bit_length() > MAX_BITS:
        raise ExpressionError(f"a value exceeds {MAX_BITS} bits")
    return value


def literals(expr: Expr) -> list[int]:
    """Every number printed in `expr` (signed), left to right; long products are walked in a loop.

    >>> literals(parse_expression("4 * (1 - 6) + (-2)"))
    [4, 1, 6, -2]
    """
    found: list[int] = []
    _collect_literals(expr, found)
    return found


def _collect_literals(expr: Expr, found: list[int]) -> None:
    kind = type(expr)
    if kind is Num:
        found.append(expr.value)
    elif kind is Product:
        factors = []
        while type(expr) is Product:
            factors.append(expr.right)
            expr = expr.left
        for factor in (expr, *reversed(factors)):
            _collect_literals(factor, found)
    elif kind is Chain:
        for term in expr.terms:
            _collect_literals(term, found)
