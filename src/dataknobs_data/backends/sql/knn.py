"""What every SQL k-nearest-neighbour search shares: the shape of its candidate queries, and the
rule that decides when a float32 answer surely holds the exact top ``k``.

Both engines compute distances in float32, fetch ``k + RERANK_EXTRA`` rows ordered by distance,
and grow the fetch while the k-th distance is tied (within float32 noise, see
:func:`~dataknobs_data.vector.operations.tie_tolerance`) with the last row fetched; the rows
within that tie window are then re-scored in float64 by the backend. Where the rows come from
(sqlite-vec's ``vec0`` table, a pgvector column, an index) is each engine's own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from ...vector.operations import RERANK_EXTRA, tie_tolerance

__all__ = ["GROWTH", "RERANK_EXTRA", "select_sql", "settled", "tie_bound", "within_tie"]

T = TypeVar("T")

#: how much a fetch grows when the k-th distance is still tied with the last row fetched
GROWTH = 4


def select_sql(
    columns: Sequence[str],
    table: str,
    where: Sequence[str] = (),
    order_by: Sequence[str] = (),
    limit: str | None = None,
) -> str:
    """``SELECT columns FROM table [WHERE a AND b] [ORDER BY ...] [LIMIT limit]``: every
    candidate query of a kNN search (the table already quoted, ``limit`` a placeholder)."""
    text = f"SELECT {', '.join(columns)} FROM {table}"
    if where:
        text += " WHERE " + " AND ".join(where)
    if order_by:
        text += " ORDER BY " + ", ".join(order_by)
    if limit is not None:
        text += f" LIMIT {limit}"
    return text


def tie_bound(ordered: Sequence[float], k: int) -> float:
    """The largest distance tied with the k-th smallest of ``ordered`` (ascending, not empty;
    ``k`` beyond its length means the last)."""
    kth = ordered[min(k, len(ordered)) - 1]
    return kth + tie_tolerance(kth)


def settled(ordered: Sequence[float], k: int, horizon: float | None) -> bool:
    """Whether every row tied with the k-th of the fetched ``ordered`` distances was fetched:
    ``horizon`` is the distance no unfetched row is below (``None``: not known)."""
    return horizon is not None and bool(ordered) and tie_bound(ordered, k) < horizon


def within_tie(found: Sequence[T], k: int, distance: Callable[[T], float]) -> list[T]:
    """The rows of ``found`` (any order) that may rank among the ``k`` nearest: the k-th
    smallest distance and everything within float32 noise of it or below."""
    if not found:
        return []
    bound = tie_bound(sorted(distance(r) for r in found), k)
    return [r for r in found if distance(r) <= bound]
