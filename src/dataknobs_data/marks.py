"""Names of the reserved fields that carry synchronisation state inside a record.

A record whose vector must be (re)made from its text carries a *pending mark*: the top-level
JSON field :data:`PENDING_FIELD`, ``{vector field: hash of the text to embed}``. Because the
mark is part of the record, it is written in the same all-or-nothing step as the record on
every backend (one transaction on SQLite and PostgreSQL), survives a crash with it, and goes
away when the record is deleted. A text the embedder kept failing on is moved to
:data:`FAILED_FIELD` (``{vector field: {"hash", "error", "attempts"}}``) so it is reported and
not retried until the text changes. :mod:`dataknobs_data.vector.sync` maintains both; the
backends only index :data:`PENDING_FIELD` (see :meth:`Backend.pending_ids`).
"""

from __future__ import annotations

__all__ = ["FAILED_FIELD", "MARK_FIELDS", "PENDING_FIELD"]

PENDING_FIELD = "_dk_pending"
FAILED_FIELD = "_dk_failed"
MARK_FIELDS = frozenset({PENDING_FIELD, FAILED_FIELD})
