"""Engine seams: the engine objects a write calls into, named for fault injection.

Defined at the engine level so that engine code shared by the Database backends and the
VectorStore API (the chroma intent log) can list its own seams once for both; the backend
contract re-exports :class:`EngineSeam`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["EngineSeam"]


@dataclass(frozen=True, slots=True)
class EngineSeam:
    """One engine object a backend's writes call into, named so it can be swapped for a
    proxy: the attribute ``key`` of ``owner`` (or its item, when ``owner`` is a dict).

    The conformance suite's fault injection (:mod:`dataknobs_data.testing.faults`) replaces
    it for the length of one write by a proxy that forwards every call to the real object
    and raises ``error`` at the N-th; production code never looks at seams.
    ``wrapped`` says whether the backend promises to turn that error into a
    :class:`~dataknobs_data.errors.DataknobsDataError` (driver errors) or lets it pass as it
    is (e.g. ``MemoryError`` from the memory backend's numpy columns).
    """

    name: str
    owner: Any
    key: str
    error: type[BaseException]
    wrapped: bool = True
