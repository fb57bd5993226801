"""Create databases from URLs, and tell which backends this installation can run.

Backends register a scheme with a builder and an availability probe; the probe only checks that
the optional driver can be found (``importlib.util.find_spec``), so asking what is available
never imports a heavy engine.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qs, parse_qsl, quote, unquote, urlencode, urlsplit

from .contract import Backend
from .database import AsyncDatabase, SyncDatabase
from .errors import BackendUnavailableError, ValidationError
from .redaction import redact_url, scrubbed, secrets_of, url_has_password
from .vector.types import VectorConfig

__all__ = ["BackendInfo", "DatabaseFactory"]

Builder = Callable[[str, dict[str, Any]], Backend]


def missing_modules(modules: tuple[str, ...], extra: str | None) -> str | None:
    """What is missing to run an engine and how to install it, or ``None`` when all is there
    (``find_spec`` only: asking never imports a heavy engine)."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    hint = f'pip install "dataknobs-data[{extra}]"' if extra else ""
    return f"missing {', '.join(missing)}; {hint}".strip()


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """A backend's scheme, whether it can run here, and what to install if not."""

    scheme: str
    available: bool
    detail: str


def check_options(
    backend: type[Backend], options: Mapping[str, Any], scheme: str, also: tuple[str, ...] = ()
) -> None:
    """Refuse an option the backend's constructor does not take, naming the valid ones: a typed
    :class:`ValidationError` rather than the constructor's ``TypeError``."""
    params = inspect.signature(backend.__init__).parameters.values()
    accepted = {p.name for p in params if p.kind is p.KEYWORD_ONLY} | set(also)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValidationError(
            f"unknown option(s) {unknown} for the {scheme} backend; valid: {sorted(accepted)}"
        )


def _build_memory(url: str, options: dict[str, Any]) -> Backend:
    from .backends.memory import MemoryBackend

    check_options(MemoryBackend, options, "memory")

    parts = urlsplit(url)
    if parts.netloc or parts.path.strip("/") or parts.query:
        raise ValidationError(f"memory:// takes no host, path or parameters: {redact_url(url)!r}")
    return MemoryBackend(**options)


def sqlite_target(url: str) -> tuple[str, dict[str, str]]:
    """``sqlite:///rel.db``, ``sqlite:////abs.db``, ``sqlite:///:memory:`` -> (path, params).

    The only parameter is ``collection`` (a table name, validated by the backend).
    """
    parts = urlsplit(url)
    if parts.netloc:
        raise ValidationError(
            f"sqlite URLs take no host: {redact_url(url)!r} "
            "(use sqlite:///relative.db or sqlite:////abs.db)"
        )
    path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    if not path:
        raise ValidationError(
            f"sqlite URL {redact_url(url)!r} names no file (or use sqlite:///:memory:)"
        )
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    unknown = set(query) - {"collection"}
    if unknown or any(len(v) != 1 for v in query.values()):
        raise ValidationError(
            f"sqlite URL {redact_url(url)!r}: only one ?collection=name is accepted"
        )
    return path, {k: v[0] for k, v in query.items()}


def _build_sqlite(url: str, options: dict[str, Any]) -> Backend:
    from .backends.sqlite import SQLiteBackend

    check_options(SQLiteBackend, options, "sqlite")
    try:
        path, params = sqlite_target(url)
    except ValueError as exc:
        if isinstance(exc, ValidationError):
            raise
        raise ValidationError(f"malformed sqlite URL {redact_url(url)!r}: {exc}") from None
    if "collection" in params and "collection" in options:
        raise ValidationError("give the collection in the URL or as an option, not both")
    return SQLiteBackend(path, **{**params, **options})


#: URL parameters the postgres backend takes for itself; the rest go to libpq.
POSTGRES_PARAMS = ("collection", "schema")


