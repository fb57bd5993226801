"""Collection settings in the SQL backends' ``dk_meta`` table: their names and what is refused.

Both SQL backends keep a collection's settings (see
:meth:`~dataknobs_data.contract.Backend.read_setting`) as rows of the metadata table they already
have, ``dk_meta (collection, name, value)``, under the name :data:`SETTING_PREFIX` + key. The
prefix keeps them apart from the rows the backends own (``vector:<field>``, ``index:<field>``,
``layout``), so no key can overwrite a vector schema entry, and every process that opens the
collection reads the same rows. Pure: no driver is imported.
"""

from __future__ import annotations

from ..settings import check_prefix, check_setting

__all__ = ["SETTING_PREFIX", "check_prefix", "check_setting", "setting_key", "setting_name"]

#: the ``dk_meta.name`` of the setting ``key`` is this prefix followed by the key
SETTING_PREFIX = "setting:"


def setting_name(key: object) -> str:
    """The ``dk_meta.name`` under which ``key`` is stored (``key`` checked first)."""
    return SETTING_PREFIX + check_setting(key, None)[0]


def setting_key(name: str) -> str:
    """The setting key of a ``dk_meta.name`` that starts with :data:`SETTING_PREFIX`."""
    return name[len(SETTING_PREFIX) :]
