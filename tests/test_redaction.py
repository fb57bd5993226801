"""The redaction rule as a pure function: what is masked, and what is kept as written."""

from __future__ import annotations

import logging

import pytest

from dataknobs_data.errors import BackendError, ValidationError
from dataknobs_data.redaction import (
    MASK,
    RedactingFilter,
    is_secret_name,
    redact_text,
    redact_url,
    scrub_exception,
    scrubbed,
    secrets_of,
    url_has_password,
)

S = "Sentinel-9f3b"

URL_CASES = [
    (
        f"postgresql://postgres:{S}@127.0.0.1:5432/db?collection=c",
        f"postgresql://postgres:{MASK}@127.0.0.1:5432/db?collection=c",
    ),
    (
        f"postgresql://u@h/db?sslmode=verify-full&password={S}&sslrootcert=/ca.crt",
        f"postgresql://u@h/db?sslmode=verify-full&password={MASK}&sslrootcert=/ca.crt",
    ),
    (f"postgresql://u@h/db?sslpassword={S}", f"postgresql://u@h/db?sslpassword={MASK}"),
    (f"es://h:9200/?api_key={S}&x=1", f"es://h:9200/?api_key={MASK}&x=1"),
    (f"es://h/?APIKEY={S}", f"es://h/?APIKEY={MASK}"),
    (f"x://h/?token={S}", f"x://h/?token={MASK}"),
    (f"x://h/?client_secret={S}", f"x://h/?client_secret={MASK}"),
    (f"x://h/?es-api-key={S}", f"x://h/?es-api-key={MASK}"),
    (f"memory://:{S}@", f"memory://:{MASK}@"),
    (f"host=h user=u password={S} dbname=d", f"host=h user=u password={MASK} dbname=d"),
    (f"host=h password='{S} with space' port=1", f"host=h password={MASK} port=1"),
    # nothing secret: kept exactly as typed
    ("postgresql://u@h:1/db?sslmode=require", "postgresql://u@h:1/db?sslmode=require"),
    ("sqlite:///a%20b.db?collection=x", "sqlite:///a%20b.db?collection=x"),
    ("memory://", "memory://"),
]


@pytest.mark.parametrize(("url", "shown"), URL_CASES)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert S not in redact_url(url)


@pytest.mark.parametrize("raw", [f"{S}@x", f"{S}/x", f"{S}:x", f"{S}?x", f"{S}#x"])
def test_unescaped_delimiters_in_the_password_are_masked_whole(raw: str) -> None:
    """A password a user forgot to %-escape (``@ / : ? #``) is still masked entirely (with
    ``?`` or ``#`` in it, possibly more than the password), and known as a whole secret."""
    url = f"postgresql://u:{raw}@host/db?sslmode=require&note=a@b"
    shown = redact_url(url)
    assert shown.startswith(f"postgresql://u:{MASK}@") and S not in shown
    if "?" not in raw and "#" not in raw:
        assert shown == f"postgresql://u:{MASK}@host/db?sslmode=require&note=a@b"
        assert raw in secrets_of(url)
    plain = f"postgresql://u:{raw}@host/db"
    assert redact_url(plain) == f"postgresql://u:{MASK}@host/db"
    assert raw in secrets_of(plain)


def test_at_sign_outside_the_userinfo_is_not_a_password() -> None:
    for url in ("sqlite:///a:b@c.db", "postgresql://h/db?application_name=x:y@z"):
        assert redact_url(url) == url


@pytest.mark.parametrize(
    ("url", "has"),
    [
        (f"postgresql://u:{S}@h/db", True),
        ("postgresql://u:@h/db", True),  # an empty password is still a password given
        ("postgresql://u:p/w@d@h/db", True),  # unescaped "/" and "@": wider than urlsplit
        (f"postgresql://u@h/db?sslmode=require&password={S}", True),
        ("postgresql://u@h/db", False),
        ("postgresql://h/db?application_name=x:y@z", False),
        ("postgresql://u@h/db?sslpassword=x", False),
        ("sqlite:///a:b@c.db", False),
        ("host=h password=x", False),  # not a URL: the factories never see one
    ],
)
def test_url_has_password_uses_the_redaction_rule(url: str, has: bool) -> None:
    """The factory's "password given twice" check and the redactor read userinfo the same way."""
    assert url_has_password(url) is has


def test_secrets_of_finds_raw_and_decoded_values() -> None:
    url = "postgresql://u:p%40ss%zz@h/db?password=a%2Bb&sslmode=require"
    found = secrets_of(url)
    assert {"p%40ss%zz", "p@ss%zz", "a%2Bb", "a+b"} <= found
    assert "require" not in found
    assert secrets_of("memory://") == frozenset()


def test_redact_text_scrubs_fragments_a_driver_echoes() -> None:
    """libpq quotes only the bad token of a malformed URL: the known secret is still masked."""
    url = f"postgresql://u:{S}%zz@h/db"
    message = f'invalid percent-encoded token: "{S}%zz"'
    assert S not in redact_text(message, secrets_of(url))
    shown = redact_text("connect postgres://a:b@c/d failed")
    assert shown == f"connect postgres://a:{MASK}@c/d failed"
    assert redact_text("nothing here, sslmode=require") == "nothing here, sslmode=require"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("PASSWORD", True),
        ("sslpassword", True),
        ("api_key", True),
        ("api-key", True),
        ("apikey", True),
        ("token", True),
        ("access_token", True),
        ("secret", True),
        ("es_api_key", True),
        ("collection", False),
        ("sslmode", False),
        ("sslrootcert", False),
        ("user", False),
        ("host", False),
    ],
)
def test_is_secret_name(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def _chained() -> BackendError:
    try:
        raise RuntimeError(f"driver said: bad password {S}")
    except RuntimeError as inner:
        outer = BackendError(f"wrapped: {S}")
        outer.__cause__ = inner
        return outer


def test_scrub_exception_cleans_the_whole_chain() -> None:
    exc = scrub_exception(_chained(), {S})
    assert S not in str(exc)
    assert exc.__cause__ is not None
    assert S not in str(exc.__cause__)
    assert "wrapped: ***" in str(exc)


def test_scrubbed_block_reraises_the_same_exception_cleaned() -> None:
    with pytest.raises(ValidationError) as info, scrubbed({S}):
        raise ValidationError(f"bad URL x://u:{S}@h")
    assert S not in str(info.value)
    assert MASK in str(info.value)


def test_logging_filter_masks_urls_and_pairs() -> None:
    record = logging.LogRecord(
        "psycopg.pool", logging.WARNING, __file__, 1, "error connecting %s: %s", None, None
    )
    record.args = (f"postgresql://u:{S}@h/db", f"password={S}")
    assert RedactingFilter().filter(record) is True
    assert S not in record.getMessage()
    assert "postgresql://u:***@h/db" in record.getMessage()
