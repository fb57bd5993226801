"""Native asyncio for the PostgreSQL backend's reads and vector search (psycopg's async API).

:class:`~dataknobs_data.database.AsyncDatabase` awaits these coroutines instead of sending the
call to a worker thread: ``read``/``read_batch``/``exists``, ``search``/``count`` and
``vector_search``/``vector_search_batch`` run on an :class:`psycopg_pool.AsyncConnectionPool`
in the caller's event loop, so many concurrent searches need no threads. This module is only
the asyncio driver of the reads in :mod:`.flows` (the blocking backend drives the same flows):
statements, the schema re-read and retry, row handling and ranking all live there.

Writes, schema and index management, and ``stream`` still run in a worker thread on the
blocking pool: they are multi-statement transactions (COPY, advisory locks) where a thread
costs nothing measurable next to the work.

The pool is opened on first use in the running loop; used from another loop later (a second
``asyncio.run``), it is replaced, since an asyncio pool belongs to the loop that opened it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, TypeVar

import psycopg

from ...contract import AsyncOps, VectorSearchRequest
from ...query import Filter, Query
from ...records import Record
from ...vector.types import VectorSearchResult
from . import flows
from .connect import PgTarget, array_loaders, connect_error, pool_args
from .flows import Flow, Reads, Run, SessionSettings

__all__ = ["AsyncPostgres"]

T = TypeVar("T")


async def _configure(conn: Any) -> None:
    from pgvector.psycopg import register_vector_async

    await register_vector_async(conn)
    for name, loader in array_loaders(conn):
        conn.adapters.register_loader(name, loader)


class AsyncPostgres(AsyncOps):
    """The coroutine counterparts of :class:`PostgresBackend`'s read methods (same names)."""

    def __init__(self, state: Reads, conninfo: str | PgTarget, max_size: int) -> None:
        self._state = state
        self._conninfo = conninfo
        self._max_size = max_size
        self._settings = SessionSettings()
        self._pool: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def _open(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._pool is not None and self._loop is loop:
            return self._pool
        from psycopg_pool import AsyncConnectionPool

        pool = AsyncConnectionPool(
            min_size=1,
            max_size=self._max_size,
            configure=_configure,
            open=False,
            **pool_args(self._conninfo),
        )
        try:
            await pool.open(wait=True, timeout=30)
        except Exception as exc:
            await pool.close()
            raise connect_error(exc, self._conninfo, "open an async connection pool") from exc
        self._pool, self._loop = pool, loop
        return pool

    async def _run(self, flow: Flow[T]) -> T:
        """Drive a read (:mod:`.flows`) on pooled autocommit binary async cursors (as the
        blocking backend does; a retry after a failed statement on a fresh connection)."""
        with Run(self._state, self._settings, flow) as run:
            while run.pending:
                pool = await self._open()
                try:
                    async with pool.connection() as conn, conn.cursor(binary=True) as cur:
                        while (todo := run.statement(conn)) is not None:
                            await cur.execute(*todo, prepare=flows.prepare_option(todo[1]))
                            run.send(await cur.fetchall())
                except psycopg.Error as exc:
                    run.fail(exc)
            return run.result

    # -- the native methods (named as the backend's) --------------------------------------
    async def get(self, ids: Sequence[str]) -> list[Record | None]:
        return await self._run(flows.get(self._state, ids))

    async def contains(self, ids: Sequence[str]) -> list[bool]:
        return await self._run(flows.contains(self._state, ids))

    async def search(self, query: Query) -> list[Record]:
        return await self._run(flows.search(self._state, query))

    async def count(self, condition: Filter | None) -> int:
        return await self._run(flows.count(self._state, condition))

    async def vector_search(self, request: VectorSearchRequest) -> list[list[VectorSearchResult]]:
        return await self._run(flows.vector_search(self._state, request))

    async def aclose(self) -> None:
        """Close the async pool (the blocking pool closes with the backend). A pool opened in
        an event loop that is gone cannot be awaited any more; it is dropped, and its
        connections close when collected."""
        pool, loop, self._pool, self._loop = self._pool, self._loop, None, None
        if pool is not None and loop is asyncio.get_running_loop():
            await pool.close()
