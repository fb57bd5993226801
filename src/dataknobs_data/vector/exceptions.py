"""Typed errors for vector data.

They subclass the package-wide errors so ``except ValidationError`` still catches a bad
vector, while ``except DimensionMismatchError`` lets a caller handle exactly that case.
"""

from __future__ import annotations

from ..errors import (
    DataknobsDataError,
    FieldValidationError,
    SchemaError,
    UnsupportedMetricError,
    UnsupportedOperatorError,
)

__all__ = [
    "DimensionMismatchError",
    "EmbeddingFailedError",
    "VectorizingRuleError",
    "InvalidVectorError",
    "MixedEmbeddingModelsError",
    "UnsupportedMetricError",
    "UnsupportedOperatorError",
]


class InvalidVectorError(FieldValidationError):
    """A vector is empty, not one-dimensional, not numeric, or holds NaN or infinity."""


class DimensionMismatchError(FieldValidationError):
    """A vector's length differs from the dimensions declared for its field."""

    def __init__(self, field: str | None, expected: int, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(field, f"expected {expected} dimensions, got {actual}")


class MixedEmbeddingModelsError(SchemaError):
    """Vectors from different embedding models would be mixed in one field or search.

    Scores between vectors of two models are meaningless, so instead of silently ranking them
    together the store refuses; re-embed or migrate to a new field instead.
    """

    def __init__(self, field: str, stored: str, given: str) -> None:
        self.field = field
        self.stored = stored
        self.given = given
        super().__init__(
            f"field {field!r} holds vectors from model {stored}, refusing vectors/queries "
            f"from model {given}"
        )


class VectorizingRuleError(FieldValidationError):
    """A vectorizing rule is malformed, or does not fit the vector field it is for (the message
    names the vector field and the problem)."""


class EmbeddingFailedError(DataknobsDataError):
    """The embedder failed on a text after its retries (raised by calls that embed one record
    on demand; batch synchronisation records the failure on the record instead)."""

    def __init__(self, field: str, record_id: str, error: str) -> None:
        self.field = field
        self.record_id = record_id
        self.error = error
        super().__init__(f"field {field!r}: embedding record {record_id!r} failed: {error}")
