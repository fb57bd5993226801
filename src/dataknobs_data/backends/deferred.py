"""Values computed once, late, but as of the moment they were asked for: the records behind
search hits.

A vector search hands out ids, scores and ranks at once. The records behind the hits are
read either when the caller first asks for one, or by the backend just before its next write,
whichever comes first (:meth:`DeferredRegistry.freeze_all`); either way a hit's record is
the record as it was when found.

Why late: right after an ANN search has streamed megabytes through the CPU caches, copying k
vectors and touching k stored records costs more than the search's own Python tail, and many
callers read only ids and scores (ranking, recall, fusion) or a few of the records. For an
engine with its own storage it also saves a round trip when nobody reads them.

Locking: the backend creates deferred values and freezes them under its own lock, and freezes
every live one before it changes anything. A reader computes one itself under the value's own
lock, after ``reader_lock`` when the computation needs the backend's lock (take them in that
order, as writers do, or a reader and a writer deadlock). Without a ``reader_lock`` a reader
never waits for a whole write: if a writer has not frozen its value yet, that writer has not
started changing data either, since it freezes everything first.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Generic, TypeVar

__all__ = ["Deferred", "DeferredRegistry"]

T = TypeVar("T")


class Deferred(Generic[T]):
    """``make()`` run once, by the first :meth:`get` or by the owner's :meth:`freeze`."""

    __slots__ = ("__weakref__", "_lock", "_make", "_reader_lock", "_value")

    def __init__(
        self, make: Callable[[], T], reader_lock: AbstractContextManager[object] | None
    ) -> None:
        self._make: Callable[[], T] | None = make
        self._lock = threading.Lock()
        self._reader_lock = reader_lock
        self._value: T | None = None

    def freeze(self) -> None:
        """Compute now (the owner calls this holding its own lock, before a write)."""
        with self._lock:
            if self._make is not None:
                self._value = self._make()
                self._make = None  # drops the references into the backend's data as well

    def get(self) -> T:
        if self._make is not None:
            with self._reader_lock or nullcontext():
                self.freeze()
        value = self._value
        assert value is not None
        return value


class DeferredRegistry:
    """The live deferred values of one backend, weakly held: results the caller has dropped
    cost nothing at the next write."""

    __slots__ = ("_live", "_reader_lock")

    def __init__(self, reader_lock: AbstractContextManager[object] | None = None) -> None:
        self._live: weakref.WeakSet[Deferred[object]] = weakref.WeakSet()
        self._reader_lock = reader_lock

    def new(self, make: Callable[[], T]) -> Deferred[T]:
        value = Deferred(make, self._reader_lock)
        self._live.add(value)  # type: ignore[arg-type]
        return value

    def freeze_all(self) -> None:
        """Compute every live value now (call holding the backend's lock, before a change)."""
        if self._live:
            for value in list(self._live):
                value.freeze()
            self._live.clear()
