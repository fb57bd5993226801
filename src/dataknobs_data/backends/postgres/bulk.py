"""Write encoded rows into a collection's table, inside the caller's transaction.

New records in batches of at least :data:`COPY_MIN` go through binary ``COPY`` (the fastest
way into PostgreSQL: no per-row statement, no text parsing of vectors); smaller batches and
updates use ``executemany``, which psycopg 3 pipelines. Both run in the transaction the backend
opened, so a failure anywhere - a bad row, a dropped connection - leaves the table unchanged.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from ..sqlite.codec import RowParts
from .ddl import VectorColumn

__all__ = ["COPY_MIN", "write_rows"]

COPY_MIN = 64


def _same(text: str) -> str:
    """The JSON is already text (the shared codec wrote it): send it as is."""
    return text


def _row(p: RowParts, columns: Sequence[VectorColumn]) -> tuple[Any, ...]:
    vectors = [
        None if c.field not in p.vectors else np.frombuffer(p.vectors[c.field], dtype=np.float32)
        for c in columns
    ]
    return (p.id, Jsonb(p.doc, dumps=_same), Jsonb(p.types, dumps=_same), p.data, *vectors)


def _names(columns: Sequence[VectorColumn]) -> list[sql.Composable]:
    base: list[sql.Composable] = [sql.Identifier(n) for n in ("id", "doc", "types", "data")]
    return base + [sql.Identifier(c.column) for c in columns]


def copy_rows(
    cur: psycopg.Cursor[Any],
    table: sql.Identifier,
    columns: Sequence[VectorColumn],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    """Binary ``COPY`` of rows shaped like :func:`_row`."""
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        table, sql.SQL(", ").join(_names(columns))
    )
    with cur.copy(stmt) as copy:
        copy.set_types(["text", "jsonb", "jsonb", "text"] + ["vector"] * len(columns))
        for row in rows:
            copy.write_row(row)


def write_rows(
    cur: psycopg.Cursor[Any],
    table: sql.Identifier,
    columns: Sequence[VectorColumn],
    parts: Sequence[RowParts],
    known: Collection[str],
) -> None:
    """Insert the records not in ``known``, replace those in it (every column rewritten)."""
    inserts = [_row(p, columns) for p in parts if p.id not in known]
    updates = [_row(p, columns) for p in parts if p.id in known]
    names = _names(columns)
    if len(inserts) >= COPY_MIN:
        copy_rows(cur, table, columns, inserts)
    elif inserts:
        marks = sql.SQL(", ").join(sql.Placeholder() * len(names))
        cur.executemany(
            sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                table, sql.SQL(", ").join(names), marks
            ),
            inserts,
        )
    if updates:
        sets = sql.SQL(", ").join(sql.SQL("{} = %s").format(n) for n in names[1:])
        cur.executemany(
            sql.SQL("UPDATE {} SET {} WHERE id = %s").format(table, sets),
            [(*row[1:], row[0]) for row in updates],
        )
