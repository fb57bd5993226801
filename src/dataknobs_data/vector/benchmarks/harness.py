"""The benchmark run: each backend against its raw engine, in the same process and run.

Sections (ingest, single-query search, batched search, filtered search, per-call overhead) are
measured per target and written to a JSON checkpoint after each one, so an interrupted run resumes
where it stopped (``--resume``) instead of starting over. Raw baselines and library calls are
timed in alternating rounds so that drifting machine load hits both sides alike, and every ratio
printed compares numbers from the same run.
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from ...contract import Backend
from ...database import SyncDatabase
from ...factory import DatabaseFactory
from ...fields import VectorField
from ...query import Query
from ...records import Record
from ...redaction import redact_url
from .datasets import SyntheticDataset, make_clustered
from .measure import Timer, current_rss_bytes, limit_threads, machine_info, summarize, time_calls
from .raw import recall_at_k, topk_batch, topk_one

__all__ = [
    "RAW_COMPARISONS",
    "TARGETS",
    "BenchConfig",
    "Target",
    "compare_sides",
    "register_engines",
    "scratch_dir",
    "scratch_target",
    "run",
]

F32 = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """What to run; also the key that decides whether a checkpoint can be resumed."""

    n: int = 100_000
    dim: int = 384
    queries: int = 300
    batch: int = 256
    k: int = 10
    metric: str = "cosine"
    seed: int = 0
    rounds: int = 3
    selectivities: tuple[float, ...] = (0.10, 0.01)
    overhead_n: int = 1_000
    targets: tuple[str, ...] = ("memory",)

    def key(self) -> dict[str, Any]:
        # JSON-normalised (tuples become lists) so it compares equal after a round trip.
        key = {k: getattr(self, k) for k in self.__slots__ if k != "targets"}
        normalised: dict[str, Any] = json.loads(json.dumps(key))
        return normalised


@dataclass
class Target:
    """A library backend under test and the raw engine it is compared with."""

    name: str
    url: str
    raw_name: str
    open: Callable[[], SyncDatabase] = field(repr=False)
    #: run the sections measured against raw numpy (single, batched, filtered, overhead); a
    #: server engine sets False and is measured against its own raw SQL in ``RAW_COMPARISONS``
    numpy_sections: bool = True
    #: ingest the synthetic vectors before the sections (a target measuring something else,
    #: e.g. :mod:`.membership`, builds its own data in its ``RAW_COMPARISONS`` entry)
    vector_data: bool = True

    def __repr__(self) -> str:
        # The URL may carry a password (DATAKNOBS_BENCH_POSTGRES_URL): shown redacted only.
        return f"Target({self.name!r}, {redact_url(self.url)!r}, raw={self.raw_name!r})"


def _memory_target() -> Target:
    return Target("memory", "memory://", "numpy", lambda: DatabaseFactory.create("memory://"))


def scratch_dir(name: str) -> Path:
    """A scratch directory for an engine's files, removed at exit (~350 MB at 100k x 384)."""
    directory = Path(tempfile.mkdtemp(prefix=f"dk-bench-{name}-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


def scratch_target(name: str, raw_name: str, url_for: Callable[[Path], str]) -> Target:
    """A file-based engine's target: a fresh store per ``open()`` (the overhead section opens a
    second, small one) at ``url_for(path)`` in a scratch directory removed at exit."""
    directory = scratch_dir(name)
    opened = itertools.count()

    def open_db() -> SyncDatabase:
        return DatabaseFactory.create(url_for(directory / f"store{next(opened)}"))

    return Target(name, url_for(directory / "store0"), raw_name, open_db)


def _sqlite_target() -> Target:
    return scratch_target("sqlite", "numpy", lambda path: f"sqlite:///{path}.db")


#: Backends the harness can run (one line per engine; the engine's bench module adds its own).
TARGETS: dict[str, Callable[[], Target]] = {
    "memory": _memory_target,
    "sqlite": _sqlite_target,
}


def register_engines() -> None:
    """Import the engine bench modules, which add their entries to :data:`TARGETS`,
    :data:`RAW_COMPARISONS` and ``ann.ANN_SWEEPS``; one whose engine extra is missing is left
    out (the CLI then lists what is available)."""
    import importlib

    for module in ("postgres_bench", "faiss_bench", "chroma_bench", "membership"):
        name = f"{__package__}.{module}"
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name and (exc.name or "").startswith("dataknobs_data"):
                raise  # a bug in a bench module, not a missing engine


def records_for(data: SyntheticDataset, start: int, stop: int) -> list[Record]:
    """Benchmark records: the vector plus the metadata columns the filters use."""
    return [
        Record(
            {
                "category": int(data.category[i]),
                "tenant": int(data.tenant[i]),
                "price": float(data.price[i]),
                "day": int(data.day[i]),
                "embedding": VectorField(data.vectors[i], model_name="synthetic"),
            },
            id=f"v{i:08d}",
        )
        for i in range(start, stop)
    ]


def _ids_to_rows(hits: Sequence[Any]) -> list[int]:
    return [int(h.id[1:]) for h in hits]


@contextmanager
def _progress(label: str) -> Iterator[None]:
    print(f"  .. {label}", file=sys.stderr, flush=True)
    yield


def _alternate(
    rounds: int, sides: dict[str, Callable[[], npt.NDArray[np.float64]]]
) -> dict[str, npt.NDArray[np.float64]]:
    """Run each side ``rounds`` times, interleaved; keep the round with the best median."""
    best: dict[str, npt.NDArray[np.float64]] = {}
    for _ in range(rounds):
        for name, fn in sides.items():
            lat = fn()
            if name not in best or np.median(lat) < np.median(best[name]):
                best[name] = lat
    return best


class _Keyed(Protocol):
    def key(self) -> dict[str, Any]: ...


class Checkpoint:
    """Section results in a JSON file, rewritten atomically after every section."""

    def __init__(self, path: Path | None, config: _Keyed, resume: bool) -> None:
        self.path = path
        self.data: dict[str, Any] = {"config": config.key(), "sections": {}}
        if path is not None and resume and path.exists():
            old = json.loads(path.read_text())
            if old.get("config") == config.key():
                self.data = old
            else:
                print("  .. checkpoint is for other parameters; starting over", file=sys.stderr)

    def get(self, key: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.data["sections"].get(key)
        return found

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.data["sections"][key] = value
        if self.path is not None:
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.data, indent=1))
            os.replace(tmp, self.path)


def _ingest(db: SyncDatabase, data: SyntheticDataset, chunk: int = 10_000) -> dict[str, Any]:
    rss0 = current_rss_bytes()
    build = write = 0.0
    for start in range(0, data.n, chunk):
        with Timer() as t_build:
            recs = records_for(data, start, min(data.n, start + chunk))
        with Timer() as t_write:
            db.create_batch(recs)
        build += t_build.seconds
        write += t_write.seconds
    rss = current_rss_bytes() - rss0
    return {
        "rows": data.n,
        "rows_per_s": data.n / write,
        "rows_per_s_incl_record_build": data.n / (build + write),
        "rss_delta_mb": rss / 2**20,
        "raw_matrix_mb": data.vectors.nbytes / 2**20,
    }


def _single(
    db: SyncDatabase, data: SyntheticDataset, truth: npt.NDArray[np.intp], cfg: BenchConfig
) -> dict[str, Any]:
    queries = data.queries[: cfg.queries]
    found: list[list[int]] = []

    def ours() -> npt.NDArray[np.float64]:
        found.clear()
        return time_calls(
            lambda q: found.append(_ids_to_rows(db.vector_search(q, k=cfg.k))), queries, warmup=3
        )

    def raw() -> npt.NDArray[np.float64]:
        return time_calls(lambda q: topk_one(data.vectors, q, cfg.k, cfg.metric), queries, warmup=3)

    with limit_threads(1):
        lat = _alternate(cfg.rounds, {"raw": raw, "ours": ours})
    s_raw, s_ours = summarize(lat["raw"]), summarize(lat["ours"])
    return {
        "raw": s_raw.as_dict("ms"),
        "ours": s_ours.as_dict("ms"),
        "ratio_qps": s_ours.qps / s_raw.qps,
        "recall_at_k": recall_at_k(found, truth[: cfg.queries, : cfg.k]),
    }


def _batched(
    db: SyncDatabase, data: SyntheticDataset, truth: npt.NDArray[np.intp], cfg: BenchConfig
) -> dict[str, Any]:
    queries = data.queries[: cfg.queries]
    blocks = [queries[i : i + cfg.batch] for i in range(0, len(queries), cfg.batch)]
    blocks = [b for b in blocks if len(b) == cfg.batch] or blocks
    found: list[list[int]] = []

    def ours() -> npt.NDArray[np.float64]:
        found.clear()
        return time_calls(
            lambda b: found.extend(_ids_to_rows(h) for h in db.vector_search_batch(b, k=cfg.k)),
            blocks,
        )

    def raw() -> npt.NDArray[np.float64]:
        return time_calls(lambda b: topk_batch(data.vectors, b, cfg.k, cfg.metric), blocks)

    with limit_threads(2):
        lat = _alternate(cfg.rounds, {"raw": raw, "ours": ours})
    per = len(blocks[0])
    s_raw, s_ours = summarize(lat["raw"], per), summarize(lat["ours"], per)
    return {
        "batch": per,
        "raw_qps": s_raw.qps,
        "ours_qps": s_ours.qps,
        "ratio_qps": s_ours.qps / s_raw.qps,
        "recall_at_k": recall_at_k(found, truth[: len(found), : cfg.k]),
    }


def _filtered(
    db: SyncDatabase, data: SyntheticDataset, cfg: BenchConfig, fraction: float
) -> dict[str, Any]:
    threshold = data.selectivity_threshold("price", fraction)
    allowed = np.flatnonzero(data.price <= threshold)
    price = np.asarray(data.price)
    queries = data.queries[: cfg.queries]
    flt = Query().filter("price", "<=", threshold)
    found: list[list[int]] = []
    truth: list[list[int]] = []

    def ours() -> npt.NDArray[np.float64]:
        found.clear()
        return time_calls(
            lambda q: found.append(_ids_to_rows(db.vector_search(q, k=cfg.k, filter=flt))),
            queries,
            warmup=3,
        )

    def raw_one(q: F32) -> None:
        # What a numpy user writes: evaluate the filter, gather the matching rows, score them.
        rows = np.flatnonzero(price <= threshold)
        truth.append(rows[topk_one(data.vectors[rows], q, cfg.k, cfg.metric)[0]].tolist())

    def raw() -> npt.NDArray[np.float64]:
        truth.clear()
        return time_calls(raw_one, queries, warmup=3)

    with limit_threads(1):
        lat = _alternate(cfg.rounds, {"raw": raw, "ours": ours})
    s_raw, s_ours = summarize(lat["raw"]), summarize(lat["ours"])
    expected = min(cfg.k, len(allowed))
    return {
        "selectivity": len(allowed) / data.n,
        "raw_qps": s_raw.qps,
        "ours_qps": s_ours.qps,
        "ratio_qps": s_ours.qps / s_raw.qps,
        "complete": float(np.mean([len(f) == expected for f in found])),
        "recall_at_k": recall_at_k(found, truth),
    }


def _overhead(target: Target, cfg: BenchConfig) -> dict[str, Any]:
    small = make_clustered(
        cfg.overhead_n, cfg.dim, n_queries=2000, latent_dim=min(16, cfg.dim), seed=cfg.seed + 1
    )
    with target.open() as db:
        db.create_batch(records_for(small, 0, small.n))
        queries = small.queries

        def raw() -> npt.NDArray[np.float64]:
            return time_calls(lambda q: topk_one(small.vectors, q, cfg.k, cfg.metric), queries)

        def ours() -> npt.NDArray[np.float64]:
            return time_calls(lambda q: db.vector_search(q, k=cfg.k), queries)

        def ours_records() -> npt.NDArray[np.float64]:
            return time_calls(lambda q: [h.record for h in db.vector_search(q, k=cfg.k)], queries)

        with limit_threads(1):
            lat = _alternate(
                cfg.rounds + 2, {"raw": raw, "ours": ours, "ours_records": ours_records}
            )
    med = {name: float(np.median(v)) * 1e6 for name, v in lat.items()}
    return {
        "n": cfg.overhead_n,
        "raw_p50_us": med["raw"],
        "ours_p50_us": med["ours"],
        "overhead_us": med["ours"] - med["raw"],
        "overhead_with_records_us": med["ours_records"] - med["raw"],
    }


def compare_sides(
    rounds: int, sides: dict[str, Callable[[], npt.NDArray[np.float64]]], note: str = ""
) -> dict[str, Any]:
    """Time ``sides["raw"]`` and ``sides["ours"]`` (each returns per-call latencies) in
    alternating rounds; QPS of each and their ratio, as a ``RAW_COMPARISONS`` entry."""
    lat = _alternate(rounds, sides)
    s_raw, s_ours = summarize(lat["raw"]), summarize(lat["ours"])
    return {
        "raw_qps": s_raw.qps,
        "ours_qps": s_ours.qps,
        "ratio_qps": s_ours.qps / s_raw.qps,
        "raw_p50_ms": s_raw.p50 * 1e3,
        "ours_p50_ms": s_ours.p50 * 1e3,
        "note": note,
    }


B = TypeVar("B", bound=Backend)


def backend_as(db: SyncDatabase, cls: type[B]) -> B:
    """The database's backend, when it is a ``cls``: a bench section reaching past our API to
    drive the same engine raw."""
    backend = db.backend
    if not isinstance(backend, cls):
        raise TypeError(f"needs a {cls.__name__} database, got {type(backend).__name__}")
    return backend


def timed_ingest(url: str, records: Sequence[Record], **options: Any) -> float:
    """Seconds to write ``records`` into a fresh database at ``url`` with ``create_batch`` calls
    of 10,000 (the ingest side every engine's bench times; closing is not timed)."""
    db = DatabaseFactory.create(url, **options)
    try:
        with Timer() as t:
            for start in range(0, len(records), 10_000):
                db.create_batch(records[start : start + 10_000])
        return t.seconds
    finally:
        db.close()


def sqlite_vs_raw_sqlite_vec(
    db: SyncDatabase, data: SyntheticDataset, cfg: BenchConfig
) -> dict[str, Any]:
    """Our ``vector_search`` against the same KNN SQL issued directly on a second connection
    to the same file (the raw sqlite-vec baseline the issue asks for), unfiltered and at 1%%
    selectivity, in alternating rounds."""
    from ...backends.sqlite import SQLiteBackend
    from ...backends.sqlite.connect import connect

    backend = backend_as(db, SQLiteBackend)
    path, table = backend.raw_knn_target("embedding")
    conn, _ = connect(path)
    queries = data.queries[: cfg.queries]
    threshold = data.selectivity_threshold("price", 0.01)
    flt = Query().filter("price", "<=", threshold)
    knn = f'SELECT rowid, distance FROM "{table}" WHERE embedding MATCH ? AND k = ?'
    filtered = (
        f"{knn} AND rowid IN (SELECT rowid FROM records WHERE json_extract(doc, '$.price') <= ?)"
    )
    counts: list[int] = []

    def sides(filtered_run: bool) -> dict[str, Callable[[], npt.NDArray[np.float64]]]:
        def raw() -> npt.NDArray[np.float64]:
            if filtered_run:
                return time_calls(
                    lambda q: conn.execute(filtered, (q.tobytes(), cfg.k, threshold)).fetchall(),
                    queries,
                    warmup=3,
                )
            return time_calls(
                lambda q: conn.execute(knn, (q.tobytes(), cfg.k)).fetchall(), queries, warmup=3
            )

        def ours() -> npt.NDArray[np.float64]:
            if filtered_run:
                return time_calls(
                    lambda q: counts.append(len(db.vector_search(q, k=cfg.k, filter=flt))),
                    queries,
                    warmup=3,
                )
            return time_calls(lambda q: db.vector_search(q, k=cfg.k), queries, warmup=3)

        return {"raw": raw, "ours": ours}

    try:
        out: dict[str, Any] = {}
        for label, flag in (("unfiltered", False), ("filtered_0.01", True)):
            out[label] = compare_sides(
                cfg.rounds, sides(flag), "same KNN SQL on a second connection to the same file"
            )
        out["filtered_0.01"]["complete"] = float(np.mean([c == cfg.k for c in counts]))
        return out
    finally:
        conn.close()


#: A target's comparison with its own engine driven directly (same data, same run). Each returns
#: ``{label: {"ours_qps", "raw_qps", "ratio_qps", optional "complete", optional "note"}}``.
RawComparison = Callable[[SyncDatabase, SyntheticDataset, BenchConfig], dict[str, dict[str, Any]]]
RAW_COMPARISONS: dict[str, RawComparison] = {
    "sqlite": sqlite_vs_raw_sqlite_vec,
}


def _sections(
    target: Target,
    db: SyncDatabase,
    data: SyntheticDataset,
    truth: npt.NDArray[np.intp],
    cfg: BenchConfig,
) -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    """The measured sections after ingest, in order, as (checkpoint key, thunk)."""

    def filtered(fraction: float) -> Callable[[], dict[str, Any]]:
        return lambda: _filtered(db, data, cfg, fraction)

    against_numpy: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("single", lambda: _single(db, data, truth, cfg)),
        ("batched", lambda: _batched(db, data, truth, cfg)),
        *((f"filtered_{f:g}", filtered(f)) for f in cfg.selectivities),
        ("overhead", lambda: _overhead(target, cfg)),
    ]
    return [
        *(against_numpy if target.numpy_sections else []),
        *(
            [("vs_raw", lambda: RAW_COMPARISONS[target.name](db, data, cfg))]
            if target.name in RAW_COMPARISONS
            else []
        ),
    ]


