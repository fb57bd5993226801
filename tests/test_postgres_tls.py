"""PostgreSQL over TLS, with passwords from libpq's own sources, and with least privilege.

The TLS and password tests need the cluster ``scripts/postgres.sh start`` makes: ``ssl=on``
with a certificate from a throwaway CA (exported as ``$DATAKNOBS_TEST_POSTGRES_SSLROOTCERT``),
and pg_hba.conf rules that make members of ``dataknobs_password_auth`` give a password and
members of ``dataknobs_tls_only`` give one over TLS. Against any other server (e.g. a
``$DATAKNOBS_TEST_POSTGRES_URL`` you started yourself) they are skipped, saying so.
The least-privilege tests only need a role allowed to create roles (the test server's
``postgres``).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from dataknobs_data import (
    AuthenticationError,
    BackendConnectionError,
    CertificateError,
    DatabaseFactory,
    PermissionDeniedError,
    Record,
    SyncDatabase,
    VectorConfig,
    VectorField,
)
from dataknobs_data.testing.backends import POSTGRES_URL_ENV

BASE_URL = os.environ.get(POSTGRES_URL_ENV, "")
ROOT_CERT = os.environ.get("DATAKNOBS_TEST_POSTGRES_SSLROOTCERT", "")

needs_server = pytest.mark.skipif(not BASE_URL, reason=f"set {POSTGRES_URL_ENV}")
needs_tls_cluster = pytest.mark.skipif(
    not (BASE_URL and ROOT_CERT),
    reason="DATAKNOBS_TEST_POSTGRES_SSLROOTCERT is not set: the server was not started by "
    "scripts/postgres.sh (which enables ssl=on and the password rules these tests need)",
)

PASSWORD = "Tls-pw-4e0c"  # the test roles' password (a sentinel: never in any message)


def _host_port() -> tuple[str, int]:
    parts = urlsplit(BASE_URL)
    return parts.hostname or "127.0.0.1", parts.port or 5432


def url_for(
    user: str, *, host: str | None = None, password: str | None = None, **params: str
) -> str:
    """The test server's URL for ``user`` (no password unless given), with query parameters."""
    default_host, port = _host_port()
    auth = f"{user}:{password}" if password else user
    defaults = {"schema": user, "collection": f"t_{uuid.uuid4().hex[:12]}"}
    query = "&".join(f"{k}={v}" for k, v in {**defaults, **params}.items())
    return f"postgresql://{auth}@{host or default_host}:{port}/postgres?{query}"


def admin(sql: str, params: tuple[Any, ...] = ()) -> None:
    import psycopg

    with psycopg.connect(BASE_URL, autocommit=True) as conn:
        conn.execute(sql, params)


def _role(group: str) -> Iterator[str]:
    """A login role in ``group`` with PASSWORD and a schema of its own (named after it), which
    ``url_for`` makes its collections in."""
    name = f"sec_{uuid.uuid4().hex[:10]}"
    admin(f"CREATE ROLE {name} LOGIN PASSWORD '{PASSWORD}' IN ROLE {group}")
    admin(f"CREATE SCHEMA {name} AUTHORIZATION {name}")
    try:
        yield name
    finally:
        admin(f"DROP OWNED BY {name}")
        admin(f"DROP ROLE {name}")


@pytest.fixture
def password_role() -> Iterator[str]:
    """A role that must authenticate with PASSWORD (scram-sha-256), over TLS or not."""
    yield from _role("dataknobs_password_auth")


@pytest.fixture
def tls_role() -> Iterator[str]:
    """A role that must authenticate with PASSWORD over TLS (plain connections rejected)."""
    yield from _role("dataknobs_tls_only")


@pytest.fixture(autouse=True)
def _no_ambient_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No password from the environment or ~/.pgpass unless a test puts one there."""
    for name in ("PGPASSWORD", "PGSERVICE", "PGSERVICEFILE", "PGSSLMODE", "PGSSLROOTCERT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-such-pgpass"))


def roundtrip(db: SyncDatabase) -> None:
    db.create(Record({"title": "tls", "v": VectorField(np.ones(3, dtype=np.float32))}, id="r1"))
    record = db.read("r1")
    assert record is not None and record["title"] == "tls"
    assert [h.id for h in db.vector_search(np.ones(3, dtype=np.float32), k=1)] == ["r1"]


def assert_clean(exc: BaseException) -> None:
    import traceback

    text = "".join(traceback.format_exception(exc))
    assert PASSWORD not in text, text


# == TLS =========================================================================================
@needs_tls_cluster
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_verify_full_with_the_test_ca(
    host: str, tls_role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sslmode=verify-full against the server's CA, for its IP and DNS names. The role is
    rejected on plain connections by pg_hba.conf, so getting in proves TLS was used."""
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    url = url_for(tls_role, host=host, sslmode="verify-full", sslrootcert=ROOT_CERT)
    with DatabaseFactory.create(url, temporary=True) as db:
        roundtrip(db)
        assert "sslrootcert=" in repr(db)


