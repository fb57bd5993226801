"""Compile the filter tree and sort keys into SQL over a JSON document column (pure, no I/O).

Each record row holds ``doc`` (top-level field name -> JSON value, datetimes as fixed-width ISO
strings, see :mod:`..rowcodec`), ``types`` (which top-level fields hold datetimes) and ``id``.
The semantics reproduced here are those of the :mod:`dataknobs_data.query` docstring, written
once for every SQL engine; what an engine spells its own way is asked of its
:class:`~.dialect.Dialect`:

* every positive predicate is never NULL (``COALESCE``/``CASE``), so ``NOT`` and the negated
  operators are plain complements and there is no three-valued logic;
* ``in`` binds one parameter per kind holding the whole set (:meth:`.Dialect.members`), and a
  long ``OR`` of ``=`` on one field is first merged into one ``in``
  (:func:`~dataknobs_data.rewrite.merge_memberships`), so a list of 100,000 values costs one
  set lookup per row, not a 100,000-term expression;
* a JSON array matches when any scalar element matches (``EXISTS`` over its elements); arrays
  and objects inside it, and objects anywhere, match nothing;
* kinds come from the engine's JSON type function; a string is a datetime when ``types`` says
  the top-level field holds datetimes; each comparison is guarded by the kind test of its value;
* sort keys are (null flag, kind rank, value) with ranks booleans < numbers < strings <
  datetimes, then ``id``.

Field paths and values reach SQL only as bound parameters; identifiers never appear here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ...errors import FilterTooLargeError
from ...fields import ID_FIELD
from ...query import Condition, Filter, Operator, SortSpec, value_kind
from ...rewrite import distinct_values, largest_condition, merge_memberships
from .tree import COMPARISONS, Builder, Compiled, Scalar, Slot, id_predicate, render_tree

if TYPE_CHECKING:
    from .dialect import Dialect

__all__ = ["check_parameters", "compile_filter", "compile_order"]


def _kind_test(d: Dialect, kind: str | None, s: Scalar, slot: Slot) -> str:
    """SQL true when ``s`` (at ``slot``'s field) is of ``kind``."""
    if kind in ("num", "bool"):
        return f"{s.type} {d.type_test(kind)}"
    if kind == "str":
        return f"({s.type} {d.type_test('str')} AND NOT {slot.is_dt})"
    if kind == "dt":
        return f"({s.type} {d.type_test('str')} AND {slot.is_dt})"
    return d.false


def _guarded(b: Builder, kind: str | None, s: Scalar, slot: Slot, pred: str) -> str:
    """``pred`` on ``s`` as its ``kind`` value, false where ``s`` is of another kind."""
    d = b.dialect
    return d.leaf(d.when(_kind_test(d, kind, s, slot), pred))


def _bind(b: Builder, value: Any) -> str:
    """``value`` as a parameter of its kind."""
    return b.bind(b.dialect.sql_value(value), b.dialect.cast(value_kind(value)))


def _member_sets(b: Builder, values: Any) -> dict[str | None, str]:
    """Per kind among ``values``, what follows a subject to test membership: one parameter
    holding the kind's distinct values (booleans as literals), bound once for the whole
    condition, so the SQL text and the parameter count do not grow with the list."""
    d = b.dialect
    groups: dict[str | None, list[Any]] = {}
    for item in distinct_values(values):
        groups.setdefault(value_kind(item), []).append(item)
    out: dict[str | None, str] = {}
    for kind, items in groups.items():
        if kind == "bool":
            names = sorted({d.bool_literal(x) for x in items})
            out[kind] = f"IN ({','.join(names)})"
        elif kind is not None:  # every filter value has a kind (query._scalar)
            out[kind] = d.members(b, kind, [d.sql_value(x) for x in items])
    return out


def _scalar_pred(
    b: Builder, op: Operator, value: Any, s: Scalar, slot: Slot, sets: dict[str | None, str]
) -> str:
    """Predicate on one JSON scalar ``s`` (``sets``: :func:`_member_sets` of an ``in``)."""
    d = b.dialect
    if op is Operator.EQ and isinstance(value, bool):
        return d.leaf(f"{s.token} = {d.bool_literal(value)}")
    if op in COMPARISONS:
        kind = value_kind(value)
        rhs = _bind(b, value)
        return _guarded(b, kind, s, slot, f"{d.value(s, kind)} {COMPARISONS[op]} {rhs}")
    if op is Operator.IN:
        terms = [
            d.leaf(f"{s.token} {rhs}")
            if kind == "bool"
            else _guarded(b, kind, s, slot, f"{d.value(s, kind)} {rhs}")
            for kind, rhs in sets.items()
        ]
        return f"({' OR '.join(terms)})" if terms else d.false
    if op is Operator.BETWEEN:
        kind = value_kind(value[0])
        lo, hi = _bind(b, value[0]), _bind(b, value[1])
        return _guarded(b, kind, s, slot, f"{d.value(s, kind)} BETWEEN {lo} AND {hi}")
    if op in (Operator.LIKE, Operator.STARTS_WITH):
        return _guarded(b, "str", s, slot, d.pattern(b, op, value, d.value(s, "str")))
    raise AssertionError(f"not a positive scalar operator: {op}")  # pragma: no cover


def _positive(b: Builder, cond: Condition) -> str:
    d = b.dialect
    op = cond.op.positive
    if cond.field == ID_FIELD:  # a plain string column: no JSON, never missing
        return id_predicate(
            op,
            cond.value,
            bind=b.bind,
            members=lambda items: d.members(b, "str", items),
            pattern=lambda o, v: d.pattern(b, o, v, "id"),
            true=d.true,
            false=d.false,
        )
    slot = d.slot(b, cond.field.split("."))
    t = slot.whole.type
    if op is Operator.EXISTS:
        return (
            f"(CASE {t} WHEN 'array' THEN EXISTS (SELECT 1 FROM {slot.each} "
            f"WHERE {slot.element.type} <> 'null') WHEN 'null' THEN {d.false} "
            f"ELSE {slot.whole.token} IS NOT NULL END)"
        )
    sets = _member_sets(b, cond.value) if op is Operator.IN else {}
    elem = _scalar_pred(b, op, cond.value, slot.element, slot, sets)
    whole = _scalar_pred(b, op, cond.value, slot.whole, slot, sets)
    return (
        f"(CASE {t} WHEN 'array' THEN EXISTS (SELECT 1 FROM {slot.each} "
        f"WHERE {elem}) ELSE {d.whole(whole)} END)"
    )


def compile_filter(node: Filter | None, dialect: Dialect, prefix: str = "f") -> Compiled:
    """A boolean SQL expression (never NULL) over ``doc``/``types``/``id`` and its params.

    >>> from dataknobs_data.backends.sql.sqlite import SQLITE
    >>> from dataknobs_data.query import F
    >>> compile_filter(F("_id") == "r1", SQLITE).sql
    '(id = :f0)'
    """
    if node is None:
        return Compiled(dialect.true, {})
    b = Builder(dialect, prefix)
    sql = render_tree(merge_memberships(node), lambda cond: _positive(b, cond))
    return Compiled(sql, b.params)


def check_parameters(compiled: Compiled, node: Filter | None, limit: int, engine: str) -> Compiled:
    """``compiled``, or :class:`FilterTooLargeError` when it binds more parameters than the
    engine's ``limit`` (after :func:`merge_memberships`, only many conditions that cannot be
    merged get there: each ``in`` list is one parameter)."""
    if node is not None and len(compiled.params) > limit:
        raise FilterTooLargeError(
            f"{engine} cannot take this filter ({largest_condition(node)}): it needs "
            f"{len(compiled.params)} bound parameters, past the engine's limit of {limit}; "
            "combine equalities on one field into an 'in' list"
        )
    return compiled


def _rank(d: Dialect, slot: Slot) -> str:
    """The kind rank of a sort key's value (NULL for lists, objects, nulls and missing)."""
    ranks = {"bool": "0", "num": "1", "str": f"(CASE WHEN {slot.is_dt} THEN 3 ELSE 2 END)"}
    whens = " ".join(f"WHEN '{n}' THEN {ranks[k]}" for k in ranks for n in d.json_types[k])
    return f"(CASE {slot.whole.type} {whens} END)"


def compile_order(sort_by: Sequence[SortSpec], dialect: Dialect) -> Compiled:
    """``ORDER BY`` terms: per key (null flag, kind rank, value) with direction, then ``id``.

    Kind ranks follow the query docstring: booleans < numbers < strings < datetimes; lists,
    objects, vectors, binary, ``None`` and missing sort as nulls.
    """
    b = Builder(dialect, "s")
    terms: list[str] = []
    for spec in sort_by:
        direction = "DESC" if spec.descending else "ASC"
        null_dir = "ASC" if spec.nulls == "last" else "DESC"
        if spec.field == ID_FIELD:
            terms.append(f"id {direction}")
            continue
        slot = dialect.slot(b, spec.field.split("."))
        rank = _rank(dialect, slot)
        terms += [f"({rank} IS NULL) {null_dir}", f"{rank} {direction}"]
        terms += [f"{v} {direction}" for v in dialect.sort_values(slot)]
    terms.append("id ASC")
    return Compiled(", ".join(terms), b.params)
