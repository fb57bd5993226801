"""An undo log that makes a write of several chroma calls all or nothing, even after ``kill -9``.

Chroma makes each call atomic: an ``add``/``upsert``/``delete`` is one multi-row ``INSERT`` into
its SQLite log table ``embeddings_queue`` (chroma-core/chroma ``rust/log/src/sqlite_log.rs``,
``push_logs``), from which its metadata and HNSW segments are built. It has no transaction
across calls, and our writes often take several: a record write touches the records collection
and one collection per vector field, a new vector field creates a collection and rewrites the
schema, and batches are split to ``client.get_max_batch_size()`` (5461 here).

So a write is first planned as a list of :class:`Call`, each of which *sets* state rather than
changing it: upsert of the final metadata (with ``None`` for every stored key the new version
drops, see :func:`replacing`, since chroma's upsert merges), delete by id, get-or-create of a
collection, replacement of a collection's metadata. Before the first call of a plan of more
than one call, the state it will overwrite is read back (each touched item's embedding and
metadata, or its absence; each collection's metadata; whether a created collection existed)
and turned into an *undo* plan of the same idempotent kind, which is written to
``<dir>/dataknobs-intent-<collection>`` (:func:`write_atomic`: checksummed frames, the calls as
JSON and each embedding matrix as ``.npy`` without pickle) before the first call; the file is
removed (unlink, ``fsync`` of the directory) after the last:

* a failure before the intent is on disk (reading the old state, writing the file) leaves
  nothing of the write: no call was made;
* a call that raises: the undo plan is applied at once and the intent removed; the write
  raises :class:`BackendError` and changed nothing. If chroma refuses the undo too, the
  intent stays and the next operation on that database or store (or the next open) applies
  the undo first, so no reader ever sees half of the write;
* a crash after the intent is on disk: the next open applies the undo plan (roll back: the
  write never returned, so it was never confirmed) and removes the intent. An undo plan
  only restores states chroma held before, so it cannot be refused for its content the way
  the write itself may have been (a plan that could never be replayed would otherwise lock
  the store for good). Intents of format 1 (redo only, written by earlier versions) are still
  completed forward.

One-call plans skip the file: chroma makes them atomic. In-memory instances keep a failed
undo plan in memory (a crash loses all their data anyway). Writers of one intent file take
turns on a lock within a process; another process (or a second open store object) cannot open
the directory meanwhile (:func:`.engine.open_client` holds its exclusive lock).
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ...durable import frame, fsync_dir, npy_bytes, npy_from_bytes, read_frames, write_atomic
from ...errors import BackendError
from ..seams import EngineSeam
from .engine import batches, collection, drop_collection

__all__ = ["INTENT_PREFIX", "Call", "IntentLog", "deletes", "replacing", "upserts"]

#: file name of a collection's intent, followed by the collection name
INTENT_PREFIX = "dataknobs-intent-"
_FORMAT = 2  #: 1: a redo plan (completed forward, from earlier versions); 2: an undo plan
_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()

Op = Literal["create", "modify", "upsert", "delete", "drop"]
_OPS = frozenset(("create", "modify", "upsert", "delete", "drop"))


@dataclass(frozen=True, slots=True)
class Call:
    """One idempotent chroma call. ``settings`` is the configuration of a ``create`` or the
    new metadata of a ``modify``; ``drop`` (undo plans only) deletes a collection."""

    op: Op
    collection: str
    ids: Sequence[str] = ()
    metadatas: Sequence[dict[str, Any] | None] | None = None
    embeddings: npt.NDArray[np.float32] | None = None
    settings: dict[str, Any] | None = None


def replacing(metadata: dict[str, Any], old_keys: Iterable[str] | None) -> dict[str, Any]:
    """``metadata`` plus ``None`` for every stored key it drops: chroma's upsert merges the new
    metadata into the stored one, and deletes the keys sent as ``None``."""
    if not old_keys:
        return metadata
    return {**dict.fromkeys((k for k in old_keys if k not in metadata), None), **metadata}


def upserts(
    client: Any,
    name: str,
    ids: Sequence[str],
    embeddings: npt.NDArray[np.float32],
    metadatas: Sequence[dict[str, Any] | None],
) -> list[Call]:
    """Upserts of ``ids`` into collection ``name``, one call per maximum batch."""
    return [
        Call("upsert", name, ids[part], metadatas[part], embeddings[part])
        for part in batches(client, len(ids))
    ]


def deletes(client: Any, name: str, ids: Sequence[str]) -> list[Call]:
    """Deletes of ``ids`` from collection ``name``, one call per maximum batch."""
    return [Call("delete", name, ids[part]) for part in batches(client, len(ids))]


def _entries(calls: Sequence[Call], arrays: list[bytes]) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for call in calls:
        entry: dict[str, Any] = {"op": call.op, "collection": call.collection}
        if call.ids:
            entry["ids"] = list(call.ids)
        if call.metadatas is not None:
            entry["metadatas"] = list(call.metadatas)
        if call.settings is not None:
            entry["settings"] = call.settings
        if call.embeddings is not None:
            entry["embeddings"] = len(arrays)
            arrays.append(npy_bytes(call.embeddings))
        entries.append(entry)
    return entries


def _encode(undo: Sequence[Call]) -> bytes:
    arrays: list[bytes] = []
    head = {"format": _FORMAT, "undo": _entries(undo, arrays)}
    data = json.dumps(head).encode("utf-8")
    return b"".join(frame(payload) for payload in (data, *arrays))


def _calls(entries: list[dict[str, Any]], arrays: list[Any]) -> list[Call]:
    if not {e["op"] for e in entries} <= _OPS:
        raise ValueError("unknown operation")
    return [
        Call(
            e["op"],
            e["collection"],
            e.get("ids", ()),
            e.get("metadatas"),
            arrays[e["embeddings"]] if "embeddings" in e else None,
            e.get("settings"),
        )
        for e in entries
    ]


def _decode(data: bytes, path: Path) -> tuple[list[Call], bool]:
    """The plan to apply on recovery and whether it is an undo plan (format 2) rather than
    the redo plan of a format-1 intent."""
    frames, end = read_frames(data)
    try:
        head = json.loads(frames[0])
        arrays = [npy_from_bytes(f) for f in frames[1:]]
        if end != len(data) or head["format"] not in (1, _FORMAT):
            raise ValueError("torn, corrupt or of an unknown format")
        if head["format"] == 1:
            return _calls(head["calls"], arrays), False
        return _calls(head["undo"], arrays), True
    except (IndexError, KeyError, TypeError, ValueError) as exc:
        raise BackendError(
            f"unreadable chroma intent {path} ({exc}); it can only come from a damaged disk: "
            "restore the directory, or delete the file to accept a possibly half-applied write"
        ) from exc


def undo_plan(log: IntentLog, calls: Sequence[Call]) -> list[Call]:
    """Calls that put back what ``calls`` will overwrite, read from chroma now (before the
    first of them): per touched item its old embedding and metadata (with ``None`` for keys
    only the new version has) or, if it was absent, a delete; each modified collection's old
    metadata; a drop of each collection the plan creates."""
    touched: dict[str, dict[str, list[str]]] = {}  # collection -> id -> keys written
    modified: dict[str, dict[str, Any]] = {}
    created: list[str] = []
    for call in calls:
        if call.op == "create":
            if call.collection not in log.collections and (
                collection(log.client, call.collection, create=False) is None
            ):
                created.append(call.collection)
        elif call.op == "modify" and call.collection not in created:
            modified.setdefault(call.collection, dict(call.settings or {}))
        elif call.op in ("upsert", "delete") and call.collection not in created:
            keys = touched.setdefault(call.collection, {})
            metas: Sequence[dict[str, Any] | None] = call.metadatas or [None] * len(call.ids)
            for rid, meta in zip(call.ids, metas, strict=True):
                keys.setdefault(rid, []).extend(meta or ())
    undo: list[Call] = []
    for name, keys in touched.items():
        ids = list(keys)
        col = log.collection(name)
        before: dict[str, tuple[Any, Any]] = {}
        for part in batches(log.client, len(ids)):
            got = col.get(ids=ids[part], include=["embeddings", "metadatas"])
            for rid, emb, meta in zip(got["ids"], got["embeddings"], got["metadatas"], strict=True):
                before[rid] = (emb, meta)
        absent = [rid for rid in ids if rid not in before]
        if before:
            back = list(before)
            matrix = np.asarray([before[rid][0] for rid in back], dtype=np.float32)
            # chroma refuses an empty metadata dict; None leaves an item without metadata
            metas = [replacing(dict(before[rid][1] or {}), keys[rid]) or None for rid in back]
            undo += upserts(log.client, name, back, matrix, metas)
        undo += deletes(log.client, name, absent)
    for name, new in modified.items():
        # read from chroma, not the collection object's copy (another object may have changed it)
        current = collection(log.client, name, create=False) or log.collection(name)
        old = current.metadata
        undo.append(Call("modify", name, settings=dict(old) if old else dict.fromkeys(new)))
    undo += [Call("drop", name) for name in reversed(created)]
    return undo


def _lock_for(path: Path | None) -> threading.Lock:
    if path is None:
        return threading.Lock()
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


class IntentLog:
    """The undo log of one collection's writes (see the module docstring).

    ``collections`` are live collection objects by name; others are looked up on first use.
    """

    def __init__(
        self, client: Any, directory: Path | None, name: str, collections: Iterable[Any]
    ) -> None:
        self.client = client
        self.path = (
            None if directory is None else Path(directory).resolve() / f"{INTENT_PREFIX}{name}"
        )
        self.collections: dict[str, Any] = {c.name: c for c in collections}
        self._lock = _lock_for(self.path)
        self._pending: Sequence[Call] | None = None  # in-memory instances: an undo to apply

    def seams(self) -> list[EngineSeam]:
        """The engine objects every write through this log calls into, for fault injection:
        the logged collections (chroma's ``InternalError`` is injected) and, on disk, the
        intent file writer (``OSError``)."""
        from chromadb.errors import InternalError

        seams = [
            EngineSeam(f"logged collection {n}", self.collections, n, InternalError)
            for n in self.collections
        ]
        if self.path is not None:
            seams.append(EngineSeam("intent file", sys.modules[__name__], "write_atomic", OSError))
        return seams

    def collection(self, name: str) -> Any:
        """The live collection ``name`` (a plan may only name collections that exist or that
        an earlier call of it creates)."""
        col = self.collections.get(name)
        if col is None:
            col = collection(self.client, name, create=False)
            if col is None:
                raise BackendError(f"chroma collection {name!r} named by a write is missing")
            self.collections[name] = col
        return col

    def recover(self) -> None:
        """On open: remove temporary files of a crash, and undo a write a crash cut short."""
        if self.path is not None:
            with self._lock:  # not a temp file another object here is writing
                for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
                    stale.unlink(missing_ok=True)
        self.settle()

    def run(self, calls: Sequence[Call], then: Callable[[], None] | None = None) -> None:
        """Apply ``calls`` all or nothing; ``then`` (the caller's bookkeeping) runs once they
        all are applied."""
        self.settle()
        several = len(calls) > 1  # one call is atomic in chroma: nothing to log
        with self._lock:
            if several:
                try:
                    undo = undo_plan(self, calls)
                except BackendError:
                    raise
                except Exception as exc:
                    raise BackendError(f"chroma refused a read before a write: {exc}") from exc
                self._log(undo)
            try:
                self._apply(calls)
            except Exception as exc:
                if not several:
                    raise BackendError(f"chroma refused a write: {exc}") from exc
                self._roll_back(undo, exc)
            if several:
                self._forget()
        if then is not None:
            then()

    def _roll_back(self, undo: Sequence[Call], cause: Exception) -> None:
        """Undo a write chroma failed in the middle of, then raise (the write's error)."""
        try:
            self._apply(undo)
        except Exception as again:
            raise BackendError(
                f"chroma failed in the middle of a write ({cause}) and refused to undo it "
                f"({again}); the undo is logged and is applied before the next operation on "
                "this database or store, or when its directory is next opened"
            ) from cause
        self._forget()
        raise BackendError(
            f"chroma failed in the middle of a write, which was undone: {cause}"
        ) from cause

    def settle(self) -> bool:
        """Undo a write that failed or was cut short, if there is one (cheap otherwise); True
        if this applied one (perhaps another object's: the caller may reread state)."""
        if self._pending is None and (self.path is None or not self.path.exists()):
            return False
        with self._lock:
            calls = self._pending
            if self.path is not None:
                calls = None
                if self.path.exists():
                    calls, _undo = _decode(self.path.read_bytes(), self.path)
            if calls is not None:
                try:
                    self._apply(calls)
                except Exception as exc:
                    raise BackendError(
                        f"an interrupted chroma write could not be rolled back ({exc}); fix the "
                        f"cause and retry{self._abandon()}"
                    ) from exc
            self._forget()
        return calls is not None

    def _log(self, undo: Sequence[Call]) -> None:
        """Make the undo plan durable before the write's first call."""
        if self.path is None:
            self._pending = undo
            return
        try:
            data = _encode(undo)
        except (TypeError, ValueError) as exc:
            raise BackendError(f"chroma: cannot log this write: {exc}") from exc
        try:
            write_atomic(self.path, data)
        except OSError as exc:
            raise BackendError(f"could not write the chroma intent {self.path}") from exc

    def _abandon(self) -> str:
        if self.path is None:
            return ""
        return f", or delete {self.path} to abandon it (part of a write may stay applied)"

    def _forget(self) -> None:
        """The plan is applied or undone: drop it (durably, so it is never replayed later)."""
        self._pending = None
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
                fsync_dir(self.path.parent)

    def _apply(self, calls: Sequence[Call]) -> None:
        for call in calls:
            if call.op == "create":
                self.collections[call.collection] = collection(
                    self.client, call.collection, create=True, configuration=call.settings
                )
                continue
            if call.op == "drop":
                col = self.collections.pop(call.collection, None) or collection(
                    self.client, call.collection, create=False
                )
                if col is not None:
                    drop_collection(self.client, col)
                continue
            col = self.collection(call.collection)
            if call.op == "modify":
                col.modify(metadata=call.settings)
            elif call.op == "upsert":
                metas = None if call.metadatas is None else list(call.metadatas)
                col.upsert(ids=list(call.ids), embeddings=call.embeddings, metadatas=metas)
            elif call.op == "delete":
                col.delete(ids=list(call.ids))
            else:  # pragma: no cover - plans are built here or checked when read
                raise BackendError(f"unknown chroma call {call.op!r}")
