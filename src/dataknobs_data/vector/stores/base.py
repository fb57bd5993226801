"""The :class:`VectorStore` contract: one vector space, ids -> (vector, metadata), filtered k-NN.

Specialised engines (faiss, chroma) are vector indexes first; this contract is their native
shape, smaller than a :class:`~dataknobs_data.database.SyncDatabase`. The same engines are also
reachable as full databases (``faiss://``, ``chroma://``) for callers who want records, sorting
and paging.

Rules every store keeps (the shared validation below enforces the first three):

* a batch is all or nothing: ids, vectors and metadata are validated before anything changes;
* vectors are finite, 1-D, of the store's dimensions (typed errors otherwise);
* metadata is a JSON object per vector (str keys; str, int, float, bool, None, lists and nested
  objects as the store declares), filtered with the package's filter tree;
* ``search`` returns ``k`` hits whenever ``k`` vectors match the filter (pre-filtering, never a
  post-filter that comes back short), scored with the package's convention (higher is better);
* ``persist`` is atomic: after a crash the store reopens in its last persisted state.
"""

from __future__ import annotations

import asyncio
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from ...contract import EngineSeam
from ...errors import (
    DatabaseClosedError,
    DuplicateRecordError,
    FieldValidationError,
    QueryError,
    ValidationError,
)
from ...fields import check_json, check_magnitude, thaw_json
from ...ints import checked_int
from ...query import Filter, coerce_filter
from ...records import validate_record_id
from ...strings import check_text
from ..exceptions import DimensionMismatchError, InvalidVectorError
from ..operations import all_finite
from ..types import VectorConfig

__all__ = [
    "AsyncVectorStore",
    "LazyHit",
    "StoredVector",
    "VectorBatch",
    "VectorHit",
    "VectorStore",
    "prepare_batch",
    "prepare_queries",
]

Metadata = dict[str, Any]


@dataclass(frozen=True, slots=True)
class StoredVector:
    """What :meth:`VectorStore.get` returns for one id (fresh copies the caller may keep)."""

    id: str
    vector: npt.NDArray[np.float32]
    metadata: Metadata = field(default_factory=dict)


class VectorHit:
    """One search hit: ``score`` higher is better, ``distance`` in the metric's own units.

    A slotted class rather than a dataclass or named tuple: a search builds k of them per
    query, and this is the cheapest object to build. Its ``metadata`` is the caller's own
    copy; stores that keep metadata in memory hand out a :class:`LazyHit` instead, which
    copies it only when read (a single-query search is otherwise dominated by touching k
    cold metadata objects right after the engine has flushed the caches).
    """

    __slots__ = ("_meta", "distance", "id", "rank", "score")

    def __init__(
        self,
        id: str,
        score: float,
        distance: float,
        rank: int,
        metadata: Metadata | None = None,
    ) -> None:
        self.id = id
        self.score = score
        self.distance = distance
        self.rank = rank
        self._meta: Any = {} if metadata is None else metadata

    @property
    def metadata(self) -> Metadata:
        """The metadata stored with the vector when the hit was found."""
        meta: Metadata = self._meta
        return meta

    def _key(self) -> tuple[str, float, float, int, Metadata]:
        return (self.id, self.score, self.distance, self.rank, self.metadata)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VectorHit):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # holds a dict, like the records it stands for

    def __repr__(self) -> str:
        return (
            f"VectorHit(id={self.id!r}, score={self.score!r}, distance={self.distance!r}, "
            f"rank={self.rank!r}, metadata={self.metadata!r})"
        )


class LazyHit(VectorHit):
    """A :class:`VectorHit` whose metadata is copied from the store's table on first read.

    ``table[at]`` is the stored (never mutated in place) JSON object, or its JSON text; a
    store that replaces or deletes a vector writes a new slot, so the hit keeps the metadata
    it was found with.
    """

    __slots__ = ("_at",)

    def __init__(
        self, id: str, score: float, distance: float, rank: int, table: Sequence[Any], at: int
    ) -> None:
        self.id = id
        self.score = score
        self.distance = distance
        self.rank = rank
        self._meta = table
        self._at = at

    @property
    def metadata(self) -> Metadata:
        if self._at >= 0:
            stored = self._meta[self._at]
            if type(stored) is str:
                self._meta = json.loads(stored)
            else:
                self._meta = thaw_json(stored) if stored else {}
            self._at = -1
        meta: Metadata = self._meta
        return meta


@dataclass(frozen=True, slots=True)
class VectorBatch:
    """A validated write: unique ids, a C-contiguous float32 matrix, one metadata dict each."""

    ids: list[str]
    vectors: npt.NDArray[np.float32]
    metadata: list[Metadata]

    def __len__(self) -> int:
        return len(self.ids)


