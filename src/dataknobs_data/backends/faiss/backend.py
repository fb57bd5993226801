"""The faiss backend: the memory backend's records and queries, faiss for vector search.

Records, filters (numpy masks), sorting, paging and schema checks are the memory backend's,
inherited rather than copied, so they agree with the reference by construction. Each vector
field gets a :class:`~dataknobs_data.engines.faiss_index.FaissIndex` (``auto`` by default:
exact flat below 10,000 vectors, HNSW above; ``create_vector_index`` picks another) whose
int64 labels map to record ids through a :class:`LabelTable`.

A vector search turns the filter into the memory backend's row mask, hands faiss the matching
labels as an ``IDSelectorBitmap`` (pre-filtering), and re-ranks the candidates exactly in
float64 with the memory backend's own code, so scores and tie order agree with the reference.
It is answered by the memory backend's exact path instead when that is what exactness needs:
a metric other than the field's index metric, at most ``exact_filter_below`` matching records,
an ANN index that came back short, or (flat) a near tie at the k-th place.

Durability (``faiss://path``): every committed write call is appended to a checksummed journal
and fsynced before it returns; on close, on :meth:`persist` and whenever the journal outgrows
the last snapshot, a snapshot generation (records, label tables, faiss's own serialisation of
each index) replaces it atomically (:mod:`dataknobs_data.durable`). Opening replays the
snapshot, then the journal up to its last complete frame. ``faiss://`` without a path keeps
nothing. Collection settings (:meth:`FaissBackend.write_setting`) are journalled like any
write (a ``setting`` operation, encoded before the change and fsynced before the call returns)
and written into each snapshot after the schema, so they survive a snapshot, a reopen and a
``kill -9``. An open database holds the directory's exclusive lock
(:mod:`dataknobs_data.engines.storelock`): a second opener, in this process or another, gets
:class:`~dataknobs_data.errors.StoreLockedError` naming the holder. Like the memory
backend, one lock serialises calls; the async shell runs them in worker threads.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from ...capabilities import CORE_FEATURES, Capabilities, Feature
from ...contract import EngineSeam, VectorSearchRequest, WriteMode
from ...durable import Generations, Journal, frame, write_synced
from ...engines.faiss_index import (
    KINDS,
    FaissIndex,
    LabelTable,
    SearchParams,
    distance_list,
    faiss_errors,
)
from ...engines.storelock import StoreLock
from ...errors import BackendError, UnknownFieldError
from ...fields import VectorField
from ...ints import checked_int
from ...records import Record
from ...vector.operations import RERANK_EXTRA, rank_exact, tie_order, tie_tolerance
from ...vector.types import DistanceMetric, VectorConfig, VectorSearchResult
from ..memory import MemoryBackend
from ..settings import check_setting
from . import codec

__all__ = ["FaissBackend"]

F32 = npt.NDArray[np.float32]
_SNAPSHOT_CHUNK = 5000
_SIMILARITIES = (DistanceMetric.COSINE, DistanceMetric.DOT_PRODUCT)
_MIN_JOURNAL = 64 * 2**20

_FEATURES = CORE_FEATURES
CAPABILITIES = Capabilities(
    backend="faiss",
    features=_FEATURES,
    index_types=frozenset(KINDS),
    notes={
        "vector_search": "faiss index per vector field (flat below 10k vectors, HNSW above, or "
        "as created); filter as an id selector; candidates re-ranked exactly in float64",
    },
)
PERSISTENT_CAPABILITIES = replace(CAPABILITIES, features=_FEATURES | {Feature.PERSISTENT})


def _tied_at_cut(faiss_d: list[float], similarity: bool, k: int, n_allowed: int) -> bool:
    """Whether rows beyond the fetched ones could tie with the k-th (then only the exact path,
    which widens to every near tie, orders them by id as the reference does)."""
    if len(faiss_d) < k or len(faiss_d) >= n_allowed:
        return False
    kth, last = faiss_d[k - 1], faiss_d[-1]
    if not similarity:  # faiss distances: lower is better
        kth, last = -kth, -last
    return last >= kth - tie_tolerance(kth)


def _journal_name(generation: int) -> str:
    """The journal of writes made after snapshot ``generation``."""
    return f"journal-{generation:06d}.log"


class _FieldIndex:
    """One vector field's faiss index and its id <-> label table."""

    __slots__ = ("index", "labels", "row_labels")

    def __init__(self, index: FaissIndex) -> None:
        self.index = index
        self.labels = LabelTable()
        self.row_labels: npt.NDArray[np.int64] | None = None  # label per backend row (cache)


