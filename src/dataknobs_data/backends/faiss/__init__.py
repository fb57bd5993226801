"""The faiss backend (``faiss://path``): memory-backend records, faiss vector indexes, a journal."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from ...errors import ValidationError
from ...redaction import redact_url
from .backend import FaissBackend

__all__ = ["FaissBackend", "faiss_from_url"]


def faiss_from_url(url: str, options: dict[str, Any]) -> FaissBackend:
    """``faiss://`` (nothing persisted), ``faiss://dir`` / ``faiss:///abs/dir`` (a directory
    holding the journal and snapshots). Options go to :class:`FaissBackend`."""
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ValidationError(
            f"faiss URLs take no parameters (pass options instead): {redact_url(url)!r}"
        )
    if "@" in parts.netloc:
        raise ValidationError(f"faiss URLs take no user or password: {redact_url(url)!r}")
    path = unquote(parts.netloc + parts.path)
    if "path" in options:
        raise ValidationError("give the faiss directory in the URL, not as an option")
    return FaissBackend(path or None, **options)
