"""The full-text index of a collection: one FTS5 table, BM25 ranking (SQL builders, pure).

Layout: per collection ``c``, a contentful FTS5 table ``"c__fts"(field UNINDEXED, body)`` with
the ``unicode61`` tokenizer (Unicode letters and digits form tokens, everything else separates
them; case-folded; diacritics removed; no stemming). It holds one row per (record, non-null
top-level ``TEXT`` field). Field names are user input, so they are stored as values in
``field`` and never become identifiers or FTS5 column names.

The FTS rowid encodes its record: ``record rowid << 20 | position of the field in the
record``. A record's rows are therefore the rowid range ``[r << 20, (r + 1) << 20)``, which
FTS5 seeks directly, so rows are removed without a mapping table and without a scan, and the
record of a hit is ``rowid >> 20``. Records are written and removed together with their FTS
rows in one transaction, so a reused record rowid never meets stale index rows.

A query is plain words: each is wrapped in double quotes (embedded quotes doubled), which FTS5
reads as a string to tokenize, never as syntax; the words are joined with ``OR``. A record's
score is the sum over its matching rows of ``-bm25`` (FTS5's ``rank`` with default weights),
so higher is better; BM25 statistics are those of the whole index (all ``TEXT`` fields).
"""

from __future__ import annotations

from collections.abc import Sequence

from ...errors import BackendError
from ..sql.identifiers import quote_identifier

__all__ = [
    "FTS_SHIFT",
    "backfill_fts_sql",
    "create_fts_sql",
    "field_type_sql",
    "fts_range",
    "fts_rowid",
    "fts_table",
    "match_expression",
    "text_search_sql",
]

FTS_SHIFT = 20  # up to 2**20 fields per record, 2**43 record rowids
_MAX_POSITION = 1 << FTS_SHIFT
_MAX_RECORD = 1 << (63 - FTS_SHIFT)
TOKENIZER = "unicode61"


def fts_table(collection: str) -> str:
    return f"{collection}__fts"


def create_fts_sql(table: str) -> str:
    return (
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {quote_identifier(table)} "
        f"USING fts5(field UNINDEXED, body, tokenize = '{TOKENIZER}')"
    )


def backfill_fts_sql(collection: str, table: str) -> str:
    """Index the ``TEXT`` fields of every stored record (a file written before the index)."""
    return (
        f"INSERT INTO {quote_identifier(table)} (rowid, field, body) "
        f"SELECT (r.rowid << {FTS_SHIFT}) | CAST(e.key AS INTEGER), "
        "json_extract(e.value, '$.name'), json_extract(e.value, '$.value') "
        f"FROM {quote_identifier(collection)} AS r, json_each(r.data, '$.fields') AS e "
        "WHERE json_extract(e.value, '$.type') = 'text' "
        "AND json_type(e.value, '$.value') = 'text'"
    )


def fts_rowid(record_rowid: int, position: int) -> int:
    """The FTS rowid of the field at ``position`` of the record at ``record_rowid``."""
    if not 0 < record_rowid < _MAX_RECORD or not 0 <= position < _MAX_POSITION:
        raise BackendError(
            f"full-text index: record rowid {record_rowid} or field position {position} "
            "out of range"
        )
    return (record_rowid << FTS_SHIFT) | position


def fts_range(record_rowid: int) -> tuple[int, int]:
    """The inclusive FTS rowid range holding a record's rows."""
    return record_rowid << FTS_SHIFT, ((record_rowid + 1) << FTS_SHIFT) - 1


def match_expression(words: Sequence[str]) -> str:
    """An FTS5 query matching any of ``words`` literally: ``"a" OR "b""c"``.

    Inside double quotes FTS5 only gives meaning to ``"`` (doubled here) and to NUL, which
    ends its input and becomes a space (the tokenizer separates on both alike).
    """
    return " OR ".join('"' + w.replace('"', '""').replace("\x00", " ") + '"' for w in words)


def field_type_sql(collection: str, text_only: bool) -> str:
    """One stored type of top-level field ``:name`` (``'text'`` only, when ``text_only``), or
    no row: tells ``text_search(fields=...)`` an unknown field from a non-``TEXT`` one. The name
    is compared as a value (``json_each``), so any field name is safe."""
    wanted = " AND j.value = 'text'" if text_only else ""
    return (
        f"SELECT j.value FROM {quote_identifier(collection)} AS r, json_each(r.types) AS j "
        f"WHERE j.key = :name{wanted} LIMIT 1"
    )


def text_search_sql(collection: str, table: str, n_fields: int | None, filter_sql: str) -> str:
    """Best ``:k`` records as ``(record rowid, score)``, score descending then id.

    Parameters: ``:q`` (the match expression), ``:k``, ``:t0``... (field names, when
    ``n_fields`` is given) and the filter's own (``filter_sql`` reads ``doc``/``types``/``id``
    of the records table).
    """
    fts = quote_identifier(table)
    records = quote_identifier(collection)
    only = ""
    if n_fields is not None:
        only = " AND field IN (" + ",".join(f":t{i}" for i in range(n_fields)) + ")"
    return (
        f"SELECT h.rec, h.score FROM (SELECT rowid >> {FTS_SHIFT} AS rec, SUM(-rank) AS score "
        f"FROM {fts} WHERE {fts} MATCH :q{only} GROUP BY rec) AS h "
        f"JOIN {records} ON {records}.rowid = h.rec "
        f"WHERE {filter_sql} ORDER BY h.score DESC, {records}.id ASC LIMIT :k"
    )
