"""dataknobs-data: typed records with first-class vector fields, one query language, many backends.

Importing the package loads numpy and nothing heavier; engines are imported when a database of
their kind is created.
"""

from .capabilities import Capabilities, Feature
from .contract import Backend
from .database import AsyncDatabase, SyncDatabase
from .errors import (
    AuthenticationError,
    BackendConnectionError,
    BackendError,
    BackendUnavailableError,
    CertificateError,
    DatabaseClosedError,
    DataknobsDataError,
    DuplicateRecordError,
    FieldValidationError,
    FilterTooLargeError,
    InvalidIdentifierError,
    InvalidTextError,
    PermissionDeniedError,
    QueryError,
    SchemaError,
    StoreBusyError,
    StoreLockedError,
    UnknownFieldError,
    UnknownOperatorError,
    UnsupportedError,
    UnsupportedMetricError,
    UnsupportedOperatorError,
    ValidationError,
)
from .factory import BackendInfo, DatabaseFactory
from .fields import Field, FieldType, SparseVector, VectorField
from .query import (
    And,
    ComplexQuery,
    Condition,
    F,
    Not,
    Operator,
    Or,
    Query,
    SortSpec,
    VectorQuery,
    all_of,
    any_of,
    not_,
)
from .records import MISSING, Record
from .text import TextSearchResult
from .vector.exceptions import (
    DimensionMismatchError,
    InvalidVectorError,
    MixedEmbeddingModelsError,
)
from .vector.types import DistanceMetric, VectorConfig, VectorSearchResult

__version__ = "0.1.0"

__all__ = [
    "MISSING",
    "And",
    "AsyncDatabase",
    "AuthenticationError",
    "Backend",
    "BackendConnectionError",
    "BackendError",
    "BackendInfo",
    "BackendUnavailableError",
    "Capabilities",
    "CertificateError",
    "ComplexQuery",
    "Condition",
    "DatabaseClosedError",
    "DatabaseFactory",
    "DataknobsDataError",
    "DimensionMismatchError",
    "DistanceMetric",
    "DuplicateRecordError",
    "F",
    "Feature",
    "Field",
    "FieldType",
    "FieldValidationError",
    "FilterTooLargeError",
    "InvalidIdentifierError",
    "InvalidTextError",
    "InvalidVectorError",
    "MixedEmbeddingModelsError",
    "Not",
    "Operator",
    "Or",
    "PermissionDeniedError",
    "Query",
    "QueryError",
    "Record",
    "SchemaError",
    "SortSpec",
    "SparseVector",
    "StoreBusyError",
    "StoreLockedError",
    "SyncDatabase",
    "TextSearchResult",
    "UnknownFieldError",
    "UnknownOperatorError",
    "UnsupportedError",
    "UnsupportedMetricError",
    "UnsupportedOperatorError",
    "ValidationError",
    "VectorConfig",
    "VectorField",
    "VectorQuery",
    "VectorSearchResult",
    "__version__",
    "all_of",
    "any_of",
    "not_",
]