def postgres_target(url: str) -> tuple[str, dict[str, str]]:
    """``postgresql://user@host:port/db?collection=c&schema=s`` -> (libpq URL, our params).

    ``postgres://`` and ``postgresql+psycopg://`` are accepted; other query parameters
    (``sslmode``, ``sslrootcert``, ``service``, ``connect_timeout``...) stay in the URL handed to
    libpq, which also reads ``PGPASSWORD``, the password file and service files as usual. The
    returned libpq URL is the raw one (it may hold the password): hand it only to the driver.
    """
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    ours = [(k, v) for k, v in pairs if k in POSTGRES_PARAMS]
    if len({k for k, _ in ours}) != len(ours):
        raise ValidationError(
            f"postgres URL {redact_url(url)!r}: each of {POSTGRES_PARAMS} at most once"
        )
    # quote, not quote_plus: libpq decodes %20 but takes "+" literally (options=-c%20x%3Dy)
    rest = urlencode([(k, v) for k, v in pairs if k not in POSTGRES_PARAMS], quote_via=quote)
    # Joined by hand: urlunsplit drops the "//" of an empty host (postgresql:///db?service=x).
    query = f"?{rest}" if rest else ""
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return f"postgresql://{parts.netloc}{parts.path}{query}{fragment}", dict(ours)


def _build_postgres(url: str, options: dict[str, Any]) -> Backend:
    from .backends.postgres import PostgresBackend
    from .backends.postgres.connect import PgTarget

    conninfo, params = postgres_target(url)
    both = set(params) & set(options)
    if both:
        raise ValidationError(f"give {sorted(both)} in the URL or as options, not both")
    password = options.pop("password", None)
    check_options(PostgresBackend, options, "postgresql")
    if password is not None and url_has_password(url):
        raise ValidationError("give the password in the URL or as the password option, not both")
    return PostgresBackend(PgTarget(conninfo, password), **{**params, **options})


def _build_faiss(url: str, options: dict[str, Any]) -> Backend:
    from .backends.faiss import FaissBackend, faiss_from_url

    check_options(FaissBackend, options, "faiss", also=("path",))  # path: refused with a reason
    return faiss_from_url(url, options)


def _build_chroma(url: str, options: dict[str, Any]) -> Backend:
    from .backends.chroma import ChromaBackend, open_backend

    check_options(ChromaBackend, options, "chroma")
    return open_backend(url, options)


@dataclass(frozen=True, slots=True)
class _Entry:
    builder: Builder | None
    modules: tuple[str, ...]
    extra: str | None
    planned: bool = False
    #: the builder takes a ``password`` option (a string or a zero-argument callable)
    takes_password: bool = False


