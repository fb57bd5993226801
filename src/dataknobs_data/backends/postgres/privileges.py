"""Open a collection with the least privilege it needs, and name the privilege when one is missing.

A production role often may read and write its tables but not create schemas or tables (an
administrator made them). ``CREATE SCHEMA/TABLE IF NOT EXISTS`` checks the CREATE privilege
*before* it looks whether the object exists, so such a role would fail on objects that are already
there. Setup therefore looks first and creates only what is missing, and before each step checks
the privilege it takes (``has_*_privilege``), refusing with a :class:`PermissionDeniedError` that
names it and the ``GRANT`` that would give it.

What a role needs, by what it does:

- open an existing collection: USAGE on the schema; SELECT, INSERT, UPDATE, DELETE on the
  collection's table; SELECT, INSERT, UPDATE on the schema's ``dk_meta`` table;
- create a collection: CREATE on the schema (and CREATE on the database for a new schema);
- add a vector field or an index (``ALTER TABLE``, ``CREATE INDEX``): ownership of the table;
- keep vectors in step with their text (``prepare_marks()``): the partial index of pending
  records (ownership of the records table, unless it exists) and the schema's ``dk_claims``
  table (CREATE on the schema, unless it exists; then SELECT, INSERT, UPDATE, DELETE on it).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from ...errors import PermissionDeniedError
from .ddl import META_TABLE

__all__ = [
    "CLAIMS_PRIVILEGES",
    "META_PRIVILEGES",
    "RECORD_PRIVILEGES",
    "ensure_index",
    "ensure_schema",
    "ensure_table",
    "permission_error",
]

#: What reading and writing a collection's records takes.
RECORD_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
#: What reading and writing the collection's rows in the metadata table takes.
META_PRIVILEGES = ("SELECT", "INSERT", "UPDATE")
#: What claiming pending records takes on the schema's claims table.
CLAIMS_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")


def _who(cur: psycopg.Cursor[Any]) -> tuple[str, str]:
    row = cur.execute("SELECT current_user, current_database()").fetchone()
    assert row is not None
    return str(row[0]), str(row[1])


def _refuse(cur: psycopg.Cursor[Any], privilege: str, needed_for: str, grant: str) -> None:
    role, _ = _who(cur)
    raise PermissionDeniedError(
        f"postgres: role {role!r} lacks {privilege}, needed to {needed_for}; an administrator "
        f"can run: {grant.format(role=sql.Identifier(role).as_string(cur))}",
        privilege=privilege,
    )


def _true(cur: psycopg.Cursor[Any], query: str, params: tuple[Any, ...] = ()) -> bool:
    """Whether a one-value query returns a row holding a true value."""
    row = cur.execute(query, params).fetchone()
    return bool(row and row[0])


def ensure_schema(cur: psycopg.Cursor[Any], schema: str) -> None:
    """Create ``schema`` unless it exists (creating it takes CREATE on the database)."""
    if _true(cur, "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s", (schema,)):
        return
    if not _true(cur, "SELECT has_database_privilege(current_database(), 'CREATE')"):
        _, database = _who(cur)
        name = sql.Identifier(schema).as_string(cur)
        _refuse(
            cur,
            f"CREATE on database {sql.Identifier(database).as_string(cur)}",
            f"create schema {name}",
            f"CREATE SCHEMA {name} AUTHORIZATION {{role}};",
        )
    cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def ensure_table(
    cur: psycopg.Cursor[Any],
    schema: str,
    table: str,
    create: sql.Composed,
    privileges: tuple[str, ...],
) -> None:
    """Create ``schema.table`` unless it exists; if it exists, check the role has
    ``privileges`` on it (so the first failing write does not have to say it)."""
    qualified = sql.Identifier(schema, table).as_string(cur)
    name = sql.Identifier(schema).as_string(cur)
    if not _true(cur, "SELECT has_schema_privilege(%s, 'USAGE')", (schema,)):
        _refuse(
            cur,
            f"USAGE on schema {name}",
            f"use table {qualified}",
            f"GRANT USAGE ON SCHEMA {name} TO {{role}};",
        )
    found = cur.execute(
        "SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        (schema, table),
    ).fetchone()
    if found is None:
        if not _true(cur, "SELECT has_schema_privilege(%s, 'CREATE')", (schema,)):
            _refuse(
                cur,
                f"CREATE on schema {name}",
                f"create table {qualified}",
                f"GRANT CREATE ON SCHEMA {name} TO {{role}}; (or create the table as its "
                f"owner and GRANT {', '.join(RECORD_PRIVILEGES)} ON {qualified} TO {{role}};)",
            )
        cur.execute(create)
        return
    missing = [
        p for p in privileges if not _true(cur, "SELECT has_table_privilege(%s, %s)", (found[0], p))
    ]
    if missing:
        listed = ", ".join(missing)
        _refuse(
            cur,
            f"{listed} on table {qualified}",
            f"use table {qualified}",
            f"GRANT {listed} ON {qualified} TO {{role}};",
        )


def ensure_index(
    cur: psycopg.Cursor[Any], schema: str, table: str, index: str, create: sql.Composed
) -> None:
    """Create ``index`` on ``schema.table`` unless it exists. Only the table's owner may (and a
    role that cannot is told so, with the statement the owner would run), but any role may use
    an index an administrator made."""
    found = cur.execute(
        "SELECT c.relkind FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        (schema, index),
    ).fetchone()
    if found is not None:
        return
    owner = cur.execute(
        "SELECT pg_has_role(c.relowner, 'USAGE') FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        (schema, table),
    ).fetchone()
    if not (owner and owner[0]):
        qualified = sql.Identifier(schema, table).as_string(cur)
        _refuse(
            cur,
            f"ownership of table {qualified}",
            f"create index {sql.Identifier(index).as_string(cur)} (pending embeddings)",
            f"{create.as_string(cur)}; (as the owner of {qualified}, once)",
        )
    cur.execute(create)


def permission_error(exc: psycopg.Error) -> PermissionDeniedError:
    """A server's "permission denied" / "must be owner" as a typed error naming the privilege
    (adding a vector field or an index alters the table, which only its owner may do)."""
    primary = (exc.diag.message_primary or str(exc)).strip()
    privilege = None
    if primary.startswith("must be owner of "):
        privilege = "ownership of " + primary.removeprefix("must be owner of ")
        hint = (
            "adding a vector field or an index alters the table, which takes its owner: run it "
            "as the owner, or ALTER TABLE ... OWNER TO this role"
        )
    else:
        hint = (
            f"a collection needs USAGE on its schema and {', '.join(RECORD_PRIVILEGES)} on its "
            f"table, plus {', '.join(META_PRIVILEGES)} on the schema's {META_TABLE} table"
        )
    return PermissionDeniedError(f"postgres: {primary} ({hint})", privilege=privilege)
