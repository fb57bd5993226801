"""One rule for showing a connection target without its secrets.

A database URL or libpq connection string is shown in ``repr``, error messages, logs, CLI
output and benchmark reports; a password in it would then reach tracebacks, CI logs and bug
reports. Everything that shows a target goes through :func:`redact_url` (one URL) or
:func:`redact_text` (free text that may hold URLs, ``key=value`` connection strings and known
secret values, e.g. a driver's error message). The raw URL is kept only where the driver needs it.

What is replaced by ``***``:

- the password of a URL's userinfo (``postgresql://user:***@host/db``);
- the value of every query parameter or ``key=value`` pair whose name carries a secret
  (:func:`is_secret_name`: ``password``, ``sslpassword``, ``api_key``, ``apikey``, ``token``,
  ``secret``, ``passphrase``... and names ending in one of those);
- any known secret value wherever it appears (:func:`secrets_of` collects them from a URL, in
  raw and percent-decoded form), which catches a driver echoing a fragment such as
  ``invalid percent-encoded token: "pa%zzss"``.

This module imports nothing but the standard library, so every layer (errors, factories,
shells, backends, CLI, benchmarks) can use it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from urllib.parse import unquote, unquote_plus

__all__ = [
    "MASK",
    "RedactingFilter",
    "is_secret_name",
    "redact_text",
    "redact_url",
    "scrub_exception",
    "scrubbed",
    "secrets_of",
    "url_has_password",
]

#: What a secret is replaced with.
MASK = "***"

#: Parameter names that hold a secret (compared lower-cased, ``-`` read as ``_``).
SECRET_NAMES = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "pass",
        "sslpassword",
        "api_key",
        "apikey",
        "token",
        "access_token",
        "auth_token",
        "secret",
        "client_secret",
        "passphrase",
        "credentials",
    }
)
#: A name ending in one of these holds a secret too (``es_api_key``, ``x_auth_token``...).
SECRET_SUFFIXES = ("password", "passwd", "secret", "token", "api_key", "apikey", "passphrase")

# scheme://userinfo@host... inside free text: the userinfo's password part is masked.
_URL_IN_TEXT = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)([^\s'\"/?#@]*)@")
# name=value (a query parameter or a libpq keyword/value pair); value quoted or bare.
_PAIR_IN_TEXT = re.compile(
    r"(?P<name>[A-Za-z_][A-Za-z0-9_.-]*)(?P<eq>\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'?|\"(?:[^\"\\]|\\.)*\"?|[^\s&;,'\"]*)"
)


def is_secret_name(name: str) -> bool:
    """Whether a parameter called ``name`` carries a secret (its value is never shown)."""
    key = name.strip().lower().replace("-", "_")
    return key in SECRET_NAMES or key.endswith(SECRET_SUFFIXES)


def _split_userinfo(rest: str) -> tuple[str | None, str]:
    """What follows ``scheme://`` -> (``user:password``, the rest after its ``@``), or
    ``(None, rest)`` when there is no password.

    A password a user forgot to %-escape must still be masked whole, so this is wider than
    ``urlsplit``: the userinfo ends at the last ``@`` before the query (a password holding
    ``/`` or ``@``), else at the last ``@`` anywhere (one holding ``?`` or ``#``; this may mask
    more than the password, never less). The user name itself holds none of ``/?#@``.
    """
    head = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    for scope in (rest[:head], rest):
        at = scope.rfind("@")
        while at >= 0:
            user, colon, _ = rest[:at].partition(":")
            if colon and not any(c in user for c in "/?#@"):
                return rest[:at], rest[at + 1 :]
            at = scope.rfind("@", 0, at)
    return None, rest


def _redact_query(query: str) -> str:
    out = []
    for part in query.split("&"):
        name, eq, _ = part.partition("=")
        out.append(f"{name}={MASK}" if eq and is_secret_name(unquote_plus(name)) else part)
    return "&".join(out)


def redact_url(url: str | None) -> str:
    """``url`` with its userinfo password and secret query parameters replaced by ``***``.

    Everything else is kept as written (so the result still says which host, database and
    options were meant). Text that is not a URL (a libpq ``key=value`` string, garbage) goes
    through :func:`redact_text`, so this never echoes a secret whatever it is given.
    """
    if not url:
        return url or ""
    if "://" not in url:
        return redact_text(url)
    scheme, sep, rest = url.partition("://")
    # Split by hand rather than re-assemble urlsplit's parts: the shown URL stays as typed.
    userinfo, rest = _split_userinfo(rest)
    auth = "" if userinfo is None else f"{userinfo.partition(':')[0]}:{MASK}@"
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=-1)
    netloc, tail = (rest, "") if cut < 0 else (rest[:cut], rest[cut:])
    netloc = auth + netloc
    path, qmark, query = tail.partition("?")
    fragment = ""
    if "#" in query:
        query, _, fragment = query.partition("#")
        fragment = "#" + redact_text(fragment)
    shown = f"{scheme}{sep}{netloc}{path}{qmark}{_redact_query(query)}{fragment}"
    return redact_text(shown)


def url_has_password(url: str) -> bool:
    """Whether ``url`` carries a password, in its userinfo or as a ``password=`` parameter.

    Uses the same userinfo rule as :func:`redact_url` (wider than ``urlsplit``), so a password
    that the redactor would mask is also one the factories see when refusing a second one.
    """
    if "://" not in url:
        return False
    userinfo, rest = _split_userinfo(url.partition("://")[2])
    if userinfo is not None:
        return True
    query = rest.partition("?")[2].partition("#")[0]
    return any(part.partition("=")[0] == "password" for part in query.split("&"))


def secrets_of(url: str | None) -> frozenset[str]:
    """The secret values a URL (or libpq ``key=value`` string) carries, raw and decoded, so
    that :func:`redact_text` can scrub them from messages that quote only a fragment."""
    if not url:
        return frozenset()
    found: set[str] = set()
    if "://" in url:
        userinfo, rest = _split_userinfo(url.partition("://")[2])
        if userinfo is not None:
            found.add(userinfo.partition(":")[2])
        query = rest.partition("?")[2].partition("#")[0]
        for part in query.split("&"):
            name, eq, value = part.partition("=")
            if eq and is_secret_name(unquote_plus(name)):
                found.add(value)
    for match in _PAIR_IN_TEXT.finditer(url):
        if is_secret_name(match["name"]):
            found.add(match["value"].strip("'\""))
    decoded = {unquote(s) for s in found} | {unquote_plus(s) for s in found}
    return frozenset(s for s in found | decoded if s)


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every known secret, URL password and secret ``name=value`` masked.

    For free text such as a driver's error message. ``secrets`` are literal values to remove
    wherever they occur (longest first, so a secret containing another is masked whole).
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)

    def userinfo(match: re.Match[str]) -> str:
        info = match[2]
        return f"{match[1]}{info.split(':', 1)[0]}:{MASK}@" if ":" in info else match[0]

    def pair(match: re.Match[str]) -> str:
        if not is_secret_name(match["name"]) or not match["value"]:
            return match[0]
        return f"{match['name']}{match['eq']}{MASK}"

    return _PAIR_IN_TEXT.sub(pair, _URL_IN_TEXT.sub(userinfo, text))


def _scrub_args(exc: BaseException, secrets: frozenset[str]) -> None:
    exc.args = tuple(redact_text(a, secrets) if isinstance(a, str) else a for a in exc.args)


def scrub_exception(exc: BaseException, secrets: Iterable[str] = ()) -> BaseException:
    """Mask secrets in ``exc``'s message and in every exception chained to it (in place).

    ``str()`` and tracebacks show an exception's ``args``; the chained driver errors stay
    attached (``raise ... from``) but no longer carry the password.
    """
    known = frozenset(secrets)
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        _scrub_args(current, known)
        current = current.__cause__ or current.__context__
    return exc


@contextmanager
def scrubbed(secrets: Iterable[str] = ()) -> Iterator[None]:
    """Whatever escapes the block leaves without the given secrets (or URL passwords) in its
    message or its chain: a safety net around code that handles a raw connection target."""
    known = frozenset(secrets)
    try:
        yield
    except BaseException as exc:
        scrub_exception(exc, known)
        raise


class RedactingFilter(logging.Filter):
    """A logging filter masking URL passwords and secret ``name=value`` pairs in records.

    Installed on the ``psycopg`` loggers (their pool logs connection failures with libpq's
    text); add it to your own handlers to extend the rule to everything they write.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True
