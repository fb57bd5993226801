"""The backend contract: what a storage engine implements, below the two public shells.

A backend (:class:`Backend`) implements storage once, synchronously, receiving only validated,
typed input; the shells in :mod:`dataknobs_data.database` validate arguments, prepare a
:class:`Call` and run it (directly, in a worker thread, or through the backend's native
coroutines, :class:`AsyncOps`). This module sits below both the backends and the shells, so a
backend never imports the shell it is wrapped in.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from dataclasses import field as dc_field
from types import MappingProxyType
from typing import Any, Generic, Literal, TypeVar

import numpy as np
import numpy.typing as npt

from .capabilities import Capabilities
from .engines.seams import EngineSeam
from .errors import BackendError, DataknobsDataError, UnsupportedError
from .fields import VectorField
from .marks import FAILED_FIELD, PENDING_FIELD
from .query import Condition, Filter, Query, SortSpec, VectorQuery, all_of
from .records import Record
from .text import TextSearchRequest, TextSearchResult
from .vector.types import DistanceMetric, VectorConfig, VectorSearchResult

__all__ = [
    "AsyncOps",
    "Backend",
    "Call",
    "EngineSeam",
    "Leases",
    "StoredProvenance",
    "SyncRow",
    "VectorReplacement",
    "VectorSearchRequest",
    "WriteHook",
    "WriteMode",
]

T = TypeVar("T")
WriteMode = Literal["create", "upsert", "update"]


@dataclass(frozen=True, slots=True)
class VectorSearchRequest:
    """One or many query vectors sharing field, k, metric, filter and threshold (validated)."""

    vectors: npt.NDArray[np.float32]
    k: int
    field: str | None
    metric: DistanceMetric | None
    score_threshold: float | None
    filter: Filter | None
    model: str | None = None
    #: validated engine knobs (:func:`dataknobs_data.vector.params.search_params`)
    params: Mapping[str, Any] = dc_field(default_factory=lambda: MappingProxyType({}))

    def single(self) -> VectorQuery:
        """The first query as a :class:`VectorQuery` (for field/metric resolution)."""
        return VectorQuery(
            self.vectors[0], self.k, self.field, self.metric, self.score_threshold, self.filter
        )


@dataclass(frozen=True, slots=True)
class StoredProvenance:
    """What a stored vector records about how it was made (no values): enough to tell
    whether it is current for a text (see :meth:`Backend.scan_sync_rows`)."""

    model_name: str | None
    model_version: str | None
    source_hash: str | None
    dimensions: int


@dataclass(frozen=True, slots=True)
class SyncRow:
    """One record as the staleness check sees it (:meth:`Backend.scan_sync_rows`).

    ``texts``: per requested source field, its value when that is a string (``None`` when the
    field is absent or holds anything else, exactly as a vectorizing rule reads it);
    ``vectors``: per requested vector field, its provenance (``None`` when the record holds
    no vector there); ``pending`` / ``failed``: the raw values of the two mark fields
    (:mod:`dataknobs_data.marks`), ``None`` when absent.
    """

    id: str
    texts: tuple[str | None, ...]
    vectors: tuple[StoredProvenance | None, ...]
    pending: Any = None
    failed: Any = None


@dataclass(frozen=True, slots=True)
class VectorReplacement:
    """One vector to put in place (:meth:`Backend.replace_vectors`): the record ``id``, the
    new ``vector`` (with its provenance) and the source values it was made from, as
    :meth:`Backend.scan_sync_rows` read them (the compare-and-set guard)."""

    id: str
    vector: VectorField
    texts: tuple[str | None, ...]


def text_value(record: Record, name: str) -> str | None:
    """``record``'s value for ``name`` when it is a string (as a rule reads its sources)."""
    f = record.fields.get(name)
    return f.value if f is not None and isinstance(f.value, str) else None


