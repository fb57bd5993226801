"""The PostgreSQL backend on a real server: all-or-nothing writes, hostile input, a connection
killed mid-batch, reopening, index management and filtered HNSW search.

``scripts/test`` starts a throwaway PostgreSQL with pgvector and exports
``DATAKNOBS_TEST_POSTGRES_URL``; these tests need it (run ``scripts/test``, or export the URL
of your own server).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from dataknobs_data import DatabaseFactory, Record, VectorField
from dataknobs_data.database import AsyncDatabase, SyncDatabase
from dataknobs_data.errors import (
    BackendError,
    BackendUnavailableError,
    DataknobsDataError,
    DuplicateRecordError,
    InvalidIdentifierError,
    SchemaError,
    UnsupportedError,
    ValidationError,
)
from dataknobs_data.query import F
from dataknobs_data.testing import POSTGRES_URL_ENV, import_or_skip
from dataknobs_data.vector.types import DistanceMetric, VectorConfig

psycopg = import_or_skip("postgres", "psycopg")

from dataknobs_data.backends.postgres import PostgresBackend  # noqa: E402

URL = os.environ.get(POSTGRES_URL_ENV, "")
pytestmark = pytest.mark.skipif(not URL, reason=f"{POSTGRES_URL_ENV} unset: run scripts/test")
HOSTILE = "x\"; DROP TABLE records; --'"


def _name() -> str:
    return f"t_{uuid.uuid4().hex[:16]}"


def _url(collection: str) -> str:
    return f"{URL}{'&' if '?' in URL else '?'}collection={collection}"


@pytest.fixture
def collection() -> Iterator[str]:
    name = _name()
    yield name
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP TABLE IF EXISTS {}").format(psycopg.sql.Identifier(name))
        )
        conn.execute("DELETE FROM dk_meta WHERE collection = %s", (name,))


@pytest.fixture
def db(collection: str) -> Iterator[SyncDatabase]:
    database = DatabaseFactory.create(_url(collection))
    yield database
    database.close()


def _rec(i: int, dims: int = 4, **extra: object) -> Record:
    rng = np.random.default_rng(i)
    return Record(
        {"n": i, "cat": i % 100, "emb": rng.standard_normal(dims).astype(np.float32), **extra},
        id=f"r{i:06d}",
    )


# -- all or nothing ---------------------------------------------------------------------------
def test_bad_records_write_nothing(db: SyncDatabase) -> None:
    db.create_batch([_rec(i) for i in range(3)])
    before = [r.to_dict() for r in db.search()]
    bad_batches = [
        [_rec(10), _rec(11, dims=5)],  # wrong dimension
        [_rec(12), Record({"emb": "text"}, id="r13")],  # non-vector under a vector field
        [_rec(14), Record({"s": "nul\x00char"}, id="r15")],  # PostgreSQL cannot store NUL
        [_rec(16), _rec(1)],  # duplicate id
        [_rec(17), Record({"other": np.array([1, 2], dtype=np.float32)}, id="r18"), _rec(2)],
    ]
    for batch in bad_batches:
        with pytest.raises(DataknobsDataError):
            db.create_batch(batch)
        assert [r.to_dict() for r in db.search()] == before
        assert set(db.vector_fields()) == {"emb"}  # no column added by a failed batch
    nan = _rec(20)
    nan.fields["emb"].value.flags.writeable = True
    nan.fields["emb"].value[0] = np.nan
    with pytest.raises(ValidationError):
        db.upsert_batch([_rec(21), nan])
    assert db.count() == 3


def test_failed_bulk_copy_leaves_the_table_unchanged(db: SyncDatabase) -> None:
    db.create_batch([_rec(i) for i in range(5)])
    big = [_rec(i) for i in range(100, 1100)] + [_rec(3)]  # COPY path, last id exists
    with pytest.raises(DuplicateRecordError) as caught:
        db.create_batch(big)
    assert caught.value.record_id == "r000003"  # named, though the key constraint found it
    assert db.count() == 5
    db.create_batch(big[:-1])
    assert db.count() == 1005


def test_hostile_strings_are_data_never_sql(db: SyncDatabase) -> None:
    rec = Record({HOSTILE: HOSTILE, "m": {HOSTILE: [HOSTILE]}}, id=HOSTILE)
    db.create(rec)
    assert db.read(HOSTILE) == rec
    escaped = Record({"s": "a literal \\u0000, not a NUL"}, id="backslash")
    db.create(escaped)  # only a real NUL character is refused
    assert db.read("backslash") == escaped
    assert [r.id for r in db.search(F(HOSTILE) == HOSTILE)] == [HOSTILE]
    assert db.count(F(f"m.{HOSTILE}") == HOSTILE) == 1
    assert db.count(F("_id").like(HOSTILE[:3] + "%")) == 1


@pytest.mark.parametrize("name", [HOSTILE, "records; DROP TABLE x", "pg_class", "dk_meta", "a b"])
def test_hostile_collection_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        DatabaseFactory.create(URL, collection=name)


# -- a dropped connection ---------------------------------------------------------------------
def test_connection_killed_mid_copy_loses_nothing(db: SyncDatabase, collection: str) -> None:
    """A batch whose connection dies is rolled back whole; the retry then writes it once."""
    db.create_batch([_rec(i, dims=64) for i in range(10)])
    batch = [_rec(i, dims=64) for i in range(1000, 41000)]
    errors: list[BaseException] = []

    def load() -> None:
        try:
            db.create_batch(batch)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=load)
    killed = 0
    with psycopg.connect(URL, autocommit=True) as admin:
        worker.start()
        deadline = time.monotonic() + 30
        while not killed and worker.is_alive() and time.monotonic() < deadline:
            row = admin.execute(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE query LIKE %s AND pid <> pg_backend_pid()",
                (f'COPY "public"."{collection}"%',),
            ).fetchone()
            killed = row[0] if row else 0
            time.sleep(0.01)
        worker.join(60)
    assert killed == 1, "the COPY was never seen running; make the batch bigger"
    assert len(errors) == 1 and isinstance(errors[0], BackendError)
    assert db.count() == 10  # nothing of the killed batch is visible
    db.create_batch(batch)  # the pool replaced the dead connection
    assert db.count() == 40010
    assert db.count(F("_id") == "r040999") == 1


# -- reopening and schema ---------------------------------------------------------------------
def test_connection_killed_mid_update_batch_loses_nothing(
    db: SyncDatabase, collection: str
) -> None:
    """The small-batch path (pipelined ``executemany``) killed after most rows were updated:
    the whole batch rolls back, and the retry applies it."""
    db.create_batch([_rec(i) for i in range(20)])
    before = {r.id: r.to_dict() for r in db.search()}
    changed = [_rec(i, note="changed") for i in range(20)]
    errors: list[BaseException] = []

    def upsert() -> None:
        try:
            db.upsert_batch(changed)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=upsert)
    killed = 0
    with psycopg.connect(URL) as admin:  # holds a row lock in its open transaction
        table = psycopg.sql.Identifier(collection)
        admin.execute(
            psycopg.sql.SQL("SELECT 1 FROM {} WHERE id = 'r000019' FOR UPDATE").format(table)
        )
        worker.start()
        with psycopg.connect(URL, autocommit=True) as killer:
            deadline = time.monotonic() + 30
            while not killed and worker.is_alive() and time.monotonic() < deadline:
                row = killer.execute(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                    "FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE %s",
                    (f'UPDATE "public"."{collection}"%',),
                ).fetchone()
                killed = row[0] if row else 0
                time.sleep(0.01)
        admin.rollback()
    worker.join(30)
    assert killed == 1, "the update batch was never seen waiting on the locked row"
    assert len(errors) == 1 and isinstance(errors[0], BackendError)
    assert {r.id: r.to_dict() for r in db.search()} == before
    db.upsert_batch(changed)
    assert db.count(F("note") == "changed") == 20


def test_reopen_keeps_records_schema_and_provenance(collection: str) -> None:
    vec = VectorField(np.ones(4, dtype=np.float32), model_name="m", model_version="1")
    with DatabaseFactory.create(_url(collection)) as db:
        db.create(Record({"title": "a", "emb": vec}, id="a"))
    with DatabaseFactory.create(_url(collection)) as db:
        got = db.read("a")
        assert got is not None and got.fields["emb"].model_name == "m"
        assert db.vector_fields()["emb"].model_label == "m@1"
    with pytest.raises(SchemaError):
        DatabaseFactory.create(_url(collection), vectors={"emb": VectorConfig(8)})


def test_server_info_and_capabilities(db: SyncDatabase) -> None:
    backend = db.backend
    assert isinstance(backend, PostgresBackend)
    assert backend.server.iterative_scans
    caps = db.capabilities()
    assert caps.backend == "postgres"
    assert set(caps.metrics) == set(DistanceMetric)
    assert {"hnsw", "ivfflat"} <= caps.index_types


def test_missing_extension_that_cannot_be_created_is_explained() -> None:
    database, role = f"dk_noext_{uuid.uuid4().hex[:8]}", f"dk_role_{uuid.uuid4().hex[:8]}"
    ident = psycopg.sql.Identifier
    with psycopg.connect(URL, autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("CREATE ROLE {} LOGIN").format(ident(role)))
        admin.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(ident(database)))
        admin.execute(
            psycopg.sql.SQL("REVOKE CREATE ON DATABASE {} FROM PUBLIC").format(ident(database))
        )
        try:
            info = psycopg.conninfo.conninfo_to_dict(URL)
            target = psycopg.conninfo.make_conninfo(URL, dbname=database, user=role)
            assert info.get("dbname") != database
            with pytest.raises(BackendUnavailableError, match="CREATE EXTENSION vector"):
                PostgresBackend(target)
        finally:
            admin.execute(psycopg.sql.SQL("DROP DATABASE {}").format(ident(database)))
            admin.execute(psycopg.sql.SQL("DROP ROLE {}").format(ident(role)))


# -- indexes ----------------------------------------------------------------------------------
def _clustered(n: int, dims: int) -> list[Record]:
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((20, dims)).astype(np.float32)
    vectors = centers[rng.integers(0, 20, n)] + 0.3 * rng.standard_normal((n, dims))
    return [
        Record({"n": i, "cat": i % 1000, "emb": vectors[i].astype(np.float32)}, id=f"r{i:06d}")
        for i in range(n)
    ]


@pytest.mark.parametrize(("selectivity", "k"), [(0.01, 10), (0.001, 8)])
def test_filtered_hnsw_search_returns_k_rows(db: SyncDatabase, selectivity: float, k: int) -> None:
    n = 8000
    records = _clustered(n, 16)
    db.create_batch(records)
    stats = db.create_vector_index("emb", kind="hnsw", m=8, ef_construction=32)
    assert stats["type"] == "hnsw" and stats["rows"] == n and stats["size_bytes"] > 0
    matching = int(n * selectivity)
    flt = F("cat") < int(1000 * selectivity)
    assert db.count(flt) == matching >= k
    for q in (records[1].fields["emb"].value, records[4321].fields["emb"].value):
        hits = db.vector_search(q, k=k, filter=flt)
        assert len(hits) == k
        assert all(h.record.fields["cat"].value < 1000 * selectivity for h in hits)
        assert [h.distance for h in hits] == sorted(h.distance for h in hits)


def test_per_query_search_params_reach_the_index(db: SyncDatabase) -> None:
    """``exact=True`` bypasses the index (exact top-k); a tiny ``ef_search`` really narrows the
    HNSW search (its recall drops), a large one restores it; k rows come back either way."""
    n = 6000
    records = _clustered(n, 16)
    db.create_batch(records)
    db.create_vector_index("emb", kind="hnsw", m=8, ef_construction=32)
    rng = np.random.default_rng(7)
    queries = [
        (records[i].fields["emb"].value + 0.3 * rng.standard_normal(16)).astype(np.float32)
        for i in range(0, n, n // 40)
    ]
    truth = [
        [h.id for h in db.vector_search(q, k=10, search_params={"exact": True})] for q in queries
    ]
    matrix = np.stack([r.fields["emb"].value for r in records]).astype(np.float64)
    for q, ids in zip(queries[:5], truth, strict=False):
        sims = matrix @ q / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(q))
        assert ids == [records[i].id for i in np.argsort(-sims, kind="stable")[:10]]

    def recall(ef: int) -> float:
        found = 0
        for q, ids in zip(queries, truth, strict=True):
            hits = db.vector_search(q, k=10, search_params={"ef_search": ef})
            assert len(hits) == 10
            found += len({h.id for h in hits} & set(ids))
        return found / (10 * len(queries))

    low, high = recall(1), recall(400)
    assert low < high
    assert high >= 0.95


def test_index_lifecycle_sync_and_async(collection: str) -> None:
    records = _clustered(3000, 8)
    with DatabaseFactory.create(_url(collection)) as db:
        db.create_batch(records)
        assert db.get_vector_index_stats("emb")["type"] == "flat"
        with pytest.raises(ValidationError):
            db.create_vector_index("emb", kind="annoy")
        stats = db.create_vector_index("emb", kind="ivfflat", lists=5)
        assert stats["params"] == {"lists": 5}
        with pytest.raises(SchemaError):
            db.create_vector_index("emb")
        exact = DatabaseFactory.create(_url(collection), exact=True)
        query = records[9].fields["emb"].value
        want = [h.record.id for h in exact.vector_search(query, k=5)]
        exact.close()
        got = [h.record.id for h in db.vector_search(query, k=5)]
        assert len(set(got) & set(want)) >= 4
        optimized = db.optimize_vector_index("emb")
        assert optimized["params"] == {"lists": 3}  # re-derived: rows / 1000
    adb = DatabaseFactory.create_async(_url(collection))

    async def run() -> None:
        assert (await adb.get_vector_index_stats("emb"))["type"] == "ivfflat"
        assert await adb.drop_vector_index("emb") is True
        assert await adb.drop_vector_index("emb") is False
        auto = await adb.create_vector_index("emb")
        assert auto["type"] == "hnsw" and auto["params"] == {"m": 16, "ef_construction": 64}
        await adb.close()

    import asyncio

    asyncio.run(run())
    assert isinstance(adb, AsyncDatabase)


def test_backends_without_indexes_refuse_index_management() -> None:
    with DatabaseFactory.create("memory://") as db:
        with pytest.raises(UnsupportedError):
            db.create_vector_index("emb")
        with pytest.raises(UnsupportedError):
            db.get_vector_index_stats("emb")


# -- halfvec storage --------------------------------------------------------------------------
def test_halfvec_storage_rounds_to_float16_and_searches(collection: str) -> None:
    """``vector_storage="halfvec"``: float16 columns (copy and insert paths), values back
    rounded to float16, exact and HNSW search on them, out-of-range values refused up front."""
    db = DatabaseFactory.create(_url(collection), vector_storage="halfvec")
    try:
        rng = np.random.default_rng(3)
        vectors = rng.standard_normal((300, 24)).astype(np.float32)
        records = [Record({"n": i, "emb": vectors[i]}, id=f"h{i:04d}") for i in range(300)]
        db.create_batch(records[:200])  # COPY path
        db.create_batch(records[200:210])  # executemany path
        db.upsert(records[0])  # update path
        assert db.count() == 210
        with psycopg.connect(URL, autocommit=True) as conn:
            kind = conn.execute(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attname = 'vec0'",
                (collection,),
            ).fetchone()
        assert kind == ("halfvec(24)",)
        got = db.read("h0205")
        assert got is not None
        stored = got.fields["emb"].value
        assert np.array_equal(stored, vectors[205].astype(np.float16).astype(np.float32))
        assert not np.array_equal(stored, vectors[205])  # really rounded
        q = vectors[7]
        exact = db.vector_search(q, k=5)
        assert exact[0].id == "h0007"
        db.create_vector_index("emb", kind="hnsw", m=8, ef_construction=32)
        assert [h.id for h in db.vector_search(q, k=5, search_params={"ef_search": 200})] == [
            h.id for h in exact
        ]
        too_big = Record({"emb": np.full(24, 70000.0, dtype=np.float32)}, id="big")
        with pytest.raises(ValidationError, match="float16"):
            db.create_batch([records[250], too_big])
        assert db.count() == 210
    finally:
        db.close()


def test_unknown_vector_storage_is_refused() -> None:
    with pytest.raises(ValidationError, match="vector_storage"):
        DatabaseFactory.create(URL, collection=_name(), vector_storage="float16")


# -- native asyncio ---------------------------------------------------------------------------
def test_async_reads_run_natively_without_worker_threads(
    collection: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The async shell awaits psycopg's async API for reads and vector search (no thread per
    call), returns what the blocking shell returns, and survives a second event loop."""
    import asyncio

    records = _clustered(300, 16)
    sync_db = DatabaseFactory.create(_url(collection))
    sync_db.create_batch(records)
    q = records[5].fields["emb"].value
    flt = F("cat") < 500
    expected = (
        [(h.id, h.score) for h in sync_db.vector_search(q, k=5, filter=flt)],
        [r.id for r in sync_db.search(flt)],
        sync_db.count(flt),
        sync_db.read("r000007"),
    )
    threaded: list[str] = []
    real = asyncio.to_thread

    async def counting(fn: object, *args: object, **kwargs: object) -> object:
        threaded.append(getattr(fn, "__name__", repr(fn)))
        return await real(fn, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(asyncio, "to_thread", counting)
    adb = DatabaseFactory.create_async(_url(collection))

    async def reads() -> tuple[object, ...]:
        hits = await adb.vector_search(q, k=5, filter=flt)
        return (
            [(h.id, h.score) for h in hits],
            [r.id for r in await adb.search(flt)],
            await adb.count(flt),
            await adb.read("r000007"),
        )

    try:
        threaded.clear()
        assert asyncio.run(reads()) == expected
        assert threaded == []  # every call above was awaited natively
        assert asyncio.run(reads()) == expected  # a new loop gets a new async pool
        assert threaded == []
    finally:
        asyncio.run(adb.close())
        sync_db.close()


# -- large updates (COPY into a temporary table, then one UPDATE ... FROM) ---------------------
def test_large_update_batches_replace_every_column(db: SyncDatabase) -> None:
    """Batches of updates past COPY_MIN take the COPY path: every column is replaced (fields
    added and removed, a vector dropped, another changed), twice in one transaction too."""
    from dataknobs_data.backends.postgres.bulk import COPY_MIN

    n = COPY_MIN * 3
    db.create_batch([_rec(i, tag="old") for i in range(n)])
    changed = [
        Record({"n": -i, "emb": np.full(4, i + 1, dtype=np.float32), "note": "new"}, id=f"r{i:06d}")
        if i % 2
        else Record({"n": -i, "note": "no vector"}, id=f"r{i:06d}")
        for i in range(n)
    ]
    assert db.update_batch(changed) == [True] * n
    got = db.read_batch([r.id for r in changed])
    for want, have in zip(changed, got, strict=True):
        assert have is not None and have.to_plain().keys() == want.to_plain().keys()
        assert have["n"] == want["n"] and "tag" not in have
        if "emb" in want:
            assert np.array_equal(have["emb"], want["emb"])
    hits = db.vector_search(np.full(4, 3, dtype=np.float32), k=n, field="emb")
    assert {h.id for h in hits} == {r.id for r in changed if "emb" in r}
    backend = db.backend
    with backend.write_lock():  # two large updates in one transaction reuse the temp table
        backend.put(changed[: COPY_MIN * 2], "update")
        backend.put([Record({"n": 7}, id=r.id) for r in changed[:COPY_MIN]], "update")
    assert [r["n"] for r in db.read_batch([r.id for r in changed[:3]]) if r] == [7, 7, 7]
    assert db.count() == n
