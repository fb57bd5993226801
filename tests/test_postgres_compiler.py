"""The PostgreSQL compiler, DDL and kNN SQL as pure functions: SQL text and parameters, no server.

Semantics are checked against a real server by the conformance and differential suites; these
tests pin the shape of the SQL (what is bound, what is quoted, which operator a metric uses) so a
change to it is a deliberate one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from dataknobs_data.errors import InvalidIdentifierError
from dataknobs_data.query import F, Filter, SortSpec, not_
from dataknobs_data.testing import import_or_skip
from dataknobs_data.vector.types import DistanceMetric, VectorConfig

sql = import_or_skip("postgres", "psycopg.sql")

from dataknobs_data.backends.postgres.compiler import compile_filter, compile_order  # noqa: E402
from dataknobs_data.backends.postgres.ddl import (  # noqa: E402
    IndexSpec,
    VectorColumn,
    create_index_sql,
    create_records_sql,
    index_name,
    validate_collection,
)
from dataknobs_data.backends.postgres.knn import (  # noqa: E402
    Plan,
    knn_sql,
    search_settings,
    settings_sql,
)

HOSTILE = "x'); DROP TABLE records; --"

# (filter, exact SQL, params)
CASES: list[tuple[str, Filter, str, dict[str, object]]] = [
    ("id equality", F("_id") == "r1", "(id = %(f0)s)", {"f0": "r1"}),
    ("id in, non-strings dropped", F("_id").is_in(["a", 1]), "(id IN (%(f0)s))", {"f0": "a"}),
    ("id vs number is false", F("_id") == 3, "false", {}),
    ("id exists", F("_id").exists(), "true", {}),
    ("id like", F("_id").like("r%"), "(id LIKE %(f0)s ESCAPE '\\')", {"f0": "r%"}),
    ("id starts_with", F("_id").starts_with("r_"), "(starts_with(id, %(f0)s))", {"f0": "r_"}),
    ("id negated", not_(F("_id") == "r1"), "(NOT (id = %(f0)s))", {"f0": "r1"}),
]


@pytest.mark.parametrize(("name", "node", "expected", "params"), CASES, ids=[c[0] for c in CASES])
def test_id_predicates(name: str, node: Filter, expected: str, params: dict[str, object]) -> None:
    compiled = compile_filter(node)
    assert compiled.sql == expected
    assert compiled.params == params


def test_no_filter_is_true() -> None:
    assert compile_filter(None).sql == "true"


def test_number_comparison_casts_inside_case_and_binds_exact_decimal() -> None:
    compiled = compile_filter(F("a") > 0.1)
    assert "CASE WHEN jsonb_typeof((doc #> (%(f0)s::text[]))) = 'number' THEN" in compiled.sql
    assert "::numeric > (%(f3)s::numeric)" in compiled.sql
    assert compiled.params["f0"] == ["a"]
    assert compiled.params["f3"] == Decimal("0.1")  # repr(0.1), not float8 -> numeric rounding


def test_strings_compare_in_code_point_order() -> None:
    compiled = compile_filter(F("name") < "b")
    assert 'COLLATE "C") < (%(f3)s COLLATE "C")' in compiled.sql


def test_datetimes_bind_fixed_width_iso_text() -> None:
    compiled = compile_filter(F("when") >= datetime(2020, 1, 2, tzinfo=UTC))
    assert "2020-01-02T00:00:00.000000+00:00" in compiled.params.values()
    assert "IS NOT DISTINCT FROM 'datetime'" in compiled.sql


def test_lists_match_any_element() -> None:
    compiled = compile_filter(F("tags") == "x")
    assert "jsonb_array_elements((doc #> (%(f0)s::text[]))) AS e(v)" in compiled.sql


def test_boolean_equality_is_jsonb_equality() -> None:
    assert "= 'true'::jsonb" in compile_filter(F("flag") == True).sql  # noqa: E712


def test_numeric_path_segments_are_guarded_against_array_indexing() -> None:
    compiled = compile_filter(F("m.0") == 1)
    assert "jsonb_typeof(doc #> (%(f0)s::text[])) = 'object'" in compiled.sql
    assert compiled.params["f0"] == ["m"]
    assert "= 'object'" not in compile_filter(F("m.x") == 1).sql


def test_negation_is_plain_not_of_a_never_null_predicate() -> None:
    compiled = compile_filter(F("a") != 1)
    assert compiled.sql.startswith("(NOT (CASE WHEN")
    assert "COALESCE(" in compiled.sql


@pytest.mark.parametrize(
    "node",
    [
        F(HOSTILE) == HOSTILE,
        F("a").like(HOSTILE),
        F("a").is_in([HOSTILE, 1]),
        F("a").between(HOSTILE, HOSTILE + "z"),
        F("m." + HOSTILE).exists(),
    ],
)
def test_paths_and_values_only_travel_as_parameters(node: Filter) -> None:
    compiled = compile_filter(node)
    assert "DROP" not in compiled.sql
    assert any(HOSTILE in str(v) for v in compiled.params.values())


def test_order_has_null_flag_rank_and_one_term_per_kind_then_id() -> None:
    compiled = compile_order([SortSpec("a", descending=True, nulls="first")])
    terms = compiled.sql.split(", ")
    assert terms[0].endswith("IS NULL) DESC")
    assert "WHEN 'boolean' THEN 0 WHEN 'number' THEN 1" in terms[1]
    assert terms[-1] == "id ASC"
    assert [t.rsplit(" ", 1)[1] for t in terms[2:5]] == ["DESC"] * 3
    assert compile_order([]).sql == "id ASC"
    assert compile_order([SortSpec("_id", descending=True)]).sql == "id DESC, id ASC"


def test_parameter_prefixes_do_not_collide() -> None:
    where = compile_filter(F("a") == 1)
    order = compile_order([SortSpec("a")])
    assert not set(where.params) & set(order.params)


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


@pytest.mark.parametrize("name", [HOSTILE, "pg_catalog", "dk_meta", "1abc", "", "a" * 64])
def test_collection_names_are_plain_identifiers(name: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        validate_collection(name)


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
