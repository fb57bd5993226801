"""The SQL backends' synchronisation support (settings, writer lock, pending marks, claims).

What :mod:`dataknobs_data.vector.sync` needs from SQLite and PostgreSQL, on real engines:
settings kept in ``dk_meta`` per collection and seen by every object opened on the store;
``write_lock()`` as a compare-and-set window that another writer (another object on the same
file or database, in a thread) waits for; ``pending_ids`` answered from a partial index (the
query plans are checked); and on PostgreSQL, claims shared by concurrent workers through
``FOR UPDATE SKIP LOCKED``. Orderings between threads are asserted with events and with what
the engine reports (a writer's busy error, a waiting advisory lock), never with a time limit.

The PostgreSQL cases need ``$DATAKNOBS_TEST_POSTGRES_URL`` (``scripts/test`` exports it).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dataknobs_data import Query, Record
from dataknobs_data.contract import Backend
from dataknobs_data.errors import (
    DataknobsDataError,
    DuplicateRecordError,
    PermissionDeniedError,
    StoreBusyError,
    ValidationError,
)
from dataknobs_data.marks import PENDING_FIELD
from dataknobs_data.testing import POSTGRES_URL_ENV, import_or_skip
from dataknobs_data.testing.extras import requires_extra

URL = os.environ.get(POSTGRES_URL_ENV, "")
needs_postgres = [
    requires_extra("postgres"),
    pytest.mark.skipif(not URL, reason=f"{POSTGRES_URL_ENV} unset: run scripts/test"),
]


class Store:
    """One SQLite file or one PostgreSQL database: backend objects opened on it, each a
    separate connection (pool), all closed (and PostgreSQL's tables dropped) at the end."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.path = str(tmp_path / "store.db")
        self.collection = f"t_{uuid.uuid4().hex[:12]}"
        self._opened: list[Backend] = []
        self._collections: set[str] = set()

    def open(self, collection: str | None = None, **options: Any) -> Backend:
        name = collection or self.collection
        self._collections.add(name)
        backend: Backend
        if self.kind == "sqlite":
            from dataknobs_data.backends.sqlite import SQLiteBackend

            backend = SQLiteBackend(self.path, collection=name, **options)
        else:
            from dataknobs_data.backends.postgres import PostgresBackend

            options.setdefault("pool_size", 2)
            backend = PostgresBackend(URL, collection=name, **options)
        self._opened.append(backend)
        return backend

    def close(self) -> None:
        for backend in self._opened:
            with contextlib.suppress(DataknobsDataError):
                backend.close()
        if self.kind == "postgres":
            drop_collections(sorted(self._collections))


def drop_collections(names: list[str], schema: str = "public") -> None:
    psycopg = import_or_skip("postgres", "psycopg")
    from psycopg import sql

    with psycopg.connect(URL, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, name)))
            for table in ("dk_meta", "dk_claims"):
                if conn.execute("SELECT to_regclass(%s)", (f"{schema}.{table}",)).fetchone()[0]:
                    conn.execute(
                        sql.SQL("DELETE FROM {} WHERE collection = %s").format(
                            sql.Identifier(schema, table)
                        ),
                        (name,),
                    )


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=requires_extra("sqlite")),
        pytest.param("postgres", marks=needs_postgres),
    ]
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened = Store(request.param, tmp_path)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def pg_store(tmp_path: Path) -> Iterator[Store]:
    if not URL:
        pytest.skip(f"{POSTGRES_URL_ENV} unset: run scripts/test")
    import_or_skip("postgres", "psycopg")
    opened = Store("postgres", tmp_path)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    import_or_skip("sqlite", "sqlite_vec")
    opened = Store("sqlite", tmp_path)
    try:
        yield opened
    finally:
        opened.close()


def rec(rid: str, n: int = 0, **fields: Any) -> Record:
    return Record({"n": n, **fields}, id=rid)


def marked(rid: str, n: int = 0) -> Record:
    return rec(rid, n, **{PENDING_FIELD: {"emb": f"hash-{rid}"}})


def fail_inside_lock(db: Backend, work: Callable[[], object]) -> None:
    """Run ``work`` in a ``write_lock()`` block that then raises ``KeyError``."""
    with db.write_lock():
        work()
        raise KeyError("the block fails")


