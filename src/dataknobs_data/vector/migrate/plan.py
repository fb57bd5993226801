"""What a migration will do to the target, decided before anything is written (pure code).

:func:`plan_fields` compares the source's vector fields with the target's: a field the target
lacks is declared with the source's configuration (dimensions, metric, model, source field,
index settings the target can take); a field it has must agree on dimensions, metric and
model, or the migration is refused (:class:`TargetSchemaConflictError`) before any write.
:func:`source_index` reads a field's ANN index from ``get_vector_index_stats`` so the same kind
is built on the target after loading, where the target manages indexes.
:class:`MigrationPlan` is what ``dry_run=True`` returns.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ...capabilities import Capabilities
from ...errors import DataknobsDataError
from ...fields import VectorField
from ...records import Record
from ..exceptions import TargetSchemaConflictError
from ..types import VectorConfig, VectorIndexConfig

__all__ = [
    "FieldPlan",
    "IndexPlan",
    "MigrationPlan",
    "estimate_bytes",
    "plan_fields",
    "source_index",
]

#: index kinds the shells can build (``create_vector_index(kind=...)``)
BUILDABLE = ("hnsw", "ivfflat")
_PARAM_NAMES = {"m": "m", "max_neighbors": "m", "ef_construction": "ef_construction"}
_PARAM_NAMES.update({"lists": "lists", "nlist": "lists"})


@dataclass(frozen=True)
class IndexPlan:
    """An ANN index to build on the target after loading: ``kind`` and the parameters the
    shells take (``m``, ``ef_construction``, ``lists``) read from the source's index."""

    kind: str
    params: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {"kind": self.kind, "params": dict(self.params)}


@dataclass(frozen=True)
class FieldPlan:
    """One source vector field on the target: declared (``declare``) or already there, and
    the index to build (``index``, ``None``: none) with a ``note`` where the target differs."""

    name: str
    config: VectorConfig
    declare: bool
    index: IndexPlan | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "field": self.name,
            "config": self.config.to_dict(),
            "action": "declare" if self.declare else "exists",
            "index": None if self.index is None else self.index.to_dict(),
            "note": self.note,
        }


def source_index(stats: Mapping[str, Any] | None) -> IndexPlan | None:
    """The ANN index a field has on the source, from its ``get_vector_index_stats``:
    PostgreSQL's ``type``, faiss's ``requested`` kind (``auto`` is chosen again by the target
    from its size, so nothing to build), chroma's always-present HNSW. ``None``: exact."""
    if not stats:
        return None
    kind = stats.get("requested") if stats.get("engine") == "faiss" else stats.get("type")
    if kind not in BUILDABLE:
        return None
    raw = dict(stats.get("params") or {})
    for name in ("m", "nlist"):
        if name in stats and name not in raw:
            raw[name] = stats[name]
    params: dict[str, int] = {}
    for name, value in raw.items():
        mapped = _PARAM_NAMES.get(name)
        if mapped is None or isinstance(value, bool) or not isinstance(value, int):
            continue
        if (kind == "hnsw") == (mapped != "lists"):
            params[mapped] = value
    return IndexPlan(str(kind), params)


def _declarable(config: VectorConfig, caps: Capabilities) -> tuple[VectorConfig, str | None]:
    """``config`` as the target can declare it: an index kind the target cannot build is
    left to the target's default (and said so)."""
    kind = config.index.kind
    if kind in ("auto", "flat") or kind in caps.index_types:
        return config, None
    note = (
        f"the source declares index kind {kind!r}, which the {caps.backend} target cannot "
        "build; the target's default indexing is used"
    )
    return replace(config, index=VectorIndexConfig()), note


