"""Numpy kernels for exact vector search over one contiguous float32 matrix per field.

Scores are computed for all rows with a single matrix product (GEMV for one query, GEMM for a
batch), rows that fail the filter are masked to ``-inf`` *before* selection, and the top ``k``
are found with ``argpartition`` (linear time) instead of a full sort. Ties at the k-th score are
resolved by record id so that every backend and every run agree on the order.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from .types import DistanceMetric

__all__ = [
    "RERANK_EXTRA",
    "exact_distances",
    "score_matrix",
    "scores_from_distances",
    "rank_candidates",
    "rank_exact",
    "tie_tolerance",
    "topk_candidates",
    "topk_candidates_batch",
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


@lru_cache(maxsize=64)
def _zeros(n: int) -> F32:
    return np.zeros(n, dtype=np.float32)


def all_finite(vector: F32) -> bool:
    """Whether a float32 vector holds no NaN or infinity, in one BLAS call: ``v . 0`` is NaN
    exactly when ``v`` holds one (``x * 0`` is 0 for every finite ``x``, even the largest).
    Callers that may see non-finite values wrap it in ``np.errstate(invalid="ignore")``."""
    return math.isfinite(float(np.dot(vector, _zeros(vector.shape[0]))))


def tie_order(distances: list[float], ids: list[str]) -> list[int] | None:
    """Positions ordering one query's hits by (distance, id), or ``None`` when they already
    are in strictly ascending distance order, as engines return them nearly always (two C
    calls on a handful of floats instead of a sort of tuples)."""
    if distances == sorted(distances) and len(set(distances)) == len(distances):
        return None
    return sorted(range(len(ids)), key=lambda i: (distances[i], ids[i]))


def score_list(distances: list[float], metric: DistanceMetric) -> list[float]:
    """:func:`scores_from_distances` over one query's handful of plain floats (no numpy call:
    for a few hits it would cost more than the arithmetic)."""
    if metric is DistanceMetric.COSINE:
        return [1.0 - d for d in distances]
    if metric is DistanceMetric.DOT_PRODUCT:
        return [-d for d in distances]
    return [1.0 / (1.0 + d) for d in distances]


def kept_scores(
    distances: list[float], metric: DistanceMetric, threshold: float | None
) -> list[float]:
    """Scores of hits ranked best first, cut before the first one under ``threshold``
    (callers keep that many hits)."""
    scores = score_list(distances, metric)
    if threshold is not None:
        scores = scores[: sum(1 for s in scores if s >= threshold)]
    return scores


#: float32 scores within this relative distance of the k-th are re-ranked in float64.
_NEAR = 1e-5
#: Candidates kept (or rows fetched) beyond k, so a near tie at the boundary is usually seen
#: without a full pass; every backend that re-ranks float32 candidates uses this one margin.
RERANK_EXTRA = 8


def tie_tolerance(kth: float) -> float:
    """How far from ``kth`` (a float32 score or distance) a value may be and still be tied with
    it: float32 rounding noise, relative to the magnitude (absolute below 1). Every backend
    that re-ranks float32 candidates in float64 draws its tie window with this."""
    return _NEAR * max(1.0, abs(kth))


def topk_candidates(scores: F32, k: int) -> Rows:
    """Rows that may rank among the ``k`` best, unordered (finite scores only).

    float32 products round differently depending on where a row sits in the matrix, so exact
    duplicates can differ in the last bit. The ``k + 8`` best rows are kept, and when even the
    last of them is within rounding distance of the k-th score, every such row in the whole
    matrix; :func:`rank_candidates` then decides, in float64 if needed, with ties broken by id.
    Masked rows hold ``-inf`` and never come back, so a filtered search yields fewer than ``k``
    hits only when fewer than ``k`` rows pass the filter.
    """
    n = scores.shape[0]
    keep = k + RERANK_EXTRA
    if n == 0 or k <= 0:
        return np.empty(0, dtype=np.intp)
    if keep >= n:
        return np.flatnonzero(np.isfinite(scores))
    part = np.argpartition(scores, n - keep)[n - keep :]
    # k + 8 values: plain Python is cheaper than several tiny numpy calls.
    values = scores[part].tolist()
    ranked = sorted(values, reverse=True)
    kth = ranked[k - 1]
    if math.isfinite(kth) and ranked[-1] >= kth - tie_tolerance(kth):
        return np.flatnonzero(scores >= kth - tie_tolerance(kth))
    if math.isfinite(ranked[-1]):
        return part
    return part[np.isfinite(scores[part])]


def topk_candidates_batch(scores: F32, k: int) -> list[Rows]:
    """:func:`topk_candidates` for each row of a ``(B, n)`` score matrix, partitioned at once."""
    b, n = scores.shape
    keep = k + RERANK_EXTRA
    if n == 0 or k <= 0 or keep >= n:
        return [topk_candidates(row, k) for row in scores]
    part = np.argpartition(scores, n - keep, axis=1)[:, n - keep :]
    values = np.take_along_axis(scores, part, axis=1)
    kth = np.partition(values, keep - k, axis=1)[:, keep - k]
    floor = kth - _NEAR * np.maximum(1.0, np.abs(kth))
    wide = np.isfinite(kth) & (values.min(axis=1) >= floor)
    finite = np.isfinite(values)
    return [topk_candidates(scores[i], k) if wide[i] else part[i][finite[i]] for i in range(b)]


def rank_candidates(
    cand_scores: F32,
    vectors: Callable[[], F32],
    query: F32,
    metric: DistanceMetric,
    ids: Callable[[], Sequence[str]],
    k: int,
) -> tuple[list[int], list[float]]:
    """Order candidates best first, keep ``k``: ``(positions, distances)``.

    ``vectors`` and ``ids`` are fetched only when the exact path needs them.

    When the float32 scores of cosine / dot-product candidates are clearly apart down to the
    first one left out, their order is already exact and they are used as they are; otherwise
    (near ties, or distance metrics whose float32 stand-in loses precision) every candidate is
    re-scored in float64.
    """
    if metric in (DistanceMetric.COSINE, DistanceMetric.DOT_PRODUCT):
        # A handful of values: plain Python beats a chain of tiny numpy calls here.
        values = cand_scores.tolist()
        order = sorted(range(len(values)), key=values.__getitem__, reverse=True)
        ranked = [values[i] for i in order[: k + 1]]
        # One tolerance for the whole run (from its largest magnitude) is the stricter test.
        tolerance = tie_tolerance(max(abs(ranked[0]), abs(ranked[-1])))
        if len(ranked) < 2 or min(map(operator.sub, ranked, ranked[1:])) > tolerance:
            top = ranked[:k]
            if metric is DistanceMetric.COSINE:
                return order[:k], [1.0 - min(1.0, max(-1.0, v)) for v in top]
            return order[:k], [-v for v in top]
    order, distances = rank_exact(vectors(), query, metric, ids(), k)
    return order, distances.tolist()


def rank_exact(
    vectors: F32, query: F32, metric: DistanceMetric, ids: Sequence[str], k: int
) -> tuple[list[int], npt.NDArray[np.float64]]:
    """Order candidate rows by float64 distance, then id; keep ``k``: ``(positions, distances)``."""
    distances = exact_distances(vectors, query, metric)
    order = sorted(range(len(ids)), key=lambda i: (distances[i], ids[i]))[:k]
    return order, distances[order]
