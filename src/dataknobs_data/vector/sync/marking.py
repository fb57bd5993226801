"""Reading and writing the pending / failed marks a record carries (pure: no I/O).

See :mod:`dataknobs_data.marks` for why marks live inside the record. Every function here
returns a new record and never changes the one it is given (records handed to a database
still belong to the caller).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...fields import Field
from ...marks import FAILED_FIELD, PENDING_FIELD
from ...records import Record

__all__ = ["Marks", "marks_of", "read_marks", "with_marks"]


class Marks:
    """A record's marks: ``pending`` (vector field -> text hash to embed) and ``failed``
    (vector field -> ``{"hash", "error", "attempts"}``)."""

    __slots__ = ("failed", "pending")

    def __init__(
        self, pending: dict[str, str] | None = None, failed: dict[str, dict[str, Any]] | None = None
    ) -> None:
        self.pending: dict[str, str] = pending or {}
        self.failed: dict[str, dict[str, Any]] = failed or {}

    def clear(self, field: str) -> None:
        self.pending.pop(field, None)
        self.failed.pop(field, None)

    def set_pending(self, field: str, digest: str) -> None:
        """Mark ``field`` pending, unless the same text already failed (it would fail again:
        a failed text is retried only once it changes, or on request)."""
        failed = self.failed.get(field)
        if failed is not None and failed.get("hash") == digest:
            self.pending.pop(field, None)
            return
        self.failed.pop(field, None)
        self.pending[field] = digest

    def set_failed(self, field: str, digest: str, error: str, attempts: int) -> None:
        self.pending.pop(field, None)
        self.failed[field] = {"hash": digest, "error": error[:500], "attempts": attempts}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Marks):
            return NotImplemented
        return self.pending == other.pending and self.failed == other.failed

    __hash__ = None  # type: ignore[assignment]


def _as_dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def read_marks(record: Record) -> Marks:
    """The marks ``record`` carries (a malformed mark reads as none: the tracker rewrites it)."""
    if PENDING_FIELD not in record and FAILED_FIELD not in record:
        return Marks()  # the common case, on the hot path of every check
    return marks_of(record.get(PENDING_FIELD), record.get(FAILED_FIELD))


def marks_of(pending_value: Any, failed_value: Any) -> Marks:
    """The marks held by the raw values of the two mark fields (``None``: absent)."""
    if pending_value is None and failed_value is None:
        return Marks()
    pending = {
        k: v
        for k, v in _as_dict(pending_value).items()
        if isinstance(k, str) and isinstance(v, str)
    }
    failed = {
        k: dict(v)
        for k, v in _as_dict(failed_value).items()
        if isinstance(k, str) and isinstance(v, Mapping)
    }
    return Marks(pending, failed)


def with_marks(record: Record, marks: Marks, replace: Mapping[str, Field | None] = {}) -> Record:
    """A copy of ``record`` carrying ``marks`` (mark fields dropped when empty), with the
    fields in ``replace`` set (or removed where ``None``)."""
    fields: dict[str, Field] = {}
    for name, f in record.fields.items():
        if name in (PENDING_FIELD, FAILED_FIELD):
            continue
        if name in replace:
            new = replace[name]
            if new is not None:
                fields[name] = new
            continue
        fields[name] = f.copy()
    for name, new in replace.items():
        if new is not None and name not in fields:
            fields[name] = new
    if marks.pending:
        fields[PENDING_FIELD] = Field(PENDING_FIELD, dict(marks.pending))
    if marks.failed:
        fields[FAILED_FIELD] = Field(FAILED_FIELD, dict(marks.failed))
    return Record.trusted(record.id, fields, dict(record.metadata))
