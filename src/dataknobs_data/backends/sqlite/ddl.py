"""Table layout of a collection and the schema stored in the file (SQL builders, pure).

Per collection ``c``: a records table ``"c"`` and one sqlite-vec ``vec0`` table per vector field,
named ``"c__vec<n>"`` (field names are free text, so they never become identifiers). The
``dk_meta`` table maps each vector field to its :class:`VectorConfig` and table, which is what
lets a reopened file be checked against what the caller declares; it also holds the
collection's settings (names ``setting:<key>``, see :mod:`..sql.settings`).

Records holding a pending-embedding mark (:data:`~dataknobs_data.marks.PENDING_FIELD`) are
found through the partial index ``"c__pending"`` on ``id`` (:func:`create_pending_index_sql`),
made by ``prepare_marks()``: it holds only the marked rows, so the vectorizer's
:func:`pending_ids_sql` reads a few index pages instead of the table, in id order.
"""

from __future__ import annotations

import json
from typing import Any

from ...marks import PENDING_FIELD
from ...vector.types import DistanceMetric, VectorConfig
from ..sql.identifiers import META_TABLE, quote_identifier
from ..sql.sqlite import SQLITE, json_path

__all__ = [
    "META_TABLE",
    "VectorTable",
    "add_vector_column_sql",
    "PENDING_PREDICATE",
    "create_meta_sql",
    "create_pending_index_sql",
    "create_records_sql",
    "create_vec_sql",
    "pending_ids_sql",
    "pending_index",
    "validate_collection",
    "vector_meta_key",
]

#: collection names become table names: plain identifiers without a reserved prefix
validate_collection = SQLITE.validate_collection
_VEC_PREFIX = "vector:"

#: vec0's own metric for each of ours; dot product has none, so such fields store vectors
#: under ``l2`` and are scored exactly outside the KNN operator.
VEC0_METRIC: dict[DistanceMetric, str] = {
    DistanceMetric.COSINE: "cosine",
    DistanceMetric.EUCLIDEAN: "l2",
    DistanceMetric.L1: "l1",
    DistanceMetric.DOT_PRODUCT: "l2",
}


def create_meta_sql() -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {quote_identifier(META_TABLE)} ("
        "collection TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, "
        "PRIMARY KEY (collection, name))"
    )


def create_records_sql(collection: str) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {quote_identifier(collection)} ("
        "rowid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL, "
        "types TEXT NOT NULL, data TEXT NOT NULL)"
    )


#: The rows holding a pending mark: the JSON path is a literal (a bound parameter would keep
#: SQLite from matching the partial index's WHERE), and ``json_extract`` gives SQL NULL both
#: for a missing field and for a JSON ``null``, so a null mark counts as no mark (as the
#: ``exists`` operator sees it).
PENDING_PREDICATE = (
    "json_extract(doc, '" + json_path([PENDING_FIELD]).replace("'", "''") + "') IS NOT NULL"
)


def pending_index(collection: str) -> str:
    """The partial index of marked rows (collection names never start with ``dk_`` or
    ``sqlite_`` and hold no quote, so the name is theirs alone)."""
    return f"{collection}__pending"


def create_pending_index_sql(collection: str) -> str:
    return (
        f"CREATE INDEX IF NOT EXISTS {quote_identifier(pending_index(collection))} "
        f"ON {quote_identifier(collection)} (id) WHERE {PENDING_PREDICATE}"
    )


def pending_ids_sql(collection: str, *, after: bool) -> str:
    """Marked ids in id order, ``LIMIT ?`` (after ``id > ?`` when ``after``), with exactly the
    index's predicate so the planner answers from the index alone."""
    since = " AND id > ?" if after else ""
    return (
        f"SELECT id FROM {quote_identifier(collection)} WHERE {PENDING_PREDICATE}{since} "
        "ORDER BY id LIMIT ?"
    )


def create_vec_sql(table: str, config: VectorConfig) -> str:
    dims = int(config.dimensions)
    metric = VEC0_METRIC[config.metric]
    return (
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {quote_identifier(table)} "
        f"USING vec0(embedding float[{dims}] distance_metric={metric})"
    )


def add_vector_column_sql(collection: str, column: str) -> str:
    return f"ALTER TABLE {quote_identifier(collection)} ADD COLUMN {quote_identifier(column)} BLOB"


def vector_meta_key(field: str) -> str:
    return _VEC_PREFIX + field


class VectorTable:
    """A vector field: its configuration, its ``vec0`` index table, and the column of the
    records table that keeps a copy of each vector for reads (vec0 point lookups are slow)."""

    __slots__ = ("column", "config", "field", "table")

    def __init__(self, field: str, config: VectorConfig, table: str, column: str) -> None:
        self.field, self.config, self.table, self.column = field, config, table, column

    @classmethod
    def numbered(cls, collection: str, field: str, config: VectorConfig, n: int) -> VectorTable:
        return cls(field, config, f"{collection}__vec{n}", f"vec{n}")

    def to_json(self) -> str:
        return json.dumps(
            {"config": self.config.to_dict(), "table": self.table, "column": self.column}
        )

    @classmethod
    def from_meta(cls, key: str, value: str) -> VectorTable:
        data: dict[str, Any] = json.loads(value)
        config = VectorConfig.from_dict(data["config"])
        return cls(key[len(_VEC_PREFIX) :], config, data["table"], data["column"])

    @staticmethod
    def is_key(key: str) -> bool:
        return key.startswith(_VEC_PREFIX)
