"""Large membership filters against the raw engine's best SQL: ``--targets sqlite-in,postgres-in``.

Each target builds a store of ``--n`` records (no vectors: ``{"n": i, "s": "s<i>"}``) and times,
in alternating rounds against the same engine driven directly on a second connection:

* ``n in`` with ``--n`` values, half of them present (``count``, and ``search`` returning every
  matching record);
* ``_id in`` with 40% of the ids (``search``), against the raw SQL and against ``read_batch``
  of the same ids (what a caller would otherwise write).

The raw side is the fastest plain SQL we know for each engine: SQLite ``IN (SELECT value FROM
json_each(?))`` over ``json_extract``, PostgreSQL ``= ANY(%s)`` over ``(doc->>'n')::int``
(typed for the column, no kind guards). The issue's acceptance figure is ours under 2 s at
100,000 values over 100,000 records; the report prints the seconds of both sides and the ratio.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from ...database import SyncDatabase
from ...factory import DatabaseFactory
from ...query import F, Query
from ...records import Record
from .datasets import SyntheticDataset
from .harness import RAW_COMPARISONS, TARGETS, BenchConfig, Target, compare_sides, scratch_dir
from .measure import Timer, time_calls

__all__ = ["ID_FRACTION", "membership_sides"]

#: the share of the store's ids an ``_id in`` asks for (40k of 100k, as in the issue)
ID_FRACTION = 0.4
_COLLECTION = "members"


def _records(n: int) -> list[Record]:
    return [Record({"n": i, "s": f"s{i}"}, id=f"m{i:08d}") for i in range(n)]


def _fill(db: SyncDatabase, n: int) -> float:
    records = _records(n)
    with Timer() as t:
        for start in range(0, n, 10_000):
            db.create_batch(records[start : start + 10_000])
    return t.seconds


def _once(fn: Callable[[], object]) -> Callable[[], npt.NDArray[np.float64]]:
    """A side of :func:`compare_sides` timing one call (these calls take 0.1-2 s)."""
    return lambda: time_calls(lambda _: fn(), [None])


def membership_sides(
    db: SyncDatabase, n: int, raw: Callable[[str, Any], list[Any]], raw_sql: dict[str, str]
) -> dict[str, dict[str, Callable[[], npt.NDArray[np.float64]]]]:
    """The timed pairs (label -> {"raw", "ours"}); every pair is checked to agree first."""
    values = list(range(0, 2 * n, 2))  # n values, every other one stored
    ids = [f"m{i:08d}" for i in range(0, n, 2)][: max(1, int(n * ID_FRACTION))]
    in_filter = F("n").is_in(values)
    id_filter = F("_id").is_in(ids)
    checks = {
        "in_count": (db.count(in_filter), raw(raw_sql["count"], values)[0][0]),
        "in_search": (len(db.search(Query(in_filter))), len(raw(raw_sql["search"], values))),
        "id_in": (len(db.search(Query(id_filter))), len(raw(raw_sql["ids"], ids))),
        "read_batch": (sum(r is not None for r in db.read_batch(ids)), len(ids)),
    }
    for label, (ours, theirs) in checks.items():
        if ours != theirs:
            raise AssertionError(f"{label}: ours {ours} != raw {theirs}")
    return {
        f"n in {len(values)} values (count)": {
            "raw": _once(lambda: raw(raw_sql["count"], values)),
            "ours": _once(lambda: db.count(in_filter)),
        },
        f"n in {len(values)} values (search)": {
            "raw": _once(lambda: raw(raw_sql["search"], values)),
            "ours": _once(lambda: db.search(Query(in_filter))),
        },
        f"_id in {len(ids)} ids (search)": {
            "raw": _once(lambda: raw(raw_sql["ids"], ids)),
            "ours": _once(lambda: db.search(Query(id_filter))),
        },
        f"_id in {len(ids)} ids vs read_batch": {
            "raw": _once(lambda: db.read_batch(ids)),
            "ours": _once(lambda: db.search(Query(id_filter))),
        },
    }


def _compare(
    db: SyncDatabase, cfg: BenchConfig, raw: Callable[[str, Any], list[Any]], sql: dict[str, str]
) -> dict[str, dict[str, Any]]:
    load = _fill(db, cfg.n)
    out: dict[str, dict[str, Any]] = {}
    for label, sides in membership_sides(db, cfg.n, raw, sql).items():
        entry = compare_sides(cfg.rounds, sides)
        entry["unit"] = "calls/s"
        entry["note"] = (
            f"{cfg.n} records; ours {entry['ours_p50_ms'] / 1e3:.3f} s, "
            f"{'read_batch' if 'read_batch' in label else 'raw SQL'} "
            f"{entry['raw_p50_ms'] / 1e3:.3f} s"
        )
        out[label] = entry
    out[next(iter(out))]["note"] += f"; store built in {load:.1f} s"
    return out


# -- SQLite ------------------------------------------------------------------------------------
def _sqlite_target() -> Target:
    directory = scratch_dir("sqlite-in")
    opened = iter(range(1_000_000))

    def url() -> str:
        return f"sqlite:///{directory / f'm{next(opened)}.db'}?collection={_COLLECTION}"

    first = url()
    return Target(
        "sqlite-in",
        first,
        "sqlite3 SQL",
        lambda: DatabaseFactory.create(url()),
        numpy_sections=False,
        vector_data=False,
    )


def sqlite_membership(
    db: SyncDatabase, data: SyntheticDataset, cfg: BenchConfig
) -> dict[str, dict[str, Any]]:
    """Ours against raw ``json_each`` SQL on a second connection to the same file."""
    from ...backends.sqlite import SQLiteBackend
    from ...backends.sqlite.connect import connect

    backend = db.backend
    assert isinstance(backend, SQLiteBackend)
    path = backend.raw_path()
    conn, _ = connect(path)
    table = f'"{_COLLECTION}"'
    member = "IN (SELECT value FROM json_each(?))"
    sql = {
        "count": f"SELECT count(*) FROM {table} WHERE json_extract(doc, '$.n') {member}",
        "search": f"SELECT id, doc FROM {table} WHERE json_extract(doc, '$.n') {member}",
        "ids": f"SELECT id, doc FROM {table} WHERE id {member}",
    }

    def raw(stmt: str, values: Any) -> list[Any]:
        return conn.execute(stmt, (json.dumps(values),)).fetchall()

    try:
        return _compare(db, cfg, raw, sql)
    finally:
        conn.close()


# -- PostgreSQL --------------------------------------------------------------------------------
def _postgres_target() -> Target:
    from .postgres_bench import postgres_url

    base = postgres_url()
    joiner = "&" if "?" in base else "?"
    name = f"{_COLLECTION}_{uuid.uuid4().hex[:10]}"
    url = f"{base}{joiner}collection={name}"
    return Target(
        "postgres-in",
        url,
        "psycopg SQL",
        lambda: DatabaseFactory.create(url, temporary=True),
        numpy_sections=False,
        vector_data=False,
    )


def postgres_membership(
    db: SyncDatabase, data: SyntheticDataset, cfg: BenchConfig
) -> dict[str, dict[str, Any]]:
    """Ours against raw ``= ANY(%s)`` SQL on a connection of its own."""
    from psycopg import sql as pgsql

    from ...backends.postgres import PostgresBackend
    from .postgres_bench import _raw_connection

    backend = db.backend
    assert isinstance(backend, PostgresBackend)
    table = pgsql.Identifier(*backend.raw_table())
    stmts = {
        "count": "SELECT count(*) FROM {} WHERE (doc->>'n')::int = ANY(%s)",
        "search": "SELECT id, doc FROM {} WHERE (doc->>'n')::int = ANY(%s)",
        "ids": "SELECT id, doc FROM {} WHERE id = ANY(%s)",
    }
    with _raw_connection() as conn:
        cur = conn.cursor(binary=True)
        composed = {k: pgsql.SQL(v).format(table) for k, v in stmts.items()}

        def raw(key_sql: Any, values: Any) -> list[Any]:
            rows: list[Any] = cur.execute(key_sql, (values,), prepare=False).fetchall()
            return rows

        return _compare(db, cfg, raw, composed)  # type: ignore[arg-type]


TARGETS["sqlite-in"] = _sqlite_target
RAW_COMPARISONS["sqlite-in"] = sqlite_membership
TARGETS["postgres-in"] = _postgres_target
RAW_COMPARISONS["postgres-in"] = postgres_membership
