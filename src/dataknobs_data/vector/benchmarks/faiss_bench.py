"""faiss in the benchmark: our API (``faiss://``) beside the very same faiss index driven raw.

Importing this module registers the ``faiss`` target, its raw comparison and its ANN sweep
(:func:`~.harness.register_engines` does so for the CLI). The raw side always searches the
faiss object our backend built (``FaissBackend`` field index), so both sides use the same
graph, the same data and the same search settings; what differs is exactly our per-call work:
validation, the filter mask, label <-> id mapping, the float64 re-rank and result objects.

* ``vs_raw`` (synthetic set): unfiltered and 1%-filtered single queries, ours vs
  ``index.search`` with a normalised query (and, filtered, an ``IDSelectorBatch`` of the
  matching labels built once, outside the timing, as a raw user with a fixed filter would);
  plus ingest: ``create_batch`` (journalled, fsynced) vs ``add_with_ids`` into a flat index.
* ANN sweeps (``--dataset fashion-mnist``): HNSW (M=16, efConstruction=80), ``ef_search`` 16
  to 256, recall@10 and QPS of ours and raw; ``faiss`` through the Database API (records),
  ``faiss-store`` through :class:`~dataknobs_data.vector.stores.faiss.FaissVectorStore`.
  Single client; faiss's OpenMP pool and BLAS are limited to one thread on both sides.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from ...database import SyncDatabase
from ...factory import DatabaseFactory
from ...fields import VectorField
from ...query import Query
from ...records import Record
from ..types import DistanceMetric, VectorConfig
from .ann import ANN_SWEEPS, AnnConfig, measure_point
from .datasets import SyntheticDataset
from .harness import (
    RAW_COMPARISONS,
    TARGETS,
    BenchConfig,
    Target,
    backend_as,
    compare_sides,
    records_for,
    scratch_dir,
    scratch_target,
    timed_ingest,
)
from .measure import Timer, limit_threads, time_calls
from .realdata import RealDataset

__all__ = ["faiss_vs_raw", "sweep_faiss", "sweep_faiss_store"]

F32 = npt.NDArray[np.float32]
HNSW = {"m": 16, "ef_construction": 80}
EF_SWEEP = (16, 32, 64, 128, 256)


@contextmanager
def one_thread() -> Iterator[None]:
    """One BLAS thread and one faiss OpenMP thread (spin-waiting threads cost 2-3x per single
    query on a 2-core machine)."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        with limit_threads(1):
            yield
    finally:
        faiss.omp_set_num_threads(before)


def _faiss_target() -> Target:
    """A fresh journalled ``faiss://`` directory per ``open()`` (removed at exit)."""
    return scratch_target("faiss", "faiss", lambda path: f"faiss://{path}")


def _field_index(db: SyncDatabase, field: str) -> Any:
    """The backend's faiss index object for ``field`` (built if needed) and its label table."""
    from ...backends.faiss import FaissBackend

    return backend_as(db, FaissBackend).raw_index(field)


def _label_rows(labels: list[str | None]) -> npt.NDArray[np.int64]:
    """label -> benchmark row (ids are ``v%08d`` / ``r%06d``), -1 for dead labels."""
    return np.asarray([-1 if i is None else int(i[1:]) for i in labels], dtype=np.int64)


def _raw_search(
    index: Any, kind: str, metric: DistanceMetric, k: int, ef: int | None, selector: Any = None
) -> Callable[[F32], npt.NDArray[np.int64]]:
    """What a faiss user writes: prepare the query for the metric, search, take the labels."""
    if kind == "hnsw":
        params: Any = faiss.SearchParametersHNSW(efSearch=ef or 64)  # type: ignore[attr-defined]
    else:
        params = faiss.SearchParameters()
    if selector is not None:
        params.sel = selector
    cosine = metric is DistanceMetric.COSINE

    def search(q: F32) -> npt.NDArray[np.int64]:
        x = q.reshape(1, -1)
        if cosine:
            x = x / np.linalg.norm(x)
        _, labels = index.search(x, k, params=params)
        return labels[0]

    return search


