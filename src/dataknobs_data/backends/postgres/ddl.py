"""Table layout of a collection, the schema kept beside it, and index DDL (pure builders).

Per collection ``c`` (in one PostgreSQL schema): a table ``c`` with ``id text COLLATE "C"``
(code-point order, as the query semantics want), ``doc``/``types`` as ``jsonb`` and ``data`` as
``text`` (the SQLite backend's encoding, see :mod:`..rowcodec`, with ``types`` reduced to
the datetime fields), and one ``vector(d)``
column per vector field, named ``vec<n>`` (field names are free text, so they never become
identifiers). ``data`` is what records are rebuilt from and is never queried, so it stays
text: ``jsonb`` would normalise numbers (``-0.0`` loses its sign, ``1e100`` comes back as an
integer) and reorder object keys.

Why ``vector(d)`` and not ``halfvec``: records must come back exactly as written, and halfvec
rounds to float16. Vectors are stored ``STORAGE PLAIN`` (never TOASTed, so exact scans read
them in place: 3x faster at d=784 on this machine) while the row still fits a page; past that
budget a column is ``EXTERNAL`` (out of line, uncompressed). Above 2000 dimensions, where
pgvector cannot index ``vector``, indexes are built on the expression ``col::halfvec(d)`` and
searches through them cast the query the same way.

The ``dk_meta`` table maps each collection's vector fields to their :class:`VectorConfig`,
column and storage, and records its indexes (parameters, build time), which is what lets a
reopened collection be checked against what the caller declares; it also holds the
collection's settings (names ``setting:<key>``, a JSON string each: see :mod:`..sql.settings`).

For :mod:`dataknobs_data.vector.sync`: a partial index on ``id`` over the rows holding a
pending-embedding mark (:data:`PENDING_PREDICATE`), and the schema's ``dk_claims`` table of
workers' leases on pending records (:func:`create_claims_sql`, :func:`claim_sql`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from ...marks import PENDING_FIELD
from ...vector.types import DistanceMetric, VectorConfig
from ..sql.identifiers import META_TABLE
from ..sql.postgres import POSTGRES

__all__ = [
    "CLAIMS_TABLE",
    "LAYOUT",
    "META_TABLE",
    "PENDING_PREDICATE",
    "PLAIN_BUDGET",
    "IndexSpec",
    "VectorColumn",
    "claim_sql",
    "create_claims_sql",
    "create_index_sql",
    "create_meta_sql",
    "create_pending_index_sql",
    "create_records_sql",
    "index_name",
    "pending_ids_sql",
    "pending_index_name",
    "release_sql",
    "validate_collection",
]

LAYOUT = 1
#: bytes of PLAIN vector data a row may hold (a heap page is 8 kB; leave room for the rest)
PLAIN_BUDGET = 6000
#: pgvector indexes ``vector`` up to this many dimensions, ``halfvec`` up to 4000
MAX_VECTOR_INDEX_DIMS = 2000
VECTOR_KEY = "vector:"
INDEX_KEY = "index:"
#: collection (and schema) names become identifiers: plain, no ``pg_``/``dk_``/``sqlite_`` prefix
validate_collection = POSTGRES.validate_collection

_OPS = {
    DistanceMetric.COSINE: "cosine",
    DistanceMetric.EUCLIDEAN: "l2",
    DistanceMetric.DOT_PRODUCT: "ip",
    DistanceMetric.L1: "l1",
}
#: pgvector's distance operator per metric (distances equal ours: 1 - cos, L2, -dot, L1)
OPERATOR = {
    DistanceMetric.COSINE: "<=>",
    DistanceMetric.EUCLIDEAN: "<->",
    DistanceMetric.DOT_PRODUCT: "<#>",
    DistanceMetric.L1: "<+>",
}


def create_meta_sql(schema: str) -> sql.Composed:
    return sql.SQL(
        "CREATE TABLE IF NOT EXISTS {} (collection text NOT NULL, name text NOT NULL, "
        "value jsonb NOT NULL, PRIMARY KEY (collection, name))"
    ).format(sql.Identifier(schema, META_TABLE))


def create_records_sql(table: sql.Identifier) -> sql.Composed:
    return sql.SQL(
        'CREATE TABLE IF NOT EXISTS {} (id text COLLATE "C" PRIMARY KEY, doc jsonb NOT NULL, '
        "types jsonb NOT NULL, data text NOT NULL)"
    ).format(table)


#: column types a vector field may be stored as (``halfvec``: float16, half the bytes, rounded)
VECTOR_TYPES = ("vector", "halfvec")
#: the largest magnitude float16 (``halfvec``) can hold
HALFVEC_MAX = 65504.0


@dataclass(frozen=True, slots=True)
class VectorColumn:
    """A vector field: its configuration, its column, that column's storage and type."""

    field: str
    config: VectorConfig
    column: str
    storage: str  # "PLAIN" or "EXTERNAL"
    type: str = "vector"  # or "halfvec" (see VECTOR_TYPES)

    @classmethod
    def numbered(
        cls, field: str, config: VectorConfig, n: int, plain_used: int, type: str = "vector"
    ) -> VectorColumn:
        """The ``n``-th vector column; PLAIN while the row's plain vectors fit the budget."""
        fits = plain_used + vector_bytes(config.dimensions, type) <= PLAIN_BUDGET
        return cls(field, config, f"vec{n}", "PLAIN" if fits else "EXTERNAL", type)

    @property
    def indexable_as_vector(self) -> bool:
        """Whether indexes and searches use the column as it is (no cast to ``halfvec``)."""
        return self.type == "halfvec" or self.config.dimensions <= MAX_VECTOR_INDEX_DIMS

    @property
    def index_type(self) -> str:
        """The type indexes see: the column's own, or ``halfvec`` for a wide ``vector``."""
        return self.type if self.indexable_as_vector else "halfvec"

    def expression(self) -> sql.Composable:
        """The column as indexes see it: itself, or cast to ``halfvec`` above 2000 dims."""
        col = sql.Identifier(self.column)
        if self.indexable_as_vector:
            return col
        return sql.SQL("({}::halfvec({}))").format(col, sql.Literal(self.config.dimensions))

    def query_placeholder(self, *, via_index: bool) -> sql.Composable:
        """``%(q)s`` cast to what the compared expression is (the query is sent as ``vector``)."""
        if self.type == "halfvec" or (via_index and not self.indexable_as_vector):
            return sql.SQL("%(q)s::halfvec({})").format(sql.Literal(self.config.dimensions))
        return sql.SQL("%(q)s")

    def add_sql(self, table: sql.Identifier) -> list[sql.Composed]:
        return [
            sql.SQL("ALTER TABLE {} ADD COLUMN {} {}({})").format(
                table,
                sql.Identifier(self.column),
                sql.SQL(self.type),
                sql.Literal(self.config.dimensions),
            ),
            sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET STORAGE {}").format(
                table, sql.Identifier(self.column), sql.SQL(self.storage)
            ),
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "column": self.column,
            "storage": self.storage,
            "type": self.type,
        }

    @classmethod
    def from_json(cls, field: str, data: dict[str, Any]) -> VectorColumn:
        return cls(
            field,
            VectorConfig.from_dict(data["config"]),
            data["column"],
            data["storage"],
            data.get("type", "vector"),
        )


