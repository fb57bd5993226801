"""k-nearest-neighbour SQL for pgvector, filter inside the query, and exact re-ranking.

Two ways to find candidates, chosen per query by :func:`plan_mode`:

* **exact** (no index for this field and metric, or ``exact=True``): a sequential scan ordered
  by ``(distance, id)``. pgvector computes in float32, so ``k + PAD`` rows are fetched and, when
  the k-th distance is within float32 noise of the last fetched one, the fetch grows until the
  tie is inside. A zero vector has no cosine (pgvector says NaN); our convention is similarity
  0, distance 1, so cosine distances go through ``COALESCE(NULLIF(d, 'NaN'), 1)``.
* **index** (an HNSW or IVFFlat index built for the query's metric): ``ORDER BY col <op> q
  LIMIT n`` with ``hnsw.ef_search`` (or ``ivfflat.probes``) sized for ``n`` and iterative
  scans on (pgvector >= 0.8: ``strict_order`` for HNSW, ``relaxed_order`` for IVFFlat), so a
  filter does not starve the result. If a filtered index scan still
  returns fewer than ``n`` rows, the exact scan runs instead: a filtered search returns ``k``
  rows whenever ``k`` rows match.

Either way the candidates are re-scored in float64 by the caller and ordered by
``(distance, id)``, as the SQLite backend does, so ties come back in id order.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from psycopg import sql

from ...vector.types import DistanceMetric
from ..sql.identifiers import quote_identifier
from ..sql.knn import GROWTH, RERANK_EXTRA, select_sql, settled, within_tie
from .ddl import OPERATOR, IndexSpec, VectorColumn

__all__ = [
    "PAD",
    "Plan",
    "candidate_steps",
    "knn_query",
    "knn_sql",
    "search_settings",
    "settings_sql",
]

Row = tuple[Any, ...]
PAD = RERANK_EXTRA
MAX_EF_SEARCH = 1000
#: tuples an iterative HNSW scan may visit before giving up (pgvector's default is 20000)
MAX_SCAN_TUPLES = 200_000


@dataclass(frozen=True, slots=True)
class Plan:
    """One search: table, vector column, metric, compiled filter, and the index to use."""

    table: sql.Identifier
    columns: sql.Composable  # the record columns to return, before the distance
    column: VectorColumn
    metric: DistanceMetric
    filter_sql: str | None
    filter_params: dict[str, Any]
    index: IndexSpec | None  # None: exact scan
    iterative: bool  # the server has iterative index scans
    ef_search: int = 40
    probes: int | None = None
    ef_floor: bool = True  # False: ef_search was asked for this query and is used as given
    #: identifies the SQL's shape (everything but parameter values) so its text is rendered
    #: once and reused; ``None`` renders every time
    key: tuple[Any, ...] | None = None
    #: the settings table, when the rows must come with proof that the stored default vector
    #: field is still the one this plan searches (see :func:`knn_sql`)
    guard: sql.Identifier | None = None


def _distance(plan: Plan, *, via_index: bool) -> sql.Composable:
    op = sql.SQL(OPERATOR[plan.metric])
    query = plan.column.query_placeholder(via_index=via_index)
    if via_index:
        return sql.SQL("{} {} {}").format(plan.column.expression(), op, query)
    raw = sql.SQL("({} {} {})").format(sql.Identifier(plan.column.column), op, query)
    if plan.metric is DistanceMetric.COSINE:
        return sql.SQL("COALESCE(NULLIF({}, 'NaN'::float8), 1.0)").format(raw)
    return raw


def knn_sql(plan: Plan, *, via_index: bool) -> sql.Composed:
    """``SELECT <record columns>, distance`` of the nearest rows (bind ``%(q)s``, ``%(n)s``)."""
    dist = _distance(plan, via_index=via_index).as_string(None)
    where = [f"{quote_identifier(plan.column.column)} IS NOT NULL"]
    if plan.filter_sql is not None:
        where.append(plan.filter_sql)
    order = [dist] if via_index else [dist, "id"]  # the bare operator, so the index applies
    columns = [plan.columns.as_string(None), dist]
    text = select_sql(columns, plan.table.as_string(None), where, order, "%(n)s")
    if plan.guard is not None:
        # Rows only while the stored default is still %(dk_v)s: checked in the same statement
        # (one snapshot), so an unnamed search needs no round trip of its own for it; no
        # rows make the caller read the default and search again if it moved.
        text = (
            f"SELECT * FROM ({text}) AS dk_knn WHERE (SELECT value FROM "
            f"{plan.guard.as_string(None)} WHERE collection = %(dk_c)s AND name = %(dk_n)s) "
            "IS NOT DISTINCT FROM %(dk_v)s::jsonb"
        )
    return sql.Composed([sql.SQL(text)])


_RENDERED: dict[tuple[Any, ...], bytes] = {}
_RENDERED_MAX = 4096


def knn_query(plan: Plan, *, via_index: bool) -> sql.Composed | bytes:
    """:func:`knn_sql`, rendered to bytes once per plan shape: composing and quoting the
    statement costs more than pgvector's HNSW search of a small table."""
    if plan.key is None:
        return knn_sql(plan, via_index=via_index)
    key = (*plan.key, via_index)
    text = _RENDERED.get(key)
    if text is None:
        if len(_RENDERED) >= _RENDERED_MAX:
            _RENDERED.clear()
        text = _RENDERED[key] = knn_sql(plan, via_index=via_index).as_bytes(None)
    return text


