"""The PostgreSQL reads written once as step generators (``backends/postgres/flows.py``), run by
both drivers, the blocking backend and the asyncio one: a handle whose stored schema another
writer has changed retries once with the schema re-read, and a statement that fails on a dead
connection is reported into the flow, whose retry gets a fresh connection.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import numpy as np
import pytest

from dataknobs_data import DatabaseFactory, Record, VectorField
from dataknobs_data.database import AsyncDatabase, SyncDatabase
from dataknobs_data.testing import POSTGRES_URL_ENV, import_or_skip

psycopg = import_or_skip("postgres", "psycopg")

URL = os.environ.get(POSTGRES_URL_ENV, "")
pytestmark = pytest.mark.skipif(not URL, reason=f"{POSTGRES_URL_ENV} unset: run scripts/test")

Read = Callable[..., Awaitable[Any]]


def _url(collection: str) -> str:
    return f"{URL}{'&' if '?' in URL else '?'}collection={collection}"


def _vec(seed: int, dims: int) -> VectorField:
    return VectorField(np.random.default_rng(seed).standard_normal(dims).astype(np.float32))


@pytest.fixture
def collection() -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    yield name
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP TABLE IF EXISTS {}").format(psycopg.sql.Identifier(name))
        )
        conn.execute("DELETE FROM dk_meta WHERE collection = %s", (name,))


def _scenario(
    collection: str,
    driver: str,
    body: Callable[[SyncDatabase | AsyncDatabase, Read], Any],
    **options: Any,
) -> None:
    """Run ``body(reader, call)`` in one event loop (one async pool for the whole scenario),
    ``call(method, *args, **kwargs)`` awaiting the reader's method on either shell."""
    url = _url(collection)
    reader: SyncDatabase | AsyncDatabase = (
        DatabaseFactory.create(url, **options)
        if driver == "sync"
        else DatabaseFactory.create_async(url, **options)
    )

    async def call(method: str, *args: Any, **kwargs: Any) -> Any:
        out = getattr(reader, method)(*args, **kwargs)
        return await out if inspect.isawaitable(out) else out

    async def run() -> None:
        try:
            await body(reader, call)
        finally:
            closed = reader.close()
            if inspect.isawaitable(closed):
                await closed

    asyncio.run(run())


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_read_retries_once_when_another_writer_added_a_vector_field(
    collection: str, driver: str
) -> None:
    writer = DatabaseFactory.create(_url(collection))
    writer.create_batch([Record({"n": i, "emb": _vec(i, 4)}, id=f"r{i}") for i in range(3)])

    async def body(reader: SyncDatabase | AsyncDatabase, call: Read) -> None:
        assert (await call("read", "r1")).to_dict() == writer.read("r1").to_dict()
        for step, method, args in [
            (1, "read", ("x1",)),
            (2, "search", ()),
            (3, "read_batch", (["x3", "r0", "x3"],)),
        ]:
            writer.create(Record({"n": 9, f"extra{step}": _vec(step, 8)}, id=f"x{step}"))
            # the reader's schema looks current, so only the retry can read the new field
            assert not reader.backend.stale
            got = await call(method, *args)
            want = getattr(writer, method)(*args)
            if isinstance(want, list):
                assert [r.to_dict() for r in got] == [r.to_dict() for r in want]
            else:
                assert got.to_dict() == want.to_dict()
        assert not reader.backend.stale

    try:
        _scenario(collection, driver, body)
    finally:
        writer.close()


def test_a_scan_page_retries_once_when_another_writer_added_a_vector_field(
    collection: str,
) -> None:
    writer = DatabaseFactory.create(_url(collection))
    reader = DatabaseFactory.create(_url(collection))
    try:
        writer.create_batch([Record({"n": i, "emb": _vec(i, 4)}, id=f"r{i}") for i in range(4)])
        pages = reader.stream(batch_size=2)
        assert [r.id for r in (next(pages), next(pages))] == ["r0", "r1"]
        writer.upsert(Record({"n": 2, "emb": _vec(2, 4), "extra": _vec(7, 8)}, id="r2"))
        assert not reader.backend.stale
        rest = list(pages)
        assert [r.id for r in rest] == ["r2", "r3"]
        assert np.array_equal(rest[0].fields["extra"].value, _vec(7, 8).value)
    finally:
        reader.close()
        writer.close()


@pytest.mark.parametrize("driver", ["sync", "async"])
def test_a_read_on_a_dead_connection_is_retried_on_a_fresh_one(
    collection: str, driver: str
) -> None:
    writer = DatabaseFactory.create(_url(collection))
    writer.create_batch([Record({"n": i, "emb": _vec(i, 4)}, id=f"r{i}") for i in range(3)])
    q = _vec(1, 4).value

    hits = [(h.id, h.score) for h in writer.vector_search(q, k=2)]
    record = writer.read("r1")
    assert record is not None and len(hits) == 2

    async def body(reader: SyncDatabase | AsyncDatabase, call: Read) -> None:
        for method, args, kwargs, check in [
            ("read", ("r1",), {}, lambda got: got.to_dict() == record.to_dict()),
            ("search", (), {}, lambda got: [r.id for r in got] == ["r0", "r1", "r2"]),
            ("vector_search", (q,), {"k": 2}, lambda got: [(h.id, h.score) for h in got] == hits),
        ]:
            # the reader's one pooled connection is live, then killed while idle
            assert check(await call(method, *args, **kwargs))
            with psycopg.connect(URL, autocommit=True) as admin:
                row = admin.execute(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                    "FROM pg_stat_activity WHERE state = 'idle' AND query LIKE %s",
                    (f'%"{collection}"%',),
                ).fetchone()
            assert row is not None and row[0] >= 1
            assert check(await call(method, *args, **kwargs))

    try:
        _scenario(collection, driver, body, pool_size=1)
    finally:
        writer.close()