def sync_row(record: Record, sources: Sequence[str], vectors: Sequence[str]) -> SyncRow:
    """The :class:`SyncRow` of a record (the default scan, and the reference for the
    specialised ones)."""
    provs: list[StoredProvenance | None] = []
    for name in vectors:
        f = record.fields.get(name)
        provs.append(
            StoredProvenance(f.model_name, f.model_version, f.source_hash, f.dimensions)
            if isinstance(f, VectorField)
            else None
        )
    return SyncRow(
        record.id,
        tuple(text_value(record, s) for s in sources),
        tuple(provs),
        record.get(PENDING_FIELD),
        record.get(FAILED_FIELD),
    )


def replacement_applies(
    record: Record | None, item: VectorReplacement, sources: Sequence[str]
) -> bool:
    """The guard of :meth:`Backend.replace_vectors` on a stored record: it exists, holds no
    mark, and its sources still hold the values the vector was made from."""
    return (
        record is not None
        and record.get(PENDING_FIELD) is None
        and record.get(FAILED_FIELD) is None
        and tuple(text_value(record, s) for s in sources) == item.texts
    )


class Backend(ABC):
    """Storage for one engine. Methods are synchronous and receive validated input only.

    Contract for implementers:

    * writes are all-or-nothing: validate everything (including the vector schema, with
      :func:`dataknobs_data.schema.plan_vector_schema`) before changing anything;
    * records handed in still belong to the caller (copy what you keep); records handed out
      are fresh copies the caller may mutate;
    * filters are already checked against :meth:`capabilities`, so every operator that arrives
      must be evaluated exactly as :mod:`dataknobs_data.evaluate` does.
    """

    #: Optional native coroutines (:class:`AsyncOps`). The async shell awaits them for the
    #: calls that name one (:attr:`Call.native`) instead of running the blocking method in a
    #: worker thread.
    async_ops: AsyncOps | None = None

    @abstractmethod
    def capabilities(self) -> Capabilities:
        """What this backend runs exactly: operators, metrics, features, index types."""

    @abstractmethod
    def vector_schema(self) -> Mapping[str, VectorConfig]:
        """The declared vector fields (read-only view)."""

    @abstractmethod
    def declare_vector_field(self, name: str, config: VectorConfig) -> None:
        """Add a vector field, or check that an existing one has the same configuration."""

    @abstractmethod
    def put(self, records: Sequence[Record], mode: WriteMode) -> list[bool]:
        """Write records; return, per record, whether it existed before.

        ``create`` raises :class:`DuplicateRecordError` if any id exists; ``update`` writes only
        the records that exist; ``upsert`` writes all.
        """

    @abstractmethod
    def get(self, ids: Sequence[str]) -> list[Record | None]:
        """The stored records for ``ids``, in order (``None`` where absent); fresh copies."""

    @abstractmethod
    def contains(self, ids: Sequence[str]) -> list[bool]:
        """For each id, whether a record with it is stored."""

    @abstractmethod
    def remove(self, ids: Sequence[str]) -> list[bool]:
        """Delete ``ids`` in one step; for each, whether it existed."""

    @abstractmethod
    def clear(self) -> int:
        """Delete every record (the vector schema stays); returns how many there were."""

    @abstractmethod
    def search(self, query: Query) -> list[Record]:
        """The records matching ``query``'s filter, sorted, paged and projected as it says."""

    @abstractmethod
    def count(self, condition: Filter | None) -> int:
        """How many records match ``condition`` (all of them for ``None``)."""

    @abstractmethod
    def scan(self, query: Query, batch_size: int) -> Iterator[list[Record]]:
        """Yield the query's results in pages; a consistent snapshot where the engine allows."""

    @abstractmethod
    def vector_search(self, request: VectorSearchRequest) -> list[list[VectorSearchResult]]:
        """For each query vector of ``request``, its hits best first (filter applied before
        ranking)."""

    def text_search(self, request: TextSearchRequest) -> list[TextSearchResult]:
        """Full-text search over ``TEXT`` fields (see :mod:`dataknobs_data.text`).

        Optional: backends that index text declare :attr:`Feature.FULL_TEXT` and override this.
        """
        raise UnsupportedError(
            f"the {self.capabilities().backend} backend does not support full-text search"
        )

    def create_vector_index(
        self,
        field: str,
        kind: str,
        m: int | None,
        ef_construction: int | None,
        lists: int | None,
    ) -> dict[str, Any]:
        """Build an ANN index for a vector field; returns its stats.

        Optional: backends with ANN indexes override the four index methods; the others
        search exactly and refuse index management rather than pretend to have done it.
        """
        raise self.no_indexes_error()

    def manages_indexes(self) -> bool:
        """Whether this backend implements the index methods (overrides
        :meth:`create_vector_index`). Read from the class, not declared, so it cannot drift;
        ``load(index=...)`` checks it before writing anything."""
        return type(self).create_vector_index is not Backend.create_vector_index

    def drop_vector_index(self, field: str) -> bool:
        """Drop a vector field's index; ``False`` if it had none."""
        raise self.no_indexes_error()

    def optimize_vector_index(self, field: str) -> dict[str, Any]:
        """Rebuild a vector field's index for the data now present; returns its stats."""
        raise self.no_indexes_error()

    def get_vector_index_stats(self, field: str) -> dict[str, Any]:
        """Type, parameters, size, rows and build time of a vector field's index."""
        raise self.no_indexes_error()

    def no_indexes_error(self) -> UnsupportedError:
        """The error for index management on a backend without ANN indexes to manage.

        The default index methods raise it, and so does ``load(index=...)`` before loading
        anything; a backend whose indexes are managed otherwise overrides it to say how.
        """
        return UnsupportedError(
            f"the {self.capabilities().backend} backend has no vector indexes to manage "
            "(its vector search is exact)"
        )

    def engine_seams(self) -> list[EngineSeam]:
        """The engine objects this backend's writes call into (connections, collections,
        indexes, journal files), for fault injection. Optional; a backend that lists none
        is checked only for the writes it refuses."""
        return []

    # -- synchronisation support (see :mod:`dataknobs_data.vector.sync`) --------------------
    def read_setting(self, key: str) -> str | None:
        """A small text value stored with the collection (``None`` when unset).

        Settings hold what must travel with the data and be seen by every process that opens
        it, such as the vectorizing rules of :mod:`dataknobs_data.vector.sync`. Every built-in
        backend stores them in its own schema metadata; the default refuses, so a third-party
        backend that has no place for them says so instead of forgetting them.
        """
        raise UnsupportedError(f"the {self.capabilities().backend} backend cannot store settings")

    def write_setting(self, key: str, value: str | None) -> None:
        """Store (or with ``None`` delete) a setting, durably, in one step."""
        raise UnsupportedError(f"the {self.capabilities().backend} backend cannot store settings")

    def settings(self, prefix: str) -> dict[str, str]:
        """Every stored setting whose key starts with ``prefix``."""
        raise UnsupportedError(f"the {self.capabilities().backend} backend cannot store settings")

    def write_lock(self) -> AbstractContextManager[None]:
        """Hold the store's writer lock for a read-check-write step (compare-and-set).

        Inside the ``with`` block, calls this thread makes on the backend (:meth:`get`,
        :meth:`put`, ...) join the held lock, and no other writer, in this process or another,
        changes the store until the block ends. Used by the vectorizer to write a vector only
        if the record's text is still the one that was embedded.
        """
        raise UnsupportedError(
            f"the {self.capabilities().backend} backend has no writer lock to hold"
        )

    def pending_ids(self, after: str | None, limit: int) -> list[str]:
        """Ids (in id order, greater than ``after``) of records holding a pending-embedding
        mark (the top-level field :data:`~dataknobs_data.marks.PENDING_FIELD`).

        The default runs an ``exists`` filter; SQL backends override it with a query on a
        partial index (:meth:`prepare_marks`), so finding pending work never scans the table.
        """
        condition: Filter = Condition.make(PENDING_FIELD, "exists")
        if after is not None:
            condition = all_of(condition, Condition.make("_id", ">", after))
        query = Query(condition, sort_by=[SortSpec("_id")], limit=limit, fields=[PENDING_FIELD])
        return [r.id for r in self.search(query)]

    def prepare_marks(self) -> None:
        """Create what :meth:`pending_ids` and :meth:`claim_pending` need (an index on the
        mark, a claims table). Called when a rule that leaves marks is stored; idempotent."""
        return

    def claim_pending(self, worker: str, limit: int, lease: float) -> list[str]:
        """Claim up to ``limit`` pending records for ``worker`` for ``lease`` seconds.

        A record claimed by another worker whose lease has not expired is skipped, so two
        vectorizers share the work; a worker's own claims (e.g. after its restart) are
        claimable again at once. The default keeps leases in this process (enough for
        embedded stores, which one process opens at a time); PostgreSQL keeps them in a table
        and claims with ``FOR UPDATE SKIP LOCKED``.
        """
        return self.lease_book().claim(self, worker, limit, lease)

    def release_claims(self, worker: str, ids: Sequence[str]) -> None:
        """Give back ``worker``'s claims on ``ids`` (done, failed or deleted)."""
        self.lease_book().release(worker, ids)

    def lease_book(self) -> Leases:
        """The in-process claims the default :meth:`claim_pending` keeps: one per backend
        object; a backend whose objects in one process share a store returns one book per
        store, so two vectorizers on two objects never claim the same record."""
        return _claims_of(self)

    def scan_sync_rows(
        self,
        condition: Filter | None,
        sources: Sequence[str],
        vectors: Sequence[str],
        batch_size: int,
    ) -> Iterator[list[SyncRow]]:
        """Pages (in id order) of :class:`SyncRow` for the records matching ``condition``:
        the source texts, the vectors' provenance and the marks, and nothing else.

        What a staleness check reads. The default projects an ordinary :meth:`scan`; SQL
        backends override it to extract the few values in SQL, building no record and
        reading no vector.
        """
        names = sorted({*sources, *vectors, PENDING_FIELD, FAILED_FIELD})
        query = Query(condition, sort_by=[SortSpec("_id")], fields=names)
        for page in self.scan(query, batch_size):
            yield [sync_row(rec, sources, vectors) for rec in page]

    def replace_vectors(
        self, field: str, sources: Sequence[str], items: Sequence[VectorReplacement]
    ) -> list[bool]:
        """Put each item's vector into its record's field ``field`` (replacing the vector
        there, or adding it), changing nothing else, but only where the record still exists,
        holds no mark (:mod:`dataknobs_data.marks`) and its ``sources`` still hold the
        values the vector was made from (``item.texts``, read as :meth:`scan_sync_rows`
        reads them): a compare-and-set, so a record whose text changed since it was read
        never gets a vector of its old text. Returns, per item, whether it was written.

        All-or-nothing like every write (a failure writes none of them). A backend may also
        decline (``False``) a record it cannot change in place; the caller then writes it the
        ordinary way (:meth:`write_lock`, :meth:`get`, :meth:`put`). The default is exactly
        that ordinary way, under :meth:`write_lock`; SQL backends override it with one
        guarded statement that neither reads nor rewrites the rest of the record.
        """
        if not items:
            return []
        with self.write_lock():
            try:
                stored = self.get([i.id for i in items])
            except DataknobsDataError:
                raise
            except Exception as exc:  # a read the engine let pass unwrapped
                raise BackendError(f"{self.capabilities().backend}: {exc}") from exc
            out: list[bool] = []
            changed: dict[str, Record] = {}
            for item, rec in zip(items, stored, strict=True):
                ok = item.id not in changed and replacement_applies(rec, item, sources)
                out.append(ok)
                if ok:
                    assert rec is not None
                    fields = dict(rec.fields)
                    vec = item.vector
                    fields[field] = vec if vec.name == field else vec.with_name(field)
                    changed[item.id] = Record.trusted(rec.id, fields, dict(rec.metadata))
            if changed:
                self.put(list(changed.values()), "update")
            return out

    @abstractmethod
    def close(self) -> None:
        """Release connections, files and threads; the shells refuse calls afterwards."""


