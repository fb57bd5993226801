"""The chroma backend (``chroma:///dir``, ``chroma:////abs/dir``; ``chroma://`` in memory).

Importing this package does not import chromadb; opening a database does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ...errors import ValidationError
from ...redaction import redact_url
from .backend import ChromaBackend

__all__ = ["ChromaBackend", "chroma_target", "open_backend"]


def chroma_target(url: str) -> tuple[str | None, dict[str, str]]:
    """``chroma:///rel/dir``, ``chroma:////abs/dir``, ``chroma://`` -> (path or None, params).

    As for SQLite, the path follows the third slash, so ``chroma:///data`` is ``./data``. The
    only parameter is ``collection`` (the records collection's name).
    """
    parts = urlsplit(url)
    if parts.netloc:
        raise ValidationError(
            f"chroma URLs take no host: {redact_url(url)!r} (use chroma:///relative/dir, "
            "chroma:////abs/dir or chroma:// for an in-memory database)"
        )
    path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise ValidationError(f"malformed chroma URL {redact_url(url)!r}: {exc}") from None
    if set(query) - {"collection"} or any(len(v) != 1 for v in query.values()):
        raise ValidationError(
            f"chroma URL {redact_url(url)!r}: only one ?collection=name is accepted"
        )
    return path or None, {k: v[0] for k, v in query.items()}


def open_backend(url: str, options: dict[str, Any]) -> ChromaBackend:
    """The :class:`DatabaseFactory` builder for ``chroma://`` URLs."""
    path, params = chroma_target(url)
    if "collection" in params and "collection" in options:
        raise ValidationError("give the collection in the URL or as an option, not both")
    return ChromaBackend(path, **{**params, **options})
