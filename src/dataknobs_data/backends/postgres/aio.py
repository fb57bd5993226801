"""Native asyncio for the PostgreSQL backend's reads and vector search (psycopg's async API).

:class:`~dataknobs_data.database.AsyncDatabase` awaits these coroutines instead of sending the
call to a worker thread: ``read``/``read_batch``/``exists``, ``search``/``count`` and
``vector_search``/``vector_search_batch`` run on an :class:`psycopg_pool.AsyncConnectionPool`
in the caller's event loop, so many concurrent searches need no threads. Everything here is
I/O: statements, row handling and ranking are the sync backend's own pure methods, and a
vector search's statements come from :func:`.knn.candidate_steps`, driven by the async driver.

Writes, schema and index management, and ``stream`` still run in a worker thread on the
blocking pool: they are multi-statement transactions (COPY, advisory locks) where a thread
costs nothing measurable next to the work.

The pool is opened on first use in the running loop; used from another loop later (a second
``asyncio.run``), it is replaced, since an asyncio pool belongs to the loop that opened it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg import sql

from ...contract import AsyncOps
from ...errors import BackendError
from ...query import Filter, Query
from ...records import Record
from ...vector.types import VectorSearchResult
from .connect import PgTarget, array_loaders, connect_error, pool_args
from .knn import find_candidates_async, settings_sql

if TYPE_CHECKING:
    from ...contract import VectorSearchRequest
    from .backend import PostgresBackend

__all__ = ["AsyncPostgres"]

T = TypeVar("T")


async def _configure(conn: Any) -> None:
    from pgvector.psycopg import register_vector_async

    await register_vector_async(conn)
    for name, loader in array_loaders(conn):
        conn.adapters.register_loader(name, loader)


class AsyncPostgres(AsyncOps):
    """The coroutine counterparts of :class:`PostgresBackend`'s read methods (same names)."""

    def __init__(self, backend: PostgresBackend, conninfo: str | PgTarget, max_size: int) -> None:
        self._backend = backend
        self._conninfo = conninfo
        self._max_size = max_size
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

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[psycopg.AsyncCursor[Any]]:
        """An autocommit binary cursor, with the stored schema re-read if another writer may
        have changed it (as the blocking backend's ``_read``)."""
        backend = self._backend
        pool = await self._open()
        try:
            async with pool.connection() as conn, conn.cursor(binary=True) as cur:
                if backend.stale:
                    await cur.execute(*backend.meta_query())
                    backend.apply_meta(await cur.fetchall())
                yield cur
        except psycopg.Error as exc:
            raise backend.translate(exc) from exc

    async def _retrying(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Once more with a fresh schema if another writer changed it meanwhile."""
        try:
            return await fn()
        except BackendError:
            if not self._backend.stale:
                raise
            return await fn()

    async def _rows(self, stmt: Any, params: Any) -> list[tuple[Any, ...]]:
        async with self._read() as cur:
            await cur.execute(stmt, params)
            return await cur.fetchall()

    # -- the native methods (named as the backend's) --------------------------------------
    async def get(self, ids: Sequence[str]) -> list[Record | None]:
        backend = self._backend

        async def run() -> list[Record | None]:
            rows = await self._rows(*backend.fetch_query(list(dict.fromkeys(ids))))
            return backend.assemble(ids, rows)

        return await self._retrying(run)

    async def contains(self, ids: Sequence[str]) -> list[bool]:
        known = {r[0] for r in await self._rows(*self._backend.existing_query(ids))}
        return [i in known for i in ids]

    async def search(self, query: Query) -> list[Record]:
        backend = self._backend

        async def run() -> list[Record]:
            rows = await self._rows(*backend.select_query(query))
            return backend.build(rows, query.projection)

        return await self._retrying(run)

    async def count(self, condition: Filter | None) -> int:
        rows = await self._rows(*self._backend.count_query(condition))
        return int(rows[0][0])

    async def vector_search(self, request: VectorSearchRequest) -> list[list[VectorSearchResult]]:
        backend = self._backend

        async def run() -> list[list[VectorSearchResult]]:
            async with self._read() as cur:
                field, metric, plan = backend.knn_plan(request)

                async def execute(stmt: sql.Composed | bytes, params: dict[str, Any]) -> Any:
                    await cur.execute(stmt, params)
                    return await cur.fetchall()

                async def settings(values: dict[str, str]) -> None:
                    todo = backend.settings_todo(cur.connection, values)
                    if todo:
                        await cur.execute(settings_sql(todo))
                        backend.settings_applied(cur.connection, todo)

                return [
                    backend.ranked(
                        await find_candidates_async(execute, settings, plan, query, request.k),
                        field,
                        metric,
                        query,
                        request,
                    )
                    for query in request.vectors
                ]

        return await self._retrying(run)

    async def aclose(self) -> None:
        """Close the async pool (the blocking pool closes with the backend). A pool opened in
        an event loop that is gone cannot be awaited any more; it is dropped, and its
        connections close when collected."""
        pool, loop, self._pool, self._loop = self._pool, self._loop, None, None
        if pool is not None and loop is asyncio.get_running_loop():
            await pool.close()
