"""SQL for the synchronisation support of the SQLite backend (pure builders, no I/O).

:func:`sync_rows_sql` reads, per record, only what a staleness check needs
(:class:`~dataknobs_data.contract.SyncRow`): each source field's value when it is a string,
each vector field's ``data`` entry (its provenance; the vector itself is never read) and the
two marks, in id order from a key (keyset paging: every page is one short read transaction).

:func:`replace_vector_sql` puts one vector field in place (:meth:`Backend.replace_vectors`):
the new entries and vectors are staged in a temporary table, then one ``UPDATE ... FROM``
writes the field's ``data`` entry, its ``doc`` and ``types`` slots and the records table's
copy of the vector, guarded by the record's marks and source values, so a record changed
since it was read is left alone (``RETURNING`` tells which rows were written).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...marks import FAILED_FIELD, PENDING_FIELD
from ..rowcodec import entry_head
from ..sql.identifiers import quote_identifier
from ..sql.sqlite import json_path

__all__ = [
    "STAGE_TABLE",
    "create_stage_sql",
    "replace_vector_sql",
    "sync_rows_sql",
    "text_sql",
]


_PENDING = json_path([PENDING_FIELD])
_FAILED = json_path([FAILED_FIELD])


def text_sql(param: str, alias: str = "") -> str:
    """A top-level field's value when it is a string (a datetime is stored as an ISO string
    in ``doc`` but is not a string to a rule), else NULL; ``param`` binds its JSON path
    (``alias``: the records table's, with its dot)."""
    return (
        f"(CASE WHEN json_type({alias}doc, :{param}) = 'text' "
        f"AND json_extract({alias}types, :{param}) IS NOT 'datetime' "
        f"THEN json_extract({alias}doc, :{param}) END)"
    )


def _entry_sql(path: str, key: str) -> str:
    """Where the vector field's ``data`` entry starts: NULL when ``types`` says the record
    has no vector there, else ``data`` from the first occurrence of the entry's head
    (:func:`entry_head`, bound as ``key``) to its end, ``''`` if the head is not found.
    A string search, not a JSON parse of ``data`` (which costs more than the rest of the
    row); :func:`parse_entry` decodes the entry and says when the text is ambiguous."""
    return (
        f"(CASE WHEN json_extract(types, :{path}) = 'vector' "
        f"THEN coalesce(substr(data, nullif(instr(data, :{key}), 0)), '') END)"
    )


def sync_rows_sql(
    table: str, where: str, sources: Sequence[str], vectors: Sequence[str], after: bool
) -> tuple[str, dict[str, Any]]:
    """``SELECT id, <texts>, <vector entries>, <pending>, <failed>`` of one page (binds
    ``:dk_after`` when ``after``, and ``:dk_limit``), with its own parameters."""
    params: dict[str, Any] = {}
    cols = ["id"]
    for i, name in enumerate(sources):
        params[f"dk_src{i}"] = json_path([name])
        cols.append(text_sql(f"dk_src{i}"))
    for i, name in enumerate(vectors):
        params[f"dk_vp{i}"] = json_path([name])
        params[f"dk_vk{i}"] = entry_head(name)
        cols.append(_entry_sql(f"dk_vp{i}", f"dk_vk{i}"))
    params["dk_pending"], params["dk_failed"] = _PENDING, _FAILED
    cols += ["doc -> :dk_pending", "doc -> :dk_failed"]
    since = " AND id > :dk_after" if after else ""
    sql = (
        f"SELECT {', '.join(cols)} FROM {quote_identifier(table)} WHERE ({where}){since} "
        "ORDER BY id LIMIT :dk_limit"
    )
    return sql, params


#: the connection's scratch table of one in-place write (``temp``: private to it, and emptied
#: by every write before use, inside the write's transaction)
STAGE_TABLE = "temp.dk_replace_vectors"


def create_stage_sql() -> str:
    return (
        "CREATE TEMP TABLE IF NOT EXISTS dk_replace_vectors "
        "(id TEXT PRIMARY KEY, entry TEXT NOT NULL, blob BLOB NOT NULL, vals TEXT NOT NULL)"
    )


def replace_vector_sql(table: str, column: str, n_sources: int) -> str:
    """The guarded in-place write of one vector field from the staged rows (each found by
    its primary key: a join would let the planner scan the whole records table per page)
    (:data:`STAGE_TABLE`: id, the new ``data`` entry, the vector blob, the expected source
    values as a JSON array); named parameters ``name``, ``path`` (the field's JSON path),
    ``src<i>`` (source paths), ``pending``, ``failed``. ``RETURNING`` the written rowids.

    Written only where the record holds no mark, each source still holds the value read, and
    the field is absent or a vector (another kind of value is left to the ordinary path,
    which also keeps the full-text index in step). A new field's entry is appended to the
    fields list; an existing one is replaced where it stands."""
    staged = f"(SELECT {{}} FROM {STAGE_TABLE} AS s WHERE s.id = r.id)"
    guards = [
        f"r.id IN (SELECT id FROM {STAGE_TABLE})",  # the id index: never a table scan
        "json_extract(r.doc, :pending) IS NULL",
        "json_extract(r.doc, :failed) IS NULL",
        "coalesce(json_extract(r.types, :path), 'vector') = 'vector'",
    ]
    for i in range(n_sources):
        expected = staged.format(f"json_extract(s.vals, '$[{i}]')")
        guards.append(f"{text_sql(f'src{i}', 'r.')} IS {expected}")
    entry = staged.format("json(s.entry)")
    return (
        f"UPDATE {quote_identifier(table)} AS r SET "
        "data = CASE WHEN json_extract(r.types, :path) IS NULL "
        f"THEN json_insert(r.data, '$.fields[#]', {entry}) "
        "ELSE json_set(r.data, '$.fields[' || (SELECT key FROM json_each(r.data, '$.fields') "
        f"WHERE json_extract(value, '$.name') = :name) || ']', {entry}) END, "
        "doc = json_set(r.doc, :path, json('{}')), "
        "types = json_set(r.types, :path, 'vector'), "
        f"{quote_identifier(column)} = {staged.format('s.blob')} "
        f"WHERE {' AND '.join(guards)} "
        "RETURNING rowid, id"
    )