def numbers(backend: Backend, ids: list[str]) -> list[int | None]:
    return [None if r is None else r["n"] for r in backend.get(ids)]


# == settings ====================================================================================
def test_settings_round_trip_overwrite_and_delete(store: Store) -> None:
    db = store.open()
    assert db.read_setting("rule:emb") is None
    assert db.settings("") == {}
    db.write_setting("rule:emb", '{"source": "text"}')
    db.write_setting("rule:other", "x")
    db.write_setting("misc", "")
    assert db.read_setting("rule:emb") == '{"source": "text"}'
    assert db.read_setting("misc") == ""  # an empty value is a value, not a deletion
    db.write_setting("rule:emb", "v2 \u00e9\U0001f600")
    assert db.read_setting("rule:emb") == "v2 \u00e9\U0001f600"
    assert db.settings("rule:") == {"rule:emb": "v2 \u00e9\U0001f600", "rule:other": "x"}
    assert db.settings("") == {"rule:emb": "v2 \u00e9\U0001f600", "rule:other": "x", "misc": ""}
    db.write_setting("rule:emb", None)
    assert db.read_setting("rule:emb") is None
    db.write_setting("rule:emb", None)  # deleting what is not there is not an error
    assert db.settings("rule:") == {"rule:other": "x"}


def test_setting_prefixes_are_literal_text(store: Store) -> None:
    db = store.open()
    for key in ("a_b", "axb", "a%c", "abc", "A_b"):
        db.write_setting(key, key)
    assert sorted(db.settings("a_")) == ["a_b"]  # "_" matches itself only
    assert sorted(db.settings("a%")) == ["a%c"]
    assert sorted(db.settings("a")) == ["a%c", "a_b", "abc", "axb"]  # case-sensitive


def test_settings_do_not_mix_with_the_vector_schema(store: Store) -> None:
    from dataknobs_data.vector.types import VectorConfig

    db = store.open()
    db.declare_vector_field("emb", VectorConfig(3))
    db.write_setting("vector:emb", "not a schema entry")  # stored as setting:vector:emb
    assert db.settings("") == {"vector:emb": "not a schema entry"}
    reopened = store.open()
    assert dict(reopened.vector_schema()) == {"emb": VectorConfig(3)}


def test_settings_are_per_collection(store: Store) -> None:
    first = store.open()
    second = store.open(f"{store.collection}_b")
    first.write_setting("rule:emb", "first")
    assert second.read_setting("rule:emb") is None
    second.write_setting("rule:emb", "second")
    assert first.read_setting("rule:emb") == "first"
    assert second.settings("") == {"rule:emb": "second"}


def test_settings_are_seen_by_another_object_and_survive_reopening(store: Store) -> None:
    writer = store.open()
    reader = store.open()  # opened before the write: reads the store, not a cache
    writer.write_setting("rule:emb", "one")
    assert reader.read_setting("rule:emb") == "one"
    writer.write_setting("rule:emb", "two")
    assert reader.settings("rule") == {"rule:emb": "two"}
    writer.close()
    reader.close()
    assert store.open().read_setting("rule:emb") == "two"


@pytest.mark.parametrize(
    ("key", "value"),
    [(1, "v"), ("k", 1), ("k", b"v"), (None, "v"), ("", "v"), ("k\x00", "v"), ("k", "v\x00")],
)
def test_settings_refuse_what_is_not_text(store: Store, key: Any, value: Any) -> None:
    db = store.open()
    db.write_setting("k", "kept")
    with pytest.raises(ValidationError, match="setting"):
        db.write_setting(key, value)
    assert db.settings("") == {"k": "kept"}
    with pytest.raises(ValidationError):
        db.settings(3)  # type: ignore[arg-type]


# == write lock ==================================================================================
def test_write_lock_compare_and_set(store: Store) -> None:
    db = store.open()
    db.put([rec("c", 1)], "upsert")
    with db.write_lock():
        (current,) = db.get(["c"])
        assert current is not None and current["n"] == 1
        db.put([rec("c", current["n"] + 1)], "upsert")
        assert numbers(db, ["c"]) == [2]  # reads inside see the block's own writes
        assert [r.id for r in db.search(Query())] == ["c"]
    assert numbers(store.open(), ["c"]) == [2]


