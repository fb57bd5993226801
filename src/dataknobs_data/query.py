"""The portable query language: a typed filter tree, sorting, paging, projection, vector queries.

Every backend receives the same validated tree and must either run it exactly or refuse it with
:class:`~dataknobs_data.errors.UnsupportedOperatorError`. Dicts and JSON are parsed into the
tree here, once (:meth:`Query.from_dict`); backends never see raw dicts.

Semantics (the memory backend implements them; every backend is tested against it)
--------------------------------------------------------------------------------
**Paths.** ``"meta.author"`` descends into JSON objects. A path is *missing* when a segment is
absent or a non-object is in the way. ``"_id"`` is the record id.

**Kinds.** Values compare only within a kind: *number* (int and float; ``1 == 1.0``), *string*
(case-sensitive, code-point order), *boolean*, *datetime* (timezone-aware, UTC). A comparison
between different kinds is false, never an error: ``year = "2020"`` does not match ``2020``,
and ``True`` is not the number 1. JSON objects, vectors and binary values match no comparison.

**Lists.** A list value matches a comparison when *any* element matches (elements that are
lists or objects never match), as in Elasticsearch: ``tags = "time"`` matches
``["time", "date"]``, and ``tags in ["a", "b"]`` matches a list holding ``"a"`` or ``"b"``.
``between`` needs one element inside both bounds.

**Missing and null.** Positive operators (``=``, ``>``, ``in``, ``like``, ``starts_with``,
``between``...) are false for a missing field, for ``None``, and for a list without a matching
element. ``exists`` is true when the field has at least one non-null value (so an empty list or
``[None]`` does not exist). Filter values may not be ``None``: use ``exists`` / ``not_exists``.

**Negation is complement.** ``!=``, ``not_in``, ``not_like`` and ``not_exists`` are exactly
``NOT`` of ``=``, ``in``, ``like`` and ``exists``: ``status != "done"`` *matches* records with no
status. ``NOT`` is a plain boolean complement and ``AND``/``OR`` mean what they say; there is no
three-valued logic. Write ``exists(f) AND f != v`` for SQL's ``f <> v``.

**Large lists.** ``in`` / ``not_in`` take lists of any length (100,000 values are filtered in
under a second on SQLite and PostgreSQL), and a long ``OR`` of ``=`` on one field runs as one
``in`` (:func:`dataknobs_data.rewrite.merge_memberships`); ``docs/large-filters.md`` says how each
backend runs them and which limits remain.

**Patterns.** ``like`` matches the whole string: ``%`` is any run of characters, ``_`` exactly one,
``\\`` escapes the next character; it is case-sensitive. ``starts_with`` is a literal prefix.

**Ranges.** ``between [lo, hi]`` is inclusive at both ends; ``lo`` and ``hi`` must be of one kind
with ``lo <= hi``. Booleans have no order: ``<`` and friends refuse them.

**Sorting.** Keys apply in order; each is ascending or descending with ``nulls`` placed
``"last"`` (default) or ``"first"`` whatever the direction. Missing, ``None``, lists, objects,
vectors and binary values all sort as nulls. Across kinds, ascending order is booleans
(false < true), numbers, strings, datetimes. Ties, and queries without sort keys, are ordered by
record id (code-point order), so every backend returns the same sequence.

**Paging and projection.** ``offset`` then ``limit`` apply after sorting. ``select`` keeps the
named top-level fields (the id is always kept).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Literal, TypeAlias

import numpy as np
import numpy.typing as npt

from .errors import InvalidTextError, QueryError, UnknownOperatorError
from .fields import ID_FIELD, as_vector
from .ints import INT64_MAX, INT64_MIN, checked_int
from .strings import check_text
from .vector.types import DistanceMetric

__all__ = [
    "And",
    "ComplexQuery",
    "Condition",
    "F",
    "Filter",
    "Not",
    "Operator",
    "Or",
    "Query",
    "Scalar",
    "SortSpec",
    "VectorQuery",
    "all_of",
    "any_of",
    "not_",
    "parse_filter",
]

Scalar: TypeAlias = str | int | float | bool | datetime


class Operator(StrEnum):
    """Comparison operators of the filter tree (the strings are what ``Query.filter`` takes)."""

    EQ = "="
    NEQ = "!="
    GT = ">"
    GTE = ">="
    LT = "<"
    LTE = "<="
    IN = "in"
    NOT_IN = "not_in"
    BETWEEN = "between"
    LIKE = "like"
    NOT_LIKE = "not_like"
    STARTS_WITH = "starts_with"
    EXISTS = "exists"
    NOT_EXISTS = "not_exists"

    @classmethod
    def parse(cls, value: Operator | str) -> Operator:
        """The operator an ``Operator`` or a string spells (aliases such as ``==`` accepted), or
        :class:`UnknownOperatorError`."""
        if isinstance(value, Operator):
            return value
        if isinstance(value, str):
            found = _OP_ALIASES.get(value.strip().lower())
            if found is not None:
                return found
        raise UnknownOperatorError(
            f"unknown operator {value!r}; valid operators are {[o.value for o in cls]}"
        )

    @property
    def negated(self) -> bool:
        """True for the four operators defined as the complement of a positive one."""
        return self in NEGATION_OF

    @property
    def positive(self) -> Operator:
        """The positive operator this one complements (itself when not negated)."""
        return NEGATION_OF.get(self, self)


_OP_ALIASES: dict[str, Operator] = {o.value: o for o in Operator} | {
    "==": Operator.EQ,
    "eq": Operator.EQ,
    "<>": Operator.NEQ,
    "ne": Operator.NEQ,
    "neq": Operator.NEQ,
    "gt": Operator.GT,
    "gte": Operator.GTE,
    "ge": Operator.GTE,
    "lt": Operator.LT,
    "lte": Operator.LTE,
    "le": Operator.LTE,
    "not in": Operator.NOT_IN,
    "nin": Operator.NOT_IN,
    "not like": Operator.NOT_LIKE,
    "startswith": Operator.STARTS_WITH,
    "not exists": Operator.NOT_EXISTS,
}

#: negated operator -> the positive operator it complements
NEGATION_OF: dict[Operator, Operator] = {
    Operator.NEQ: Operator.EQ,
    Operator.NOT_IN: Operator.IN,
    Operator.NOT_LIKE: Operator.LIKE,
    Operator.NOT_EXISTS: Operator.EXISTS,
}
ORDERING = frozenset({Operator.GT, Operator.GTE, Operator.LT, Operator.LTE, Operator.BETWEEN})


# -- values ------------------------------------------------------------------------------
def _scalar(field: str, value: Any, *, ordered: bool = False) -> Scalar:
    """Validate one filter value and normalise it (numpy scalars, dates, aware UTC)."""
    if value is None:
        raise QueryError(
            f"filter on {field!r}: None is not a value; use 'exists' / 'not_exists' for nulls"
        )
    if isinstance(value, bool | np.bool_):
        if ordered:
            raise QueryError(f"filter on {field!r}: booleans have no order")
        return bool(value)
    if isinstance(value, int | np.integer):
        ivalue = int(value)
        if not INT64_MIN <= ivalue <= INT64_MAX:
            raise QueryError(f"filter on {field!r}: integer {ivalue} does not fit in 64 bits")
        return ivalue
    if isinstance(value, float | np.floating):
        fvalue = float(value)
        if not math.isfinite(fvalue):
            raise QueryError(f"filter on {field!r}: value must be finite, got {fvalue}")
        return fvalue
    if isinstance(value, str):
        return check_text(field, value, "filter value")
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise QueryError(
        f"filter on {field!r}: {type(value).__name__} is not a filter value "
        "(use str, int, float, bool or datetime)"
    )


def value_kind(value: Any) -> str | None:
    """The comparison kind of a stored or filter value, or ``None`` if it compares with nothing."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "num"
    if isinstance(value, str):
        return "str"
    if isinstance(value, datetime):
        return "dt"
    return None


