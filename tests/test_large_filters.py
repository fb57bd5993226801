"""Large ``in`` lists and long ``OR``s as pure functions: the rewrite to ``in`` (an identity,
checked against the reference evaluator), size-independent SQL for both dialects, balanced
nesting, chroma's bounded plans and typed refusals, and the PostgreSQL driver's one-shot rule.

The answers of every backend on 20,000-value filters are checked by the conformance section
:class:`~dataknobs_data.testing.conformance.LargeFilterTests`; here the compiled text is pinned.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from dataknobs_data.backends.sql.postgres import Members, one_shot
from dataknobs_data.backends.sql.postgres import compile_filter as pg_compile
from dataknobs_data.backends.sql.sqlite import compile_filter as sqlite_compile
from dataknobs_data.engines.chroma.where import (
    MAX_CONTAINS,
    MAX_IN,
    compile_where,
    plan_where,
)
from dataknobs_data.errors import FilterTooLargeError, UnsupportedOperatorError
from dataknobs_data.evaluate import matches, record_predicate
from dataknobs_data.query import And, Condition, F, Filter, Not, Operator, Or, all_of, any_of
from dataknobs_data.records import Record
from dataknobs_data.rewrite import distinct_values, merge_memberships
from dataknobs_data.testing import requires_extra
from dataknobs_data.testing.dataset import build_records

# -- the rewrite -----------------------------------------------------------------------------
REWRITES: list[tuple[str, Filter, Filter]] = [
    (
        "or of = becomes in",
        any_of(F("a") == 1, F("a") == 2),
        Condition("a", Operator.IN, (1, 2)),
    ),
    (
        "or of = and in, duplicates within a kind dropped",
        any_of(F("a") == 1, F("a").is_in([1.0, "1", True, 2])),
        Condition("a", Operator.IN, (1, "1", True, 2)),
    ),
    (
        "other fields and operators keep their places",
        any_of(F("b") > 1, F("a") == 1, F("c") == 1, F("a") == 2),
        Or((F("b") > 1, Condition("a", Operator.IN, (1, 2)), F("c") == 1)),
    ),
    (
        "and of != becomes not_in",
        all_of(F("a") != 1, F("a").not_in(["x"]), F("b") == 2),
        And((Condition("a", Operator.NOT_IN, (1, "x")), F("b") == 2)),
    ),
    ("and of = is not merged", all_of(F("a") == 1, F("a") == 2), And((F("a") == 1, F("a") == 2))),
    (
        "or of != is not merged",
        any_of(F("a") != 1, F("a") != 2),
        Or((F("a") != 1, F("a") != 2)),
    ),
    (
        "nested or flattened, under not",
        Not(Or((F("a") == 1, Or((F("a") == 2, F("a") == 3))))),
        Not(Condition("a", Operator.IN, (1, 2, 3))),
    ),
    ("one condition stays", F("a") == 1, F("a") == 1),
]


@pytest.mark.parametrize(("name", "node", "expected"), REWRITES, ids=[r[0] for r in REWRITES])
def test_merge_memberships(name: str, node: Filter, expected: Filter) -> None:
    assert merge_memberships(node) == expected


@pytest.mark.parametrize(("name", "node", "expected"), REWRITES, ids=[r[0] for r in REWRITES])
def test_the_rewrite_is_an_identity_on_the_dataset(
    name: str, node: Filter, expected: Filter
) -> None:
    """The reference evaluator, per record, gives the same answer before and after."""
    for field in ("num", "tags", "group"):
        renamed = _rename(node, field)
        for record in build_records():
            before = _evaluate_plain(renamed, record)
            assert record_predicate(renamed)(record) == before
            assert matches(merge_memberships(renamed), record) == before


def _rename(node: Filter, field: str) -> Filter:
    if isinstance(node, Condition):
        return Condition(field if node.field == "a" else node.field, node.op, node.value)
    if isinstance(node, Not):
        return Not(_rename(node.child, field))
    return type(node)(tuple(_rename(c, field) for c in node.children))


def _evaluate_plain(node: Filter, record: Record) -> bool:
    """The tree evaluated node by node, with no rewrite (the reference's own leaves)."""
    from dataknobs_data.evaluate import value_matcher

    if isinstance(node, Condition):
        return value_matcher(node)(record.get_path(node.field))
    if isinstance(node, Not):
        return not _evaluate_plain(node.child, record)
    results = [_evaluate_plain(c, record) for c in node.children]
    return all(results) if isinstance(node, And) else any(results)


def test_distinct_values_keeps_kinds_apart_in_linear_time() -> None:
    assert distinct_values([1, 1.0, True, "1", 1, False, 0, -0.0]) == (1, True, "1", False, 0)
    many = list(range(200_000)) * 2
    assert len(distinct_values(many)) == 200_000


# -- SQL: one parameter per kind, whatever the size -------------------------------------------
@pytest.mark.parametrize("compile_filter", [sqlite_compile, pg_compile], ids=["sqlite", "pg"])
def test_in_sql_text_does_not_grow_with_the_list(compile_filter: Any) -> None:
    small = compile_filter(F("a").is_in([1, "x", True]))
    large = compile_filter(F("a").is_in([*range(50_000), *map(str, range(50_000)), True]))
    assert large.sql == small.sql
    assert len(large.params) == len(small.params)
    as_or = compile_filter(any_of(*(F("a") == v for v in [1, "x", True])))
    assert as_or.sql == small.sql and as_or.params == small.params


IN_TABLE: list[tuple[str, Any, Filter, dict[str, Any]]] = [
    ("sqlite numbers", sqlite_compile, F("a").is_in([1, 2.5, 1.0]), {"f1": "[1,2.5]"}),
    ("sqlite strings", sqlite_compile, F("a").is_in(["x", "é"]), {"f1": '["x","é"]'}),
    (
        "sqlite datetimes as the encoder's text",
        sqlite_compile,
        F("a").is_in([datetime(2021, 1, 1, tzinfo=UTC)]),
        {"f1": '["2021-01-01T00:00:00.000000+00:00"]'},
    ),
    (
        "pg numbers as exact numeric",
        pg_compile,
        F("a").is_in([1, 0.1]),
        {"f2": [Decimal(1), Decimal("0.1")]},
    ),
    ("pg strings", pg_compile, F("a").is_in(["x", "y"]), {"f2": ["x", "y"]}),
]


@pytest.mark.parametrize(
    ("name", "compile_filter", "node", "params"), IN_TABLE, ids=[t[0] for t in IN_TABLE]
)
def test_in_binds_one_set_per_kind(
    name: str, compile_filter: Any, node: Filter, params: dict[str, Any]
) -> None:
    compiled = compile_filter(node)
    for key, value in params.items():
        assert compiled.params[key] == value
    (key, member), *_ = params.items()
    if isinstance(member, str):
        assert f"IN (SELECT value FROM json_each(:{key}))" in compiled.sql
    else:
        assert isinstance(compiled.params[key], Members)
        assert f"= ANY((%({key})s::" in compiled.sql


def test_sqlite_in_set_keeps_kinds_apart_in_sqlite_itself() -> None:
    """The JSON set compares as SQLite compares numbers (1 = 1.0) and never crosses kinds."""
    conn = sqlite3.connect(":memory:")
    rows = conn.execute(
        "SELECT v, v IN (SELECT value FROM json_each(?)) FROM (SELECT 1 AS v UNION ALL "
        "SELECT 1.0 UNION ALL SELECT '1' UNION ALL SELECT 9007199254740993) ORDER BY rowid",
        (json.dumps([1, 9007199254740993]),),
    ).fetchall()
    assert [r[1] for r in rows] == [1, 1, 0, 1]


@pytest.mark.parametrize("compile_filter", [sqlite_compile, pg_compile], ids=["sqlite", "pg"])
def test_long_or_of_other_conditions_nests_in_balanced_groups(compile_filter: Any) -> None:
    """An OR of 5,000 ranges on many fields: at most FAN_OUT operands per group, log depth."""
    node = any_of(*(F(f"f{i % 50}") > i for i in range(5000)))
    sql = compile_filter(node).sql
    depth = deepest = 0
    for ch in sql:
        depth += ch == "("
        depth -= ch == ")"
        deepest = max(deepest, depth)
    assert deepest < 60
    conn = sqlite3.connect(":memory:")
    if compile_filter is sqlite_compile:  # SQLite parses it (its depth limit is 1000)
        conn.execute("CREATE TABLE t (id TEXT, doc TEXT, types TEXT)")
        compiled = compile_filter(node)
        assert conn.execute(f"SELECT count(*) FROM t WHERE {compiled.sql}", compiled.params)


def test_a_path_and_a_value_bound_again_reuse_their_parameter() -> None:
    """20 conditions on one field: one path parameter and one per distinct value, for SQLite
    (whose parse time grows with the square of distinct names) and PostgreSQL alike; equal
    values of different types (1, 1.0, True) stay apart."""
    node = any_of(*(F("a") > i % 10 for i in range(20)))
    assert len(sqlite_compile(node).params) == 1 + 10
    assert len(pg_compile(node).params) == 2 + 10  # the path as text[] and as the types key
    same = sqlite_compile(all_of(F("a") > 1, F("a") > 1.0, F("b") > 1))
    assert list(same.params.values()) == ['$."a"', 1, 1.0, '$."b"']


@requires_extra("postgres")
def test_postgres_statements_with_a_member_set_run_unprepared() -> None:
    from dataknobs_data.backends.postgres.flows import prepare_option

    compiled = pg_compile(F("a").is_in([1, 2]))
    assert one_shot(compiled.params) and prepare_option({**compiled.params, "limit": 1}) is False
    assert prepare_option(pg_compile(F("a") == 1).params) is None
    assert prepare_option(None) is None and prepare_option((["x"],)) is None


# -- chroma ------------------------------------------------------------------------------------
def test_chroma_large_in_is_bounded_and_finished_in_python() -> None:
    big = list(range(MAX_IN + 1))
    plan = plan_where(F("n").is_in(big))
    assert not plan.exact
    text = json.dumps(plan.where)
    assert len(text) < 500  # tags only, no value list
    small = plan_where(F("n").is_in(list(range(MAX_CONTAINS))))
    assert small.exact


def test_chroma_list_elements_past_the_contains_cap_are_bounded_by_their_tag() -> None:
    plan = plan_where(F("tags").is_in([f"v{i}" for i in range(MAX_CONTAINS + 1)]))
    assert not plan.exact
    assert '"$in"' in json.dumps(plan.where)  # the scalar part stays one exact $in
    assert json.dumps(plan.where).count("$contains") == 1  # the list part: one tag


def test_chroma_or_of_equalities_becomes_one_in() -> None:
    plan = plan_where(any_of(*(F("n") == i for i in range(5000))))
    assert json.dumps(plan.where).count("$in") == 1


def test_chroma_where_too_large_is_not_sent() -> None:
    node = any_of(*(F(f"f{i}") > i for i in range(600)))
    plan = plan_where(node)
    assert plan.where is None and not plan.exact and not plan.empty


def test_chroma_strict_compiler_refuses_with_typed_errors() -> None:
    with pytest.raises(FilterTooLargeError, match=r"'in' on 'n', 20000 values.*30000"):
        compile_where(F("n").is_in(list(range(20_000))))
    # a few thousand values fit chroma's statement: the strict compiler stays exact
    assert compile_where(F("n").is_in(list(range(2000)))) is not None
    with pytest.raises(UnsupportedOperatorError):
        compile_where(F("n").like("a%"))


def test_record_predicate_builds_its_sets_once() -> None:
    values = list(range(100_000))
    predicate = record_predicate(F("num").is_in(values))
    records = build_records()
    assert [r.id for r in records if predicate(r)] == [
        r.id for r in records if matches(F("num").is_in(values), r)
    ]


# -- the VectorStore API (faiss: numpy masks; chroma: bounded where + Python) --------------------
def _vector_store(name: str) -> Any:
    from dataknobs_data.vector.stores import VectorStoreFactory

    return VectorStoreFactory.create(name, dimensions=4, metric="euclidean")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("faiss", marks=requires_extra("faiss")),
        pytest.param("chroma", marks=requires_extra("chroma")),
    ],
)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_vector_store_large_in_filters_keep_k(name: str, mode: str) -> None:
    """20,000-value ``in`` / ``not_in`` / ``_id in`` on a VectorStore's metadata: exact counts
    and k hits, sync and async (the async shell runs the same store in a thread)."""
    import asyncio

    import numpy as np

    from dataknobs_data.vector.stores import AsyncVectorStore

    n = 300
    ids = [f"v{i:04d}" for i in range(n)]
    vectors = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    metadata = [
        {"n": i, "tag": ["a", "b"][i % 2] if i % 3 else [str(i), i], "s": str(i)} for i in range(n)
    ]
    wanted = list(range(0, 40_000, 2))  # 20,000 values, the even ones of 0..299 stored
    strings = [str(i) for i in range(20_000)]  # kinds never cross: "4" is not 4
    cases = [
        (F("n").is_in(wanted), sum(1 for i in range(n) if i % 2 == 0)),
        (F("n").not_in(wanted), sum(1 for i in range(n) if i % 2)),
        (F("tag").is_in(strings), sum(1 for i in range(n) if i % 3 == 0)),
        (F("n").is_in(strings), 0),
        (F("_id").is_in([*ids[:50], *strings]), 50),
        (any_of(*(F("n") == v for v in wanted[:5000])), sum(1 for i in range(n) if i % 2 == 0)),
    ]
    store = _vector_store(name)
    try:
        store.add(ids, vectors, metadata)
        if mode == "sync":
            run_count, run_search = store.count, store.search
        else:
            shell = AsyncVectorStore(store)

            def run_count(f: Any) -> int:
                return asyncio.run(shell.count(f))

            def run_search(v: Any, k: int, filter: Any) -> Any:
                return asyncio.run(shell.search(v, k, filter=filter))

        for flt, expected in cases:
            assert run_count(flt) == expected, flt
            hits = run_search(vectors[7], 10, filter=flt)
            assert len(hits) == min(10, expected)
            allowed = {h.id for h in hits}
            assert all(record_predicate(flt)(_as_record(h.id, metadata, ids)) for h in hits)
            assert len(allowed) == len(hits)
    finally:
        store.close()


