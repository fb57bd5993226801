"""Strings every engine can store: valid Unicode, i.e. encodable as UTF-8.

Python ``str`` may hold lone surrogates (``"\\ud800"``, e.g. from ``os.fsdecode`` or
``surrogateescape``) that no UTF-8 engine can store: SQLite, PostgreSQL, the faiss journal and
chroma all fail on them, each with its own raw error and at a different step of a write. So
every string that can reach an engine (record ids, field names, string and text values, JSON
keys and values at any depth, metadata, vector provenance, filter values and paths, sort and
projection names, text queries) goes through :func:`check_text` where the vocabulary builds it,
and every backend, the memory backend included, refuses the same inputs with the same
:class:`~dataknobs_data.errors.InvalidTextError`.

The check is cheap on the hot path: ``str.isascii()`` (a C scan that stops early on no
allocation) answers for ASCII strings; only other strings pay for an encode attempt.
"""

from __future__ import annotations

from .errors import InvalidTextError

__all__ = ["check_text"]


def check_text(field: str | None, value: str, what: str = "string value") -> str:
    """``value`` unchanged when it is valid Unicode; else :class:`InvalidTextError` naming
    ``field`` (``None`` when ``value`` is itself an id or a name) and what ``value`` is."""
    if value.isascii():
        return value
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise InvalidTextError(
            field,
            f"{what} {shown!r} is not valid Unicode: lone surrogate {value[exc.start]!r} at "
            f"index {exc.start} (only text encodable as UTF-8 can be stored or queried)",
        ) from None
    return value
