"""The SQLite backend (``sqlite:///path.db``): one file, records as JSON, vectors in sqlite-vec.

Every filter, sort and page runs inside SQLite (see :mod:`..sql.compiler`); vector search runs in
sqlite-vec with the filter applied inside the KNN scan (see :mod:`.knn`); ``TEXT`` fields are
indexed in an FTS5 table ranked with BM25 (see :mod:`.fts`). A batch write is one
``BEGIN IMMEDIATE`` transaction, so it is all-or-nothing even if the process is killed, and two
processes writing the same file queue on SQLite's lock (WAL mode, busy timeout: 60 s, or the
``busy_timeout`` option in seconds) instead of losing updates; a writer still locked out when
the timeout ends gets :class:`~dataknobs_data.errors.StoreBusyError`, with nothing written.
The vector schema is stored in the file and re-read inside each write transaction, so a racing
writer in another process is seen before anything is written.

What is stored where (collection ``c``, see :mod:`.ddl`): records in table ``"c"``, vectors in
one sqlite-vec table ``"c__vec<n>"`` per field, full text in ``"c__fts"``; the ``dk_meta`` table
holds the vector schema (``vector:<field>``) and the collection's settings (``setting:<key>``,
read by every process that opens the file). For :mod:`dataknobs_data.vector.sync`: records with
a pending-embedding mark are found through the partial index ``"c__pending"``
(:meth:`SQLiteBackend.prepare_marks`); :meth:`SQLiteBackend.write_lock` holds the file's write
lock across several calls for a compare-and-set; claims on pending records are kept in the
process (the contract's default), as one process at a time writes an embedded file in practice.

Threads: one connection opened with ``check_same_thread=False`` and guarded by a re-entrant
lock. The async shell (:class:`~dataknobs_data.database.AsyncDatabase`) offloads every call to
a worker thread (``asyncio.to_thread``); the lock serialises those calls.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from types import MappingProxyType, ModuleType
from typing import Any

import numpy as np

from ...capabilities import CORE_FEATURES, Capabilities, Feature
from ...contract import (
    Backend,
    EngineSeam,
    SyncRow,
    VectorReplacement,
    VectorSearchRequest,
    WriteMode,
)
from ...errors import (
    BackendError,
    DuplicateRecordError,
    QueryError,
    SchemaError,
    StoreBusyError,
    UnknownFieldError,
)
from ...marks import FAILED_FIELD, PENDING_FIELD
from ...query import Filter, Query
from ...records import Record
from ...schema import (
    DEFAULT_FIELD_SETTING,
    needs_default,
    plan_vector_schema,
    resolve_vector_query,
)
from ...text import TextSearchRequest, TextSearchResult
from ...vector.operations import exact_distances, scores_from_distances
from ...vector.types import VectorConfig, VectorSearchResult
from ..paging import pages_by_id
from ..rowcodec import (
    F32,
    RowParts,
    decode_rows,
    decode_vector,
    encode_record,
    sync_rows,
    vector_entry,
)
from ..sql.compiler import check_parameters
from ..sql.identifiers import quote_identifier
from ..sql.settings import SETTING_PREFIX, check_prefix, check_setting, setting_key, setting_name
from ..sql.sqlite import compile_filter, compile_order, json_path
from ..sql.tree import Compiled
from .connect import BUSY_TIMEOUT, connect, is_busy
from .ddl import (
    META_TABLE,
    VectorTable,
    add_vector_column_sql,
    create_meta_sql,
    create_pending_index_sql,
    create_records_sql,
    create_vec_sql,
    pending_ids_sql,
    validate_collection,
    vector_meta_key,
)
from .fts import (
    backfill_fts_sql,
    create_fts_sql,
    field_type_sql,
    fts_range,
    fts_rowid,
    fts_table,
    match_expression,
    text_search_sql,
)
from .knn import Plan, find_candidates
from .syncrows import STAGE_TABLE, create_stage_sql, replace_vector_sql, sync_rows_sql

__all__ = ["SQLiteBackend"]

#: parameters a statement binds besides its filter (limit/offset, sort paths, text search)
_OWN_PARAMETERS = 64
_SQLITE_DEFAULT_VARIABLES = 32_766
#: SQLite's default before 3.32; no build takes fewer
_SQLITE_MIN_VARIABLES = 999 - _OWN_PARAMETERS


def _variable_limit(conn: Any) -> int:
    """The connection's ``SQLITE_LIMIT_VARIABLE_NUMBER``: from ``getlimit`` where the driver
    has it, else from SQLite's own refusal of an out-of-range ``?NNN`` (sqlean has no
    ``getlimit``; its message names the range), else SQLite's default."""
    getlimit = getattr(conn, "getlimit", None)
    if getlimit is not None:
        try:
            return int(getlimit(9))  # SQLITE_LIMIT_VARIABLE_NUMBER
        except Exception:
            pass
    try:
        conn.execute("SELECT ?2147483647")
    except Exception as exc:
        found = re.search(r"between \?1 and \?(\d+)", str(exc))
        if found:
            return int(found.group(1))
    return _SQLITE_DEFAULT_VARIABLES


