"""The SQL package as a whole: pure text (no driver is imported), one set of naming rules."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dataknobs_data.backends.sql import quote_identifier
from dataknobs_data.backends.sql.knn import select_sql, settled, tie_bound, within_tie
from dataknobs_data.backends.sql.postgres import POSTGRES
from dataknobs_data.backends.sql.sqlite import SQLITE
from dataknobs_data.errors import InvalidIdentifierError

DRIVERS = ("psycopg", "psycopg_pool", "pgvector", "sqlite_vec", "sqlean", "sqlite3")
PURE = (
    "dataknobs_data.backends.sql",
    "dataknobs_data.backends.sql.compiler",
    "dataknobs_data.backends.sql.knn",
    "dataknobs_data.backends.sql.sqlite",
    "dataknobs_data.backends.sql.postgres",
)


def test_importing_the_compiler_and_both_dialects_loads_no_driver() -> None:
    """So the exact-SQL tests run with only the dev extra; a fresh interpreter, because this
    one may have loaded drivers for other tests."""
    code = (
        "import sys\n"
        f"for name in {PURE!r}: __import__(name)\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {DRIVERS!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_checker_sees_a_driver_import() -> None:
    """The check above can fail: importing a driver-bound module is reported."""
    code = (
        "import sys\nimport dataknobs_data.backends.sqlite.connect as c\nimport sqlite3\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {DRIVERS!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "sqlite3" in out.stdout


@pytest.mark.parametrize("name", ["sqlite_x", "dk_meta", "DK_x", "1a", "a-b", "", "a" * 64, 3])
def test_both_dialects_refuse_unsafe_or_reserved_names(name: object) -> None:
    for dialect in (SQLITE, POSTGRES):
        with pytest.raises(InvalidIdentifierError):
            dialect.validate_collection(name)


def test_pg_prefix_is_reserved_only_in_postgres() -> None:
    assert SQLITE.validate_collection("pg_docs") == "pg_docs"
    with pytest.raises(InvalidIdentifierError):
        POSTGRES.validate_collection("PG_docs")


def test_identifiers_are_quoted_with_embedded_quotes_doubled() -> None:
    assert quote_identifier('we"ird') == '"we""ird"'


def test_select_sql_omits_empty_clauses() -> None:
    assert select_sql(["rowid"], '"t"') == 'SELECT rowid FROM "t"'
    assert (
        select_sql(["a", "b AS d"], '"t"', ["x = :x", "y"], ["d", "id"], ":k")
        == 'SELECT a, b AS d FROM "t" WHERE x = :x AND y ORDER BY d, id LIMIT :k'
    )


def test_within_tie_keeps_float32_ties_with_the_kth_in_any_order() -> None:
    found = [("far", 0.5), ("tie", 0.2 + 1e-7), ("a", 0.1), ("b", 0.2)]
    assert [r for r, _ in within_tie(found, 2, lambda p: p[1])] == ["tie", "a", "b"]
    assert within_tie(found, 10, lambda p: p[1]) == found
    assert within_tie([], 3, lambda p: p) == []


def test_settled_only_when_the_next_row_is_beyond_the_tie() -> None:
    ordered = [0.1, 0.2, 0.3]
    assert settled(ordered, 2, 0.3)
    assert not settled(ordered, 2, 0.2 + 1e-7)
    assert not settled(ordered, 2, None)
    assert tie_bound(ordered, 2) == pytest.approx(0.2 + 1e-5)
