"""``FaissVectorStore``: the :class:`VectorStore` contract on a faiss index.

Layout in memory: every vector has a *slot* (its int64 faiss label). Vectors, metadata and ids
live in slot-indexed arrays beside the faiss object, which is only an index over them and can
always be rebuilt from them (training IVF, upgrading ``auto`` from flat to HNSW, compacting
deleted slots). See :mod:`dataknobs_data.engines.faiss_index` for the index kinds and the
``auto`` rule.

Search:

* the filter (the package's filter tree over metadata) becomes a boolean mask over slots with
  the memory backend's vectorised mask compiler, and reaches faiss as an ``IDSelectorBitmap``
  (pre-filtering inside the index, never a post-filter);
* when at most ``exact_filter_below`` vectors match, or ``exact=True`` is passed, the matching
  vectors are scored exactly with numpy instead (cheaper than walking an ANN structure that
  rejects almost everything);
* an ANN index can still come back short under a selective filter (HNSW exhausts its beam, IVF
  its probed lists); such a query is answered exactly over the selected vectors, so a search
  returns ``k`` hits whenever ``k`` vectors match.

Persistence (``path`` given): :meth:`persist` writes a new snapshot generation (faiss's own
serialisation of the index, ``vectors.npy``, ``ids.json``, ``metadata.json``, ``store.json``)
and switches the manifest to it atomically (:mod:`dataknobs_data.durable`); a crash at any
point reopens the last persisted state. No pickle anywhere. An open store holds the directory's
exclusive lock (:mod:`dataknobs_data.engines.storelock`): a second opener, in this process or
another, gets :class:`~dataknobs_data.errors.StoreLockedError` naming the holder.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from itertools import repeat
from pathlib import Path
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from ...contract import EngineSeam
from ...durable import Generations, load_npy, npy_bytes, write_synced
from ...engines.columns import ValueColumn
from ...engines.faiss_index import (
    FaissIndex,
    LabelTable,
    SearchParams,
    distance_list,
    faiss_errors,
)
from ...engines.mask import compile_mask
from ...engines.storelock import StoreLock
from ...errors import BackendError, DuplicateRecordError, SchemaError, ValidationError
from ...fields import check_magnitude, thaw_json
from ...ints import checked_int, hits_cap
from ...query import Filter
from ...records import MISSING, validate_record_id
from ..operations import (
    rank_candidates,
    rank_exact,
    score_list,
    score_matrix,
    tie_order,
    topk_candidates,
)
from ..types import VectorConfig
from .base import LazyHit, Metadata, StoredVector, VectorBatch, VectorHit, VectorStore
from .base import prepare_queries as _prepare_queries

__all__ = ["FaissVectorStore"]

F32 = npt.NDArray[np.float32]
_FORMAT = "dataknobs-faiss-store/1"
_F32 = np.dtype(np.float32)


def _at_path(meta: Metadata | None, parts: list[str]) -> Any:
    """Value at a dotted path through JSON objects (a list or scalar on the way: missing)."""
    value: Any = meta
    if value is None:
        return MISSING
    for part in parts:
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


class FaissVectorStore(VectorStore):
    """Vectors + JSON metadata in a faiss index (see the module docstring).

    Options (keyword-only, also accepted by ``VectorStoreFactory.create("faiss", ...)``):

    * ``recall_target``: what ``auto`` aims for (0.95: HNSW efSearch 64; >= 0.999: flat);
    * ``exact_filter_below``: filtered searches matching at most this many vectors are scored
      exactly instead of through the ANN index (default 2048);
    * ``compact_ratio``: deleted slots (HNSW tombstones) above this share of the index trigger
      a rebuild at the next search (default 0.25);
    * ``rerank``: IVF-PQ fetches ``k * rerank`` candidates and re-scores them exactly (4).

    Not thread-safe: use :class:`~.base.AsyncVectorStore` from asyncio code.
    """

    backend = "faiss"

    def __init__(
        self,
        config: VectorConfig,
        path: Path | None,
        *,
        recall_target: float = 0.95,
        exact_filter_below: int = 2048,
        compact_ratio: float = 0.25,
        rerank: int = 4,
    ) -> None:
        super().__init__(config, Path(path) if path is not None else None)
        for name, value in (("exact_filter_below", exact_filter_below), ("rerank", rerank)):
            checked_int(name, value, 0)
        self.exact_filter_below = exact_filter_below
        self.rerank = max(1, rerank)
        self.index = FaissIndex(
            config.dimensions,
            config.metric,
            config.index.kind,
            config.index.params,
            recall_target=recall_target,
            compact_ratio=compact_ratio,
        )
        self._labels = LabelTable()
        self._vectors: F32 = np.zeros((0, config.dimensions), dtype=np.float32)
        self._meta: list[Metadata | None] = []
        self._columns: dict[str, ValueColumn] = {}
        self._store_lock: StoreLock | None = None
        if self.path is not None:
            # Before anything in the directory is read: one open store per directory.
            self._store_lock = StoreLock.acquire(self.path, "faiss vector store")
            try:
                if (self.path / "MANIFEST.json").exists():
                    self._read(self.path, check=config)
            except BaseException:
                self._store_lock.release()
                raise

    # -- writes -----------------------------------------------------------------------------
    # Writes change the faiss index first and this store's tables after (plain assignments
    # that cannot fail); a faiss failure invalidates the index (rebuilt from the tables at the
    # next search), so a failed write leaves count, reads and searches as they were.
    def _add(self, batch: VectorBatch) -> None:
        for rid in batch.ids:
            if rid in self._labels.label_of:
                raise DuplicateRecordError(rid)
        self._write(batch)

    def _upsert(self, batch: VectorBatch) -> None:
        label_of = self._labels.label_of
        old = {rid: label_of[rid] for rid in batch.ids if rid in label_of}
        self._forget(batch.ids)
        try:
            self._write(batch)
        except BaseException:
            self._labels.revive(old)  # their vectors and metadata are still in their slots
            self._columns.clear()
            self.index.invalidate()  # it no longer holds them
            raise

    def _write(self, batch: VectorBatch) -> None:
        if not len(batch):
            return
        start = self._labels.span
        labels = np.arange(start, start + len(batch), dtype=np.int64)
        end = start + len(batch)
        vectors = self._vectors
        if end > vectors.shape[0]:
            vectors = np.zeros((max(end, 2 * vectors.shape[0]), self.dimensions), np.float32)
            vectors[: self._vectors.shape[0]] = self._vectors
        vectors[labels] = batch.vectors  # slots past the span: invisible until assigned
        self._index_call(self.index.add, labels, batch.vectors)
        self._vectors = vectors
        self._labels.assign(batch.ids)
        self._meta.extend(batch.metadata)
        self._columns.clear()

    def _index_call(self, method: Callable[..., None], *args: Any) -> None:
        """A faiss write; if it fails, the index is rebuilt from this store's tables later."""
        try:
            with faiss_errors():
                method(*args)
        except BaseException:
            self.index.invalidate()
            raise

    def _forget(self, ids: Sequence[str]) -> int:
        # The retired slots keep their metadata (hits already handed out read it lazily) until
        # the next compaction; persist writes them as null.
        label_of = self._labels.label_of
        doomed = np.asarray([label_of[i] for i in ids if i in label_of], dtype=np.int64)
        if len(doomed):
            self._index_call(self.index.remove, doomed)
        labels = self._labels.retire(ids)
        if len(labels):
            self._columns.clear()
            holes = self._labels.span - len(self._labels)
            if holes >= 64 and holes > self.index.compact_ratio * self._labels.span:
                self.index.invalidate()  # rebuilt (and slots compacted) at the next search
        return len(labels)

    def engine_seams(self) -> list[EngineSeam]:
        """The faiss index (``RuntimeError``) and, with a path, the generation file writer."""
        seams = [EngineSeam("faiss index", self, "index", RuntimeError)]
        if self.path is not None:
            seams.append(EngineSeam("store files", sys.modules[__name__], "write_synced", OSError))
        return seams

    def delete(self, ids: Sequence[str]) -> int:
        self._live()
        if isinstance(ids, str):
            raise ValidationError("expected a list of ids, got a single string")
        checked = [validate_record_id(i) for i in ids]
        return self._forget(list(dict.fromkeys(checked)))

    # -- reads ------------------------------------------------------------------------------
    def get(self, ids: Sequence[str]) -> list[StoredVector | None]:
        self._live()
        if isinstance(ids, str):
            raise ValidationError("expected a list of ids, got a single string")
        out: list[StoredVector | None] = []
        for rid in ids:
            label = self._labels.label_of.get(validate_record_id(rid))
            if label is None:
                out.append(None)
            else:
                out.append(
                    StoredVector(rid, self._vectors[label].copy(), thaw_json(self._meta[label]))
                )
        return out

    def _column(self, path: str) -> ValueColumn:
        col = self._columns.get(path)
        if col is None:
            if path == "_id":
                col = ValueColumn([MISSING if i is None else i for i in self._labels.ids])
            else:
                parts = path.split(".")
                col = ValueColumn([_at_path(m, parts) for m in self._meta])
            self._columns[path] = col
        return col

    def _allowed(self, condition: Filter | None) -> npt.NDArray[np.bool_]:
        """Live slots matching ``condition`` (a fresh array the caller may keep)."""
        live = self._labels.live_mask()
        if condition is None:
            return live.copy()
        return compile_mask(condition, self._column, self._labels.span) & live

    def count(self, filter: Filter | Mapping[str, Any] | None = None) -> int:
        self._live()
        condition = self._filter(filter)
        if condition is None:
            return len(self._labels)
        return int(np.count_nonzero(self._allowed(condition)))

    # -- search -----------------------------------------------------------------------------
    def _source(self) -> tuple[npt.NDArray[np.int64], F32]:
        """Compact the slots (dropping deleted ones) and hand every live vector to a rebuild
        (the index is invalidated first: if the build fails, the next search starts over
        from the compacted slots)."""
        self.index.invalidate()
        live = np.flatnonzero(self._labels.live_mask())
        ids = [self._labels.ids[i] for i in live.tolist()]
        self._vectors = np.ascontiguousarray(self._vectors[live])
        self._meta = [self._meta[i] for i in live.tolist()]
        self._columns.clear()
        labels = self._labels.renumber([i for i in ids if i is not None])
        return labels, self._vectors

    def search(
        self,
        vector: Any,
        k: int = 10,
        *,
        filter: Filter | Mapping[str, Any] | None = None,
        **params: Any,
    ) -> list[VectorHit]:
        if filter is None:
            hits = self._plain(vector, k, params)
            if hits is not None:
                return hits
        return self._search(_prepare_queries(vector, self.dimensions, k), k, filter, params)[0]

    def _plain(self, vector: Any, k: int, params: Mapping[str, Any]) -> list[VectorHit] | None:
        """The common call, one float32 query with no filter on a ready index, with as little
        Python around the faiss call as possible; ``None`` sends it down the general path.

        After a large HNSW search has streamed megabytes of vectors through the CPU caches,
        every Python and numpy step runs cold and costs several times its warm price, so this
        path takes the fewest: the query is checked for NaN and infinity *by the search
        itself* (any such value makes every distance to a finite vector non-finite), and only
        a non-finite or short result goes through the full validation and the general path.
        """
        index, live = self.index, len(self._labels)
        if (
            type(vector) is not np.ndarray
            or vector.dtype is not _F32  # native float32 (the dtype is a singleton)
            or vector.shape != (self.dimensions,)
            or type(k) is not int
            or k <= 0
            or self._closed
            or index.kind == "ivfpq"  # re-ranked exactly: the general path
            or not index.ready(live)
        ):
            return None
        with np.errstate(invalid="ignore"):  # NaN is found by the search itself (above)
            check_magnitude(None, vector, "query: ")  # the rule every store applies
        options = SearchParams.parse(params)
        if options.exact:
            return None
        raw, labels = index.search_one(vector, min(k, live), options)
        found: list[int] = labels.tolist()
        values: list[float] = raw.tolist()
        if found[-1] < 0 or not math.isfinite(sum(values)):
            return None
        names: list[str] = self._labels.names[labels].tolist()
        return self._hits(found, distance_list(values, self.config.metric), names)

    def search_batch(
        self,
        vectors: Any,
        k: int = 10,
        *,
        filter: Filter | Mapping[str, Any] | None = None,
        **params: Any,
    ) -> list[list[VectorHit]]:
        return self._search(_prepare_queries(vectors, self.dimensions, k), k, filter, params)

    def _search(
        self,
        queries: F32,
        k: int,
        filter: Filter | Mapping[str, Any] | None,
        params: Mapping[str, Any],
    ) -> list[list[VectorHit]]:
        self._live()
        k = hits_cap(k)
        options = SearchParams.parse(params)
        condition = self._filter(filter)
        live = len(self._labels)
        if not live:
            return [[] for _ in range(queries.shape[0])]
        self.index.ensure(live, self._source)
        allowed: npt.NDArray[np.bool_] | None = None
        n_allowed = live
        if condition is not None:
            allowed = self._allowed(condition)
            n_allowed = int(np.count_nonzero(allowed))
            if n_allowed == 0:
                return [[] for _ in range(queries.shape[0])]
        if options.exact or (condition is not None and n_allowed <= self.exact_filter_below):
            return self._exact(queries, k, allowed)
        selector = allowed  # HNSW keeps deleted vectors (tombstones): select the live ones
        if selector is None and self.index.tombstones:
            selector = self._labels.live_mask()
        fetch = k * self.rerank if self.index.kind == "ivfpq" else k
        raw, labels = self.index.search(queries, min(fetch, n_allowed), selector, options)
        want = min(k, n_allowed)
        out: list[list[VectorHit]] = []
        for i in range(queries.shape[0]):
            found = labels[i].tolist()  # faiss pads with -1 at the end
            n = len(found) if found[-1] >= 0 else found.index(-1)
            if n < want:  # the ANN index came back short: exact over the selection
                out.append(self._exact(queries[i : i + 1], k, allowed)[0])
            elif self.index.kind == "ivfpq":
                cand = np.asarray(found[:n], dtype=np.int64)
                order, exact = rank_exact(
                    self._vectors[cand], queries[i], self.config.metric, self._ids(cand), k
                )
                out.append(self._hits(cand[order], exact.tolist()))
            else:
                out.append(
                    self._hits(found[:n], distance_list(raw[i].tolist()[:n], self.config.metric))
                )
        return out

    @property
    def labels(self) -> LabelTable:
        """The id <-> faiss label table (read-only use: benchmarks driving the index raw)."""
        return self._labels

    def _ids(self, labels: npt.NDArray[np.int64] | list[int]) -> list[str]:
        ids = self._labels.ids
        return [ids[i] or "" for i in (labels if isinstance(labels, list) else labels.tolist())]

    def _exact(
        self, queries: F32, k: int, allowed: npt.NDArray[np.bool_] | None
    ) -> list[list[VectorHit]]:
        """Brute force over the allowed (default: live) slots (float32 product, float64 final
        ranking)."""
        slots = np.flatnonzero(self._labels.live_mask() if allowed is None else allowed)
        matrix = self._vectors[slots]
        metric = self.config.metric
        scores = score_matrix(matrix, queries, metric)
        out = []
        for q, row in zip(queries, scores, strict=True):
            picks = topk_candidates(row, k)
            order, dist = rank_candidates(
                row[picks],
                partial(np.take, matrix, picks, axis=0),
                q,
                metric,
                partial(self._ids, slots[picks]),
                k,
            )
            out.append(self._hits(slots[picks][order], dist))
        return out

    def _hits(
        self,
        labels: npt.NDArray[np.int64] | list[int],
        distances: list[float],
        ids: list[str] | None = None,
    ) -> list[VectorHit]:
        """Hits for live labels (searches only ever return those), ranked by (distance, id);
        ``ids`` when the caller has them already."""
        label_list = labels if isinstance(labels, list) else labels.tolist()
        if ids is None:
            ids = self._ids(label_list)
        order = tie_order(distances, ids)
        if order is not None:
            ids = [ids[i] for i in order]
            label_list = [label_list[i] for i in order]
            distances = [distances[i] for i in order]
        return list(
            map(
                LazyHit,
                ids,
                score_list(distances, self.config.metric),
                distances,
                range(1, len(ids) + 1),
                repeat(self._meta),
                label_list,
            )
        )

    # -- lifecycle --------------------------------------------------------------------------
    def optimize(self) -> dict[str, Any]:
        """Rebuild the index now: compact deleted slots, retrain IVF, re-pick ``auto``."""
        self._live()
        self.index.invalidate()
        self.index.ensure(len(self._labels), self._source)
        return self.stats()

    def persist(self) -> None:
        self._live()
        if self.path is None:
            raise ValidationError("this faiss store has no path; nothing to persist to")
        try:
            Generations(self.path).commit(self._write_generation)
        except OSError as exc:  # the previous generation stays the current one
            raise BackendError(f"could not persist the faiss store in {self.path}: {exc}") from exc

    def _write_generation(self, folder: Path) -> dict[str, Any]:
        span = self._labels.span
        index_bytes = self.index.to_bytes()
        if index_bytes is not None:
            write_synced(folder / "index.faiss", index_bytes)
        write_synced(folder / "vectors.npy", npy_bytes(self._vectors[:span]))
        write_synced(folder / "ids.json", json.dumps(self._labels.to_json()).encode())
        ids = self._labels.ids
        meta = [m if rid is not None else None for m, rid in zip(self._meta, ids, strict=True)]
        write_synced(folder / "metadata.json", json.dumps(meta, allow_nan=False).encode())
        state = {
            "format": _FORMAT,
            "config": self.config.to_dict(),
            "options": {
                "recall_target": self.index.recall_target,
                "exact_filter_below": self.exact_filter_below,
                "compact_ratio": self.index.compact_ratio,
                "rerank": self.rerank,
            },
            "index": None
            if index_bytes is None
            else {"kind": self.index.kind, "tombstones": self.index.tombstones},
            "count": len(self._labels),
        }
        write_synced(folder / "store.json", json.dumps(state, indent=1).encode())
        return {"store": _FORMAT, "count": len(self._labels)}

    def _read(self, path: Path, *, check: VectorConfig | None) -> None:
        current = Generations(path).current()
        if current is None:
            raise BackendError(f"{path} holds no persisted faiss store")
        _, folder = current
        try:
            state = json.loads((folder / "store.json").read_text("utf-8"))
            if state.get("format") != _FORMAT:
                raise BackendError(f"{folder}: unknown store format {state.get('format')!r}")
            stored = VectorConfig.from_dict(state["config"])
            if check is not None and (
                stored.dimensions != check.dimensions or stored.metric != check.metric
            ):
                raise SchemaError(
                    f"{path} holds a {stored.dimensions}-d {stored.metric.value} store; "
                    f"asked for {check.dimensions}-d {check.metric.value}"
                )
            ids = json.loads((folder / "ids.json").read_text("utf-8"))
            meta = json.loads((folder / "metadata.json").read_text("utf-8"))
            vectors = load_npy(folder / "vectors.npy").astype(np.float32, copy=False)
            index_state = state.get("index")
            index_bytes = (folder / "index.faiss").read_bytes() if index_state else None
        except (OSError, ValueError, KeyError) as exc:
            raise BackendError(f"cannot read faiss store generation {folder}: {exc}") from exc
        if len(ids) != len(meta) or vectors.shape != (len(ids), stored.dimensions):
            raise BackendError(f"{folder}: ids, metadata and vectors disagree in length")
        self._labels = LabelTable.from_json(ids)
        self._vectors = np.ascontiguousarray(vectors)
        self._meta = meta
        self._columns.clear()
        if index_bytes is not None and index_state is not None:
            self.index.restore(index_bytes, index_state["kind"], int(index_state["tombstones"]))
        else:
            self.index.invalidate()

    @classmethod
    def load(cls, path: str | Path, **options: Any) -> Self:
        """Reopen a persisted store; ``options`` override the persisted ones."""
        folder = Path(path)
        # The configuration is read under the lock too; the constructor takes it again.
        lock = StoreLock.acquire(folder, "faiss vector store")
        try:
            current = Generations(folder).current()
            if current is None:
                raise BackendError(f"{folder} holds no persisted faiss store")
            try:
                state = json.loads((current[1] / "store.json").read_text("utf-8"))
            except (OSError, ValueError) as exc:
                raise BackendError(f"cannot read {current[1] / 'store.json'}: {exc}") from exc
        finally:
            lock.release()
        config = VectorConfig.from_dict(state["config"])
        return cls(config, folder, **{**state.get("options", {}), **options})

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self.path is not None:
                self.persist()
        finally:
            self._closed = True
            self.index.invalidate()
            if self._store_lock is not None:  # after the last write, even a failed one
                self._store_lock.release()

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "index": self.index.stats(),
            "slots": self._labels.span,
            "path": None if self.path is None else str(self.path),
        }
