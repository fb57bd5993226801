"""Vector index management for the PostgreSQL backend: HNSW and IVFFlat through pgvector.

A mixin of :class:`~.backend.PostgresBackend` (it uses the backend's transactions and schema);
kept apart because building, rebuilding and describing indexes is its own concern. Indexes are
recorded in ``dk_meta`` with their parameters and build time, and a search uses a field's index
only when the query's metric is the one it was built for (see :mod:`.knn`).
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from ...errors import SchemaError, UnknownFieldError, UnsupportedMetricError, ValidationError
from ...ints import checked_int
from ...vector.types import DistanceMetric
from .ddl import INDEX_KEY, IndexSpec, VectorColumn, create_index_sql, index_name

__all__ = ["AUTO_IVFFLAT_ROWS", "IndexManagement", "default_lists"]

#: above this many vectors ``kind="auto"`` picks IVFFlat (faster to build, less memory)
AUTO_IVFFLAT_ROWS = 1_000_000


def default_lists(rows: int) -> int:
    """pgvector's advice for IVFFlat lists: rows / 1000 up to 1M rows, sqrt(rows) above."""
    if rows <= 1_000_000:
        return max(1, rows // 1000)
    return int(np.sqrt(rows))


class IndexManagement:
    """``create_/drop_/optimize_vector_index`` and ``get_vector_index_stats``."""

    _collection: str
    _schema_name: str
    _table: sql.Identifier
    _meta: sql.Identifier
    _columns: dict[str, VectorColumn]
    _indexes: dict[str, IndexSpec]

    def _tx(self) -> AbstractContextManager[psycopg.Cursor[Any]]:
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[psycopg.Cursor[Any]]:
        raise NotImplementedError

    def _load(self, cur: psycopg.Cursor[Any]) -> None:
        raise NotImplementedError

    def _put_meta(self, cur: psycopg.Cursor[Any], key: str, value: dict[str, Any]) -> None:
        raise NotImplementedError

    def _column(self, field: str) -> VectorColumn:
        col = self._columns.get(field)
        if col is None:
            raise UnknownFieldError(field, f"is not a vector field; known: {sorted(self._columns)}")
        return col

    def _vector_rows(self, cur: psycopg.Cursor[Any], col: VectorColumn) -> int:
        row = cur.execute(
            sql.SQL("SELECT count(*) FROM {} WHERE {} IS NOT NULL").format(
                self._table, sql.Identifier(col.column)
            )
        ).fetchone()
        assert row is not None
        return int(row[0])

    def create_vector_index(
        self,
        field: str,
        kind: str = "auto",
        m: int | None = None,
        ef_construction: int | None = None,
        lists: int | None = None,
    ) -> dict[str, Any]:
        """Build an HNSW or IVFFlat index for ``field`` (for its configured metric).

        ``auto`` picks HNSW (better recall per query time) up to a million vectors, IVFFlat
        above (faster build, less memory). Build after loading: an HNSW build is ~1.5k rows/s
        on two cores, and IVFFlat derives its lists from the rows present.
        """
        if kind not in ("auto", "hnsw", "ivfflat"):
            raise ValidationError(f"index kind must be 'auto', 'hnsw' or 'ivfflat', got {kind!r}")
        with self._write() as cur:
            col = self._column(field)
            if field in self._indexes:
                raise SchemaError(f"vector field {field!r} already has an index; drop it first")
            rows = self._vector_rows(cur, col)
            chosen = kind if kind != "auto" else ("ivfflat" if rows > AUTO_IVFFLAT_ROWS else "hnsw")
            metric = col.config.metric
            if chosen == "ivfflat" and metric is DistanceMetric.L1:
                raise UnsupportedMetricError(
                    "pgvector's IVFFlat has no L1 operator class; use hnsw"
                )
            if chosen == "hnsw":
                mm = checked_int("m", 16 if m is None else m, 2, 100)
                efc = checked_int(
                    "ef_construction", 64 if ef_construction is None else ef_construction, 4, 1000
                )
                if efc < 2 * mm:
                    raise ValidationError(f"ef_construction ({efc}) must be >= 2 * m ({2 * mm})")
                params = {"m": mm, "ef_construction": efc}
            else:
                n = default_lists(rows) if lists is None else lists
                params = {"lists": checked_int("lists", n, 1, 32768)}
            spec = self._build_index(cur, col, field, chosen, metric, params, rows)
            return self._stats(cur, field, spec)

    def _build_index(
        self,
        cur: psycopg.Cursor[Any],
        col: VectorColumn,
        field: str,
        kind: str,
        metric: DistanceMetric,
        params: dict[str, int],
        rows: int,
    ) -> IndexSpec:
        cur.execute("SELECT set_config('maintenance_work_mem', '256MB', true)")
        spec = IndexSpec(index_name(self._collection, col.column), kind, metric, params, 0.0, rows)
        started = time.perf_counter()
        cur.execute(create_index_sql(self._table, col, spec))
        spec = IndexSpec(
            spec.name, kind, metric, params, round(time.perf_counter() - started, 3), rows
        )
        self._put_meta(cur, INDEX_KEY + field, spec.to_json())
        self._indexes = {**self._indexes, field: spec}
        return spec

    def drop_vector_index(self, field: str) -> bool:
        """Drop ``field``'s index; ``False`` if it had none (searches become exact scans)."""
        with self._write() as cur:
            self._column(field)
            spec = self._indexes.get(field)
            if spec is None:
                return False
            self._drop(cur, field, spec)
            return True

    def _drop(self, cur: psycopg.Cursor[Any], field: str, spec: IndexSpec) -> None:
        cur.execute(
            sql.SQL("DROP INDEX IF EXISTS {}").format(sql.Identifier(self._schema_name, spec.name))
        )
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE collection = %s AND name = %s").format(self._meta),
            (self._collection, INDEX_KEY + field),
        )
        self._indexes = {k: v for k, v in self._indexes.items() if k != field}

    def optimize_vector_index(self, field: str) -> dict[str, Any]:
        """Rebuild ``field``'s index for the data now present, then ``ANALYZE``.

        HNSW is rebuilt in place (``REINDEX``); IVFFlat is rebuilt with its lists re-derived
        from the current row count, since centroids trained on an early sample go stale.
        """
        with self._write() as cur:
            col = self._column(field)
            spec = self._indexes.get(field)
            if spec is None:
                raise SchemaError(f"vector field {field!r} has no index to optimize")
            rows = self._vector_rows(cur, col)
            if spec.kind == "ivfflat":
                self._drop(cur, field, spec)
                params = {"lists": default_lists(rows)}
                spec = self._build_index(cur, col, field, "ivfflat", spec.metric, params, rows)
            else:
                started = time.perf_counter()
                cur.execute(
                    sql.SQL("REINDEX INDEX {}").format(sql.Identifier(self._schema_name, spec.name))
                )
                spec = IndexSpec(
                    spec.name,
                    spec.kind,
                    spec.metric,
                    spec.params,
                    round(time.perf_counter() - started, 3),
                    rows,
                )
                self._put_meta(cur, INDEX_KEY + field, spec.to_json())
                self._indexes = {**self._indexes, field: spec}
            cur.execute(sql.SQL("ANALYZE {}").format(self._table))
            return self._stats(cur, field, spec)

    def get_vector_index_stats(self, field: str) -> dict[str, Any]:
        """Type, parameters, metric, size on disk, rows and last build time of the index
        (``{"type": "flat", ...}`` when the field has none: searches are exact scans)."""
        with self._tx() as cur:
            self._load(cur)
            col = self._column(field)
            spec = self._indexes.get(field)
            if spec is None:
                return {"field": field, "type": "flat", "rows": self._vector_rows(cur, col)}
            return self._stats(cur, field, spec)

    def _stats(self, cur: psycopg.Cursor[Any], field: str, spec: IndexSpec) -> dict[str, Any]:
        qualified = f"{self._schema_name}.{spec.name}"
        row = cur.execute(
            "SELECT pg_relation_size(to_regclass(%s))",
            (sql.Identifier(self._schema_name, spec.name).as_string(cur),),
        ).fetchone()
        assert row is not None
        return {
            "field": field,
            "type": spec.kind,
            "name": qualified,
            "metric": spec.metric.value,
            "params": dict(spec.params),
            "size_bytes": int(row[0] or 0),
            "rows": self._vector_rows(cur, self._columns[field]),
            "rows_at_build": spec.rows_at_build,
            "build_seconds": spec.build_seconds,
        }
