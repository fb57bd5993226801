"""Identifiers in SQL text: the one way they are quoted, and the names a collection may take.

Values always travel as parameters; identifiers cannot, so every table, column and index name
reaches SQL through :func:`quote_identifier` (psycopg's ``sql.Identifier`` quotes the same way),
and a collection name, which becomes a table name, must first pass :func:`validate_collection`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ...errors import InvalidIdentifierError

__all__ = ["META_TABLE", "RESERVED_PREFIXES", "quote_identifier", "validate_collection"]

_COLLECTION = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
#: the table beside the collections that records their vector fields and indexes
META_TABLE = "dk_meta"
#: prefixes of the engine's own tables and ours (:data:`META_TABLE`), refused as collection names
RESERVED_PREFIXES = ("sqlite_", "dk_")


def quote_identifier(name: str) -> str:
    """``"name"`` with embedded quotes doubled: the one way identifiers enter SQL."""
    return '"' + name.replace('"', '""') + '"'


def validate_collection(name: object, reserved: Sequence[str] = RESERVED_PREFIXES) -> str:
    """Collection names become table names, so only plain identifiers (at most 63 characters,
    PostgreSQL's limit) without a ``reserved`` prefix (case-insensitive) are accepted."""
    if not isinstance(name, str) or not _COLLECTION.fullmatch(name):
        raise InvalidIdentifierError(
            f"collection name must match [A-Za-z_][A-Za-z0-9_]{{0,62}}, got {name!r}"
        )
    if name.lower().startswith(tuple(reserved)):
        raise InvalidIdentifierError(f"collection name {name!r} uses a reserved prefix")
    return name
