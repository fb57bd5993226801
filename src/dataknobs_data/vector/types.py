"""Vector vocabulary shared by every backend: metrics, per-field configuration, results.

Scores follow one convention everywhere: **higher is better**, so ``score_threshold`` means the
same thing for every metric and backend. ``distance`` is the metric's own distance (lower is
better). The exact formulas live in :mod:`dataknobs_data.vector.operations`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ..errors import QueryError
from ..ints import checked_int
from ..strings import check_text

if TYPE_CHECKING:
    from ..records import Record

__all__ = [
    "DistanceMetric",
    "InvalidMetricError",
    "VectorConfig",
    "VectorIndexConfig",
    "VectorMetadata",
    "VectorSearchResult",
    "DeferredResult",
]


class InvalidMetricError(QueryError):
    """A metric name was given that no backend knows."""


class DistanceMetric(StrEnum):
    """How two vectors are compared.

    ``L2`` is an alias of ``EUCLIDEAN`` (the same member): both mean the *non-squared*
    Euclidean distance ``sqrt(sum((a - b)**2))``. Engines that rank by squared L2 (faiss,
    Elasticsearch internals) are converted so results agree across backends.

    ============  ===========================  ==============================
    metric        distance                     score (higher is better)
    ============  ===========================  ==============================
    COSINE        ``1 - cos(a, b)``            ``cos(a, b)`` in [-1, 1]
    EUCLIDEAN     ``||a - b||_2``              ``1 / (1 + distance)``
    DOT_PRODUCT   ``-(a . b)``                 ``a . b``
    L1            ``sum(|a - b|)``             ``1 / (1 + distance)``
    ============  ===========================  ==============================

    A zero vector has cosine similarity 0 with everything (rather than NaN).
    """

    COSINE = "cosine"
    EUCLIDEAN = "euclidean"
    L2 = "euclidean"
    DOT_PRODUCT = "dot_product"
    L1 = "l1"

    @classmethod
    def parse(cls, value: DistanceMetric | str) -> DistanceMetric:
        """Accept a member or a common spelling (``"l2"``, ``"ip"``, ``"manhattan"``...)."""
        if isinstance(value, DistanceMetric):
            return value
        if isinstance(value, str):
            key = value.strip().lower().replace("-", "_")
            found = _ALIASES.get(key)
            if found is not None:
                return found
        raise InvalidMetricError(
            f"unknown distance metric {value!r}; valid metrics are "
            f"{sorted(m.value for m in cls)} (aliases: {sorted(_ALIASES)})"
        )


_ALIASES: dict[str, DistanceMetric] = {
    "cosine": DistanceMetric.COSINE,
    "cos": DistanceMetric.COSINE,
    "angular": DistanceMetric.COSINE,
    "euclidean": DistanceMetric.EUCLIDEAN,
    "l2": DistanceMetric.EUCLIDEAN,
    "dot_product": DistanceMetric.DOT_PRODUCT,
    "dot": DistanceMetric.DOT_PRODUCT,
    "ip": DistanceMetric.DOT_PRODUCT,
    "inner_product": DistanceMetric.DOT_PRODUCT,
    "l1": DistanceMetric.L1,
    "manhattan": DistanceMetric.L1,
    "taxicab": DistanceMetric.L1,
}


@dataclass(frozen=True, slots=True)
class VectorIndexConfig:
    """How a backend should index a vector field.

    ``kind`` is ``"auto"`` (the backend picks by size), ``"flat"`` (exact), ``"hnsw"``,
    ``"ivfflat"`` or ``"ivfpq"``; ``params`` carries engine knobs such as ``m``,
    ``ef_construction``, ``ef_search``, ``lists``, ``probes``. Backends that cannot build a kind
    raise :class:`~dataknobs_data.errors.UnsupportedError` instead of silently using another.
    """

    kind: str = "auto"
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """``{'kind', 'params'}``, JSON-ready."""
        return {"kind": self.kind, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VectorIndexConfig:
        """Rebuild from :meth:`to_dict`'s output (missing keys default)."""
        return cls(kind=str(data.get("kind", "auto")), params=dict(data.get("params", {})))


