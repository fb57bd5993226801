"""One blocking interface over both shells, so a single test body checks sync and async.

:class:`SyncView` wraps an :class:`~dataknobs_data.database.AsyncDatabase` and runs each of its
coroutines to completion on a private event loop; ``stream`` (an async generator there) becomes
an ordinary iterator. A :class:`~dataknobs_data.database.SyncDatabase` already has this shape and
is used as is. :class:`DatabaseLike` names the shape both share, for type hints in tests.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Literal, Protocol, TypeVar

from ..capabilities import Capabilities
from ..database import AsyncDatabase, FilterLike, SyncDatabase
from ..query import Filter, Query
from ..records import Record
from ..vector.types import DistanceMetric, VectorConfig, VectorSearchResult

__all__ = ["DatabaseLike", "Mode", "SyncView", "as_blocking"]

T = TypeVar("T")
Mode = Literal["sync", "async"]
QueryLike = Query | Filter | Mapping[str, Any] | None


class DatabaseLike(Protocol):
    """The blocking database API: :class:`SyncDatabase` and :class:`SyncView` both have it."""

    def create(self, record: Record) -> str: ...
    def create_batch(self, records: Iterable[Record]) -> list[str]: ...
    def read(self, record_id: str) -> Record | None: ...
    def read_batch(self, ids: Iterable[str]) -> list[Record | None]: ...
    def exists(self, record_id: str) -> bool: ...
    def update(self, record_id: str, record: Record) -> bool: ...
    def update_batch(self, records: Iterable[Record]) -> list[bool]: ...
    def upsert(self, record: Record) -> str: ...
    def upsert_batch(self, records: Iterable[Record]) -> list[str]: ...
    def delete(self, record_id: str) -> bool: ...
    def delete_batch(self, ids: Iterable[str]) -> list[bool]: ...
    def clear(self) -> int: ...
    def search(self, query: QueryLike = None) -> list[Record]: ...
    def count(self, query: QueryLike = None) -> int: ...
    def stream(self, query: FilterLike = None, *, batch_size: int = 1000) -> Iterator[Record]: ...
    def vector_search(
        self,
        vector: Any,
        *,
        field: str | None = None,
        k: int = 10,
        metric: DistanceMetric | str | None = None,
        filter: FilterLike = None,
        score_threshold: float | None = None,
        model: str | None = None,
    ) -> list[VectorSearchResult]: ...
    def vector_search_batch(
        self,
        vectors: Any,
        *,
        field: str | None = None,
        k: int = 10,
        metric: DistanceMetric | str | None = None,
        filter: FilterLike = None,
        score_threshold: float | None = None,
        model: str | None = None,
    ) -> list[list[VectorSearchResult]]: ...
    def declare_vector_field(self, name: str, config: VectorConfig) -> None: ...
    def capabilities(self) -> Capabilities: ...
    def vector_fields(self) -> dict[str, VectorConfig]: ...
    def close(self) -> None: ...
    def __enter__(self) -> DatabaseLike: ...
    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class SyncView:
    """Blocking calls into an :class:`AsyncDatabase`, each awaited on a private event loop.

    The loop is dedicated to this view, so it works from plain (non-async) test functions and
    never touches a loop owned by pytest-asyncio. Call :meth:`release` when done (it closes the
    loop and its default executor, which ``asyncio.to_thread`` uses).
    """

    mode: Mode = "async"

    def __init__(self, database: AsyncDatabase) -> None:
        if not isinstance(database, AsyncDatabase):
            raise TypeError(f"SyncView wraps an AsyncDatabase, got {type(database).__name__}")
        self.inner = database
        self._loop = asyncio.new_event_loop()

    def run(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` on this view's loop and return its result."""
        return self._loop.run_until_complete(awaitable)

    def release(self) -> None:
        """Close the private loop (idempotent)."""
        if self._loop.is_closed():
            return
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.run_until_complete(self._loop.shutdown_default_executor())
        self._loop.close()

    # -- the database API -----------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        """Every coroutine method of the wrapped database, run to completion; anything else
        (``capabilities``, ``vector_fields``...) as it is. Forwarding by name keeps the view in
        step with the shells' contract instead of restating each signature here."""
        attr = getattr(self.inner, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        @functools.wraps(attr)
        def blocking(*args: Any, **kwargs: Any) -> Any:
            return self.run(attr(*args, **kwargs))

        return blocking

    def stream(self, query: FilterLike = None, *, batch_size: int = 1000) -> Iterator[Record]:
        """The async generator driven one item at a time (lazy, like the sync shell's)."""
        agen = self.inner.stream(query, batch_size=batch_size)
        try:
            while True:
                try:
                    item = self.run(agen.__anext__())
                except StopAsyncIteration:
                    return
                yield item
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None:
                self.run(aclose())

    def close(self) -> None:
        self.run(self.inner.close())

    def __enter__(self) -> SyncView:
        entered = self.run(self.inner.__aenter__())
        if entered is not self.inner:
            raise AssertionError("AsyncDatabase.__aenter__ must return the database itself")
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.run(self.inner.__aexit__(et, ev, tb))

    def __repr__(self) -> str:
        return f"SyncView({self.inner!r})"


def as_blocking(database: SyncDatabase | AsyncDatabase) -> DatabaseLike:
    """The database itself if it is synchronous, else a :class:`SyncView` over it."""
    if isinstance(database, SyncDatabase):
        return database
    return SyncView(database)
