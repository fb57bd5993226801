"""The PostgreSQL backend's reads, written once as generators of steps for two drivers.

A flow yields what it needs done on a connection and is sent the answer back:

* ``("rows", statement, params)``: run the statement; the flow receives its rows;
* ``("settings", values, None)``: give the connection these pgvector settings (if it does not
  have them yet: :class:`SessionSettings`); the flow receives ``[]``.

Everything else lives here: which statements, the re-read of the stored schema when another
writer may have changed it, the row handling (through :class:`Reads`), the retry once when that
happened during the read, and the bookkeeping of driving a flow (:class:`Run`). The blocking
backend (:mod:`.backend`) and the asyncio one (:mod:`.aio`) hold only the I/O: a pooled
connection, on which they execute each :meth:`Run.statement` and send back its rows, and the
failure of a statement, which they hand to :meth:`Run.fail`; the flow then lets the error
propagate or tries again, on a fresh connection. The generators cost a microsecond or two per
call, nothing next to a round trip.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Generator, Sequence
from typing import Any, Generic, Protocol, TypeVar

import psycopg
from psycopg import sql

from ...contract import VectorSearchRequest
from ...errors import BackendError, DataknobsDataError
from ...query import Filter, Query
from ...records import Record
from ...vector.types import DistanceMetric, VectorSearchResult
from ..sql.postgres import one_shot
from .knn import Plan, Step, candidate_steps, settings_sql

__all__ = [
    "ROWS",
    "Flow",
    "Reads",
    "Run",
    "SessionSettings",
    "contains",
    "count",
    "prepare_option",
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

    def default_query(self, request: VectorSearchRequest) -> tuple[sql.Composed, Any] | None: ...

    def vector_fields(self) -> Sequence[str]: ...

    @property
    def known_default(self) -> tuple[bool, str | None]: ...

    def remember_default(self, value: str | None) -> None: ...

    def knn_plan(
        self, request: VectorSearchRequest, default: str | None = None, *, confirm: bool = False
    ) -> tuple[str, DistanceMetric, Plan]: ...

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

    def missing(self, connection: Any, values: dict[str, str]) -> dict[str, str]:
        """The settings among ``values`` that ``connection`` does not have yet."""
        known = self._known.setdefault(connection, {})
        return {k: v for k, v in values.items() if known.get(k) != v}

    def applied(self, connection: Any, values: dict[str, str]) -> None:
        self._known.setdefault(connection, {}).update(values)

    def forget(self, connection: Any) -> None:
        """``connection``'s settings are unknown again (a rolled-back transaction or savepoint
        undid the ``set_config`` calls made in it)."""
        self._known.pop(connection, None)


class Run(Generic[T]):
    """A flow being driven: what the two drivers share, so that each holds only its I/O.

    A driver takes a pooled connection, runs each :meth:`statement` on it and hands its rows
    to :meth:`send`, until ``pending`` is false; then ``result`` is the flow's answer. When a
    statement fails, the driver lets go of the connection and calls :meth:`fail`, which raises
    or leaves the flow's retry pending (for a fresh connection). Used as a context manager, it
    closes the flow however the driver exits (an interrupted flow marks the schema stale).
    """

    __slots__ = ("_flow", "_setting", "_settings", "_state", "_step", "pending", "result")
    result: T

    def __init__(self, state: Reads, settings: SessionSettings, flow: Flow[T]) -> None:
        self._state, self._settings, self._flow = state, settings, flow
        self._setting: tuple[Any, dict[str, str]] | None = None  # settings being applied
        self._step: Step = (ROWS, None, None)
        self.pending = True
        self._advance(flow.send, None)

    def __enter__(self) -> Run[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self._flow.close()

    def statement(self, connection: Any) -> tuple[Any, Any] | None:
        """The next statement and parameters to run on ``connection`` (``None``: done). A
        settings step becomes the statement that gives the connection those settings, or is
        answered at once if it has them."""
        while self.pending:
            kind, stmt, params = self._step
            if kind == ROWS:
                return stmt, params
            missing = self._settings.missing(connection, stmt)
            if missing:
                self._setting = (connection, missing)
                return settings_sql(missing), None
            self._advance(self._flow.send, [])
        return None

    def send(self, found: list[Row]) -> None:
        """The rows of the last :meth:`statement`."""
        if self._setting is not None:
            self._settings.applied(*self._setting)
            self._setting, found = None, []
        self._advance(self._flow.send, found)

    def fail(self, exc: psycopg.Error) -> None:
        """The last statement failed: the package's error goes into the flow."""
        error = self._state.translate(exc)
        error.__cause__ = exc
        self._setting = None
        self._advance(self._flow.throw, error)

    def _advance(self, resume: Callable[[Any], Step], value: Any) -> None:
        try:
            self._step = resume(value)
        except StopIteration as done:
            self.pending, self.result = False, done.value


def prepare_option(params: Any) -> bool | None:
    """psycopg's ``prepare=`` for a statement with ``params``: ``False`` (plan with the values)
    when it holds a membership array (:func:`..sql.postgres.one_shot`), else its default."""
    return False if one_shot(params) else None


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
    """Each query's hits: :func:`.knn.candidate_steps`' statements, then the backend's ranking.

    An unnamed search (``field=None``) follows the stored default vector field, so a switch
    by any process is seen by the next search: the default this object last saw is checked
    inside the search's own statements (no rows unless it is still stored); only when they
    return no rows is the default read (one more statement) and, if it moved, the search run
    again on the new field. The first unnamed search reads it first.
    """

    def _default(lookup: tuple[sql.Composed, Any]) -> Flow[str | None]:
        stored = yield (ROWS, *lookup)
        value = str(stored[0][0]) if stored else None
        state.remember_default(value)
        return value

    def body() -> Flow[list[list[VectorSearchResult]]]:
        lookup = state.default_query(request)
        default, confirm = None, False
        if lookup is not None:
            known, default = state.known_default
            confirm = known
            if not known:
                default = yield from _default(lookup)
        while True:
            fields = state.vector_fields()
            wanted = request.field or default
            if wanted not in (None, *fields) or (wanted is None and len(fields) != 1):
                # A field another process declared since this one read the schema (or,
                # unnamed, no single field to use yet): read the schema again first.
                state.apply_meta((yield (ROWS, *state.meta_query())))
            try:
                field, metric, plan = state.knn_plan(request, default, confirm=confirm)
            except DataknobsDataError:
                if not confirm:
                    raise
                # Refused for the field last seen as the default (dimensions, model): the
                # default may have moved since; decide on the stored one.
                assert lookup is not None
                default, confirm = (yield from _default(lookup)), False
                continue
            found = []
            for query in request.vectors:
                found.append((yield from candidate_steps(plan, query, request.k)))
            if lookup is not None and confirm and any(not rows for rows, _ in found):
                now = yield from _default(lookup)
                if now != default:  # switched since this object last looked: again
                    default, confirm = now, False
                    continue
            return [
                state.ranked(f, field, metric, q, request)
                for f, q in zip(found, request.vectors, strict=True)
            ]

    return _retrying(state, body)