def _ingest_vs_raw(data: SyntheticDataset, cfg: BenchConfig) -> dict[str, Any]:
    """``create_batch`` into a fresh durable ``faiss://`` vs raw ``add_with_ids`` (flat)."""
    n = min(data.n, 50_000)
    records = records_for(data, 0, n)
    directory = scratch_dir("faiss")
    runs = itertools.count()

    def ours() -> float:
        return timed_ingest(f"faiss://{directory / f'ingest{next(runs)}'}", records)

    def raw() -> float:
        with Timer() as t:
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(data.vectors.shape[1]))
            x = np.ascontiguousarray(data.vectors[:n])
            faiss.normalize_L2(x)
            index.add_with_ids(x, np.arange(n, dtype=np.int64))
        return t.seconds

    best: dict[str, float] = {}
    for _ in range(2):
        for name, fn in (("raw", raw), ("ours", ours)):
            seconds = fn()
            best[name] = min(best.get(name, seconds), seconds)
    return {
        "ours_qps": n / best["ours"],
        "raw_qps": n / best["raw"],
        "ratio_qps": best["raw"] / best["ours"],
        "unit": "rows/s",
        "note": f"{n} records in 10k create_batch calls (journal fsynced per call) vs raw "
        "add_with_ids of the normalised vectors into IndexIDMap2(IndexFlatIP); raw stores no "
        "records or metadata",
    }


def _pair(
    db: SyncDatabase,
    index: Any,
    kind: str,
    metric: DistanceMetric,
    queries: F32,
    cfg: BenchConfig,
    condition: Query | None,
    selector: Any,
) -> dict[str, Any]:
    """Ours vs raw on one query set, alternating rounds; both sides' completeness (k hits)."""
    raw_fn = _raw_search(index, kind, metric, cfg.k, None, selector)
    counts: dict[str, list[int]] = {"ours": [], "raw": []}

    def raw_call(q: F32) -> None:
        counts["raw"].append(int(np.count_nonzero(raw_fn(q) >= 0)))

    def ours_call(q: F32) -> None:
        counts["ours"].append(len(db.vector_search(q, k=cfg.k, filter=condition)))

    entry = compare_sides(
        cfg.rounds,
        {
            "raw": lambda: time_calls(raw_call, queries, warmup=3),
            "ours": lambda: time_calls(ours_call, queries, warmup=3),
        },
        f"same faiss {kind} index searched raw"
        + ("; raw filter: IDSelectorBatch built once" if selector is not None else ""),
    )
    entry["complete"] = float(np.mean([c == cfg.k for c in counts["ours"]]))
    entry["raw_complete"] = float(np.mean([c == cfg.k for c in counts["raw"]]))
    entry["note"] += f"; raw k hits {entry['raw_complete']:.1%}"
    return entry


def faiss_vs_raw(db: SyncDatabase, data: SyntheticDataset, cfg: BenchConfig) -> dict[str, Any]:
    """Unfiltered and 1%-filtered single queries, ours vs the same faiss index raw; ingest."""
    field = "embedding"
    index, kind, labels = _field_index(db, field)
    metric = DistanceMetric.parse(cfg.metric)
    rows = _label_rows(labels)
    queries = data.queries[: cfg.queries]
    threshold = data.selectivity_threshold("price", 0.01)
    flt = Query().filter("price", "<=", threshold)
    allowed_rows = np.flatnonzero(data.price <= threshold)
    wanted = np.isin(rows, allowed_rows)
    selector = faiss.IDSelectorBatch(np.flatnonzero(wanted).astype(np.int64))
    stats = db.get_vector_index_stats(field)
    out: dict[str, Any] = {}
    with one_thread():
        out["unfiltered"] = _pair(db, index, kind, metric, queries, cfg, None, None)
        out["unfiltered"]["note"] += (
            f"; index {stats['kind']} built by auto at the first search in "
            f"{stats['build_seconds']:.1f} s"
        )
        out["filtered_0.01"] = _pair(db, index, kind, metric, queries, cfg, flt, selector)
    out["ingest"] = _ingest_vs_raw(data, cfg)
    return out


def _load(data: RealDataset, path: Path) -> SyncDatabase:
    dims = data.dimensions
    db = DatabaseFactory.create(
        f"faiss://{path}",
        vectors={"embedding": VectorConfig(dims, metric=DistanceMetric.parse(data.metric))},
    )
    for start in range(0, data.base.shape[0], 5_000):
        stop = min(start + 5_000, data.base.shape[0])
        db.create_batch(
            Record(
                {"label": int(data.base_labels[i]), "embedding": VectorField(data.base[i])},
                id=f"r{i:06d}",
            )
            for i in range(start, stop)
        )
    return db