def _as_record(rid: str, metadata: list[dict[str, Any]], ids: list[str]) -> Record:
    return Record(dict(metadata[ids.index(rid)]), id=rid)


# -- the limit that remains on SQL engines: bound parameters -------------------------------------
def test_check_parameters_names_the_largest_condition_and_the_limit() -> None:
    from dataknobs_data.backends.sql.compiler import check_parameters

    node = any_of(*(F(f"f{i % 7}") > i for i in range(300)), F("big").is_in(list(range(10))))
    compiled = sqlite_compile(node)
    assert check_parameters(compiled, node, 10_000, "sqlite") is compiled
    with pytest.raises(FilterTooLargeError, match=r"301 conditions.*'in' on 'big', 10 values"):
        check_parameters(compiled, node, 100, "sqlite")
    with pytest.raises(FilterTooLargeError, match=r"limit of 100"):
        check_parameters(compiled, node, 100, "sqlite")


@requires_extra("sqlite")
def test_sqlite_probes_its_parameter_limit() -> None:
    from dataknobs_data.backends.sqlite.backend import _variable_limit
    from dataknobs_data.backends.sqlite.connect import connect

    conn, _ = connect(":memory:")
    probed = _variable_limit(conn)
    assert probed >= 999
    conn.execute("SELECT " + ",".join(["?"] * min(probed, 2000)), [1] * min(probed, 2000))
    with pytest.raises(Exception, match="variable"):
        conn.execute(f"SELECT ?{probed + 1}")


