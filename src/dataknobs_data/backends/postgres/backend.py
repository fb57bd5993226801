"""The PostgreSQL + pgvector backend (``postgresql://user@host:port/db?collection=name``).

Records are rows of one table per collection (see :mod:`.ddl`): the SQLite backend's JSON
encoding in ``jsonb`` columns, and vectors in ``vector(d)`` columns. Filters, sorts and pages are
compiled to SQL (:mod:`..sql.compiler` with the PostgreSQL dialect); vector search runs in
pgvector with the filter in the same query (:mod:`.knn`). Every write is one transaction (all
or nothing), serialised per collection by a transaction-scoped advisory lock under which the
stored vector schema is re-read, so two writers (threads or processes) never add conflicting
vector columns (a writer waits for the lock as long as the server lets it: with a
``lock_timeout`` set, e.g. ``?options=-c%20lock_timeout%3D5s`` in the URL, one that waits
longer gets :class:`~dataknobs_data.errors.StoreBusyError`). Large batches of new records go
in through binary ``COPY`` in that same transaction (:mod:`.bulk`).

What is stored where (collection ``c`` in schema ``s``, see :mod:`.ddl`): records in table
``s.c``; the vector schema, index records and the collection's settings (``setting:<key>``,
read by every process) in ``s.dk_meta``. For :mod:`dataknobs_data.vector.sync`: a partial
index of the records holding a pending-embedding mark, and workers' leases on them in
``s.dk_claims`` (both made by :meth:`PostgresBackend.prepare_marks`);
:meth:`PostgresBackend.write_lock` holds the collection's writer lock across several calls
for a compare-and-set.

Threads and async: the backend holds a psycopg 3 connection pool for blocking calls, and the
async shell awaits the reads and vector search natively on an ``AsyncConnectionPool``
(:mod:`.aio`). Both run the same reads, written once as step generators (:mod:`.flows`): this
module is their blocking driver, :mod:`.aio` their asyncio driver. Writes and DDL run in a
worker thread on the blocking pool.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from functools import partial
from types import MappingProxyType
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql

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
    DataknobsDataError,
    DuplicateRecordError,
    SchemaError,
    StoreBusyError,
    ValidationError,
)
from ...ints import checked_int
from ...query import Filter, Query
from ...records import Record
from ...schema import (
    DEFAULT_FIELD_SETTING,
    plan_vector_schema,
    resolve_vector_query,
)
from ...vector.operations import kept_scores, rank_exact, scores_from_distances
from ...vector.types import DistanceMetric, VectorConfig, VectorSearchResult
from ..paging import pages_by_id
from ..rowcodec import decode_rows, sync_rows, vector_entry
from ..sql.compiler import check_parameters
from ..sql.postgres import compile_filter, compile_order
from ..sql.settings import SETTING_PREFIX, check_prefix, check_setting, setting_key, setting_name
from ..sql.tree import Compiled
from . import flows
from .aio import AsyncPostgres
from .bulk import check_ranges, write_rows
from .connect import PgTarget, ServerInfo, open_pool
from .ddl import (
    CLAIMS_TABLE,
    INDEX_KEY,
    LAYOUT,
    META_TABLE,
    VECTOR_KEY,
    VECTOR_TYPES,
    IndexSpec,
    VectorColumn,
    claim_sql,
    create_claims_sql,
    create_meta_sql,
    create_pending_index_sql,
    create_records_sql,
    pending_ids_sql,
    pending_index_name,
    release_sql,
    vector_bytes,
)
from .ddl import (
    validate_collection as validate_name,
)
from .flows import Flow, Run, SessionSettings
from .indexes import IndexManagement
from .knn import Plan
from .privileges import (
    CLAIMS_PRIVILEGES,
    META_PRIVILEGES,
    RECORD_PRIVILEGES,
    ensure_index,
    ensure_schema,
    ensure_table,
    permission_error,
)
from .syncrows import copy_replacements, replace_query, sync_rows_query

__all__ = ["PostgresBackend"]

#: PostgreSQL's protocol carries at most 65,535 parameters; some are the statement's own
_MAX_FILTER_PARAMETERS = 65_535 - 64


def _where(condition: Filter | None) -> Compiled:
    """The compiled filter, or :class:`FilterTooLargeError` past the protocol's parameters."""
    compiled = compile_filter(condition)
    return check_parameters(compiled, condition, _MAX_FILTER_PARAMETERS, "postgres")


def _frozen_array(value: Any) -> npt.NDArray[np.float32]:
    """A fetched vector as a read-only float32 array (records share it, never write to it)."""
    arr = as_array(value)
    arr.flags.writeable = False
    return arr


T = TypeVar("T")

_FEATURES = CORE_FEATURES | {Feature.PERSISTENT}


def as_array(value: Any) -> npt.NDArray[np.float32]:
    """A float32 array from what the connection's ``vector`` loader returns (our binary loader
    gives fresh arrays; pgvector's text loader a ``Vector``)."""
    if type(value) is np.ndarray and value.dtype == np.float32:
        return value
    out = value.to_numpy() if hasattr(value, "to_numpy") else value
    return np.array(out, dtype=np.float32)


