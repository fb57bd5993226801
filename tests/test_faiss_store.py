"""FaissVectorStore on real faiss: index kinds, filters, deletes, metrics, persistence, crashes."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dataknobs_data import BackendUnavailableError, DatabaseFactory, ValidationError
from dataknobs_data.errors import (
    DuplicateRecordError,
    QueryError,
    SchemaError,
    UnsupportedMetricError,
)
from dataknobs_data.query import Condition
from dataknobs_data.testing import import_or_skip
from dataknobs_data.vector.exceptions import DimensionMismatchError, InvalidVectorError
from dataknobs_data.vector.stores import AsyncVectorStore, VectorStoreFactory
from dataknobs_data.vector.types import DistanceMetric

faiss = import_or_skip("faiss")

from dataknobs_data.vector.stores.faiss import FaissVectorStore  # noqa: E402

KINDS = ["flat", "hnsw", "ivfflat", "ivfpq"]
N, D = 4000, 16


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, list[str], list[dict[str, Any]]]:
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((20, D)).astype(np.float32)
    x = centers[rng.integers(0, 20, N)] + 0.3 * rng.standard_normal((N, D)).astype(np.float32)
    ids = [f"v{i:05d}" for i in range(N)]
    meta = [{"cat": i % 100, "half": i % 2 == 0, "tag": {"k": f"t{i % 7}"}} for i in range(N)]
    return x, ids, meta


@pytest.fixture(autouse=True, scope="module")
def _one_openmp_thread() -> Iterator[None]:
    """faiss's OpenMP spin-waits; on a small shared machine one thread is faster and steadier."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def _index(kind: str) -> dict[str, Any]:
    """Small IVF parameters: training stays well under a second at these sizes."""
    params = {"ivfflat": {"nlist": 32, "nprobe": 4}, "ivfpq": {"nlist": 16, "pq_nbits": 6}}
    return {"kind": kind, "params": params.get(kind, {})}


def _store(kind: str, metric: str = "euclidean", **options: Any) -> FaissVectorStore:
    store = VectorStoreFactory.create(
        "faiss", dimensions=D, metric=metric, index=_index(kind), **options
    )
    assert isinstance(store, FaissVectorStore)
    return store


def _exact(x: np.ndarray, q: np.ndarray, metric: DistanceMetric) -> np.ndarray:
    """float64 distances of every row to q, in the package's conventions."""
    v, qq = x.astype(np.float64), q.astype(np.float64)
    if metric is DistanceMetric.EUCLIDEAN:
        return np.sqrt(((v - qq) ** 2).sum(axis=1))
    if metric is DistanceMetric.L1:
        return np.abs(v - qq).sum(axis=1)
    if metric is DistanceMetric.DOT_PRODUCT:
        return -(v @ qq)
    return 1.0 - (v @ qq) / (np.linalg.norm(v, axis=1) * np.linalg.norm(qq))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("exact_below", [0, 2048])
def test_one_percent_filter_returns_k_on_every_index(
    kind: str, exact_below: int, data: tuple[np.ndarray, list[str], list[dict[str, Any]]]
) -> None:
    """50 of 4000 vectors match (1.25%); every kind returns k=10 of them, the true nearest.

    ``exact_below=0`` forces faiss's id-selector path (and its exact fallback when the ANN
    index comes back short); 2048 takes the small-selection shortcut."""
    x, ids, meta = data
    store = _store(kind, exact_filter_below=exact_below)
    store.add(ids, x, meta)
    flt = Condition.make("cat", "=", 7)
    rows = np.flatnonzero(np.arange(N) % 100 == 7)
    recall = []
    for q in x[:40:4] + 0.05:
        hits = store.search(q, 10, filter=flt)
        assert len(hits) == 10
        assert all(h.metadata["cat"] == 7 for h in hits)
        truth = rows[np.argsort(_exact(x[rows], q, DistanceMetric.EUCLIDEAN), kind="stable")[:10]]
        recall.append(len({h.id for h in hits} & {ids[i] for i in truth}) / 10)
    # exact: the flat index, and the small-selection shortcut; otherwise approximate
    assert np.mean(recall) >= (1.0 if kind == "flat" or exact_below else 0.7)
    assert store.stats()["index"]["kind"] == kind