def _check_metadata(record_id: str, meta: Any) -> Metadata:
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise ValidationError(f"metadata for {record_id!r} must be a mapping, got {type(meta)}")
    for key, value in meta.items():
        if not isinstance(key, str) or not key:
            raise ValidationError(f"metadata keys for {record_id!r} must be non-empty strings")
        check_text(None, key, f"metadata key of {record_id!r}")
        try:
            # The rule of JSON fields: finite numbers, 64-bit ints, valid Unicode strings.
            check_json(key, value)
        except FieldValidationError as exc:
            raise type(exc)(key, f"metadata of {record_id!r}: {exc.problem}") from None
    copied: Metadata = thaw_json(dict(meta))  # a private deep copy
    return copied


def _as_matrix(
    vectors: Any, dimensions: int, what: str, *, copy: bool = True
) -> npt.NDArray[np.float32]:
    if (
        not copy
        and type(vectors) is np.ndarray
        and vectors.dtype == np.float32
        and vectors.shape == (dimensions,)
    ):
        # The common single query: one finiteness test and a view (a search per call).
        with np.errstate(invalid="ignore"):
            if all_finite(vectors):
                check_magnitude(None, vectors, f"{what}: ")
                return vectors.reshape(1, dimensions)
    try:
        arr = np.asarray(vectors)
    except (TypeError, ValueError) as exc:
        raise InvalidVectorError(None, f"{what}: not numeric: {exc}") from None
    if arr.dtype.kind not in "iuf":
        raise InvalidVectorError(None, f"{what}: expected numbers, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2:
        raise InvalidVectorError(None, f"{what}: expected a 2-D array, got shape {arr.shape}")
    if arr.shape[1] != dimensions:
        raise DimensionMismatchError(None, dimensions, int(arr.shape[1]))
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(arr, dtype=np.float32)
    if copy and out is arr:
        out = out.copy()
    if not np.isfinite(out).all():
        row, col = (int(x[0]) for x in np.nonzero(~np.isfinite(out)))
        raise InvalidVectorError(None, f"{what}: non-finite value at row {row}, column {col}")
    check_magnitude(None, out, f"{what}: ")
    return out


def prepare_batch(
    ids: Sequence[str],
    vectors: Any,
    metadata: Sequence[Mapping[str, Any] | None] | None,
    dimensions: int,
) -> VectorBatch:
    """Validate one write completely (ids unique and valid, shapes, finiteness, JSON metadata)."""
    if isinstance(ids, str):
        raise ValidationError("expected a list of ids, got a single string")
    checked = [validate_record_id(i) for i in ids]
    seen: set[str] = set()
    for i in checked:
        if i in seen:
            raise DuplicateRecordError(i, "appears twice in one batch")
        seen.add(i)
    matrix = _as_matrix(vectors, dimensions, "vectors")
    if matrix.shape[0] != len(checked):
        raise ValidationError(f"{len(checked)} ids but {matrix.shape[0]} vectors")
    if metadata is None:
        metas: list[Metadata] = [{} for _ in checked]
    else:
        if len(metadata) != len(checked):
            raise ValidationError(f"{len(checked)} ids but {len(metadata)} metadata entries")
        metas = [_check_metadata(i, m) for i, m in zip(checked, metadata, strict=True)]
    return VectorBatch(checked, matrix, metas)


def prepare_queries(vectors: Any, dimensions: int, k: int) -> npt.NDArray[np.float32]:
    """Validate query vectors (one or many) and ``k``."""
    checked_int("k", k, 1, error=QueryError)
    return _as_matrix(vectors, dimensions, "query", copy=False)  # read, never kept


class VectorStore(ABC):
    """A persistent collection of vectors of one :class:`VectorConfig`, with metadata.

    Stores are synchronous and not safe for concurrent writers from several threads; use
    :class:`AsyncVectorStore` from asyncio code (it offloads each call to a worker thread and
    serialises them).
    """

    #: registry name used by :class:`~dataknobs_data.vector.stores.VectorStoreFactory`
    backend: ClassVar[str]

    def __init__(self, config: VectorConfig, path: Path | None) -> None:
        self.config = config
        self.path = path
        self._closed = False

    @property
    def dimensions(self) -> int:
        """The store's vector length."""
        return self.config.dimensions

    # -- writes -----------------------------------------------------------------------------
    def add(
        self,
        ids: Sequence[str],
        vectors: Any,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None:
        """Insert new vectors; :class:`DuplicateRecordError` (nothing written) if an id exists."""
        self._live()
        self._add(prepare_batch(ids, vectors, metadata, self.dimensions))

    def upsert(
        self,
        ids: Sequence[str],
        vectors: Any,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None:
        """Insert or replace vectors (and their metadata) by id."""
        self._live()
        self._upsert(prepare_batch(ids, vectors, metadata, self.dimensions))

    @abstractmethod
    def _add(self, batch: VectorBatch) -> None:
        """Write a validated batch of new ids (refuse, writing nothing, if one exists)."""

    @abstractmethod
    def _upsert(self, batch: VectorBatch) -> None:
        """Write a validated batch, replacing stored ids (their old metadata dropped)."""

    @abstractmethod
    def delete(self, ids: Sequence[str]) -> int:
        """Remove vectors by id; returns how many existed."""

    # -- reads ------------------------------------------------------------------------------
    @abstractmethod
    def get(self, ids: Sequence[str]) -> list[StoredVector | None]:
        """The stored vector and metadata for each id (``None`` where absent)."""

    @abstractmethod
    def count(self, filter: Filter | Mapping[str, Any] | None = None) -> int:
        """How many vectors are stored (matching ``filter``, over their metadata, if given)."""

    @abstractmethod
    def search_batch(
        self,
        vectors: Any,
        k: int = 10,
        *,
        filter: Filter | Mapping[str, Any] | None = None,
        **params: Any,
    ) -> list[list[VectorHit]]:
        """k nearest neighbours of each query row; ``params`` are engine knobs (``ef_search``,
        ``nprobe``...), refused with a typed error when the store does not know them."""

    def search(
        self,
        vector: Any,
        k: int = 10,
        *,
        filter: Filter | Mapping[str, Any] | None = None,
        **params: Any,
    ) -> list[VectorHit]:
        """k nearest neighbours of one query vector (see :meth:`search_batch`)."""
        return self.search_batch(
            prepare_queries(vector, self.dimensions, k), k, filter=filter, **params
        )[0]

    # -- lifecycle --------------------------------------------------------------------------
    @abstractmethod
    def persist(self) -> None:
        """Make every write so far durable, atomically."""

    @classmethod
    @abstractmethod
    def load(cls, path: str | Path, **options: Any) -> Self:
        """Reopen a persisted store."""

    @abstractmethod
    def close(self) -> None:
        """Release the engine (persisting first where the store has a path)."""

    def stats(self) -> dict[str, Any]:
        """Engine, index kind and parameters, size; stores add what they know."""
        return {"backend": self.backend, "count": self.count(), **self.config.to_dict()}

    def engine_seams(self) -> list[EngineSeam]:
        """The engine objects this store's writes call into, for fault injection (as
        :meth:`dataknobs_data.contract.Backend.engine_seams`); none by default."""
        return []

    def _live(self) -> None:
        if self._closed:
            raise DatabaseClosedError(f"{self.backend} vector store {self.path or ''} is closed")

    @staticmethod
    def _filter(value: Filter | Mapping[str, Any] | None) -> Filter | None:
        return coerce_filter(value)

    def __len__(self) -> int:
        return self.count()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncVectorStore:
    """Awaitable view of a :class:`VectorStore`.

    faiss and chroma are embedded engines without async APIs, so each call runs in a worker
    thread (the event loop never blocks on a search) and a lock keeps calls in order.
    """

    def __init__(self, store: VectorStore) -> None:
        self.store = store
        self._lock = asyncio.Lock()

    async def _run(self, name: str, *args: Any, **kwargs: Any) -> Any:
        async with self._lock:
            return await asyncio.to_thread(getattr(self.store, name), *args, **kwargs)

    async def add(
        self,
        ids: Sequence[str],
        vectors: Any,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None:
        """Awaitable :meth:`VectorStore.add` (run in a worker thread)."""
        await self._run("add", ids, vectors, metadata)

    async def upsert(
        self,
        ids: Sequence[str],
        vectors: Any,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
    ) -> None:
        """Awaitable :meth:`VectorStore.upsert`."""
        await self._run("upsert", ids, vectors, metadata)

    async def delete(self, ids: Sequence[str]) -> int:
        """Awaitable :meth:`VectorStore.delete`."""
        result: int = await self._run("delete", ids)
        return result

    async def get(self, ids: Sequence[str]) -> list[StoredVector | None]:
        """Awaitable :meth:`VectorStore.get`."""
        result: list[StoredVector | None] = await self._run("get", ids)
        return result

    async def count(self, filter: Filter | Mapping[str, Any] | None = None) -> int:
        """Awaitable :meth:`VectorStore.count`."""
        result: int = await self._run("count", filter)
        return result

    async def search(
        self,
        vector: Any,
        k: int = 10,
        *,
        filter: Filter | Mapping[str, Any] | None = None,
        **params: Any,
    ) -> list[VectorHit]:
        """Awaitable :meth:`VectorStore.search`."""
        result: list[VectorHit] = await self._run("search", vector, k, filter=filter, **params)
        return result

    async def search_batch(
        self,
        vectors: Any,
        k: int = 10,
        *,
        filter: Filter | Mapping[str, Any] | None = None,
        **params: Any,
    ) -> list[list[VectorHit]]:
        """Awaitable :meth:`VectorStore.search_batch`."""
        result: list[list[VectorHit]] = await self._run(
            "search_batch", vectors, k, filter=filter, **params
        )
        return result

    async def persist(self) -> None:
        """Awaitable :meth:`VectorStore.persist`."""
        await self._run("persist")

    async def close(self) -> None:
        """Awaitable :meth:`VectorStore.close`."""
        await self._run("close")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