@requires_extra("sqlite")
def test_sqlite_refuses_a_filter_past_its_parameter_limit_with_a_typed_error() -> None:
    """A build with a low variable limit (SQLite's default is 32,766; many builds raise it):
    a typed error naming the field and the limit, not the driver's OperationalError; a merged
    OR of equalities (one parameter) still runs."""
    from dataknobs_data import DatabaseFactory

    db = DatabaseFactory.create("sqlite:///:memory:")
    try:
        db.create_batch([Record({"n": i}, id=f"r{i}") for i in range(10)])
        db.backend._variables = 200  # type: ignore[attr-defined]  # what a low-limit build probes
        too_many = any_of(*(F("n") > i for i in range(1500)))
        with pytest.raises(FilterTooLargeError, match=r"'n'.*limit of 136"):
            db.count(too_many)
        with pytest.raises(FilterTooLargeError):
            db.search(too_many)
        assert db.count(any_of(*(F("n") == i for i in range(5000)))) == 10
    finally:
        db.close()


@requires_extra("postgres")
def test_postgres_backend_limit_is_the_protocols() -> None:
    """65,535 parameters per statement: past that (unmergeable conditions only) a typed error
    before anything is sent; merged lists never get there."""
    from dataknobs_data.backends.postgres.backend import _where

    with pytest.raises(FilterTooLargeError, match=r"'f\d+'.*limit of 65471"):
        _where(any_of(*(F(f"f{i % 3}") > i for i in range(70_000))))
    assert len(_where(any_of(*(F("n") == i for i in range(70_000)))).params) == 3
