"""The memory backend: the reference semantics, and fast.

Rows live in Python lists; each vector field is one contiguous float32 matrix aligned with them,
so a vector search is one matrix product, the filter is a boolean mask applied before top-k, and
only the k hits are copied out. Deletes move the last row into the hole, keeping matrices dense.
A single lock serialises access, so the async shell may call in from worker threads; the same
re-entrant lock is :meth:`MemoryBackend.write_lock`, so a read-check-write step of the
vectorizer (:mod:`dataknobs_data.vector.sync`) cannot interleave with another writer.

Beside the rows: the collection's settings (a dict of str, gone with the object like the
records), and the sorted ids of the records holding a pending-embedding mark
(:mod:`dataknobs_data.engines.marked`), kept up to date by every write so that
:meth:`~MemoryBackend.pending_ids` never scans the rows.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from ...capabilities import CORE_FEATURES, Capabilities
from ...contract import Backend, EngineSeam, VectorSearchRequest, WriteMode
from ...engines.columns import ValueColumn, VectorColumn
from ...engines.marked import MarkedIds
from ...engines.mask import compile_mask
from ...errors import DuplicateRecordError, SchemaError
from ...evaluate import order_indices
from ...fields import Field, FieldType, VectorField, thaw_json
from ...marks import PENDING_FIELD
from ...query import Filter, Query
from ...records import Record
from ...schema import (
    DEFAULT_FIELD_SETTING,
    already_declared,
    needs_default,
    plan_vector_schema,
    resolve_vector_query,
)
from ...vector.operations import (
    kept_scores,
    rank_candidates,
    score_matrix,
    topk_candidates,
    topk_candidates_batch,
)
from ...vector.types import DeferredResult, DistanceMetric, VectorConfig, VectorSearchResult
from ..deferred import Deferred, DeferredRegistry
from ..paging import pages_by_id
from ..settings import check_setting, with_prefix

__all__ = ["MemoryBackend"]

_EMPTY = np.zeros(0, dtype=np.float32)
_EMPTY.flags.writeable = False
_SUBSET_FRACTION = 0.5

CAPABILITIES = Capabilities(
    backend="memory",
    features=CORE_FEATURES,
    index_types=frozenset({"flat"}),
    notes={"vector_search": "exact (brute force) over a contiguous float32 matrix"},
)


def _stored_copy(record: Record) -> Record:
    """The backend's own copy; vector values are kept only in the column matrices."""
    fields: dict[str, Field] = {}
    for name, f in record.fields.items():
        if isinstance(f, VectorField):
            fields[name] = VectorField.trusted(name, _EMPTY, f.provenance_tuple(), f.metadata)
        else:
            fields[name] = f.copy()
    return Record.trusted(record.id, fields, thaw_json(record.metadata))


def _build(
    rec: Record,
    vectors: Mapping[str, npt.NDArray[np.float32]],
    i: int,
    fields: tuple[str, ...] | None = None,
) -> Record:
    """A public record from a stored one and row ``i`` of gathered vector copies.

    Fields are immutable, so stored ones are handed out as they are; only vectors (kept in the
    matrices) and JSON values (mutable) need copies. Stored records are replaced, never mutated,
    which is what makes building them later, outside the lock, consistent.
    """
    out: dict[str, Field] = {}
    for name, f in rec._fields.items():
        if fields is not None and name not in fields:
            continue
        if type(f) is VectorField:
            out[name] = VectorField.trusted(
                name, vectors[name][i], f.provenance_tuple(), f.metadata
            )
        elif f.type is FieldType.JSON:
            out[name] = f.copy()
        else:
            out[name] = f
    return Record.trusted(rec.id, out, thaw_json(rec.metadata) if rec.metadata else {})


Snapshot = tuple[list[Record], Mapping[str, npt.NDArray[np.float32]]]


@dataclass(slots=True)
class _Undo:
    """The state a write may overwrite (:meth:`MemoryBackend._undo_record`)."""

    n: int
    ids: list[str]
    stored: list[Record]
    rows: list[int]
    vectors: dict[str, tuple[npt.NDArray[Any], ...]]


def _hit_record(snapshot: Deferred[Snapshot], i: int) -> Record:
    stored, vectors = snapshot.get()
    return _build(stored[i], vectors, i)


