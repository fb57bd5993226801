"""Compile the filter tree and sort keys into PostgreSQL over ``jsonb`` columns (pure, no I/O).

The row layout is the SQLite backend's (see :mod:`..rowcodec`, whose encoder both share):
``doc`` (top-level field -> JSON value, datetimes as fixed-width UTC ISO text), ``types``
(here only the top-level fields holding a datetime -> ``"datetime"``, see
:func:`.bulk.datetime_types`) and ``id``. The structure
is the SQLite compiler's too - positive predicates that are never NULL, negation as plain
``NOT``, any-element matching over arrays, a (null flag, kind rank, value) sort - so the two
can be read side by side. What PostgreSQL needs differently is why this is its own module:

* ``jsonb`` values are typed (``jsonb_typeof``: ``number``/``string``/``boolean``...), so each
  kind is compared through its own SQL type: ``::numeric`` for numbers (exact; float filter
  values travel as ``Decimal(repr(x))``, the same text the JSON encoder wrote), ``text COLLATE
  "C"`` for strings and datetimes (code-point order, whatever the database collation), and
  ``jsonb`` equality for booleans;
* PostgreSQL does not promise left-to-right ``AND``, so every cast sits in a ``CASE WHEN`` on
  the kind test (a cast of the wrong kind would raise, not be false);
* paths travel as a ``text[]`` parameter for ``#>``; ``#>`` would index into an array with a
  numeric segment, which the query semantics call *missing*, so such segments get an
  "is an object" guard;
* ``LIKE ... ESCAPE '\\'`` is exactly our pattern language (case-sensitive in PostgreSQL);
  ``starts_with()`` is a literal prefix test.

Placeholders are psycopg's ``%(name)s``; values only ever travel as parameters, and no
identifier is rendered here (the backend composes the table name with ``psycopg.sql``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from ...fields import ID_FIELD
from ...query import Condition, Filter, Operator, SortSpec, value_kind
from ..rowcodec import iso_datetime
from ..sqltree import COMPARISONS, Compiled, id_predicate, render_tree

__all__ = ["Compiled", "compile_filter", "compile_order", "sql_value"]

_INDEX_LIKE = re.compile(r"-?[0-9]+")
#: the SQL type each kind is compared in (booleans compare as jsonb)
_CAST = {"num": "::numeric", "str": ' COLLATE "C"', "dt": ' COLLATE "C"'}


def sql_value(value: Any) -> Any:
    """A filter value as the parameter its kind's comparison expects."""
    if isinstance(value, datetime):
        return iso_datetime(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    return value


class _Builder:
    """Collects named parameters while SQL fragments are rendered."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.params: dict[str, Any] = {}

    def bind(self, value: Any, cast: str = "") -> str:
        name = f"{self.prefix}{len(self.params)}"
        self.params[name] = value
        return f"(%({name})s{cast})" if cast else f"%({name})s"


class _Slot:
    """The JSON value at one path of a row: ``jsonb`` expression and its datetime flag."""

    def __init__(self, b: _Builder, path: str) -> None:
        parts = path.split(".")
        guards = [
            f"jsonb_typeof(doc #> {b.bind(parts[:i], '::text[]')}) = 'object'"
            for i in range(1, len(parts))
            if _INDEX_LIKE.fullmatch(parts[i])
        ]
        value = f"(doc #> {b.bind(parts, '::text[]')})"
        self.json = f"(CASE WHEN {' AND '.join(guards)} THEN {value} END)" if guards else value
        if len(parts) == 1:
            self.is_dt = f"(types ->> {b.bind(parts[0])} IS NOT DISTINCT FROM 'datetime')"
        else:
            self.is_dt = "false"


def _kind_test(kind: str | None, x: str, slot: _Slot) -> str:
    """SQL true when the ``jsonb`` value ``x`` is of ``kind`` (never NULL for a non-NULL x)."""
    t = f"jsonb_typeof({x})"
    if kind == "num":
        return f"{t} = 'number'"
    if kind == "bool":
        return f"{t} = 'boolean'"
    if kind == "str":
        return f"({t} = 'string' AND NOT {slot.is_dt})"
    if kind == "dt":
        return f"({t} = 'string' AND {slot.is_dt})"
    return "false"


def _typed(kind: str | None, x: str) -> str:
    """``x`` (a ``jsonb`` scalar of ``kind``) as the SQL value its kind compares in."""
    if kind == "num":
        return f"({x})::numeric"
    return f"((({x}) #>> '{{}}') COLLATE \"C\")"


def _when(test: str, pred: str) -> str:
    """``pred`` evaluated only where ``test`` holds; false elsewhere (never NULL)."""
    return f"COALESCE(CASE WHEN {test} THEN {pred} END, false)"


def _scalar_pred(b: _Builder, op: Operator, value: Any, x: str, slot: _Slot) -> str:
    """Predicate on one ``jsonb`` scalar expression ``x``."""
    if op is Operator.EQ and isinstance(value, bool):
        return f"COALESCE({x} = '{'true' if value else 'false'}'::jsonb, false)"
    if op in COMPARISONS:
        kind = value_kind(value)
        rhs = b.bind(sql_value(value), _CAST.get(kind or "", ""))
        return _when(_kind_test(kind, x, slot), f"{_typed(kind, x)} {COMPARISONS[op]} {rhs}")
    if op is Operator.IN:
        groups: dict[str | None, list[Any]] = {}
        for item in value:
            groups.setdefault(value_kind(item), []).append(item)
        terms = []
        for kind, items in groups.items():
            if kind == "bool":
                names = sorted({"'true'::jsonb" if v else "'false'::jsonb" for v in items})
                terms.append(f"COALESCE({x} IN ({','.join(names)}), false)")
            else:
                binds = ",".join(b.bind(sql_value(v), _CAST[kind or "str"]) for v in items)
                terms.append(_when(_kind_test(kind, x, slot), f"{_typed(kind, x)} IN ({binds})"))
        return f"({' OR '.join(terms)})" if terms else "false"
    if op is Operator.BETWEEN:
        kind = value_kind(value[0])
        cast = _CAST.get(kind or "", "")
        lo, hi = b.bind(sql_value(value[0]), cast), b.bind(sql_value(value[1]), cast)
        return _when(_kind_test(kind, x, slot), f"{_typed(kind, x)} BETWEEN {lo} AND {hi}")
    if op in (Operator.LIKE, Operator.STARTS_WITH):
        return _when(_kind_test("str", x, slot), _pattern(b, op, value, _typed("str", x)))
    raise AssertionError(f"not a positive scalar operator: {op}")  # pragma: no cover


def _pattern(b: _Builder, op: Operator, value: str, text: str) -> str:
    if op is Operator.LIKE:
        return f"{text} LIKE {b.bind(value)} ESCAPE '\\'"
    return f"starts_with({text}, {b.bind(value)})"


def _id_pred(b: _Builder, op: Operator, value: Any) -> str:
    """The record id is a plain ``text COLLATE "C"`` column: no JSON, never missing."""
    return id_predicate(
        op,
        value,
        bind=b.bind,
        pattern=lambda o, v: _pattern(b, o, v, "id"),
        true="true",
        false="false",
    )


def _positive(b: _Builder, cond: Condition) -> str:
    op = cond.op.positive
    if cond.field == ID_FIELD:
        return _id_pred(b, op, cond.value)
    slot = _Slot(b, cond.field)
    j = slot.json
    if op is Operator.EXISTS:
        elems = f"jsonb_array_elements({j}) AS e(v)"
        return (
            f"COALESCE(CASE jsonb_typeof({j}) WHEN 'array' THEN EXISTS (SELECT 1 FROM {elems} "
            f"WHERE jsonb_typeof(e.v) <> 'null') WHEN 'null' THEN false ELSE {j} IS NOT NULL "
            "END, false)"
        )
    elem = _scalar_pred(b, op, cond.value, "e.v", slot)
    whole = _scalar_pred(b, op, cond.value, j, slot)
    return (
        f"(CASE WHEN jsonb_typeof({j}) = 'array' THEN EXISTS (SELECT 1 FROM "
        f"jsonb_array_elements({j}) AS e(v) WHERE {elem}) ELSE {whole} END)"
    )


def _node(b: _Builder, node: Filter) -> str:
    return render_tree(node, lambda cond: _positive(b, cond))


def compile_filter(node: Filter | None, prefix: str = "f") -> Compiled:
    """A boolean SQL expression (never NULL) over ``doc``/``types``/``id`` and its params.

    >>> from dataknobs_data.query import F
    >>> compile_filter(F("_id") == "r1").sql
    '(id = %(f0)s)'
    """
    if node is None:
        return Compiled("true", {})
    b = _Builder(prefix)
    return Compiled(_node(b, node), b.params)


def compile_order(sort_by: Sequence[SortSpec]) -> Compiled:
    """``ORDER BY`` terms: per key (null flag, kind rank, value per kind), then ``id``.

    Kind ranks follow the query docstring: booleans < numbers < strings < datetimes; lists,
    objects, vectors, binary, ``None`` and missing sort as nulls. Each kind's value is its own
    term (boolean, numeric, ``text COLLATE "C"``): within one rank only one is non-NULL.
    """
    b = _Builder("s")
    terms: list[str] = []
    for spec in sort_by:
        direction = "DESC" if spec.descending else "ASC"
        null_dir = "ASC" if spec.nulls == "last" else "DESC"
        if spec.field == ID_FIELD:
            terms.append(f"id {direction}")
            continue
        slot = _Slot(b, spec.field)
        t = f"jsonb_typeof({slot.json})"
        rank = (
            f"(CASE {t} WHEN 'boolean' THEN 0 WHEN 'number' THEN 1 "
            f"WHEN 'string' THEN (CASE WHEN {slot.is_dt} THEN 3 ELSE 2 END) END)"
        )
        values = [
            f"(CASE WHEN {t} = 'boolean' THEN ({slot.json})::boolean END)",
            f"(CASE WHEN {t} = 'number' THEN {_typed('num', slot.json)} END)",
            f"(CASE WHEN {t} = 'string' THEN {_typed('str', slot.json)} END)",
        ]
        terms += [f"({rank} IS NULL) {null_dir}", f"{rank} {direction}"]
        terms += [f"{v} {direction}" for v in values]
    terms.append("id ASC")
    return Compiled(", ".join(terms), b.params)
