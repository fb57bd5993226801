"""Table layout of a collection and the schema stored in the file (SQL builders, pure).

Per collection ``c``: a records table ``"c"`` and one sqlite-vec ``vec0`` table per vector field,
named ``"c__vec<n>"`` (field names are free text, so they never become identifiers). The
``dk_meta`` table maps each vector field to its :class:`VectorConfig` and table, which is what
lets a reopened file be checked against what the caller declares.
"""

from __future__ import annotations

import json
from typing import Any

from ...vector.types import DistanceMetric, VectorConfig
from ..sql.identifiers import META_TABLE, quote_identifier
from ..sql.sqlite import SQLITE

__all__ = [
    "META_TABLE",
    "VectorTable",
    "add_vector_column_sql",
    "create_meta_sql",
    "create_records_sql",
    "create_vec_sql",
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
