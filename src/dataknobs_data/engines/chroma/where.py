"""The filter tree compiled to a Chroma ``where`` over the keys of :mod:`.encode` (pure).

Chroma's ``where`` has no ``NOT``, so negation is pushed down to the leaves (De Morgan), and
every leaf has an exact complement: ``$eq``/``$in``/``$contains`` flip to ``$ne``/``$nin``/
``$not_contains``, which match records *without* the key (measured on chromadb 1.5.9), which
is exactly the package's "negation is complement"; an ordering like ``n:year > 2020`` flips to
``n:year <= 2020 OR the tag list lacks "n:year"``.

What chroma cannot decide exactly is bounded instead of guessed. :func:`plan_where` compiles
every node to a pair ``lower <= node <= upper`` of wheres (as record sets):

* exact leaves (``=``, ``!=``, ``in``, ``not_in``, ``exists``, ``not_exists`` on every kind;
  ``>``, ``>=``, ``<``, ``<=`` on numbers and datetimes) have ``lower == upper``;
* ordering on strings, ``like``, ``not_like``, ``starts_with`` (chroma orders numbers only and
  has no pattern match on metadata), and ``between`` (on a list it needs one element inside
  both bounds, which a min/max key cannot tell) are bounded, e.g. ``title like "a%"`` by
  "has a string at ``title``".

The backend fetches ``upper`` and, only when the plan is not exact, runs the reference
predicate (:func:`dataknobs_data.evaluate.matches`) on those candidates, so every result is
exact and the refusal rule is kept where it matters: :func:`compile_where` is the strict
compiler, raising :class:`UnsupportedOperatorError` for anything chroma alone cannot decide.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from ...errors import UnsupportedOperatorError
from ...fields import ID_FIELD
from ...query import And, Condition, Filter, Not, Operator, Or, value_kind
from .encode import ID_KEY, TAGS, datetime_key, number_key

__all__ = ["EXACT_OPERATORS", "WherePlan", "compile_where", "plan_where"]

Where: TypeAlias = dict[str, Any]

#: operators chroma decides alone for every value kind
EXACT_OPERATORS = frozenset(
    {
        Operator.EQ,
        Operator.NEQ,
        Operator.IN,
        Operator.NOT_IN,
        Operator.EXISTS,
        Operator.NOT_EXISTS,
    }
)
_KIND_LETTER = {"bool": "b", "num": "n", "str": "s", "dt": "d"}
_FLIP = {"$gt": "$lte", "$gte": "$lt", "$lt": "$gte", "$lte": "$gt"}
_NEGATE = {
    "$eq": "$ne",
    "$ne": "$eq",
    "$in": "$nin",
    "$nin": "$in",
    "$contains": "$not_contains",
    "$not_contains": "$contains",
}
_OP = {Operator.GT: "$gt", Operator.GTE: "$gte", Operator.LT: "$lt", Operator.LTE: "$lte"}
#: children per ``$and``/``$or`` level: chroma's SQLite refuses expressions deeper than 1000
_FAN_OUT = 16
TRUE_WHERE: Where = {ID_KEY: {"$ne": ""}}
FALSE_WHERE: Where = {ID_KEY: {"$eq": ""}}


@dataclass(frozen=True, slots=True)
class _Atom:
    """``{key: {op: value}}``; ``tag`` names the key's presence tag (ordering atoms only)."""

    key: str
    op: str
    value: Any
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class _Group:
    op: str  # "$and" | "$or"
    items: tuple[_Node, ...]


_Node: TypeAlias = "_Atom | _Group | bool"


def _combine(op: str, items: Iterable[_Node]) -> _Node:
    """``$and``/``$or`` with constants folded and nested groups of the same kind flattened."""
    absorbing = op == "$or"  # True absorbs an OR, False absorbs an AND
    out: list[_Node] = []
    for item in items:
        if item is absorbing:
            return absorbing
        if item is (not absorbing):
            continue
        if isinstance(item, _Group) and item.op == op:
            out.extend(item.items)
        else:
            out.append(item)
    if not out:
        return not absorbing
    return out[0] if len(out) == 1 else _Group(op, tuple(out))


def _all(*items: _Node) -> _Node:
    return _combine("$and", items)


def _any(*items: _Node) -> _Node:
    return _combine("$or", items)


