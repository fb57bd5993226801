"""What every backend refuses in a collection setting (see :meth:`Backend.read_setting`).

Settings are small texts stored with the data (the vectorizing rules of
:mod:`dataknobs_data.vector.sync`). Each backend keeps them in its own schema metadata, but
all of them accept the same keys and values, so a setting written to one store can always be
copied to another: a non-empty ``str`` key and a ``str`` value, neither holding NUL
(PostgreSQL cannot store it in ``text``; SQLite and chroma's catalog would truncate or refuse
it). Checked before anything is written. Pure: no engine is imported.
"""

from __future__ import annotations

from ..errors import ValidationError

__all__ = ["check_prefix", "check_setting", "with_prefix"]


def _check_text(what: str, text: object) -> str:
    if not isinstance(text, str):
        raise ValidationError(f"setting {what} must be a str, got {type(text).__name__}")
    if "\x00" in text:
        raise ValidationError(f"setting {what} {text[:40]!r} holds a NUL character (U+0000)")
    return text


def check_setting(key: object, value: object) -> tuple[str, str | None]:
    """``(key, value)`` checked before anything is written: a non-empty ``str`` key and a
    ``str`` value (``None`` means delete), neither holding NUL."""
    _check_text("key", key)
    if key == "":
        raise ValidationError("setting key must not be empty")
    if value is not None:
        _check_text(f"value of {key!r}", value)
    return str(key), None if value is None else str(value)


def check_prefix(prefix: object) -> str:
    """A key prefix for ``settings(prefix)``: a ``str`` without NUL (empty: every setting)."""
    return _check_text("prefix", prefix)


def with_prefix(settings: dict[str, str], prefix: object) -> dict[str, str]:
    """The entries of ``settings`` whose key starts with ``prefix`` (checked), in key order:
    the listing of the backends that hold their settings as one mapping."""
    start = check_prefix(prefix)
    return {k: settings[k] for k in sorted(settings) if k.startswith(start)}