def vector_bytes(dimensions: int, type: str = "vector") -> int:
    """On-disk size of one ``vector(d)``/``halfvec(d)`` value (4-byte header, 2+2 bytes
    dims/unused, then 4 or 2 bytes per dimension)."""
    return 8 + (2 if type == "halfvec" else 4) * dimensions


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """A vector index as recorded in ``dk_meta``."""

    name: str
    kind: str  # "hnsw" | "ivfflat"
    metric: DistanceMetric
    params: dict[str, int]
    build_seconds: float = 0.0
    rows_at_build: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "metric": self.metric.value,
            "params": dict(self.params),
            "build_seconds": self.build_seconds,
            "rows_at_build": self.rows_at_build,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndexSpec:
        return cls(
            data["name"],
            data["kind"],
            DistanceMetric.parse(data["metric"]),
            {str(k): int(v) for k, v in data["params"].items()},
            float(data["build_seconds"]),
            int(data["rows_at_build"]),
        )


def index_name(collection: str, column: str) -> str:
    """A schema-unique index name within PostgreSQL's 63 bytes (hash of the full names)."""
    digest = hashlib.sha1(f"{collection}\0{column}".encode()).hexdigest()[:10]
    return f"{collection[:40]}_{column}_{digest}"


def opclass(col: VectorColumn, metric: DistanceMetric) -> str:
    return f"{col.index_type}_{_OPS[metric]}_ops"


def create_index_sql(table: sql.Identifier, col: VectorColumn, spec: IndexSpec) -> sql.Composed:
    """``CREATE INDEX`` for ``spec`` (its integer parameters rendered as literals: DDL takes
    no bind parameters, and they were validated as ints)."""
    options = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.SQL(k), sql.Literal(int(v)))
        for k, v in sorted(spec.params.items())
    )
    return sql.SQL("CREATE INDEX {} ON {} USING {} ({} {}) WITH ({})").format(
        sql.Identifier(spec.name),
        table,
        sql.SQL(spec.kind),
        col.expression(),
        sql.SQL(opclass(col, spec.metric)),
        options,
    )