def _complement(node: _Node) -> _Node:
    """The exact complement (as record sets) of a compiled node."""
    if isinstance(node, bool):
        return not node
    if isinstance(node, _Group):
        return _combine(
            "$or" if node.op == "$and" else "$and", (_complement(i) for i in node.items)
        )
    if node.op in _FLIP:
        assert node.tag is not None
        return _any(_Atom(node.key, _FLIP[node.op], node.value, node.tag), _lacks(node.tag))
    return _Atom(node.key, _NEGATE[node.op], node.value)


def _lacks(tag: str) -> _Node:
    return _Atom(TAGS, "$not_contains", tag)


def _has(tag: str) -> _Node:
    return _Atom(TAGS, "$contains", tag)


# -- leaves ------------------------------------------------------------------------------------
def _number_bound(op: str, value: int | float) -> tuple[str, int] | bool:
    """``stored op value`` as an int-key comparison, exact for every stored float64.

    An int that float64 cannot hold lies strictly between two adjacent floats ``g`` (its
    rounding) and the other neighbour, so ``> value`` is ``>= g`` or ``> g`` depending on the
    side ``g`` fell on; equality with it is impossible.
    """
    rounded = float(value)
    if rounded == value:
        return op, number_key(rounded)
    if op == "$eq":
        return False
    above = rounded > value
    if op in ("$gt", "$gte"):
        return ("$gte" if above else "$gt"), number_key(rounded)
    return ("$lt" if above else "$lte"), number_key(rounded)


def _bound(kind: str, op: str, value: Any) -> tuple[str, int] | bool:
    if kind == "n":
        return _number_bound(op, value)
    return op, datetime_key(value)


def _equals(path: str, values: Sequence[Any]) -> _Node:
    """Any scalar or list element at ``path`` equals one of ``values`` (kinds kept apart)."""
    by_kind: dict[str, list[Any]] = {}
    for value in values:
        kind = _KIND_LETTER[value_kind(value) or "str"]
        if kind in ("n", "d"):
            bound = _bound(kind, "$eq", value)
            if bound is False:
                continue
            assert isinstance(bound, tuple)
            value = bound[1]
        keys = by_kind.setdefault(kind, [])
        if value not in keys:  # one Python type per kind, so == is the kind's equality
            keys.append(value)
    if path == ID_FIELD:
        ids = by_kind.get("s", [])
        if not ids:
            return False
        return _Atom(ID_KEY, "$eq", ids[0]) if len(ids) == 1 else _Atom(ID_KEY, "$in", ids)
    parts: list[_Node] = []
    for kind, keys in by_kind.items():
        scalar = f"{kind}:{path}"
        single = len(keys) == 1
        parts.append(_Atom(scalar, "$eq", keys[0]) if single else _Atom(scalar, "$in", keys))
        parts.extend(_Atom(f"{kind}[]:{path}", "$contains", k) for k in keys)
    return _any(*parts)


def _ordered(path: str, op: str, kind: str, value: Any) -> _Node:
    """Any number/datetime at ``path`` (scalar, or an element via the list's min/max) ``op``."""
    if path == ID_FIELD:
        return False  # the id is a string
    bound = _bound(kind, op, value)
    assert isinstance(bound, tuple)
    real_op, key = bound
    extreme = ">" if real_op in ("$gt", "$gte") else "<"
    scalar = f"{kind}:{path}"
    listed = f"{kind}[]:{path}"
    return _any(
        _Atom(scalar, real_op, key, scalar),
        _Atom(f"{kind}{extreme}:{path}", real_op, key, listed),
    )


def _has_kind(path: str, kind: str) -> _Node:
    if path == ID_FIELD:
        return kind == "s"
    return _any(_has(f"{kind}:{path}"), _has(f"{kind}[]:{path}"))


def _between(path: str, low: Any, high: Any) -> tuple[_Node, _Node]:
    kind = _KIND_LETTER[value_kind(low) or "str"]
    if kind == "s":
        return False, _has_kind(path, "s")
    if path == ID_FIELD:
        return False, False
    lo = _bound(kind, "$gte", low)
    hi = _bound(kind, "$lte", high)
    assert isinstance(lo, tuple)
    assert isinstance(hi, tuple)
    scalar = f"{kind}:{path}"
    listed = f"{kind}[]:{path}"
    inside = _all(_Atom(scalar, *lo, scalar), _Atom(scalar, *hi, scalar))
    all_inside = _all(_Atom(f"{kind}<:{path}", *lo, listed), _Atom(f"{kind}>:{path}", *hi, listed))
    overlaps = _all(_Atom(f"{kind}>:{path}", *lo, listed), _Atom(f"{kind}<:{path}", *hi, listed))
    return _any(inside, all_inside), _any(inside, overlaps)


