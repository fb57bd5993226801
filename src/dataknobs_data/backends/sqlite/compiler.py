"""Compile the filter tree and sort keys into SQL over a JSON document column (pure, no I/O).

Each record row holds ``doc`` (top-level field name -> JSON value, datetimes as fixed-width ISO
strings), ``types`` (top-level field name -> :class:`~dataknobs_data.fields.FieldType` value) and
``id``. The semantics reproduced here are those of the :mod:`dataknobs_data.query` docstring:

* every positive predicate is 0 or 1, never NULL (``COALESCE``/``CASE``), so ``NOT`` and the
  negated operators are plain complements and there is no three-valued logic;
* a JSON array matches when any scalar element matches (``EXISTS ... json_each``); arrays and
  objects inside it, and objects anywhere, match nothing;
* kinds come from ``json_type``: ``integer``/``real`` are numbers, ``true``/``false`` booleans,
  ``text`` a string unless ``types`` says the top-level field is a datetime;
* ``like`` and ``starts_with`` become ``GLOB`` patterns (case-sensitive, whole string, UTF-8
  aware), so no connection-wide pragma is needed.

Field paths reach SQL only as bound JSON-path parameters (each segment quoted), values only as
bound parameters, identifiers only through :func:`quote_identifier`. What differs between SQL
engines sits in :class:`Dialect`, so a PostgreSQL compiler can reuse the structure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ...fields import ID_FIELD
from ...query import Condition, Filter, Operator, SortSpec, value_kind
from ..rowcodec import iso_datetime
from ..sqltree import COMPARISONS, Compiled, id_predicate, render_tree

__all__ = [
    "SQLITE",
    "Dialect",
    "compile_filter",
    "compile_order",
    "glob_from_like",
    "glob_prefix",
    "json_path",
    "quote_identifier",
]


def quote_identifier(name: str) -> str:
    """``"name"`` with embedded quotes doubled: the one way identifiers enter SQL."""
    return '"' + name.replace('"', '""') + '"'


def json_path(parts: Sequence[str]) -> str:
    """A JSON path with every segment quoted (``$."meta"."a\\"b"``): dots or quotes in a key
    can never be read as path syntax. It travels as a bound parameter."""
    quoted = ('"' + p.replace("\\", "\\\\").replace('"', '\\"') + '"' for p in parts)
    return "$." + ".".join(quoted)


_GLOB_SPECIAL = {"*": "[*]", "?": "[?]", "[": "[[]"}


def _glob_literal(ch: str) -> str:
    return _GLOB_SPECIAL.get(ch, ch)


def glob_from_like(pattern: str) -> str:
    """Translate a LIKE pattern (``%``, ``_``, ``\\`` escape) into an equivalent GLOB."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(_glob_literal(pattern[i + 1]))
            i += 2
            continue
        out.append("*" if ch == "%" else "?" if ch == "_" else _glob_literal(ch))
        i += 1
    return "".join(out)


def glob_prefix(prefix: str) -> str:
    """A GLOB matching strings that start with ``prefix`` literally."""
    return "".join(map(_glob_literal, prefix)) + "*"


@dataclass(frozen=True, slots=True)
class Dialect:
    """What differs between SQL engines for this compiler.

    ``param`` renders a named placeholder; ``json_type``/``json_extract`` render JSON access on
    a column with a path placeholder; ``json_each`` a table-valued function over a path.
    """

    name: str
    param_template: str = ":{}"
    json_type_template: str = "json_type({col}, {path})"
    json_extract_template: str = "json_extract({col}, {path})"
    json_each_template: str = "json_each({col}, {path})"
    glob_template: str = "{value} GLOB {pattern}"

    def param(self, name: str) -> str:
        return self.param_template.format(name)


SQLITE = Dialect("sqlite")


class _Builder:
    """Collects named parameters while SQL fragments are rendered."""

    def __init__(self, dialect: Dialect, prefix: str) -> None:
        self.dialect = dialect
        self.prefix = prefix
        self.params: dict[str, Any] = {}

    def bind(self, value: Any) -> str:
        name = f"{self.prefix}{len(self.params)}"
        self.params[name] = value
        return self.dialect.param(name)


_NUM = "('integer','real')"


def _sql_value(value: Any) -> Any:
    """A filter value as stored in ``doc`` (datetimes as fixed-width ISO text)."""
    return iso_datetime(value) if isinstance(value, datetime) else value


class _Slot:
    """The value at one path of one row, as SQL: its JSON type, its value, its datetime flag."""

    def __init__(self, b: _Builder, path: str) -> None:
        d = b.dialect
        self.is_id = path == ID_FIELD
        parts = path.split(".")
        p = b.bind(json_path(parts))
        self.path = p
        self.type = d.json_type_template.format(col="doc", path=p)
        self.value = d.json_extract_template.format(col="doc", path=p)
        self.each = d.json_each_template.format(col="doc", path=p)
        if len(parts) == 1 and not self.is_id:
            tp = b.bind(json_path(parts))
            self.is_dt = f"({d.json_extract_template.format(col='types', path=tp)} IS 'datetime')"
        else:
            self.is_dt = "0"


def _kind_test(kind: str | None, t: str, slot: _Slot) -> str:
    """SQL true when the JSON type ``t`` (at ``slot``'s field) is of ``kind``."""
    if kind == "num":
        return f"{t} IN {_NUM}"
    if kind == "bool":
        return f"{t} IN ('true','false')"
    if kind == "str":
        return f"({t} = 'text' AND NOT {slot.is_dt})"
    if kind == "dt":
        return f"({t} = 'text' AND {slot.is_dt})"
    return "0"


def _scalar_pred(b: _Builder, op: Operator, value: Any, t: str, v: str, slot: _Slot) -> str:
    """Predicate on one scalar JSON value (type expression ``t``, value expression ``v``)."""
    if op is Operator.EQ and isinstance(value, bool):
        return f"({t} = '{'true' if value else 'false'}')"
    if op in COMPARISONS:
        test = _kind_test(value_kind(value), t, slot)
        return f"({test} AND {v} {COMPARISONS[op]} {b.bind(_sql_value(value))})"
    if op is Operator.IN:
        groups: dict[str | None, list[Any]] = {}
        for item in value:
            groups.setdefault(value_kind(item), []).append(item)
        terms = []
        for kind, items in groups.items():
            if kind == "bool":
                names = sorted({"'true'" if x else "'false'" for x in items})
                terms.append(f"{t} IN ({','.join(names)})")
            else:
                binds = ",".join(b.bind(_sql_value(x)) for x in items)
                terms.append(f"({_kind_test(kind, t, slot)} AND {v} IN ({binds}))")
        return f"({' OR '.join(terms)})" if terms else "0"
    if op is Operator.BETWEEN:
        low, high = value
        lo, hi = b.bind(_sql_value(low)), b.bind(_sql_value(high))
        return f"({_kind_test(value_kind(low), t, slot)} AND {v} BETWEEN {lo} AND {hi})"
    if op in (Operator.LIKE, Operator.STARTS_WITH):
        pattern = glob_from_like(value) if op is Operator.LIKE else glob_prefix(value)
        test = b.dialect.glob_template.format(value=v, pattern=b.bind(pattern))
        return f"({_kind_test('str', t, slot)} AND {test})"
    raise AssertionError(f"not a positive scalar operator: {op}")  # pragma: no cover


def _id_pred(b: _Builder, op: Operator, value: Any) -> str:
    """The record id is a plain string column: no JSON, never missing."""

    def pattern(o: Operator, v: str) -> str:
        glob = glob_from_like(v) if o is Operator.LIKE else glob_prefix(v)
        return b.dialect.glob_template.format(value="id", pattern=b.bind(glob))

    return id_predicate(op, value, bind=b.bind, pattern=pattern, true="1", false="0")


def _positive(b: _Builder, cond: Condition) -> str:
    op = cond.op.positive
    if cond.field == ID_FIELD:
        return _id_pred(b, op, cond.value)
    slot = _Slot(b, cond.field)
    if op is Operator.EXISTS:
        non_null = f"EXISTS (SELECT 1 FROM {slot.each} AS e WHERE e.type <> 'null')"
        return (
            f"(CASE {slot.type} WHEN 'array' THEN {non_null} "
            f"WHEN 'null' THEN 0 ELSE {slot.type} IS NOT NULL END)"
        )
    elem = _scalar_pred(b, op, cond.value, "e.type", "e.atom", slot)
    whole = _scalar_pred(b, op, cond.value, slot.type, slot.value, slot)
    return (
        f"(CASE {slot.type} WHEN 'array' THEN EXISTS (SELECT 1 FROM {slot.each} AS e "
        f"WHERE {elem}) ELSE COALESCE({whole}, 0) END)"
    )


def _node(b: _Builder, node: Filter) -> str:
    return render_tree(node, lambda cond: _positive(b, cond))


def compile_filter(node: Filter | None, dialect: Dialect = SQLITE, prefix: str = "f") -> Compiled:
    """A boolean SQL expression (0/1, never NULL) over ``doc``/``types``/``id`` and its params.

    >>> from dataknobs_data.query import F
    >>> compile_filter(F("_id") == "r1").sql
    '(id = :f0)'
    """
    if node is None:
        return Compiled("1", {})
    b = _Builder(dialect, prefix)
    return Compiled(_node(b, node), b.params)


def compile_order(sort_by: Sequence[SortSpec], dialect: Dialect = SQLITE) -> Compiled:
    """``ORDER BY`` terms: per key (null flag, kind rank, value) with direction, then ``id``.

    Kind ranks follow the query docstring: booleans < numbers < strings < datetimes; lists,
    objects, vectors, binary, ``None`` and missing sort as nulls.
    """
    b = _Builder(dialect, "s")
    terms: list[str] = []
    for spec in sort_by:
        direction = "DESC" if spec.descending else "ASC"
        null_dir = "ASC" if spec.nulls == "last" else "DESC"
        if spec.field == ID_FIELD:
            terms.append(f"id {direction}")
            continue
        slot = _Slot(b, spec.field)
        rank = (
            f"(CASE {slot.type} WHEN 'true' THEN 0 WHEN 'false' THEN 0 WHEN 'integer' THEN 1 "
            f"WHEN 'real' THEN 1 WHEN 'text' THEN (CASE WHEN {slot.is_dt} THEN 3 ELSE 2 END) "
            "END)"
        )
        value = (
            f"(CASE WHEN {slot.type} IN ('true','false','integer','real','text') "
            f"THEN {slot.value} END)"
        )
        terms += [f"({rank} IS NULL) {null_dir}", f"{rank} {direction}", f"{value} {direction}"]
    terms.append("id ASC")
    return Compiled(", ".join(terms), b.params)