def test_an_exception_inside_the_write_lock_rolls_everything_back(store: Store) -> None:
    db = store.open()
    db.put([rec("a", 1)], "upsert")
    db.write_setting("rule", "before")

    def changes() -> None:
        db.put([rec("a", 2), rec("b", 2)], "upsert")
        db.write_setting("rule", "inside")
        db.remove(["a"])

    with pytest.raises(KeyError):
        fail_inside_lock(db, changes)
    assert numbers(db, ["a", "b"]) == [1, None]
    assert db.read_setting("rule") == "before"
    with db.write_lock():  # the lock was given back
        db.put([rec("b", 3)], "upsert")
    assert numbers(store.open(), ["a", "b"]) == [1, 3]


def test_a_failed_write_inside_the_lock_leaves_no_trace_and_the_block_goes_on(
    store: Store,
) -> None:
    db = store.open()
    db.put([rec("a", 1)], "upsert")
    with db.write_lock():
        db.put([rec("x", 1)], "upsert")
        with pytest.raises(DuplicateRecordError):
            db.put([rec("new", 1), rec("a", 9)], "create")
        assert numbers(db, ["a", "new", "x"]) == [1, None, 1]
        db.put([rec("y", 1)], "upsert")
    assert numbers(store.open(), ["a", "new", "x", "y"]) == [1, None, 1, 1]


def test_nested_write_locks_join_the_outer_one(store: Store) -> None:
    db = store.open()
    with db.write_lock():
        db.put([rec("outer", 1)], "upsert")
        with db.write_lock():
            db.put([rec("inner", 1)], "upsert")
        with pytest.raises(KeyError):
            fail_inside_lock(db, lambda: db.put([rec("undone", 1)], "upsert"))
        assert numbers(db, ["outer", "inner", "undone"]) == [1, 1, None]
    other = store.open()
    assert numbers(other, ["outer", "inner", "undone"]) == [1, 1, None]

    def inner_block() -> None:
        with db.write_lock():
            db.put([rec("gone", 1)], "upsert")

    with pytest.raises(KeyError):
        fail_inside_lock(db, inner_block)  # the outer block fails after the inner one ended
    assert numbers(other, ["gone"]) == [None]


def _increment(db: Backend, started: threading.Event, done: threading.Event) -> None:
    started.set()
    with db.write_lock():
        (current,) = db.get(["counter"])
        assert current is not None
        db.put([rec("counter", current["n"] + 1)], "upsert")
    done.set()


def test_a_second_writer_waits_for_the_lock(store: Store) -> None:
    """Two compare-and-set increments from two objects (two connections): the second one's
    ``get`` must wait until the first one's ``put`` committed, or an update is lost."""
    first, second = store.open(), store.open()
    first.put([rec("counter", 0)], "upsert")
    started, done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            _increment(second, started, done)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run)
    with first.write_lock():
        (current,) = first.get(["counter"])
        assert current is not None
        thread.start()
        assert started.wait(30)
        wait_until_blocked(store, second)
        # Room for a broken lock to show: the other writer would finish (and read 0) now.
        assert not done.wait(0.3)
        first.put([rec("counter", current["n"] + 1)], "upsert")
        assert not done.is_set()
    thread.join(60)
    assert not thread.is_alive() and errors == []
    assert done.is_set()
    assert numbers(store.open(), ["counter"]) == [2]


def wait_until_blocked(store: Store, other: Backend) -> None:
    """Return once the other object's writer is observably waiting for the lock: on
    PostgreSQL a session waits for the collection's advisory lock (pg_locks); SQLite shows no
    waiter, so there the test relies on the events (and the busy-error test below)."""
    if store.kind != "postgres":
        return
    psycopg = import_or_skip("postgres", "psycopg")
    key = f"dataknobs_data:public.{store.collection}"  # the collection's writer lock
    with psycopg.connect(URL, autocommit=True) as conn:
        for _ in range(3000):
            row = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND objid::bigint = (hashtext(%s)::bigint & 4294967295)",
                (key,),
            ).fetchone()
            if row and row[0]:
                return
            time.sleep(0.01)
    pytest.fail("the second writer never waited for the advisory lock")