@pytest.mark.parametrize("kind", KINDS)
def test_unfiltered_search_recall_and_distances(
    kind: str, data: tuple[np.ndarray, list[str], list[dict[str, Any]]]
) -> None:
    x, ids, meta = data
    store = _store(kind)
    store.add(ids, x, meta)
    recall = []
    for q in x[100:120] + 0.01:
        hits = store.search(q, 10, ef_search=64, nprobe=16)
        dist = _exact(x, q, DistanceMetric.EUCLIDEAN)
        truth = set(np.argsort(dist)[:10].tolist())
        recall.append(len(truth & {int(h.id[1:]) for h in hits}) / 10)
        for h in hits:  # true (not squared) distances, score = 1 / (1 + d)
            assert h.distance == pytest.approx(dist[int(h.id[1:])], rel=1e-4, abs=1e-5)
            assert h.score == pytest.approx(1 / (1 + h.distance))
        assert [h.rank for h in hits] == list(range(1, 11))
    assert np.mean(recall) >= (1.0 if kind == "flat" else 0.8)


@pytest.mark.parametrize(
    "metric",
    [
        DistanceMetric.COSINE,
        DistanceMetric.DOT_PRODUCT,
        DistanceMetric.EUCLIDEAN,
        DistanceMetric.L1,
    ],
)
def test_flat_metrics_agree_with_numpy(
    metric: DistanceMetric, data: tuple[np.ndarray, list[str], list[dict[str, Any]]]
) -> None:
    x, ids, _ = data
    store = _store("flat", metric.value)
    store.add(ids[:1000], x[:1000])
    queries = x[1000:1010]
    for q, hits in zip(queries, store.search_batch(queries, 5), strict=True):
        dist = _exact(x[:1000], q, metric)
        order = np.argsort(dist, kind="stable")[:5]
        assert [h.id for h in hits] == [ids[i] for i in order]
        for h, i in zip(hits, order, strict=True):
            assert h.distance == pytest.approx(dist[i], rel=1e-4, abs=1e-5)
        if metric is DistanceMetric.COSINE:
            assert hits[0].score == pytest.approx(1 - hits[0].distance)
        if metric is DistanceMetric.DOT_PRODUCT:
            assert hits[0].score == pytest.approx(-hits[0].distance)


@pytest.mark.parametrize("kind", ["hnsw", "ivfflat", "ivfpq"])
def test_l1_needs_a_flat_index(kind: str) -> None:
    with pytest.raises(UnsupportedMetricError, match="flat"):
        _store(kind, "l1")
    assert _store("auto", "l1").index.requested == "auto"  # auto always builds flat for L1


@pytest.mark.parametrize("kind", KINDS)
def test_deletes_on_every_index(
    kind: str, data: tuple[np.ndarray, list[str], list[dict[str, Any]]]
) -> None:
    x, ids, meta = data
    store = _store(kind)
    store.add(ids, x, meta)
    store.search(x[0], 5)  # build the index first, so deletes hit a built faiss index
    gone = set(ids[::3])
    assert store.delete([*sorted(gone), "nope"]) == len(gone)
    assert store.count() == N - len(gone)
    assert store.get([ids[0], ids[1]])[0] is None
    for q in x[:30]:
        hits = store.search(q, 10)
        assert len(hits) == 10
        assert not gone & {h.id for h in hits}
        filtered = store.search(q, 10, filter=Condition.make("cat", "=", 3))
        assert len(filtered) == 10 and not gone & {h.id for h in filtered}
    assert store.count(Condition.make("cat", "=", 3)) == len(
        [i for i in range(N) if i % 100 == 3 and ids[i] not in gone]
    )
    stats = store.stats()
    assert stats["index"]["tombstones"] == 0  # removed (flat/IVF) or compacted (HNSW rebuild)
    assert stats["slots"] == N - len(gone)  # deleted slots were compacted away


def test_hnsw_tombstones_below_the_compaction_threshold(
    data: tuple[np.ndarray, list[str], list[dict[str, Any]]],
) -> None:
    x, ids, meta = data
    store = _store("hnsw")
    store.add(ids, x, meta)
    store.search(x[0], 1)
    store.delete(ids[:100])  # 2.5%: tombstones, no rebuild
    assert store.stats()["index"]["tombstones"] == 100
    for q in x[:100:10]:
        assert not {h.id for h in store.search(q, 10)} & set(ids[:100])
    store.upsert([ids[0]], x[:1], [{"cat": -1}])  # an upsert retires the old label too
    hits = store.search(x[0], 1)
    assert hits[0].id == ids[0] and hits[0].metadata == {"cat": -1}
    assert store.optimize()["index"]["tombstones"] == 0


