"""What a check or a synchronisation found and did, per vector field (plain data)."""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any

__all__ = ["CATEGORIES", "FieldReport", "SyncReport", "SyncResult"]

#: every record falls in exactly one category per vector field (see :meth:`FieldReport.add`)
CATEGORIES = ("current", "stale", "missing", "pending", "failed", "empty")


@dataclass(slots=True)
class FieldReport:
    """Counts per category for one vector field, with up to ``sample`` ids of each non-current
    category and the error of each failed sample."""

    field: str
    current: int = 0
    stale: int = 0
    missing: int = 0
    pending: int = 0
    failed: int = 0
    empty: int = 0
    ids: dict[str, list[str]] = dc_field(default_factory=dict)
    errors: dict[str, str] = dc_field(default_factory=dict)

    def add(self, category: str, rid: str, sample: int, error: str | None = None) -> None:
        setattr(self, category, getattr(self, category) + 1)
        if category != "current":
            shown = self.ids.setdefault(category, [])
            if len(shown) < sample:
                shown.append(rid)
                if error is not None:
                    self.errors[rid] = error

    @property
    def needs_work(self) -> int:
        """Records whose vector must be (re)made: stale, missing or pending."""
        return self.stale + self.missing + self.pending

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {c: getattr(self, c) for c in CATEGORIES}
        out["ids"] = {k: list(v) for k, v in self.ids.items()}
        if self.errors:
            out["errors"] = dict(self.errors)
        return out


@dataclass(slots=True)
class SyncReport:
    """The result of :meth:`VectorTextSynchronizer.check`: one :class:`FieldReport` per rule.

    ``method`` is ``"full"`` (every record's text hashed and compared: exact whoever wrote the
    data) or ``"marks"`` (only the pending and failed marks read, through their index: exact
    for data written through this library; ``current`` is then the rest)."""

    method: str
    records: int = 0
    fields: dict[str, FieldReport] = dc_field(default_factory=dict)
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        """Whether every vector is current (or has nothing to embed)."""
        return all(f.needs_work == 0 and f.failed == 0 for f in self.fields.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "records": self.records,
            "seconds": round(self.seconds, 6),
            "fields": {n: f.to_dict() for n, f in self.fields.items()},
        }


@dataclass(slots=True)
class SyncResult:
    """What :meth:`~VectorTextSynchronizer.bulk_sync` or a vectorizer run did."""

    records: int = 0
    embedded: int = 0
    cached: int = 0
    written: int = 0
    failed: int = 0
    moved: int = 0
    calls: int = 0
    seconds: float = 0.0
    errors: dict[str, str] = dc_field(default_factory=dict)

    def merge(self, other: SyncResult) -> None:
        for name in _COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for rid, err in other.errors.items():
            if len(self.errors) < 20:
                self.errors[rid] = err

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: getattr(self, name) for name in _COUNTS}
        out["seconds"] = round(self.seconds, 6)
        out["errors"] = dict(self.errors)
        return out


#: the counters of :class:`SyncResult`, summed by :meth:`SyncResult.merge`
_COUNTS = ("records", "embedded", "cached", "written", "failed", "moved", "calls")
