"""The public database API, written once, and its synchronous and asynchronous shells.

A backend (:class:`~dataknobs_data.contract.Backend`) implements storage once, receiving only
validated, typed input. Every public method is written once, in :class:`_Shell`, as a *plan*:
its signature, its docstring and a body that validates the arguments (types, ids, capability
checks) and returns the backend :class:`Call` to make. :class:`SyncDatabase` and
:class:`AsyncDatabase` are derived from those plans (:mod:`dataknobs_data.plans`): the sync shell
runs the call directly; the async shell runs it in a worker thread (``asyncio.to_thread``) for
embedded engines, so the event loop never blocks on numpy or SQLite, or awaits the backend's
native coroutine (:attr:`Backend.async_ops`: PostgreSQL on psycopg's async API).
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from functools import partial
from types import TracebackType
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from .capabilities import Capabilities, Feature
from .contract import AsyncOps, Backend, Call, VectorSearchRequest, WriteHook, WriteMode
from .errors import (
    DatabaseClosedError,
    DuplicateRecordError,
    QueryError,
    ValidationError,
)
from .fields import as_vector, validate_field_name
from .ints import checked_int, hits_cap
from .loading import LoadPlan, LoadReport, run_load
from .plans import Awaiting, Blocking, Pages, Plan
from .query import Filter, Query, VectorQuery, coerce_filter, knn_options
from .records import Record, validate_record_id
from .redaction import redact_url
from .text import TextSearchRequest, TextSearchResult, query_words, text_search_options
from .vector.params import search_params as check_search_params
from .vector.sync.tracker import open_tracker
from .vector.types import DistanceMetric, VectorConfig, VectorSearchResult

__all__ = [
    "AsyncDatabase",
    "SyncDatabase",
]
# The backend contract moved to :mod:`dataknobs_data.contract`; these names stay importable
# from here for code written against earlier releases.
_CONTRACT = (AsyncOps, Backend, Call, VectorSearchRequest, WriteMode)

T = TypeVar("T")
#: ``create_vector_index(kind=...)``: ``auto`` lets the backend choose by size
INDEX_KINDS = ("auto", "hnsw", "ivfflat")
FilterLike = Query | Filter | Mapping[str, Any] | None


def _check_records(records: Iterable[Record], what: str) -> list[Record]:
    """Records of one batch: of the right type and without a repeated id."""
    out: list[Record] = []
    seen: set[str] = set()
    for rec in records:
        if not isinstance(rec, Record):
            raise ValidationError(f"{what} expects Record objects, got {type(rec).__name__}")
        if rec.id in seen:
            raise DuplicateRecordError(rec.id, "appears twice in one batch")
        seen.add(rec.id)
        out.append(rec)
    return out


def _check_ids(ids: Iterable[str]) -> list[str]:
    if isinstance(ids, str):
        raise ValidationError("expected a list of ids, got a single string")
    return [validate_record_id(i) for i in ids]


def _as_query(query: Query | Filter | Mapping[str, Any] | None) -> Query:
    if query is None:
        return Query()
    if isinstance(query, Query):
        return query
    if isinstance(query, Mapping) and set(query) & {"filter", "sort", "limit", "offset", "fields"}:
        return Query.from_dict(query)
    return Query(coerce_filter(query))


def _paged_count(query: Query) -> Callable[[int], int]:
    def apply(total: int) -> int:
        remaining = max(0, total - query.skip)
        return remaining if query.take is None else min(remaining, query.take)

    return apply


def _as_matrix(field: str | None, vectors: Any) -> npt.NDArray[np.float32]:
    if isinstance(vectors, np.ndarray) and vectors.ndim == 2:
        rows = [as_vector(field, row) for row in vectors] if vectors.shape[0] else []
    else:
        rows = [as_vector(field, v) for v in vectors]
    if not rows:
        return np.zeros((0, 1), dtype=np.float32)
    if len({r.shape[0] for r in rows}) != 1:
        raise ValidationError("query vectors of one batch must have the same length")
    return np.ascontiguousarray(np.stack(rows))


class _Shell:
    """The public API, written once: each :class:`Plan` validates and returns the call to run.

    A plan holds its method's only signature and docstring; :class:`SyncDatabase` runs the
    call it returns and :class:`AsyncDatabase` awaits it (see :mod:`dataknobs_data.plans`).
    """

    def __init__(self, backend: Backend, *, url: str | None = None) -> None:
        self._backend = backend
        self._url = url
        self._closed = False
        #: the write hook of :mod:`dataknobs_data.vector.sync`, installed when the data has
        #: vectorizing rules (``None``: writes go straight to the backend)
        self._tracker: WriteHook | None = open_tracker(backend)

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def url(self) -> str | None:
        return self._url

    @property
    def tracker(self) -> WriteHook | None:
        """The change tracker every write goes through (see :mod:`dataknobs_data.vector.sync`),
        or ``None`` when the data has no vectorizing rules."""
        return self._tracker

    def set_tracker(self, tracker: WriteHook | None) -> None:
        """Install (or with ``None`` remove) the write hook; the synchroniser does this."""
        if tracker is not None and not isinstance(tracker, WriteHook):
            raise ValidationError(f"expected a WriteHook, got {type(tracker).__name__}")
        self._tracker = tracker

    def _writer(self) -> Callable[[Sequence[Record], WriteMode], list[bool]]:
        """The write path: through the tracker when one is installed."""
        backend, tracker = self._live(), self._tracker
        if tracker is None:
            return backend.put
        return partial(tracker.put, backend)

    def _remover(self) -> Callable[[Sequence[str]], list[bool]]:
        backend, tracker = self._live(), self._tracker
        if tracker is None:
            return backend.remove

        def remove(ids: Sequence[str]) -> list[bool]:
            gone = backend.remove(ids)
            tracker.removed(backend, [i for i, g in zip(ids, gone, strict=True) if g])
            return gone

        return remove

    def _live(self) -> Backend:
        if self._closed:
            raise DatabaseClosedError(f"database {redact_url(self._url)} is closed")
        return self._backend

    def _checked_filter(self, query: Query) -> Query:
        self._backend.capabilities().check_filter(query.condition)
        return query

    def _checked_records(self, records: Iterable[Record], what: str) -> list[Record]:
        """:func:`_check_records`, and no vector wider than the backend stores."""
        recs = _check_records(records, what)
        caps = self._backend.capabilities()
        if caps.max_dimensions is not None:
            for rec in recs:
                for name, vf in rec.vector_fields().items():
                    caps.check_dimensions(name, vf.dimensions)
        return recs

    # -- writes -----------------------------------------------------------------------------
    def _put_one(self, record: Record, mode: WriteMode) -> Call[str]:
        """Write one record; the call returns its id."""
        (rec,) = self._checked_records([record], mode)
        return Call(self._writer(), [rec], mode, then=lambda _: rec.id)

    def _put_all(self, records: Iterable[Record], mode: WriteMode, what: str) -> Call[list[str]]:
        """Write a batch in one all-or-nothing step; the call returns the ids in order."""
        recs = self._checked_records(records, what)
        return Call(self._writer(), recs, mode, then=lambda _: [r.id for r in recs])

    @Plan
    def create(self, record: Record) -> Call[str]:
        """Store a new record; :class:`DuplicateRecordError` if its id exists. Returns the id."""
        return self._put_one(record, "create")

    @Plan
    def create_batch(self, records: Iterable[Record]) -> Call[list[str]]:
        """Store new records in one all-or-nothing step; returns their ids in order."""
        return self._put_all(records, "create", "create_batch")

    @Plan
    def load(
        self,
        records: Iterable[Record],
        *,
        batch_size: int = 10_000,
        skip_existing: bool = False,
        index: str | None = None,
        index_field: str | None = None,
        index_params: Mapping[str, int] | None = None,
        progress: bool = False,
    ) -> Call[LoadReport]:
        """Bulk-load any number of new records in all-or-nothing batches of ``batch_size``
        (see :mod:`dataknobs_data.loading`). ``skip_existing=True`` skips stored ids, so re-running
        a load that died continues it; ``index="auto"|"hnsw"|"ivfflat"`` drops the field's index
        before loading and builds it once afterwards (``index_params``: ``m``,
        ``ef_construction``, ``lists``); ``progress=True`` shows a tqdm bar."""
        backend = self._live()
        write = self._writer()
        plan = LoadPlan.build(
            batch_size, skip_existing, index, index_field, index_params, progress, INDEX_KINDS
        )
        if plan.index is not None and not backend.manages_indexes():
            raise backend.no_indexes_error()
        if isinstance(records, Record | str | bytes | Mapping):
            raise ValidationError("load expects an iterable of Record objects")
        return Call(
            partial(
                run_load,
                write=lambda batch: write(batch, "create"),
                contains=backend.contains,
                vector_fields=lambda: list(backend.vector_schema()),
                drop_index=backend.drop_vector_index,
                create_index=lambda field, kind, params: backend.create_vector_index(
                    field, kind, params.get("m"), params.get("ef_construction"), params.get("lists")
                ),
                check=lambda batch: self._checked_records(batch, "load"),
            ),
            plan,
            records,
        )

    @Plan
    def update(self, record_id: str, record: Record) -> Call[bool]:
        """Replace the stored record's fields; ``False`` (nothing written) if it doesn't exist."""
        rid = validate_record_id(record_id)
        (rec,) = self._checked_records([record], "update")
        stored = rec if rec.id == rid else Record.trusted(rid, dict(rec.fields), rec.metadata)
        return Call(self._writer(), [stored], "update", then=lambda flags: bool(flags[0]))

    @Plan
    def update_batch(self, records: Iterable[Record]) -> Call[list[bool]]:
        """Replace existing records (by their ids); per record, whether it existed."""
        recs = self._checked_records(records, "update_batch")
        return Call(self._writer(), recs, "update", then=list)

    @Plan
    def upsert(self, record: Record) -> Call[str]:
        """Create or replace; returns the id."""
        return self._put_one(record, "upsert")

    @Plan
    def upsert_batch(self, records: Iterable[Record]) -> Call[list[str]]:
        """Create or replace many records in one all-or-nothing step; returns their ids."""
        return self._put_all(records, "upsert", "upsert_batch")

    @Plan
    def delete(self, record_id: str) -> Call[bool]:
        """Remove a record; ``False`` if it did not exist."""
        return Call(self._remover(), [validate_record_id(record_id)], then=lambda f: f[0])

    @Plan
    def delete_batch(self, ids: Iterable[str]) -> Call[list[bool]]:
        """Remove records (no id twice); per id, whether it existed."""
        checked = _check_ids(ids)
        if len(set(checked)) != len(checked):
            raise ValidationError("delete_batch got the same id twice")
        return Call(self._remover(), checked)

    @Plan
    def clear(self) -> Call[int]:
        """Delete every record (the vector schema stays); returns how many were removed."""
        return Call(self._live().clear)

    # -- reads ------------------------------------------------------------------------------
    @Plan
    def read(self, record_id: str) -> Call[Record | None]:
        """A fresh copy of the record, or ``None``."""
        return Call(
            self._live().get,
            [validate_record_id(record_id)],
            then=lambda rs: rs[0],
            native=AsyncOps.get,
        )

    @Plan
    def read_batch(self, ids: Iterable[str]) -> Call[list[Record | None]]:
        """Records in the order asked (``None`` where absent)."""
        return Call(self._live().get, _check_ids(ids), native=AsyncOps.get)

    @Plan
    def exists(self, record_id: str) -> Call[bool]:
        """Whether a record with this id is stored (without reading it)."""
        return Call(
            self._live().contains,
            [validate_record_id(record_id)],
            then=lambda f: f[0],
            native=AsyncOps.contains,
        )

    @Plan
    def search(self, query: Query | Filter | Mapping[str, Any] | None = None) -> Call[list[Record]]:
        """Records matching the query, sorted and paged as it says."""
        return Call(
            self._live().search, self._checked_filter(_as_query(query)), native=AsyncOps.search
        )

    @Plan
    def count(self, query: Query | Filter | Mapping[str, Any] | None = None) -> Call[int]:
        """How many records :meth:`search` would return for this query."""
        q = self._checked_filter(_as_query(query))
        return Call(self._live().count, q.condition, then=_paged_count(q), native=AsyncOps.count)

    @Pages
    def stream(
        self, query: FilterLike = None, *, batch_size: int = 1000
    ) -> Call[Iterator[list[Record]]]:
        """Iterate over the query's results without holding them all in memory."""
        size = checked_int("batch_size", batch_size, 1, error=QueryError)
        return Call(self._live().scan, self._checked_filter(_as_query(query)), size)

    # -- vector and text search -------------------------------------------------------------
    def _vector_request(
        self,
        vectors: npt.NDArray[np.float32],
        field: str | None,
        k: int,
        metric: DistanceMetric | str | None,
        filter: FilterLike,
        score_threshold: float | None,
        model: str | None,
        params: Mapping[str, Any] | None = None,
    ) -> VectorSearchRequest:
        backend = self._live()
        k, field, met, threshold, condition = knn_options(field, k, metric, score_threshold, filter)
        caps = backend.capabilities()
        caps.check_filter(condition)
        if met is not None:
            caps.check_metric(met)
        if model is not None and not isinstance(model, str):
            raise QueryError(f"model must be 'name' or 'name@version', got {model!r}")
        return VectorSearchRequest(
            vectors,
            hits_cap(k),
            field,
            met,
            threshold,
            condition,
            model,
            check_search_params(params),
        )

    @Plan
    def vector_search(
        self,
        vector: Any,
        *,
        field: str | None = None,
        k: int = 10,
        metric: DistanceMetric | str | None = None,
        filter: FilterLike = None,
        score_threshold: float | None = None,
        model: str | None = None,
        search_params: Mapping[str, Any] | None = None,
    ) -> Call[list[VectorSearchResult]]:
        """The ``k`` nearest records to ``vector`` (best first) among those matching ``filter``.

        ``field`` may be omitted when the store has one vector field; ``metric`` defaults to the
        field's. ``model`` (``"name"`` or ``"name@version"``) makes the search refuse a field
        whose vectors came from another model. ``search_params`` tunes an approximate index
        for this call only (``ef_search``, ``probes``, ``exact=True``; see
        :mod:`dataknobs_data.vector.params`); backends that search exactly accept and ignore them.
        """
        if isinstance(vector, VectorQuery):
            if (field, k, metric, filter, score_threshold) != (None, 10, None, None, None):
                raise QueryError("pass either a VectorQuery or keyword options, not both")
            field, k, metric = vector.field, vector.k, vector.metric
            filter, score_threshold, vector = vector.filter, vector.score_threshold, vector.vector
        vec = as_vector(field or "query vector", vector)
        req = self._vector_request(
            vec[None, :], field, k, metric, filter, score_threshold, model, search_params
        )
        return Call(
            self._backend.vector_search,
            req,
            then=lambda hits: hits[0],
            native=AsyncOps.vector_search,
        )

    @Plan
    def vector_search_batch(
        self,
        vectors: Any,
        *,
        field: str | None = None,
        k: int = 10,
        metric: DistanceMetric | str | None = None,
        filter: FilterLike = None,
        score_threshold: float | None = None,
        model: str | None = None,
        search_params: Mapping[str, Any] | None = None,
    ) -> Call[list[list[VectorSearchResult]]]:
        """:meth:`vector_search` for many query vectors at once (one matrix product)."""
        self._live()
        matrix = _as_matrix(field, vectors)
        if matrix.shape[0] == 0:
            return Call(list)
        req = self._vector_request(
            matrix, field, k, metric, filter, score_threshold, model, search_params
        )
        return Call(self._backend.vector_search, req, native=AsyncOps.vector_search)

    @Plan
    def text_search(
        self,
        query: str,
        *,
        fields: Sequence[str] | None = None,
        k: int = 10,
        filter: FilterLike = None,
    ) -> Call[list[TextSearchResult]]:
        """The ``k`` records whose ``TEXT`` fields best match ``query`` (BM25, best first).

        ``query`` is plain words (no query syntax; any word may match, see
        :mod:`dataknobs_data.text`); ``fields`` restricts the search to some ``TEXT`` fields;
        ``filter`` restricts the records. :class:`UnsupportedError` on backends without
        :attr:`Feature.FULL_TEXT`.
        """
        backend = self._live()
        caps = backend.capabilities()
        caps.require(Feature.FULL_TEXT)
        words = query_words(query)
        names, kk = text_search_options(fields, k)
        condition = coerce_filter(filter)
        caps.check_filter(condition)
        return Call(backend.text_search, TextSearchRequest(words, names, hits_cap(kk), condition))

    # -- schema and indexes -----------------------------------------------------------------
    @Plan
    def declare_vector_field(self, name: str, config: VectorConfig) -> Call[None]:
        """Fix a vector field's dimensions, metric and model before any data arrives."""
        validate_field_name(name)
        if not isinstance(config, VectorConfig):
            raise ValidationError(f"expected a VectorConfig, got {type(config).__name__}")
        self._backend.capabilities().check_dimensions(name, config.dimensions)
        return Call(self._live().declare_vector_field, name, config)

    @Plan
    def create_vector_index(
        self,
        field: str,
        *,
        kind: str = "auto",
        m: int | None = None,
        ef_construction: int | None = None,
        lists: int | None = None,
    ) -> Call[dict[str, Any]]:
        """Build an ANN index (``hnsw``/``ivfflat``; ``auto`` chooses by size) for ``field``'s
        metric; returns :meth:`get_vector_index_stats`. Build after bulk loading."""
        validate_field_name(field)
        if kind not in INDEX_KINDS:
            raise ValidationError(f"index kind must be one of {INDEX_KINDS}, got {kind!r}")
        for name, value in (("m", m), ("ef_construction", ef_construction), ("lists", lists)):
            if value is not None:
                checked_int(name, value)
        return Call(self._live().create_vector_index, field, kind, m, ef_construction, lists)

    @Plan
    def drop_vector_index(self, field: str) -> Call[bool]:
        """Drop ``field``'s index (searches become exact); ``False`` if it had none."""
        validate_field_name(field)
        return Call(self._live().drop_vector_index, field)

    @Plan
    def optimize_vector_index(self, field: str) -> Call[dict[str, Any]]:
        """Rebuild ``field``'s index for the data now present and refresh planner stats."""
        validate_field_name(field)
        return Call(self._live().optimize_vector_index, field)

    @Plan
    def get_vector_index_stats(self, field: str) -> Call[dict[str, Any]]:
        """Type, parameters, metric, size on disk, rows and build time of ``field``'s index."""
        validate_field_name(field)
        return Call(self._live().get_vector_index_stats, field)

    # -- the same in both shells ------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        """What this backend runs exactly (operators, metrics, features, index types)."""
        return self._backend.capabilities()

    def vector_fields(self) -> dict[str, VectorConfig]:
        """The vector fields this store knows, with dimensions, metric and model."""
        return dict(self._backend.vector_schema())

    def __repr__(self) -> str:
        shown = redact_url(self._url) or type(self._backend).__name__
        return f"{type(self).__name__}({shown!r})"