def _validate_path(path: object) -> str:
    if not isinstance(path, str) or not path:
        raise QueryError(f"field path must be a non-empty string, got {path!r}")
    check_text(None, path, "field path")
    parts = path.split(".")
    if any(not p or any(ord(c) < 32 for c in p) for p in parts):
        raise QueryError(f"malformed field path {path!r}")
    if ID_FIELD in parts and path != ID_FIELD:
        raise QueryError(f"{ID_FIELD!r} names the record id and cannot be part of a path")
    return path


# -- the filter tree -----------------------------------------------------------------------
class _Combinable:
    """`&`, `|` and `~` on any filter node: :func:`all_of`, :func:`any_of`, :func:`not_`."""

    __slots__ = ()

    def __and__(self, other: Filter) -> Filter:
        return all_of(self, other)  # type: ignore[arg-type]

    def __or__(self, other: Filter) -> Filter:
        return any_of(self, other)  # type: ignore[arg-type]

    def __invert__(self) -> Filter:
        return not_(self)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Condition(_Combinable):
    """``field op value``; build it with :class:`F` or :meth:`Query.filter` (both validate)."""

    field: str
    op: Operator
    value: Scalar | tuple[Scalar, ...] | None = None

    @staticmethod
    def make(field: str, op: Operator | str, value: Any = None) -> Condition:
        """Validate and normalise a condition; the only way values enter the tree."""
        path = _validate_path(field)
        oper = Operator.parse(op)
        if oper in (Operator.EXISTS, Operator.NOT_EXISTS):
            if value is not None:
                raise QueryError(f"filter on {path!r}: {oper.value!r} takes no value")
            return Condition(path, oper, None)
        if oper in (Operator.IN, Operator.NOT_IN):
            if isinstance(value, str | bytes) or not isinstance(value, Iterable):
                raise QueryError(f"filter on {path!r}: {oper.value!r} needs a list of values")
            return Condition(path, oper, tuple(_scalar(path, v) for v in value))
        if oper is Operator.BETWEEN:
            if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
                raise QueryError(f"filter on {path!r}: 'between' needs [low, high]")
            low, high = (_scalar(path, v, ordered=True) for v in value)
            if value_kind(low) != value_kind(high):
                raise QueryError(f"filter on {path!r}: 'between' bounds differ in type")
            if low > high:  # type: ignore[operator]
                raise QueryError(f"filter on {path!r}: 'between' low {low!r} > high {high!r}")
            return Condition(path, oper, (low, high))
        if oper in (Operator.LIKE, Operator.NOT_LIKE, Operator.STARTS_WITH):
            if not isinstance(value, str):
                raise QueryError(f"filter on {path!r}: {oper.value!r} needs a string pattern")
            check_text(path, value, "pattern")
            if oper is not Operator.STARTS_WITH and _bad_escape(value):
                raise QueryError(f"filter on {path!r}: pattern {value!r} ends with a lone '\\'")
            return Condition(path, oper, value)
        return Condition(path, oper, _scalar(path, value, ordered=oper in ORDERING))


