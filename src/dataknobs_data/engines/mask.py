"""Compile a filter tree into a boolean numpy mask over rows held as columns (:mod:`.columns`).

Common leaves (numbers, string equality and membership, booleans, existence) become vectorised
comparisons on typed column views; everything else, and any column holding lists, falls back to
the reference predicate of :mod:`dataknobs_data.evaluate` applied per value. Both paths implement
the same semantics, which the differential tests check.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from ..evaluate import value_matcher
from ..query import And, Condition, Filter, Not, Operator, Or, value_kind
from ..rewrite import merge_memberships
from .columns import ValueColumn

__all__ = ["compile_mask"]

Mask = npt.NDArray[np.bool_]
_EXACT_FLOAT_INT = 2**53

_NUMERIC_OPS: dict[Operator, Callable[[npt.NDArray[np.float64], float], Mask]] = {
    Operator.EQ: lambda a, v: a == v,
    Operator.GT: lambda a, v: a > v,
    Operator.GTE: lambda a, v: a >= v,
    Operator.LT: lambda a, v: a < v,
    Operator.LTE: lambda a, v: a <= v,
}


def _exact_number(value: object) -> bool:
    return value_kind(value) == "num" and (
        not isinstance(value, int) or abs(value) <= _EXACT_FLOAT_INT
    )


def _fast_leaf(op: Operator, value: object, col: ValueColumn) -> Mask | None:
    """A vectorised mask for a positive operator, or ``None`` when only the fallback is exact."""
    if op is Operator.EXISTS:
        return col.exists().copy()  # callers combine masks in place; the cache must survive
    if op in _NUMERIC_OPS and _exact_number(value):
        numbers, exact = col.numbers()
        if exact:
            with np.errstate(invalid="ignore"):
                return _NUMERIC_OPS[op](numbers, float(value))  # type: ignore[arg-type]
        return None
    if op is Operator.BETWEEN and isinstance(value, tuple) and all(map(_exact_number, value)):
        numbers, exact = col.numbers()
        if exact:
            with np.errstate(invalid="ignore"):
                return (numbers >= value[0]) & (numbers <= value[1])
        return None
    if op is Operator.EQ and isinstance(value, str):
        codes, lookup = col.codes()
        return codes == lookup.get(value, -2)
    if op is Operator.EQ and isinstance(value, bool):
        return col.bools() == int(value)
    if op is Operator.IN and isinstance(value, tuple):
        if all(isinstance(v, str) for v in value):
            codes, lookup = col.codes()
            wanted = [lookup[v] for v in value if v in lookup]
            return np.isin(codes, wanted)
        if all(map(_exact_number, value)):
            numbers, exact = col.numbers()
            if exact:
                return np.isin(numbers, np.asarray(value, dtype=np.float64))
    return None


def _leaf(cond: Condition, column: Callable[[str], ValueColumn], n: int) -> Mask:
    col = column(cond.field)
    positive = cond.op.positive
    mask = None if col.has_lists else _fast_leaf(positive, cond.value, col)
    if mask is None:
        predicate = value_matcher(Condition(cond.field, positive, cond.value))
        mask = np.fromiter(map(predicate, col.values), dtype=bool, count=n)
    return ~mask if cond.op.negated else mask


def compile_mask(node: Filter, column: Callable[[str], ValueColumn], n: int) -> Mask:
    """Rows ``[0, n)`` that satisfy ``node``; ``column(path)`` supplies cached columns.

    Long ``OR`` of ``=`` on one field become one ``in`` first
    (:func:`~dataknobs_data.rewrite.merge_memberships`): one ``np.isin`` instead of one mask
    per value."""
    return _mask(merge_memberships(node), column, n)


def _mask(node: Filter, column: Callable[[str], ValueColumn], n: int) -> Mask:
    if isinstance(node, Condition):
        return _leaf(node, column, n)
    if isinstance(node, And):
        out = _mask(node.children[0], column, n)
        for child in node.children[1:]:
            out &= _mask(child, column, n)
        return out
    if isinstance(node, Or):
        out = _mask(node.children[0], column, n)
        for child in node.children[1:]:
            out |= _mask(child, column, n)
        return out
    if isinstance(node, Not):
        return ~_mask(node.child, column, n)
    raise AssertionError(f"unknown filter node {node!r}")  # pragma: no cover
