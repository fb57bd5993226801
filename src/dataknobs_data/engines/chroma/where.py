"""The filter tree compiled to a Chroma ``where`` over the keys of :mod:`.encode` (pure).

Chroma's ``where`` has no ``NOT``, so negation is pushed down to the leaves (De Morgan), and
every leaf has an exact complement: ``$eq``/``$in``/``$contains`` flip to ``$ne``/``$nin``/
``$not_contains``, which match records *without* the key (measured on chromadb 1.5.9), which
is exactly the package's "negation is complement"; an ordering like ``n:year > 2020`` flips to
``n:year <= 2020 OR the tag list lacks "n:year"``.

What chroma cannot decide exactly is bounded instead of guessed. :func:`plan_where` compiles
every node to a pair ``lower <= node <= upper`` of wheres (as record sets):

* exact leaves (``=``, ``!=``, ``in``, ``not_in``, ``exists``, ``not_exists`` on every kind;
  ``>``, ``>=``, ``<``, ``<=`` on numbers and datetimes) have ``lower == upper``, except an
  ``in`` / ``not_in`` past :data:`MAX_IN` values of a kind (chroma's statement has at most
  32,766 variables) or past :data:`MAX_CONTAINS` (list elements: one ``$contains`` each),
  bounded by the key's presence tags;
* a long ``OR`` of ``=`` on one field is merged into one ``in`` first
  (:func:`~dataknobs_data.rewrite.merge_memberships`), and a ``where`` still too big for chroma
  (:data:`MAX_ATOMS`, :data:`VARIABLE_BUDGET`) is not sent: Python decides over every record;
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

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from ...errors import FilterTooLargeError, UnsupportedOperatorError
from ...fields import ID_FIELD
from ...query import And, Condition, Filter, Not, Operator, Or, value_kind
from ...rewrite import largest_condition, merge_memberships
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
#: Chroma runs a ``where`` as one SQLite statement whose bound variables may not exceed
#: 32,766; measured on chromadb 1.5.9: ``$in`` binds each value twice (16,380 values pass,
#: 16,381 fail with a raw ``InternalError``), so :data:`MAX_IN` values per kind keep one list
#: well inside, and a whole ``where`` is held to :data:`VARIABLE_BUDGET` (estimated by
#: :func:`_variables`).
MAX_IN = 8_000
VARIABLE_BUDGET = 30_000
#: Matching list elements takes one ``$contains`` per value, and chroma's time grows faster
#: than linearly with the number of ``$or`` branches (measured: 500 branches 0.1 s, 2,000
#: branches 0.8-3.8 s over 2,000 records); past this many values the list part is bounded by
#: the "holds a list of that kind" tag and finished in Python.
MAX_CONTAINS = 32
#: A ``where`` with more atoms than this is not sent: every record is a candidate and Python
#: decides (linear in the collection, where chroma's time for such a tree is not).
MAX_ATOMS = 512


@dataclass(frozen=True, slots=True)
class _Caps:
    """Where a plan stops asking chroma for exactness: values per kind in one ``$in``,
    ``$contains`` atoms per condition, atoms per ``where``."""

    max_in: float
    max_contains: float
    max_atoms: float


#: :func:`plan_where`: fast plans, Python finishing what is bounded
_PLAN = _Caps(MAX_IN, MAX_CONTAINS, MAX_ATOMS)
#: :func:`compile_where`: exact whenever chroma can take it at all (only the variable budget)
_STRICT = _Caps(math.inf, math.inf, math.inf)
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


def _equals(path: str, values: Sequence[Any], caps: _Caps) -> tuple[_Node, _Node]:
    """``(lower, upper)`` of "any scalar or list element at ``path`` equals one of ``values``"
    (kinds kept apart): exact while the lists are small, bounded past :data:`MAX_IN` values
    per kind (``$in`` on the scalar key) or :data:`MAX_CONTAINS` (one ``$contains`` per value
    for list elements), whose candidates the caller then checks in Python."""
    by_kind: dict[str, dict[Any, None]] = {}
    for value in values:
        kind = _KIND_LETTER[value_kind(value) or "str"]
        if kind in ("n", "d"):
            bound = _bound(kind, "$eq", value)
            if bound is False:
                continue
            assert isinstance(bound, tuple)
            value = bound[1]
        # one Python type per kind, so a dict key is the kind's equality (linear, not a scan)
        by_kind.setdefault(kind, {})[value] = None
    if path == ID_FIELD:
        ids = list(by_kind.get("s", ()))
        if not ids:
            return False, False
        if len(ids) > caps.max_in:
            return False, True  # every record has an id
        node = _Atom(ID_KEY, "$eq", ids[0]) if len(ids) == 1 else _Atom(ID_KEY, "$in", ids)
        return node, node
    lower: list[_Node] = []
    upper: list[_Node] = []
    for kind, found in by_kind.items():
        keys = list(found)
        scalar, listed = f"{kind}:{path}", f"{kind}[]:{path}"
        if len(keys) > caps.max_in:
            upper.append(_has(scalar))
        else:
            atom = _Atom(scalar, "$eq", keys[0]) if len(keys) == 1 else _Atom(scalar, "$in", keys)
            lower.append(atom)
            upper.append(atom)
        if len(keys) > caps.max_contains:
            upper.append(_has(listed))
        else:
            contains = [_Atom(listed, "$contains", k) for k in keys]
            lower.extend(contains)
            upper.extend(contains)
    return _any(*lower), _any(*upper)


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


def _positive(cond: Condition, caps: _Caps = _PLAN) -> tuple[_Node, _Node]:
    """``(lower, upper)`` of a condition's positive operator."""
    op, path, value = cond.op.positive, cond.field, cond.value
    if op is Operator.EXISTS:
        exists: _Node = True if path == ID_FIELD else _has("e:" + path)
        return exists, exists
    if op is Operator.EQ:
        return _equals(path, [value], caps)
    if op is Operator.IN:
        assert isinstance(value, tuple)
        return _equals(path, value, caps)
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