def test_sqlite_writer_locked_out_for_its_whole_busy_timeout_is_refused(
    sqlite_store: Store,
) -> None:
    holder = sqlite_store.open()
    impatient = sqlite_store.open(busy_timeout=0.05)
    holder.put([rec("a", 1)], "upsert")
    with holder.write_lock():
        with pytest.raises(StoreBusyError, match="locked"):
            impatient.put([rec("a", 2)], "upsert")
        with pytest.raises(StoreBusyError):
            impatient.write_lock().__enter__()
        assert numbers(impatient, ["a"]) == [1]  # readers are not blocked (WAL)
        holder.put([rec("a", 3)], "upsert")
        assert numbers(impatient, ["a"]) == [1]  # ... and see the committed state
    impatient.put([rec("a", 4)], "upsert")
    assert numbers(holder, ["a"]) == [4]


def test_sqlite_other_threads_of_the_same_object_wait_too(sqlite_store: Store) -> None:
    db = sqlite_store.open()
    db.put([rec("counter", 0)], "upsert")
    started, done = threading.Event(), threading.Event()
    thread = threading.Thread(target=_increment, args=(db, started, done))
    with db.write_lock():
        (current,) = db.get(["counter"])
        assert current is not None
        thread.start()
        assert started.wait(30)
        assert not done.wait(0.3)
        db.put([rec("counter", current["n"] + 1)], "upsert")
    thread.join(60)
    assert done.is_set()
    assert numbers(db, ["counter"]) == [2]


def test_every_call_works_inside_the_lock(store: Store) -> None:
    """The block's own calls join it: writes, reads, scans, searches, schema and settings
    (on PostgreSQL a read on a second connection would wait for the schema change's lock)."""
    import numpy as np

    from dataknobs_data.contract import VectorSearchRequest
    from dataknobs_data.vector.types import VectorConfig

    db, other = store.open(), store.open()
    vec = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    with db.write_lock():
        db.declare_vector_field("emb", VectorConfig(3))
        db.put([marked("a", 1), rec("b", 2, emb=vec), rec("c", 3)], "create")
        assert db.contains(["a", "z"]) == [True, False]
        assert db.count(None) == 3
        assert [r.id for page in db.scan(Query(), 2) for r in page] == ["a", "b", "c"]
        request = VectorSearchRequest(vec.reshape(1, 3), 1, "emb", None, None, None)
        assert [h.id for h in db.vector_search(request)[0]] == ["b"]
        assert db.pending_ids(None, 10) == ["a"]
        db.prepare_marks()
        db.write_setting("k", "v")
        assert db.settings("") == {"k": "v"}
        assert db.remove(["c", "z"]) == [True, False]
        assert db.get(["c"]) == [None]
        assert dict(db.vector_schema()) == {"emb": VectorConfig(3)}
        # (no read through `other` here: on PostgreSQL the block's ALTER TABLE holds the
        # table's exclusive lock until it ends, so it would wait for this thread)
    assert other.count(None) == 2 and other.read_setting("k") == "v"
    with db.write_lock():
        assert db.clear() == 2
    assert other.count(None) == 0


def test_postgres_reads_inside_the_lock_need_no_second_connection(pg_store: Store) -> None:
    """With a pool of one connection, reads inside the block run on the held one (a second
    checkout would wait for ever), and see the block's uncommitted writes."""
    db = pg_store.open(pool_size=1)
    other = pg_store.open()
    with db.write_lock():
        db.put([marked("a", 1)], "upsert")
        assert numbers(db, ["a"]) == [1]
        assert db.contains(["a", "b"]) == [True, False]
        assert db.count(None) == 1
        assert db.pending_ids(None, 10) == ["a"]
        assert db.read_setting("x") is None
        assert numbers(other, ["a"]) == [None]  # not committed yet
    assert numbers(other, ["a"]) == [1]


# == pending marks ===============================================================================
def _mixed_records(backend: Backend) -> list[str]:
    """Records with a mark, without, and with a JSON null under the mark field; the marked
    ids, in id order."""
    records = [
        marked("r05"),
        rec("r01"),
        marked("r03"),
        rec("r02", **{PENDING_FIELD: None}),  # null: no mark
        marked("r10"),
        rec("r04", other={"_dk_pending": 1}),  # nested, not the top-level field
        marked("r07"),
        marked("r\u00e9"),  # code-point order: after every ASCII id
        marked("R99"),  # upper case sorts first
    ]
    backend.put(records, "upsert")
    return ["R99", "r03", "r05", "r07", "r10", "r\u00e9"]