OursAt = Callable[[int], Callable[[F32], list[int]]]


def _points(
    ours_at: OursAt,
    raw_index: tuple[Any, str, list[str | None]],
    metric: DistanceMetric,
    queries: F32,
    truth: npt.NDArray[np.int64],
    cfg: AnnConfig,
) -> list[dict[str, Any]]:
    """The ``ef_search`` sweep: ``ours_at(ef)`` searches through our API, the raw side the
    same faiss object; both single-threaded."""
    index, kind, labels = raw_index
    rows = _label_rows(labels)
    points = []
    with one_thread():
        for ef in EF_SWEEP:
            raw_fn = _raw_search(index, kind, metric, cfg.k, ef)

            def raw(q: F32, fn: Callable[[F32], Any] = raw_fn) -> list[int]:
                found = fn(q)
                return rows[found[found >= 0]].tolist()

            point = measure_point(
                f"ef_search={ef}", ours_at(ef), raw, queries, truth, cfg.k, cfg.rounds
            )
            points.append(point.as_dict())
    return points


def _index_label(metric: str) -> str:
    return (
        f"faiss IndexIDMap2(IndexHNSWFlat) M={HNSW['m']} "
        f"efConstruction={HNSW['ef_construction']} ({metric})"
    )


def sweep_faiss(
    data: RealDataset,
    queries: npt.NDArray[np.float32],
    truth: npt.NDArray[np.int64],
    cfg: AnnConfig,
) -> dict[str, Any]:
    """fashion-mnist through ``faiss://`` (the Database API), HNSW, ``ef_search`` sweep."""
    with Timer() as load:
        db = _load(data, scratch_dir("faiss") / "ann")
    try:
        with Timer() as build:
            db.create_vector_index("embedding", kind="hnsw", **HNSW)

        def ours_at(ef: int) -> Callable[[F32], list[int]]:
            params = {"ef_search": ef}

            def ours(q: F32) -> list[int]:
                hits = db.vector_search(q, k=cfg.k, search_params=params)
                return [int(h.id[1:]) for h in hits]

            return ours

        metric = DistanceMetric.parse(data.metric)
        points = _points(ours_at, _field_index(db, "embedding"), metric, queries, truth, cfg)
        return {
            "index": _index_label(data.metric),
            "load_s": load.seconds,
            "build_s": build.seconds,
            "points": points,
            "note": f"Database API: {data.base.shape[0]} records loaded with create_batch into "
            "a journalled faiss:// directory; raw = the same faiss object, labels mapped to rows",
        }
    finally:
        db.close()


def sweep_faiss_store(
    data: RealDataset,
    queries: npt.NDArray[np.float32],
    truth: npt.NDArray[np.int64],
    cfg: AnnConfig,
) -> dict[str, Any]:
    """The same sweep through :class:`FaissVectorStore` (ids + metadata, no records)."""
    from ..stores import VectorStoreFactory
    from ..stores.faiss import FaissVectorStore

    store = VectorStoreFactory.create(
        "faiss",
        dimensions=data.dimensions,
        metric=data.metric,
        index={
            "kind": "hnsw",
            "params": {"m": HNSW["m"], "ef_construction": HNSW["ef_construction"]},
        },
    )
    assert isinstance(store, FaissVectorStore)
    ids = [f"r{i:06d}" for i in range(data.base.shape[0])]
    with Timer() as load:
        store.add(ids, data.base, [{"label": int(x)} for x in data.base_labels])
    with Timer() as build:
        store.optimize()

    def ours_at(ef: int) -> Callable[[F32], list[int]]:
        def ours(q: F32) -> list[int]:
            return [int(h.id[1:]) for h in store.search(q, cfg.k, ef_search=ef)]

        return ours

    raw_index = (store.index.index, "hnsw", list(store.labels.ids))
    points = _points(ours_at, raw_index, DistanceMetric.parse(data.metric), queries, truth, cfg)
    store.close()
    return {
        "index": _index_label(data.metric),
        "load_s": load.seconds,
        "build_s": build.seconds,
        "points": points,
        "note": "VectorStore API (FaissVectorStore.search); raw = the same faiss object",
    }


TARGETS["faiss"] = _faiss_target
RAW_COMPARISONS["faiss"] = faiss_vs_raw
ANN_SWEEPS["faiss"] = sweep_faiss
ANN_SWEEPS["faiss-store"] = sweep_faiss_store
