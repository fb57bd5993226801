"""Exact top-k with plain numpy: the "raw engine" baseline and the ground truth.

Every benchmark run compares the library against the engine it wraps, in the same process
and on the same data, and gates on the ratio, because absolute timings on a shared 2-core
VM are noise. For the memory backend the raw engine is numpy, so this module is written the
way a competent numpy user would write exact search, and nothing cleverer:

* one query: one GEMV over the matrix (``X @ q``), ``np.argpartition`` to find the k best
  in O(n), then a sort of those k;
* a batch: one GEMM per block of queries (``Qb @ X.T``), then ``argpartition`` along axis 1.

The same functions produce the exact ground truth for recall@k. Scores follow the library's
convention (higher is better): cosine similarity, the dot product, and ``1 / (1 + distance)``
for Euclidean (non-squared) and L1 distances. Ties are broken arbitrarily.

Cosine assumes the rows of ``X`` are already L2-normalised (as stored by the library and as
produced by :func:`~dataknobs_data.vector.benchmarks.datasets.make_clustered`); the query is
normalised here, which costs O(d).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "RawMetric",
    "completeness",
    "normalize_metric",
    "recall_at_k",
    "squared_norms",
    "topk_batch",
    "topk_one",
]

RawMetric = Literal["cosine", "dot_product", "euclidean", "l1"]

_ALIASES: dict[str, RawMetric] = {
    "cosine": "cosine",
    "cos": "cosine",
    "angular": "cosine",
    "dot_product": "dot_product",
    "dot": "dot_product",
    "ip": "dot_product",
    "inner_product": "dot_product",
    "euclidean": "euclidean",
    "l2": "euclidean",
    "l1": "l1",
    "manhattan": "l1",
    "taxicab": "l1",
}

_L1_BLOCK_ROWS = 2048  # rows per |X - q| temporary: 3 MB at d=384, stays in L2/L3 cache
_DEFAULT_BLOCK_BYTES = 256 * 2**20  # cap on the (queries x n) float32 score block


def normalize_metric(metric: str | Enum) -> RawMetric:
    """Map a metric name or ``DistanceMetric`` member to this module's canonical name.

    Accepts the same spellings as ``DistanceMetric.parse`` without importing the core, so the
    baseline stays independent of the code it is measuring.
    """
    raw = metric.value if isinstance(metric, Enum) else metric
    key = str(raw).strip().lower().replace("-", "_")
    try:
        return _ALIASES[key]
    except KeyError:
        raise ValueError(f"unknown metric {metric!r}; expected one of {sorted(_ALIASES)}") from None


def squared_norms(x: NDArray[np.floating]) -> NDArray[np.float32]:
    """Row squared L2 norms, computed once per matrix for the Euclidean norm trick.

    A real deployment keeps these next to the matrix; recomputing them per query would read
    the whole matrix a second time and halve single-query throughput.
    """
    arr = np.asarray(x, dtype=np.float32)
    out: NDArray[np.float32] = np.einsum("ij,ij->i", arr, arr)
    return out


def _check(x: NDArray[np.floating], k: int) -> int:
    if x.ndim != 2:
        raise ValueError(f"X must be 2-D (n, d), got shape {x.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return min(k, int(x.shape[0]))


def _best_k(scores: NDArray[np.floating], k: int) -> NDArray[np.intp]:
    """Indices of the k largest scores in descending order (argpartition, then sort k).

    Partitioning at ``n - k`` selects the largest without materialising ``-scores``.
    """
    n = scores.shape[0]
    top = np.argpartition(scores, n - k)[n - k :] if k < n else np.arange(n)
    return top[np.argsort(scores[top])[::-1]]


def _l1_distances(x: NDArray[np.float32], q: NDArray[np.float32]) -> NDArray[np.float32]:
    """``sum |x_i - q|`` for every row, in cache-sized blocks to bound the temporary."""
    out = np.empty(x.shape[0], dtype=np.float32)
    for start in range(0, x.shape[0], _L1_BLOCK_ROWS):
        block = x[start : start + _L1_BLOCK_ROWS]
        np.abs(block - q).sum(axis=1, out=out[start : start + len(block)])
    return out


def _prepared_query(
    q: NDArray[np.floating], metric: RawMetric, dtype: np.dtype[np.floating]
) -> NDArray[np.floating]:
    # Cast first: ``X @ q`` with float32 X and a float64 q would upcast all of X.
    qv = np.asarray(q, dtype=dtype)
    if metric == "cosine":
        norm = float(np.linalg.norm(qv))
        if norm > 0.0:
            qv = qv / dtype.type(norm)
    return qv


def topk_one(
    x: NDArray[np.floating],
    q: NDArray[np.floating],
    k: int,
    metric: str | Enum = "cosine",
    *,
    sq_norms: NDArray[np.floating] | None = None,
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Exact top-k for one query: ``(indices, scores)``, best first, ``min(k, n)`` of each.

    Euclidean uses ``||x||² - 2 x·q`` (``||q||²`` is constant per query) and needs the row
    norms; pass ``sq_norms=squared_norms(X)`` computed once, or they are computed here at the
    price of a second pass over ``X``. The k returned distances are then recomputed directly,
    so they carry no cancellation error. L1 has no GEMV form and is computed in row blocks.
    """
    kk = _check(x, k)
    name = normalize_metric(metric)
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float32)
    qv = _prepared_query(q, name, dtype)
    if qv.shape != (x.shape[1],):
        raise ValueError(f"query has shape {qv.shape}, expected ({x.shape[1]},)")

    if name in ("cosine", "dot_product"):
        scores = x @ qv
        top = _best_k(scores, kk)
        return top, scores[top].astype(np.float64)
    if name == "euclidean":
        norms = squared_norms(x) if sq_norms is None else sq_norms
        # argmin ||x - q||² == argmax (x·q - ||x||²/2): one GEMV plus one fused pass.
        half = x @ qv
        half -= 0.5 * norms
        top = _best_k(half, kk)
        dist = np.linalg.norm(x[top].astype(np.float64) - qv.astype(np.float64), axis=1)
    else:
        neg = _l1_distances(np.asarray(x, dtype=np.float32), qv.astype(np.float32))
        np.negative(neg, out=neg)
        top = _best_k(neg, kk)
        dist = np.abs(x[top].astype(np.float64) - qv.astype(np.float64)).sum(axis=1)
    order = np.argsort(dist, kind="stable")
    return top[order], 1.0 / (1.0 + dist[order])


