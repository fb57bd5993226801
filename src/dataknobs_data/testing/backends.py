"""How the suite opens a backend: one :class:`BackendSpec` per engine, two shells each.

A backend joins the conformance suite (and the differential test) by adding one spec to the
list its test module passes to :func:`database_params`; :func:`open_database` turns a
``(spec, mode)`` pair into a fresh, empty database behind the blocking interface.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..database import AsyncDatabase, SyncDatabase
from ..errors import DatabaseClosedError
from ..factory import DatabaseFactory
from .adapter import DatabaseLike, Mode, SyncView
from .extras import skip_unless_extra

__all__ = [
    "MEMORY",
    "SQLITE",
    "SQLITE_MEMORY",
    "FAISS",
    "CHROMA",
    "POSTGRES",
    "POSTGRES_URL_ENV",
    "server_specs",
    "MODES",
    "BackendSpec",
    "database_params",
    "open_database",
]

MODES: tuple[Mode, ...] = ("sync", "async")


@dataclass(frozen=True)
class BackendSpec:
    """Opens fresh, empty databases of one backend.

    ``open_sync`` / ``open_async`` receive a scratch directory (pytest's ``tmp_path``) that
    file-based engines can put their files in; server engines should create a uniquely named
    collection/table per call, or empty theirs, so each test starts from nothing.
    ``extra`` names the optional dependency group the engine comes from: without it installed,
    :meth:`open` skips the test and says what to install, instead of erroring.
    """

    name: str
    open_sync: Callable[[Path], SyncDatabase]
    open_async: Callable[[Path], AsyncDatabase]
    notes: Mapping[str, str] = field(default_factory=dict)
    extra: str | None = None

    @classmethod
    def from_url(
        cls,
        name: str,
        url: str | Callable[[Path], str],
        *,
        extra: str | None = None,
        **options: Any,
    ) -> BackendSpec:
        """A spec that calls :class:`DatabaseFactory` with ``url`` (or ``url(tmp_path)``)."""

        def resolve(tmp: Path) -> str:
            return url(tmp) if callable(url) else url

        return cls(
            name,
            lambda tmp: DatabaseFactory.create(resolve(tmp), **options),
            lambda tmp: DatabaseFactory.create_async(resolve(tmp), **options),
            extra=extra,
        )

    def open(self, mode: Mode, tmp_path: Path) -> DatabaseLike:
        """A fresh database behind the blocking interface (release it with :func:`dispose`);
        skips the calling test when the engine's extra is not installed."""
        if self.extra is not None:
            skip_unless_extra(self.extra)
        if mode == "sync":
            return self.open_sync(tmp_path)
        return SyncView(self.open_async(tmp_path))

    def __str__(self) -> str:
        return self.name


MEMORY = BackendSpec.from_url("memory", "memory://")
#: A fresh file per database, in the test's scratch directory.
SQLITE = BackendSpec.from_url(
    "sqlite", lambda tmp: f"sqlite:///{tempfile.mkdtemp(dir=tmp)}/store.db", extra="sqlite"
)
#: The same engine without a file (``:memory:``).
SQLITE_MEMORY = BackendSpec.from_url("sqlite-memory", "sqlite:///:memory:", extra="sqlite")
#: faiss indexes over the memory backend's records, journalled to a fresh directory; every
#: filtered search goes through faiss's id selector (no small-selection shortcut to numpy).
FAISS = BackendSpec.from_url(
    "faiss",
    lambda tmp: f"faiss://{tempfile.mkdtemp(dir=tmp)}",
    extra="faiss",
    exact_filter_below=0,
)


#: chroma in memory (the process's one client), a uniquely named collection per database,
#: dropped when closed: a client per test directory would cost 0.1-0.2 s each.
CHROMA = BackendSpec.from_url("chroma", "chroma://", extra="chroma", temporary=True)


#: The environment variable naming a PostgreSQL (with pgvector) the suite may use.
POSTGRES_URL_ENV = "DATAKNOBS_TEST_POSTGRES_URL"


def _postgres_url(_: Path) -> str:
    """A fresh, uniquely named collection on the test server (dropped when closed)."""
    base = os.environ.get(POSTGRES_URL_ENV)
    if not base:
        raise RuntimeError(f"set {POSTGRES_URL_ENV} to run the postgres backend tests")
    joiner = "&" if "?" in base else "?"
    return f"{base}{joiner}collection=t_{uuid.uuid4().hex[:16]}"


#: PostgreSQL + pgvector at ``$DATAKNOBS_TEST_POSTGRES_URL``; one scratch table per database.
POSTGRES = BackendSpec.from_url("postgres", _postgres_url, extra="postgres", temporary=True)


def server_specs() -> list[BackendSpec]:
    """The server backends whose test server is configured in the environment.

    ``scripts/test`` starts a PostgreSQL and exports its URL, so in this repository's own runs
    these are never left out; a third-party run without a server simply has fewer specs.
    """
    return [POSTGRES] if os.environ.get(POSTGRES_URL_ENV) else []


def database_params(
    specs: Sequence[BackendSpec], modes: Sequence[Mode] = MODES
) -> list[tuple[BackendSpec, Mode]]:
    """The ``(spec, mode)`` pairs to parametrize a ``db`` fixture with."""
    return [(spec, mode) for spec in specs for mode in modes]


def param_id(param: tuple[BackendSpec, Mode]) -> str:
    """The pytest id of a (backend, shell mode) parameter, e.g. ``sqlite-async``."""
    spec, mode = param
    return f"{spec.name}-{mode}"


def dispose(db: DatabaseLike) -> None:
    """Close a database opened by :meth:`BackendSpec.open` (tolerates an earlier close)."""
    try:
        with suppress(DatabaseClosedError):
            db.close()
    finally:
        if isinstance(db, SyncView):
            db.release()


@contextmanager
def open_database(spec: BackendSpec, mode: Mode, tmp_path: Path) -> Iterator[DatabaseLike]:
    """``with open_database(MEMORY, "async", tmp) as db:`` gives a fresh blocking database."""
    db = spec.open(mode, tmp_path)
    try:
        yield db
    finally:
        dispose(db)
