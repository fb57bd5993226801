"""Exact k-nearest-neighbour search over sqlite-vec tables, filter applied inside SQLite.

Candidates come from the engine: the ``vec0`` KNN operator when the query metric is the table's
own (with the compiled filter as a ``rowid IN (subquery)`` constraint, which vec0 applies inside
the scan, so ``k`` rows come back whenever ``k`` rows match), an exact ``vec_distance_*`` scan
for another sqlite-vec metric, or numpy over the filtered rows for dot product, which sqlite-vec
does not have. The engine works in float32, so a few extra candidates are fetched and, when the
k-th distance is tied (within float32 noise) with the last fetched one, the fetch grows until
the tie is inside; the candidates are then re-scored in float64 and ordered by
``(distance, id)``, which makes exact ties come back in id order as the contract requires.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ...vector.types import DistanceMetric
from ..sql.identifiers import quote_identifier
from ..sql.knn import GROWTH, RERANK_EXTRA, select_sql, settled, tie_bound, within_tie
from ..sql.sqlite import json_path
from .ddl import VEC0_METRIC

__all__ = ["Candidates", "Plan", "find_candidates"]

Execute = Callable[[str, dict[str, Any]], list[tuple[Any, ...]]]
F32 = npt.NDArray[np.float32]

KNN_LIMIT = 4096  # vec0 refuses larger k
PAD = RERANK_EXTRA  # extra rows fetched so the k-th distance is rarely tied with the last one
_SCAN_FN = {
    DistanceMetric.COSINE: "vec_distance_cosine",
    DistanceMetric.EUCLIDEAN: "vec_distance_l2",
    DistanceMetric.L1: "vec_distance_l1",
}


@dataclass(frozen=True, slots=True)
class Plan:
    """One search: the vec0 table, metrics, and the compiled filter (``None``: no filter)."""

    records: str  # collection name
    table: str  # vec0 table name
    field: str
    table_metric: DistanceMetric
    metric: DistanceMetric
    filter_sql: str | None
    filter_params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Candidates:
    """Rowids that surely contain the top ``k`` (exact ties included)."""

    rowids: list[int]


def _within_tie(found: Sequence[tuple[int, float]], k: int) -> Candidates:
    """The rows up to the k-th distance plus everything tied with it (float32 noise)."""
    return Candidates([r for r, _ in within_tie(found, k, lambda p: p[1])])


def _where_filter(plan: Plan) -> list[str]:
    """The filter as a constraint on a ``vec0`` table's rowids (none without a filter)."""
    if plan.filter_sql is None:
        return []
    records = quote_identifier(plan.records)
    return [f"rowid IN (SELECT rowid FROM {records} WHERE {plan.filter_sql})"]


def _zero_query(execute: Execute, plan: Plan, k: int) -> Candidates:
    """Cosine with a zero query ties every row at 0: the first k by id that have a vector."""
    where = ["json_extract(types, :vf) = 'vector'"]
    if plan.filter_sql is not None:
        where.append(plan.filter_sql)
    sql = select_sql(["rowid"], quote_identifier(plan.records), where, ["id"], ":k")
    field_path = json_path([plan.field])
    rows = execute(sql, {**plan.filter_params, "vf": field_path, "k": k})
    return Candidates([r[0] for r in rows])


def _knn(
    execute: Execute, plan: Plan, query: bytes, fetch: int
) -> tuple[list[tuple[int, float]], float | None]:
    """vec0 KNN. Zero stored vectors have a NULL cosine distance (really 1, see
    :func:`_with_zero_rows`), and the horizon is the last non-NULL distance."""
    where = ["embedding MATCH :q", "k = :k", *_where_filter(plan)]
    sql = select_sql(["rowid", "distance"], quote_identifier(plan.table), where)
    rows = execute(sql, {**plan.filter_params, "q": query, "k": fetch})
    found = [(int(r), 1.0 if d is None else float(d)) for r, d in rows]
    if len(rows) < fetch:
        return found, float("inf")
    real = [float(d) for _, d in rows if d is not None]
    return found, (real[-1] if real else None)