_CHUNK = 500  # ids per IN (...) list, well under SQLite's variable limit
_POINT_LOOKUPS = 256  # above this many rows, one scan of a vec0 table is cheaper
_FEATURES = CORE_FEATURES | {Feature.FULL_TEXT}
_NOTES = {
    "vector_search": "exact: sqlite-vec vec0 KNN (cosine, l2, l1) with the filter inside the "
    "scan; dot product scored exactly in numpy over the filtered rows",
    "full_text": "FTS5 (unicode61 tokenizer) over top-level TEXT fields, BM25 ranking; the "
    "query is plain words, any of which may match",
}


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(n: int) -> str:
    return ",".join("?" * n)


class SQLiteBackend(Backend):
    """Records of one collection in a SQLite file (or ``:memory:``)."""

    def __init__(
        self,
        path: str,
        *,
        collection: str = "records",
        driver: ModuleType | None = None,
        busy_timeout: float = BUSY_TIMEOUT,
    ) -> None:
        self._path = path
        self._variables: int | None = None  # the bound-parameter limit, probed on first need
        self._collection = validate_collection(collection)
        self._table = quote_identifier(self._collection)
        self._fts = quote_identifier(fts_table(self._collection))
        self._lock = threading.RLock()
        #: levels of the open transaction (0: none); only the thread holding _lock changes it
        self._depth = 0
        self._busy_timeout = busy_timeout
        self._conn, module = connect(path, driver, busy_timeout=busy_timeout)
        self._error: type[Exception] = module.Error
        self._operational: type[Exception] = module.OperationalError
        self._schema: dict[str, VectorTable] = {}
        self._schema_version: int | None = None
        with self._write():
            self._conn.execute(create_meta_sql())
            self._conn.execute(create_records_sql(self._collection))
            self._ensure_fts()
            self._refresh_schema()
        caps_features = _FEATURES | ({Feature.PERSISTENT} if path != ":memory:" else set())
        self._caps = Capabilities(
            backend="sqlite",
            features=frozenset(caps_features),
            # sqlite-vec's vec0 refuses wider columns ("Dimension on vector column too large,
            # provided 9000, maximum 8192"; SQLITE_VEC_VEC0_MAX_DIMENSIONS)
            max_dimensions=8192,
            notes=dict(_NOTES),
        )

    # -- transactions ----------------------------------------------------------------------
    @contextmanager
    def _transaction(self, begin: str) -> Iterator[None]:
        """One transaction (``begin`` is ``BEGIN`` or ``BEGIN IMMEDIATE``), re-entrant for the
        thread holding it (see :meth:`write_lock`).

        The outermost level begins, commits, or on any exception rolls everything back. A
        level opened inside it joins that transaction: a read just runs in it; a write runs in
        a ``SAVEPOINT``, so a write that fails inside a held lock leaves no trace of itself
        (the standard for every write) while the caller, if it catches the error, still holds
        the lock with its own earlier changes; an exception leaving the outermost level still
        rolls back all of them. ``self._lock`` (re-entrant) is held throughout, so only the
        owning thread can be at depth > 0.
        """
        with self._lock:
            if self._depth:
                with self._joined(begin != "BEGIN"):
                    yield
                return
            try:
                self._conn.execute(begin)
            except self._error as exc:
                raise self._translate(exc, "cannot begin a transaction: ") from exc
            self._depth = 1
            try:
                yield
                self._conn.execute("COMMIT")
            except BaseException as exc:
                with suppress(self._error):
                    self._conn.execute("ROLLBACK")
                # A rolled-back batch may have added vector fields to the cached schema.
                self._schema_version = None
                if isinstance(exc, self._error):
                    raise self._translate(exc) from exc
                raise
            finally:
                self._depth = 0

    @contextmanager
    def _joined(self, writes: bool) -> Iterator[None]:
        """A level inside the held transaction: a savepoint around writes, nothing for reads."""
        savepoint = f"dk_level{self._depth}"
        if writes:
            try:
                self._conn.execute(f"SAVEPOINT {savepoint}")
            except self._error as exc:
                raise self._translate(exc, "cannot begin a savepoint: ") from exc
        self._depth += 1
        try:
            yield
            if writes:
                self._conn.execute(f"RELEASE {savepoint}")
        except BaseException as exc:
            if writes:
                with suppress(self._error):
                    self._conn.execute(f"ROLLBACK TO {savepoint}")
                    self._conn.execute(f"RELEASE {savepoint}")
                self._schema_version = None
            if isinstance(exc, self._error):
                raise self._translate(exc) from exc
            raise
        finally:
            self._depth -= 1

    def write_lock(self) -> AbstractContextManager[None]:
        """Hold the file's writer lock for a read-check-write step (compare-and-set).

        A ``BEGIN IMMEDIATE`` transaction: SQLite gives it the file's one write lock at once,
        so another connection's writer (another database object, another process) waits on its
        busy timeout until the block ends, and this object's own lock keeps its other threads
        out. Calls this thread makes inside the block (``get``, ``put``, ``search``, ...) join
        the transaction (see :meth:`_transaction`), so they read what the block wrote. The
        block commits when it ends and rolls back entirely if an exception leaves it. Nested
        ``write_lock()`` blocks join the outer one (a savepoint each). Readers on other
        connections are never blocked (WAL); they see the state before the block until it
        commits.
        """
        return self._write()

    def _translate(self, exc: Exception, doing: str = "") -> BackendError:
        """The package's error for a driver error: :class:`StoreBusyError` when another
        connection held the file's lock past the busy timeout (SQLITE_BUSY / SQLITE_LOCKED)."""
        if is_busy(exc):
            return StoreBusyError(
                f"sqlite: {self._path!r} stayed locked by another writer for the whole busy "
                f"timeout ({self._busy_timeout:g} s); nothing was written, retry later ({exc})"
            )
        return BackendError(f"sqlite: {doing}{exc}")

    def _write(self) -> Any:
        return self._transaction("BEGIN IMMEDIATE")

    def _read(self) -> Any:
        return self._transaction("BEGIN")

    def _where(self, condition: Filter | None) -> Compiled:
        """The compiled filter, or :class:`FilterTooLargeError` past this SQLite's limit on
        bound parameters (250,000 in many builds, 32,766 by SQLite's default; a few are kept
        for the statement's own)."""
        compiled = compile_filter(condition)
        if len(compiled.params) <= _SQLITE_MIN_VARIABLES:  # every build takes this many
            return compiled
        if self._variables is None:
            self._variables = _variable_limit(self._conn)
        return check_parameters(compiled, condition, self._variables - _OWN_PARAMETERS, "sqlite")

    def _rows(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._conn.execute(sql, params).fetchall()
        return rows

    def _returning(self, sql: str, params: Any) -> list[tuple[Any, ...]]:
        """The rows of a write ``... RETURNING``; its cursor is closed even if fetching fails
        (a write statement left unfinished would keep the transaction from ending)."""
        cur = self._conn.execute(sql, params)
        try:
            rows: list[tuple[Any, ...]] = cur.fetchall()
            return rows
        finally:
            cur.close()

    def _ensure_fts(self) -> None:
        """Create the full-text index, filling it from stored records when the file predates
        it (inside the caller's write transaction, so concurrent openers do it once)."""
        table = fts_table(self._collection)
        found = self._rows(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        )
        if not found:
            self._conn.execute(create_fts_sql(table))
            self._conn.execute(backfill_fts_sql(self._collection, table))

    # -- schema ----------------------------------------------------------------------------
    def _refresh_schema(self) -> dict[str, VectorTable]:
        """Re-read the stored vector schema when the file's schema version moved."""
        (version,) = self._rows("PRAGMA schema_version")[0]
        if version != self._schema_version:
            rows = self._rows(
                f"SELECT name, value FROM {quote_identifier(META_TABLE)} WHERE collection = ?",
                (self._collection,),
            )
            self._schema = {
                t.field: t
                for t in (VectorTable.from_meta(k, v) for k, v in rows if VectorTable.is_key(k))
            }
            self._schema_version = version
        return self._schema

    def capabilities(self) -> Capabilities:
        return self._caps

    def vector_schema(self) -> Mapping[str, VectorConfig]:
        with self._read():
            schema = self._refresh_schema()
        return MappingProxyType({name: t.config for name, t in schema.items()})

    def declare_vector_field(self, name: str, config: VectorConfig) -> None:
        with self._write():
            existing = self._refresh_schema().get(name)
            if existing is not None:
                if existing.config != config:
                    raise SchemaError(
                        f"vector field {name!r} is stored in {self._path!r} as "
                        f"{existing.config.to_dict()}, not {config.to_dict()}"
                    )
                return
            used = self._rows(
                f"SELECT 1 FROM {self._table} WHERE json_type(types, ?) IS NOT NULL LIMIT 1",
                (json_path([name]),),
            )
            if used:
                raise SchemaError(f"field {name!r} already holds non-vector values")
            self._add_vector_field(name, config)

    def _add_vector_field(self, name: str, config: VectorConfig) -> None:
        entry = VectorTable.numbered(self._collection, name, config, len(self._schema))
        self._conn.execute(create_vec_sql(entry.table, config))
        self._conn.execute(add_vector_column_sql(self._collection, entry.column))
        self._conn.execute(
            f"INSERT INTO {quote_identifier(META_TABLE)} (collection, name, value) "
            "VALUES (?, ?, ?)",
            (self._collection, vector_meta_key(name), entry.to_json()),
        )
        self._schema[name] = entry

    # -- synchronisation support (see :mod:`dataknobs_data.vector.sync`) --------------------
    def read_setting(self, key: str) -> str | None:
        """The setting's row of ``dk_meta`` (name ``setting:<key>``), read in the file."""
        name = setting_name(key)
        with self._read():
            rows = self._rows(
                f"SELECT value FROM {quote_identifier(META_TABLE)} "
                "WHERE collection = ? AND name = ?",
                (self._collection, name),
            )
        return None if not rows else str(rows[0][0])

    def write_setting(self, key: str, value: str | None) -> None:
        """Upsert (or delete, for ``None``) the setting's row in one committed transaction,
        so every connection to the file, in any process, reads it from then on."""
        key, value = check_setting(key, value)
        name = setting_name(key)
        with self._write():
            if value is None:
                self._conn.execute(
                    f"DELETE FROM {quote_identifier(META_TABLE)} WHERE collection = ? AND name = ?",
                    (self._collection, name),
                )
            else:
                self._conn.execute(
                    f"INSERT INTO {quote_identifier(META_TABLE)} (collection, name, value) "
                    "VALUES (?, ?, ?) ON CONFLICT (collection, name) DO UPDATE SET value = "
                    "excluded.value",
                    (self._collection, name, value),
                )

    def settings(self, prefix: str) -> dict[str, str]:
        """Every setting of this collection whose key starts with ``prefix`` (compared with
        ``substr``, so ``%``/``_`` in a key are plain characters)."""
        start = SETTING_PREFIX + check_prefix(prefix)
        with self._read():
            rows = self._rows(
                f"SELECT name, value FROM {quote_identifier(META_TABLE)} "
                "WHERE collection = ? AND substr(name, 1, length(?)) = ? ORDER BY name",
                (self._collection, start, start),
            )
        return {setting_key(name): str(value) for name, value in rows}

    def prepare_marks(self) -> None:
        """Create the partial index of marked rows (``"<collection>__pending"``, see
        :func:`.ddl.create_pending_index_sql`), in a write transaction: ``IF NOT EXISTS``
        under the file's write lock makes it idempotent and safe for two processes at once.
        Claims stay the default in-process leases: one process at a time writes an embedded
        file in practice, and its vectorizer threads share them."""
        with self._write():
            self._conn.execute(create_pending_index_sql(self._collection))

    def pending_ids(self, after: str | None, limit: int) -> list[str]:
        """Marked ids after ``after`` in id order, from the partial index once
        :meth:`prepare_marks` made it (the same predicate, so the planner matches them; before
        that the same query scans the table). A JSON ``null`` under the mark field is no mark.
        """
        sql = pending_ids_sql(self._collection, after=after is not None)
        params = (limit,) if after is None else (after, limit)
        with self._read():
            return [str(r[0]) for r in self._rows(sql, params)]

    # -- writes ----------------------------------------------------------------------------
    def _rowids(self, ids: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for chunk in _chunks(ids):
            rows = self._rows(
                f"SELECT id, rowid FROM {self._table} WHERE id IN ({_marks(len(chunk))})", chunk
            )
            out.update((i, r) for i, r in rows)
        return out

    def _delete_vectors(self, rowids: Sequence[int]) -> None:
        for t in self._schema.values():
            for chunk in _chunks(rowids):
                self._conn.execute(
                    f"DELETE FROM {quote_identifier(t.table)} "
                    f"WHERE rowid IN ({_marks(len(chunk))})",
                    chunk,
                )

    def _delete_texts(self, rowids: Sequence[int]) -> None:
        # One DELETE per record: skipped when the index holds no text at all (a collection
        # without TEXT fields), where re-writing records would otherwise pay for nothing.
        if rowids and self._rows(f"SELECT 1 FROM {self._fts} LIMIT 1"):
            self._conn.executemany(
                f"DELETE FROM {self._fts} WHERE rowid BETWEEN ? AND ?",
                [fts_range(r) for r in rowids],
            )

    def put(self, records: Sequence[Record], mode: WriteMode) -> list[bool]:
        with self._write():
            schema = {n: t.config for n, t in self._refresh_schema().items()}
            new_fields = plan_vector_schema(schema, records)
            known = self._rowids([r.id for r in records])
            existed = [r.id in known for r in records]
            if mode == "create":
                for rec, was in zip(records, existed, strict=True):
                    if was:
                        raise DuplicateRecordError(rec.id)
            for name, cfg in new_fields.items():
                self._add_vector_field(name, cfg)
            todo = [r for r, was in zip(records, existed, strict=True) if was or mode != "update"]
            parts = [encode_record(r) for r in todo]
            self._write_rows(parts, known)
            return existed

    def _write_rows(self, parts: Sequence[RowParts], known: Mapping[str, int]) -> None:
        vec_cols = "".join(f", {quote_identifier(t.column)}" for t in self._schema.values())
        updates = [p for p in parts if p.id in known]
        inserts = [p for p in parts if p.id not in known]
        if updates:
            sets = "".join(f", {quote_identifier(t.column)} = ?" for t in self._schema.values())
            self._conn.executemany(
                f"UPDATE {self._table} SET doc = ?, types = ?, data = ?{sets} WHERE rowid = ?",
                [(p.doc, p.types, p.data, *self._blobs(p), known[p.id]) for p in updates],
            )
            self._delete_vectors([known[p.id] for p in updates])
            self._delete_texts([known[p.id] for p in updates])
        (top,) = self._rows(f"SELECT COALESCE(MAX(rowid), 0) FROM {self._table}")[0]
        rowids = {p.id: known[p.id] for p in updates}
        rowids.update((p.id, top + 1 + i) for i, p in enumerate(inserts))
        if inserts:
            marks = _marks(5 + len(self._schema))
            self._conn.executemany(
                f"INSERT INTO {self._table} (rowid, id, doc, types, data{vec_cols}) "
                f"VALUES ({marks})",
                [(rowids[p.id], p.id, p.doc, p.types, p.data, *self._blobs(p)) for p in inserts],
            )
        for name, t in self._schema.items():
            rows = [(rowids[p.id], p.vectors[name]) for p in parts if name in p.vectors]
            if rows:
                self._conn.executemany(
                    f"INSERT INTO {quote_identifier(t.table)} (rowid, embedding) VALUES (?, ?)",
                    rows,
                )
        texts = [
            (fts_rowid(rowids[p.id], position), name, text)
            for p in parts
            for position, name, text in p.texts
        ]
        if texts:
            self._conn.executemany(
                f"INSERT INTO {self._fts} (rowid, field, body) VALUES (?, ?, ?)", texts
            )

    def _blobs(self, parts: RowParts) -> list[bytes | None]:
        return [parts.vectors.get(name) for name in self._schema]

    def remove(self, ids: Sequence[str]) -> list[bool]:
        with self._write():
            self._refresh_schema()
            known = self._rowids(ids)
            rowids = list(known.values())
            self._delete_vectors(rowids)
            self._delete_texts(rowids)
            for chunk in _chunks(rowids):
                self._conn.execute(
                    f"DELETE FROM {self._table} WHERE rowid IN ({_marks(len(chunk))})", chunk
                )
            return [i in known for i in ids]

    def clear(self) -> int:
        with self._write():
            self._refresh_schema()
            (n,) = self._rows(f"SELECT count(*) FROM {self._table}")[0]
            self._conn.execute(f"DELETE FROM {self._table}")
            self._conn.execute(f"DELETE FROM {self._fts}")
            for t in self._schema.values():
                self._conn.execute(f"DELETE FROM {quote_identifier(t.table)}")
            return int(n)

    # -- synchronisation: provenance scan and in-place vectors ------------------------------
    def scan_sync_rows(
        self,
        condition: Filter | None,
        sources: Sequence[str],
        vectors: Sequence[str],
        batch_size: int,
    ) -> Iterator[list[SyncRow]]:
        """Pages of :class:`SyncRow` extracted in SQL (see :mod:`.syncrows`): no record is
        built and no vector read. Keyset pages by id, each its own read transaction."""
        where = self._where(condition)
        after: str | None = None
        while True:
            sql, params = sync_rows_sql(
                self._collection, where.sql, sources, vectors, after is not None
            )
            bound: dict[str, Any] = {**where.params, **params, "dk_limit": batch_size}
            if after is not None:
                bound["dk_after"] = after
            with self._read():
                schema = self._refresh_schema()
                rows = self._rows(sql, bound)
            dims = [schema[v].config.dimensions if v in schema else 0 for v in vectors]
            yield sync_rows(rows, len(sources), vectors, dims, self._data_of)
            if len(rows) < batch_size:
                return
            after = rows[-1][0]

    def _data_of(self, ids: Sequence[str]) -> dict[str, str]:
        with self._read():
            rows = self._rows(
                f"SELECT id, data FROM {self._table} WHERE id IN ({_marks(len(ids))})", ids
            )
        return {str(i): str(d) for i, d in rows}

    def replace_vectors(
        self, field: str, sources: Sequence[str], items: Sequence[VectorReplacement]
    ) -> list[bool]:
        """The rows staged in a temporary table, one guarded ``UPDATE ... FROM``
        (:func:`.syncrows.replace_vector_sql`) and the field's ``vec0`` rows of the written
        records, in one transaction."""
        if not items:
            return []
        vectors = [i.vector if i.vector.name == field else i.vector.with_name(field) for i in items]
        with self._write():
            schema = self._refresh_schema()
            table = schema.get(field)
            configs = {n: t.config for n, t in schema.items()}
            probe = [
                Record.trusted(i.id, {field: v}, {}) for i, v in zip(items, vectors, strict=True)
            ]
            if table is None or plan_vector_schema(configs, probe):
                return super().replace_vectors(field, sources, items)  # adds the field
            staged: dict[str, tuple[str, str, bytes, str]] = {}
            for item, vec in zip(items, vectors, strict=True):
                if item.id not in staged and len(item.texts) == len(sources):
                    vals = json.dumps(list(item.texts), ensure_ascii=False)
                    staged[item.id] = (item.id, vector_entry(vec), vec.value.tobytes(), vals)
            self._conn.execute(create_stage_sql())
            self._conn.execute(f"DELETE FROM {STAGE_TABLE}")
            self._conn.executemany(
                f"INSERT INTO {STAGE_TABLE} VALUES (?, ?, ?, ?)", list(staged.values())
            )
            params: dict[str, Any] = {
                "name": field,
                "path": json_path([field]),
                "pending": json_path([PENDING_FIELD]),
                "failed": json_path([FAILED_FIELD]),
            }
            params.update((f"src{k}", json_path([s])) for k, s in enumerate(sources))
            column = quote_identifier(table.column)
            had = {  # rows whose vec0 row must go (a vec0 delete of absent rows costs a scan)
                rowid
                for (rowid,) in self._rows(
                    f"SELECT rowid FROM {self._table} WHERE id IN (SELECT id FROM "
                    f"{STAGE_TABLE}) AND {column} IS NOT NULL"
                )
            }
            sql = replace_vector_sql(self._collection, table.column, len(sources))
            written = {rid: rowid for rowid, rid in self._returning(sql, params)}
            if written:
                vec_table = quote_identifier(table.table)
                rowids = [r for r in written.values() if r in had]
                for chunk in _chunks(rowids):
                    self._conn.execute(
                        f"DELETE FROM {vec_table} WHERE rowid IN ({_marks(len(chunk))})", chunk
                    )
                self._conn.executemany(
                    f"INSERT INTO {vec_table} (rowid, embedding) VALUES (?, ?)",
                    [(rowid, staged[rid][2]) for rid, rowid in written.items()],
                )
            out: list[bool] = []
            for item in items:
                out.append(written.pop(item.id, None) is not None)
            return out

    # -- reads -----------------------------------------------------------------------------
    def _columns(self) -> str:
        """``rowid, id, data`` and each vector field's copy, in schema order."""
        return "rowid, id, data" + "".join(
            f", {quote_identifier(t.column)}" for t in self._schema.values()
        )

    def _build(
        self, rows: Sequence[tuple[Any, ...]], fields: tuple[str, ...] | None = None
    ) -> list[Record]:
        """Records from rows selected with :meth:`_columns`."""
        return decode_rows(rows, 1, list(self._schema), decode_vector, fields)

    def _fetch(self, ids: Sequence[str], fields: tuple[str, ...] | None = None) -> list[Record]:
        rows: list[tuple[Any, ...]] = []
        for chunk in _chunks(ids):
            rows += self._rows(
                f"SELECT {self._columns()} FROM {self._table} WHERE id IN ({_marks(len(chunk))})",
                chunk,
            )
        return self._build(rows, fields)

    def get(self, ids: Sequence[str]) -> list[Record | None]:
        with self._read():
            self._refresh_schema()
            by_id = {r.id: r for r in self._fetch(list(dict.fromkeys(ids)))}
        return [
            None if i not in by_id else (by_id[i] if n == 0 else by_id[i].copy())
            for n, i in _first_seen(ids)
        ]

    def contains(self, ids: Sequence[str]) -> list[bool]:
        with self._read():
            known = self._rowids(ids)
        return [i in known for i in ids]

    def _select(self, query: Query, columns: str) -> tuple[str, dict[str, Any]]:
        where = self._where(query.condition)
        order = compile_order(query.sort_by)
        sql = (
            f"SELECT {columns} FROM {self._table} WHERE {where.sql} ORDER BY {order.sql} "
            "LIMIT :limit OFFSET :offset"
        )
        params = {
            **where.params,
            **order.params,
            "limit": -1 if query.take is None else query.take,
            "offset": query.skip,
        }
        return sql, params

    def search(self, query: Query) -> list[Record]:
        with self._read():
            self._refresh_schema()
            sql, params = self._select(query, self._columns())
            return self._build(self._rows(sql, params), query.projection)

    def count(self, condition: Filter | None) -> int:
        where = self._where(condition)
        with self._read():
            (n,) = self._rows(
                f"SELECT count(*) FROM {self._table} WHERE {where.sql}", where.params
            )[0]
        return int(n)

    def scan(self, query: Query, batch_size: int) -> Iterator[list[Record]]:
        """Pages of the query's results. The matching ids are fixed when the scan starts;
        records deleted meanwhile are skipped and updated ones appear in their latest state."""
        with self._read():
            sql, params = self._select(query, "id")
            ids = [r[0] for r in self._rows(sql, params)]
        return self._pages(ids, query.projection, batch_size)

    def _pages(
        self, ids: list[str], fields: tuple[str, ...] | None, batch_size: int
    ) -> Iterator[list[Record]]:
        def fetch(chunk: list[str]) -> dict[str, Record]:
            with self._read():
                self._refresh_schema()
                return {r.id: r for r in self._fetch(chunk, fields)}

        return pages_by_id(ids, batch_size, fetch)

    # -- vector search ---------------------------------------------------------------------
    def vector_search(self, request: VectorSearchRequest) -> list[list[VectorSearchResult]]:
        with self._read():
            schema = self._refresh_schema()
            configs = {n: t.config for n, t in schema.items()}
            query = request.single()
            default = None
            if needs_default(configs, query):  # in this read: a switch is seen at once
                rows = self._rows(
                    f"SELECT value FROM {quote_identifier(META_TABLE)} "
                    "WHERE collection = ? AND name = ?",
                    (self._collection, setting_name(DEFAULT_FIELD_SETTING)),
                )
                default = str(rows[0][0]) if rows else None
            field, cfg, metric = resolve_vector_query(
                configs, query, model=request.model, default=default
            )
            where = None if request.filter is None else self._where(request.filter)
            plan = Plan(
                self._collection,
                schema[field].table,
                field,
                cfg.metric,
                metric,
                None if where is None else where.sql,
                {} if where is None else where.params,
            )
            return [self._knn_one(plan, q, request) for q in request.vectors]

    def _knn_one(
        self, plan: Plan, query: F32, request: VectorSearchRequest
    ) -> list[VectorSearchResult]:
        """Candidates from the engine, re-scored in float64, ordered by (distance, id)."""
        candidates = find_candidates(self._rows, plan, query, request.k).rowids
        rows = []
        for chunk in _chunks(candidates):
            rows += self._rows(
                f"SELECT {self._columns()} FROM {self._table} "
                f"WHERE rowid IN ({_marks(len(chunk))})",
                chunk,
            )
        at = 3 + list(self._schema).index(plan.field)
        rows = [r for r in rows if r[at] is not None]
        if not rows:
            return []
        matrix = np.frombuffer(b"".join(r[at] for r in rows), dtype=np.float32)
        distances = exact_distances(matrix.reshape(len(rows), -1), query, plan.metric)
        order = sorted(range(len(rows)), key=lambda i: (float(distances[i]), rows[i][1]))
        order = order[: request.k]
        chosen = distances[order]
        scores = scores_from_distances(chosen, plan.metric).tolist()
        threshold = request.score_threshold
        keep = [j for j, score in enumerate(scores) if threshold is None or score >= threshold]
        records = self._build([rows[order[j]] for j in keep])
        return [
            VectorSearchResult(rec, scores[j], float(chosen[j]), rank)
            for rank, (j, rec) in enumerate(zip(keep, records, strict=True), start=1)
        ]

    # -- full-text search ------------------------------------------------------------------
    def text_search(self, request: TextSearchRequest) -> list[TextSearchResult]:
        """BM25 over the FTS5 index, the filter applied in the same statement."""
        where = self._where(request.filter)
        names = request.fields
        sql = text_search_sql(
            self._collection,
            fts_table(self._collection),
            None if names is None else len(names),
            where.sql,
        )
        params: dict[str, Any] = {
            **where.params,
            "q": match_expression(request.words),
            "k": request.k,
        }
        params.update((f"t{i}", name) for i, name in enumerate(names or ()))
        with self._read():
            self._refresh_schema()
            for name in names or ():
                self._check_text_field(name)
            hits = self._rows(sql, params)
            rows: list[tuple[Any, ...]] = []
            for chunk in _chunks([rec for rec, _ in hits]):
                rows += self._rows(
                    f"SELECT {self._columns()} FROM {self._table} "
                    f"WHERE rowid IN ({_marks(len(chunk))})",
                    chunk,
                )
            by_rowid = dict(zip((r[0] for r in rows), self._build(rows), strict=True))
        return [
            TextSearchResult(by_rowid[rec], float(score), rank)
            for rank, (rec, score) in enumerate(hits, start=1)
        ]

    def _check_text_field(self, name: str) -> None:
        """``name`` is a TEXT field of some stored record, else the typed error saying why not."""
        if self._rows(field_type_sql(self._collection, True), {"name": name}):
            return
        other = self._rows(field_type_sql(self._collection, False), {"name": name})
        if not other:
            raise UnknownFieldError(name, "no stored record has this field to search")
        raise QueryError(
            f"text_search field {name!r} holds {other[0][0]} values, not text: only TEXT fields "
            "are indexed for full text (store prose as FieldType.TEXT)"
        )

    def raw_path(self) -> str:
        """The database file, for benchmarks that issue raw SQL against the same file."""
        return self._path

    def raw_knn_target(self, field: str) -> tuple[str, str]:
        """``(file path, vec0 table)`` of a vector field, for benchmarks that issue raw
        sqlite-vec SQL against the same file."""
        with self._read():
            return self._path, self._refresh_schema()[field].table

    def engine_seams(self) -> list[EngineSeam]:
        """The connection (every statement, commit and rollback goes through it)."""
        return [EngineSeam("sqlite connection", self, "_conn", self._operational)]

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.close()
            except self._error as exc:
                raise BackendError(f"sqlite: cannot close {self._path!r}: {exc}") from exc

    def stats(self) -> dict[str, Any]:
        """Row count and file path (for benchmarks and debugging)."""
        with self._read():
            (n,) = self._rows(f"SELECT count(*) FROM {self._table}")[0]
        return {"records": int(n), "path": self._path, "collection": self._collection}

    def __repr__(self) -> str:
        return f"SQLiteBackend({self._path!r}, collection={self._collection!r})"


def _first_seen(ids: Sequence[str]) -> list[tuple[int, str]]:
    """Each id with how many times it appeared before (repeats get their own copies)."""
    seen: dict[str, int] = {}
    out = []
    for i in ids:
        out.append((seen.get(i, 0), i))
        seen[i] = seen.get(i, 0) + 1
    return out
