"""What a migration and a rollback report (plain data, JSON-ready with ``to_dict``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["MigrationResult", "RollbackResult"]


@dataclass
class MigrationResult:
    """What one run of a migration did.

    Counts are this run's: ``read`` source records, ``written`` created in the target,
    ``skipped_existing`` already there (copied by an earlier run, or the target's own),
    ``batches`` read; ``caught_up`` records the final pass re-copied, created or removed
    (``caught_up_detail`` says which). ``resumed_from`` is the checkpoint (last source id
    copied) an earlier run left, ``None`` for a fresh start. ``snapshot`` states what the
    target now holds of the source. ``seconds`` is the whole run, ``copy_seconds`` the
    batch copy alone (``records_per_second`` is over that).
    """

    name: str
    source: str | None
    target: str | None
    read: int = 0
    written: int = 0
    skipped_existing: int = 0
    batches: int = 0
    caught_up: int = 0
    caught_up_detail: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    copy_seconds: float = 0.0
    resumed_from: str | None = None
    snapshot: str = ""
    declared: list[str] = field(default_factory=list)
    settings_copied: list[str] = field(default_factory=list)
    indexes: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def records_per_second(self) -> float:
        """Records read per second of the batch copy (0 for an instant one)."""
        return self.read / self.copy_seconds if self.copy_seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "name": self.name,
            "source": self.source,
            "target": self.target,
            "read": self.read,
            "written": self.written,
            "skipped_existing": self.skipped_existing,
            "batches": self.batches,
            "caught_up": self.caught_up,
            "caught_up_detail": dict(self.caught_up_detail),
            "seconds": round(self.seconds, 3),
            "copy_seconds": round(self.copy_seconds, 3),
            "records_per_second": round(self.records_per_second, 1),
            "resumed_from": self.resumed_from,
            "snapshot": self.snapshot,
            "declared": list(self.declared),
            "settings_copied": list(self.settings_copied),
            "indexes": {k: dict(v) for k, v in self.indexes.items()},
            "notes": list(self.notes),
        }


@dataclass
class RollbackResult:
    """What a rollback undid in the target: ``removed`` records (of the ``listed`` ids the
    ledger named; the rest were already gone), ``settings_restored`` (keys put back to their
    value before the migration, or deleted), ``indexes_dropped``; vector fields the migration
    declared stay declared (``notes``)."""

    name: str
    target: str | None
    listed: int = 0
    removed: int = 0
    settings_restored: list[str] = field(default_factory=list)
    indexes_dropped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "name": self.name,
            "target": self.target,
            "listed": self.listed,
            "removed": self.removed,
            "settings_restored": list(self.settings_restored),
            "indexes_dropped": list(self.indexes_dropped),
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
        }