def _with_zero_rows(
    execute: Execute, plan: Plan, found: list[tuple[int, float]], k: int
) -> list[tuple[int, float]]:
    """``found`` plus the first ``k`` stored zero vectors by id, when they can rank.

    A zero vector's cosine distance is 1 (similarity 0), but vec0 gives it a NULL distance and
    returns such rows at arbitrary places of its answer (sqlite-vec 0.1.9), so some may be
    missing from the rows fetched. They tie with each other, so the first ``k`` by id are the
    only ones that can rank, and only when the k-th distance reaches 1: rare for real data,
    so the scan for them is paid only then.
    """
    if found and len(found) >= k and tie_bound(sorted(d for _, d in found), k) < 1.0:
        return found
    records = quote_identifier(plan.records)
    where = ["vec_distance_cosine(v.embedding, v.embedding) IS NULL"]
    if plan.filter_sql is not None:
        where.append(f"v.rowid IN (SELECT rowid FROM {records} WHERE {plan.filter_sql})")
    table = f"{quote_identifier(plan.table)} AS v JOIN {records} AS r ON r.rowid = v.rowid"
    sql = select_sql(["v.rowid"], table, where, ["r.id"], ":k")
    have = {rowid for rowid, _ in found}
    zeros = [(int(r[0]), 1.0) for r in execute(sql, {**plan.filter_params, "k": k})]
    return found + [z for z in zeros if z[0] not in have]


def _scan(
    execute: Execute, plan: Plan, query: bytes, fetch: int
) -> tuple[list[tuple[int, float]], float | None]:
    """An exact scan with a sqlite-vec distance function (another metric than the table's)."""
    distance = f"COALESCE({_SCAN_FN[plan.metric]}(embedding, :q), 1.0) AS d"
    table = quote_identifier(plan.table)
    sql = select_sql(["rowid", distance], table, _where_filter(plan), ["d"], ":k")
    rows = execute(sql, {**plan.filter_params, "q": query, "k": fetch})
    found = [(int(r), float(d)) for r, d in rows]
    if len(rows) < fetch:
        return found, float("inf")
    return found, found[-1][1]


def _dot(execute: Execute, plan: Plan, query: F32, k: int) -> Candidates:
    """Dot product in numpy over the (filtered) rows, read in the caller's transaction."""
    sql = select_sql(["rowid", "embedding"], quote_identifier(plan.table), _where_filter(plan))
    rows = execute(sql, plan.filter_params)
    if not rows:
        return Candidates([])
    rowids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
    distances = -(matrix @ query)
    fetch = min(len(rows), k + PAD)
    while True:
        if fetch >= len(rows):
            return _within_tie(list(zip(rowids.tolist(), distances.tolist(), strict=True)), k)
        part = np.argpartition(distances, fetch - 1)[:fetch]
        horizon = float(np.partition(distances, fetch)[fetch])
        if settled(sorted(distances[part].tolist()), k, horizon):
            found = zip(rowids[part].tolist(), distances[part].tolist(), strict=True)
            return _within_tie(list(found), k)
        fetch = min(len(rows), fetch * GROWTH)


def find_candidates(execute: Execute, plan: Plan, query: F32, k: int) -> Candidates:
    """Rowids holding the exact top ``k`` for ``query`` (re-score them to rank)."""
    if plan.metric is DistanceMetric.COSINE and not np.any(query):
        return _zero_query(execute, plan, k)
    if plan.metric is DistanceMetric.DOT_PRODUCT:
        return _dot(execute, plan, query, k)
    blob = np.ascontiguousarray(query, dtype=np.float32).tobytes()
    native = VEC0_METRIC[plan.metric] == VEC0_METRIC[plan.table_metric] and (
        plan.table_metric is not DistanceMetric.DOT_PRODUCT
    )
    fetch = k + PAD
    while True:
        use_knn = native and fetch <= KNN_LIMIT
        found, horizon = (_knn if use_knn else _scan)(execute, plan, blob, fetch)
        if not found or horizon == float("inf") or settled(sorted(d for _, d in found), k, horizon):
            if use_knn and plan.table_metric is DistanceMetric.COSINE:
                found = _with_zero_rows(execute, plan, found, k)
            return _within_tie(found, k)
        fetch *= GROWTH