def _bad_escape(pattern: str) -> bool:
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\":
            if i + 1 == len(pattern):
                return True
            i += 1
        i += 1
    return False


@dataclass(frozen=True, slots=True)
class And(_Combinable):
    """All children hold (at least one child)."""

    children: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Or(_Combinable):
    """At least one child holds (at least one child)."""

    children: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Not(_Combinable):
    """The child does not hold (boolean complement)."""

    child: Filter


Filter: TypeAlias = Condition | And | Or | Not


def _check_node(node: object) -> Filter:
    if not isinstance(node, Condition | And | Or | Not):
        raise QueryError(f"expected a filter node (Condition/And/Or/Not), got {node!r}")
    return node


def all_of(*nodes: Filter) -> Filter:
    """AND of the given filters (nested ANDs are flattened; one filter is returned as is)."""
    if not nodes:
        raise QueryError("all_of() needs at least one filter")
    flat: list[Filter] = []
    for n in map(_check_node, nodes):
        flat.extend(n.children if isinstance(n, And) else (n,))
    return flat[0] if len(flat) == 1 else And(tuple(flat))


def any_of(*nodes: Filter) -> Filter:
    """OR of the given filters (nested ORs are flattened; one filter is returned as is)."""
    if not nodes:
        raise QueryError("any_of() needs at least one filter")
    flat: list[Filter] = []
    for n in map(_check_node, nodes):
        flat.extend(n.children if isinstance(n, Or) else (n,))
    return flat[0] if len(flat) == 1 else Or(tuple(flat))


