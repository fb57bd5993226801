"""One blocking interface over both shells, so a single test body checks sync and async.

:class:`SyncView` wraps an :class:`~dataknobs_data.database.AsyncDatabase` and runs each of its
coroutines to completion on a private event loop; ``stream`` (an async generator there) becomes
an ordinary iterator. A :class:`~dataknobs_data.database.SyncDatabase` already has this shape and
is used as is. :class:`DatabaseLike` names the shape both share, for type hints in tests: it is
:class:`SyncDatabase`, so it never restates (or drifts from) the API.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar

from ..database import AsyncDatabase, SyncDatabase

__all__ = ["DatabaseLike", "Mode", "SyncView", "as_blocking"]

T = TypeVar("T")
Mode = Literal["sync", "async"]


#: The blocking database API, for type hints in tests: :class:`SyncDatabase` itself (derived
#: from the one written API, see :mod:`dataknobs_data.plans`), which :class:`SyncView` also is
#: as far as a type checker can tell.
DatabaseLike: TypeAlias = SyncDatabase

if TYPE_CHECKING:
    _Blocking = SyncDatabase
else:
    _Blocking = object


class SyncView(_Blocking):
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
        """Every coroutine method of the wrapped database run to completion, every async
        generator (``stream``) driven as an iterator, anything else (``capabilities``,
        ``vector_fields``...) as it is. Forwarding by name keeps the view in step with the
        shells instead of restating each signature here."""
        attr = getattr(self.inner, name)
        if inspect.isasyncgenfunction(attr):

            @functools.wraps(attr)
            def iterate(*args: Any, **kwargs: Any) -> Iterator[Any]:
                return self._drive(attr(*args, **kwargs))

            return iterate
        if not inspect.iscoroutinefunction(attr):
            return attr

        @functools.wraps(attr)
        def blocking(*args: Any, **kwargs: Any) -> Any:
            return self.run(attr(*args, **kwargs))

        return blocking

    def _drive(self, agen: AsyncIterator[T]) -> Iterator[T]:
        """The async generator driven one item at a time (lazy, like the sync shell's)."""
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
