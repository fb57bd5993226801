"""The sentinel scan: a password given to the library never comes back out.

A sentinel password is put wherever a user might put one (the URL's userinfo, a ``?password=``
or ``?sslpassword=`` parameter, the ``password=`` option, a password callable). Then every
error the library raises while that happens is collected (each :class:`DataknobsDataError`
ever constructed, with its chained driver errors), and its text, the databases' ``repr``, the
log records and the CLI's output are searched for the sentinel.

On PostgreSQL the whole conformance suite runs on a connection that carries the sentinel (the
test server trusts ``postgres``, and libpq sends a password only when asked, so the sentinel
travels but is never needed). The embedded engines (memory, SQLite, faiss, chroma) take no
password: there the scan checks that a sentinel put in their URL or options is refused without
being echoed.
"""

from __future__ import annotations

import json
import logging
import os
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from dataknobs_data import DatabaseFactory, DataknobsDataError, ValidationError
from dataknobs_data.cli import main
from dataknobs_data.redaction import url_has_password
from dataknobs_data.testing import (
    BackendSpec,
    ConformanceTests,
    DatabaseLike,
    database_urls,
    open_database,
)
from dataknobs_data.testing.backends import POSTGRES_URL_ENV

SENTINEL = "Sntl-7c1e-pa55"
BASE_URL = os.environ.get(POSTGRES_URL_ENV, "")
needs_postgres = pytest.mark.skipif(not BASE_URL, reason=f"set {POSTGRES_URL_ENV}")


def leaked(text: str) -> bool:
    return SENTINEL in text


def exception_text(exc: BaseException) -> str:
    """Everything a traceback of ``exc`` shows: messages of the whole chain, and reprs."""
    return "".join(traceback.format_exception(exc)) + repr(exc)


@pytest.fixture
def raised(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[BaseException]]:
    """Every DataknobsDataError constructed during the test (caught by pytest.raises or not),
    checked for the sentinel once the test is over (when chains are complete)."""
    seen: list[BaseException] = []
    original = DataknobsDataError.__init__

    def recording(self: BaseException, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        seen.append(self)

    monkeypatch.setattr(DataknobsDataError, "__init__", recording)
    yield seen
    leaks = [exception_text(e) for e in seen if leaked(exception_text(e))]
    assert not leaks, leaks[0]


@pytest.fixture(autouse=True)
def _logs_stay_clean(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    assert not leaked(caplog.text), caplog.text


# == PostgreSQL: the whole conformance suite on a connection carrying the sentinel ==============
def sentinel_url(collection: str) -> str:
    """The test server's URL with the sentinel as its password (userinfo when the URL has a
    user and no password; otherwise ``sslpassword``, which libpq sends only for a client key)."""
    parts = urlsplit(BASE_URL)
    joiner = "&" if parts.query else "?"
    extra = f"{joiner}collection={collection}"
    if "@" in parts.netloc and not url_has_password(BASE_URL):
        user, _, host = parts.netloc.rpartition("@")
        head = BASE_URL.replace(f"//{parts.netloc}", f"//{user}:{SENTINEL}@{host}", 1)
        return head + extra
    return f"{BASE_URL}{extra}&sslpassword={SENTINEL}"


def _scratch() -> str:
    return f"t_{uuid.uuid4().hex[:16]}"


#: The sentinel in the URL (sync shell) and, when the URL has no password, as a password
#: callable (async shell): the two ways a password reaches the driver.
SENTINEL_SPECS: list[tuple[BackendSpec, str]] = []
if BASE_URL:
    SENTINEL_SPECS.append(
        (BackendSpec.from_url("pg-url", lambda _: sentinel_url(_scratch()), temporary=True), "sync")
    )
    option = (
        {}
        if url_has_password(BASE_URL)
        else {"password": lambda: SENTINEL}  # trust auth: sent only if the server asks
    )
    base = BASE_URL + ("&" if "?" in BASE_URL else "?")
    SENTINEL_SPECS.append(
        (
            BackendSpec.from_url(
                "pg-option", lambda _: f"{base}collection={_scratch()}", temporary=True, **option
            ),
            "async",
        )
    )


@pytest.fixture(params=SENTINEL_SPECS, ids=lambda p: f"{p[0].name}-{p[1]}")
def db(
    request: pytest.FixtureRequest, tmp_path: Path, raised: list[BaseException]
) -> Iterator[DatabaseLike]:
    spec, mode = request.param
    with open_database(spec, mode, tmp_path) as database:
        yield database
        assert not leaked(repr(database)), repr(database)
        inner = getattr(database, "inner", database)
        assert not leaked(repr(inner)) and not leaked(repr(inner.backend))


@needs_postgres
class TestSentinelConformance(ConformanceTests):
    """Every call of the conformance suite, on PostgreSQL with the sentinel as the password;
    the ``raised`` fixture fails the test if any error it provoked carries the sentinel."""


@needs_postgres
def test_closed_database_and_repr_hide_the_password(raised: list[BaseException]) -> None:
    url = sentinel_url(_scratch())
    db = DatabaseFactory.create(url, temporary=True)
    assert "***" in repr(db)
    assert db.url is not None and not leaked(db.url)
    db.close()
    with pytest.raises(DataknobsDataError) as info:
        db.count()
    assert "is closed" in str(info.value)
    assert raised  # the scan saw the error


@needs_postgres
@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda u: u + "&collection=twice", id="repeated-parameter"),
        pytest.param(lambda u: u.replace(SENTINEL, SENTINEL + "%zz"), id="bad-percent-escape"),
        pytest.param(lambda u: u + "&port=x" + SENTINEL, id="bad-port"),
        pytest.param(lambda u: u + "&bogus=" + SENTINEL, id="unknown-libpq-option"),
        pytest.param(lambda u: u + "&sslmode=" + SENTINEL, id="bad-sslmode"),
        pytest.param(lambda u: u.replace("://", "://", 1).replace("@", "@[", 1), id="bad-host"),
    ],
)
def test_refused_urls_do_not_echo_the_password(
    mangle: Callable[[str], str], raised: list[BaseException]
) -> None:
    url = mangle(sentinel_url(_scratch()))
    with pytest.raises(DataknobsDataError):
        DatabaseFactory.create(url, temporary=True)
    assert raised


