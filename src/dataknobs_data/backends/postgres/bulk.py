"""Write encoded rows into a collection's table, inside the caller's transaction.

New records in batches of at least :data:`COPY_MIN` go through binary ``COPY`` (the fastest
way into PostgreSQL: no per-row statement, no text parsing of vectors), and so do updates of
that many (into a temporary table, then one ``UPDATE ... FROM``); smaller batches use
``executemany``, which psycopg 3 pipelines. Both run in the transaction the backend
opened, so a failure anywhere - a bad row, a dropped connection - leaves the table unchanged.

The COPY rows are handed to psycopg already in PostgreSQL's binary wire format (UTF-8 text,
``jsonb`` as version byte + text, ``vector`` as dims/unused + big-endian float32, converted
for the whole batch at once), with pass-through dumpers on a cursor of its own: per-row
Python dumpers (pgvector builds a ``Vector`` object per value) cost more than the server's
own work, and ingest speed is measured against a raw binary COPY.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Collection, Iterable, Iterator, Sequence
from functools import cache, lru_cache
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.types.json import Jsonb

from ...errors import FieldValidationError, ValidationError
from ...fields import FieldType, VectorField
from ...records import Record
from ..rowcodec import RowParts, encode_record
from .ddl import HALFVEC_MAX, VectorColumn

__all__ = ["COPY_MIN", "write_rows"]

COPY_MIN = 64
#: records encoded per step while the previous step's rows stream to the server
COPY_CHUNK = 1000


def _same(text: str) -> str:
    """The JSON is already text (the shared codec wrote it): send it as is."""
    return text


@lru_cache(maxsize=1024)
def datetime_types(types_text: str) -> str:
    """The ``types`` PostgreSQL stores: only the datetime entries of the shared encoding.

    The SQL only ever asks whether a top-level field holds a datetime (to compare it as time,
    not text), so the other kinds are left out: most records store ``{}``, which the server
    parses and logs far faster (ingest +30% here). Collections written with the full map read
    the same. Cached: a batch shares one layout, hence one text.
    """
    kinds = json.loads(types_text)
    return _compact({k: v for k, v in kinds.items() if v == FieldType.DATETIME.value})


_compact = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _row(p: RowParts, columns: Sequence[VectorColumn]) -> tuple[Any, ...]:
    vectors = [
        None if c.field not in p.vectors else np.frombuffer(p.vectors[c.field], dtype=np.float32)
        for c in columns
    ]
    types = datetime_types(p.types)
    return (p.id, Jsonb(p.doc, dumps=_same), Jsonb(types, dumps=_same), p.data, *vectors)


def _names(columns: Sequence[VectorColumn]) -> list[sql.Composable]:
    base: list[sql.Composable] = [sql.Identifier(n) for n in ("id", "doc", "types", "data")]
    return base + [sql.Identifier(c.column) for c in columns]


class _Encoded(Dumper):
    """A binary dumper for values already in their wire format (see the module docstring)."""

    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        return bytes(obj)


@cache
def _encoded_dumper(oid: int) -> type[Dumper]:
    return type(f"_Encoded{oid}", (_Encoded,), {"oid": oid})


_JSONB_VERSION = b"\x01"


def _wire_vectors(parts: Sequence[RowParts], column: VectorColumn) -> list[bytes | None]:
    """Each row's vector in pgvector's binary format (``None`` where the record has none):
    uint16 dims, uint16 unused, then big-endian float32 (``vector``) or float16 (``halfvec``)."""
    blobs = [p.vectors.get(column.field) for p in parts]
    present = [b for b in blobs if b is not None]
    if not present:
        return [None] * len(blobs)
    dims = column.config.dimensions
    wire = ">f2" if column.type == "halfvec" else ">f4"
    big = np.frombuffer(b"".join(present), dtype="<f4").astype(wire).tobytes()
    head = struct.pack(">HH", dims, 0)
    step = np.dtype(wire).itemsize * dims
    out: list[bytes | None] = []
    at = 0
    for blob in blobs:
        if blob is None:
            out.append(None)
        else:
            out.append(head + big[at : at + step])
            at += step
    return out


def check_ranges(records: Sequence[Record], columns: Iterable[VectorColumn]) -> None:
    """Refuse, before anything is written, values a ``halfvec`` column cannot hold."""
    half = [c.field for c in columns if c.type == "halfvec"]
    for rec in records:
        for name in half:
            f = rec.fields.get(name)
            if isinstance(f, VectorField) and float(np.abs(f.value).max()) > HALFVEC_MAX:
                raise FieldValidationError(
                    name,
                    f"record {rec.id!r}: a value exceeds {HALFVEC_MAX:g}, the float16 range of "
                    "this halfvec column",
                )


#: A JSON-escaped NUL character: ``\u0000`` after an even number of backslashes (an odd number
#: means the text holds a literal backslash followed by "u0000", which PostgreSQL stores fine).
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def encode(record: Record) -> RowParts:
    """The shared row encoding, refusing what PostgreSQL cannot store."""
    parts = encode_record(record)
    if _NUL.search(parts.doc) or _NUL.search(parts.data):
        raise ValidationError(
            f"record {parts.id!r}: PostgreSQL cannot store the NUL character (U+0000) "
            "in text or jsonb"
        )
    return parts


def _encoded_rows(
    records: Sequence[Record], columns: Sequence[VectorColumn]
) -> Iterator[tuple[bytes | None, ...]]:
    """COPY rows in wire format, encoded chunk by chunk while earlier chunks are on the wire
    (the server parses one chunk while we encode the next; 2 cores, both busy)."""
    for start in range(0, len(records), COPY_CHUNK):
        parts = [encode(r) for r in records[start : start + COPY_CHUNK]]
        vectors = [_wire_vectors(parts, c) for c in columns]
        for i, p in enumerate(parts):
            yield (
                p.id.encode(),
                _JSONB_VERSION + p.doc.encode(),
                _JSONB_VERSION + datetime_types(p.types).encode(),
                p.data.encode(),
                *(v[i] for v in vectors),
            )


def copy_rows(
    cur: psycopg.Cursor[Any],
    table: sql.Identifier,
    columns: Sequence[VectorColumn],
    records: Sequence[Record],
) -> None:
    """Binary ``COPY`` of new records, on a cursor of its own in ``cur``'s transaction (an
    error part-way, even an encoding error, aborts the whole transaction: nothing is kept)."""
    conn = cur.connection
    types = ["text", "jsonb", "jsonb", "text"] + [c.type for c in columns]
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        table, sql.SQL(", ").join(_names(columns))
    )
    with conn.cursor(binary=True) as copy_cur:
        for name in set(types):
            info = conn.adapters.types.get(name)
            if info is None:
                raise psycopg.ProgrammingError(f"type {name!r} is not known on this connection")
            copy_cur.adapters.register_dumper(None, _encoded_dumper(info.oid))
        with copy_cur.copy(stmt) as copy:
            copy.set_types(types)
            for row in _encoded_rows(records, columns):
                copy.write_row(row)


def write_rows(
    cur: psycopg.Cursor[Any],
    table: sql.Identifier,
    columns: Sequence[VectorColumn],
    records: Sequence[Record],
    known: Collection[str],
) -> None:
    """Insert the records not in ``known``, replace those in it (every column rewritten)."""
    new = [r for r in records if r.id not in known]
    old = [r for r in records if r.id in known]
    names = _names(columns)
    if len(new) >= COPY_MIN:
        copy_rows(cur, table, columns, new)
    elif new:
        inserts = [_row(encode(r), columns) for r in new]
        marks = sql.SQL(", ").join(sql.Placeholder() * len(names))
        cur.executemany(
            sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
                table, sql.SQL(", ").join(names), marks
            ),
            inserts,
        )
    if len(old) >= COPY_MIN:
        _copy_updates(cur, table, columns, old)
    elif old:
        updates = [_row(encode(r), columns) for r in old]
        sets = sql.SQL(", ").join(sql.SQL("{} = %s").format(n) for n in names[1:])
        cur.executemany(
            sql.SQL("UPDATE {} SET {} WHERE id = %s").format(table, sets),
            [(*row[1:], row[0]) for row in updates],
        )


#: the session's scratch table for large updates (``pg_temp``: private to the connection)
_UPDATES = sql.Identifier("dk_update_rows")


def _copy_updates(
    cur: psycopg.Cursor[Any],
    table: sql.Identifier,
    columns: Sequence[VectorColumn],
    records: Sequence[Record],
) -> None:
    """Replace many stored rows at COPY speed: binary ``COPY`` into a temporary table shaped
    like the collection's, then one ``UPDATE ... FROM`` (a re-sync rewrites every vector of a
    collection; one statement per row would cost several times the embedding). The temporary
    table lives until the transaction ends and holds only this batch."""
    names = _names(columns)
    cur.execute(
        sql.SQL(
            "CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP"
        ).format(_UPDATES, table)
    )
    cur.execute(sql.SQL("TRUNCATE {}").format(_UPDATES))
    copy_rows(cur, _UPDATES, columns, records)
    sets = sql.SQL(", ").join(sql.SQL("{} = u.{}").format(n, n) for n in names[1:])
    cur.execute(
        sql.SQL("UPDATE {} AS t SET {} FROM {} AS u WHERE t.id = u.id").format(
            table, sets, _UPDATES
        )
    )
