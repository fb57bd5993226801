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
    ValidationError,
)

__all__ = [
    "DimensionMismatchError",
    "EmbeddingFailedError",
    "VectorizingRuleError",
    "InvalidVectorError",
    "MigrationError",
    "MixedEmbeddingModelsError",
    "NoSuchMigrationError",
    "SameStoreError",
    "TargetSchemaConflictError",
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


class MigrationError(DataknobsDataError):
    """A migration between two stores was refused or cannot continue as asked (e.g. it is
    resumed with another filter than it was started with); the message names the problem."""


class NoSuchMigrationError(MigrationError):
    """The target holds no bookkeeping of the named migration (nothing to roll back)."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        shown = ", ".join(repr(k) for k in known) or "none"
        super().__init__(f"the target holds no migration named {name!r} (migrations: {shown})")


class SameStoreError(MigrationError, ValidationError):
    """The source and the target of a migration are one store (the same object, backend or
    location): copying it onto itself would do nothing but could roll back its own data."""


class TargetSchemaConflictError(MigrationError, SchemaError):
    """The target already declares a vector field differently from the source (dimensions,
    metric or model), or cannot hold it; refused before anything is written."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"vector field {field!r}: {problem}")