# -- pending marks and claims (dataknobs_data.vector.sync) -----------------------------------------
#: the schema's table of workers' claims on pending records (``dk_`` names no collection)
CLAIMS_TABLE = "dk_claims"

#: The rows holding a pending mark. ``doc ? key`` would also be true for a JSON ``null``
#: (``doc -> key`` is then the jsonb ``null``, not SQL NULL); ``jsonb_typeof`` is SQL NULL
#: for a missing key and ``'null'`` for a null value, so both count as no mark, as on SQLite
#: and for the ``exists`` operator. Index and queries use this exact text, so the planner
#: proves the query's WHERE implies the index's (``doc`` is unqualified: an index predicate
#: cannot name an alias, and in the queries no other table has a ``doc`` column).
PENDING_PREDICATE = sql.SQL("jsonb_typeof(doc -> {}) <> 'null'").format(sql.Literal(PENDING_FIELD))


def pending_index_name(collection: str) -> str:
    """The partial index of marked rows (schema-unique, within 63 bytes)."""
    return index_name(collection, "pending")


def create_pending_index_sql(schema: str, collection: str) -> sql.Composed:
    """The partial index on ``id`` of marked rows."""
    return sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (id) WHERE {}").format(
        sql.Identifier(pending_index_name(collection)),
        sql.Identifier(schema, collection),
        PENDING_PREDICATE,
    )


def pending_ids_sql(table: sql.Identifier, *, after: bool) -> sql.Composed:
    """Marked ids in id order, ``LIMIT %(limit)s`` (after ``id > %(after)s`` when ``after``)."""
    since = sql.SQL(" AND r.id > %(after)s") if after else sql.SQL("")
    return sql.SQL("SELECT r.id FROM {} AS r WHERE {}{} ORDER BY r.id LIMIT %(limit)s").format(
        table, PENDING_PREDICATE, since
    )


def create_claims_sql(schema: str) -> sql.Composed:
    """One row per claimed record: which worker holds it until when (server time)."""
    return sql.SQL(
        'CREATE TABLE IF NOT EXISTS {} (collection text NOT NULL, id text COLLATE "C" NOT NULL, '
        "worker text NOT NULL, expires timestamptz NOT NULL, PRIMARY KEY (collection, id))"
    ).format(sql.Identifier(schema, CLAIMS_TABLE))


def claim_sql(table: sql.Identifier, schema: str) -> sql.Composed:
    """Claim up to ``%(limit)s`` marked records for ``%(worker)s`` in one statement.

    ``picked`` takes marked rows in id order that no other worker holds an unexpired claim on,
    locking them ``FOR UPDATE SKIP LOCKED``: a concurrent claimer skips the rows this one is
    taking, so their batches are disjoint. The claims are then upserted; ``ON CONFLICT`` sees
    the newest committed claim (not this statement's snapshot), and takes it over only if it
    expired or is the worker's own. So a claimer whose snapshot predates another's commit,
    and which therefore picked a row that was claimed meanwhile, loses that row here rather
    than claiming it twice. The statement returns how many rows it picked and the ids it
    claimed; fewer claimed than picked means such a race, and the caller asks again.
    """
    claims = sql.Identifier(schema, CLAIMS_TABLE)
    return sql.SQL(
        "WITH picked AS ("
        "SELECT r.id FROM {table} AS r WHERE {pending} AND NOT EXISTS ("
        "SELECT 1 FROM {claims} AS c WHERE c.collection = %(collection)s AND c.id = r.id "
        "AND c.worker <> %(worker)s AND c.expires > now()) "
        "ORDER BY r.id LIMIT %(limit)s FOR UPDATE OF r SKIP LOCKED), "
        "claimed AS ("
        "INSERT INTO {claims} AS c (collection, id, worker, expires) "
        "SELECT %(collection)s, id, %(worker)s, now() + make_interval(secs => %(lease)s) "
        "FROM picked "
        "ON CONFLICT (collection, id) DO UPDATE SET worker = EXCLUDED.worker, "
        "expires = EXCLUDED.expires WHERE c.expires <= now() OR c.worker = EXCLUDED.worker "
        "RETURNING c.id) "
        "SELECT (SELECT count(*) FROM picked), "
        "ARRAY(SELECT id FROM claimed ORDER BY id)"
    ).format(table=table, pending=PENDING_PREDICATE, claims=claims)


def release_sql(schema: str) -> sql.Composed:
    """Delete ``%(worker)s``'s claims on ``%(ids)s`` (another worker's are left alone)."""
    return sql.SQL(
        "DELETE FROM {} WHERE collection = %(collection)s AND worker = %(worker)s "
        "AND id = ANY(%(ids)s)"
    ).format(sql.Identifier(schema, CLAIMS_TABLE))