def plan_fields(
    source: Mapping[str, VectorConfig],
    target: Mapping[str, VectorConfig],
    caps: Capabilities,
    indexes: Mapping[str, IndexPlan | None],
    manages_indexes: bool,
) -> list[FieldPlan]:
    """The target side of every source vector field; :class:`TargetSchemaConflictError`
    (naming the field) when the target has it with other dimensions, metric or model, or
    cannot store or score it."""
    plans: list[FieldPlan] = []
    for name in sorted(source):
        cfg = source[name]
        existing = target.get(name)
        notes: list[str] = []
        try:
            caps.check_dimensions(name, cfg.dimensions)
            caps.check_metric(cfg.metric)
        except DataknobsDataError as exc:
            raise TargetSchemaConflictError(name, f"the target cannot hold it: {exc}") from exc
        if existing is not None:
            for what, a, b in (
                ("dimensions", cfg.dimensions, existing.dimensions),
                ("metric", cfg.metric.value, existing.metric.value),
                ("model", cfg.model_label, existing.model_label),
            ):
                if a != b:
                    raise TargetSchemaConflictError(
                        name, f"the source has {what} {a!r}, the target already has {b!r}"
                    )
            declared = existing
        else:
            declared, note = _declarable(cfg, caps)
            if note:
                notes.append(note)
        index = indexes.get(name)
        if index is not None and not (manages_indexes and index.kind in caps.index_types):
            notes.append(
                f"the source has a {index.kind} index; the {caps.backend} target "
                + (
                    "keeps its own HNSW index"
                    if "hnsw" in caps.index_types and not manages_indexes
                    else "searches exactly (no ANN index built)"
                )
            )
            index = None
        plans.append(FieldPlan(name, declared, existing is None, index, "; ".join(notes) or None))
    return plans


def estimate_bytes(records: Sequence[Record]) -> int:
    """Bytes of a sample of records as copied: vectors as float32, other values as JSON,
    plus ids and field names (what a store writes, give or take its own overhead)."""
    total = 0
    for rec in records:
        total += len(rec.id.encode("utf-8"))
        for name, f in rec.fields.items():
            total += len(name)
            if isinstance(f, VectorField):
                total += 4 * f.dimensions
            else:
                total += len(json.dumps(f.value, default=str, ensure_ascii=False))
    return total


@dataclass
class MigrationPlan:
    """What :meth:`~dataknobs_data.vector.migrate.VectorMigration.migrate_between_backends`
    would do (``dry_run=True``); nothing was written.

    ``records`` match the filter (``remaining`` of them after the checkpoint of an earlier
    run of the same migration); ``estimated_bytes`` and ``estimated_seconds`` extrapolate a
    timed sample read of ``sample`` records (writing assumed to cost what reading does).
    """

    name: str
    source: str | None
    target: str | None
    filter: Any
    records: int
    remaining: int
    batch_size: int
    batches: int
    fields: list[FieldPlan]
    settings: dict[str, str]
    resumed_from: str | None
    sample: int
    estimated_bytes: int
    estimated_seconds: float
    notes: list[str] = field(default_factory=list)

    @classmethod
    def estimate(
        cls,
        sample: Sequence[Record],
        read_seconds: float,
        remaining: int,
    ) -> tuple[int, float]:
        """(bytes, seconds) for ``remaining`` records from a sample read in ``read_seconds``."""
        if not sample:
            return 0, 0.0
        per_record = estimate_bytes(sample) / len(sample)
        seconds = 2.0 * read_seconds / len(sample) * remaining
        return math.ceil(per_record * remaining), round(seconds, 3)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "dry_run": True,
            "name": self.name,
            "source": self.source,
            "target": self.target,
            "filter": self.filter,
            "records": self.records,
            "remaining": self.remaining,
            "batch_size": self.batch_size,
            "batches": self.batches,
            "fields": [f.to_dict() for f in self.fields],
            "settings": dict(self.settings),
            "resumed_from": self.resumed_from,
            "sample": self.sample,
            "estimated_bytes": self.estimated_bytes,
            "estimated_seconds": self.estimated_seconds,
            "notes": list(self.notes),
        }
