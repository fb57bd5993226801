"""Open a psycopg 3 connection pool on a server with pgvector, and say clearly when it can't.

Every pooled connection gets pgvector's type adapters (``register_vector``), which look up the
``vector``/``halfvec`` type OIDs, so the extension must exist first: :func:`open_pool` checks
``pg_extension``, runs ``CREATE EXTENSION IF NOT EXISTS vector`` when it is missing (this needs
the privilege to create extensions and pgvector's files on the server), and otherwise raises
:class:`BackendUnavailableError` explaining both ways out.

Credentials and TLS are libpq's: ``PGPASSWORD``, the password file (``PGPASSFILE``, default
``~/.pgpass``), service files (``service=`` / ``PGSERVICEFILE``) and ``sslmode``/``sslrootcert``
all work unchanged through our URLs. :class:`PgTarget` adds a password given apart from the URL
(a string, or a zero-argument callable asked on every new connection, for secrets managers and
rotating credentials). The raw URL and password live only in the :class:`PgTarget` handed to
psycopg; every message about a connection goes through :func:`connect_error`, which scrubs
them and types the failure (:class:`CertificateError`, :class:`AuthenticationError`).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...errors import (
    AuthenticationError,
    BackendConnectionError,
    BackendError,
    BackendUnavailableError,
    CertificateError,
    ValidationError,
)
from ...redaction import RedactingFilter, redact_text, redact_url, scrub_exception, secrets_of

__all__ = [
    "MIN_ITERATIVE",
    "PasswordSource",
    "PgTarget",
    "ServerInfo",
    "connect_error",
    "open_pool",
    "pool_args",
    "version_tuple",
]

#: A password given apart from the URL: the value, or a callable returning it when asked.
PasswordSource = str | Callable[[], str]

# psycopg's pool logs failed connection attempts with libpq's text; a logger's filters see only
# the records logged on that very logger, so both get one.
for _name in ("psycopg", "psycopg.pool"):
    _logger = logging.getLogger(_name)
    if not any(isinstance(f, RedactingFilter) for f in _logger.filters):
        _logger.addFilter(RedactingFilter())

INSTALL_HINT = 'pip install "dataknobs-data[postgres]"'
#: pgvector version with iterative index scans (filtered search that returns k rows)
MIN_ITERATIVE = (0, 8, 0)
#: pgvector version with the ``<+>`` (L1) operator
MIN_L1 = (0, 7, 0)


def version_tuple(text: str) -> tuple[int, ...]:
    """``"0.8.0"`` -> ``(0, 8, 0)`` (non-numeric suffixes ignored)."""
    out = []
    for part in text.split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What was found on connect: server and pgvector versions."""

    server_version: int  # e.g. 150018
    pgvector: str  # e.g. "0.8.0"

    @property
    def iterative_scans(self) -> bool:
        return version_tuple(self.pgvector) >= MIN_ITERATIVE

    @property
    def has_l1(self) -> bool:
        return version_tuple(self.pgvector) >= MIN_L1


