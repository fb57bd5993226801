"""Vector types, errors and kernels shared by every backend.

Importing this package is cheap (numpy only); engine-specific stores live in
``dataknobs_data.vector.stores`` and import their engines lazily.
"""

from .exceptions import (
    DimensionMismatchError,
    InvalidVectorError,
    MixedEmbeddingModelsError,
    UnsupportedMetricError,
    UnsupportedOperatorError,
)
from .types import (
    DistanceMetric,
    InvalidMetricError,
    VectorConfig,
    VectorIndexConfig,
    VectorMetadata,
    VectorSearchResult,
)

__all__ = [
    "DimensionMismatchError",
    "DistanceMetric",
    "InvalidMetricError",
    "InvalidVectorError",
    "MixedEmbeddingModelsError",
    "UnsupportedMetricError",
    "UnsupportedOperatorError",
    "VectorConfig",
    "VectorIndexConfig",
    "VectorMetadata",
    "VectorSearchResult",
]
