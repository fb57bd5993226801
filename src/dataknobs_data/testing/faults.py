"""Fault injection around a backend's REAL engine objects: fail the N-th engine call of a write.

A backend lists the engine objects its writes call into (:meth:`Backend.engine_seams`: a
sqlite3 connection, a psycopg pool, chroma collections, faiss indexes, a journal file, a
numpy column). :func:`injected` swaps each for a :class:`_Proxy` for the length of one write;
the proxy forwards every method call (and ``with`` entry and exit) to the real object and
counts them across all seams, and at call ``N`` raises the seam's own error type instead, as
the engine would on a full disk, a lost connection or an out-of-memory. Objects returned by a
call (a cursor, a transaction, a copy) are proxied too, so their calls count as well. Nothing
is mocked: every call but the failing one reaches the engine.

A failure injected at a context manager's exit (a transaction's commit, a connection handed
back to its pool) first runs the real exit as if the block had raised it (the engine rolls
back), then raises it: what a commit that fails looks like from outside.

Used by :class:`~dataknobs_data.testing.conformance.faults.FaultTests`, which runs every
write with a failure at its 1st, 2nd, ... engine call until it completes without reaching
the failure. ``DATAKNOBS_FAULT_POINTS`` caps the points tried per write (default
:data:`DEFAULT_POINTS`; ``0`` means every point); ``DATAKNOBS_FAULT_REOPEN`` sets how often a
persistent store is closed and reopened between failures (default every 4th; ``1``: always).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from types import FunctionType, TracebackType
from typing import Any, Protocol

import numpy as np

from ..contract import Backend, EngineSeam
from ..database import SyncDatabase
from .adapter import DatabaseLike, SyncView

__all__ = [
    "DEFAULT_POINTS",
    "FAULT_POINTS_ENV",
    "FAULT_REOPEN_ENV",
    "FaultPlan",
    "HasSeams",
    "backend_of",
    "fault_points",
    "injected",
    "reopen_every",
]

FAULT_POINTS_ENV = "DATAKNOBS_FAULT_POINTS"
FAULT_REOPEN_ENV = "DATAKNOBS_FAULT_REOPEN"
DEFAULT_REOPEN_EVERY = 4
#: engine calls tried per write by default (enough for every write of the suite's small
#: batches on the shipped backends; a larger write's later calls repeat earlier kinds)
DEFAULT_POINTS = 40

_PLAIN = (
    str,
    bytes,
    bytearray,
    memoryview,
    int,
    float,
    complex,
    bool,
    type(None),
    list,
    tuple,
    dict,
    set,
    frozenset,
    np.ndarray,
    np.generic,
)


def reopen_every() -> int:
    """Close and reopen a persistent store after every N-th injected failure (the first
    always), from ``DATAKNOBS_FAULT_REOPEN`` (default :data:`DEFAULT_REOPEN_EVERY`)."""
    raw = os.environ.get(FAULT_REOPEN_ENV, "")
    return max(1, int(raw)) if raw.strip() else DEFAULT_REOPEN_EVERY


def fault_points() -> int | None:
    """The cap on injection points per write (``None``: no cap), from the environment."""
    raw = os.environ.get(FAULT_POINTS_ENV, "")
    value = int(raw) if raw.strip() else DEFAULT_POINTS
    return None if value <= 0 else value


class FaultPlan:
    """Counts engine calls across seams; raises at call ``at`` (``None``: never, just count)."""

    def __init__(self, at: int | None) -> None:
        self.at = at
        self.calls = 0
        #: off once the write is over: a proxy the backend kept somewhere new stays inert
        self.active = True
        #: what failed (seam and method), once the fault fired
        self.fired: str | None = None
        self.error: BaseException | None = None
        self.seam: EngineSeam | None = None

    def tick(self, seam: EngineSeam, what: str) -> None:
        if not self.active:
            return
        self.calls += 1
        if self.calls == self.at:
            self.fired = f"{seam.name}.{what}"
            self.seam = seam
            self.error = seam.error(f"injected fault at engine call {self.calls} ({self.fired})")
            raise self.error


class HasSeams(Protocol):
    """A backend or a vector store: anything that lists its engine seams."""

    def engine_seams(self) -> list[EngineSeam]: ...


def _wrap(value: Any, plan: FaultPlan, seam: EngineSeam) -> Any:
    if isinstance(value, (*_PLAIN, _Proxy)):
        return value
    return _Proxy(value, plan, seam)


class _Proxy:
    """Forwards to ``real``; every call counts and the planned one raises (module docstring)."""

    __slots__ = ("_plan", "_real", "_seam")

    def __init__(self, real: Any, plan: FaultPlan, seam: EngineSeam) -> None:
        object.__setattr__(self, "_real", real)
        object.__setattr__(self, "_plan", plan)
        object.__setattr__(self, "_seam", seam)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._real, name)
        if name.startswith("__") or not callable(attr) or isinstance(attr, type):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._plan.tick(self._seam, name)
            return _wrap(attr(*args, **kwargs), self._plan, self._seam)

        return call

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._real, name, value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._plan.tick(self._seam, getattr(self._real, "__name__", "__call__"))
        return _wrap(self._real(*args, **kwargs), self._plan, self._seam)

    def __enter__(self) -> Any:
        self._plan.tick(self._seam, "__enter__")
        return _wrap(self._real.__enter__(), self._plan, self._seam)

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Any:
        try:
            self._plan.tick(self._seam, "__exit__")
        except BaseException as fault:
            # the block "raised" the fault: let the engine clean up as it would, then fail
            self._real.__exit__(type(fault), fault, fault.__traceback__)
            raise
        return self._real.__exit__(kind, exc, tb)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._real)

    def __len__(self) -> int:
        return len(self._real)

    def __bool__(self) -> bool:
        return bool(self._real)

    def __repr__(self) -> str:
        return f"<fault proxy of {self._real!r}>"


def _get(seam: EngineSeam) -> Any:
    if isinstance(seam.owner, dict):
        return seam.owner[seam.key]
    return getattr(seam.owner, seam.key)


def _set(seam: EngineSeam, value: Any) -> None:
    if isinstance(seam.owner, dict):
        seam.owner[seam.key] = value
    else:
        setattr(seam.owner, seam.key, value)


@contextmanager
def injected(target: HasSeams, plan: FaultPlan) -> Iterator[list[EngineSeam]]:
    """Every seam of ``target`` (a backend or a vector store) proxied under ``plan`` inside
    the block; the real objects are put back afterwards (unless the target replaced one
    meanwhile, e.g. a new journal: then the replacement stays), and the plan goes inert."""
    seams = target.engine_seams()
    swapped: list[tuple[EngineSeam, Any, _Proxy | FunctionType]] = []
    try:
        for seam in seams:
            real = _get(seam)
            if real is None or isinstance(real, _Proxy):
                continue
            proxy = _Proxy(real, plan, seam)
            _set(seam, proxy)
            swapped.append((seam, real, proxy))
        yield seams
    finally:
        plan.active = False
        for seam, real, proxy in reversed(swapped):
            if isinstance(seam.owner, dict) and seam.key not in seam.owner:
                continue
            if _get(seam) is proxy:
                _set(seam, real)


def backend_of(db: DatabaseLike) -> Backend:
    """The backend behind either shell (a :class:`SyncView` wraps an ``AsyncDatabase``)."""
    if isinstance(db, SyncView):
        return db.inner.backend
    assert isinstance(db, SyncDatabase)
    return db.backend