@dataclass(frozen=True, eq=False)
class PgTarget:
    """What psycopg needs to connect: the libpq URL (the only place the raw URL is kept) and
    an optional password source. Its ``repr`` shows the URL redacted and never the password."""

    conninfo: str
    password: PasswordSource | None = field(default=None, repr=False)
    #: passwords a callable source has returned so far (scrubbed from messages)
    _seen: set[str] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        if self.password is not None and not (
            (isinstance(self.password, str) and self.password) or callable(self.password)
        ):
            raise ValidationError(
                "password must be a non-empty string or a zero-argument callable returning one"
            )

    @classmethod
    def of(cls, target: str | PgTarget) -> PgTarget:
        return target if isinstance(target, PgTarget) else cls(target)

    def resolve_password(self) -> str | None:
        """The password for a new connection (the callable asked now), or ``None``."""
        if self.password is None or isinstance(self.password, str):
            return self.password
        value = self.password()
        if not isinstance(value, str) or not value:
            raise AuthenticationError(
                f"postgres: the password callable returned {type(value).__name__}, "
                "expected a non-empty str"
            )
        self._seen.add(value)
        return value

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``psycopg.connect`` for one new connection."""
        password = self.resolve_password()
        return {"autocommit": True, **({} if password is None else {"password": password})}

    def secrets(self) -> frozenset[str]:
        """Every secret value this target knows of, to scrub from messages."""
        fixed = {self.password} if isinstance(self.password, str) else set()
        return secrets_of(self.conninfo) | fixed | self._seen

    def shown(self) -> str:
        """The URL as it may be shown (password and secret parameters masked)."""
        return redact_url(self.conninfo)

    def __repr__(self) -> str:
        return f"PgTarget({self.shown()!r})"


def pool_args(target: str | PgTarget) -> dict[str, Any]:
    """``conninfo`` and ``kwargs`` for a psycopg pool: a password callable is asked on every
    new connection (psycopg_pool >= 3.3 resolves callable ``kwargs`` per connection)."""
    pg = PgTarget.of(target)
    if callable(pg.password):
        return {"conninfo": pg.conninfo, "kwargs": pg.kwargs}
    return {"conninfo": pg.conninfo, "kwargs": pg.kwargs()}


_TLS_SIGNS = ("certificate", "ssl error", "sslrootcert", "tls", "ssl syscall")
_AUTH_SIGNS = (
    "password authentication failed",
    "no password supplied",
    "authentication failed",
    "password is required",
)


def connect_error(exc: BaseException, target: str | PgTarget, doing: str) -> BackendError:
    """The typed, secret-free error for a failed connection (``exc`` is scrubbed too, since it
    stays chained as ``__cause__``)."""
    pg = PgTarget.of(target)
    secrets = pg.secrets()
    scrub_exception(exc, secrets)
    if isinstance(exc, BackendError):
        return exc
    text = redact_text(str(exc).strip(), secrets)
    low = text.lower()
    where = f"postgres: cannot {doing} ({pg.shown()})"
    if any(sign in low for sign in _TLS_SIGNS):
        return CertificateError(
            f"{where}: TLS verification failed: {text}. With sslmode=verify-full the server's "
            "certificate must chain to sslrootcert and name the host you connect to."
        )
    if any(sign in low for sign in _AUTH_SIGNS):
        return AuthenticationError(
            f"{where}: {text}. Give the password through PGPASSWORD, a password file "
            "(PGPASSFILE, ~/.pgpass), a service file, or the password option of DatabaseFactory."
        )
    return BackendConnectionError(f"{where}: {text}")


def _connect(target: PgTarget) -> Any:
    """A plain autocommit connection, or a typed, secret-free error."""
    import psycopg

    try:
        return psycopg.connect(target.conninfo, **target.kwargs())
    except psycopg.ProgrammingError as exc:  # libpq refused the connection string itself
        scrub_exception(exc, target.secrets())
        raise ValidationError(
            f"postgres: malformed connection URL {target.shown()!r}: "
            f"{redact_text(str(exc).strip(), target.secrets())}"
        ) from exc
    except psycopg.Error as exc:
        raise connect_error(exc, target, "connect") from exc


def _ensure_extension(target: PgTarget) -> ServerInfo:
    import psycopg

    try:
        with _connect(target) as conn:
            row = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()
            if row is None:
                try:
                    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                except psycopg.Error as exc:
                    raise BackendUnavailableError(
                        "the PostgreSQL server has no pgvector extension in this database and it "
                        f"could not be created ({exc.diag.message_primary or exc}). Ask an "
                        "administrator to install pgvector (>= 0.8 for filtered index search) "
                        "and run `CREATE EXTENSION vector;` in this database, or connect as a "
                        "role allowed to create it."
                    ) from exc
                row = conn.execute(
                    "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
                ).fetchone()
            assert row is not None
            return ServerInfo(conn.info.server_version, str(row[0]))
    except psycopg.OperationalError as exc:
        raise connect_error(exc, target, "connect") from exc


def _array_loader(wire: str) -> type:
    """A binary loader giving float32 numpy arrays directly (``wire``: ``>f4`` for ``vector``,
    ``>f2`` for ``halfvec``).

    pgvector's own loaders build a ``Vector``/``HalfVector`` object per value first; search
    results decode k to k+8 of them per query, so this saves a measurable share of a fast HNSW
    search.
    """
    import numpy as np
    from psycopg.adapt import Loader
    from psycopg.pq import Format

    class ArrayLoader(Loader):
        format = Format.BINARY

        def load(self, data: Any) -> Any:
            # pgvector's binary format: uint16 dims, uint16 unused, then the big-endian values
            return np.frombuffer(data, dtype=wire, offset=4).astype(np.float32)

    return ArrayLoader


def array_loaders(conn: Any) -> list[tuple[str, type]]:
    """Our numpy loaders for the pgvector types this connection knows (after pgvector's
    ``register_vector`` looked their OIDs up)."""
    return [
        (name, _array_loader(wire))
        for name, wire in (("vector", ">f4"), ("halfvec", ">f2"))
        if conn.adapters.types.get(name) is not None
    ]


def _configure(conn: Any) -> None:
    """Per pooled connection: pgvector's adapters (numpy arrays in and out)."""
    from pgvector.psycopg import register_vector

    register_vector(conn)
    for name, loader in array_loaders(conn):
        conn.adapters.register_loader(name, loader)


def open_pool(
    conninfo: str | PgTarget, *, min_size: int = 1, max_size: int = 4
) -> tuple[Any, ServerInfo]:
    """A ready :class:`psycopg_pool.ConnectionPool` and what the server offers.

    Connections are in autocommit mode: the backend opens a transaction where it needs one
    (writes, index searches), and one-statement reads pay no ``BEGIN``/``COMMIT``. There is
    no check on checkout (it would cost a round trip per call); a connection that broke in use
    is discarded when returned, so one failed call is the price of a server restart.
    """
    for module in ("psycopg", "psycopg_pool", "pgvector"):
        if importlib.util.find_spec(module) is None:
            raise BackendUnavailableError(f"the postgres backend needs {module}; {INSTALL_HINT}")
    from psycopg_pool import ConnectionPool

    target = PgTarget.of(conninfo)
    info = _ensure_extension(target)
    pool = ConnectionPool(
        min_size=min_size,
        max_size=max_size,
        configure=_configure,
        open=False,
        **pool_args(target),
    )
    try:
        pool.open(wait=True, timeout=30)
    except Exception as exc:
        pool.close()
        raise connect_error(exc, target, "open a connection pool") from exc
    return pool, info
