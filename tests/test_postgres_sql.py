"""The PostgreSQL DDL and kNN SQL builders as pure functions: SQL text, no server.

They compose with ``psycopg.sql`` (table names arrive as ``sql.Identifier``), so they need the
``postgres`` extra; the filter/sort compiler's cases, which need no driver, are in
``test_postgres_compiler.py``.
"""

from __future__ import annotations

import pytest

from dataknobs_data.testing import import_or_skip

sql = import_or_skip("postgres", "psycopg.sql")

from dataknobs_data.backends.postgres.ddl import (  # noqa: E402
    IndexSpec,
    VectorColumn,
    create_index_sql,
    create_records_sql,
    index_name,
)
from dataknobs_data.backends.postgres.knn import (  # noqa: E402
    Plan,
    knn_sql,
    search_settings,
    settings_sql,
)
from dataknobs_data.vector.types import DistanceMetric, VectorConfig  # noqa: E402

# -- DDL -------------------------------------------------------------------------------------
TABLE = sql.Identifier("public", "docs")


def test_records_table_layout() -> None:
    text = create_records_sql(TABLE).as_string(None)
    assert text == (
        'CREATE TABLE IF NOT EXISTS "public"."docs" (id text COLLATE "C" PRIMARY KEY, '
        "doc jsonb NOT NULL, types jsonb NOT NULL, data text NOT NULL)"
    )


def test_vector_columns_are_plain_until_the_page_budget_is_used() -> None:
    small = VectorColumn.numbered("e", VectorConfig(384), 0, 0)
    assert small.storage == "PLAIN"
    assert [s.as_string(None) for s in small.add_sql(TABLE)] == [
        'ALTER TABLE "public"."docs" ADD COLUMN "vec0" vector(384)',
        'ALTER TABLE "public"."docs" ALTER COLUMN "vec0" SET STORAGE PLAIN',
    ]
    assert VectorColumn.numbered("f", VectorConfig(1024), 1, 4000).storage == "EXTERNAL"


def test_index_ddl_per_kind_and_dimension() -> None:
    col = VectorColumn.numbered("e", VectorConfig(8, DistanceMetric.DOT_PRODUCT), 0, 0)
    spec = IndexSpec("ix", "hnsw", DistanceMetric.DOT_PRODUCT, {"m": 16, "ef_construction": 64})
    assert create_index_sql(TABLE, col, spec).as_string(None) == (
        'CREATE INDEX "ix" ON "public"."docs" USING hnsw ("vec0" vector_ip_ops) '
        "WITH (ef_construction = 64, m = 16)"
    )
    big = VectorColumn.numbered("e", VectorConfig(3072), 0, 0)
    spec = IndexSpec("ix", "ivfflat", DistanceMetric.COSINE, {"lists": 10})
    assert '("vec0"::halfvec(3072)) halfvec_cosine_ops' in create_index_sql(
        TABLE, big, spec
    ).as_string(None)


def test_index_names_fit_postgres_identifiers() -> None:
    name = index_name("c" * 63, "vec12")
    assert len(name) <= 63
    assert name != index_name("c" * 62 + "d", "vec12")


# -- kNN -------------------------------------------------------------------------------------
def _plan(metric: DistanceMetric, index: IndexSpec | None = None, dims: int = 8) -> Plan:
    col = VectorColumn.numbered("e", VectorConfig(dims, metric), 0, 0)
    return Plan(TABLE, sql.SQL("id, data"), col, metric, "(id = %(f0)s)", {"f0": "a"}, index, True)


@pytest.mark.parametrize(
    ("metric", "op"),
    [
        (DistanceMetric.COSINE, "<=>"),
        (DistanceMetric.EUCLIDEAN, "<->"),
        (DistanceMetric.DOT_PRODUCT, "<#>"),
        (DistanceMetric.L1, "<+>"),
    ],
)
def test_exact_knn_uses_the_metric_operator_and_orders_ties_by_id(
    metric: DistanceMetric, op: str
) -> None:
    text = knn_sql(_plan(metric), via_index=False).as_string(None)
    assert f'("vec0" {op} %(q)s)' in text
    assert text.startswith("SELECT id, data, ")
    assert text.endswith(", id LIMIT %(n)s")
    assert '"vec0" IS NOT NULL AND (id = %(f0)s)' in text
    assert ("NULLIF" in text) is (metric is DistanceMetric.COSINE)  # zero vectors: distance 1


def test_index_knn_orders_by_the_bare_operator_so_the_index_applies() -> None:
    spec = IndexSpec("ix", "hnsw", DistanceMetric.COSINE, {"m": 16, "ef_construction": 64})
    text = knn_sql(_plan(DistanceMetric.COSINE, spec), via_index=True).as_string(None)
    assert text.endswith('ORDER BY "vec0" <=> %(q)s LIMIT %(n)s')
    big = knn_sql(_plan(DistanceMetric.COSINE, spec, dims=3000), via_index=True)
    assert '("vec0"::halfvec(3000)) <=> %(q)s::halfvec(3000)' in big.as_string(None)


def test_search_settings_per_index_kind() -> None:
    hnsw = IndexSpec("ix", "hnsw", DistanceMetric.COSINE, {"m": 16, "ef_construction": 64})
    assert search_settings(hnsw, 18, filtered=True, iterative=True) == {
        "hnsw.ef_search": "40",
        "hnsw.iterative_scan": "strict_order",
        "hnsw.max_scan_tuples": "200000",
    }
    assert search_settings(hnsw, 300, filtered=False, iterative=False) == {"hnsw.ef_search": "600"}
    ivf = IndexSpec("ix", "ivfflat", DistanceMetric.COSINE, {"lists": 200})
    assert search_settings(ivf, 18, filtered=False, iterative=True) == {
        "ivfflat.probes": "20",
        "ivfflat.iterative_scan": "relaxed_order",
    }
    text = settings_sql({"hnsw.ef_search": "40"}).as_string(None)
    assert text == "SELECT set_config('hnsw.ef_search', '40', false)"