@pytest.mark.parametrize("prepared", [True, False], ids=["indexed", "unindexed"])
def test_pending_ids_in_id_order_after_and_limit(store: Store, prepared: bool) -> None:
    db = store.open()
    if prepared:
        db.prepare_marks()
    expected = _mixed_records(db)
    assert db.pending_ids(None, 100) == expected
    assert db.pending_ids(None, 2) == expected[:2]
    assert db.pending_ids("r03", 2) == ["r05", "r07"]
    assert db.pending_ids("r04", 100) == expected[2:]
    assert db.pending_ids("r\u00e9", 100) == []
    # paging through with after = last id of the previous page gives every id once
    seen: list[str] = []
    after: str | None = None
    while page := db.pending_ids(after, 2):
        seen += page
        after = page[-1]
    assert seen == expected
    # a mark removed by an update, a record deleted, a new mark: all seen at once
    db.put([rec("r05", 1)], "upsert")
    db.remove(["r07"])
    db.put([marked("r02")], "upsert")
    assert db.pending_ids(None, 100) == ["R99", "r02", "r03", "r10", "r\u00e9"]
    assert db.pending_ids(None, 100) == _default_pending_ids(db)


def _default_pending_ids(db: Backend) -> list[str]:
    """What the contract's generic ``exists`` query finds (the reference)."""
    return Backend.pending_ids(db, None, 100)


def test_prepare_marks_is_idempotent_and_survives_reopening(store: Store) -> None:
    db = store.open()
    expected = _mixed_records(db)
    db.prepare_marks()
    db.prepare_marks()
    assert store.open().pending_ids(None, 100) == expected
    again = store.open()
    again.prepare_marks()
    assert again.pending_ids("r05", 100) == expected[3:]


def test_prepare_marks_from_two_objects_at_once(store: Store) -> None:
    backends = [store.open(), store.open()]
    _mixed_records(backends[0])
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def prepare(db: Backend) -> None:
        try:
            barrier.wait(30)
            db.prepare_marks()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=prepare, args=(b,)) for b in backends]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert backends[1].pending_ids(None, 3) == ["R99", "r03", "r05"]


def test_sqlite_claims_stay_in_the_process(sqlite_store: Store) -> None:
    """SQLite keeps the contract's in-process leases (one process writes the file at a time)."""
    db = sqlite_store.open()
    expected = _mixed_records(db)
    db.prepare_marks()
    first = db.claim_pending("w1", 4, 60.0)
    assert first == expected[:4]
    assert db.claim_pending("w2", 10, 60.0) == expected[4:]
    assert db.claim_pending("w1", 10, 60.0) == first  # its own claims, again at once
    db.release_claims("w1", first[:1])
    assert db.claim_pending("w2", 10, 60.0) == [first[0], *expected[4:]]


# == query plans =================================================================================
def test_sqlite_pending_ids_are_read_from_the_partial_index(sqlite_store: Store) -> None:
    from dataknobs_data.backends.sqlite.ddl import pending_ids_sql, pending_index

    db = sqlite_store.open()
    db.put([marked(f"m{i:04d}") if i % 7 == 0 else rec(f"m{i:04d}") for i in range(300)], "upsert")
    db.prepare_marks()
    conn = sqlite3.connect(sqlite_store.path)
    try:
        index = pending_index(sqlite_store.collection)
        found = conn.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (index,)
        ).fetchone()
        assert found is not None and "WHERE json_extract(doc, '$.\"_dk_pending\"')" in found[0]
        for after in (False, True):
            sql = pending_ids_sql(sqlite_store.collection, after=after)
            params = ("m0100", 5) if after else (5,)
            plan = " | ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params))
            assert f"USING COVERING INDEX {index}" in plan or f"USING INDEX {index}" in plan, plan
            assert "TEMP B-TREE" not in plan, plan  # the index gives the id order
            assert len(conn.execute(sql, params).fetchall()) == 5
        # the predicate is what the index covers: a query with another predicate scans
        plan = " | ".join(
            r[3]
            for r in conn.execute(
                f'EXPLAIN QUERY PLAN SELECT id FROM "{sqlite_store.collection}" '
                "WHERE json_type(doc, '$.\"_dk_pending\"') = 'object'"
            )
        )
        assert index not in plan, plan
    finally:
        conn.close()


