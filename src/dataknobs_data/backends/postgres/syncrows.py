"""SQL for the synchronisation support of the PostgreSQL backend (builders and one COPY).

:func:`sync_rows_query` reads, per record, only what a staleness check needs
(:class:`~dataknobs_data.contract.SyncRow`): each source's value when it is a string, each
vector field's ``data`` entry (parsed only for records whose ``doc`` has the field; the
vector itself is never read) and the two marks, a page at a time in id order.

:func:`replace_query` puts one vector field in place (:meth:`Backend.replace_vectors`): the
new vectors and their ``data`` entries go by binary ``COPY`` into a temporary table
(:func:`copy_replacements`), then one ``UPDATE ... FROM`` writes the rows whose marks and
source values are still those read. ``data`` is text (see :mod:`.ddl`: ``jsonb`` would
normalise numbers), so the entry is put in by text surgery on the codec's fixed layout: at the
head of the fields list when the record has no entry for the field, or in place of the one
provenance-only vector entry it has (found by a pattern that only that entry can match: the
field's ``{"name":...,`` key occurs exactly once in the text, and ``doc`` has the field at the
top level). Anything else (a vector with metadata, another kind of value) is declined and
left to the ordinary write path.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg import sql

from ...marks import FAILED_FIELD, PENDING_FIELD
from ..rowcodec import entry_head
from .bulk import _encoded_dumper
from .ddl import VectorColumn

__all__ = ["copy_replacements", "replace_query", "sync_rows_query"]

_json_str = json.encoder.encode_basestring
_JSONB_VERSION = b"\x01"
_FIELDS_HEAD = '{"fields":['


def _text(key: sql.Composable, alias: str = "") -> sql.Composed:
    """A top-level field's value when it is a string (not a datetime, which ``doc`` holds as
    an ISO string and ``types`` lists), else NULL (``alias``: the table's, with its dot)."""
    return sql.SQL(
        "(CASE WHEN jsonb_typeof({a}doc -> {k}) = 'string' AND NOT {a}types ? {k} "
        "THEN {a}doc ->> {k} END)"
    ).format(k=key, a=sql.SQL(alias))


def sync_rows_query(
    table: sql.Identifier,
    where: str,
    sources: Sequence[str],
    vectors: Sequence[str],
    after: bool,
) -> tuple[sql.Composed, dict[str, Any]]:
    """``SELECT id, <texts>, <entries>, <pending>, <failed>`` of one page (the caller binds
    ``dk_limit`` and, with ``after``, ``dk_after``)."""
    params: dict[str, Any] = {}
    cols: list[sql.Composable] = [sql.SQL("id")]
    for i, name in enumerate(sources):
        params[f"dk_src{i}"] = name
        cols.append(_text(sql.Placeholder(f"dk_src{i}")))
    for i, name in enumerate(vectors):
        params[f"dk_vec{i}"], params[f"dk_head{i}"] = name, entry_head(name)
        cols.append(
            sql.SQL(
                "(CASE WHEN doc -> {k} = '{{}}'::jsonb THEN "
                "coalesce(substr(data, nullif(strpos(data, {h}), 0)), '') END)"
            ).format(k=sql.Placeholder(f"dk_vec{i}"), h=sql.Placeholder(f"dk_head{i}"))
        )
    cols += [
        sql.SQL("doc -> {}").format(sql.Literal(PENDING_FIELD)),
        sql.SQL("doc -> {}").format(sql.Literal(FAILED_FIELD)),
    ]
    since = " AND id > %(dk_after)s" if after else ""
    stmt = sql.SQL("SELECT {} FROM {} WHERE ({}){} ORDER BY id LIMIT %(dk_limit)s").format(
        sql.SQL(", ").join(cols), table, sql.SQL(where), sql.SQL(since)
    )
    return stmt, params


def _are_literal(text: str) -> str:
    """``text`` as a literal in a PostgreSQL regular expression (ARE)."""
    return "".join(c if c.isalnum() or c == "_" else "\\" + c for c in text)


def entry_pattern(field: str) -> str:
    """The regular expression of the field's vector entry when it holds provenance only."""
    return (
        '\\{"name":'
        + _are_literal(_json_str(field))
        + ',"type":"vector"(,"(source_field|model_name|model_version|source_hash)":'
        + '"([^"\\\\]|\\\\.)*")*\\}'
    )


def temp_table(column: VectorColumn) -> sql.Identifier:
    return sql.Identifier(f"dk_replace_{column.column}")


def copy_replacements(
    cur: psycopg.Cursor[Any],
    table: sql.Identifier,
    column: VectorColumn,
    rows: Sequence[tuple[str, str, tuple[str | None, ...], np.ndarray]],
) -> None:
    """Binary ``COPY`` of ``(id, entry, source values, vector)`` rows into the column's
    temporary table (made on first use, dropped with the transaction)."""
    temp = temp_table(column)
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DROP AS "
            "SELECT id, data AS entry, data AS repl, doc AS vals, {} AS vec FROM {} WITH NO DATA"
        ).format(temp, sql.Identifier(column.column), table)
    )
    cur.execute(sql.SQL("TRUNCATE {}").format(temp))
    conn = cur.connection
    types = ["text", "text", "text", "jsonb", column.type]
    dims = column.config.dimensions
    wire = ">f2" if column.type == "halfvec" else ">f4"
    head = struct.pack(">HH", dims, 0)
    with conn.cursor(binary=True) as copy_cur:
        for name in set(types):
            info = conn.adapters.types.get(name)
            if info is None:
                raise psycopg.ProgrammingError(f"type {name!r} is not known on this connection")
            copy_cur.adapters.register_dumper(None, _encoded_dumper(info.oid))
        stmt = sql.SQL("COPY {} (id, entry, repl, vals, vec) FROM STDIN (FORMAT BINARY)")
        with copy_cur.copy(stmt.format(temp)) as copy:
            copy.set_types(types)
            for rid, entry, texts, vec in rows:
                copy.write_row(
                    (
                        rid.encode(),
                        entry.encode(),
                        entry.replace("\\", "\\\\").encode(),
                        _JSONB_VERSION + json.dumps(list(texts), ensure_ascii=False).encode(),
                        head + np.asarray(vec, dtype="<f4").astype(wire).tobytes(),
                    )
                )
    # statistics for the planner: without them it may hash-join the whole records table
    # against the page, a full scan per page (quadratic over a bulk_sync)
    cur.execute(sql.SQL("ANALYZE {}").format(temp))


