"""One writer per embedded store directory: an exclusive ``flock`` held while the store is open.

Faiss (both APIs) and chroma keep a store's state in the memory of the process that opened it
and write it back to the directory (faiss: journal and snapshot generations; chroma: its SQLite
log and HNSW segment files). Two processes doing that on one directory overwrite each other:
measured before this lock, two processes each confirming 2,000 ``create`` calls on one
``faiss://`` directory left 2,000 records after both closed. So every persistent faiss or chroma
store takes :class:`StoreLock` on ``<dir>/dataknobs.lock`` *before* it reads or writes anything
in the directory, and releases it after its last write on ``close()`` (also when that close
fails). A second opener gets :class:`~dataknobs_data.errors.StoreLockedError` naming the lock
file and the holder (pid, host, start time, kind), which the holder writes into the file.

Why ``flock`` (``LOCK_EX | LOCK_NB``) on a file that is never deleted:

* the kernel drops the lock when the holder's descriptor closes, which includes every way a
  process can die (``kill -9`` too), so a crash never leaves a stale lock to clean up by hand;
  the holder text it leaves behind is overwritten by the next holder and means nothing alone;
* the lock belongs to the open file description, so a second ``open`` in the *same* process
  conflicts as well (a second faiss object on one directory is as unsafe as a second process);
* the file stays: deleting a lock file lets a waiter lock the unlinked inode while a third
  process locks a new one, and both would "hold" the store.

It is advisory (it stops dataknobs-data openers, not other programs writing the directory) and
as good as the file system's ``flock``: local file systems, and NFS where the client maps
``flock`` to NFS locks (Linux does). No read-only mode is offered: a reader of a faiss
directory would still have to replay the journal, which truncates a torn tail, and chroma's
client writes to its directory when it opens; a shared lock would not make either safe.
Platforms without :mod:`fcntl` (Windows) cannot take the lock, and persistent faiss and chroma
stores refuse to open there (:class:`~dataknobs_data.errors.BackendUnavailableError`) rather
than run unprotected.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import weakref
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from ..errors import BackendError, BackendUnavailableError, StoreLockedError

__all__ = ["LOCK_FILE", "StoreLock", "read_holder"]

#: the lock file's name inside a store directory
LOCK_FILE = "dataknobs.lock"
_HOLDER_TRIES = 100

_fcntl: ModuleType | None
try:
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None


def read_holder(lock_path: Path) -> dict[str, object]:
    """What the current holder wrote into ``lock_path`` (``{}`` if nothing readable yet: a
    holder writes it just after taking the lock)."""
    try:
        text = lock_path.read_text("utf-8")
        found = json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _wait_for_holder(lock_path: Path) -> dict[str, object]:
    """The holder's text, waiting up to ~1 s for it: a holder writes it a few microseconds
    after taking the lock, so a refused opener can come in between (only on refusal)."""
    for _ in range(_HOLDER_TRIES):
        holder = read_holder(lock_path)
        if holder:
            return holder
        time.sleep(0.01)
    return {}


def describe(holder: dict[str, object]) -> str:
    """The holder as a phrase for an error message."""
    if not holder:
        return "a holder that has not written its name yet"
    pid, host = holder.get("pid"), holder.get("host")
    who = f"pid {pid}"
    if pid == os.getpid() and host == socket.gethostname():
        who = f"this process (pid {pid}), through another open store object"
    elif host != socket.gethostname():
        who = f"pid {pid} on host {host}"
    return f"{who} ({holder.get('kind', '?')}, since {holder.get('since', '?')})"


def _close(fd: int) -> None:
    """Finalizer: closing the descriptor drops the lock (a store garbage-collected open)."""
    with contextlib.suppress(OSError):
        os.close(fd)


class StoreLock:
    """The exclusive lock of one store directory, held until :meth:`release`.

    Garbage collection of a lock never released closes its descriptor, which releases it too.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd
        self._owner = os.getpid()
        self._guard = threading.Lock()
        self._finalizer = weakref.finalize(self, _close, fd)

    @classmethod
    def acquire(cls, directory: str | Path, kind: str) -> StoreLock:
        """Lock ``directory`` (created if missing) for this process's open store of ``kind``
        (e.g. ``"faiss database"``); :class:`StoreLockedError` if another holds it."""
        if _fcntl is None:  # pragma: no cover - Windows
            raise BackendUnavailableError(
                f"the {kind} at {directory} needs an exclusive file lock (fcntl.flock), "
                "which this platform lacks"
            )
        folder = Path(directory)
        path = folder / LOCK_FILE
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise BackendError(f"cannot create the lock file {path}: {exc}") from exc
        try:
            _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if isinstance(exc, BlockingIOError):
                holder = _wait_for_holder(path)
                raise StoreLockedError(
                    f"the {kind} at {folder} is already open in {describe(holder)}; "
                    f"close it there first (lock file {path})",
                    path=str(path),
                    holder=holder,
                ) from None
            raise BackendError(f"cannot lock {path}: {exc}") from exc
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(UTC).isoformat(timespec="seconds"),
            "kind": kind,
            "directory": str(folder.resolve()),
        }
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(holder).encode("utf-8"), 0)
        except OSError:  # the lock is what matters; the holder text only helps the message
            pass
        return cls(path, fd)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Drop the lock (idempotent). The holder text is cleared first, so a stale name never
        outlives a clean close."""
        with self._guard:
            fd, self._fd = self._fd, None
            if fd is None:
                return
            self._finalizer.detach()
            if os.getpid() == self._owner:  # a fork child's copy must not unlock the parent's
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                if _fcntl is not None:  # explicit: a descriptor a fork child inherited would
                    with contextlib.suppress(OSError):  # otherwise keep the lock after close
                        _fcntl.flock(fd, _fcntl.LOCK_UN)
            _close(fd)