class Leases:
    """In-process claims (see :meth:`Backend.claim_pending`): record id -> (worker, expiry on
    the monotonic clock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, tuple[str, float]] = {}

    def claim(self, backend: Backend, worker: str, limit: int, lease: float) -> list[str]:
        """Up to ``limit`` of ``backend``'s pending ids, in id order, not held by another
        worker's unexpired lease; each taken for ``lease`` seconds."""
        with self._lock:
            now = time.monotonic()
            taken: list[str] = []
            after: str | None = None
            while len(taken) < limit:
                page = backend.pending_ids(after, max(limit * 2, 64))
                for rid in page:
                    holder = self._held.get(rid)
                    if holder is None or holder[0] == worker or holder[1] <= now:
                        self._held[rid] = (worker, now + lease)
                        taken.append(rid)
                        if len(taken) == limit:
                            break
                if len(page) < max(limit * 2, 64):
                    break
                after = page[-1]
            return taken

    def release(self, worker: str, ids: Sequence[str]) -> None:
        """Drop ``worker``'s leases on ``ids`` (another worker's stay)."""
        with self._lock:
            for rid in ids:
                holder = self._held.get(rid)
                if holder is not None and holder[0] == worker:
                    del self._held[rid]


_LEASES_LOCK = threading.Lock()