def _pg_plan(stmt: Any, params: Any) -> str:
    psycopg = import_or_skip("postgres", "psycopg")
    with psycopg.connect(URL) as conn:
        conn.execute("SET LOCAL enable_seqscan = off")  # a small table is cheaper to scan
        rows = conn.execute(psycopg.sql.SQL("EXPLAIN ") + stmt, params).fetchall()
        conn.rollback()
    return "\n".join(r[0] for r in rows)


def test_postgres_pending_ids_and_claims_are_read_from_the_partial_index(
    pg_store: Store,
) -> None:
    from psycopg import sql

    from dataknobs_data.backends.postgres.ddl import (
        claim_sql,
        pending_ids_sql,
        pending_index_name,
    )

    db = pg_store.open()
    db.put([marked(f"m{i:04d}") if i % 7 == 0 else rec(f"m{i:04d}") for i in range(2000)], "upsert")
    db.prepare_marks()
    table = sql.Identifier("public", pg_store.collection)
    index = pending_index_name(pg_store.collection)
    for after in (None, "m0100"):
        plan = _pg_plan(
            pending_ids_sql(table, after=after is not None), {"after": after, "limit": 5}
        )
        _assert_reads_the_index(plan, index, pg_store.collection)
    params = {"collection": pg_store.collection, "worker": "w", "limit": 5, "lease": 1.0}
    plan = _pg_plan(claim_sql(table, "public"), params)
    _assert_reads_the_index(plan, index, pg_store.collection)
    assert "LockRows" in plan, plan  # FOR UPDATE ... SKIP LOCKED


def _assert_reads_the_index(plan: str, index: str, table: str) -> None:
    """The marked rows come from the partial index (an ordered index scan, or a bitmap scan
    when the planner expects few rows), never from ``table`` or its primary key."""
    assert f"using {index}" in plan or f"Bitmap Index Scan on {index}" in plan, plan
    assert f"Seq Scan on {table}" not in plan and f"{table}_pkey" not in plan, plan


