"""Collection settings in the SQL backends' ``dk_meta`` table: their names and what is refused.

Both SQL backends keep a collection's settings (see
:meth:`~dataknobs_data.contract.Backend.read_setting`) as rows of the metadata table they already
have, ``dk_meta (collection, name, value)``, under the name :data:`SETTING_PREFIX` + key. The
prefix keeps them apart from the rows the backends own (``vector:<field>``, ``index:<field>``,
``layout``), so no key can overwrite a vector schema entry, and every process that opens the
collection reads the same rows. Pure: no driver is imported.
"""

from __future__ import annotations

from ...errors import ValidationError

__all__ = ["SETTING_PREFIX", "check_prefix", "check_setting", "setting_key", "setting_name"]

#: the ``dk_meta.name`` of the setting ``key`` is this prefix followed by the key
SETTING_PREFIX = "setting:"


def _check_text(what: str, text: object) -> str:
    if not isinstance(text, str):
        raise ValidationError(f"setting {what} must be a str, got {type(text).__name__}")
    if "\x00" in text:
        # PostgreSQL cannot store NUL in text or jsonb; SQLite refuses it too, so a setting
        # written to one store can always be copied to another.
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
    return str(key), value if value is None else str(value)


def check_prefix(prefix: object) -> str:
    """A key prefix for ``settings(prefix)``: a ``str`` without NUL (empty: every setting)."""
    return _check_text("prefix", prefix)


def setting_name(key: object) -> str:
    """The ``dk_meta.name`` under which ``key`` is stored (``key`` checked first)."""
    return SETTING_PREFIX + check_setting(key, None)[0]


def setting_key(name: str) -> str:
    """The setting key of a ``dk_meta.name`` that starts with :data:`SETTING_PREFIX`."""
    return name[len(SETTING_PREFIX) :]
