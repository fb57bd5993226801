"""A redo log that makes a write of several chroma calls all or nothing, even after ``kill -9``.

Chroma makes each call atomic: an ``add``/``upsert``/``delete`` is one multi-row ``INSERT`` into
its SQLite log table ``embeddings_queue`` (chroma-core/chroma ``rust/log/src/sqlite_log.rs``,
``push_logs``), from which its metadata and HNSW segments are built. It has no transaction
across calls, and our writes often take several: a record write touches the records collection
and one collection per vector field, a new vector field creates a collection and rewrites the
schema, and batches are split to ``client.get_max_batch_size()`` (5461 here).

So a write is first planned as a list of :class:`Call`, each of which *sets* state rather than
changing it: upsert of the final metadata (with ``None`` for every stored key the new version
drops, see :func:`replacing`, since chroma's upsert merges), delete by id, get-or-create of a
collection, replacement of a collection's metadata. Applying any prefix of the plan and then the
whole plan gives the same state as applying it once. A plan of more than one call is written to
``<dir>/dataknobs-intent-<collection>`` before the first call (:func:`write_atomic`: checksummed
frames, the calls as JSON and each embedding matrix as ``.npy`` without pickle) and removed
(unlink, ``fsync`` of the directory) after the last:

* a crash before the intent is on disk leaves nothing of the write (no call was made);
* a crash after it: the next open replays the whole plan, then removes the intent (roll
  forward), before the database or store serves anything;
* a call that raises: the write raises :class:`BackendError` saying it will be completed, and
  is: the next operation on that database or store replays it first (so no reader sees half of
  it), or the next open does. It is never undone.

One-call plans skip the file: chroma makes them atomic. In-memory instances keep a failed plan
in memory (a crash loses all their data anyway). Within a process, writers of one intent file
(two objects opened on the same directory and collection) take turns on a lock; another process
cannot open the directory meanwhile (:func:`.engine.open_client` holds its exclusive lock).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ...durable import frame, fsync_dir, npy_bytes, npy_from_bytes, read_frames, write_atomic
from ...errors import BackendError
from .engine import batches, collection

__all__ = ["INTENT_PREFIX", "Call", "IntentLog", "deletes", "replacing", "upserts"]

#: file name of a collection's intent, followed by the collection name
INTENT_PREFIX = "dataknobs-intent-"
_FORMAT = 1
_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()

Op = Literal["create", "modify", "upsert", "delete"]
_OPS = frozenset(("create", "modify", "upsert", "delete"))


@dataclass(frozen=True, slots=True)
class Call:
    """One idempotent chroma call. ``settings`` is the configuration of a ``create`` or the
    new metadata of a ``modify``."""

    op: Op
    collection: str
    ids: Sequence[str] = ()
    metadatas: list[dict[str, Any]] | None = None
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
    metadatas: list[dict[str, Any]],
) -> list[Call]:
    """Upserts of ``ids`` into collection ``name``, one call per maximum batch."""
    return [
        Call("upsert", name, ids[part], metadatas[part], embeddings[part])
        for part in batches(client, len(ids))
    ]


def deletes(client: Any, name: str, ids: Sequence[str]) -> list[Call]:
    """Deletes of ``ids`` from collection ``name``, one call per maximum batch."""
    return [Call("delete", name, ids[part]) for part in batches(client, len(ids))]


def _encode(calls: Sequence[Call]) -> bytes:
    arrays: list[bytes] = []
    entries: list[dict[str, Any]] = []
    for call in calls:
        entry: dict[str, Any] = {"op": call.op, "collection": call.collection}
        if call.ids:
            entry["ids"] = list(call.ids)
        for key in ("metadatas", "settings"):
            if getattr(call, key) is not None:
                entry[key] = getattr(call, key)
        if call.embeddings is not None:
            entry["embeddings"] = len(arrays)
            arrays.append(npy_bytes(call.embeddings))
        entries.append(entry)
    head = json.dumps({"format": _FORMAT, "calls": entries}).encode("utf-8")
    return b"".join(frame(payload) for payload in (head, *arrays))


def _decode(data: bytes, path: Path) -> list[Call]:
    frames, end = read_frames(data)
    try:
        head = json.loads(frames[0])
        arrays = [npy_from_bytes(f) for f in frames[1:]]
        if end != len(data) or head["format"] != _FORMAT:
            raise ValueError("torn, corrupt or of an unknown format")
        if not {e["op"] for e in head["calls"]} <= _OPS:
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
            for e in head["calls"]
        ]
    except (IndexError, KeyError, TypeError, ValueError) as exc:
        raise BackendError(
            f"unreadable chroma intent {path} ({exc}); it can only come from a damaged disk: "
            "restore the directory, or delete the file to accept a possibly half-applied write"
        ) from exc


def _lock_for(path: Path | None) -> threading.Lock:
    if path is None:
        return threading.Lock()
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


class IntentLog:
    """The redo log of one collection's writes (see the module docstring).

    ``collections`` are live collection objects by name; others are looked up on first use.
    """

    def __init__(
        self, client: Any, directory: Path | None, name: str, collections: Iterable[Any]
    ) -> None:
        self._client = client
        self.path = (
            None if directory is None else Path(directory).resolve() / f"{INTENT_PREFIX}{name}"
        )
        self.collections: dict[str, Any] = {c.name: c for c in collections}
        self._lock = _lock_for(self.path)
        self._pending: Sequence[Call] | None = None  # in-memory instances only
        self._then: Callable[[], None] | None = None

    def collection(self, name: str) -> Any:
        """The live collection ``name`` (a plan may only name collections that exist or that
        an earlier call of it creates)."""
        col = self.collections.get(name)
        if col is None:
            col = collection(self._client, name, create=False)
            if col is None:
                raise BackendError(f"chroma collection {name!r} named by a write is missing")
            self.collections[name] = col
        return col

    def recover(self) -> None:
        """On open: remove temporary files of a crash, and complete a write a crash cut short."""
        if self.path is not None:
            with self._lock:  # not a temp file another object here is writing
                for stale in self.path.parent.glob(f".{self.path.name}.*.tmp"):
                    stale.unlink(missing_ok=True)
        self.settle()

    def run(self, calls: Sequence[Call], then: Callable[[], None] | None = None) -> None:
        """Apply ``calls`` all or nothing; ``then`` (the caller's bookkeeping) runs once they
        all are applied, here or by the :meth:`settle` that completes them."""
        self.settle()
        several = len(calls) > 1  # one call is atomic in chroma: nothing to log
        with self._lock:
            if several:
                self._log(calls, then)
            try:
                self._apply(calls)
            except Exception as exc:
                if not several:
                    raise BackendError(f"chroma refused a write: {exc}") from exc
                raise BackendError(
                    f"chroma failed in the middle of a write ({exc}); the write is logged and "
                    "will be completed, not undone, by the next operation on this database or "
                    "store, or when its directory is next opened"
                ) from exc
            if several:
                self._forget()
        if then is not None:
            then()

    def settle(self) -> bool:
        """Complete a write that failed or was cut short, if there is one (cheap otherwise);
        True if this replayed one (perhaps another object's: the caller may reread state)."""
        idle = self._then is None and self._pending is None
        if idle and (self.path is None or not self.path.exists()):
            return False
        with self._lock:
            then, calls = self._then, self._pending
            if self.path is not None:
                calls = _decode(self.path.read_bytes(), self.path) if self.path.exists() else None
            if calls is not None:
                try:
                    self._apply(calls)
                except Exception as exc:
                    raise BackendError(
                        f"an interrupted chroma write could not be completed ({exc}); fix the "
                        f"cause and retry{self._abandon()}"
                    ) from exc
            self._forget()
        if then is not None:
            then()
        return calls is not None

    def _log(self, calls: Sequence[Call], then: Callable[[], None] | None) -> None:
        """Make the plan durable (the commit point of the write) before its first call."""
        if self.path is None:
            self._pending = calls
        else:
            try:
                write_atomic(self.path, _encode(calls))
            except OSError as exc:
                raise BackendError(f"could not write the chroma intent {self.path}") from exc
        self._then = then

    def _abandon(self) -> str:
        if self.path is None:
            return ""
        return f", or delete {self.path} to abandon it (part of it may stay applied)"

    def _forget(self) -> None:
        """The plan is applied: drop it (durably, so it is never replayed over later writes)."""
        self._pending = None
        self._then = None
        if self.path is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
                fsync_dir(self.path.parent)

    def _apply(self, calls: Sequence[Call]) -> None:
        for call in calls:
            if call.op == "create":
                self.collections[call.collection] = collection(
                    self._client, call.collection, create=True, configuration=call.settings
                )
                continue
            col = self.collection(call.collection)
            if call.op == "modify":
                col.modify(metadata=call.settings)
            elif call.op == "upsert":
                col.upsert(ids=list(call.ids), embeddings=call.embeddings, metadatas=call.metadatas)
            elif call.op == "delete":
                col.delete(ids=list(call.ids))
            else:  # pragma: no cover - plans are built here or checked when read
                raise BackendError(f"unknown chroma call {call.op!r}")