def run(cfg: BenchConfig, *, out: Path | None = None, resume: bool = False) -> dict[str, Any]:
    """Run every section for every target; returns (and checkpoints) the results."""
    ckpt = Checkpoint(out, cfg, resume)
    ckpt.data["machine"] = machine_info()
    with _progress(f"generating {cfg.n} x {cfg.dim} clustered vectors"), Timer() as t:
        data = make_clustered(
            cfg.n,
            cfg.dim,
            n_queries=max(cfg.queries, cfg.batch),
            latent_dim=min(16, cfg.dim),
            seed=cfg.seed,
        )
    ckpt.data["dataset_seconds"] = t.seconds
    with _progress("exact ground truth (raw numpy, batched)"), limit_threads(2):
        truth, _ = topk_batch(data.vectors, data.queries, cfg.k, cfg.metric)
    for name in cfg.targets:
        target = TARGETS[name]()
        db = target.open()
        try:
            if (
                target.vector_data and db.count() < data.n
            ):  # a resumed run still needs the data in the store
                with _progress(f"{name}: ingest"):
                    section = _ingest(db, data)
                if ckpt.get(f"{name}/ingest") is None:
                    ckpt.put(f"{name}/ingest", section)
            steps = _sections(target, db, data, truth, cfg)
            for key, fn in steps:
                if ckpt.get(f"{name}/{key}") is None:
                    with _progress(f"{name}: {key}"):
                        ckpt.put(f"{name}/{key}", fn())
        finally:
            db.close()
    return ckpt.data
