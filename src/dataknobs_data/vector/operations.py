"""Numpy kernels for exact vector search over one contiguous float32 matrix per field.

Scores are computed for all rows with a single matrix product (GEMV for one query, GEMM for a
batch), rows that fail the filter are masked to ``-inf`` *before* selection, and the top ``k``
are found with ``argpartition`` (linear time) instead of a full sort. Ties at the k-th score are
resolved by record id so that every backend and every run agree on the order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from .types import DistanceMetric

__all__ = [
    "exact_distances",
    "score_matrix",
    "scores_from_distances",
    "select_topk",
    "select_topk_batch",
]

F32 = npt.NDArray[np.float32]
Rows = npt.NDArray[np.intp]

_L1_BLOCK_BYTES = 32 * 1024 * 1024


def _safe_inverse(norms: F32) -> F32:
    """1 / norm, with 0 for zero vectors (cosine with a zero vector is defined as 0)."""
    out = np.zeros_like(norms)
    np.divide(1.0, norms, out=out, where=norms > 0)
    return out


def score_matrix(
    matrix: F32,
    queries: F32,
    metric: DistanceMetric,
    *,
    inv_norms: F32 | None = None,
    sq_norms: F32 | None = None,
    unit_rows: bool = False,
) -> F32:
    """Scores (higher is better) of every row against every query: shape ``(B, n)``.

    ``inv_norms`` / ``sq_norms`` are the per-row caches the memory backend keeps so cosine and
    Euclidean cost one product plus O(n) work; ``unit_rows`` says every row already has norm 1
    (within float32 rounding), as most embedders produce, so cosine is the bare product. For
    Euclidean the returned value is ``-(squared distance)``, a monotone stand-in that is
    converted after selection.
    """
    if metric is DistanceMetric.L1:
        return _l1_scores(matrix, queries)
    if metric is DistanceMetric.COSINE:
        # Normalise the B queries rather than the n x B products.
        if queries.shape[0] == 1:
            qn = float(np.sqrt(queries[0] @ queries[0]))
            queries = queries * np.float32(0.0 if qn == 0.0 else 1.0 / qn)
        else:
            queries = queries * _safe_inverse(np.linalg.norm(queries, axis=1))[:, None]
    if queries.shape[0] == 1 and metric is not DistanceMetric.EUCLIDEAN:
        products: F32 = (matrix @ queries[0])[None, :]
    else:
        products = queries @ matrix.T
    if metric is DistanceMetric.DOT_PRODUCT:
        return products
    if metric is DistanceMetric.COSINE:
        if not unit_rows:
            products *= (
                _safe_inverse(np.linalg.norm(matrix, axis=1)) if inv_norms is None else inv_norms
            )
        return products
    sq = np.einsum("ij,ij->i", matrix, matrix) if sq_norms is None else sq_norms
    qsq = np.einsum("ij,ij->i", queries, queries)
    products *= 2.0
    products -= sq
    products -= qsq[:, None]
    np.minimum(products, 0.0, out=products)
    return products


def _l1_scores(matrix: F32, queries: F32) -> F32:
    out = np.empty((queries.shape[0], matrix.shape[0]), dtype=np.float32)
    block = max(1, _L1_BLOCK_BYTES // max(1, matrix.shape[1] * 4))
    for b, q in enumerate(queries):
        for start in range(0, matrix.shape[0], block):
            chunk = matrix[start : start + block]
            out[b, start : start + chunk.shape[0]] = -np.abs(chunk - q).sum(axis=1)
    return out


def exact_distances(vectors: F32, query: F32, metric: DistanceMetric) -> npt.NDArray[np.float64]:
    """Distances of a few rows to one query, in float64 (used to report the k hits precisely)."""
    v = vectors.astype(np.float64)
    q = query.astype(np.float64)
    if metric is DistanceMetric.EUCLIDEAN:
        return np.sqrt(((v - q) ** 2).sum(axis=1))
    if metric is DistanceMetric.L1:
        return np.abs(v - q).sum(axis=1)
    if metric is DistanceMetric.DOT_PRODUCT:
        return -(v @ q)
    norms = np.linalg.norm(v, axis=1) * np.linalg.norm(q)
    sims = np.divide(v @ q, norms, out=np.zeros(len(v)), where=norms > 0)
    return 1.0 - sims


def scores_from_distances(
    distances: npt.NDArray[np.float64], metric: DistanceMetric
) -> npt.NDArray[np.float64]:
    """The public score convention: cosine similarity, dot product, or ``1 / (1 + distance)``."""
    if metric is DistanceMetric.COSINE:
        return 1.0 - distances
    if metric is DistanceMetric.DOT_PRODUCT:
        return -distances
    return 1.0 / (1.0 + distances)


def select_topk(scores: F32, k: int, tie_key: Callable[[int], str]) -> Rows:
    """Positions of the ``k`` best finite scores, best first, ties broken by ``tie_key``.

    Masked rows hold ``-inf`` and are never returned, so a filtered search yields fewer than
    ``k`` hits only when fewer than ``k`` rows pass the filter.
    """
    n = scores.shape[0]
    if n == 0 or k <= 0:
        return np.empty(0, dtype=np.intp)
    if k >= n:
        cand = np.flatnonzero(np.isfinite(scores))
        return _ordered(cand, scores, tie_key)
    part = np.argpartition(scores, n - k)[n - k :]
    kth = scores[part].min()
    if not np.isfinite(kth):
        return _ordered(part[np.isfinite(scores[part])], scores, tie_key)
    if np.count_nonzero(scores >= kth) > k:
        # Rows tied with the k-th score compete too, so the id tie-break is exact.
        return _ordered(np.flatnonzero(scores >= kth), scores, tie_key)[:k]
    return _ordered(part, scores, tie_key)


def _ordered(cand: Rows, scores: F32, tie_key: Callable[[int], str]) -> Rows:
    """Candidates best first; equal scores in ``tie_key`` order."""
    values = scores[cand]
    order = np.argsort(-values, kind="stable")
    ranked, values = cand[order], values[order]
    if values.shape[0] > 1 and bool((values[1:] == values[:-1]).any()):
        keyed = sorted(
            zip(ranked.tolist(), values.tolist(), strict=True),
            key=lambda p: (-p[1], tie_key(p[0])),
        )
        return np.asarray([p[0] for p in keyed], dtype=np.intp)
    return ranked


def select_topk_batch(scores: F32, k: int, tie_key: Callable[[int], str]) -> Sequence[Rows]:
    """:func:`select_topk` for each row of a ``(B, n)`` score matrix, partitioned in one call."""
    b, n = scores.shape
    if n == 0 or k <= 0:
        return [np.empty(0, dtype=np.intp) for _ in range(b)]
    if k >= n:
        return [select_topk(row, k, tie_key) for row in scores]
    part = np.argpartition(scores, n - k, axis=1)[:, n - k :]
    kth = np.take_along_axis(scores, part, axis=1).min(axis=1)
    ties = np.count_nonzero(scores >= kth[:, None], axis=1) > k
    out: list[Rows] = []
    for i in range(b):
        if ties[i] or not np.isfinite(kth[i]):
            out.append(select_topk(scores[i], k, tie_key))
            continue
        out.append(_ordered(part[i], scores[i], tie_key))
    return out