def test_search_params_are_checked(
    data: tuple[np.ndarray, list[str], list[dict[str, Any]]],
) -> None:
    x, ids, _ = data
    store = _store("hnsw")
    store.add(ids[:500], x[:500])
    assert len(store.search(x[0], 5, ef_search=200, probes=3, exact=True)) == 5
    with pytest.raises(QueryError, match="unknown search parameter"):
        store.search(x[0], 5, efsearch=10)
    with pytest.raises(QueryError):
        store.search(x[0], 5, ef_search=0)
    with pytest.raises(ValidationError):
        store.search(x[0], 0)


@pytest.mark.parametrize(
    ("ids", "vectors", "meta", "error"),
    [
        (["a", "b"], np.ones((2, D + 1)), None, DimensionMismatchError),
        (["a", "b"], np.array([[np.nan] * D, [0.0] * D]), None, InvalidVectorError),
        (["a", "b"], np.array([[np.inf] * D, [0.0] * D]), None, InvalidVectorError),
        (["a", "a"], np.ones((2, D)), None, DuplicateRecordError),
        (["a", "b"], np.ones((3, D)), None, ValidationError),
        (["a", "b"], np.ones((2, D)), [{"x": {1, 2}}, None], ValidationError),
        (["a", "b"], np.ones((2, D)), [{"x": float("nan")}, None], ValidationError),
        (["a", "b"], np.ones((2, D)), [{1: "x"}, None], ValidationError),
        (["a", "b"], np.ones((2, D)), [None], ValidationError),
        (["a", ""], np.ones((2, D)), None, ValidationError),
        (["a", "x0"], np.ones((2, D)), None, DuplicateRecordError),  # x0 already stored
    ],
)
def test_bad_input_writes_nothing(
    ids: list[str], vectors: Any, meta: Any, error: type[Exception]
) -> None:
    store = _store("flat")
    store.add(["x0"], np.zeros((1, D)), [{"keep": True}])
    with pytest.raises(error):
        store.add(ids, vectors, meta)
    if error is not DuplicateRecordError or ids[0] == ids[1]:
        with pytest.raises(error):
            store.upsert(ids, vectors, meta)
    assert store.count() == 1
    assert store.get(["a", "b"]) == [None, None]
    kept = store.get(["x0"])[0]
    assert kept is not None and kept.metadata == {"keep": True}
    assert [h.id for h in store.search(np.ones(D), 5)] == ["x0"]


def test_metadata_filters_and_copies(
    data: tuple[np.ndarray, list[str], list[dict[str, Any]]],
) -> None:
    x, ids, meta = data
    store = _store("flat")
    store.add(ids[:200], x[:200], meta[:200])
    assert store.count({"field": "tag.k", "op": "=", "value": "t3"}) == len(
        [i for i in range(200) if i % 7 == 3]
    )
    assert store.count(Condition.make("half", "=", True) & Condition.make("cat", "<", 10)) == 10
    assert store.count(Condition.make("_id", "in", ["v00001", "zzz"])) == 1
    hit = store.search(x[5], 1)[0]
    hit.metadata["cat"] = "changed"
    got = store.get([hit.id])[0]
    assert got is not None and got.metadata["cat"] == meta[5]["cat"]
    got.vector[:] = 0
    again = store.get([hit.id])[0]
    assert again is not None and np.array_equal(again.vector, x[5])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("metric", ["euclidean", "cosine", "dot_product"])
