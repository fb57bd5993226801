"""PostgreSQL + pgvector in the benchmark: our API beside the same work done with raw psycopg.

The server comes from ``$DATAKNOBS_BENCH_POSTGRES_URL`` (or the test suite's
``$DATAKNOBS_TEST_POSTGRES_URL``); ``eval "$(scripts/postgres.sh start)"`` starts a local one.

Comparisons (same data, same server, same run, alternating rounds):

* **ingest**: ``create_batch`` of records vs a raw binary ``COPY`` written by hand with
  psycopg + pgvector's adapters into a bare table (``id``, metadata ``jsonb``, ``vector``),
  the raw loop building its rows (``json.dumps`` of the metadata) from the same arrays;
* **search**: our ``vector_search`` vs the very SQL it runs (``PostgresBackend.knn_plan``),
  executed on a second connection with the same pgvector settings - exact scan, HNSW, and
  HNSW with a 1% filter;
* **ANN sweep** (``--dataset fashion-mnist``): recall@10 and QPS for a range of
  ``hnsw.ef_search``, ours (``search_params={"ef_search": ...}``) vs the same SQL raw.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt

from ...contract import VectorSearchRequest
from ...database import SyncDatabase
from ...factory import DatabaseFactory
from ...fields import VectorField
from ...query import Query, coerce_filter
from ...records import Record
from ...redaction import scrubbed, secrets_of
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
    timed_ingest,
)
from .measure import Timer, time_calls
from .realdata import RealDataset

__all__ = ["postgres_url", "postgres_vs_raw", "sweep_postgres"]

_ENV = ("DATAKNOBS_BENCH_POSTGRES_URL", "DATAKNOBS_TEST_POSTGRES_URL")
HNSW = {"m": 16, "ef_construction": 64}
EF_SWEEP = (10, 20, 40, 80, 160, 320)


def postgres_url() -> str:
    for name in _ENV:
        if os.environ.get(name):
            return os.environ[name]
    raise RuntimeError(
        "no PostgreSQL for the benchmark: set DATAKNOBS_BENCH_POSTGRES_URL "
        '(or run `eval "$(scripts/postgres.sh start)"` in a checkout)'
    )


def _collection_url(prefix: str) -> str:
    base = postgres_url()
    joiner = "&" if "?" in base else "?"
    return f"{base}{joiner}collection={prefix}_{uuid.uuid4().hex[:10]}"


def _postgres_target() -> Target:
    """A scratch collection per ``open()`` (dropped on close)."""
    url = _collection_url("bench")
    return Target(
        "postgres",
        url,
        "psycopg SQL",
        lambda: DatabaseFactory.create(_collection_url("bench"), temporary=True),
        numpy_sections=False,  # a network round trip against in-process numpy says little
    )


@contextmanager
def _raw_connection() -> Iterator[Any]:
    import psycopg
    from pgvector.psycopg import register_vector

    url = postgres_url()
    # libpq may quote the URL's password in an error (e.g. a malformed %-escape): scrubbed.
    with scrubbed(secrets_of(url)), psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        yield conn


def _raw_ingest(data: SyntheticDataset, n: int, *, same_layout: bool) -> Callable[[], float]:
    """A raw binary COPY of ``n`` rows into a fresh table, rows built inside the timed loop
    from the same arrays; returns the seconds taken.

    ``same_layout=False``: a bare table (``id``, metadata ``jsonb``, ``vector``), what a
    hand-written loader minimally stores. ``True``: our table's columns (``id``, ``doc`` and
    ``types`` as ``jsonb``, ``data`` text, ``vector``), the JSON texts made by ``json.dumps``
    in the loop: the same information stored raw.
    """
    dims = data.vectors.shape[1]
    columns = (
        'id text COLLATE "C" PRIMARY KEY, doc jsonb NOT NULL, types jsonb NOT NULL, '
        f"data text NOT NULL, v vector({dims})"
        if same_layout
        else f"id text PRIMARY KEY, meta jsonb NOT NULL, v vector({dims})"
    )
    names = "id, doc, types, data, v" if same_layout else "id, meta, v"
    types = (
        ["text", "jsonb", "jsonb", "text", "vector"] if same_layout else ["text", "jsonb", "vector"]
    )
    kinds = json.dumps(
        {
            "category": "integer",
            "tenant": "integer",
            "price": "float",
            "day": "integer",
            "embedding": "vector",
        }
    )

    def run() -> float:
        table = f"raw_ingest_{uuid.uuid4().hex[:10]}"
        with _raw_connection() as conn:
            conn.execute(f"CREATE TABLE {table} ({columns})")
            conn.execute(f"ALTER TABLE {table} ALTER v SET STORAGE PLAIN")
            try:
                with Timer() as t, conn.transaction(), conn.cursor(binary=True) as cur:
                    stmt = f"COPY {table} ({names}) FROM STDIN (FORMAT BINARY)"
                    with cur.copy(stmt) as copy:
                        copy.set_types(types)
                        for i in range(n):
                            meta = {
                                "category": int(data.category[i]),
                                "tenant": int(data.tenant[i]),
                                "price": float(data.price[i]),
                                "day": int(data.day[i]),
                            }
                            if same_layout:
                                full = {
                                    "fields": [{"name": k, "value": v} for k, v in meta.items()]
                                }
                                row: tuple[Any, ...] = (
                                    f"v{i:08d}",
                                    json.dumps({**meta, "embedding": {}}),
                                    kinds,
                                    json.dumps(full),
                                    data.vectors[i],
                                )
                            else:
                                row = (f"v{i:08d}", json.dumps(meta), data.vectors[i])
                            copy.write_row(row)
                return t.seconds
            finally:
                conn.execute(f"DROP TABLE {table}")

    return run


def _ours_ingest(data: SyntheticDataset, n: int) -> Callable[[], float]:
    records = records_for(data, 0, n)  # built outside the timing, as the raw side's arrays are

    def run() -> float:
        return timed_ingest(_collection_url("bench_ingest"), records, temporary=True)

    return run


def _ingest_comparisons(data: SyntheticDataset, cfg: BenchConfig) -> dict[str, dict[str, Any]]:
    """Ours vs both raw loaders, best of alternating rounds (fresh tables each time)."""
    n = min(data.n, 50_000)
    sides = {
        "raw_bare": _raw_ingest(data, n, same_layout=False),
        "raw_same": _raw_ingest(data, n, same_layout=True),
        "ours": _ours_ingest(data, n),
    }
    best: dict[str, float] = {}
    for _ in range(max(2, cfg.rounds)):
        for name, fn in sides.items():
            seconds = fn()
            best[name] = min(best.get(name, seconds), seconds)
    notes = {
        "raw_bare": "raw binary COPY into a bare table (id, jsonb, vector)",
        "raw_same": "raw binary COPY of the same columns (id, doc, types, data, vector)",
    }
    return {
        f"ingest vs {name}": {
            "ours_qps": n / best["ours"],
            "raw_qps": n / best[name],
            "ratio_qps": best[name] / best["ours"],
            "unit": "rows/s",
            "note": f"{n} rows, ours in 10k create_batch calls; {note}",
        }
        for name, note in notes.items()
    }


class _RawSearch:
    """The SQL our search runs for ``request``, issued raw on a connection of its own, with
    the same pgvector settings applied once up front (``close()`` when done)."""

    def __init__(self, db: SyncDatabase, request: VectorSearchRequest) -> None:
        from ...backends.postgres import PostgresBackend
        from ...backends.postgres.knn import PAD, knn_sql, search_settings, settings_sql

        _field, _metric, plan = backend_as(db, PostgresBackend).knn_plan(request)
        via_index = plan.index is not None
        self._stmt = knn_sql(plan, via_index=via_index)
        self._params = dict(plan.filter_params)
        self._params["n"] = request.k if via_index else request.k + PAD
        self._cm = _raw_connection()
        conn = self._cm.__enter__()
        if plan.index is not None:
            conn.execute(
                settings_sql(
                    search_settings(
                        plan.index,
                        self._params["n"],
                        plan.filter_sql is not None,
                        plan.iterative,
                        plan.ef_search,
                        plan.probes,
                        plan.ef_floor,
                    )
                )
            )
        self._cur = conn.cursor(binary=True)

    def __call__(self, q: npt.NDArray[np.float32]) -> list[Any]:
        rows: list[Any] = self._cur.execute(self._stmt, {**self._params, "q": q}).fetchall()
        return rows

    def close(self) -> None:
        self._cm.__exit__(None, None, None)


def _request(dim: int, k: int, flt: Query | None, params: dict[str, Any]) -> VectorSearchRequest:
    from ...vector.params import search_params

    return VectorSearchRequest(
        np.zeros((1, dim), dtype=np.float32),
        k,
        None,
        None,
        None,
        None if flt is None else coerce_filter(flt),
        None,
        search_params(params),
    )


def _search_pair(
    db: SyncDatabase, data: SyntheticDataset, cfg: BenchConfig, flt: Query | None, note: str
) -> dict[str, Any]:
    queries = data.queries[: cfg.queries]
    raw = _RawSearch(db, _request(cfg.dim, cfg.k, flt, {}))
    counts: list[int] = []
    try:

        def ours_call(q: npt.NDArray[np.float32]) -> None:
            counts.append(len(db.vector_search(q, k=cfg.k, filter=flt)))

        out = compare_sides(
            cfg.rounds,
            {
                "raw": lambda: time_calls(raw, queries, warmup=3),
                "ours": lambda: time_calls(ours_call, queries, warmup=3),
            },
            note,
        )
    finally:
        raw.close()
    if flt is not None:
        out["complete"] = float(np.mean([c == cfg.k for c in counts]))
    return out


def postgres_vs_raw(
    db: SyncDatabase, data: SyntheticDataset, cfg: BenchConfig
) -> dict[str, dict[str, Any]]:
    """Ingest, exact search, HNSW search and filtered HNSW search, each ours vs raw."""
    out: dict[str, dict[str, Any]] = _ingest_comparisons(data, cfg)
    out["exact scan"] = _search_pair(db, data, cfg, None, "same SQL (exact, k+8 rows) raw")
    with Timer() as t:
        db.create_vector_index("embedding", kind="hnsw", **HNSW)
    threshold = data.selectivity_threshold("price", 0.01)
    flt = Query().filter("price", "<=", threshold)
    out["hnsw"] = _search_pair(
        db, data, cfg, None, f"same SQL raw; HNSW m=16 efc=64 built in {t.seconds:.0f} s"
    )
    out["hnsw, filter 1%"] = _search_pair(db, data, cfg, flt, "same SQL raw, iterative scan")
    return out


def sweep_postgres(
    data: RealDataset,
    queries: npt.NDArray[np.float32],
    truth: npt.NDArray[np.int64],
    cfg: AnnConfig,
) -> dict[str, Any]:
    """fashion-mnist through our API into PostgreSQL, HNSW (m=16, efc=64), ef_search sweep."""
    dims = data.dimensions
    metric = DistanceMetric.parse(data.metric)
    db = DatabaseFactory.create(
        _collection_url("ann"),
        temporary=True,
        vectors={"embedding": VectorConfig(dims, metric=metric)},
    )
    try:
        with Timer() as load:
            for start in range(0, data.base.shape[0], 5_000):
                stop = min(start + 5_000, data.base.shape[0])
                db.create_batch(
                    Record(
                        {
                            "label": int(data.base_labels[i]),
                            "embedding": VectorField(data.base[i]),
                        },
                        id=f"r{i:06d}",
                    )
                    for i in range(start, stop)
                )
        with Timer() as build:
            db.create_vector_index("embedding", kind="hnsw", **HNSW)
        points = []
        for ef in EF_SWEEP:
            params = {"ef_search": ef}
            raw_run = _RawSearch(db, _request(dims, cfg.k, None, params))

            def ours(q: npt.NDArray[np.float32], p: dict[str, Any] = params) -> list[int]:
                hits = db.vector_search(q, k=cfg.k, search_params=p)
                return [int(h.id[1:]) for h in hits]

            def raw(q: npt.NDArray[np.float32], fn: _RawSearch = raw_run) -> list[int]:
                return [int(r[0][1:]) for r in fn(q)]

            try:
                point = measure_point(
                    f"ef_search={ef}", ours, raw, queries, truth, cfg.k, cfg.rounds
                )
            finally:
                raw_run.close()
            points.append(point.as_dict())
        return {
            "index": "pgvector HNSW m=16 ef_construction=64 (euclidean)",
            "load_s": load.seconds,
            "build_s": build.seconds,
            "points": points,
            "note": f"{data.base.shape[0]} rows loaded with create_batch",
        }
    finally:
        db.close()


TARGETS["postgres"] = _postgres_target
RAW_COMPARISONS["postgres"] = postgres_vs_raw
ANN_SWEEPS["postgres"] = sweep_postgres