def replace_query(
    table: sql.Identifier, column: VectorColumn, field: str, sources: Sequence[str]
) -> tuple[sql.Composed, dict[str, Any]]:
    """The guarded ``UPDATE ... FROM`` the temporary table, ``RETURNING`` the written ids."""
    params: dict[str, Any] = {
        "name": field,
        "key": '{"name":' + _json_str(field) + ",",
        "pattern": entry_pattern(field),
        "head": _FIELDS_HEAD,
        "pending": PENDING_FIELD,
        "failed": FAILED_FIELD,
    }
    guards: list[sql.Composable] = [
        sql.SQL("coalesce(jsonb_typeof(r.doc -> %(pending)s), 'null') = 'null'"),
        sql.SQL("coalesce(jsonb_typeof(r.doc -> %(failed)s), 'null') = 'null'"),
        sql.SQL("left(r.data, 11) = %(head)s"),
        sql.SQL(
            "((strpos(r.data, %(key)s) = 0 AND NOT r.doc ? %(name)s) OR "
            "(length(r.data) - length(replace(r.data, %(key)s, '')) = length(%(key)s) "
            "AND r.doc ? %(name)s AND r.data ~ %(pattern)s))"
        ),
    ]
    for i, name in enumerate(sources):
        params[f"src{i}"] = name
        guards.append(
            sql.SQL("{} IS NOT DISTINCT FROM (u.vals ->> {})").format(
                _text(sql.Placeholder(f"src{i}"), "r."), sql.Literal(i)
            )
        )
    stmt = sql.SQL(
        "UPDATE {t} AS r SET "
        "data = CASE WHEN strpos(r.data, %(key)s) = 0 THEN %(head)s || u.entry || "
        "CASE WHEN substr(r.data, 12, 1) = ']' THEN '' ELSE ',' END || substr(r.data, 12) "
        "ELSE regexp_replace(r.data, %(pattern)s, u.repl) END, "
        "doc = jsonb_set(r.doc, ARRAY[%(name)s], '{{}}'::jsonb), "
        "{c} = u.vec "
        "FROM {u} AS u WHERE r.id = u.id AND {g} RETURNING r.id"
    ).format(
        t=table,
        c=sql.Identifier(column.column),
        u=temp_table(column),
        g=sql.SQL(" AND ").join(guards),
    )
    return stmt, params