def test_non_finite_queries_are_refused_on_every_index(
    kind: str, metric: str, data: tuple[np.ndarray, list[str], list[dict[str, Any]]]
) -> None:
    """A plain float32 query skips the up-front finiteness check (the search's own distances
    reveal NaN and infinity); every spelling of a bad query still gets the typed error."""
    x, ids, meta = data
    store = _store(kind, metric)
    store.add(ids[:1500], x[:1500], meta[:1500])
    good = store.search(x[3], 5)
    assert len(good) == 5
    for bad in (np.nan, np.inf, -np.inf):
        q = x[3].copy()
        q[D // 2] = bad
        for query in (q, q.astype(np.float64), q.tolist()):
            with pytest.raises(InvalidVectorError):
                store.search(query, 5)
        with pytest.raises(InvalidVectorError):
            store.search_batch(np.stack([x[0], q]), 5)
    # k beyond the store's size returns every vector (and allocates nothing for the rest)
    assert len(store.search(x[3], 10**12)) == 1500
    # a strided (non-contiguous) float32 view answers like its contiguous copy
    strided = np.ascontiguousarray(np.stack([x[3], x[4]], axis=1))[:, 0]
    assert not strided.flags.c_contiguous
    assert [h.id for h in store.search(strided, 5)] == [h.id for h in good]
    store.close()


def test_hits_keep_the_metadata_they_were_found_with(
    tmp_path: Path, data: tuple[np.ndarray, list[str], list[dict[str, Any]]]
) -> None:
    """Hits read their metadata lazily, but as it was when found: a later upsert or delete
    does not reach into them, and each hit's metadata is its own copy."""
    x, ids, shared = data
    meta = [{**m, "n": i} for i, m in enumerate(shared[:1000])]  # unique per vector
    store = _store("hnsw", path=tmp_path / "s")
    store.add(ids[:1000], x[:1000], meta)
    first, second = store.search(x[5], 2)
    assert first.id == ids[5]
    store.upsert([first.id], x[5:6], [{"cat": "new"}])
    store.delete([second.id])
    assert first.metadata == meta[5] and second.metadata == meta[int(second.id[1:])]
    first.metadata["cat"] = "mine"
    assert first.metadata["cat"] == "mine"  # the same dict on every read
    again = store.search(x[5], 1)[0]
    assert again.metadata == {"cat": "new"}
    assert again == store.search(x[5], 1)[0] and again != first
    assert repr(again).startswith(f"VectorHit(id={ids[5]!r}, score=")
    # the deleted vector's metadata is not written to disk
    store.persist()
    written = {
        json.dumps(m) for p in tmp_path.rglob("metadata.json") for m in json.loads(p.read_text())
    }
    assert json.dumps(meta[int(second.id[1:])]) not in written
    assert json.dumps({"cat": "new"}) in written
    store.close()


@pytest.mark.parametrize("kind", KINDS)
def test_persist_and_load_round_trip(
    kind: str, tmp_path: Path, data: tuple[np.ndarray, list[str], list[dict[str, Any]]]
) -> None:
    x, ids, meta = data
    path = tmp_path / "store"
    store = VectorStoreFactory.create(
        "faiss", dimensions=D, metric="cosine", index=_index(kind), path=path, rerank=8
    )
    store.add(ids, x, meta)
    store.delete(ids[:10])
    before = [[(h.id, round(h.score, 5)) for h in hs] for hs in store.search_batch(x[20:30], 5)]
    store.close()
    assert not any(p.suffix == ".pickle" for p in path.rglob("*"))
    manifest = json.loads((path / "MANIFEST.json").read_text())
    assert manifest["count"] == N - 10
    again = VectorStoreFactory.load("faiss", path)
    assert isinstance(again, FaissVectorStore)
    assert again.count() == N - 10 and again.rerank == 8
    assert again.stats()["index"]["kind"] == kind  # the index came back, not rebuilt
    after = [[(h.id, round(h.score, 5)) for h in hs] for hs in again.search_batch(x[20:30], 5)]
    assert after == before
    assert again.get([ids[11]])[0].metadata == meta[11]  # type: ignore[union-attr]
    again.close()
    # create() on a directory holding a store reopens it and checks the configuration.
    reopened = VectorStoreFactory.create(
        "faiss", dimensions=D, metric="cosine", index=_index(kind), path=path
    )
    assert reopened.count() == N - 10
    reopened.close()
    with pytest.raises(SchemaError):
        VectorStoreFactory.create("faiss", dimensions=D + 1, path=path)


_SAVER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from dataknobs_data.vector.stores import VectorStoreFactory

    path, kind = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6000, 32)).astype("float32")
    ids = [f"v{i}" for i in range(len(x))]
    store = VectorStoreFactory.create("faiss", dimensions=32, index=kind, path=path)
    gen = 0
    while True:
        gen += 1
        store.upsert(ids, x + gen, [{"gen": gen}] * len(ids))
        store.search(x[0], 1)
        store.persist()
        print(gen, flush=True)
    """
)


@pytest.mark.parametrize(("kind", "delay"), [("flat", 0.0), ("flat", 0.013), ("hnsw", 0.021)])
def test_kill_9_during_save_keeps_the_last_committed_state(
    kind: str, delay: float, tmp_path: Path
) -> None:
    """A subprocess upserts every vector with a new generation number and persists, in a loop;
    it is SIGKILLed at an arbitrary point (usually mid-save). Reopening gives one whole
    generation: the last one it reported, or the next if the kill hit after the switch."""
    path = tmp_path / "crash"
    proc = subprocess.Popen(
        [sys.executable, "-c", _SAVER, str(path), kind],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    seen = [int(proc.stdout.readline()) for _ in range(2)]
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    rest = proc.stdout.read().split()
    proc.wait()
    last = int(rest[-1]) if rest else seen[-1]
    store = FaissVectorStore.load(path)
    gens = {s.metadata["gen"] for s in store.get([f"v{i}" for i in range(0, 6000, 97)]) if s}
    assert len(gens) == 1
    (gen,) = gens
    assert gen in (last, last + 1)
    assert store.count() == 6000
    got = store.get(["v5"])[0]
    assert got is not None
    rng = np.random.default_rng(0)
    assert np.allclose(got.vector, rng.standard_normal((6000, 32)).astype("float32")[5] + gen)
    assert len(store.search(got.vector, 3)) == 3
    leftovers = [p.name for p in path.iterdir() if p.name.startswith(".")]
    store.close()
    assert not [p.name for p in path.iterdir() if p.name.startswith(".")], leftovers


def test_async_view(data: tuple[np.ndarray, list[str], list[dict[str, Any]]]) -> None:
    x, ids, meta = data

    async def run() -> None:
        async with AsyncVectorStore(_store("flat")) as store:
            await store.add(ids[:50], x[:50], meta[:50])
            await store.upsert(ids[:1], x[1:2])
            assert await store.count() == 50
            assert (await store.search(x[1], 2))[0].id in {ids[0], ids[1]}
            assert len((await store.search_batch(x[:3], 2))[2]) == 2
            assert await store.delete(ids[:5]) == 5
            assert (await store.get(ids[:1])) == [None]

    asyncio.run(run())


def test_factory_options_and_missing_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="unknown option"):
        VectorStoreFactory.create("faiss", dimensions=4, ef=3)
    with pytest.raises(ValidationError, match="index kind"):
        VectorStoreFactory.create("faiss", dimensions=4, index="annoy")
    with pytest.raises(ValidationError, match="unknown faiss index parameter"):
        VectorStoreFactory.create("faiss", dimensions=4, index={"kind": "hnsw", "params": {"q": 1}})
    with pytest.raises(ValidationError, match="recall_target"):
        VectorStoreFactory.create("faiss", dimensions=4, recall_target=1.5)
    store = VectorStoreFactory.create(
        "faiss", dimensions=4, index={"kind": "hnsw", "params": {"m": 8, "lists": 4}}
    )
    assert store.stats()["index"]["params"] == {"m": 8, "nlist": 4}
    info = {i.name: i for i in VectorStoreFactory.available()}
    assert info["faiss"].available

    monkeypatch.setitem(
        VectorStoreFactory._registry, "ghost", VectorStoreFactory._registry["faiss"]
    )
    VectorStoreFactory.register(
        "ghost", "dataknobs_ghost_store:Ghost", modules=("dataknobs_ghost_engine",), extra="ghost"
    )
    with pytest.raises(BackendUnavailableError, match=r'pip install "dataknobs-data\[ghost\]"'):
        VectorStoreFactory.create("ghost", dimensions=4)

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "faiss" else real(name, *a)
    )
    with pytest.raises(BackendUnavailableError, match=r"dataknobs-data\[faiss\]"):
        VectorStoreFactory.create("faiss", dimensions=4)
    with pytest.raises(BackendUnavailableError, match=r"dataknobs-data\[faiss\]"):
        DatabaseFactory.create("faiss://")


def test_label_table_keeps_names_beside_ids() -> None:
    """The object array a search gathers ids from always mirrors the id list."""
    from dataknobs_data.engines.faiss_index import LabelTable

    table = LabelTable()

    def check(t: LabelTable) -> None:
        assert list(t.names[: t.span]) == t.ids
        assert t.alive[: t.span].tolist() == [i is not None for i in t.ids]

    for start in range(0, 300, 37):  # growth past several capacities
        table.assign([f"id{i}" for i in range(start, start + 37)])
        check(table)
    assert table.retire(["id3", "nope", "id40"]).tolist() == [3, 40]
    check(table)
    check(LabelTable.from_json(table.to_json()))
    table.renumber([i for i in table.ids if i is not None][:10])
    check(table)
    assert table.names[[0, 9]].tolist() == ["id0", "id10"]  # id3 was retired
