"""Arithmetic expressions of iGSM equations: evaluation, rendering and one-operation-at-a-time reduction.

Every node of a problem computes its value with a small expression over constants and other nodes:
``7 + (F + x)``, ``4 * (R - t)``, ``L * z + K * w``. The same tree renders the variable form (letters),
the value form (numbers) and, for the BRIDGE "subgoal computation" behavior, the chain of partial
results obtained by performing one binary operation at a time::

    7 + (1 + 5 + 10) = 7 + (6 + 10) = 7 + 16 = 23

Negative numbers inside a larger expression are written in parentheses, ``4 * (-5)``, so that every
printed link stays unambiguous for the verifier.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["Num", "Ref", "Chain", "Product", "Expr", "evaluate", "render", "substitute", "reduce_once", "subgoal_chain"]


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
    kind = type(expr)
    if kind is Num:
        return f"({expr.value})" if nested and expr.value < 0 else str(expr.value)
    if kind is Ref:
        return name(expr.node)
    if kind is Product:
        return f"{render(expr.left, name, nested=True)} * {render(expr.right, name, nested=True)}"
    if kind is Chain:
        parts = [render(expr.terms[0], name, nested=True)]
        for op, term in zip(expr.ops, expr.terms[1:], strict=True):
            parts.append(f"{op} {render(term, name, nested=True)}")
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
    first, second = chain.terms[0], chain.terms[1]
    assert isinstance(first, Num) and isinstance(second, Num)
    merged = Num(_apply(first.value, chain.ops[0], second.value, modulus))
    if len(chain.terms) == 2:
        return merged
    return Chain((merged, *chain.terms[2:]), chain.ops[1:])


def _all_numbers(chain: Chain) -> bool:
    return all(isinstance(term, Num) for term in chain.terms)


def _reduce_bracket(expr: Expr, modulus: int | None, top: bool) -> Expr | None:
    """Reduce the leftmost innermost bracket (a nested chain of numbers), or None when there is none."""
    match expr:
        case Chain(terms, ops):
            if not top and _all_numbers(expr):
                # A bracket with two or more operators loses its leftmost pair; otherwise it is evaluated whole.
                return _reduce_chain(expr, modulus)
            for i, term in enumerate(terms):
                reduced = _reduce_bracket(term, modulus, top=False)
                if reduced is not None:
                    return Chain(terms[:i] + (reduced,) + terms[i + 1 :], ops)
        case Product(left, right):
            reduced = _reduce_bracket(left, modulus, top=False)
            if reduced is not None:
                return Product(reduced, right)
            reduced = _reduce_bracket(right, modulus, top=False)
            if reduced is not None:
                return Product(left, reduced)
    return None


def _reduce_product(expr: Expr, modulus: int | None) -> Expr | None:
    """Perform the leftmost multiplication of two numbers, or None when there is none."""
    match expr:
        case Product(Num(a), Num(b)):
            return Num(_apply(a, "*", b, modulus))
        case Product(left, right):
            reduced = _reduce_product(left, modulus)
            if reduced is not None:
                return Product(reduced, right)
            reduced = _reduce_product(right, modulus)
            return None if reduced is None else Product(left, reduced)
        case Chain(terms, ops):
            for i, term in enumerate(terms):
                reduced = _reduce_product(term, modulus)
                if reduced is not None:
                    return Chain(terms[:i] + (reduced,) + terms[i + 1 :], ops)
    return None


def reduce_once(expr: Expr, modulus: int | None = None) -> Expr:
    """Perform one binary operation of a number-only expression, in the BRIDGE subgoal order.

    Order: the innermost bracket first (its leftmost pair when it holds two or more operators), then the
    leftmost multiplication, then the leftmost addition or subtraction.
    """
    if isinstance(expr, Num):
        return expr
    for step in (lambda e: _reduce_bracket(e, modulus, top=True), lambda e: _reduce_product(e, modulus)):
        reduced = step(expr)
        if reduced is not None:
            return reduced
    if isinstance(expr, Chain) and _all_numbers(expr):
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