def _bounds(node: Filter, caps: _Caps) -> tuple[_Node, _Node, bool]:
    """``(lower, upper, exact)`` of a filter node."""
    if isinstance(node, Condition):
        lower, upper = _positive(node, caps)
        exact = lower == upper
        if node.op.negated:
            return _complement(upper), _complement(lower), exact
        return lower, upper, exact
    if isinstance(node, Not):
        lower, upper, exact = _bounds(node.child, caps)
        return _complement(upper), _complement(lower), exact
    parts = [_bounds(child, caps) for child in node.children]
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


def _size(node: _Node) -> tuple[int, int]:
    """``(atoms, variables)`` of a compiled node: the estimate of what chroma's statement
    binds (two variables per atom and per listed value, measured for ``$in``)."""
    if isinstance(node, bool):
        return 0, 0
    if isinstance(node, _Atom):
        listed = len(node.value) if isinstance(node.value, list) else 0
        return 1, 2 + 2 * listed
    atoms = variables = 0
    for item in node.items:
        a, v = _size(item)
        atoms, variables = atoms + a, variables + v
    return atoms, variables


def _fits(node: _Node, caps: _Caps) -> bool:
    atoms, variables = _size(node)
    return atoms <= caps.max_atoms and variables <= VARIABLE_BUDGET


def plan_where(node: Filter | None) -> WherePlan:
    """The ``where`` (upper bound) of a filter and whether it is exact.

    A ``where`` chroma cannot take or would take too long on (past :data:`MAX_ATOMS` atoms or
    :data:`VARIABLE_BUDGET` variables) is not sent: the plan selects every record, inexact,
    and the caller decides in Python (linear in the collection)."""
    if node is None:
        return WherePlan(None, True)
    _lower, upper, exact = _bounds(merge_memberships(node), _PLAN)
    if upper is False:
        return WherePlan(FALSE_WHERE, True, empty=True)
    if upper is True:
        return WherePlan(None, exact)
    if not _fits(upper, _PLAN):
        return WherePlan(None, False)
    return WherePlan(_render(upper), exact)


def compile_where(node: Filter | None) -> Where | None:
    """The exact chroma ``where`` of a filter (``None``: no filter), or
    :class:`UnsupportedOperatorError` when chroma alone cannot decide it exactly."""
    if node is None:
        return None
    node = merge_memberships(node)
    _lower, upper, exact = _bounds(node, _STRICT)
    if exact and not _fits(upper, _STRICT):
        _atoms, variables = _size(upper)
        raise FilterTooLargeError(
            f"chroma cannot take this filter in one where ({largest_condition(node)}): "
            f"~{variables} bound variables, past the {VARIABLE_BUDGET} its statement may hold"
        )
    if not exact:
        raise UnsupportedOperatorError(
            f"chroma cannot evaluate this filter exactly on its own ({_inexact(node)}); "
            f"exact everywhere: {sorted(o.value for o in EXACT_OPERATORS)}, and <, <=, >, >= "
            "on numbers and datetimes"
        )
    return None if upper is True else _render(upper)


def _inexact(node: Filter) -> str:
    if isinstance(node, Condition):
        lower, upper = _positive(node, _STRICT)
        return "" if lower == upper else f"{node.op.value!r} on {node.field!r}"
    children = [node.child] if isinstance(node, Not) else list(node.children)
    return next((s for s in map(_inexact, children) if s), "")
