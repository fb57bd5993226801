"""Reference evaluation of the filter tree and sort keys over in-memory records.

This is the executable form of the semantics written in :mod:`dataknobs_data.query`; the memory
backend uses it (directly, or as the fallback of its vectorised mask compiler), and every other
backend is tested against the memory backend.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from .query import And, Condition, Filter, Not, Operator, Or, SortSpec, value_kind
from .records import MISSING, Record
from .rewrite import merge_memberships

__all__ = [
    "like_regex",
    "matches",
    "order_indices",
    "order_records",
    "present",
    "record_predicate",
    "sort_rank",
    "value_matcher",
]

ValueMatcher = Callable[[Any], bool]


@lru_cache(maxsize=256)
def like_regex(pattern: str) -> re.Pattern[str]:
    """Translate a LIKE pattern (``%``, ``_``, ``\\`` escape) into an anchored regex."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.compile("".join(out), re.DOTALL)


def _scalar_predicate(op: Operator, value: Any) -> ValueMatcher:
    """Predicate on one non-list stored value, for a *positive* operator."""
    if op is Operator.EQ:
        kind = value_kind(value)
        return lambda v: value_kind(v) == kind and v == value
    if op in (Operator.GT, Operator.GTE, Operator.LT, Operator.LTE):
        kind = value_kind(value)
        cmp: Callable[[Any, Any], bool] = {
            Operator.GT: lambda a, b: a > b,
            Operator.GTE: lambda a, b: a >= b,
            Operator.LT: lambda a, b: a < b,
            Operator.LTE: lambda a, b: a <= b,
        }[op]
        return lambda v: value_kind(v) == kind and cmp(v, value)
    if op is Operator.IN:
        by_kind: dict[str | None, set[Any]] = {}
        for item in value:
            by_kind.setdefault(value_kind(item), set()).add(item)
        return lambda v: v in by_kind.get(value_kind(v), ())
    if op is Operator.BETWEEN:
        low, high = value
        kind = value_kind(low)
        return lambda v: value_kind(v) == kind and low <= v <= high
    if op is Operator.LIKE:
        rx = like_regex(value)
        return lambda v: isinstance(v, str) and rx.fullmatch(v) is not None
    if op is Operator.STARTS_WITH:
        return lambda v: isinstance(v, str) and v.startswith(value)
    raise AssertionError(f"not a positive scalar operator: {op}")  # pragma: no cover


def present(v: Any) -> bool:
    """Whether a value found at a path satisfies ``exists``: set, not null, and not a list of
    nulls only (shared with the columnar masks and the memory backend's mark index)."""
    if v is MISSING or v is None:
        return False
    if isinstance(v, list):
        return any(e is not None for e in v)
    return True


def value_matcher(cond: Condition) -> ValueMatcher:
    """A predicate on the raw value found at ``cond.field`` (possibly :data:`MISSING`)."""
    positive = cond.op.positive
    if positive is Operator.EXISTS:
        base = present
    else:
        scalar = _scalar_predicate(positive, cond.value)

        def base(v: Any) -> bool:
            if isinstance(v, list):
                return any(not isinstance(e, list | dict) and scalar(e) for e in v)
            return scalar(v)

    if cond.op.negated:
        return lambda v: not base(v)
    return base


RecordPredicate = Callable[[Record], bool]


def record_predicate(node: Filter | None) -> RecordPredicate:
    """``node`` compiled once into a predicate on records.

    Each leaf's :func:`value_matcher` is built here, once (an ``in`` builds its sets once),
    so testing many records costs one set lookup per record and leaf, not a pass over the list.
    Long ``OR`` of ``=`` on one field are first merged into one ``in``
    (:func:`~dataknobs_data.rewrite.merge_memberships`).
    """
    if node is None:
        return lambda record: True
    return _compiled(merge_memberships(node))


def _compiled(node: Filter) -> RecordPredicate:
    if isinstance(node, Condition):
        matcher, path = value_matcher(node), node.field
        return lambda record: matcher(record.get_path(path))
    if isinstance(node, Not):
        child = _compiled(node.child)
        return lambda record: not child(record)
    if isinstance(node, And | Or):
        children = [_compiled(c) for c in node.children]
        if isinstance(node, And):
            return lambda record: all(c(record) for c in children)
        return lambda record: any(c(record) for c in children)
    raise AssertionError(f"unknown filter node {node!r}")  # pragma: no cover


def matches(node: Filter | None, record: Record) -> bool:
    """Whether ``record`` satisfies the filter (``None`` matches everything). To test many
    records, compile the filter once with :func:`record_predicate`."""
    return record_predicate(node)(record)


_KIND_RANK = {"bool": 0, "num": 1, "str": 2, "dt": 3}


def sort_rank(value: Any) -> tuple[int, Any] | None:
    """The ascending sort position of a stored value, or ``None`` when it sorts as null."""
    kind = value_kind(value)
    if kind is None:
        return None
    return (_KIND_RANK[kind], value)


def _key_ranks(values: Sequence[Any], spec: SortSpec) -> npt.NDArray[np.int64]:
    """Dense integer ranks for one sort key, nulls placed and direction applied."""
    ranked = [sort_rank(v) for v in values]
    distinct = sorted({r for r in ranked if r is not None})
    position = {r: i for i, r in enumerate(distinct)}
    null_rank = len(distinct) + 1 if spec.nulls == "last" else -1
    out = np.empty(len(values), dtype=np.int64)
    for i, r in enumerate(ranked):
        if r is None:
            out[i] = null_rank
        else:
            p = position[r]
            out[i] = (len(distinct) - 1 - p) if spec.descending else p
    return out


def order_indices(
    ids: Sequence[str], keys: Sequence[tuple[SortSpec, Sequence[Any]]]
) -> npt.NDArray[np.intp]:
    """Positions in query order: each sort key's values in turn, then id as the tie-breaker.

    ``keys`` pairs every :class:`SortSpec` with the values at its path, aligned with ``ids``.
    """
    n = len(ids)
    if n == 0:
        return np.empty(0, dtype=np.intp)
    id_order = np.asarray(sorted(range(n), key=ids.__getitem__), dtype=np.intp)
    if not keys:
        return id_order
    id_rank = np.empty(n, dtype=np.int64)
    id_rank[id_order] = np.arange(n)
    columns = [id_rank] + [_key_ranks(values, spec) for spec, values in reversed(keys)]
    return np.lexsort(columns).astype(np.intp)


def order_records(records: Sequence[Record], sort_by: Sequence[SortSpec]) -> list[Record]:
    """``records`` in query order (the reference the backends are tested against)."""
    keys = [(spec, [r.get_path(spec.field) for r in records]) for spec in sort_by]
    return [records[i] for i in order_indices([r.id for r in records], keys)]
