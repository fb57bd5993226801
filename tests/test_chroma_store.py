"""ChromaVectorStore on a real chroma (in memory, or a directory for persistence)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dataknobs_data.errors import (
    BackendUnavailableError,
    DuplicateRecordError,
    FieldValidationError,
    UnsupportedMetricError,
    ValidationError,
)
from dataknobs_data.query import F
from dataknobs_data.testing import import_or_skip
from dataknobs_data.vector.exceptions import DimensionMismatchError, InvalidVectorError
from dataknobs_data.vector.stores import AsyncVectorStore, VectorStore, VectorStoreFactory

import_or_skip("chroma")

from dataknobs_data.vector.stores.chroma import ChromaVectorStore  # noqa: E402

RNG = np.random.default_rng(7)


_OPEN: list[VectorStore] = []


@pytest.fixture(autouse=True)
def _close_stores() -> Iterator[None]:
    """Close what a test opened: the in-memory chroma client lives while a store uses it."""
    yield
    while _OPEN:
        _OPEN.pop().close()


def _store(dim: int = 8, metric: str = "cosine", **options: Any) -> VectorStore:
    store = VectorStoreFactory.create("chroma", dimensions=dim, metric=metric, **options)
    _OPEN.append(store)
    return store


def _exact(x: np.ndarray, q: np.ndarray, metric: str, k: int) -> tuple[list[int], np.ndarray]:
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        d = 1 - (x64 @ q64) / (np.linalg.norm(x64, axis=1) * np.linalg.norm(q64))
    elif metric == "euclidean":
        d = np.sqrt(((x64 - q64) ** 2).sum(axis=1))
    else:
        d = -(x64 @ q64)
    order = np.argsort(d, kind="stable")[:k]
    return order.tolist(), d[order]


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot_product"])
def test_metrics_match_numpy(metric: str) -> None:
    """Ids, distances and scores agree with exact numpy (HNSW on 300 vectors, generous ef)."""
    x = RNG.normal(size=(300, 8)).astype(np.float32)
    store = _store(metric=metric, ef_search=300, ef_construction=200, max_neighbors=32)
    store.add([f"v{i}" for i in range(300)], x)
    for q in RNG.normal(size=(5, 8)).astype(np.float32):
        hits = store.search(q, 10)
        order, dist = _exact(x, q, metric, 10)
        assert [h.id for h in hits] == [f"v{i}" for i in order]
        assert np.allclose([h.distance for h in hits], dist, rtol=1e-4, atol=1e-5)
        if metric == "cosine":
            scores = 1 - dist
        elif metric == "dot_product":
            scores = -dist
        else:
            scores = 1 / (1 + dist)
        assert np.allclose([h.score for h in hits], scores, rtol=1e-4, atol=1e-5)
        assert [h.rank for h in hits] == list(range(1, 11))


def test_l1_and_unknown_options_are_refused() -> None:
    with pytest.raises(UnsupportedMetricError):
        _store(metric="l1")
    with pytest.raises(ValidationError, match="valid"):
        _store(nprobe=3)
    store = _store()
    store.add(["a"], np.ones((1, 8)))
    with pytest.raises(ValidationError, match="ef_search"):
        store.search(np.ones(8), 1, nprobe=4)
    with pytest.raises(ValidationError):
        store.search(np.ones(8), 1, ef_search=0)


def test_get_returns_what_was_added() -> None:
    """Original vectors (also under cosine, which chroma normalises) and verbatim metadata."""
    store = _store()
    x = RNG.normal(size=(3, 8)).astype(np.float32) * 5
    metas: list[dict[str, Any] | None] = [
        {"n": 1, "nested": {"a": [1, "x", None], "b": None}, "f": 1.0},
        None,
        {"tags": [], "t": True},
    ]
    store.add(["a", "b", "c"], x, metas)
    got = store.get(["c", "nope", "a", "b"])
    assert got[1] is None
    assert [g.id for g in got if g is not None] == ["c", "a", "b"]
    assert np.array_equal(got[2].vector, x[0])  # type: ignore[union-attr]
    assert got[2].metadata == metas[0]  # type: ignore[union-attr]
    assert type(got[2].metadata["f"]) is float  # type: ignore[union-attr]
    assert got[3].metadata == {}  # type: ignore[union-attr]


def test_duplicate_ids() -> None:
    """add refuses an existing or repeated id and writes nothing; upsert replaces entirely."""
    store = _store()
    x = RNG.normal(size=(4, 8)).astype(np.float32)
    store.add(["a", "b"], x[:2], [{"old": 1}, {"old": 2}])
    with pytest.raises(DuplicateRecordError):
        store.add(["c", "a"], x[2:4])
    with pytest.raises(DuplicateRecordError):
        store.add(["c", "c"], x[2:4])
    assert store.count() == 2
    assert store.get(["c"]) == [None]
    store.upsert(["a", "c"], x[2:4], [{"new": True}, None])
    assert store.count() == 3
    a = store.get(["a"])[0]
    assert a is not None
    assert a.metadata == {"new": True}
    assert np.array_equal(a.vector, x[2])
    assert store.count(F("old") == 1) == 0  # the replaced metadata is gone from filters too
    assert store.count(F("old").exists()) == 1
    assert store.delete(["a", "zz"]) == 1
    assert store.count() == 2


def test_bad_input_writes_nothing() -> None:
    store = _store()
    store.add(["a"], np.ones((1, 8)))
    bad: list[tuple[Any, Any, Any, type[Exception]]] = [
        (["x"], np.ones((1, 7)), None, DimensionMismatchError),
        (["x", "y"], [[1.0] * 8, [np.nan] * 8], None, InvalidVectorError),
        (["x"], np.ones((1, 8)), [{"big": 2**60 + 1}], FieldValidationError),
        (["x"], np.ones((1, 8)), [{"s": {1, 2}}], ValidationError),
        (["x"], np.ones((2, 8)), None, ValidationError),
        (["", "y"], np.ones((2, 8)), None, ValidationError),
    ]
    for ids, vectors, metadata, error in bad:
        for write in (store.add, store.upsert):
            with pytest.raises(error):
                write(ids, vectors, metadata)
    assert store.count() == 1


def test_batches_larger_than_the_client_maximum() -> None:
    """More vectors than chroma takes in one call are split, and all arrive."""
    store = _store(dim=4)
    assert isinstance(store, ChromaVectorStore)
    n = int(store._client.get_max_batch_size()) + 500
    x = RNG.normal(size=(n, 4)).astype(np.float32)
    store.add([f"v{i}" for i in range(n)], x, [{"i": i} for i in range(n)])
    assert store.count() == n
    assert store.count(F("i") >= n - 10) == 10
    store.upsert([f"v{i}" for i in range(n)], x)
    assert store.count(F("i").exists()) == 0


def test_filtered_search_at_one_percent_returns_k() -> None:
    """1% selectivity on 10k vectors: k hits, the exact top-k of the matching ones."""
    n, dim = 10_000, 16
    x = RNG.normal(size=(n, dim)).astype(np.float32)
    store = _store(dim=dim)
    store.add([f"v{i}" for i in range(n)], x, [{"bucket": i % 100, "i": i} for i in range(n)])
    allowed = np.arange(n)[np.arange(n) % 100 == 7]
    for q in RNG.normal(size=(5, dim)).astype(np.float32):
        for flt in (F("bucket") == 7, F("i").is_in(allowed.tolist())):
            hits = store.search(q, 10, filter=flt)
            order, _ = _exact(x[allowed], q, "cosine", 10)
            assert [h.id for h in hits] == [f"v{allowed[i]}" for i in order]


def test_filters_chroma_cannot_decide_are_exact() -> None:
    """like / string ordering / between run exactly (k hits when k match)."""
    n = 400
    x = RNG.normal(size=(n, 8)).astype(np.float32)
    store = _store()
    names = [f"{'ab' if i % 40 == 0 else 'zz'}{i:04d}" for i in range(n)]
    store.add(
        [f"v{i}" for i in range(n)], x, [{"name": s, "v": [i, -i]} for i, s in enumerate(names)]
    )
    matching = [i for i, s in enumerate(names) if s.startswith("ab")]
    for flt in (F("name").like("ab%"), F("name") < "b", F("name").starts_with("ab")):
        assert store.count(flt) == len(matching)
        hits = store.search(x[3], 5, filter=flt)
        order, _ = _exact(x[matching], x[3], "cosine", 5)
        assert [h.id for h in hits] == [f"v{matching[i]}" for i in order]
    # between on a list needs one element inside both bounds: [i, -i] never has one in [1, 2]
    # unless i is 1 or 2
    assert store.count(F("v").between(1, 2)) == 2


def test_ef_search_per_search_raises_recall() -> None:
    """A low ef at creation, raised per search (chroma takes ef = max(ef_search, n_results))."""
    n, dim = 5000, 32
    x = RNG.normal(size=(n, dim)).astype(np.float32)
    store = _store(dim=dim, metric="euclidean", ef_search=10)
    store.add([f"v{i}" for i in range(n)], x)
    assert store.stats()["hnsw"]["ef_search"] == 10

    def recall(**params: Any) -> float:
        found = 0
        for q in x[:50] + 0.5:
            truth = {f"v{i}" for i in _exact(x, q, "euclidean", 10)[0]}
            found += len(truth & {h.id for h in store.search(q, 10, **params)})
        return found / 500

    low, high = recall(), recall(ef_search=300)
    assert high >= 0.95
    assert high > low


def test_zero_query_under_cosine() -> None:
    store = _store()
    store.add(["b", "a"], np.eye(2, 8))
    hits = store.search(np.zeros(8), 2)
    assert [(h.id, h.score, h.distance) for h in hits] == [("a", 0.0, 1.0), ("b", 0.0, 1.0)]


async def test_async_view() -> None:
    store = AsyncVectorStore(_store())
    await store.add(["a"], np.ones((1, 8)), [{"k": 1}])
    assert await store.count(F("k") == 1) == 1
    assert [h.id for h in await store.search(np.ones(8), 3)] == ["a"]
    await store.close()


def test_persistence_across_processes(tmp_path: Path) -> None:
    """A new process reopens the directory and gets the same results."""
    x = RNG.normal(size=(200, 8)).astype(np.float32)
    with VectorStoreFactory.create("chroma", dimensions=8, path=tmp_path, metric="l2") as store:
        store.add([f"v{i}" for i in range(200)], x, [{"i": i} for i in range(200)])
        store.persist()
        expected = [[h.id, h.score] for h in store.search(x[5], 5, filter=F("i") < 100)]
    script = textwrap.dedent(
        f"""
        import json, numpy as np
        from dataknobs_data.query import F
        from dataknobs_data.vector.stores import VectorStoreFactory
        store = VectorStoreFactory.load("chroma", {str(tmp_path)!r})
        q = np.asarray({x[5].tolist()!r}, dtype=np.float32)
        hits = store.search(q, 5, filter=F("i") < 100)
        print(json.dumps([store.count(), store.config.metric.value,
                          [[h.id, h.score] for h in hits]]))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    count, metric, hits = json.loads(out.stdout.strip().splitlines()[-1])
    assert (count, metric) == (200, "euclidean")
    assert hits == expected


def test_reopen_checks_the_configuration(tmp_path: Path) -> None:
    VectorStoreFactory.create("chroma", dimensions=8, path=tmp_path).close()
    with pytest.raises(Exception, match="8-d"):
        VectorStoreFactory.create("chroma", dimensions=4, path=tmp_path)


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "chromadb" else real(name)
    )
    with pytest.raises(BackendUnavailableError, match=r"dataknobs-data\[chroma\]"):
        VectorStoreFactory.create("chroma", dimensions=4)
