"""The PostgreSQL dialect of the SQL compiler as pure functions: SQL text and parameters, no
server and no driver (the DDL and kNN builders, which compose with psycopg, are pinned in
``test_postgres_sql.py``).

Semantics are checked against a real server by the conformance and differential suites; these
tests pin the shape of the SQL (what is bound, what is quoted) so a change to it is a deliberate
one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from dataknobs_data.backends.sql.postgres import POSTGRES, compile_filter, compile_order
from dataknobs_data.errors import InvalidIdentifierError
from dataknobs_data.query import F, Filter, SortSpec, not_

HOSTILE = "x'); DROP TABLE records; --"

# (filter, exact SQL, params)
CASES: list[tuple[str, Filter, str, dict[str, object]]] = [
    ("id equality", F("_id") == "r1", "(id = %(f0)s)", {"f0": "r1"}),
    (
        "id in, non-strings dropped",
        F("_id").is_in(["a", 1, "a"]),
        "(id = ANY((%(f0)s::text[])))",
        {"f0": ["a"]},
    ),
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
    assert "::numeric > (%(f2)s::numeric)" in compiled.sql
    assert compiled.params["f0"] == ["a"]
    assert compiled.params["f2"] == Decimal("0.1")  # repr(0.1), not float8 -> numeric rounding


def test_strings_compare_in_code_point_order() -> None:
    compiled = compile_filter(F("name") < "b")
    assert 'COLLATE "C") < (%(f2)s COLLATE "C")' in compiled.sql


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
    assert compiled.sql.startswith("(NOT (CASE jsonb_typeof(")
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


@pytest.mark.parametrize("name", [HOSTILE, "pg_catalog", "dk_meta", "1abc", "", "a" * 64])
def test_collection_names_are_plain_identifiers(name: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        POSTGRES.validate_collection(name)