class SyncDatabase(_Shell, Blocking):
    """Blocking API over any backend. Obtain one with ``DatabaseFactory.create(url)``.

    All write methods are all-or-nothing: bad input raises a typed error and writes nothing.
    Every public method is derived from its plan in :class:`_Shell` (see
    :mod:`dataknobs_data.plans`): it validates, then runs the backend call and returns its result.
    """

    def close(self) -> None:
        """Release the backend (connections, files, threads); calls that reach the store then
        raise :class:`DatabaseClosedError`. Closing again does nothing."""
        if not self._closed:
            self._closed = True
            self._backend.close()

    def __enter__(self) -> SyncDatabase:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncDatabase(_Shell, Awaiting):
    """Awaitable API with the same methods, signatures and docstrings as :class:`SyncDatabase`.

    Embedded engines (memory, SQLite, faiss, chroma) run each call in a worker thread via
    :func:`asyncio.to_thread`, so the event loop never blocks on them. A backend with native
    coroutines (:attr:`Backend.async_ops`: PostgreSQL's reads and vector search on psycopg's
    async API) is awaited directly instead.
    """

    def __init__(self, backend: Backend, *, url: str | None = None) -> None:
        ops = backend.async_ops
        if ops is not None and not isinstance(ops, AsyncOps):
            raise TypeError(f"Backend.async_ops must be an AsyncOps, got {type(ops).__name__}")
        super().__init__(backend, url=url)

    async def _run(self, call: Call[T]) -> T:
        """Await the backend's native coroutine when the call names one and the backend has
        it (:class:`~dataknobs_data.contract.AsyncOps`), else run the blocking call in a
        worker thread."""
        ops = self._backend.async_ops
        if call.native is None or ops is None:
            return await asyncio.to_thread(call)
        # ``call.native`` is an attribute of the AsyncOps ABC (so a rename there fails at
        # import); the subclass's override of that abstract method is what runs.
        native: Callable[..., Awaitable[Any]] = getattr(ops, call.native.__name__)
        result = await native(*call.args)
        return result if call.then is None else call.then(result)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            ops = self._backend.async_ops
            try:
                if ops is not None:
                    await ops.aclose()
            finally:
                await asyncio.to_thread(self._backend.close)

    close.__doc__ = SyncDatabase.close.__doc__

    async def __aenter__(self) -> AsyncDatabase:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