def _positive(cond: Condition) -> tuple[_Node, _Node]:
    """``(lower, upper)`` of a condition's positive operator."""
    op, path, value = cond.op.positive, cond.field, cond.value
    if op is Operator.EXISTS:
        exists: _Node = True if path == ID_FIELD else _has("e:" + path)
        return exists, exists
    if op is Operator.EQ:
        node = _equals(path, [value])
        return node, node
    if op is Operator.IN:
        assert isinstance(value, tuple)
        node = _equals(path, value)
        return node, node
    if op in _OP:
        kind = _KIND_LETTER[value_kind(value) or "str"]
        if kind == "s":
            return False, _has_kind(path, "s")
        node = _ordered(path, _OP[op], kind, value)
        return node, node
    if op is Operator.BETWEEN:
        assert isinstance(value, tuple)
        return _between(path, *value)
    # LIKE, STARTS_WITH: only strings can match
    return False, _has_kind(path, "s")


def _bounds(node: Filter) -> tuple[_Node, _Node, bool]:
    """``(lower, upper, exact)`` of a filter node."""
    if isinstance(node, Condition):
        lower, upper = _positive(node)
        exact = lower == upper
        if node.op.negated:
            return _complement(upper), _complement(lower), exact
        return lower, upper, exact
    if isinstance(node, Not):
        lower, upper, exact = _bounds(node.child)
        return _complement(upper), _complement(lower), exact
    parts = [_bounds(child) for child in node.children]
    op = "$and" if isinstance(node, And) else "$or"
    assert isinstance(node, And | Or)
    return (
        _combine(op, (p[0] for p in parts)),
        _combine(op, (p[1] for p in parts)),
        all(p[2] for p in parts),
    )


# -- output ------------------------------------------------------------------------------------
def _render(node: _Node) -> Where:
    if node is True:
        return TRUE_WHERE
    if node is False:
        return FALSE_WHERE
    if isinstance(node, _Atom):
        return {node.key: {node.op: node.value}}
    assert isinstance(node, _Group)
    items = [_render(i) for i in node.items]
    while len(items) > _FAN_OUT:  # balanced nesting keeps SQLite's expression depth small
        items = [
            items[i] if len(items[i : i + _FAN_OUT]) == 1 else {node.op: items[i : i + _FAN_OUT]}
            for i in range(0, len(items), _FAN_OUT)
        ]
    return {node.op: items}


@dataclass(frozen=True, slots=True)
class WherePlan:
    """How to run a filter on chroma.

    ``where`` selects a superset of the matching records (``None``: every record); when
    ``exact`` is false the caller must still apply the filter to those candidates. ``empty``
    says nothing can match, so no call is needed.
    """

    where: Where | None
    exact: bool
    empty: bool = False


def plan_where(node: Filter | None) -> WherePlan:
    """The ``where`` (upper bound) of a filter and whether it is exact."""
    if node is None:
        return WherePlan(None, True)
    _lower, upper, exact = _bounds(node)
    if upper is False:
        return WherePlan(FALSE_WHERE, True, empty=True)
    return WherePlan(None if upper is True else _render(upper), exact)


def compile_where(node: Filter | None) -> Where | None:
    """The exact chroma ``where`` of a filter (``None``: no filter), or
    :class:`UnsupportedOperatorError` when chroma alone cannot decide it exactly."""
    if node is None:
        return None
    _lower, upper, exact = _bounds(node)
    if not exact:
        raise UnsupportedOperatorError(
            f"chroma cannot evaluate this filter exactly on its own ({_inexact(node)}); "
            f"exact everywhere: {sorted(o.value for o in EXACT_OPERATORS)}, and <, <=, >, >= "
            "on numbers and datetimes"
        )
    return None if upper is True else _render(upper)


def _inexact(node: Filter) -> str:
    if isinstance(node, Condition):
        lower, upper = _positive(node)
        return "" if lower == upper else f"{node.op.value!r} on {node.field!r}"
    children = [node.child] if isinstance(node, Not) else list(node.children)
    return next((s for s in map(_inexact, children) if s), "")