@needs_postgres
def test_unreachable_server_error_hides_the_password(raised: list[BaseException]) -> None:
    """Connection refused (nothing listens on port 1): typed, and without the password."""
    url = f"postgresql://dk:{SENTINEL}@127.0.0.1:1/postgres?connect_timeout=5"
    with pytest.raises(DataknobsDataError) as info:
        DatabaseFactory.create(url)
    assert "dk:***@127.0.0.1:1" in str(info.value)


@needs_postgres
def test_password_option_and_url_password_are_not_both_accepted(
    raised: list[BaseException],
) -> None:
    with pytest.raises(ValidationError, match="not both"):
        DatabaseFactory.create(sentinel_url(_scratch()), password=SENTINEL)
    with pytest.raises(ValidationError, match="password must be"):
        DatabaseFactory.create(BASE_URL, password=12345)


# == embedded engines: a sentinel where a user might put one is refused without echo ============
#: each marked to skip, naming the extra, where its engine is not installed
EMBEDDED = database_urls(
    "memory://", "sqlite:///{tmp}/s.db", "faiss:///{tmp}/f", "chroma:///{tmp}/c"
)


def _placements(url: str) -> list[str]:
    scheme, _, rest = url.partition("://")
    joiner = "&" if "?" in rest else "?"
    return [
        f"{url}{joiner}password={SENTINEL}",
        f"{url}{joiner}token={SENTINEL}&api_key={SENTINEL}",
        f"{scheme}://user:{SENTINEL}@{rest.lstrip('/')}",
        f"{url}{joiner}collection=a&collection={SENTINEL}&password={SENTINEL}",
    ]


@pytest.mark.parametrize("template", EMBEDDED)
def test_embedded_urls_refuse_a_password_without_echo(
    template: str, tmp_path: Path, raised: list[BaseException]
) -> None:
    for url in _placements(template.format(tmp=tmp_path)):
        for create in (DatabaseFactory.create, DatabaseFactory.create_async):
            with pytest.raises(ValidationError) as info:
                create(url)
            assert "***" in str(info.value) or "password" in str(info.value), str(info.value)
    assert raised


@pytest.mark.parametrize("template", EMBEDDED)
def test_embedded_backends_refuse_a_password_option(
    template: str, tmp_path: Path, raised: list[BaseException]
) -> None:
    url = template.format(tmp=tmp_path)
    for password in (SENTINEL, lambda: SENTINEL):
        with pytest.raises(ValidationError, match="takes no password"):
            DatabaseFactory.create(url, password=password)


@pytest.mark.parametrize("template", EMBEDDED)
def test_embedded_bad_calls_and_close(
    template: str, tmp_path: Path, raised: list[BaseException]
) -> None:
    """The closed-database error and repr of each embedded engine (nothing secret to show, but
    the same code path as for a server: it must stay clean)."""
    db = DatabaseFactory.create(template.format(tmp=tmp_path))
    assert not leaked(repr(db))
    db.close()
    with pytest.raises(DataknobsDataError, match="is closed"):
        db.read("x")


# == CLI =========================================================================================
def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert not leaked(out + err), out + err
    return code, out + err


@pytest.mark.parametrize("template", EMBEDDED)
def test_cli_errors_do_not_echo_a_password(
    template: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for url in _placements(template.format(tmp=tmp_path)):
        code, text = _cli(capsys, "info", "--db", url)
        assert code == 2 and "error" in text


@needs_postgres
def test_cli_info_and_search_show_the_url_redacted(
    capsys: pytest.CaptureFixture[str], raised: list[BaseException]
) -> None:
    url = sentinel_url(_scratch())
    try:
        code, text = _cli(capsys, "info", "--db", url)
        assert code == 0 and "db: postgresql://" in text and "***" in text
        code, text = _cli(
            capsys, "search", "--db", url, "--limit", "5", "-q", "--json", "-k", "2", "json"
        )
        assert code == 0
        shown = json.loads(text)["db"]
        assert "***" in shown
        code, text = _cli(capsys, "ingest", "--db", url, "--limit", "5", "-q")
        assert code == 0 and "***" in text
    finally:
        DatabaseFactory.create(url, temporary=True).close()  # drop the collection
    code, text = _cli(capsys, "info", "--db", url.replace(SENTINEL, SENTINEL + "%zz"))
    assert code == 2
    code, text = _cli(capsys, "info", "--db", f"postgresql://dk:{SENTINEL}@127.0.0.1:1/x")
    assert code == 2 and "dk:***@" in text