def search_settings(
    index: IndexSpec,
    fetch: int,
    filtered: bool,
    iterative: bool,
    ef_search: int = 40,
    probes: int | None = None,
    ef_floor: bool = True,
) -> dict[str, str]:
    """The pgvector settings one index search needs (search breadth, iterative scans).

    The backend's default ``ef_search`` is a floor: the HNSW candidate list is at least twice
    the rows fetched. A per-query ``ef_search`` (``ef_floor=False``) is used as given; iterative
    scans still fill ``LIMIT`` when it is smaller. ``probes`` (IVFFlat) defaults to a tenth of
    the lists, at least 10.
    """
    values: dict[str, str] = {}
    if index.kind == "hnsw":
        ef = max(ef_search, 2 * fetch) if ef_floor else ef_search
        values["hnsw.ef_search"] = str(min(MAX_EF_SEARCH, ef))
        if iterative:
            values["hnsw.iterative_scan"] = "strict_order"
            values["hnsw.max_scan_tuples"] = str(MAX_SCAN_TUPLES if filtered else 20_000)
    else:
        lists = index.params.get("lists", 100)
        chosen = probes if probes is not None else max(10, lists // 10)
        values["ivfflat.probes"] = str(max(1, min(lists, chosen)))
        if iterative:
            values["ivfflat.iterative_scan"] = "relaxed_order"
    return values


def settings_sql(values: dict[str, str]) -> sql.Composed:
    """``SELECT set_config(...)`` for the session. Session-wide rather than ``SET LOCAL``: a
    transaction around every search would cost two round trips, and these settings only
    affect index scans, which always set what they need first (see
    :class:`.flows.SessionSettings`)."""
    return sql.SQL("SELECT {}").format(
        sql.SQL(", ").join(
            sql.SQL("set_config({}, {}, false)").format(sql.Literal(k), sql.Literal(v))
            for k, v in values.items()
        )
    )


def _row_distance(row: Row) -> float:
    return float(row[-1])


def _enough(found: Sequence[Row], k: int, fetch: int) -> bool:
    """Whether every row tied (within float32 noise) with the k-th best was fetched."""
    if len(found) < fetch:
        return True
    return settled([_row_distance(r) for r in found], k, _row_distance(found[-1]))


#: What a search asks of its driver: apply pgvector settings, or run a statement for its rows.
Step = tuple[str, Any, Any]  # ("settings", values, None) | ("rows", statement, params)
Steps = Generator[Step, list[Row], tuple[list[Row], bool]]


def _exact_steps(plan: Plan, query: Any, k: int) -> Generator[Step, list[Row], list[Row]]:
    stmt = knn_query(plan, via_index=False)
    fetch = k + PAD
    while True:
        found = yield ("rows", stmt, {**plan.filter_params, "q": query, "n": fetch})
        if _enough(found, k, fetch):
            return within_tie(found, k, _row_distance)
        fetch *= GROWTH


def candidate_steps(plan: Plan, query: Any, k: int) -> Steps:
    """The statements one search runs, as steps a sync or an async driver executes (so the
    logic exists once; :func:`.flows.vector_search` runs them): rows (record columns, then
    distance) holding the top ``k``, and whether they came from the exact scan (the caller
    re-ranks those in float64) or from the index (approximate anyway: ranked by pgvector's
    own distances)."""
    zero_cosine = plan.metric is DistanceMetric.COSINE and not np.any(query)
    if plan.index is None or zero_cosine:  # an index has no order for a zero query
        return (yield from _exact_steps(plan, query, k)), True
    # An index search fetches k rows; the exact path fetches k + PAD to settle float32 ties.
    fetch = k
    filtered = plan.filter_sql is not None
    yield (
        "settings",
        search_settings(
            plan.index,
            fetch,
            filtered,
            plan.iterative,
            plan.ef_search,
            plan.probes,
            plan.ef_floor,
        ),
        None,
    )
    rows = yield (
        "rows",
        knn_query(plan, via_index=True),
        {**plan.filter_params, "q": query, "n": fetch},
    )
    if len(rows) < fetch and filtered:
        return (yield from _exact_steps(plan, query, k)), True
    return rows, False
