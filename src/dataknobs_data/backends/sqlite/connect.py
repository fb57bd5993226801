"""Open a SQLite connection that can run sqlite-vec, whichever driver this Python has.

The standard :mod:`sqlite3` module is used when it can load extensions; many Python builds
(pyenv's among them) lack ``enable_load_extension``, and then the maintained drop-in
``sqlean.py`` (same DB-API, its own SQLite with extension loading) is used instead. If neither
can load sqlite-vec the error says what to install.
"""

from __future__ import annotations

import importlib
import random
import time
from types import ModuleType
from typing import Any

from ...errors import BackendError, BackendUnavailableError, StoreBusyError, ValidationError

__all__ = ["BUSY_TIMEOUT", "DRIVERS", "connect", "is_busy", "load_driver"]

#: Driver modules tried in order; each must offer the DB-API of :mod:`sqlite3`.
DRIVERS: tuple[str, ...] = ("sqlite3", "sqlean")
INSTALL_HINT = 'pip install "dataknobs-data[sqlite]"'
#: seconds a statement waits for another connection's lock before SQLITE_BUSY
BUSY_TIMEOUT = 60.0


def _load_vec(conn: Any) -> None:
    import sqlite_vec

    conn.enable_load_extension(True)
    try:
        sqlite_vec.load(conn)
    finally:
        conn.enable_load_extension(False)


def _probe(name: str) -> ModuleType | None:
    """The driver module if it imports and loads sqlite-vec into a scratch connection."""
    try:
        module = importlib.import_module(name)
        conn = module.connect(":memory:")
    except Exception:
        return None
    try:
        if not hasattr(conn, "enable_load_extension"):
            return None
        _load_vec(conn)
        return module
    except Exception:
        return None
    finally:
        conn.close()


_chosen: dict[tuple[str, ...], ModuleType] = {}


def load_driver(candidates: tuple[str, ...] = DRIVERS) -> ModuleType:
    """The first driver in ``candidates`` that can load sqlite-vec (cached per tuple)."""
    found = _chosen.get(candidates)
    if found is not None:
        return found
    try:
        importlib.import_module("sqlite_vec")
    except ImportError:
        raise BackendUnavailableError(
            f"the sqlite backend needs the sqlite-vec package; {INSTALL_HINT}"
        ) from None
    for name in candidates:
        module = _probe(name)
        if module is not None:
            _chosen[candidates] = module
            return module
    raise BackendUnavailableError(
        f"no SQLite driver here can load extensions (tried {', '.join(candidates)}); "
        f"{INSTALL_HINT} installs sqlean.py, which can"
    )


def connect(
    path: str, driver: ModuleType | None = None, *, busy_timeout: float = BUSY_TIMEOUT
) -> tuple[Any, ModuleType]:
    """A connection and its driver module: sqlite-vec loaded, WAL, busy timeout (seconds), no
    implicit transactions.

    ``isolation_level=None`` turns off the driver's implicit transactions: the backend issues
    ``BEGIN IMMEDIATE``/``COMMIT`` itself so a batch is exactly one transaction.
    ``check_same_thread=False`` lets the async shell's worker threads use the connection; the
    backend serialises access with a lock.
    """
    if (
        isinstance(busy_timeout, bool)
        or not isinstance(busy_timeout, int | float)
        or not 0 <= busy_timeout <= 86_400
    ):
        raise ValidationError(f"busy_timeout must be 0 to 86400 seconds, got {busy_timeout!r}")
    module = driver or load_driver()
    try:
        conn = module.connect(
            path, isolation_level=None, check_same_thread=False, timeout=busy_timeout
        )
        _load_vec(conn)
        if path != ":memory:":
            _switch_to_wal(conn, busy_timeout)
            conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA busy_timeout = {round(busy_timeout * 1000)}")
        return conn, module
    except module.Error as exc:
        if is_busy(exc):
            raise StoreBusyError(
                f"cannot open SQLite database {path!r}: another connection held its lock for "
                f"the whole busy timeout ({busy_timeout:g} s); retry later ({exc})"
            ) from exc
        raise BackendError(f"cannot open SQLite database {path!r}: {exc}") from exc


#: per-attempt wait while switching to WAL, in ms (see :func:`_switch_to_wal`)
_WAL_ATTEMPT_MS = 50


def _switch_to_wal(conn: Any, busy_timeout: float) -> None:
    """``PRAGMA journal_mode = WAL``, in short attempts until ``busy_timeout`` ends.

    Two connections opening a new file at the same instant each take a shared lock and wait
    for the exclusive one the switch needs; with the full busy timeout on both, one of them
    waits it out (60 s by default) although nobody writes. A short wait per attempt, then a
    jittered pause without the lock, lets the other connection finish its switch; the file is
    then in WAL mode and this attempt succeeds at once."""
    deadline = time.monotonic() + busy_timeout
    attempt_ms = min(_WAL_ATTEMPT_MS, round(busy_timeout * 1000))
    while True:
        conn.execute(f"PRAGMA busy_timeout = {attempt_ms}")
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except Exception as exc:
            if not is_busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(random.uniform(0.005, 0.05))


def is_busy(exc: Exception) -> bool:
    """Whether a driver error is SQLite's "locked by another connection" (SQLITE_BUSY or
    SQLITE_LOCKED, by code where the driver gives one, else by message)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (5, 6)  # primary code of an extended one, e.g. SQLITE_BUSY_SNAPSHOT
    return "database is locked" in str(exc) or "database table is locked" in str(exc)
