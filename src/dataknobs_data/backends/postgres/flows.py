"""The PostgreSQL backend's reads, written once as generators of steps for two drivers.

A flow yields what it needs done on a connection and is sent the answer back:

* ``("rows", statement, params)``: run the statement; the flow receives its rows;
* ``("settings", values, None)``: give the connection these pgvector settings
  (:meth:`SessionSettings.statements` says what to run, if anything); the flow receives ``[]``.

Everything else lives here: which statements, the re-read of the stored schema when another
writer may have changed it, the row handling (through :class:`Reads`), and the retry once when
that happened during the read. The blocking backend (:mod:`.backend`) and the asyncio one
(:mod:`.aio`) are only drivers: a loop that executes steps on a pooled cursor and, when a
statement fails, reports the package's error (:meth:`Reads.translate`) into the flow, which
either lets it propagate or tries again, on a fresh connection. A generator costs a
microsecond or two per call, nothing next to a round trip.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, Protocol, TypeVar

import psycopg
from psycopg import sql

from ...contract import VectorSearchRequest
from ...errors import BackendError, DataknobsDataError
from ...query import Filter, Query
from ...records import Record
from ...vector.types import DistanceMetric, VectorSearchResult
from .knn import Plan, Step, candidate_steps, settings_sql

__all__ = [
    "ROWS",
    "Flow",
    "Reads",
    "SessionSettings",
    "contains",
    "count",
    "get",
    "records",
    "rows",
    "search",
    "vector_search",
]

T = TypeVar("T")
Row = tuple[Any, ...]
#: A read: steps out, rows in, its result returned (``StopIteration.value``).
Flow = Generator[Step, list[Row], T]
#: The step kind whose statement's rows go back to the flow (the other kind is "settings").
ROWS = "rows"


class Reads(Protocol):
    """What the flows ask of the backend: its schema state, the statements it builds, and
    what it makes of the rows. All pure; the drivers do the I/O."""

    @property
    def stale(self) -> bool:
        """Whether the stored schema must be re-read before the next statement."""

    def mark_stale(self) -> None: ...

    def translate(self, exc: psycopg.Error) -> DataknobsDataError: ...

    def meta_query(self) -> tuple[sql.Composed, tuple[str]]: ...

    def apply_meta(self, rows: Sequence[Row]) -> None: ...

    def fetch_query(self, ids: Sequence[str]) -> tuple[sql.Composed, tuple[list[str]]]: ...

    def existing_query(self, ids: Sequence[str]) -> tuple[sql.Composed, tuple[list[str]]]: ...

    def select_query(self, query: Query) -> tuple[sql.Composed, dict[str, Any]]: ...

    def count_query(self, condition: Filter | None) -> tuple[sql.Composed, dict[str, Any]]: ...

    def assemble(self, ids: Sequence[str], rows: Sequence[Row]) -> list[Record | None]: ...

    def build(self, rows: Sequence[Row], fields: tuple[str, ...] | None = None) -> list[Record]: ...

    def knn_plan(self, request: VectorSearchRequest) -> tuple[str, DistanceMetric, Plan]: ...

    def ranked(
        self,
        found: tuple[list[Row], bool],
        field: str,
        metric: DistanceMetric,
        query: Any,
        request: VectorSearchRequest,
    ) -> list[VectorSearchResult]: ...


class SessionSettings:
    """The pgvector settings each pooled connection has, so that a search runs a settings
    statement only when they change (they are session-wide: see :func:`.knn.settings_sql`).
    One per pool; connections are forgotten when the pool drops them."""

    def __init__(self) -> None:
        self._known: weakref.WeakKeyDictionary[Any, dict[str, str]] = weakref.WeakKeyDictionary()

    def statements(self, connection: Any, values: dict[str, str]) -> Iterator[sql.Composed]:
        """The statement that gives ``connection`` these values, if it lacks any; they count
        as applied only when the caller comes back for more, i.e. after the statement ran."""
        known = self._known.setdefault(connection, {})
        todo = {k: v for k, v in values.items() if known.get(k) != v}
        if todo:
            yield settings_sql(todo)
            known.update(todo)


def _attempt(state: Reads, body: Callable[[], Flow[T]]) -> Flow[T]:
    """One try on one connection: the stored schema first if it may be out of date; after any
    failure it is re-read before the next statement."""
    try:
        if state.stale:
            state.apply_meta((yield (ROWS, *state.meta_query())))
        return (yield from body())
    except BaseException:
        state.mark_stale()
        raise


def _retrying(state: Reads, body: Callable[[], Flow[T]]) -> Flow[T]:
    """:func:`_attempt`, once more with a fresh schema if another writer changed it meanwhile
    (the failure left the schema stale; any other failure propagates)."""
    try:
        return (yield from _attempt(state, body))
    except BackendError:
        if not state.stale:
            raise
        return (yield from _attempt(state, body))


def get(state: Reads, ids: Sequence[str]) -> Flow[list[Record | None]]:
    """Records for ``ids`` in order (``None`` where missing; each id fetched once)."""

    def body() -> Flow[list[Record | None]]:
        found = yield (ROWS, *state.fetch_query(list(dict.fromkeys(ids))))
        return state.assemble(ids, found)

    return _retrying(state, body)


def records(state: Reads, ids: Sequence[str], fields: tuple[str, ...] | None) -> Flow[list[Record]]:
    """The stored records among ``ids`` (in no particular order), projected to ``fields``."""

    def body() -> Flow[list[Record]]:
        return state.build((yield (ROWS, *state.fetch_query(ids))), fields)

    return _retrying(state, body)


def contains(state: Reads, ids: Sequence[str]) -> Flow[list[bool]]:
    def body() -> Flow[list[bool]]:
        known = {r[0] for r in (yield (ROWS, *state.existing_query(ids)))}
        return [i in known for i in ids]

    return _attempt(state, body)


def search(state: Reads, query: Query) -> Flow[list[Record]]:
    def body() -> Flow[list[Record]]:
        return state.build((yield (ROWS, *state.select_query(query))), query.projection)

    return _retrying(state, body)


def count(state: Reads, condition: Filter | None) -> Flow[int]:
    def body() -> Flow[int]:
        found = yield (ROWS, *state.count_query(condition))
        return int(found[0][0])

    return _attempt(state, body)


def rows(state: Reads, stmt: sql.Composed, params: Any) -> Flow[list[Row]]:
    """The rows of one statement (no retry: the caller's rows do not depend on the schema)."""

    def body() -> Flow[list[Row]]:
        return (yield (ROWS, stmt, params))

    return _attempt(state, body)


def vector_search(
    state: Reads, request: VectorSearchRequest
) -> Flow[list[list[VectorSearchResult]]]:
    """Each query's hits: :func:`.knn.candidate_steps`' statements, then the backend's ranking."""

    def body() -> Flow[list[list[VectorSearchResult]]]:
        field, metric, plan = state.knn_plan(request)
        out = []
        for query in request.vectors:
            found = yield from candidate_steps(plan, query, request.k)
            out.append(state.ranked(found, field, metric, query, request))
        return out

    return _retrying(state, body)