def _claims_of(backend: Backend) -> Leases:
    with _LEASES_LOCK:
        leases: Leases | None = backend.__dict__.get("_dk_leases")
        if leases is None:
            leases = backend.__dict__["_dk_leases"] = Leases()
        return leases


class WriteHook(ABC):
    """Called by the database shells around every write, inside the prepared call (so in the
    async shell's worker thread): the change tracker of :mod:`dataknobs_data.vector.sync`
    implements it to keep vectors and their pending marks in step with their text."""

    @abstractmethod
    def put(self, backend: Backend, records: Sequence[Record], mode: WriteMode) -> list[bool]:
        """Write ``records`` through ``backend.put``, after adjusting them (vectors embedded,
        marks set); returns what ``backend.put`` returns."""

    def removed(self, backend: Backend, ids: Sequence[str]) -> None:
        """After ``ids`` were deleted (their marks went with them): drop held work."""
        return


class AsyncOps(ABC):
    """A backend's native coroutines for the reads the async shell may await directly.

    The link from a prepared :class:`Call` to its coroutine is an attribute of this class
    (``Call(..., native=AsyncOps.get)``), not a string: renaming a method here breaks the
    shell at import and in mypy, and a subclass missing one cannot be instantiated.
    """

    @abstractmethod
    async def get(self, ids: Sequence[str]) -> list[Record | None]:
        """Coroutine version of :meth:`Backend.get`."""

    @abstractmethod
    async def contains(self, ids: Sequence[str]) -> list[bool]:
        """Coroutine version of :meth:`Backend.contains`."""

    @abstractmethod
    async def search(self, query: Query) -> list[Record]:
        """Coroutine version of :meth:`Backend.search`."""

    @abstractmethod
    async def count(self, condition: Filter | None) -> int:
        """Coroutine version of :meth:`Backend.count`."""

    @abstractmethod
    async def vector_search(self, request: VectorSearchRequest) -> list[list[VectorSearchResult]]:
        """Coroutine version of :meth:`Backend.vector_search`."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release what the coroutines hold (the blocking side closes with the backend)."""


class Call(Generic[T]):
    """A prepared backend call: validated arguments bound, plus a pure post-processing step.

    ``native`` names the :class:`AsyncOps` coroutine that does the same work, for backends
    that have one; the sync shell ignores it.
    """

    __slots__ = ("args", "fn", "native", "then")

    def __init__(
        self,
        fn: Callable[..., Any],
        *args: Any,
        then: Callable[[Any], T] | None = None,
        native: Callable[..., Awaitable[Any]] | None = None,
    ) -> None:
        self.fn, self.args, self.then, self.native = fn, args, then, native

    def __call__(self) -> T:
        result = self.fn(*self.args)
        return result if self.then is None else self.then(result)