@needs_tls_cluster
async def test_verify_full_async(tls_role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    url = url_for(tls_role, sslmode="verify-full", sslrootcert=ROOT_CERT)
    db = DatabaseFactory.create_async(url, temporary=True)
    try:
        await db.create(Record({"title": "a"}, id="a"))
        assert await db.count() == 1
    finally:
        await db.close()


@needs_tls_cluster
def test_plain_connection_is_rejected_for_a_tls_only_role(
    tls_role: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    with pytest.raises(BackendConnectionError, match="no encryption") as info:
        DatabaseFactory.create(url_for(tls_role, sslmode="disable"))
    assert_clean(info.value)


def _other_ca(directory: Path) -> Path:
    """A CA that did not sign the server's certificate."""
    cert = directory / "other-ca.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-new", "-nodes", "-newkey", "ec",
         "-pkeyopt", "ec_paramgen_curve:prime256v1", "-days", "1", "-subj", "/CN=not the test CA",
         "-keyout", str(directory / "other-ca.key"), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert


@needs_tls_cluster
@pytest.mark.parametrize("shell", ["sync", "async"])
def test_wrong_root_certificate_is_refused(
    shell: str, tls_role: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    url = url_for(
        tls_role, password=PASSWORD, sslmode="verify-full", sslrootcert=str(_other_ca(tmp_path))
    )
    create = DatabaseFactory.create if shell == "sync" else DatabaseFactory.create_async
    with pytest.raises(CertificateError, match="certificate verify failed") as info:
        create(url)
    assert_clean(info.value)
    assert f"{tls_role}:***@" in str(info.value)


@needs_tls_cluster
def test_missing_root_certificate_is_refused(tls_role: str, tmp_path: Path) -> None:
    url = url_for(
        tls_role, password=PASSWORD, sslmode="verify-full", sslrootcert=str(tmp_path / "none.crt")
    )
    with pytest.raises(CertificateError, match="does not exist") as info:
        DatabaseFactory.create(url)
    assert_clean(info.value)


@needs_tls_cluster
def test_plain_connections_still_work_for_other_roles() -> None:
    """The rest of the suite connects as a trusted role, with or without TLS."""
    url = (
        BASE_URL
        + ("&" if "?" in BASE_URL else "?")
        + f"sslmode=disable&collection=t_{uuid.uuid4().hex[:12]}"
    )
    with DatabaseFactory.create(url, temporary=True) as db:
        roundtrip(db)


# == passwords from libpq's sources and from the password option =================================
@needs_tls_cluster
def test_missing_password_is_an_authentication_error(password_role: str) -> None:
    with pytest.raises(AuthenticationError, match="no password supplied"):
        DatabaseFactory.create(url_for(password_role))


@needs_tls_cluster
def test_wrong_password_is_an_authentication_error(password_role: str) -> None:
    with pytest.raises(AuthenticationError, match="password authentication failed") as info:
        DatabaseFactory.create(url_for(password_role), password="not-" + PASSWORD)
    assert "not-" not in str(info.value)
    assert_clean(info.value)


@needs_tls_cluster
def test_pgpassword(password_role: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    with DatabaseFactory.create(url_for(password_role), temporary=True) as db:
        roundtrip(db)


def _passfile(path: Path, user: str) -> Path:
    host, port = _host_port()
    path.write_text(f"{host}:{port}:postgres:{user}:{PASSWORD}\n")
    path.chmod(0o600)
    return path


@needs_tls_cluster
def test_password_file(password_role: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGPASSFILE", str(_passfile(tmp_path / "pgpass", password_role)))
    with DatabaseFactory.create(url_for(password_role), temporary=True) as db:
        roundtrip(db)


@needs_tls_cluster
def test_service_file(password_role: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``postgresql:///?service=name``: host, port, user and TLS settings from a service file,
    the password from the password file."""
    host, port = _host_port()
    services = tmp_path / "pg_service.conf"
    services.write_text(
        f"[dk_test]\nhost={host}\nport={port}\nuser={password_role}\ndbname=postgres\n"
        f"sslmode=verify-full\nsslrootcert={ROOT_CERT}\n"
    )
    monkeypatch.setenv("PGSERVICEFILE", str(services))
    monkeypatch.setenv("PGPASSFILE", str(_passfile(tmp_path / "pgpass", password_role)))
    url = (
        f"postgresql:///?service=dk_test&schema={password_role}&collection=t_{uuid.uuid4().hex[:8]}"
    )
    with DatabaseFactory.create(url, temporary=True) as db:
        roundtrip(db)
        assert "service=dk_test" in repr(db)


@needs_tls_cluster
def test_password_option_string(password_role: str) -> None:
    with DatabaseFactory.create(url_for(password_role), password=PASSWORD, temporary=True) as db:
        roundtrip(db)
        assert PASSWORD not in repr(db) and PASSWORD not in repr(db.backend)


@needs_tls_cluster
async def test_password_callable_is_asked_per_connection(password_role: str) -> None:
    """A secrets manager's lookup: asked for each new connection (the check connection, the
    pool's, the async pool's), so a rotated password is picked up without reopening."""
    calls: list[int] = []

    def lookup() -> str:
        calls.append(1)
        return PASSWORD

    db = DatabaseFactory.create_async(url_for(password_role), password=lookup, temporary=True)
    try:
        await db.create(Record({"n": 1}, id="a"))
        assert await db.count() == 1
    finally:
        await db.close()
    assert len(calls) >= 3


@needs_tls_cluster
def test_password_callable_returning_nothing(password_role: str) -> None:
    with pytest.raises(AuthenticationError, match="returned NoneType"):
        DatabaseFactory.create(url_for(password_role), password=lambda: None)


# == least privilege =============================================================================
@pytest.fixture
def restricted() -> Iterator[tuple[str, str, str]]:
    """(role, schema, collection): an administrator made the schema and the collection (with a
    vector field); the role may read and write its tables, and create nothing."""
    suffix = uuid.uuid4().hex[:10]
    role, schema, collection = f"lp_{suffix}", f"lp_{suffix}", "docs"
    admin(f"CREATE ROLE {role} LOGIN NOCREATEDB NOCREATEROLE")
    admin(f"CREATE SCHEMA {schema}")
    try:
        url = (
            BASE_URL
            + ("&" if "?" in BASE_URL else "?")
            + f"schema={schema}&collection={collection}"
        )
        with DatabaseFactory.create(url, vectors={"v": VectorConfig(3)}):
            pass
        admin(f"GRANT USAGE ON SCHEMA {schema} TO {role}")
        admin(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}")
        yield role, schema, collection
    finally:
        admin(f"DROP SCHEMA {schema} CASCADE")
        admin(f"DROP OWNED BY {role}")
        admin(f"DROP ROLE {role}")


def _as(role: str, schema: str, collection: str) -> str:
    return url_for(role, schema=schema, collection=collection)


@needs_server
def test_least_privilege_role_reads_and_writes(restricted: tuple[str, str, str]) -> None:
    role, schema, collection = restricted
    with DatabaseFactory.create(_as(role, schema, collection)) as db:
        roundtrip(db)
        assert db.update("r1", Record({"title": "again", "v": VectorField(np.zeros(3))}))
        assert db.delete("r1")
        assert db.clear() == 0


@needs_server
def test_least_privilege_cannot_create_a_table(restricted: tuple[str, str, str]) -> None:
    role, schema, _ = restricted
    with pytest.raises(PermissionDeniedError) as info:
        DatabaseFactory.create(_as(role, schema, "other"))
    assert info.value.privilege == f'CREATE on schema "{schema}"'
    assert f'GRANT CREATE ON SCHEMA "{schema}" TO "{role}"' in str(info.value)


@needs_server
def test_least_privilege_cannot_create_a_schema(restricted: tuple[str, str, str]) -> None:
    role, schema, collection = restricted
    with pytest.raises(PermissionDeniedError) as info:
        DatabaseFactory.create(_as(role, schema + "_new", collection))
    assert info.value.privilege == 'CREATE on database "postgres"'
    assert f'CREATE SCHEMA "{schema}_new" AUTHORIZATION "{role}"' in str(info.value)


@needs_server
def test_least_privilege_names_a_missing_table_privilege(restricted: tuple[str, str, str]) -> None:
    role, schema, collection = restricted
    admin(f"REVOKE DELETE ON {schema}.{collection} FROM {role}")
    with pytest.raises(PermissionDeniedError) as info:
        DatabaseFactory.create(_as(role, schema, collection))
    assert info.value.privilege == f'DELETE on table "{schema}"."{collection}"'
    assert f'GRANT DELETE ON "{schema}"."{collection}" TO "{role}"' in str(info.value)


@needs_server
def test_least_privilege_names_a_missing_schema_usage(restricted: tuple[str, str, str]) -> None:
    role, schema, collection = restricted
    admin(f"REVOKE USAGE ON SCHEMA {schema} FROM {role}")
    with pytest.raises(PermissionDeniedError) as info:
        DatabaseFactory.create(_as(role, schema, collection))
    assert info.value.privilege == f'USAGE on schema "{schema}"'


@needs_server
def test_least_privilege_schema_changes_need_the_owner(restricted: tuple[str, str, str]) -> None:
    role, schema, collection = restricted
    with DatabaseFactory.create(_as(role, schema, collection)) as db:
        with pytest.raises(PermissionDeniedError) as info:
            db.declare_vector_field("w", VectorConfig(4))
        assert info.value.privilege == f"ownership of table {collection}"
        with pytest.raises(PermissionDeniedError, match="must be owner"):
            db.create_vector_index("v", kind="hnsw")
        roundtrip(db)  # the refusals left the database usable