#: PostgreSQL's detail of a primary-key violation, e.g. ``Key (id)=(r1) already exists.``
_KEY_DETAIL = re.compile(r"Key \(id\)=\((.*)\) already exists\.?$", re.DOTALL)


#: taken by every DDL that creates shared objects, so two processes never race to create one
_SETUP_LOCK = "SELECT pg_advisory_xact_lock(hashtext('dataknobs_data:setup'))"


#: claim statements one claim_pending runs at most (each further one follows rows lost to
#: concurrent claimers, which are then claimed: a bound for safety, not expected to be met)
_CLAIM_ROUNDS = 16
#: a row when the schema (the parameter) has a claims table
_CLAIMS_FOUND = sql.SQL(
    "SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n "
    "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = {}"
).format(sql.Literal(CLAIMS_TABLE))


def _lock_key(schema: str, collection: str) -> str:
    return f"dataknobs_data:{schema}.{collection}"


class PostgresBackend(IndexManagement, Backend):
    """Records of one collection in a PostgreSQL table with pgvector columns."""

    def __init__(
        self,
        conninfo: str | PgTarget,
        *,
        collection: str = "records",
        schema: str = "public",
        pool_size: int = 4,
        exact: bool = False,
        ef_search: int = 40,
        probes: int | None = None,
        temporary: bool = False,
        vector_storage: str = "vector",
    ) -> None:
        """Open (creating if needed) ``collection`` in ``schema``.

        ``exact=True`` never uses an ANN index for search. ``ef_search`` (HNSW, a floor: at
        least twice the rows a search fetches) and ``probes`` (IVFFlat) trade recall for speed.
        ``temporary=True`` drops the collection on :meth:`close` (scratch collections for
        tests and benchmarks). ``vector_storage="halfvec"`` stores vector fields created from
        now on as float16 ``halfvec(d)`` (half the space and I/O, indexable up to 4000
        dimensions; values come back rounded to float16 and must lie within +-65504); the
        default ``vector`` keeps float32 exactly, and wider than 2000 dimensions is indexed
        through a ``halfvec`` cast.
        """
        if vector_storage not in VECTOR_TYPES:
            raise ValidationError(
                f"vector_storage must be one of {VECTOR_TYPES}, got {vector_storage!r}"
            )
        self._vector_type = vector_storage
        self._collection = validate_name(collection)
        self._schema_name = schema if schema == "public" else validate_name(schema)
        self._table = sql.Identifier(self._schema_name, self._collection)
        self._meta = sql.Identifier(self._schema_name, META_TABLE)
        self._exact = bool(exact)
        self._temporary = bool(temporary)
        self._ef_search = checked_int("ef_search", ef_search, 1, 1000)
        self._probes = None if probes is None else checked_int("probes", probes, 1, 32768)
        self._default_seen: tuple[bool, str | None] = (False, None)
        self._columns: dict[str, VectorColumn] = {}
        self._indexes: dict[str, IndexSpec] = {}
        self._stale = True
        #: per thread: the cursor of the transaction a write_lock() block holds (``cur``)
        self._held = threading.local()
        #: whether prepare_marks() ran on this object (claim_pending runs it first otherwise)
        self._marks_ready = False
        #: pgvector session settings each blocking pooled connection has
        self._settings = SessionSettings()
        max_size = checked_int("pool_size", pool_size, 1, 64)
        self._pool, self._info = open_pool(conninfo, max_size=max_size)
        #: coroutine versions of the reads, awaited by AsyncDatabase (see :mod:`.aio`)
        self.async_ops = AsyncPostgres(self, conninfo, max_size)
        try:
            self._setup()
        except BaseException:
            self._pool.close()
            raise
        metrics = set(DistanceMetric) - (set() if self._info.has_l1 else {DistanceMetric.L1})
        self._caps = Capabilities(
            backend="postgres",
            metrics=frozenset(metrics),
            features=_FEATURES,
            index_types=frozenset({"flat", "hnsw", "ivfflat"}),
            max_dimensions=16000,
            notes={
                "vector_search": "exact scan by default; with an index (create_vector_index) "
                "HNSW/IVFFlat with iterative scans, falling back to exact when a filtered "
                "index scan finds fewer rows than asked",
                "pgvector": self._info.pgvector,
            },
        )

    @property
    def temporary(self) -> bool:
        """Whether :meth:`close` drops the collection (nothing survives a reopen)."""
        return self._temporary

    @property
    def stale(self) -> bool:
        """Whether the stored schema must be re-read before the next statement."""
        return self._stale

    def mark_stale(self) -> None:
        """Re-read the stored schema before the next statement (after a failure)."""
        self._stale = True
        self._default_seen = (False, None)

    @property
    def server(self) -> ServerInfo:
        """Server and pgvector versions found on connect."""
        return self._info

    def _setup(self) -> None:
        with self._tx() as cur:
            cur.execute(_SETUP_LOCK)
            # Look before creating: a least-privilege role may use what it cannot create.
            ensure_schema(cur, self._schema_name)
            meta_sql = create_meta_sql(self._schema_name)
            ensure_table(cur, self._schema_name, META_TABLE, meta_sql, META_PRIVILEGES)
            records_sql = create_records_sql(self._table)
            ensure_table(cur, self._schema_name, self._collection, records_sql, RECORD_PRIVILEGES)
            cur.execute(
                sql.SQL(
                    "INSERT INTO {} (collection, name, value) VALUES (%s, 'layout', %s) "
                    "ON CONFLICT DO NOTHING"
                ).format(self._meta),
                (self._collection, psycopg.types.json.Jsonb({"version": LAYOUT})),
            )
            self._load(cur)

    # -- connections and transactions --------------------------------------------------------
    @contextmanager
    def _tx(self) -> Iterator[psycopg.Cursor[Any]]:
        """A cursor in its own transaction on a pooled connection; driver errors wrapped.
        (Reads run autocommit, through :meth:`_run`: no ``BEGIN``/``COMMIT`` round trips.)

        A failure once the transaction has committed (closing the cursor, handing the
        connection back to the pool) does not fail the call: its write is confirmed, and
        reporting it as failed would invite a retry that finds it done (e.g. a duplicate).

        Inside this thread's :meth:`write_lock` block it is a savepoint of the held
        transaction instead (see :meth:`_joined`)."""
        held = self._holding()
        if held is not None:
            with self._joined(held):
                yield held
            return
        committed = False
        try:
            with self._pool.connection() as conn, conn.cursor(binary=True) as cur:
                with conn.transaction():
                    yield cur
                committed = True
        except psycopg.Error as exc:
            if committed:
                self._stale = True
                return
            raise self.translate(exc) from exc
        except BaseException:
            self._stale = True
            raise

    def _holding(self) -> psycopg.Cursor[Any] | None:
        """The cursor of the transaction this thread's :meth:`write_lock` block holds."""
        cur: psycopg.Cursor[Any] | None = getattr(self._held, "cur", None)
        return cur

    @contextmanager
    def _joined(self, cur: psycopg.Cursor[Any]) -> Iterator[None]:
        """A savepoint of the held transaction (psycopg nests ``transaction()`` so): a call
        that fails inside the block is undone alone, and the block may go on."""
        try:
            with cur.connection.transaction():
                yield
        except psycopg.Error as exc:
            self._settings.forget(cur.connection)
            raise self.translate(exc) from exc
        except BaseException:
            self._settings.forget(cur.connection)
            self._stale = True
            raise

    def write_lock(self) -> AbstractContextManager[None]:
        """Hold the collection's writer lock for a read-check-write step (compare-and-set).

        A write transaction (:meth:`_write`) holding the transaction-scoped advisory lock every
        writer of the collection takes (``put``, ``remove``, ``clear``, schema, index and
        setting changes, in any process), its cursor remembered for this thread until the
        block ends. Calls this thread makes inside the block run on that cursor: writes
        (``put``...) in a savepoint each (one that fails is undone alone), and reads (``get``,
        ``search``, ``pending_ids``...) too, in a savepoint. Reads could run on other pooled
        connections, since no other writer can change what they see while the lock is held,
        but they would miss the block's own uncommitted writes, need a second connection
        (with ``pool_size=1`` it would never come) and wait for ever behind the block's own
        table lock after a ``put`` that adds a vector field (``ALTER TABLE`` holds it to the
        end of the transaction). The block commits when it ends and rolls back if an
        exception leaves it; nested blocks join (a savepoint). Other threads and processes
        read the committed state meanwhile (MVCC; except the table while a schema change in
        the block holds its exclusive lock), and their writers wait for the advisory lock.
        The async shell's native reads run on their own pool and never join a block.
        """
        return self._hold()

    @contextmanager
    def _hold(self) -> Iterator[None]:
        if self._holding() is not None:
            with self._write():
                yield
            return
        with self._write() as cur:
            self._held.cur = cur
            try:
                yield
            except BaseException:
                self._settings.forget(cur.connection)  # the rollback undoes set_config
                raise
            finally:
                self._held.cur = None

    def translate(self, exc: psycopg.Error) -> DataknobsDataError:
        """The package's error for a driver error (the schema is re-read on the next call)."""
        self._stale = True
        if isinstance(exc, psycopg.errors.UniqueViolation):
            found = _KEY_DETAIL.match(exc.diag.message_detail or "")
            return DuplicateRecordError(
                found.group(1) if found else "?", "a record with this id already exists"
            )
        if isinstance(exc, psycopg.errors.InsufficientPrivilege):
            return permission_error(exc)
        if isinstance(exc, psycopg.errors.LockNotAvailable):  # the server's lock_timeout
            return StoreBusyError(
                f"postgres: collection {self._collection!r} stayed locked by another writer "
                f"past the server's lock_timeout; nothing was written, retry later ({exc})"
            )
        return BackendError(f"postgres: {exc}")

    @contextmanager
    def _write(self) -> Iterator[psycopg.Cursor[Any]]:
        """A write transaction holding the collection's lock, with the schema re-read."""
        with self._tx() as cur:
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))",
                (_lock_key(self._schema_name, self._collection),),
            )
            self._load(cur)
            yield cur

    def _run(self, flow: Flow[T]) -> T:
        """Drive a read (:mod:`.flows`) on pooled autocommit binary cursors, each statement its
        own snapshot (scans page by id); a retry after a failed statement on a fresh one.
        Inside this thread's :meth:`write_lock` block, on the held cursor instead."""
        held = self._holding()
        with Run(self, self._settings, flow) as run:
            if held is not None:
                with self._joined(held):
                    while (todo := run.statement(held.connection)) is not None:
                        prepare = flows.prepare_option(todo[1])
                        run.send(held.execute(*todo, prepare=prepare).fetchall())
                return run.result
            while run.pending:
                try:
                    with self._pool.connection() as conn, conn.cursor(binary=True) as cur:
                        while (todo := run.statement(conn)) is not None:
                            prepare = flows.prepare_option(todo[1])
                            run.send(cur.execute(*todo, prepare=prepare).fetchall())
                except psycopg.Error as exc:
                    run.fail(exc)
            return run.result

    # -- schema ------------------------------------------------------------------------------
    def _load(self, cur: psycopg.Cursor[Any]) -> None:
        self.apply_meta(cur.execute(*self.meta_query()).fetchall())

    def meta_query(self) -> tuple[sql.Composed, tuple[str]]:
        return (
            sql.SQL("SELECT name, value FROM {} WHERE collection = %s").format(self._meta),
            (self._collection,),
        )

    def apply_meta(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Adopt the stored vector schema and indexes (the rows of :meth:`meta_query`)."""
        columns: dict[str, VectorColumn] = {}
        indexes: dict[str, IndexSpec] = {}
        for name, value in rows:
            if name == "layout" and value.get("version") != LAYOUT:
                raise SchemaError(
                    f"collection {self._collection!r} was written with layout "
                    f"{value.get('version')}, this version reads layout {LAYOUT}"
                )
            if name.startswith(VECTOR_KEY):
                field = name[len(VECTOR_KEY) :]
                columns[field] = VectorColumn.from_json(field, value)
            elif name.startswith(INDEX_KEY):
                indexes[name[len(INDEX_KEY) :]] = IndexSpec.from_json(value)
        columns = dict(sorted(columns.items(), key=lambda kv: int(kv[1].column[3:])))
        self._columns, self._indexes, self._stale = columns, indexes, False

    def _put_meta(self, cur: psycopg.Cursor[Any], key: str, value: dict[str, Any]) -> None:
        cur.execute(
            sql.SQL(
                "INSERT INTO {} (collection, name, value) VALUES (%s, %s, %s) "
                "ON CONFLICT (collection, name) DO UPDATE SET value = EXCLUDED.value"
            ).format(self._meta),
            (self._collection, key, psycopg.types.json.Jsonb(value)),
        )

    def capabilities(self) -> Capabilities:
        return self._caps

    def vector_schema(self) -> Mapping[str, VectorConfig]:
        with self._tx() as cur:
            self._load(cur)
        return MappingProxyType({n: c.config for n, c in self._columns.items()})

    def declare_vector_field(self, name: str, config: VectorConfig) -> None:
        with self._write() as cur:
            existing = self._columns.get(name)
            if existing is not None:
                if existing.config != config:
                    raise SchemaError(
                        f"vector field {name!r} is stored in collection {self._collection!r} "
                        f"as {existing.config.to_dict()}, not {config.to_dict()}"
                    )
                return
            used = cur.execute(
                sql.SQL("SELECT 1 FROM {} WHERE doc ? %s LIMIT 1").format(self._table), (name,)
            ).fetchone()
            if used:
                raise SchemaError(f"field {name!r} already holds non-vector values")
            self._add_column(cur, name, config)

    def _add_column(self, cur: psycopg.Cursor[Any], name: str, config: VectorConfig) -> None:
        plain = sum(
            vector_bytes(c.config.dimensions, c.type)
            for c in self._columns.values()
            if c.storage == "PLAIN"
        )
        used = [int(c.column[3:]) for c in self._columns.values()]
        col = VectorColumn.numbered(
            name, config, max(used, default=-1) + 1, plain, self._vector_type
        )
        for stmt in col.add_sql(self._table):
            cur.execute(stmt)
        self._put_meta(cur, VECTOR_KEY + name, col.to_json())
        self._columns = {**self._columns, name: col}

    # -- synchronisation support (see :mod:`dataknobs_data.vector.sync`) ----------------------
    def read_setting(self, key: str) -> str | None:
        """The setting's ``dk_meta`` row (name ``setting:<key>``, a JSON string)."""
        stmt = sql.SQL("SELECT value FROM {} WHERE collection = %s AND name = %s").format(
            self._meta
        )
        rows = self._run(flows.rows(self, stmt, (self._collection, setting_name(key))))
        return None if not rows else str(rows[0][0])

    def write_setting(self, key: str, value: str | None) -> None:
        """Upsert (or delete, for ``None``) the setting's row in one transaction, under the
        collection's writer lock (so a :meth:`write_lock` block sees no setting change)."""
        key, value = check_setting(key, value)
        name = setting_name(key)
        with self._write() as cur:
            if value is None:
                cur.execute(
                    sql.SQL("DELETE FROM {} WHERE collection = %s AND name = %s").format(
                        self._meta
                    ),
                    (self._collection, name),
                )
            else:
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {} (collection, name, value) VALUES (%s, %s, %s) "
                        "ON CONFLICT (collection, name) DO UPDATE SET value = EXCLUDED.value"
                    ).format(self._meta),
                    (self._collection, name, psycopg.types.json.Jsonb(value)),
                )

    def settings(self, prefix: str) -> dict[str, str]:
        """Every setting of this collection whose key starts with ``prefix``."""
        stmt = sql.SQL(
            "SELECT name, value FROM {} WHERE collection = %s AND starts_with(name, %s)"
        ).format(self._meta)
        start = SETTING_PREFIX + check_prefix(prefix)
        rows = self._run(flows.rows(self, stmt, (self._collection, start)))
        return {setting_key(name): str(value) for name, value in sorted(rows)}

    def prepare_marks(self) -> None:
        """Create the partial index of marked rows and the schema's claims table, looking
        first (a least-privilege role may use what an administrator made, and is told what
        is missing otherwise), under the advisory lock setup takes, so two processes at once
        create each once. ``CREATE INDEX`` (not ``CONCURRENTLY``: it must run in this
        transaction) blocks writes to the collection while it reads the table, once."""
        with self._tx() as cur:
            cur.execute(_SETUP_LOCK)
            ensure_table(
                cur,
                self._schema_name,
                CLAIMS_TABLE,
                create_claims_sql(self._schema_name),
                CLAIMS_PRIVILEGES,
            )
            created = ensure_index(
                cur,
                self._schema_name,
                self._collection,
                pending_index_name(self._collection),
                create_pending_index_sql(self._schema_name, self._collection),
            )
            if created:  # statistics now, so the planner knows how few rows are marked
                cur.execute(sql.SQL("ANALYZE {}").format(self._table))
        self._marks_ready = True

    def pending_ids(self, after: str | None, limit: int) -> list[str]:
        """Marked ids after ``after`` in id order, from the partial index (an index-only scan
        once :meth:`prepare_marks` made it; the same query scans the table before). A JSON
        ``null`` under the mark field is no mark (see :data:`.ddl.PENDING_PREDICATE`)."""
        stmt = pending_ids_sql(self._table, after=after is not None)
        rows = self._run(flows.rows(self, stmt, {"after": after, "limit": limit}))
        return [str(r[0]) for r in rows]

    def claim_pending(self, worker: str, limit: int, lease: float) -> list[str]:
        """Claim up to ``limit`` marked records (in id order) for ``worker`` for ``lease``
        seconds, in the ``dk_claims`` table, so vectorizers in several processes share the
        work: each round is one statement (:func:`.ddl.claim_sql`), its own transaction;
        concurrent claimers get disjoint rows. A round that lost rows to a claimer which
        committed during it (its snapshot was older) is followed by another, so an empty
        answer means nothing was claimable. Records being written at that moment are
        skipped (``SKIP LOCKED``) and found by a later claim."""
        if limit <= 0:
            return []
        if not self._marks_ready:
            self.prepare_marks()
        stmt = claim_sql(self._table, self._schema_name)
        taken: list[str] = []
        for _ in range(_CLAIM_ROUNDS):
            params = {
                "collection": self._collection,
                "worker": worker,
                "limit": limit - len(taken),
                "lease": float(lease),
            }
            with self._tx() as cur:
                row = cur.execute(stmt, params).fetchone()
            assert row is not None
            picked, claimed = int(row[0]), [str(i) for i in row[1]]
            taken += claimed
            if len(claimed) == picked or len(taken) >= limit:  # nothing lost, or enough
                break
        return sorted(taken)

    def release_claims(self, worker: str, ids: Sequence[str]) -> None:
        """Delete ``worker``'s claims on ``ids`` (another worker's claims stay)."""
        if not ids or (not self._marks_ready and not self._claims_exist()):
            return
        with self._tx() as cur:
            cur.execute(
                release_sql(self._schema_name),
                {"collection": self._collection, "worker": worker, "ids": list(ids)},
            )

    def _claims_exist(self) -> bool:
        """Whether the schema has a claims table (another process may have made it)."""
        return bool(self._run(flows.rows(self, _CLAIMS_FOUND, (self._schema_name,))))

    # -- writes ------------------------------------------------------------------------------
    def _existing(self, cur: psycopg.Cursor[Any], ids: Sequence[str]) -> set[str]:
        return {r[0] for r in cur.execute(*self.existing_query(ids)).fetchall()}

    def existing_query(self, ids: Sequence[str]) -> tuple[sql.Composed, tuple[list[str]]]:
        return sql.SQL("SELECT id FROM {} WHERE id = ANY(%s)").format(self._table), (list(ids),)

    def put(self, records: Sequence[Record], mode: WriteMode) -> list[bool]:
        with self._write() as cur:
            schema = {n: c.config for n, c in self._columns.items()}
            new_fields = plan_vector_schema(schema, records)
            # create: the primary key refuses a stored id (the whole batch rolls back, and
            # _tx turns the violation into DuplicateRecordError), so no lookup first.
            known = set() if mode == "create" else self._existing(cur, [r.id for r in records])
            existed = [r.id in known for r in records]
            todo = [r for r, was in zip(records, existed, strict=True) if was or mode != "update"]
            for name, cfg in new_fields.items():
                self._add_column(cur, name, cfg)
            check_ranges(todo, self._columns.values())
            write_rows(cur, self._table, list(self._columns.values()), todo, known)
            return existed

    def remove(self, ids: Sequence[str]) -> list[bool]:
        with self._write() as cur:
            rows = cur.execute(
                sql.SQL("DELETE FROM {} WHERE id = ANY(%s) RETURNING id").format(self._table),
                (list(ids),),
            ).fetchall()
        gone = {r[0] for r in rows}
        return [i in gone for i in ids]

    def clear(self) -> int:
        with self._write() as cur:
            cur.execute(sql.SQL("DELETE FROM {}").format(self._table))
            return int(cur.rowcount)

    # -- synchronisation: provenance scan and in-place vectors --------------------------------
    def scan_sync_rows(
        self,
        condition: Filter | None,
        sources: Sequence[str],
        vectors: Sequence[str],
        batch_size: int,
    ) -> Iterator[list[SyncRow]]:
        """Pages of :class:`SyncRow` extracted in SQL (see :mod:`.syncrows`): no record is
        built and no vector read; keyset pages by id, each one statement."""
        where = _where(condition)
        after: str | None = None
        while True:
            stmt, params = sync_rows_query(
                self._table, where.sql, sources, vectors, after is not None
            )
            bound: dict[str, Any] = {**where.params, **params, "dk_limit": batch_size}
            if after is not None:
                bound["dk_after"] = after
            rows = self._run(flows.rows(self, stmt, bound))
            dims = [
                self._columns[v].config.dimensions if v in self._columns else 0 for v in vectors
            ]
            yield sync_rows(rows, len(sources), vectors, dims, self._data_of)
            if len(rows) < batch_size:
                return
            after = rows[-1][0]

    def _data_of(self, ids: Sequence[str]) -> dict[str, str]:
        stmt = sql.SQL("SELECT id, data FROM {} WHERE id = ANY(%s)").format(self._table)
        return {str(i): str(d) for i, d in self._run(flows.rows(self, stmt, (list(ids),)))}

    def replace_vectors(
        self, field: str, sources: Sequence[str], items: Sequence[VectorReplacement]
    ) -> list[bool]:
        """The new vectors by binary ``COPY`` into a temporary table, then one guarded
        ``UPDATE ... FROM`` (:func:`.syncrows.replace_query`), in one transaction."""
        if not items:
            return []
        vectors = [i.vector if i.vector.name == field else i.vector.with_name(field) for i in items]
        probe = [Record.trusted(i.id, {field: v}, {}) for i, v in zip(items, vectors, strict=True)]
        # the writer lock first: the default below (a new field) takes it too, and a second
        # transaction of this thread would wait for ever on the advisory lock of the first
        with self.write_lock(), self._write() as cur:
            schema = {n: c.config for n, c in self._columns.items()}
            column = self._columns.get(field)
            if column is None or plan_vector_schema(schema, probe):
                return super().replace_vectors(field, sources, items)  # adds the field
            check_ranges(probe, [column])
            rows = []
            seen: set[str] = set()
            for item, vec in zip(items, vectors, strict=True):
                if item.id in seen or len(item.texts) != len(sources):
                    continue
                seen.add(item.id)
                rows.append((item.id, vector_entry(vec), item.texts, vec.value))
            if not rows:
                return [False] * len(items)
            copy_replacements(cur, self._table, column, rows)
            stmt, params = replace_query(self._table, column, field, sources)
            done = {r[0] for r in cur.execute(stmt, params).fetchall()}
        out: list[bool] = []
        for item in items:
            out.append(item.id in done)
            done.discard(item.id)
        return out

    # -- reads -------------------------------------------------------------------------------
    def _select_list(self) -> sql.Composable:
        """``id, data`` and each vector column, in schema order."""
        cols: list[sql.Composable] = [sql.SQL("id"), sql.SQL("data")]
        cols += [sql.Identifier(c.column) for c in self._columns.values()]
        return sql.SQL(", ").join(cols)

    def _build(
        self, rows: Sequence[tuple[Any, ...]], fields: tuple[str, ...] | None = None
    ) -> list[Record]:
        """Records from rows selected with :meth:`_select_list`."""
        try:
            return decode_rows(rows, 0, list(self._columns), _frozen_array, fields)
        except KeyError as exc:  # a vector field added by another writer since our load
            self._stale = True
            raise BackendError(
                f"postgres: collection {self._collection!r} gained vector field {exc} "
                "while reading; retry"
            ) from None

    def fetch_query(self, ids: Sequence[str]) -> tuple[sql.Composed, tuple[list[str]]]:
        stmt = sql.SQL("SELECT {} FROM {} WHERE id = ANY(%s)").format(
            self._select_list(), self._table
        )
        return stmt, (list(ids),)

    def get(self, ids: Sequence[str]) -> list[Record | None]:
        return self._run(flows.get(self, ids))

    def assemble(self, ids: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> list[Record | None]:
        """Records for ``ids`` in order from the fetched rows (a repeated id gets a copy)."""
        by_id = {r.id: r for r in self._build(rows)}
        seen: set[str] = set()
        out: list[Record | None] = []
        for i in ids:
            rec = by_id.get(i)
            out.append(None if rec is None else (rec.copy() if i in seen else rec))
            seen.add(i)
        return out

    def contains(self, ids: Sequence[str]) -> list[bool]:
        return self._run(flows.contains(self, ids))

    def raw_table(self) -> tuple[str, str]:
        """``(schema, table)`` of the records, for benchmarks that issue raw SQL on it."""
        return self._schema_name, self._collection

    def select_query(self, query: Query) -> tuple[sql.Composed, dict[str, Any]]:
        return self._select(query, self._select_list())

    def _select(self, query: Query, columns: sql.Composable) -> tuple[sql.Composed, dict[str, Any]]:
        where = _where(query.condition)
        order = compile_order(query.sort_by)
        stmt = sql.SQL(
            "SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT %(limit)s OFFSET %(offset)s"
        ).format(columns, self._table, sql.SQL(where.sql), sql.SQL(order.sql))
        params = {**where.params, **order.params, "limit": query.take, "offset": query.skip}
        return stmt, params

    def search(self, query: Query) -> list[Record]:
        return self._run(flows.search(self, query))

    def count(self, condition: Filter | None) -> int:
        return self._run(flows.count(self, condition))

    def count_query(self, condition: Filter | None) -> tuple[sql.Composed, dict[str, Any]]:
        where = _where(condition)
        stmt = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(self._table, sql.SQL(where.sql))
        return stmt, where.params

    def scan(self, query: Query, batch_size: int) -> Iterator[list[Record]]:
        """Pages of the query's results. The matching ids are fixed when the scan starts;
        records deleted meanwhile are skipped and updated ones appear in their latest state."""
        ids = [r[0] for r in self._run(flows.rows(self, *self._select(query, sql.SQL("id"))))]
        return self._pages(ids, query.projection, batch_size)

    def _pages(
        self, ids: list[str], fields: tuple[str, ...] | None, batch_size: int
    ) -> Iterator[list[Record]]:
        def fetch(chunk: list[str]) -> dict[str, Record]:
            return {r.id: r for r in self._run(flows.records(self, chunk, fields))}

        return pages_by_id(ids, batch_size, fetch)

    # -- vector search -----------------------------------------------------------------------
    def vector_search(self, request: VectorSearchRequest) -> list[list[VectorSearchResult]]:
        return self._run(flows.vector_search(self, request))

    def default_query(
        self, request: VectorSearchRequest
    ) -> tuple[sql.Composed, tuple[str, str]] | None:
        """The read of the stored default vector field, for an unnamed search (``None``
        otherwise, so searches naming their field cost nothing more). Read even while this
        object knows one vector field: another process may have declared a second one and
        switched to it, which this object learns from the default naming a field it lacks."""
        if request.field is not None:
            return None
        stmt = sql.SQL("SELECT value FROM {} WHERE collection = %s AND name = %s").format(
            self._meta
        )
        return stmt, (self._collection, setting_name(DEFAULT_FIELD_SETTING))

    def vector_fields(self) -> list[str]:
        """The vector fields as this object last read the schema."""
        return list(self._columns)

    @property
    def known_default(self) -> tuple[bool, str | None]:
        """(known, value) of the stored default vector field as last seen by this object."""
        return self._default_seen

    def remember_default(self, value: str | None) -> None:
        self._default_seen = (True, value)

    def knn_plan(
        self, request: VectorSearchRequest, default: str | None = None, *, confirm: bool = False
    ) -> tuple[str, DistanceMetric, Plan]:
        """The field, metric and SQL plan a vector search runs (also for benchmarks that issue
        the same SQL raw, and for debugging: ``knn.knn_sql(plan, via_index=...)``);
        ``default``: the stored default vector field (see :meth:`default_query`), which the
        statements check is still stored when ``confirm``."""
        configs = {n: c.config for n, c in self._columns.items()}
        field, _cfg, metric = resolve_vector_query(
            configs, request.single(), model=request.model, default=default
        )
        where = None if request.filter is None else _where(request.filter)
        bound = {} if where is None else dict(where.params)
        if confirm:
            bound["dk_c"] = self._collection
            bound["dk_n"] = setting_name(DEFAULT_FIELD_SETTING)
            bound["dk_v"] = None if default is None else psycopg.types.json.Jsonb(default)
        index = self._indexes.get(field)
        params = request.params
        exact = bool(params.get("exact", self._exact))
        use = index if index is not None and index.metric is metric and not exact else None
        plan = Plan(
            self._table,
            self._select_list(),
            self._columns[field],
            metric,
            None if where is None else where.sql,
            bound,
            use,
            self._info.iterative_scans,
            params.get("ef_search", self._ef_search),
            params.get("probes", self._probes),
            "ef_search" not in params,
            key=(
                self._schema_name,
                self._collection,
                tuple(c.column for c in self._columns.values()),
                self._columns[field].column,
                self._columns[field].config.dimensions,
                metric,
                None if where is None else where.sql,
                None if use is None else (use.kind, use.metric),
                confirm,
            ),
            guard=self._meta if confirm else None,
        )
        return field, metric, plan

    def ranked(
        self,
        found: tuple[list[tuple[Any, ...]], bool],
        field: str,
        metric: DistanceMetric,
        query: Any,
        request: VectorSearchRequest,
    ) -> list[VectorSearchResult]:
        """Hits from :func:`.knn.candidate_steps`' rows: exact-scan rows re-ranked in float64,
        index rows by pgvector's distances."""
        rows, exact = found
        if exact:
            return self._rank([r[:-1] for r in rows], field, metric, query, request)
        return self._rank_index(rows, metric, request)

    def _rank_index(
        self, rows: list[tuple[Any, ...]], metric: DistanceMetric, request: VectorSearchRequest
    ) -> list[VectorSearchResult]:
        """Index hits ranked by pgvector's distances (its operators compute ours: 1 - cos, L2,
        -dot, L1), ties by id. Re-scoring in float64 would not make an approximate answer
        exact, and at a few hundred microseconds per HNSW search its numpy calls would be the
        largest cost we add to the SQL."""
        ranked = sorted(
            ((1.0 if (d := float(r[-1])) != d else d, r[0], r) for r in rows),
            key=lambda t: (t[0], t[1]),
        )[: request.k]
        scores = kept_scores([d for d, _, _ in ranked], metric, request.score_threshold)
        return [
            VectorSearchResult(
                None, score, d, rank, record_id=rid, load=partial(self._build_one, row[:-1])
            )
            for rank, (score, (d, rid, row)) in enumerate(
                zip(scores, ranked[: len(scores)], strict=True), 1
            )
        ]

    def _rank(
        self,
        rows: list[tuple[Any, ...]],
        field: str,
        metric: DistanceMetric,
        query: Any,
        request: VectorSearchRequest,
    ) -> list[VectorSearchResult]:
        """Candidates re-scored in float64, ordered by (distance, id), thresholded."""
        at = 2 + list(self._columns).index(field)
        rows = [r for r in rows if r[at] is not None]
        if not rows:
            return []
        matrix = np.stack([as_array(r[at]) for r in rows])
        order, chosen = rank_exact(matrix, query, metric, [r[0] for r in rows], request.k)
        scores = scores_from_distances(chosen, metric).tolist()
        distances = chosen.tolist()
        threshold = request.score_threshold
        keep = [j for j, s in enumerate(scores) if threshold is None or s >= threshold]
        # Records are decoded on first access: ranking callers never pay for them.
        return [
            VectorSearchResult(
                None,
                scores[j],
                distances[j],
                rank,
                record_id=rows[order[j]][0],
                load=partial(self._build_one, rows[order[j]]),
            )
            for rank, j in enumerate(keep, start=1)
        ]

    def build(
        self, rows: Sequence[tuple[Any, ...]], fields: tuple[str, ...] | None = None
    ) -> list[Record]:
        """Records from rows of ``id, data, <vector columns>`` (``fields`` projects)."""
        return self._build(rows, fields)

    def _build_one(self, row: tuple[Any, ...]) -> Record:
        return self._build([row])[0]

    # -- lifecycle ---------------------------------------------------------------------------
    def drop_collection(self) -> None:
        """Delete the collection's table and its schema entries (used by tests and tools)."""
        with self._write() as cur:
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(self._table))
            cur.execute(
                sql.SQL("DELETE FROM {} WHERE collection = %s").format(self._meta),
                (self._collection,),
            )
            if cur.execute(_CLAIMS_FOUND, (self._schema_name,)).fetchone():
                cur.execute(
                    sql.SQL("DELETE FROM {} WHERE collection = %s").format(
                        sql.Identifier(self._schema_name, CLAIMS_TABLE)
                    ),
                    (self._collection,),
                )
        self._columns, self._indexes = {}, {}

    def engine_seams(self) -> list[EngineSeam]:
        """The connection pool (its connections, cursors, transactions and copies are
        reached through it)."""
        return [EngineSeam("connection pool", self, "_pool", psycopg.OperationalError)]

    def close(self) -> None:
        try:
            if self._temporary:
                self.drop_collection()
        finally:
            self._close_pool()

    def _close_pool(self) -> None:
        try:
            self._pool.close()
        except psycopg.Error as exc:
            raise BackendError(f"postgres: cannot close the pool: {exc}") from exc

    def stats(self) -> dict[str, Any]:
        """Row count and names (for benchmarks and debugging)."""
        (row,) = self._run(
            flows.rows(self, sql.SQL("SELECT count(*) FROM {}").format(self._table), None)
        )
        return {
            "records": int(row[0]),
            "collection": self._collection,
            "schema": self._schema_name,
            "pgvector": self._info.pgvector,
        }

    def __repr__(self) -> str:
        return f"PostgresBackend(collection={self._collection!r}, schema={self._schema_name!r})"