class DatabaseFactory:
    """``DatabaseFactory.create("memory://")`` -> :class:`SyncDatabase`; ``create_async`` for
    :class:`AsyncDatabase`. Both take the same URLs and options."""

    _registry: ClassVar[dict[str, _Entry]] = {
        "memory": _Entry(_build_memory, (), None),
        # Registered so users get a precise answer; their backends land in later releases.
        "sqlite": _Entry(_build_sqlite, ("sqlite_vec",), "sqlite"),
        "postgresql": _Entry(
            _build_postgres,
            ("psycopg", "psycopg_pool", "pgvector"),
            "postgres",
            takes_password=True,
        ),
        "elasticsearch": _Entry(None, ("elasticsearch",), "elasticsearch", planned=True),
        "faiss": _Entry(_build_faiss, ("faiss",), "faiss"),
        "chroma": _Entry(_build_chroma, ("chromadb",), "chroma"),
    }
    _aliases: ClassVar[dict[str, str]] = {
        "postgres": "postgresql",
        "es": "elasticsearch",
        "mem": "memory",
    }

    @classmethod
    def register(
        cls,
        scheme: str,
        builder: Builder,
        *,
        modules: tuple[str, ...] = (),
        extra: str | None = None,
        takes_password: bool = False,
    ) -> None:
        """Add (or replace) a backend, e.g. a third-party engine passing the conformance suite.

        ``takes_password=True`` hands the ``password=`` option to ``builder``; otherwise it is
        refused. Whatever ``builder`` raises is scrubbed of the URL's and option's secrets.
        """
        cls._registry[scheme] = _Entry(builder, modules, extra, takes_password=takes_password)

    @classmethod
    def scheme(cls, url: str) -> str:
        """The backend a URL names (aliases resolved), e.g. ``"postgresql"`` for ``postgres://``."""
        return cls._scheme(url)

    @classmethod
    def _scheme(cls, url: str) -> str:
        if not isinstance(url, str) or not url:
            shown = redact_url(url) if isinstance(url, str) else type(url).__name__
            raise ValidationError(f"expected a database URL such as 'memory://', got {shown!r}")
        scheme = url.split(":", 1)[0].lower() if ":" in url else url.lower()
        scheme = scheme.split("+", 1)[0]
        return cls._aliases.get(scheme, scheme)

    @classmethod
    def _probe(cls, scheme: str, entry: _Entry) -> BackendInfo:
        if entry.planned:
            return BackendInfo(scheme, False, "not implemented in this release")
        missing = missing_modules(entry.modules, entry.extra)
        return BackendInfo(scheme, missing is None, missing or "ready")

    @classmethod
    def backends(cls) -> list[BackendInfo]:
        """Every known backend and whether it can run in this environment."""
        return [cls._probe(s, e) for s, e in sorted(cls._registry.items())]

    @classmethod
    def _backend(cls, url: str, options: Mapping[str, Any]) -> tuple[Backend, dict[str, Any]]:
        scheme = cls._scheme(url)
        entry = cls._registry.get(scheme)
        if entry is None:
            raise ValidationError(
                f"unknown backend {scheme!r} in {redact_url(url)!r}; known: {sorted(cls._registry)}"
            )
        try:
            urlsplit(url)  # what every builder starts with; refused here once, typed
        except ValueError as exc:
            raise ValidationError(f"malformed URL {redact_url(url)!r}: {exc}") from None
        info = cls._probe(scheme, entry)
        if not info.available or entry.builder is None:
            raise BackendUnavailableError(f"the {scheme} backend is unavailable: {info.detail}")
        opts = dict(options)
        vectors = opts.pop("vectors", None) or {}
        password = opts.get("password")
        if "password" in opts and not entry.takes_password:
            raise ValidationError(f"the {scheme} backend takes no password option")
        secrets = secrets_of(url) | ({password} if isinstance(password, str) else set())
        with scrubbed(secrets):
            backend = entry.builder(url if ":" in url else f"{scheme}://", opts)
        return backend, dict(vectors)

    @staticmethod
    def _declare(backend: Backend, vectors: Mapping[str, VectorConfig]) -> None:
        for name, config in vectors.items():
            if not isinstance(config, VectorConfig):
                raise ValidationError(f"vectors[{name!r}] must be a VectorConfig")
            backend.capabilities().check_dimensions(name, config.dimensions)
            backend.declare_vector_field(name, config)

    @classmethod
    def create(cls, url: str, **options: Any) -> SyncDatabase:
        """A blocking database. ``vectors={"embedding": VectorConfig(384)}`` pre-declares
        vector fields; other options go to the backend. ``password=`` (a string, or a
        zero-argument callable asked on every new connection, e.g. a secrets manager's lookup)
        keeps the password out of the URL; it is never shown. The database keeps only the
        redacted URL (:attr:`SyncDatabase.url`); the raw one goes to the driver alone."""
        backend, vectors = cls._backend(url, options)
        cls._declare(backend, vectors)
        return SyncDatabase(backend, url=redact_url(url))

    @classmethod
    def create_async(cls, url: str, **options: Any) -> AsyncDatabase:
        """An awaitable database over the same backends (see :meth:`create`)."""
        backend, vectors = cls._backend(url, options)
        cls._declare(backend, vectors)
        return AsyncDatabase(backend, url=redact_url(url))
