"""chroma in the benchmark: our API (``chroma://``) beside the same chroma collection driven raw.

Importing this module registers the ``chroma`` target, its raw comparison and its ANN sweep
(:func:`~.harness.register_engines` does so for the CLI). The raw side queries the very
collection our backend writes the vector field to, so both sides search the same HNSW graph
with the same settings; what differs is our per-call work: validation, the compiled ``where``,
``k + 1`` candidates instead of ``k`` (the last one tells whether the cut falls in a tie), the
float64 re-score of the stored vectors when candidates nearly tie, and the result objects
(records are read only when a hit's ``record`` is used).

* ``vs_raw`` (synthetic set): single queries unfiltered and at 1% selectivity, ours vs
  ``collection.query(query_embeddings=[q], n_results=k, include=["distances"])`` (the least a
  raw caller can ask for). Filtered, the raw side passes the ``where`` our compiler produces
  for ``price <= t`` (one int comparison on the stored key, as a raw user comparing a float
  key would write).
* ANN sweep (``--dataset fashion-mnist``): HNSW (max_neighbors 16, ef_construction 100, chroma's
  defaults; ef_search 10 at creation), ``ef_search`` 10 to 160 per query, recall@10 and QPS of
  ours and raw, single client. Chroma takes no per-query ef, and ``collection.modify`` does not
  reach the index a running process has loaded (measured), so both sides ask for
  ``max(k, ef)`` results (hnswlib searches with ``ef = max(ef_search, n_results)``) and keep
  the best ``k``.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ...backends.chroma import ChromaBackend
from ...database import SyncDatabase
from ...engines.chroma.where import compile_where
from ...factory import DatabaseFactory
from ...fields import VectorField
from ...query import F
from ...records import Record
from ..types import DistanceMetric, VectorConfig, VectorIndexConfig
from .ann import ANN_SWEEPS, AnnConfig, measure_point
from .datasets import SyntheticDataset
from .harness import (
    RAW_COMPARISONS,
    TARGETS,
    BenchConfig,
    Target,
    backend_as,
    compare_sides,
    scratch_dir,
    scratch_target,
)
from .measure import Timer, limit_threads, time_calls
from .realdata import RealDataset

__all__ = ["chroma_vs_raw", "sweep_chroma"]

F32 = npt.NDArray[np.float32]
#: chroma's defaults for the graph; ef_search 10 at creation is the floor the sweep raises
HNSW = {"max_neighbors": 16, "ef_construction": 100, "ef_search": 10}
EF_SWEEP = (10, 20, 40, 80, 160)


def _chroma_target() -> Target:
    """A fresh persistent chroma directory per ``open()`` (removed at exit)."""
    return scratch_target("chroma", "chroma", lambda path: f"chroma:///{path}")


def _raw_collection(db: SyncDatabase, field: str) -> Any:
    return backend_as(db, ChromaBackend).raw_collection(field)


def chroma_vs_raw(db: SyncDatabase, data: SyntheticDataset, cfg: BenchConfig) -> dict[str, Any]:
    """Unfiltered and 1%-filtered single queries, ours vs raw ``collection.query``."""
    col = _raw_collection(db, "embedding")
    queries = data.queries[: cfg.queries]
    threshold = data.selectivity_threshold("price", 0.01)
    condition = F("price") <= threshold
    where = compile_where(condition)
    out: dict[str, Any] = {}
    for label, flt, raw_where in (
        ("unfiltered", None, None),
        ("filtered_0.01", condition, where),
    ):
        counts: dict[str, list[int]] = {"ours": [], "raw": []}

        def raw_call(q: F32, w: Any = raw_where, c: dict[str, list[int]] = counts) -> None:
            got = col.query(query_embeddings=[q], n_results=cfg.k, where=w, include=["distances"])
            c["raw"].append(len(got["ids"][0]))

        def ours_call(q: F32, f: Any = flt, c: dict[str, list[int]] = counts) -> None:
            c["ours"].append(len(db.vector_search(q, k=cfg.k, filter=f)))

        with limit_threads(1):
            entry = compare_sides(
                cfg.rounds,
                {
                    "raw": partial(time_calls, raw_call, queries, warmup=3),
                    "ours": partial(time_calls, ours_call, queries, warmup=3),
                },
                "same chroma collection queried raw (include=['distances'])"
                + ("; raw where = our compiled where for price <= t" if flt is not None else ""),
            )
        entry["complete"] = float(np.mean([c == cfg.k for c in counts["ours"]]))
        entry["raw_complete"] = float(np.mean([c == cfg.k for c in counts["raw"]]))
        out[label] = entry
    return out


def _load(data: RealDataset, path: Path) -> SyncDatabase:
    config = VectorConfig(
        data.dimensions,
        metric=DistanceMetric.parse(data.metric),
        index=VectorIndexConfig("hnsw", dict(HNSW)),
    )
    db = DatabaseFactory.create(f"chroma:///{path}", vectors={"embedding": config})
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


def sweep_chroma(
    data: RealDataset,
    queries: npt.NDArray[np.float32],
    truth: npt.NDArray[np.int64],
    cfg: AnnConfig,
) -> dict[str, Any]:
    """fashion-mnist through ``chroma://``: ``ef_search`` sweep, ours vs raw collection.query."""
    with Timer() as load:
        db = _load(data, scratch_dir("chroma") / "ann")
    try:
        col = _raw_collection(db, "embedding")
        points = []
        with limit_threads(1):
            for ef in EF_SWEEP:

                def ours(q: F32, p: dict[str, Any] = {"ef_search": ef}) -> list[int]:  # noqa: B006
                    hits = db.vector_search(q, k=cfg.k, search_params=p)
                    return [int(h.id[1:]) for h in hits]

                def raw(q: F32, n: int = max(cfg.k, ef)) -> list[int]:
                    got = col.query(query_embeddings=[q], n_results=n, include=["distances"])
                    return [int(i[1:]) for i in got["ids"][0][: cfg.k]]

                point = measure_point(
                    f"ef_search={ef}", ours, raw, queries, truth, cfg.k, cfg.rounds
                )
                points.append(point.as_dict())
        return {
            "index": f"chroma HNSW max_neighbors={HNSW['max_neighbors']} "
            f"ef_construction={HNSW['ef_construction']} ({data.metric})",
            "load_s": load.seconds,
            "build_s": 0.0,
            "points": points,
            "note": f"{data.base.shape[0]} rows loaded with create_batch into a persistent "
            "chroma:// directory (chroma builds HNSW while loading: build time is inside load); "
            "raw = collection.query(n_results=max(k, ef)) on the same collection, first k kept",
        }
    finally:
        db.close()


TARGETS["chroma"] = _chroma_target
RAW_COMPARISONS["chroma"] = chroma_vs_raw
ANN_SWEEPS["chroma"] = sweep_chroma