def topk_batch(
    x: NDArray[np.floating],
    queries: NDArray[np.floating],
    k: int,
    metric: str | Enum = "cosine",
    *,
    block_rows: int | None = None,
    sq_norms: NDArray[np.floating] | None = None,
) -> tuple[NDArray[np.intp], NDArray[np.float64]]:
    """Exact top-k for many queries: ``(indices (B, k'), scores (B, k'))`` with ``k' = min(k, n)``.

    Queries are processed ``block_rows`` at a time: one GEMM ``Qb @ X.T`` per block, then
    ``np.argpartition`` along axis 1, then a sort of the k per row. Blocking over queries
    bounds the score matrix (B x n float32 would be 400 MB for 1000 queries on 100k rows) and
    reuses one buffer, so no block pays fresh page faults. When ``block_rows`` is None it is
    the largest block whose score matrix fits in 256 MB.

    This is also the ground-truth routine; L1 runs the blocked single-query kernel per query
    (no GEMM form exists), which is slow but exact.
    """
    kk = _check(x, k)
    name = normalize_metric(metric)
    qs = np.asarray(queries)
    if qs.ndim != 2 or qs.shape[1] != x.shape[1]:
        raise ValueError(f"queries must have shape (B, {x.shape[1]}), got {qs.shape}")
    n_q = qs.shape[0]
    out_idx = np.empty((n_q, kk), dtype=np.intp)
    out_scores = np.empty((n_q, kk), dtype=np.float64)
    if n_q == 0 or kk == 0:
        return out_idx, out_scores
    if name == "l1":
        for i in range(n_q):
            out_idx[i], out_scores[i] = topk_one(x, qs[i], kk, name)
        return out_idx, out_scores

    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float32)
    n = int(x.shape[0])
    if block_rows is None:
        block_rows = max(1, _DEFAULT_BLOCK_BYTES // (n * dtype.itemsize))
    if block_rows < 1:
        raise ValueError(f"block_rows must be >= 1, got {block_rows}")
    block_rows = min(block_rows, n_q)

    qs = np.asarray(qs, dtype=dtype)
    if name == "cosine":
        qn = np.linalg.norm(qs, axis=1, keepdims=True)
        qs = qs / np.where(qn > 0, qn, 1).astype(dtype)
    half_norms = None
    if name == "euclidean":
        norms = squared_norms(x) if sq_norms is None else np.asarray(sq_norms)
        half_norms = (0.5 * norms).astype(dtype)

    buf = np.empty((block_rows, n), dtype=dtype)
    rows_k = np.arange(block_rows)[:, None]
    for start in range(0, n_q, block_rows):
        qb = qs[start : start + block_rows]
        b = len(qb)
        scores = buf[:b]
        np.matmul(qb, x.T, out=scores)
        if half_norms is not None:
            scores -= half_norms  # argmax(x·q - ||x||²/2) == argmin ||x - q||
        if kk < n:
            top = np.argpartition(scores, n - kk, axis=1)[:, n - kk :]
        else:
            top = np.broadcast_to(np.arange(n), (b, n)).copy()
        top_scores = scores[rows_k[:b], top]
        if name == "euclidean":
            # Exact distances of the k winners, row by row: a (B, k, d) float64 gather
            # would cost hundreds of MB for a ground truth with k=100.
            for i in range(b):
                diff = x[top[i]].astype(np.float64) - qb[i].astype(np.float64)
                dist = np.sqrt(np.einsum("kd,kd->k", diff, diff))
                order = np.argsort(dist, kind="stable")
                out_idx[start + i] = top[i, order]
                out_scores[start + i] = 1.0 / (1.0 + dist[order])
        else:
            order = np.argsort(-top_scores, axis=1, kind="stable")
            out_idx[start : start + b] = np.take_along_axis(top, order, axis=1)
            out_scores[start : start + b] = np.take_along_axis(top_scores, order, axis=1)
    return out_idx, out_scores


def recall_at_k(
    found_ids: Sequence[Sequence[int]] | NDArray[np.integer],
    true_ids: Sequence[Sequence[int]] | NDArray[np.integer],
    k: int | None = None,
) -> float:
    """Mean over queries of ``|found[:k] ∩ true[:k]| / k``, by ID-set intersection.

    ID sets, not scores, because backends round scores differently and order ties
    differently; a tie at the k-th place can still cost a hit, which is the usual convention
    (ann-benchmarks' distance-threshold recall forgives it; ours is slightly stricter).
    ``k`` defaults to the width of ``true_ids``. Rows of ``found_ids`` may be ragged or
    shorter than k (a backend returned fewer hits; the missing ones count as misses) and may
    hold padding such as faiss's -1, which never matches. A single query may be passed as
    two 1-D arrays.
    """
    true_rows = _as_rows(true_ids)
    found_rows = _as_rows(found_ids)
    if len(true_rows) != len(found_rows):
        raise ValueError(f"{len(found_rows)} result rows for {len(true_rows)} ground-truth rows")
    if not true_rows:
        return float("nan")
    kk = k if k is not None else max(len(row) for row in true_rows)
    if kk < 1:
        raise ValueError(f"k must be >= 1, got {kk}")
    hits = 0
    for found, true in zip(found_rows, true_rows, strict=True):
        hits += len(set(found[:kk]).intersection(true[:kk]))
    return hits / (kk * len(true_rows))


def completeness(found_ids: Sequence[Sequence[int]] | NDArray[np.integer], k: int) -> float:
    """Share of queries that returned at least ``k`` real hits (padding ``-1`` excluded).

    Post-filtering engines (pgvector HNSW with a selective WHERE, an Elasticsearch filter
    outside the knn clause) silently return fewer than k rows; recall alone hides that.
    """
    rows = _as_rows(found_ids)
    if not rows:
        return float("nan")
    return sum(1 for row in rows if sum(1 for v in row if v >= 0) >= k) / len(rows)


def _as_rows(ids: Sequence[Sequence[int]] | NDArray[np.integer]) -> list[list[int]]:
    if isinstance(ids, np.ndarray):
        arr = ids if ids.ndim == 2 else ids.reshape(1, -1)
        return [list(map(int, row)) for row in arr.tolist()]
    return [[int(v) for v in row] for row in ids]