class FaissBackend(MemoryBackend):
    """``faiss://path`` (durable) or ``faiss://`` (in process only); see the module docstring.

    Options: ``recall_target`` (0.95) and ``compact_ratio`` (0.25) as for
    :class:`~dataknobs_data.vector.stores.faiss.FaissVectorStore`; ``exact_filter_below``
    (2048): filtered searches matching at most this many records are scored exactly;
    ``fsync`` (True): fsync each journal frame (off only for throwaway data).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        recall_target: float = 0.95,
        exact_filter_below: int = 2048,
        compact_ratio: float = 0.25,
        fsync: bool = True,
        initial_capacity: int = 1024,
    ) -> None:
        checked_int("exact_filter_below", exact_filter_below)
        # Checked once here so a bad value fails at open, not at the first vector field.
        FaissIndex(
            1, DistanceMetric.COSINE, recall_target=recall_target, compact_ratio=compact_ratio
        )
        super().__init__(initial_capacity=initial_capacity)
        self._recall_target = recall_target
        self._compact_ratio = compact_ratio
        self._exact_filter_below = exact_filter_below
        self._fields: dict[str, _FieldIndex] = {}
        self._path = None if path is None else Path(path)
        self._fsync = fsync
        self._journal: Journal | None = None
        self._snapshot_bytes = 0
        self._replaying = False
        self._snapshot_due = False
        self._payload: bytes | None = None  # the frame of the write in progress
        self._indexes_touched = False  # the write in progress changed labels or indexes
        self._store_lock: StoreLock | None = None
        if self._path is not None:
            # Before anything in the directory is read: one open database per directory.
            self._store_lock = StoreLock.acquire(self._path, "faiss database")
            try:
                self._open(self._path)
            except BaseException:
                self._store_lock.release()
                raise

    def capabilities(self) -> Capabilities:
        return CAPABILITIES if self._path is None else PERSISTENT_CAPABILITIES

    # -- field indexes ----------------------------------------------------------------------
    def _new_index(self, config: VectorConfig, kind: str, params: dict[str, Any]) -> FaissIndex:
        return FaissIndex(
            config.dimensions,
            config.metric,
            kind,
            params,
            recall_target=self._recall_target,
            compact_ratio=self._compact_ratio,
        )

    def _add_vector_field(self, name: str, config: VectorConfig) -> None:
        index = self._new_index(config, config.index.kind, dict(config.index.params))
        super()._add_vector_field(name, config)
        self._fields[name] = _FieldIndex(index)

    def _invalidate(self) -> None:
        super()._invalidate()
        for entry in self._fields.values():
            entry.row_labels = None

    def _sync_indexes(self, records: Sequence[Record]) -> None:
        """Mirror written records into every field index (old labels out, new ones in)."""
        ids = [r.id for r in records]
        for name, entry in self._fields.items():
            entry.index.remove(entry.labels.retire(ids))
            have = [r for r in records if isinstance(r.fields.get(name), VectorField)]
            if have:
                labels = entry.labels.assign([r.id for r in have])
                entry.index.add(labels, np.stack([r.fields[name].value for r in have]))
            entry.row_labels = None

    def _fresh_labels(self, name: str) -> tuple[LabelTable, npt.NDArray[np.int64], F32]:
        """A new label table numbering a field's live vectors 0..n-1, its labels and the
        vectors, for a (re)build; nothing of the field changes."""
        entry = self._fields[name]
        ids = [i for i in entry.labels.ids if i is not None]
        rows = np.fromiter((self._rows[i] for i in ids), dtype=np.intp, count=len(ids))
        table = LabelTable()
        return table, table.assign(ids), self._vectors[name].matrix[rows]

    def _source(self, name: str) -> tuple[npt.NDArray[np.int64], F32]:
        """Every live vector of a field, relabelled 0..n-1, for a (re)build of its index. The
        index is invalidated first: if the build fails, the next search rebuilds it from the
        new labels instead of searching an index numbered by the old ones."""
        entry = self._fields[name]
        table, labels, vectors = self._fresh_labels(name)
        entry.index.invalidate()
        entry.labels, entry.row_labels = table, None
        return labels, vectors

    def _row_labels(self, name: str) -> npt.NDArray[np.int64]:
        entry = self._fields[name]
        if entry.row_labels is None:
            get = entry.labels.label_of.get
            entry.row_labels = np.fromiter(
                (get(i, -1) for i in self._ids), dtype=np.int64, count=len(self._ids)
            )
        return entry.row_labels

    # -- writes -----------------------------------------------------------------------------
    # Each write encodes its journal frame before the first change, changes the records (the
    # memory backend), then the indexes, then appends the frame; if anything after the first
    # change raises, the memory backend puts its rows back and :meth:`_rollback` rebuilds
    # the label tables from them (the indexes are rebuilt at the next search), so a failed
    # write leaves no trace in the process or on disk.

    def _encoded(self, op: dict[str, Any]) -> bytes | None:
        """The journal frame of ``op`` (``None`` when nothing is journalled); a value the
        journal cannot encode is refused here, before anything changed."""
        if self._journal is None or self._replaying:
            return None
        try:
            return codec.encode_op(op)
        except (UnicodeError, ValueError, TypeError) as exc:
            raise BackendError(f"faiss: cannot journal this write: {exc}") from exc

    def _writable(self) -> None:
        """Before a write changes anything: a snapshot that failed after a journalled write
        (or a journal an append left unusable) is retried now, so the write lands in a
        journal that recovery will read."""
        if self._journal is not None and (self._snapshot_due or self._journal.broken):
            self.persist()  # a failure is already a BackendError naming the directory
            self._snapshot_due = False

    def declare_vector_field(self, name: str, config: VectorConfig) -> None:
        with self._lock:
            if name in self._schema:
                super().declare_vector_field(name, config)  # checks the configuration
                return
            self._writable()
            payload = self._encoded(codec.op_declare(name, config))
            super().declare_vector_field(name, config)
            try:
                self._log(payload)
            except BaseException:
                self._drop_vector_field(name)
                raise

    def write_setting(self, key: str, value: str | None) -> None:
        """Journalled like a record write: the frame is encoded before the change and appended
        (fsynced) after it; if the append fails, the old value is put back."""
        key, value = check_setting(key, value)
        with self._lock:
            self._writable()
            payload = self._encoded(codec.op_setting(key, value))
            old = self._set_setting(key, value)
            try:
                self._log(payload)
            except BaseException:
                self._set_setting(key, old)
                raise

    def _drop_vector_field(self, name: str) -> None:
        super()._drop_vector_field(name)
        self._fields.pop(name, None)

    def put(self, records: Sequence[Record], mode: WriteMode) -> list[bool]:
        with self._lock:
            self._writable()
            self._indexes_touched = False
            self._payload = self._encoded(codec.op_put(records, mode))
            try:
                return super().put(records, mode)
            finally:
                self._payload = None

    def _after_put(self, written: Sequence[Record]) -> None:
        self._indexes_touched = True
        with faiss_errors():
            self._sync_indexes(written)
        self._log(self._payload)

    def remove(self, ids: Sequence[str]) -> list[bool]:
        with self._lock:
            gone = [i for i in dict.fromkeys(ids) if i in self._rows]
            if gone:
                self._writable()
            self._indexes_touched = False
            self._payload = self._encoded(codec.op_remove(gone)) if gone else None
            try:
                return super().remove(ids)
            finally:
                self._payload = None

    def _after_remove(self, gone: Sequence[str]) -> None:
        self._indexes_touched = True
        with faiss_errors():
            for entry in self._fields.values():
                entry.index.remove(entry.labels.retire(gone))
                entry.row_labels = None
        self._log(self._payload)

    def clear(self) -> int:
        with self._lock:
            if self._ids:
                self._writable()
            self._payload = self._encoded(codec.op_clear()) if self._ids else None
            try:
                return super().clear()
            finally:
                self._payload = None

    def _after_clear(self) -> None:
        # new (empty) indexes are built aside and swapped in once the clear is journalled
        fresh = {
            name: self._new_index(self._schema[name], e.index.requested, e.index.params)
            for name, e in self._fields.items()
        }
        self._log(self._payload)
        for name, entry in self._fields.items():
            entry.labels = LabelTable()
            entry.index = fresh[name]
            entry.row_labels = None

    def _rollback(self, undo: Any, new_fields: Any = MappingProxyType({})) -> None:
        super()._rollback(undo, new_fields)
        if self._indexes_touched:
            self._relabel()

    def _relabel(self) -> None:
        """Label tables rebuilt from the rows (after an undone write), indexes rebuilt at the
        next search: O(n), on the failure path only."""
        self._indexes_touched = False
        n = len(self._ids)
        for name, entry in self._fields.items():
            present = np.flatnonzero(self._vectors[name].present[:n])
            entry.labels = LabelTable()
            entry.labels.assign([self._ids[r] for r in present.tolist()])
            entry.index.invalidate()
            entry.row_labels = None

    # -- vector search ----------------------------------------------------------------------
    def vector_search(self, request: VectorSearchRequest) -> list[list[VectorSearchResult]]:
        with self._lock:
            field, cfg, metric = self._resolve(request)
            entry = self._fields[field]
            knobs = SearchParams.parse(request.params)
            if metric is not cfg.metric or not len(entry.labels) or knobs.exact:
                return super().vector_search(request)  # exact numpy (faiss has another metric)
            index = entry.index
            if not index.ready(len(entry.labels)):
                index.ensure(len(entry.labels), partial(self._source, field))
            allowed: npt.NDArray[np.bool_] | None = None
            n_allowed = len(entry.labels)
            if request.filter is not None:
                mask = self._mask(request.filter)
                assert mask is not None
                if int(np.count_nonzero(mask)) <= self._exact_filter_below:
                    return super().vector_search(request)  # few matches: numpy over them
                selected = self._row_labels(field)[mask]
                selected = selected[selected >= 0]
                n_allowed = len(selected)
                if n_allowed <= self._exact_filter_below:
                    return super().vector_search(request)
                allowed = np.zeros(entry.labels.span, dtype=bool)
                allowed[selected] = True
            elif index.tombstones:
                allowed = entry.labels.live_mask()
            k = request.k
            if allowed is None and index.kind in ("hnsw", "ivfflat") and len(request.vectors) == 1:
                # one query on a graph or IVF-Flat index: the store's lean single-query call
                raw_d, found = index.search_one(request.vectors[0], min(k, n_allowed), knobs)
                labels = found.tolist()
                n = len(labels) if labels[-1] >= 0 else labels.index(-1)
                if n >= min(k, n_allowed):
                    names = entry.labels.names[found].tolist()
                    ranked = self._ranked(
                        field, index, labels, raw_d.tolist(), 0, request, metric, names
                    )
                    return [ranked]
            fetch = (
                k + RERANK_EXTRA
                if index.kind == "flat"
                else k * (4 if index.kind == "ivfpq" else 1)
            )
            fetch = min(fetch, n_allowed)
            found_d, found_l = index.search(request.vectors, fetch, allowed, knobs)
            want = min(k, n_allowed)
            similarity = metric in _SIMILARITIES
            out = []
            for i in range(request.vectors.shape[0]):
                labels = found_l[i].tolist()  # faiss pads with -1 at the end
                n = len(labels) if labels[-1] >= 0 else labels.index(-1)
                faiss_d = found_d[i].tolist()[:n]
                if n < want or (
                    index.kind == "flat" and _tied_at_cut(faiss_d, similarity, k, n_allowed)
                ):
                    one = replace(request, vectors=request.vectors[i : i + 1])
                    out.append(super().vector_search(one)[0])
                    continue
                out.append(self._ranked(field, index, labels[:n], faiss_d, i, request, metric))
            return out

    def _ranked(
        self,
        field: str,
        index: FaissIndex,
        labels: list[int],
        faiss_d: list[float],
        i: int,
        request: VectorSearchRequest,
        metric: DistanceMetric,
        hit_ids: list[str] | None = None,
    ) -> list[VectorSearchResult]:
        """Results for one query's candidates (``hit_ids``: their ids, when the caller has
        them), ranked as exactly as the index kind allows.

        flat: the memory backend's float64 re-rank (ties by id) - the reference order. IVF-PQ:
        its distances are approximate, so the candidates are re-scored exactly. HNSW and
        IVF-Flat compare full vectors, so faiss's float32 distances (relative error ~1e-6) are
        kept, ties ordered by id; a float64 pass would only add per-query cost to an answer
        that is approximate anyway. Plain Python lists throughout: for a handful of hits each
        numpy call costs more than the work it does.
        """
        if hit_ids is None:
            ids = self._fields[field].labels.ids
            hit_ids = [ids[j] or "" for j in labels]
        if index.kind in ("hnsw", "ivfflat"):
            distances = distance_list(faiss_d, metric)
            order = tie_order(distances, hit_ids)
            if order is not None:
                hit_ids = [hit_ids[o] for o in order]
                distances = [distances[o] for o in order]
            return self._results(hit_ids, None, distances, metric, request)
        rows = [self._rows[h] for h in hit_ids]
        col = self._vectors[field]
        query = request.vectors[i]
        if index.kind == "ivfpq":
            order, exact = rank_exact(col.matrix[rows], query, metric, hit_ids, request.k)
            ranked = [rows[o] for o in order]
            return self._results(
                [hit_ids[o] for o in order], ranked, exact.tolist(), metric, request
            )
        raw = np.asarray(faiss_d, dtype=np.float32)
        if metric not in _SIMILARITIES:
            raw = -raw  # the memory backend's "higher is better" float32 stand-in
        return self._hits(col, np.asarray(rows, dtype=np.intp), raw, query, metric, request)

    # -- index management -------------------------------------------------------------------
    def _entry(self, field: str) -> _FieldIndex:
        entry = self._fields.get(field)
        if entry is None:
            raise UnknownFieldError(field, f"is not a vector field; known: {sorted(self._schema)}")
        return entry

    def _set_index(self, field: str, kind: str, params: dict[str, int]) -> None:
        entry = self._entry(field)
        entry.index = self._new_index(self._schema[field], kind, params)
        entry.row_labels = None

    def create_vector_index(
        self,
        field: str,
        kind: str,
        m: int | None,
        ef_construction: int | None,
        lists: int | None,
    ) -> dict[str, Any]:
        with self._lock:
            entry = self._entry(field)
            given = {"m": m, "ef_construction": ef_construction, "nlist": lists}
            params = {k: v for k, v in given.items() if v is not None}
            # built aside, journalled, then swapped in: a failure at any step changes nothing
            index = self._new_index(self._schema[field], kind, params)
            table, labels, vectors = self._fresh_labels(field)
            self._writable()
            payload = self._encoded(codec.op_index(field, kind, params))
            with faiss_errors():
                index.build(labels, vectors)
            self._log(payload)
            entry.index, entry.labels, entry.row_labels = index, table, None
            return self.get_vector_index_stats(field)

    def drop_vector_index(self, field: str) -> bool:
        with self._lock:
            entry = self._entry(field)
            had = entry.index.kind not in (None, "flat") or entry.index.requested in KINDS[1:]
            index = self._new_index(self._schema[field], "flat", {})
            self._writable()
            self._log(self._encoded(codec.op_index(field, "flat", {})))
            entry.index, entry.row_labels = index, None
            return had

    def optimize_vector_index(self, field: str) -> dict[str, Any]:
        with self._lock:
            entry = self._entry(field)
            entry.index.invalidate()
            entry.index.ensure(len(entry.labels), partial(self._source, field))
            return self.get_vector_index_stats(field)

    def get_vector_index_stats(self, field: str) -> dict[str, Any]:
        with self._lock:
            entry = self._entry(field)
            return {**entry.index.stats(), "field": field, "rows": len(entry.labels)}

    def raw_index(self, field: str) -> tuple[Any, str, list[str | None]]:
        """The faiss object of ``field`` (built now if needed), its kind, and the record id of
        each label: for benchmarks that drive the very same index raw."""
        with self._lock:
            entry = self._entry(field)
            entry.index.ensure(len(entry.labels), partial(self._source, field))
            assert entry.index.kind is not None
            return entry.index.index, entry.index.kind, list(entry.labels.ids)

    # -- durability -------------------------------------------------------------------------
    def _log(self, payload: bytes | None) -> None:
        """Append a write's frame (see :meth:`_encoded`); durable when this returns. A snapshot
        due after it is taken now, but its failure does not fail the write (the frame is
        already durable): it is retried before the next write (:meth:`_writable`)."""
        if payload is None or self._journal is None or self._replaying:
            return
        try:
            self._journal.append(payload)
        except OSError as exc:
            raise BackendError(f"could not append to the journal {self._journal.path}") from exc
        if self._journal.size > max(_MIN_JOURNAL, self._snapshot_bytes):
            try:
                self.persist()
            except (OSError, BackendError):
                self._snapshot_due = True

    def _apply(self, op: dict[str, Any]) -> None:
        kind = op["op"]
        if kind == "put":
            self.put(op["records"], op["mode"])
        elif kind == "remove":
            self.remove(op["ids"])
        elif kind == "clear":
            self.clear()
        elif kind == "declare":
            self.declare_vector_field(op["name"], op["config"])
        elif kind == "index":
            self._set_index(op["name"], op["kind"], op["params"])
        elif kind == "setting":
            self.write_setting(op["key"], op["value"])
        else:
            raise BackendError(f"unknown journal operation {kind!r}")

    def _open(self, root: Path) -> None:
        generations = Generations(root)
        if generations.current() is None:
            try:
                root.mkdir(parents=True, exist_ok=True)
                self.persist()
            except OSError as exc:
                raise BackendError(f"cannot create a faiss database at {root}: {exc}") from exc
            return
        manifest = generations.manifest()
        assert manifest is not None
        generation = int(manifest["generation"])
        folder = generations.dir(generation)
        self._replaying = True
        try:
            snapshot = Journal.recover(folder / "snapshot.log")
            for payload in snapshot:
                self._apply(codec.decode_op(payload))
            self._restore_indexes(folder, manifest.get("indexes", {}))
            journal = root / _journal_name(generation)
            for payload in Journal.recover(journal):
                self._apply(codec.decode_op(payload))
        except (OSError, ValueError, KeyError) as exc:
            raise BackendError(f"cannot open the faiss database at {root}: {exc}") from exc
        finally:
            self._replaying = False
        self._snapshot_bytes = sum(len(p) for p in snapshot)
        generations.clean()
        self._remove_stray_journals(root, journal.name)
        self._journal = Journal(journal, fsync=self._fsync)

    def _restore_indexes(self, folder: Path, indexes: dict[str, Any]) -> None:
        for name, state in indexes.items():
            entry = self._fields[name]
            entry.labels = LabelTable.from_json(state["labels"])
            if state.get("file"):
                data = (folder / state["file"]).read_bytes()
                entry.index.restore(data, state["kind"], int(state["tombstones"]))
            entry.row_labels = None

    def persist(self) -> None:
        """Write a snapshot generation now and start an empty journal."""
        if self._path is None:
            return
        with self._lock:
            try:
                Generations(self._path).commit(self._write_snapshot, keep=self._start_journal)
            except OSError as exc:  # the journal still holds every write: nothing is lost
                raise BackendError(f"could not write a snapshot in {self._path}: {exc}") from exc

    def _write_snapshot(self, folder: Path) -> dict[str, Any]:
        ops: list[bytes] = []
        for name, config in self._schema.items():
            ops.append(codec.encode_op(codec.op_declare(name, config)))
            entry = self._fields[name]
            ops.append(
                codec.encode_op(codec.op_index(name, entry.index.requested, entry.index.params))
            )
        for key, value in sorted(self._settings.items()):
            ops.append(codec.encode_op(codec.op_setting(key, value)))
        for start in range(0, len(self._ids), _SNAPSHOT_CHUNK):
            rows = range(start, min(len(self._ids), start + _SNAPSHOT_CHUNK))
            records = [self._materialise(r) for r in rows]
            ops.append(codec.encode_op(codec.op_put(records, "upsert")))
        data = b"".join(frame(payload) for payload in ops)
        write_synced(folder / "snapshot.log", data)
        indexes: dict[str, Any] = {}
        for i, (name, entry) in enumerate(self._fields.items()):
            blob = entry.index.to_bytes()
            state: dict[str, Any] = {"labels": entry.labels.to_json(), "file": None}
            if blob is not None:
                state.update(file=f"index-{i}.faiss", kind=entry.index.kind)
                state["tombstones"] = entry.index.tombstones
                write_synced(folder / state["file"], blob)
            indexes[name] = state
        self._snapshot_bytes = len(data)
        return {"indexes": indexes, "records": len(self._ids), "settings": len(self._settings)}

    def _start_journal(self, generation: int) -> None:
        assert self._path is not None
        old = self._journal
        name = _journal_name(generation)
        self._journal = Journal(self._path / name, fsync=self._fsync)
        if old is not None:
            old.close()
        self._remove_stray_journals(self._path, name)

    @staticmethod
    def _remove_stray_journals(root: Path, keep: str) -> None:
        for entry in root.glob("journal-*.log"):
            if entry.name != keep:
                with contextlib.suppress(OSError):
                    os.unlink(entry)

    def engine_seams(self) -> list[EngineSeam]:
        """The memory backend's columns, each field's faiss index (faiss raises
        ``RuntimeError``), the journal and the snapshot file writer (``OSError``)."""
        seams = super().engine_seams()
        seams += [
            EngineSeam(f"faiss index {name}", entry, "index", RuntimeError)
            for name, entry in self._fields.items()
        ]
        if self._journal is not None:
            seams.append(EngineSeam("journal", self, "_journal", OSError))
            seams.append(
                EngineSeam("snapshot files", sys.modules[__name__], "write_synced", OSError)
            )
        return seams

    def close(self) -> None:
        with self._lock:
            try:
                if self._journal is not None:
                    self.persist()
            finally:
                if self._journal is not None:
                    self._journal.close()
                    self._journal = None
                self._replaying = True  # the memory backend's close clears: not a user delete
                super().close()
                self._replaying = False
                for entry in self._fields.values():
                    entry.index.invalidate()
                if self._store_lock is not None:  # after the last write, even a failed one
                    self._store_lock.release()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                **super().stats(),
                "indexes": {n: e.index.stats() for n, e in self._fields.items()},
                "journal_bytes": 0 if self._journal is None else self._journal.size,
                "path": None if self._path is None else str(self._path),
            }