# == PostgreSQL claims ===========================================================================
def _pending_records(db: Backend, n: int) -> list[str]:
    ids = [f"p{i:05d}" for i in range(n)]
    db.put([marked(i) for i in ids] + [rec(f"q{i:05d}") for i in range(n // 10)], "upsert")
    return ids


def test_postgres_concurrent_claimers_share_the_work(pg_store: Store) -> None:
    ids = _pending_records(pg_store.open(), 1000)
    workers = [pg_store.open(), pg_store.open()]
    workers[0].prepare_marks()
    got: dict[str, list[str]] = {"w0": [], "w1": []}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def work(name: str, db: Backend) -> None:
        """A vectorizer's loop: claim a batch, do the work (the record loses its mark),
        give the claims back; until nothing is left to claim."""
        try:
            barrier.wait(30)
            while batch := db.claim_pending(name, 25, 600.0):
                assert len(batch) <= 25 and batch == sorted(batch)
                got[name] += batch
                db.put([rec(i, 1) for i in batch], "upsert")
                db.release_claims(name, batch)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"w{i}", db)) for i, db in enumerate(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    claimed = got["w0"] + got["w1"]
    assert sorted(claimed) == ids  # every pending id claimed, exactly once
    assert set(got["w0"]).isdisjoint(got["w1"])
    assert workers[0].pending_ids(None, 10) == []
    assert numbers(workers[1], ids) == [1] * len(ids)


def _expire(collection: str, worker: str) -> None:
    """Wait until the server's clock has passed the expiry of ``worker``'s (short) leases."""
    psycopg = import_or_skip("postgres", "psycopg")
    with psycopg.connect(URL, autocommit=True) as conn:
        for _ in range(3000):
            row = conn.execute(
                "SELECT bool_and(expires <= now()) FROM dk_claims "
                "WHERE collection = %s AND worker = %s",
                (collection, worker),
            ).fetchone()
            if row and row[0]:
                return
            time.sleep(0.01)
    pytest.fail("claims never expired")


def test_postgres_claims_expire_and_are_released(pg_store: Store) -> None:
    db, other = pg_store.open(), pg_store.open()
    ids = _pending_records(db, 6)
    first = db.claim_pending("w1", 3, 0.2)
    assert first == ids[:3]
    assert db.claim_pending("w1", 3, 0.2) == first  # the same worker re-claims at once
    assert other.claim_pending("w2", 10, 600.0) == ids[3:]  # skips w1's live claims
    assert other.claim_pending("w3", 10, 600.0) == []
    _expire(pg_store.collection, "w1")
    assert other.claim_pending("w3", 10, 600.0) == first  # w1's expired, taken over
    assert db.claim_pending("w1", 10, 600.0) == []  # w1 lost them
    other.release_claims("w1", first)  # not w1's any more: nothing released
    assert db.claim_pending("w1", 10, 600.0) == []
    other.release_claims("w3", first[:2])
    assert db.claim_pending("w1", 10, 600.0) == first[:2]
    # a record whose mark is gone is never claimed, whatever its claim
    db.put([rec(first[2])], "upsert")
    other.release_claims("w3", [first[2]])
    assert db.claim_pending("w4", 10, 600.0) == []


def test_postgres_claims_before_prepare_marks_and_from_a_new_object(pg_store: Store) -> None:
    db = pg_store.open()
    ids = _pending_records(db, 3)
    assert db.claim_pending("w", 2, 600.0) == ids[:2]  # prepares what it needs first
    fresh = pg_store.open()
    fresh.release_claims("w", ids[:1])  # the table exists: found without prepare_marks
    assert fresh.claim_pending("v", 10, 600.0) == [ids[0], ids[2]]


# == PostgreSQL least privilege ==================================================================
def _admin(statement: str) -> None:
    psycopg = import_or_skip("postgres", "psycopg")
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture
def restricted(pg_store: Store) -> Iterator[Callable[[], Backend]]:
    """A role that may read and write the collection's tables and create nothing; opens
    backends as that role on an admin-made collection (schema of its own)."""
    from dataknobs_data.backends.postgres import PostgresBackend

    suffix = uuid.uuid4().hex[:10]
    role = schema = f"lp_{suffix}"
    _admin(f"CREATE ROLE {role} LOGIN NOCREATEDB NOCREATEROLE")
    _admin(f"CREATE SCHEMA {schema}")
    opened: list[Backend] = []
    try:
        PostgresBackend(URL, collection="docs", schema=schema, pool_size=1).close()
        _admin(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        _admin(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}")
        psycopg = import_or_skip("postgres", "psycopg")
        target = psycopg.conninfo.make_conninfo(URL.split("?")[0], user=role)

        def open_as_role() -> Backend:
            backend = PostgresBackend(target, collection="docs", schema=schema, pool_size=1)
            opened.append(backend)
            return backend

        yield open_as_role
    finally:
        for backend in opened:
            backend.close()
        _admin(f"DROP SCHEMA {schema} CASCADE")
        _admin(f"DROP OWNED BY {role}")
        _admin(f"DROP ROLE {role}")


def test_postgres_least_privilege_role_is_told_what_prepare_marks_needs(
    restricted: Callable[[], Backend],
) -> None:
    from dataknobs_data.backends.postgres import PostgresBackend

    db = restricted()
    schema = db.raw_table()[0]  # type: ignore[attr-defined]
    db.put([marked("a")], "upsert")
    with pytest.raises(PermissionDeniedError) as missing_table:
        db.prepare_marks()
    assert missing_table.value.privilege == f'CREATE on schema "{schema}"'
    assert "dk_claims" in str(missing_table.value)
    _admin(f"GRANT CREATE ON SCHEMA {schema} TO {schema}")  # the role may add the claims table
    with pytest.raises(PermissionDeniedError) as missing_owner:
        db.prepare_marks()
    assert missing_owner.value.privilege == f'ownership of table "{schema}"."docs"'
    assert "CREATE INDEX IF NOT EXISTS" in str(missing_owner.value)  # what the owner runs
    assert db.pending_ids(None, 10) == ["a"]  # still answered (without the index)
    # an administrator (the owner) prepares once; the role then uses what exists
    owner = PostgresBackend(URL, collection="docs", schema=schema, pool_size=1)
    try:
        owner.prepare_marks()
    finally:
        owner.close()
    _admin(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {schema}")
    db.prepare_marks()
    assert db.claim_pending("w", 10, 60.0) == ["a"]
    db.release_claims("w", ["a"])
