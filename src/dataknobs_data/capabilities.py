"""What a backend can do exactly, declared up front and checked before any query runs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from .errors import UnsupportedError, UnsupportedMetricError, UnsupportedOperatorError
from .query import And, Condition, Filter, Not, Operator, Or
from .vector.types import DistanceMetric

__all__ = ["CORE_FEATURES", "Capabilities", "Feature", "walk_conditions"]


class Feature(StrEnum):
    """Optional abilities a backend may declare."""

    VECTOR_SEARCH = "vector_search"
    FILTERED_VECTOR_SEARCH = "filtered_vector_search"
    EXACT_VECTOR_SEARCH = "exact_vector_search"
    BATCH_VECTOR_SEARCH = "batch_vector_search"
    HYBRID_SEARCH = "hybrid_search"
    FULL_TEXT = "full_text"
    TRANSACTIONS = "transactions"
    NESTED_FIELDS = "nested_fields"
    STREAMING = "streaming"
    PERSISTENT = "persistent"
    NATIVE_ASYNC = "native_async"


#: What every backend with exact, filter-first vector search and atomic batches declares.
CORE_FEATURES: frozenset[Feature] = frozenset(
    {
        Feature.VECTOR_SEARCH,
        Feature.FILTERED_VECTOR_SEARCH,
        Feature.EXACT_VECTOR_SEARCH,
        Feature.BATCH_VECTOR_SEARCH,
        Feature.TRANSACTIONS,
        Feature.NESTED_FIELDS,
        Feature.STREAMING,
    }
)


def walk_conditions(node: Filter | None) -> Iterator[Condition]:
    """Every leaf condition of a filter tree."""
    if node is None:
        return
    if isinstance(node, Condition):
        yield node
    elif isinstance(node, And | Or):
        for child in node.children:
            yield from walk_conditions(child)
    elif isinstance(node, Not):
        yield from walk_conditions(node.child)


@dataclass(frozen=True, slots=True)
class Capabilities:
    """A backend's declaration of what it runs *exactly*.

    Anything outside it is refused with a typed error before the engine is touched, which is the
    guarantee that a backend never silently returns something other than what was asked.
    """

    backend: str
    operators: frozenset[Operator] = frozenset(Operator)
    metrics: frozenset[DistanceMetric] = frozenset(DistanceMetric)
    features: frozenset[Feature] = frozenset()
    index_types: frozenset[str] = frozenset({"flat"})
    max_dimensions: int | None = None
    notes: dict[str, str] = field(default_factory=dict)

    def check_dimensions(self, field: str, dimensions: int) -> None:
        """Refuse a vector field wider than the engine stores (before anything is written)."""
        if self.max_dimensions is not None and dimensions > self.max_dimensions:
            raise UnsupportedError(
                f"field {field!r}: {dimensions} dimensions; the {self.backend} backend stores "
                f"vectors of at most {self.max_dimensions}"
            )

    def supports(self, feature: Feature | str) -> bool:
        """Whether ``feature`` is declared (a :class:`Feature` or its string value)."""
        return Feature(feature) in self.features

    def require(self, feature: Feature) -> None:
        """Raise :class:`UnsupportedError` unless ``feature`` is declared (checked before the
        engine is touched)."""
        if feature not in self.features:
            raise UnsupportedError(f"the {self.backend} backend does not support {feature.value}")

    def check_filter(self, node: Filter | None) -> None:
        """Raise :class:`UnsupportedOperatorError` for the first condition of ``node`` whose
        operator this backend cannot evaluate exactly."""
        for cond in walk_conditions(node):
            if cond.op not in self.operators:
                raise UnsupportedOperatorError(
                    f"the {self.backend} backend cannot evaluate {cond.op.value!r} exactly "
                    f"(filter on {cond.field!r}); supported: "
                    f"{sorted(o.value for o in self.operators)}"
                )

    def check_metric(self, metric: DistanceMetric) -> None:
        """Raise :class:`UnsupportedMetricError` unless this backend scores ``metric`` exactly."""
        if metric not in self.metrics:
            raise UnsupportedMetricError(
                f"the {self.backend} backend cannot score with {metric.value!r}; supported: "
                f"{sorted(m.value for m in self.metrics)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (sorted lists), as ``dataknobs-data info`` prints it."""
        return {
            "backend": self.backend,
            "operators": sorted(o.value for o in self.operators),
            "metrics": sorted(m.value for m in self.metrics),
            "features": sorted(f.value for f in self.features),
            "index_types": sorted(self.index_types),
            "max_dimensions": self.max_dimensions,
            "notes": dict(self.notes),
        }
