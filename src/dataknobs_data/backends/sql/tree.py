"""SQL pieces every dialect renders the same way: compiled text, parameter collection, the
boolean structure of a filter tree, and the record-id predicate.

Leaves are dialect-specific (the compiler passes a function rendering a *positive* condition as
a predicate that is never NULL); the AND / OR / NOT structure and the rule that a negated
operator is ``NOT`` of its positive twin are the same everywhere, so they live here once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ...query import And, Condition, Filter, Not, Operator, Or, value_kind

if TYPE_CHECKING:
    from .dialect import Dialect

__all__ = [
    "COMPARISONS",
    "FAN_OUT",
    "Builder",
    "Compiled",
    "Scalar",
    "Slot",
    "id_predicate",
    "render_tree",
]

#: SQL for the ordering and equality operators (identical in every SQL engine).
COMPARISONS = {
    Operator.EQ: "=",
    Operator.GT: ">",
    Operator.GTE: ">=",
    Operator.LT: "<",
    Operator.LTE: "<=",
}
#: operands per parenthesised ``AND``/``OR`` group: a longer list is nested in balanced groups,
#: so an expression of n operands is O(log n) deep (SQLite refuses a depth beyond 1000).
FAN_OUT = 16


@dataclass(frozen=True, slots=True)
class Compiled:
    """SQL text plus its named parameters."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)


class Builder:
    """Collects named parameters (``<prefix><n>``) while SQL fragments are rendered.

    An equal value (same type) bound again reuses its parameter: a field's path is bound once
    however many conditions name it, and a value once for the array and the scalar branch.
    Fewer names matter for long filters: SQLite finds each named parameter by a linear search
    while it parses, so a statement's parse time grows with the square of its distinct names.
    """

    def __init__(self, dialect: Dialect, prefix: str) -> None:
        self.dialect = dialect
        self.prefix = prefix
        self.params: dict[str, Any] = {}
        self._names: dict[tuple[Any, ...], str] = {}

    def bind(self, value: Any, cast: str = "") -> str:
        """The placeholder for ``value``, followed by ``cast`` (a type or collation) if any."""
        key = _reuse_key(value, cast)
        name = None if key is None else self._names.get(key)
        if name is None:
            name = f"{self.prefix}{len(self.params)}"
            self.params[name] = value
            if key is not None:
                self._names[key] = name
        placeholder = self.dialect.param(name)
        return f"({placeholder}{cast})" if cast else placeholder


def _reuse_key(value: Any, cast: str) -> tuple[Any, ...] | None:
    """What makes two bound values one parameter: type and value (``1``, ``1.0`` and ``True``
    stay apart), or ``None`` for values never shared (membership arrays)."""
    if type(value) is list and all(type(v) is str for v in value):  # a path as text[]
        return (list, tuple(value), cast)
    if isinstance(value, str | int | float | Decimal):
        return (type(value), value, cast)
    return None


@dataclass(frozen=True, slots=True)
class Scalar:
    """One JSON value as SQL: the value expression, the expression naming its JSON type, and
    its ``token``: an expression NULL exactly when the value is missing, equal to the dialect's
    :meth:`~.Dialect.bool_literal` exactly when the value is that boolean.

    What ``json`` and ``token`` hold is the dialect's business: SQLite's extracted SQL value and
    its JSON type (whose names include ``'true'``/``'false'``), PostgreSQL's ``jsonb`` for both
    (see :meth:`.Dialect.value`)."""

    json: str
    type: str
    token: str


@dataclass(frozen=True, slots=True)
class Slot:
    """The value at one field path of a row: the value itself (``whole``), a ``FROM`` item over
    its elements when it is an array (``each``, one row per ``element``), and the SQL flag that
    says the top-level field holds datetimes (stored as text, so the type alone cannot)."""

    whole: Scalar
    each: str
    element: Scalar
    is_dt: str


def render_tree(node: Filter, positive: Callable[[Condition], str]) -> str:
    """SQL for ``node`` given a renderer of positive leaf conditions."""
    if isinstance(node, Condition):
        sql = positive(node)
        return f"(NOT {sql})" if node.op.negated else sql
    if isinstance(node, And | Or):
        joiner = " AND " if isinstance(node, And) else " OR "
        return _balanced(joiner, [render_tree(c, positive) for c in node.children])
    if isinstance(node, Not):
        return f"(NOT {render_tree(node.child, positive)})"
    raise AssertionError(f"unknown filter node {node!r}")  # pragma: no cover


def _balanced(joiner: str, terms: list[str]) -> str:
    """``terms`` joined, in groups of at most :data:`FAN_OUT` nested as a balanced tree."""
    while len(terms) > FAN_OUT:
        terms = [
            "(" + joiner.join(terms[i : i + FAN_OUT]) + ")" if i + 1 < len(terms) else terms[i]
            for i in range(0, len(terms), FAN_OUT)
        ]
    return "(" + joiner.join(terms) + ")"


def id_predicate(
    op: Operator,
    value: Any,
    *,
    bind: Callable[[Any], str],
    members: Callable[[list[str]], str],
    pattern: Callable[[Operator, str], str],
    true: str,
    false: str,
) -> str:
    """A positive condition on the record id, a plain string column that is never missing.

    ``members`` renders "is one of these strings" on ``id`` (one parameter for the whole set, so
    the SQL text does not grow with the list); ``pattern`` renders ``like`` / ``starts_with`` on
    ``id`` in the engine's syntax; ``true`` and ``false`` are its boolean literals.
    """
    if op is Operator.EXISTS:
        return true
    if op is Operator.IN:
        items = list(dict.fromkeys(x for x in value if isinstance(x, str)))
        return f"(id {members(items)})" if items else false
    if value_kind(value if op is not Operator.BETWEEN else value[0]) != "str":
        return false
    if op in COMPARISONS:
        return f"(id {COMPARISONS[op]} {bind(value)})"
    if op is Operator.BETWEEN:
        return f"(id BETWEEN {bind(value[0])} AND {bind(value[1])})"
    return f"({pattern(op, value)})"
