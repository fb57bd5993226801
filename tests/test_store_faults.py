"""The VectorStore API under injected engine failures: a failed add, upsert or delete leaves
count, reads and search exactly as before, its retry succeeds, and a store with a path holds
the same after close + reopen (:mod:`dataknobs_data.testing.faults`: proxies around the real
faiss index, chroma collection and file writers the store lists in ``engine_seams()``).

Run on the faiss and chroma stores, in memory and on disk, through the blocking API and
through :class:`~dataknobs_data.vector.stores.base.AsyncVectorStore`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dataknobs_data.errors import DataknobsDataError
from dataknobs_data.query import F
from dataknobs_data.testing import import_or_skip
from dataknobs_data.testing.faults import FaultPlan, fault_points, injected
from dataknobs_data.vector.stores import VectorStoreFactory
from dataknobs_data.vector.stores.base import AsyncVectorStore, VectorStore

DIM = 6
X = np.random.default_rng(7).normal(size=(40, DIM)).astype(np.float32)
BASE = [f"v{i:02d}" for i in range(20)]

#: name -> (method, args): the writes, on a store holding BASE
WRITES: dict[str, tuple[str, tuple[Any, ...]]] = {
    "add": ("add", ([f"n{i}" for i in range(5)], X[20:25], [{"i": i} for i in range(5)])),
    "upsert": (
        "upsert",
        (["v01", "v02", "n1"], X[25:28], [{"i": 100}, None, {"i": 101, "new": True}]),
    ),
    "delete": ("delete", (["v03", "v04", "nosuch"],)),
}


def _open(engine: str, path: Path | None) -> VectorStore:
    import_or_skip(engine)
    return VectorStoreFactory.create(engine, dimensions=DIM, path=path, metric="l2")


def _load(engine: str, path: Path) -> VectorStore:
    return VectorStoreFactory.load(engine, path)


def _observe(store: VectorStore) -> tuple[Any, ...]:
    every = [*BASE, *(f"n{i}" for i in range(5))]
    got = [(s.id, s.vector.tolist(), s.metadata) if s else None for s in store.get(every)]
    hits = [(h.id, round(h.score, 5)) for h in store.search(X[0], 10)]
    filtered = [h.id for h in store.search(X[1], 10, filter=F("i") >= 3)]
    return store.count(), store.count(F("i") >= 10), got, hits, filtered


class _Runner:
    """Calls a store method directly, or through an AsyncVectorStore on a private loop."""

    def __init__(self, store: VectorStore, mode: str) -> None:
        self.store = store
        self.loop = asyncio.new_event_loop() if mode == "async" else None

    def __call__(self, method: str, *args: Any) -> Any:
        if self.loop is None:
            return getattr(self.store, method)(*args)
        wrapped = AsyncVectorStore(self.store)
        return self.loop.run_until_complete(getattr(wrapped, method)(*args))

    def close(self) -> None:
        if self.loop is not None:
            self.loop.close()


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _attempt(run: _Runner, plan: FaultPlan, write: Callable[[], Any]) -> BaseException | None:
    with injected(run.store, plan):
        try:
            write()
        except BaseException as exc:
            return exc
    return None


@pytest.mark.parametrize("engine", ["faiss", "chroma"])
@pytest.mark.parametrize("on_disk", [False, True])
@pytest.mark.parametrize("name", sorted(WRITES))
def test_store_write_failing_at_each_engine_call_leaves_no_trace(
    engine: str, on_disk: bool, name: str, mode: str, tmp_path: Path
) -> None:
    path = tmp_path / "store" if on_disk else None
    store = _open(engine, path)
    store.add(BASE, X[:20], [{"i": i} for i in range(20)])
    if path is not None and engine == "faiss":
        store.persist()  # faiss stores are durable at persist() and close()
    method, args = WRITES[name]
    cap = fault_points()
    failures = 0
    run = _Runner(store, mode)
    try:
        for point in range(1, 10_000):
            before = _observe(store)
            plan = FaultPlan(point if cap is None or point <= cap else None)
            failure = _attempt(run, plan, lambda: run(method, *args))
            if plan.fired is None:
                assert failure is None, failure
                break
            assert failure is not None, f"a failure at {plan.fired} was absorbed"
            assert isinstance(failure, DataknobsDataError), repr(failure)
            failures += 1
            assert _observe(store) == before, f"a failure at {plan.fired} left a trace"
            if path is not None:
                store.close()  # after a failed write: succeeds, keeps what was confirmed
                store = run.store = _load(engine, path)
                assert _observe(store) == before, f"{plan.fired}: reopening changed the store"
        assert failures > 0
        after = _observe(store)
        expected = _open(engine, None)
        try:
            expected.add(BASE, X[:20], [{"i": i} for i in range(20)])
            getattr(expected, method)(*args)
            assert after[:3] == _observe(expected)[:3]
        finally:
            expected.close()
    finally:
        run.close()
        store.close()