def not_(node: Filter) -> Filter:
    """Boolean complement (``not_(not_(x))`` is ``x``)."""
    _check_node(node)
    return node.child if isinstance(node, Not) else Not(node)


class F:
    """Fluent condition builder: ``(F("year") >= 2020) & F("tags").is_in(["time"])``."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = _validate_path(path)

    def __eq__(self, value: object) -> Condition:  # type: ignore[override]
        return Condition.make(self.path, Operator.EQ, value)

    def __ne__(self, value: object) -> Condition:  # type: ignore[override]
        return Condition.make(self.path, Operator.NEQ, value)

    def __gt__(self, value: Any) -> Condition:
        return Condition.make(self.path, Operator.GT, value)

    def __ge__(self, value: Any) -> Condition:
        return Condition.make(self.path, Operator.GTE, value)

    def __lt__(self, value: Any) -> Condition:
        return Condition.make(self.path, Operator.LT, value)

    def __le__(self, value: Any) -> Condition:
        return Condition.make(self.path, Operator.LTE, value)

    __hash__ = None  # type: ignore[assignment]

    def is_in(self, values: Iterable[Any]) -> Condition:
        """The field equals one of ``values`` (any list element, for list fields)."""
        return Condition.make(self.path, Operator.IN, values)

    def not_in(self, values: Iterable[Any]) -> Condition:
        """The complement of :meth:`is_in` (true on missing fields)."""
        return Condition.make(self.path, Operator.NOT_IN, values)

    def between(self, low: Any, high: Any) -> Condition:
        """``low <= value <= high``, inclusive, both bounds of one kind."""
        return Condition.make(self.path, Operator.BETWEEN, (low, high))

    def like(self, pattern: str) -> Condition:
        """The whole string matches ``pattern`` (``%`` any run, ``_`` one character, ``\\``
        escapes); case-sensitive."""
        return Condition.make(self.path, Operator.LIKE, pattern)

    def not_like(self, pattern: str) -> Condition:
        """The complement of :meth:`like` (true on missing fields)."""
        return Condition.make(self.path, Operator.NOT_LIKE, pattern)

    def starts_with(self, prefix: str) -> Condition:
        """The string begins with the literal ``prefix``."""
        return Condition.make(self.path, Operator.STARTS_WITH, prefix)

    def exists(self) -> Condition:
        """The field has at least one non-null value."""
        return Condition.make(self.path, Operator.EXISTS)

    def not_exists(self) -> Condition:
        """The field is missing, null, or an empty list (the complement of :meth:`exists`)."""
        return Condition.make(self.path, Operator.NOT_EXISTS)


# -- dict / JSON form ------------------------------------------------------------------------
def _value_to_json(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, tuple):
        return [_value_to_json(v) for v in value]
    return value


def _value_from_json(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        if set(value) != {"$datetime"} or not isinstance(value["$datetime"], str):
            raise QueryError(f"{where}: objects are not filter values (only {{'$datetime': iso}})")
        try:
            return datetime.fromisoformat(value["$datetime"])
        except ValueError:
            raise QueryError(f"{where}: bad ISO datetime {value['$datetime']!r}") from None
    if isinstance(value, list):
        return [_value_from_json(v, where) for v in value]
    return value


def filter_to_dict(node: Filter) -> dict[str, Any]:
    """JSON-safe form of a filter tree; :func:`parse_filter` reverses it exactly."""
    if isinstance(node, Condition):
        out: dict[str, Any] = {"field": node.field, "op": node.op.value}
        if node.value is not None:
            out["value"] = _value_to_json(node.value)
        return out
    if isinstance(node, And):
        return {"and": [filter_to_dict(c) for c in node.children]}
    if isinstance(node, Or):
        return {"or": [filter_to_dict(c) for c in node.children]}
    return {"not": filter_to_dict(node.child)}


def parse_filter(data: Any, where: str = "filter") -> Filter:
    """Parse ``{"field", "op", "value"}``, ``{"and": [...]}``, ``{"or": [...]}``, ``{"not": {}}``.

    Anything else raises :class:`QueryError` naming where in the document the problem is.
    """
    if isinstance(data, Condition | And | Or | Not):
        return data
    if not isinstance(data, Mapping):
        raise QueryError(f"{where}: expected an object, got {type(data).__name__}")
    keys = set(data)
    if keys in ({"and"}, {"or"}):
        (key,) = keys
        children = data[key]
        if not isinstance(children, list) or not children:
            raise QueryError(f"{where}.{key}: expected a non-empty list of filters")
        parsed = [parse_filter(c, f"{where}.{key}[{i}]") for i, c in enumerate(children)]
        return And(tuple(parsed)) if key == "and" else Or(tuple(parsed))
    if keys == {"not"}:
        return Not(parse_filter(data["not"], f"{where}.not"))
    if (
        "field" in keys
        and ("op" in keys or "operator" in keys)
        and keys
        <= {
            "field",
            "op",
            "operator",
            "value",
        }
    ):
        op = data.get("op", data.get("operator"))
        try:
            return Condition.make(data["field"], op, _value_from_json(data.get("value"), where))
        except InvalidTextError:
            raise  # names its field already (and takes the field as its own argument)
        except QueryError as exc:
            raise type(exc)(f"{where}: {exc}") from None
    raise QueryError(
        f"{where}: expected {{'field', 'op', 'value'}} or one of 'and'/'or'/'not', got keys "
        f"{sorted(map(str, keys))}"
    )


# -- sorting and the query -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SortSpec:
    """One sort key: a field path, a direction, and where nulls go."""

    field: str
    descending: bool = False
    nulls: Literal["first", "last"] = "last"

    def __post_init__(self) -> None:
        _validate_path(self.field)
        if self.nulls not in ("first", "last"):
            raise QueryError(f"sort on {self.field!r}: nulls must be 'first' or 'last'")
        if not isinstance(self.descending, bool):
            raise QueryError(f"sort on {self.field!r}: descending must be a bool")

    def to_dict(self) -> dict[str, Any]:
        """``{'field', 'order', 'nulls'}``, as :meth:`from_dict` reads it."""
        return {
            "field": self.field,
            "order": "desc" if self.descending else "asc",
            "nulls": self.nulls,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "sort") -> SortSpec:
        """Parse ``{'field', 'order': 'asc'|'desc', 'nulls': 'last'|'first'}``; ``where`` names
        it in errors."""
        if (
            not isinstance(data, Mapping)
            or "field" not in data
            or not set(data)
            <= {
                "field",
                "order",
                "nulls",
            }
        ):
            raise QueryError(f"{where}: expected {{'field', 'order', 'nulls'}}, got {data!r}")
        order = data.get("order", "asc")
        if order not in ("asc", "desc"):
            raise QueryError(f"{where}: order must be 'asc' or 'desc', got {order!r}")
        return cls(data["field"], order == "desc", data.get("nulls", "last"))


def _non_negative_int(name: str, value: Any, minimum: int = 0) -> int:
    """``value`` as an int >= ``minimum``; numpy integers are accepted as ints here."""
    plain = int(value) if isinstance(value, np.integer) else value
    return checked_int(name, plain, minimum, error=QueryError)


class Query:
    """An immutable query: filter tree, sort keys, offset, limit, projection.

    Builder methods return a new query, so a base query can be shared and refined safely.
    ``filter()`` ANDs a condition onto the tree; use :class:`F`, :func:`any_of`, :func:`not_` or
    :meth:`where` for anything else.

    >>> q = Query().filter("year", ">=", 2020).sort("year", descending=True).limit(10)
    >>> Query.from_dict(q.to_dict()) == q
    True
    """

    __slots__ = ("condition", "projection", "skip", "sort_by", "take")

    condition: Filter | None
    sort_by: tuple[SortSpec, ...]
    take: int | None
    skip: int
    projection: tuple[str, ...] | None

    def __init__(
        self,
        condition: Filter | Mapping[str, Any] | None = None,
        *,
        sort_by: Iterable[SortSpec] = (),
        limit: int | None = None,
        offset: int = 0,
        fields: Iterable[str] | None = None,
    ) -> None:
        self.condition = None if condition is None else parse_filter(condition)
        self.sort_by = tuple(sort_by)
        for s in self.sort_by:
            if not isinstance(s, SortSpec):
                raise QueryError(f"sort keys must be SortSpec, got {s!r}")
        self.take = None if limit is None else _non_negative_int("limit", limit)
        self.skip = _non_negative_int("offset", offset)
        if fields is not None and isinstance(fields, str):
            fields = (fields,)
        self.projection = None if fields is None else tuple(_validate_path(f) for f in fields)
        if self.projection is not None and any("." in f for f in self.projection):
            raise QueryError("select() takes top-level field names, not paths")

    def _replace(self, **changes: Any) -> Query:
        values: dict[str, Any] = {
            "condition": self.condition,
            "sort_by": self.sort_by,
            "limit": self.take,
            "offset": self.skip,
            "fields": self.projection,
        }
        values.update(changes)
        condition = values.pop("condition")
        return Query(condition, **values)

    def filter(self, field: str, op: Operator | str, value: Any = None) -> Query:
        """AND ``field op value`` onto the filter."""
        return self.where(Condition.make(field, op, value))

    def where(self, node: Filter | Mapping[str, Any]) -> Query:
        """AND an arbitrary filter tree (or its dict form) onto the filter."""
        parsed = parse_filter(node)
        return self._replace(
            condition=parsed if self.condition is None else all_of(self.condition, parsed)
        )

    def sort(
        self, field: str, *, descending: bool = False, nulls: Literal["first", "last"] = "last"
    ) -> Query:
        """Add a sort key after the existing ones."""
        return self._replace(sort_by=(*self.sort_by, SortSpec(field, descending, nulls)))

    def limit(self, n: int | None) -> Query:
        """At most ``n`` results (``None``: no limit); applied after sorting and ``offset``."""
        return self._replace(limit=n)

    def offset(self, n: int) -> Query:
        """Skip the first ``n`` results (after sorting)."""
        return self._replace(offset=n)

    def select(self, *fields: str) -> Query:
        """Return only these top-level fields (plus the id)."""
        return self._replace(fields=fields)

    def similar_to(
        self,
        vector: Any,
        *,
        field: str | None = None,
        k: int = 10,
        metric: DistanceMetric | str | None = None,
        score_threshold: float | None = None,
    ) -> VectorQuery:
        """A vector query that keeps this query's filter (sort and paging don't apply to kNN)."""
        if self.sort_by or self.take is not None or self.skip or self.projection is not None:
            raise QueryError("similar_to() keeps only the filter; remove sort/limit/offset/select")
        return VectorQuery.make(
            vector,
            field=field,
            k=k,
            metric=metric,
            score_threshold=score_threshold,
            filter=self.condition,
        )

    @property
    def is_filter_only(self) -> bool:
        """Whether the query has only a filter (no sort, paging or projection)."""
        return not self.sort_by and self.take is None and not self.skip and self.projection is None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe; :meth:`from_dict` gives back an equal query."""
        return {
            "filter": None if self.condition is None else filter_to_dict(self.condition),
            "sort": [s.to_dict() for s in self.sort_by],
            "limit": self.take,
            "offset": self.skip,
            "fields": None if self.projection is None else list(self.projection),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Query:
        """Parse ``{'filter', 'sort', 'limit', 'offset', 'fields'}`` (JSON-shaped) into a
        validated query."""
        if not isinstance(data, Mapping):
            raise QueryError(f"a query must be an object, got {type(data).__name__}")
        unknown = set(data) - {"filter", "sort", "limit", "offset", "fields"}
        if unknown:
            raise QueryError(f"unknown query keys {sorted(unknown)}")
        sort = data.get("sort") or []
        if not isinstance(sort, list):
            raise QueryError("query.sort must be a list")
        fields = data.get("fields")
        if fields is not None and not isinstance(fields, list):
            raise QueryError("query.fields must be a list or null")
        return cls(
            None if data.get("filter") is None else parse_filter(data["filter"]),
            sort_by=[SortSpec.from_dict(s, f"sort[{i}]") for i, s in enumerate(sort)],
            limit=data.get("limit"),
            offset=data.get("offset", 0),
            fields=fields,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Query):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Query({self.to_dict()!r})"


#: The plan's name for a query with boolean logic. One class serves both: the filter tree
#: already nests AND / OR / NOT, so a separate class would only duplicate the builder.
ComplexQuery = Query


@dataclass(frozen=True, slots=True)
class VectorQuery:
    """A validated k-nearest-neighbour request.

    ``field=None`` means "the store's only vector field"; ``metric=None`` means "the metric
    configured for the field". The filter is applied *before* ranking, so up to ``k`` matching
    records come back; ``score_threshold`` then drops hits scoring below it.
    """

    vector: npt.NDArray[np.float32]
    k: int = 10
    field: str | None = None
    metric: DistanceMetric | None = None
    score_threshold: float | None = None
    filter: Filter | None = None

    @staticmethod
    def make(
        vector: Any,
        *,
        field: str | None = None,
        k: int = 10,
        metric: DistanceMetric | str | None = None,
        score_threshold: float | None = None,
        filter: Query | Filter | Mapping[str, Any] | None = None,
    ) -> VectorQuery:
        """A validated vector query (the vector checked, the metric and filter parsed)."""
        options = knn_options(field, k, metric, score_threshold, filter)
        return VectorQuery(as_vector(field or "query vector", vector), *options)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the vector as a list), as :meth:`from_dict` reads it."""
        return {
            "vector": self.vector.tolist(),
            "k": self.k,
            "field": self.field,
            "metric": None if self.metric is None else self.metric.value,
            "score_threshold": self.score_threshold,
            "filter": None if self.filter is None else filter_to_dict(self.filter),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VectorQuery:
        """Parse ``{'vector', 'k', 'field', 'metric', 'score_threshold', 'filter'}``."""
        if not isinstance(data, Mapping) or "vector" not in data:
            raise QueryError("a vector query needs at least 'vector'")
        unknown = set(data) - {"vector", "k", "field", "metric", "score_threshold", "filter"}
        if unknown:
            raise QueryError(f"unknown vector query keys {sorted(unknown)}")
        return cls.make(
            data["vector"],
            field=data.get("field"),
            k=data.get("k", 10),
            metric=data.get("metric"),
            score_threshold=data.get("score_threshold"),
            filter=data.get("filter"),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VectorQuery):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


KnnOptions: TypeAlias = tuple[int, str | None, DistanceMetric | None, float | None, Filter | None]


def knn_options(
    field: str | None,
    k: int,
    metric: DistanceMetric | str | None,
    score_threshold: float | None,
    filter: Query | Filter | Mapping[str, Any] | None,
) -> KnnOptions:
    """Validate everything of a kNN request except the vector: ``(k, field, metric, threshold,
    filter)``, in :class:`VectorQuery` field order."""
    if field is not None:
        _validate_path(field)
        if "." in field:
            raise QueryError(f"vector field {field!r} must be a top-level field name")
    kk = _non_negative_int("k", k, minimum=1)
    met = None if metric is None else DistanceMetric.parse(metric)
    threshold: float | None = None
    if score_threshold is not None:
        if isinstance(score_threshold, bool) or not isinstance(
            score_threshold, int | float | np.floating
        ):
            raise QueryError(f"score_threshold must be a number, got {score_threshold!r}")
        threshold = float(score_threshold)
        if not math.isfinite(threshold):
            raise QueryError("score_threshold must be finite")
    return kk, field, met, threshold, coerce_filter(filter)


def coerce_filter(value: Query | Filter | Mapping[str, Any] | None) -> Filter | None:
    """Accept a filter as a tree, its dict form, or a filter-only :class:`Query`.

    A query carrying sort/paging/projection is refused: those would be silently ignored where
    only a filter applies (e.g. ``vector_search(filter=...)``).
    """
    if value is None:
        return None
    if isinstance(value, Query):
        if not value.is_filter_only:
            raise QueryError(
                "only the filter of this query would be used; remove sort/limit/offset/select"
            )
        return value.condition
    return parse_filter(value)