class MemoryBackend(Backend):
    """In-process storage; nothing persists after :meth:`close`."""

    def __init__(self, *, initial_capacity: int = 1024) -> None:
        self._lock = threading.RLock()
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._stored: list[Record] = []
        self._schema: dict[str, VectorConfig] = {}
        self._vectors: dict[str, VectorColumn] = {}
        self._capacity = max(1, initial_capacity)
        self._columns: dict[str, ValueColumn] = {}
        self._id_order: npt.NDArray[np.intp] | None = None
        self._snapshots = DeferredRegistry()
        self._settings: dict[str, str] = {}
        self._pending = MarkedIds(PENDING_FIELD)

    # -- schema ----------------------------------------------------------------------------
    def capabilities(self) -> Capabilities:
        return CAPABILITIES

    def vector_schema(self) -> Mapping[str, VectorConfig]:
        return MappingProxyType(self._schema)

    def declare_vector_field(self, name: str, config: VectorConfig) -> None:
        with self._lock:
            if already_declared(name, self._schema.get(name), config):
                return
            self._snapshots.freeze_all()
            if any(name in rec for rec in self._stored):
                raise SchemaError(f"field {name!r} already holds non-vector values")
            self._add_vector_field(name, config)

    def _add_vector_field(self, name: str, config: VectorConfig) -> None:
        column = VectorColumn(config.dimensions, self._capacity)  # allocates: before any change
        self._schema[name] = config
        self._vectors[name] = column

    # -- writes ----------------------------------------------------------------------------
    def _invalidate(self) -> None:
        self._columns.clear()
        self._id_order = None

    def _ensure_capacity(self, needed: int) -> None:
        if needed <= self._capacity:
            return
        capacity = max(needed, self._capacity * 2)
        for col in self._vectors.values():
            col.resize(capacity, len(self._ids))
        self._capacity = capacity

    def put(self, records: Sequence[Record], mode: WriteMode) -> list[bool]:
        with self._lock:
            # Everything that can fail on the input happens before the first change; what
            # can still fail after it (an allocation, an engine call of a subclass) is undone.
            new_fields = plan_vector_schema(self._schema, records)
            existed = [r.id in self._rows for r in records]
            if mode == "create":
                for rec, was in zip(records, existed, strict=True):
                    if was:
                        raise DuplicateRecordError(rec.id)
            todo = [r for r, was in zip(records, existed, strict=True) if was or mode != "update"]
            stored = [_stored_copy(r) for r in todo]
            self._snapshots.freeze_all()
            undo = self._undo_record([self._rows[r.id] for r in todo if r.id in self._rows])
            try:
                self._put_rows(todo, stored, new_fields)
                self._after_put(todo)
            except BaseException:
                self._rollback(undo, new_fields)
                raise
            return existed

    def _put_rows(
        self, todo: Sequence[Record], stored: Sequence[Record], new_fields: Mapping[str, Any]
    ) -> None:
        fresh = len({r.id for r in todo if r.id not in self._rows})
        self._ensure_capacity(len(self._ids) + fresh)
        for name, cfg in new_fields.items():
            self._add_vector_field(name, cfg)
        rows = np.empty(len(todo), dtype=np.intp)
        for i, rec in enumerate(stored):
            row = self._rows.get(rec.id)
            if row is None:
                row = len(self._ids)
                self._rows[rec.id] = row
                self._ids.append(rec.id)
                self._stored.append(rec)
            else:
                self._stored[row] = rec
            rows[i] = row
        self._invalidate()
        self._pending.update(stored)
        for name, col in self._vectors.items():
            have = [i for i, r in enumerate(todo) if isinstance(r.fields.get(name), VectorField)]
            if have:
                vecs = np.stack([todo[i].fields[name].value for i in have])
                col.assign(rows[have], vecs)
            if len(have) < len(todo):
                col.erase(np.delete(rows, have))

    def _after_put(self, written: Sequence[Record]) -> None:
        """A subclass's work after the rows changed (index maintenance, a journal); if it
        raises, the write is undone."""

    # -- undo --------------------------------------------------------------------------------
    def _undo_record(self, rows: Sequence[int], tail_from: int | None = None) -> _Undo:
        """What a write is about to overwrite: the row count, and the stored records and
        vector rows at ``rows`` and at ``tail_from`` (default: none) up to the row count, the
        rows a removal moves into its holes. Rows a write appends need no copy: they were
        empty, and :meth:`_rollback` empties them again. O(rows touched)."""
        n = len(self._ids)
        start = n if tail_from is None else tail_from
        touched = np.unique(
            np.concatenate([np.asarray(rows, dtype=np.intp), np.arange(start, n, dtype=np.intp)])
        )
        return _Undo(
            n=n,
            ids=[self._ids[r] for r in touched if r < n],
            stored=[self._stored[r] for r in touched if r < n],
            rows=[int(r) for r in touched if r < n],
            vectors={name: col.save(touched) for name, col in self._vectors.items()},
        )

    def _rollback(self, undo: _Undo, new_fields: Mapping[str, Any] = MappingProxyType({})) -> None:
        """Put the rows, ids and vector columns back as :meth:`_undo_record` saw them."""
        for rid in self._ids[undo.n :]:
            self._rows.pop(rid, None)
        del self._ids[undo.n :]
        del self._stored[undo.n :]
        for row, rid, rec in zip(undo.rows, undo.ids, undo.stored, strict=True):
            old = self._ids[row] if row < len(self._ids) else None
            if old is not None and old != rid and self._rows.get(old) == row:
                del self._rows[old]
            while len(self._ids) <= row:  # rows a remove dropped off the end
                self._ids.append(rid)
                self._stored.append(rec)
            self._ids[row], self._stored[row] = rid, rec
            self._rows[rid] = row
        for name in new_fields:
            self._drop_vector_field(name)
        for name, col in self._vectors.items():
            saved = undo.vectors.get(name)
            if saved is not None:
                # rows at and past the old count were empty: a failed put may have filled some
                col.erase(np.arange(undo.n, len(col.present), dtype=np.intp))
                col.restore(saved)
        self._invalidate()
        self._pending.reset(self._stored)  # O(n), on the failure path only

    def _drop_vector_field(self, name: str) -> None:
        """Forget a vector field a failed write had added."""
        self._schema.pop(name, None)
        self._vectors.pop(name, None)

    def remove(self, ids: Sequence[str]) -> list[bool]:
        with self._lock:
            self._snapshots.freeze_all()
            found = [rid in self._rows for rid in ids]
            gone = list(dict.fromkeys(rid for rid, was in zip(ids, found, strict=True) if was))
            if not gone:
                return found
            holes = [self._rows[rid] for rid in gone]
            undo = self._undo_record(holes, tail_from=len(self._ids) - len(gone))
            try:
                self._remove_rows(gone)
                self._after_remove(gone)
            except BaseException:
                self._rollback(undo)
                raise
            return found

    def _remove_rows(self, gone: Sequence[str]) -> None:
        self._invalidate()
        self._pending.discard(gone)
        for rid in gone:
            row = self._rows.pop(rid)
            last = len(self._ids) - 1
            if row != last:
                moved = self._ids[last]
                self._ids[row], self._stored[row] = moved, self._stored[last]
                self._rows[moved] = row
                for col in self._vectors.values():
                    col.move(last, row)
            self._ids.pop()
            self._stored.pop()
            for col in self._vectors.values():
                col.erase(np.asarray([last], dtype=np.intp))

    def _after_remove(self, gone: Sequence[str]) -> None:
        """A subclass's work after rows were removed; if it raises, the removal is undone."""

    def clear(self) -> int:
        with self._lock:
            self._snapshots.freeze_all()
            n = len(self._ids)
            if not n:
                return 0
            # fresh columns first (the only step that allocates), then swapped in
            fresh = {
                name: VectorColumn(col.dims, self._capacity) for name, col in self._vectors.items()
            }
            kept = (self._ids, self._rows, self._stored, self._vectors, self._pending)
            self._ids, self._rows, self._stored, self._vectors = [], {}, [], fresh
            self._pending = MarkedIds(PENDING_FIELD)
            self._invalidate()
            try:
                self._after_clear()
            except BaseException:
                self._ids, self._rows, self._stored, self._vectors, self._pending = kept
                self._invalidate()
                raise
            return n

    def _after_clear(self) -> None:
        """A subclass's work after a clear; if it raises, the clear is undone."""

    # -- reads -----------------------------------------------------------------------------
    def _gather(self, rows: list[int]) -> dict[str, npt.NDArray[np.float32]]:
        """Read-only copies of every vector column at ``rows`` (one gather per column)."""
        out = {}
        for name, col in self._vectors.items():
            block = col.matrix[rows]
            block.flags.writeable = False
            out[name] = block
        return out

    def _materialise(self, row: int, fields: tuple[str, ...] | None = None) -> Record:
        return _build(self._stored[row], self._gather([row]), 0, fields)

    def get(self, ids: Sequence[str]) -> list[Record | None]:
        with self._lock:
            rows = [self._rows.get(i) for i in ids]
            return [None if r is None else self._materialise(r) for r in rows]

    def contains(self, ids: Sequence[str]) -> list[bool]:
        with self._lock:
            return [i in self._rows for i in ids]

    def _column(self, path: str) -> ValueColumn:
        col = self._columns.get(path)
        if col is None:
            parts = path.split(".")
            col = ValueColumn([rec.get_path(parts) for rec in self._stored])
            self._columns[path] = col
        return col

    def _mask(self, condition: Filter | None) -> npt.NDArray[np.bool_] | None:
        if condition is None:
            return None
        return compile_mask(condition, self._column, len(self._ids))

    def _ordered_rows(self, query: Query) -> npt.NDArray[np.intp]:
        mask = self._mask(query.condition)
        if query.sort_by:
            rows = np.arange(len(self._ids)) if mask is None else np.flatnonzero(mask)
            ids = [self._ids[r] for r in rows]
            keys = [(s, [self._column(s.field).values[r] for r in rows]) for s in query.sort_by]
            rows = rows[order_indices(ids, keys)]
        else:
            if self._id_order is None:
                self._id_order = order_indices(self._ids, [])
            rows = self._id_order if mask is None else self._id_order[mask[self._id_order]]
        end = None if query.take is None else query.skip + query.take
        return rows[query.skip : end]

    def search(self, query: Query) -> list[Record]:
        with self._lock:
            return [self._materialise(int(r), query.projection) for r in self._ordered_rows(query)]

    def count(self, condition: Filter | None) -> int:
        with self._lock:
            mask = self._mask(condition)
            return len(self._ids) if mask is None else int(mask.sum())

    def scan(self, query: Query, batch_size: int) -> Iterator[list[Record]]:
        """Pages of the query's results. The matching ids are fixed when the scan starts;
        records deleted meanwhile are skipped and updated ones appear in their latest state."""
        with self._lock:
            ids = [self._ids[r] for r in self._ordered_rows(query)]
        return self._pages(ids, query.projection, batch_size)

    def _pages(
        self, ids: list[str], fields: tuple[str, ...] | None, batch_size: int
    ) -> Iterator[list[Record]]:
        def fetch(chunk: list[str]) -> dict[str, Record]:
            with self._lock:
                found = {i: self._rows.get(i) for i in chunk}
                return {i: self._materialise(r, fields) for i, r in found.items() if r is not None}

        return pages_by_id(ids, batch_size, fetch)

    # -- vector search ---------------------------------------------------------------------
    def vector_search(self, request: VectorSearchRequest) -> list[list[VectorSearchResult]]:
        with self._lock:
            field, _cfg, metric = self._resolve(request)
            col = self._vectors[field]
            n = len(self._ids)
            present = col.present[:n]
            mask = self._mask(request.filter)
            valid = present if mask is None else present & mask
            n_valid = int(np.count_nonzero(valid))
            if n_valid == 0:
                return [[] for _ in range(request.vectors.shape[0])]
            rows: npt.NDArray[np.intp] | None = None
            if n_valid < n * _SUBSET_FRACTION:
                # Selective filter: score only the matching rows (one gather, smaller product).
                rows = np.flatnonzero(valid)
                scores = score_matrix(
                    col.matrix[rows],
                    request.vectors,
                    metric,
                    inv_norms=col.inv_norms[rows],
                    sq_norms=col.sq_norms[rows],
                    unit_rows=col.unit_rows(n),
                )
            else:
                scores = score_matrix(
                    col.matrix[:n],
                    request.vectors,
                    metric,
                    inv_norms=col.inv_norms[:n],
                    sq_norms=col.sq_norms[:n],
                    unit_rows=col.unit_rows(n),
                )
                if n_valid < n:
                    scores[:, ~valid] = -np.inf
            if scores.shape[0] == 1:
                picks = [topk_candidates(scores[0], request.k)]
            else:
                picks = topk_candidates_batch(scores, request.k)
            return [
                self._hits(col, p if rows is None else rows[p], s[p], q, metric, request)
                for p, s, q in zip(picks, scores, request.vectors, strict=True)
            ]

    def _hits(
        self,
        col: VectorColumn,
        rows: npt.NDArray[np.intp],
        raw: npt.NDArray[np.float32],
        query: npt.NDArray[np.float32],
        metric: DistanceMetric,
        request: VectorSearchRequest,
    ) -> list[VectorSearchResult]:
        candidates = rows.tolist()
        order, distances = rank_candidates(
            raw,
            lambda: col.matrix[rows],
            query,
            metric,
            lambda: [self._ids[r] for r in candidates],
            request.k,
        )
        ranked = [candidates[i] for i in order]
        return self._results([self._ids[r] for r in ranked], ranked, distances, metric, request)

    def _results(
        self,
        ids: list[str],
        rows: list[int] | None,
        distances: list[float],
        metric: DistanceMetric,
        request: VectorSearchRequest,
    ) -> list[VectorSearchResult]:
        """Results for hits already ranked best first (their ids, and their rows when the
        caller has them; else they are looked up when the records are copied): scores, the
        score threshold, and records copied lazily (:mod:`..deferred`). Subclasses that rank
        elsewhere, e.g. in an ANN index, share this step."""
        scores = kept_scores(distances, metric, request.score_threshold)
        keep = len(scores)
        ids, distances = ids[:keep], distances[:keep]
        rows = None if rows is None else rows[:keep]
        load = partial(_hit_record, self._snapshots.new(partial(self._take, ids, rows)))
        return [
            DeferredResult(rid, score, dist, rank, load, rank - 1)
            for rank, (rid, score, dist) in enumerate(zip(ids, scores, distances, strict=True), 1)
        ]

    def _resolve(self, request: VectorSearchRequest) -> tuple[str, VectorConfig, DistanceMetric]:
        """The search's field (the stored default when unnamed among several), config and
        metric; called under the lock, so a switch is seen by the next search."""
        query = request.single()
        default = (
            self._settings.get(DEFAULT_FIELD_SETTING)
            if needs_default(self._schema, query)
            else None
        )
        return resolve_vector_query(self._schema, query, model=request.model, default=default)

    def _take(self, ids: list[str], rows: list[int] | None) -> Snapshot:
        """The stored records and vector copies of a search's hits (run under the lock by a
        writer, or by a reader before any write has happened since the search; see
        :mod:`..deferred`)."""
        at = [self._rows[i] for i in ids] if rows is None else rows
        return [self._stored[r] for r in at], self._gather(at)

    # -- synchronisation support -------------------------------------------------------------
    def read_setting(self, key: str) -> str | None:
        key, _ = check_setting(key, None)
        with self._lock:
            return self._settings.get(key)

    def write_setting(self, key: str, value: str | None) -> None:
        """Set (or with ``None`` delete) a setting; kept in a dict for the object's lifetime."""
        key, value = check_setting(key, value)
        with self._lock:
            self._set_setting(key, value)

    def _set_setting(self, key: str, value: str | None) -> str | None:
        """Change one setting (checked already); returns the value it replaced, so a subclass
        whose journal append fails can put it back."""
        old = self._settings.get(key)
        if value is None:
            self._settings.pop(key, None)
        else:
            self._settings[key] = value
        return old

    def settings(self, prefix: str) -> dict[str, str]:
        with self._lock:
            return with_prefix(self._settings, prefix)

    def write_lock(self) -> AbstractContextManager[None]:
        """The lock every call takes (re-entrant: the thread's own calls join it)."""
        return self._held()

    @contextmanager
    def _held(self) -> Iterator[None]:
        with self._lock:
            yield

    def pending_ids(self, after: str | None, limit: int) -> list[str]:
        """From the sorted set of marked ids every write keeps (:mod:`...engines.marked`):
        a bisection instead of a filtered search that rebuilds the mark's column after each
        write and compares ``_id > after`` per value (measured at 100,000 records, 1,000
        marked: ~32 ms per page of 64 after a write, ~33 ms per later page; this: ~1 us)."""
        with self._lock:
            return self._pending.page(after, limit)

    def engine_seams(self) -> list[EngineSeam]:
        """The vector columns (numpy: what can fail there is an allocation, ``MemoryError``,
        which passes through unwrapped after the write is undone)."""
        return [
            EngineSeam(f"vector column {name}", self._vectors, name, MemoryError, wrapped=False)
            for name in self._vectors
        ]

    def close(self) -> None:
        with self._lock:
            self.clear()

    def stats(self) -> dict[str, Any]:
        """Row count and the bytes held by vector matrices (for benchmarks and debugging)."""
        with self._lock:
            n = len(self._ids)
            return {
                "records": n,
                "capacity": self._capacity,
                "vector_bytes": sum(c.nbytes(self._capacity) for c in self._vectors.values()),
            }
