"""The embedding cache: a text already embedded is never embedded again.

Keyed by ``(model name, model version, SHA-256 of the text)``, so a text shared by two records,
seen in an earlier run, or embedded before a crash costs one embedder call in total. In memory
by default (least recently used entries dropped past ``max_items``); with ``path`` it is also
a SQLite file (stdlib ``sqlite3``), which survives restarts and ``kill -9``: the vectorizer then
re-embeds nothing it had already paid for.
"""

from __future__ import annotations

import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from os import PathLike

import numpy as np
import numpy.typing as npt

from ...errors import BackendError
from ...ints import checked_int

__all__ = ["EmbeddingCache"]

F32 = npt.NDArray[np.float32]
_Key = tuple[str, str, str]


class EmbeddingCache:
    """Vectors by ``(model, version, text hash)``: in memory, and in a SQLite file if given."""

    def __init__(
        self, path: str | PathLike[str] | None = None, *, max_items: int = 100_000
    ) -> None:
        self._max = checked_int("max_items", max_items, 0)
        self._lock = threading.Lock()
        self._memory: OrderedDict[_Key, F32] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self._conn: sqlite3.Connection | None = None
        self.path = None if path is None else str(path)
        if self.path is not None:
            try:
                self._conn = sqlite3.connect(self.path, check_same_thread=False)
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute(
                    "CREATE TABLE IF NOT EXISTS embeddings (model TEXT NOT NULL, "
                    "version TEXT NOT NULL, hash TEXT NOT NULL, vector BLOB NOT NULL, "
                    "PRIMARY KEY (model, version, hash))"
                )
                self._conn.commit()
            except sqlite3.Error as exc:
                raise BackendError(f"embedding cache {self.path!r}: {exc}") from exc

    def get_many(self, model: str, version: str, digests: Sequence[str]) -> dict[str, F32]:
        """The cached vectors among ``digests`` (hash -> read-only float32 vector)."""
        found: dict[str, F32] = {}
        with self._lock:
            missing: list[str] = []
            for d in digests:
                vec = self._memory.get((model, version, d))
                if vec is None:
                    missing.append(d)
                else:
                    self._memory.move_to_end((model, version, d))
                    found[d] = vec
            if missing and self._conn is not None:
                for d, vec in self._read(model, version, missing).items():
                    found[d] = vec
                    self._remember((model, version, d), vec)
            self.hits += len(found)
            self.misses += len(set(digests)) - len(found)
        return found

    def put_many(self, model: str, version: str, vectors: Mapping[str, F32]) -> None:
        """Remember ``vectors`` (hash -> vector); written to the file in one transaction."""
        if not vectors:
            return
        with self._lock:
            items = {d: _frozen(v) for d, v in vectors.items()}
            for d, vec in items.items():
                self._remember((model, version, d), vec)
            if self._conn is not None:
                try:
                    with self._conn:
                        self._conn.executemany(
                            "INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?)",
                            [(model, version, d, v.tobytes()) for d, v in items.items()],
                        )
                except sqlite3.Error as exc:
                    raise BackendError(f"embedding cache {self.path!r}: {exc}") from exc

    def __len__(self) -> int:
        with self._lock:
            if self._conn is None:
                return len(self._memory)
            (n,) = self._conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()
            return int(n)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _remember(self, key: _Key, vec: F32) -> None:
        if self._max == 0:
            return
        self._memory[key] = vec
        self._memory.move_to_end(key)
        while len(self._memory) > self._max:
            self._memory.popitem(last=False)

    def _read(self, model: str, version: str, digests: list[str]) -> dict[str, F32]:
        assert self._conn is not None
        out: dict[str, F32] = {}
        try:
            for start in range(0, len(digests), 500):
                part = digests[start : start + 500]
                rows = self._conn.execute(
                    "SELECT hash, vector FROM embeddings WHERE model = ? AND version = ? "
                    f"AND hash IN ({','.join('?' * len(part))})",
                    (model, version, *part),
                ).fetchall()
                for d, blob in rows:
                    out[d] = _frozen(np.frombuffer(blob, dtype=np.float32))
        except sqlite3.Error as exc:
            raise BackendError(f"embedding cache {self.path!r}: {exc}") from exc
        return out

    def __repr__(self) -> str:
        where = self.path or "memory"
        return f"EmbeddingCache({where!r}, hits={self.hits}, misses={self.misses})"


def _frozen(vec: F32) -> F32:
    out = np.array(vec, dtype=np.float32, copy=True)
    out.setflags(write=False)
    return out