@dataclass(frozen=True, slots=True)
class VectorConfig:
    """The schema of one vector field: every vector stored in it shares these.

    A store learns it from the first vector written to the field, or from the caller
    (``DatabaseFactory.create(url, vectors={...})``). Later writes must agree on
    ``dimensions`` and, when both sides name one, on the embedding model.
    """

    dimensions: int
    metric: DistanceMetric = DistanceMetric.COSINE
    model_name: str | None = None
    model_version: str | None = None
    source_field: str | None = None
    index: VectorIndexConfig = field(default_factory=VectorIndexConfig)

    def __post_init__(self) -> None:
        checked_int("dimensions", self.dimensions, 1, error=QueryError)
        object.__setattr__(self, "metric", DistanceMetric.parse(self.metric))
        for attr in ("model_name", "model_version", "source_field"):
            text = getattr(self, attr)
            if isinstance(text, str):
                check_text(None, text, f"vector config {attr}")

    @property
    def model_label(self) -> str | None:
        """``name@version`` for messages and provenance comparison (``None`` if unnamed)."""
        if self.model_name is None:
            return None
        return f"{self.model_name}@{self.model_version}" if self.model_version else self.model_name

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, stored with the data so a reopened store checks it."""
        return {
            "dimensions": self.dimensions,
            "metric": self.metric.value,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "source_field": self.source_field,
            "index": self.index.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VectorConfig:
        """Rebuild (and validate) from :meth:`to_dict`'s output."""
        return cls(
            dimensions=data["dimensions"],
            metric=DistanceMetric.parse(data.get("metric", "cosine")),
            model_name=data.get("model_name"),
            model_version=data.get("model_version"),
            source_field=data.get("source_field"),
            index=VectorIndexConfig.from_dict(data.get("index") or {}),
        )


@dataclass(frozen=True, slots=True)
class VectorMetadata:
    """Provenance of one stored vector: which model made it, from which text.

    ``source_hash`` is the SHA-256 of the source text at embedding time; comparing it with the
    current text tells a synchroniser whether the vector is stale without re-embedding.
    """

    dimensions: int
    model_name: str | None = None
    model_version: str | None = None
    source_field: str | None = None
    source_hash: str | None = None


class VectorSearchResult:
    """One hit of a vector search.

    ``rank`` starts at 1. ``score`` is higher-is-better and ``distance`` lower-is-better, both
    in the metric's own units (see :class:`DistanceMetric`).

    Backends may hand over a consistent snapshot of the hit instead of a finished record; the
    :class:`~dataknobs_data.records.Record` is then built on first access to :attr:`record`.
    Callers that only need ids and scores (ranking, recall, fusion) never pay for copies.
    """

    __slots__ = ("_load", "_record", "distance", "id", "rank", "score")

    id: str
    score: float
    distance: float
    rank: int

    def __init__(
        self,
        record: Record | None,
        score: float,
        distance: float,
        rank: int,
        *,
        record_id: str | None = None,
        load: Callable[[], Record] | None = None,
    ) -> None:
        if record is None and (load is None or record_id is None):
            raise ValueError("VectorSearchResult needs a record, or record_id and load")
        self._record = record
        self._load = load
        self.id = record.id if record is not None else record_id  # type: ignore[assignment]
        self.score = score
        self.distance = distance
        self.rank = rank

    @property
    def record(self) -> Record:
        """The hit's record as it was when found (built at first access)."""
        if self._record is None:
            assert self._load is not None
            self._record, self._load = self._load(), None
        return self._record

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VectorSearchResult):
            return NotImplemented
        return (self.record, self.score, self.distance, self.rank) == (
            other.record,
            other.score,
            other.distance,
            other.rank,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"VectorSearchResult(id={self.id!r}, score={self.score:.6g}, "
            f"distance={self.distance:.6g}, rank={self.rank})"
        )


class DeferredResult(VectorSearchResult):
    """A hit whose record is ``load(at)``, built on first access.

    One loader serves a whole result list (``at`` is the hit's position in it), so a search
    builds no closure per hit; backends use it for records copied or fetched late (see
    ``dataknobs_data.backends.deferred``).
    """

    __slots__ = ("_at", "_loader")

    def __init__(
        self,
        record_id: str,
        score: float,
        distance: float,
        rank: int,
        loader: Callable[[int], Record],
        at: int,
    ) -> None:
        self._record = None
        self._load = None
        self.id = record_id
        self.score = score
        self.distance = distance
        self.rank = rank
        self._loader: Callable[[int], Record] | None = loader
        self._at = at

    @property
    def record(self) -> Record:
        if self._record is None:
            assert self._loader is not None
            self._record, self._loader = self._loader(self._at), None
        return self._record
