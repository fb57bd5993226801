"""The SQLite filter/sort compiler as pure functions: exact SQL for representative trees, the
pattern and path translations, and every shared filter case evaluated by SQLite itself."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from dataknobs_data.backends.rowcodec import encode_record, iso_datetime
from dataknobs_data.backends.sql.identifiers import quote_identifier
from dataknobs_data.backends.sql.sqlite import (
    compile_filter,
    compile_order,
    glob_from_like,
    glob_prefix,
    json_path,
)
from dataknobs_data.backends.sqlite.connect import connect
from dataknobs_data.errors import BackendUnavailableError
from dataknobs_data.evaluate import like_regex, matches, order_records
from dataknobs_data.query import F, Filter, SortSpec
from dataknobs_data.testing.cases import FILTER_CASES, SORT_CASES, FilterCase, SortCase
from dataknobs_data.testing.dataset import build_records

_NUM_GTE = (
    "(CASE json_type(doc, :f0) WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(doc, :f0) AS e "
    "WHERE (e.type IN ('integer','real') AND e.atom >= :f1)) ELSE COALESCE((json_type(doc, :f0) "
    "IN ('integer','real') AND json_extract(doc, :f0) >= :f1), 0) END)"
)
_NOT_EXISTS = (
    "(NOT (CASE json_type(doc, :f0) WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(doc, :f0) "
    "AS e WHERE e.type <> 'null') WHEN 'null' THEN 0 ELSE json_type(doc, :f0) IS NOT NULL END))"
)
_NESTED_EQ = (
    "(CASE json_type(doc, :f0) WHEN 'array' THEN EXISTS (SELECT 1 FROM json_each(doc, :f0) AS e "
    "WHERE ((e.type = 'text' AND NOT 0) AND e.atom = :f1)) ELSE COALESCE(((json_type(doc, :f0) "
    "= 'text' AND NOT 0) AND json_extract(doc, :f0) = :f1), 0) END)"
)

COMPILE_CASES: list[tuple[str, Filter, str, dict[str, Any]]] = [
    ("id-eq", F("_id") == "r1", "(id = :f0)", {"f0": "r1"}),
    (
        "id-in-drops-other-kinds",
        F("_id").is_in(["a", 1, "a"]),
        "(id IN (SELECT value FROM json_each(:f0)))",
        {"f0": '["a"]'},
    ),
    ("id-number-never-matches", F("_id") == 3, "0", {}),
    ("id-like", F("_id").like("r_%"), "(id GLOB :f0)", {"f0": "r?*"}),
    (
        "num-gte",
        F("year") >= 2020,
        _NUM_GTE,
        {"f0": '$."year"', "f1": 2020},
    ),
    ("not-exists", ~F("tags").exists(), _NOT_EXISTS, {"f0": '$."tags"'}),
    (
        "nested-string",
        F("meta.author") == "ann",
        _NESTED_EQ,
        {"f0": '$."meta"."author"', "f1": "ann"},
    ),
    (
        "injection-in-path-is-a-parameter",
        F("x\"'); DROP TABLE t; --") == 1,
        _NUM_GTE.replace(">=", "="),
        {
            "f0": '$."x\\"\'); DROP TABLE t; --"',
            "f1": 1,
        },
    ),
]


@pytest.mark.parametrize(("name", "node", "sql", "params"), COMPILE_CASES, ids=lambda c: c)
def test_compiled_sql(name: str, node: Filter, sql: str, params: dict[str, Any]) -> None:
    """Representative trees compile to exactly this SQL and these parameters."""
    compiled = compile_filter(node)
    assert compiled.sql == sql
    assert compiled.params == params


def test_boolean_logic_is_parenthesised_and_two_valued() -> None:
    """AND/OR/NOT wrap every child; negation is NOT of the positive 0/1 predicate."""
    compiled = compile_filter(~((F("_id") == "a") | (F("_id") != "b")))
    assert compiled.sql == "(NOT ((id = :f0) OR (NOT (id = :f1))))"
    assert compiled.params == {"f0": "a", "f1": "b"}
    assert compile_filter(None).sql == "1"


def test_datetime_values_are_fixed_width_text() -> None:
    """Datetime filter values bind as UTC ISO text with microseconds, whatever the zone."""
    plus3 = timezone(timedelta(hours=3))
    compiled = compile_filter(F("when") > datetime(2021, 1, 1, 3, tzinfo=plus3))
    assert "2021-01-01T00:00:00.000000+00:00" in compiled.params.values()
    assert "(json_extract(types, :f0) IS 'datetime')" in compiled.sql


def test_order_by() -> None:
    """Sort keys become (null flag, kind rank, value) triples, then the id tie-break."""
    compiled = compile_order([SortSpec("_id", descending=True)])
    assert compiled.sql == "id DESC, id ASC"
    assert compiled.params == {}
    compiled = compile_order([SortSpec("num", descending=True, nulls="first")])
    assert compiled.sql.startswith("((CASE json_type(doc, :s0)")
    assert " END) IS NULL) DESC, (CASE " in compiled.sql
    assert compiled.sql.endswith(" END) DESC, id ASC")
    assert compile_order([]).sql == "id ASC"
    assert " END) IS NULL) ASC, (CASE " in compile_order([SortSpec("n")]).sql


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (["a"], '$."a"'),
        (["meta", "author"], '$."meta"."author"'),
        (['q"uote'], '$."q\\"uote"'),
        (["back\\slash"], '$."back\\\\slash"'),
        (["$[0]"], '$."$[0]"'),
    ],
)
def test_json_path_quotes_every_segment(path: list[str], expected: str) -> None:
    """Path segments are always quoted, so dots, quotes and brackets stay literal."""
    assert json_path(path) == expected


def test_quote_identifier() -> None:
    """Identifiers are double-quoted with embedded quotes doubled."""
    assert quote_identifier("records") == '"records"'
    assert quote_identifier('a"b') == '"a""b"'


def test_iso_datetime_sorts_as_time() -> None:
    """Fixed width: text order equals time order, even across years < 1000 and zones."""
    stamps = [
        datetime(999, 1, 1, tzinfo=UTC),
        datetime(2020, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2020, 3, 1, 1, 0, tzinfo=timezone(timedelta(hours=2))),
        datetime(2020, 3, 1, 0, 0, 0, 1),
    ]
    texts = [iso_datetime(s) for s in stamps]
    assert len({len(t) for t in texts}) == 1
    assert sorted(texts) == [iso_datetime(s) for s in sorted(stamps, key=lambda d: iso_datetime(d))]
    assert texts[2] < texts[3]


LIKE_PATTERNS = ["%", "", "a%", "%a", "_", "a_", "\\%", "a\\_b", "%\\\\", "%b%", "é%", "A%",
                 "a%b", "__", "[a]%", "*", "?", "x*y", "\\a", "日_", "%🙂", "a\nb%"]  # fmt: skip
LIKE_SUBJECTS = ["", "a", "A", "ab", "aB", "a_b", "a%", "%", "\\", "é", "éa", "[a]x", "*", "?",
                 "x*y", "xzy", "日本", "日", "a🙂", "🙂", "a\nbc", "ba", "a\\b"]  # fmt: skip


@pytest.fixture(scope="module")
def conn() -> Any:
    """The backend's own driver when the sqlite extra is installed; else the standard library's
    SQLite, which has everything the compiled SQL uses (JSON1, GLOB): no vector search here."""
    try:
        connection, _ = connect(":memory:")
    except BackendUnavailableError:
        connection = sqlite3.connect(":memory:")
    yield connection
    connection.close()


def test_glob_translation_matches_like_regex(conn: Any) -> None:
    """GLOB(glob_from_like(p)) in SQLite agrees with the reference regex on unicode input."""
    for pattern in LIKE_PATTERNS:
        rx = like_regex(pattern)
        glob = glob_from_like(pattern)
        for subject in LIKE_SUBJECTS:
            (got,) = conn.execute("SELECT ? GLOB ?", (subject, glob)).fetchone()
            assert bool(got) == (rx.fullmatch(subject) is not None), (pattern, subject)


def test_glob_prefix_is_literal(conn: Any) -> None:
    """starts_with escapes GLOB metacharacters in the prefix."""
    for prefix in ["", "a", "*", "?", "[", "a[b]", "é", "%", "_"]:
        for subject in [*LIKE_SUBJECTS, "[", "a[b]c", "%x", "_y"]:
            (got,) = conn.execute("SELECT ? GLOB ?", (subject, glob_prefix(prefix))).fetchone()
            assert bool(got) == subject.startswith(prefix), (prefix, subject)
    assert re.fullmatch(r"\[\*\]\*", glob_prefix("*"))


@pytest.fixture(scope="module")
def dataset_table(conn: Any) -> Any:
    """The conformance dataset encoded exactly as the backend stores it."""
    conn.execute("CREATE TABLE t (rowid INTEGER PRIMARY KEY, id TEXT, doc, types, data)")
    for rec in build_records():
        p = encode_record(rec)
        conn.execute(
            "INSERT INTO t (id, doc, types, data) VALUES (?,?,?,?)", (p.id, p.doc, p.types, p.data)
        )
    return conn


@pytest.mark.parametrize("case", FILTER_CASES, ids=str)
def test_every_filter_case_in_sqlite(dataset_table: Any, case: FilterCase) -> None:
    """Each shared filter case, compiled and run by SQLite, selects what evaluate.matches does."""
    compiled = compile_filter(case.filter)
    rows = dataset_table.execute(
        f"SELECT id FROM t WHERE {compiled.sql} ORDER BY id", compiled.params
    ).fetchall()
    expected = sorted(r.id for r in build_records() if matches(case.filter, r))
    assert [r[0] for r in rows] == expected
    (value,) = dataset_table.execute(
        f"SELECT count(*) FROM t WHERE ({compiled.sql}) IS NULL", compiled.params
    ).fetchone()
    assert value == 0, "a predicate evaluated to NULL"


@pytest.mark.parametrize("case", SORT_CASES, ids=str)
def test_every_sort_case_in_sqlite(dataset_table: Any, case: SortCase) -> None:
    """Each shared sort case orders rows as evaluate.order_records does."""
    specs = [SortSpec(k.field, k.descending, k.nulls) for k in case.keys]  # type: ignore[arg-type]
    where = compile_filter(case.filter)
    order = compile_order(specs)
    rows = dataset_table.execute(
        f"SELECT id FROM t WHERE {where.sql} ORDER BY {order.sql}", {**where.params, **order.params}
    ).fetchall()
    records = [r for r in build_records() if matches(case.filter, r)]
    assert [r[0] for r in rows] == [r.id for r in order_records(records, specs)]
