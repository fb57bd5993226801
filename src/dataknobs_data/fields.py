"""Typed field values: scalars, JSON documents, dense and sparse vectors.

Values are validated and normalised when a field is built, so every backend receives data it can
store *exactly*: integers fit in 64 bits, floats are finite, datetimes are timezone-aware UTC,
JSON values are JSON-native, and vectors are finite, one-dimensional, C-contiguous float32.
Refusing a value up front is what keeps a write from half-succeeding in some backend later.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import FieldValidationError, InvalidIdentifierError
from .ints import INT64_MAX, INT64_MIN, is_int
from .strings import check_text
from .vector.exceptions import DimensionMismatchError, InvalidVectorError
from .vector.types import VectorMetadata

__all__ = [
    "ID_FIELD",
    "Field",
    "FieldType",
    "SparseVector",
    "VectorField",
    "check_json",
    "text_hash",
    "thaw_json",
    "validate_field_name",
]

#: Pseudo-field naming a record's id in filters and sorts.
ID_FIELD = "_id"


#: The magnitude rule for every stored and query vector, on every backend and both APIs: its
#: Euclidean norm is 0 or lies in ``[MIN_VECTOR_NORM, MAX_VECTOR_NORM]``. Engines compute in
#: float32 (faiss, sqlite-vec, chroma's HNSW, the numpy kernels): a squared norm or squared
#: distance beyond float32's 3.4e38 becomes ``inf`` (a stored ``[3e38, -3e38, 0]`` dropped out
#: of Euclidean results and scored cosine 0), and a squared norm under float32's smallest
#: normal (1.2e-38) becomes 0 (a tiny vector's cosine turned 0). Within the bounds, squared
#: distances stay below 4e36 and squared norms above 1e-36, so every engine answers the same.
MAX_VECTOR_NORM = 1e18
MIN_VECTOR_NORM = 1e-18
_MIN_SQ, _MAX_SQ = MIN_VECTOR_NORM**2, MAX_VECTOR_NORM**2
_MAX_NAME = 128


class FieldType(StrEnum):
    """The storable kinds of value. ``TEXT`` is a string meant for full-text indexing."""

    STRING = "string"
    INTEGER = "integer"
    FLOAT = "float"
    BOOLEAN = "boolean"
    DATETIME = "datetime"
    JSON = "json"
    BINARY = "binary"
    TEXT = "text"
    VECTOR = "vector"
    SPARSE_VECTOR = "sparse_vector"


def validate_field_name(name: object) -> str:
    """Refuse names that cannot be addressed unambiguously in a filter path.

    A ``.`` separates path segments (``meta.author``), so it cannot appear in a top-level name;
    ``_id`` is reserved for the record id.
    """
    if not isinstance(name, str) or not name:
        raise InvalidIdentifierError(f"field name must be a non-empty string, got {name!r}")
    if len(name) > _MAX_NAME:
        raise InvalidIdentifierError(f"field name {name[:20]!r}... is longer than {_MAX_NAME}")
    check_text(None, name, "field name")
    if name == ID_FIELD:
        raise InvalidIdentifierError(f"field name {ID_FIELD!r} is reserved for the record id")
    if "." in name or any(ord(c) < 32 for c in name):
        raise InvalidIdentifierError(
            f"field name {name!r} may not contain '.' or control characters"
        )
    return name


def text_hash(text: str) -> str:
    """SHA-256 of a source text: the provenance key that tells whether a vector is stale."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _normalise_datetime(field: str | None, value: datetime) -> datetime:
    # Naive datetimes are taken as UTC: mixing naive and aware values would make ordering
    # undefined (Python raises), and every backend stores instants, not wall-clock times.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def check_json(field: str | None, value: Any, depth: int = 0) -> None:
    """Raise ``FieldValidationError`` naming ``field`` unless ``value`` is JSON-native.

    Shared by JSON fields and record/vector metadata, which promise the same round trip
    through every backend: finite numbers, 64-bit integers, string keys, bounded nesting.
    """
    if depth > 64:
        raise FieldValidationError(field, "JSON value nested deeper than 64 levels")
    if isinstance(value, str):
        check_text(field, value, "JSON string")
        return
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise FieldValidationError(field, f"integer {value} does not fit in 64 bits")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FieldValidationError(field, f"JSON numbers must be finite, got {value}")
        return
    if isinstance(value, list | tuple):
        for item in value:
            check_json(field, item, depth + 1)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise FieldValidationError(field, f"JSON object keys must be strings, got {key!r}")
            check_text(field, key, "JSON key")
            check_json(field, item, depth + 1)
        return
    raise FieldValidationError(
        field,
        f"{type(value).__name__} is not JSON-native (use str, int, float, bool, None, list, "
        "dict; store datetimes as DATETIME fields)",
    )


def thaw_json(value: Any) -> Any:
    """Copy a JSON value into plain lists and dicts (tuples become lists, as JSON would).

    Public because backends and vector stores hand out copies of stored metadata with it, so a
    caller mutating a result never changes what is stored.
    """
    if isinstance(value, Mapping):
        return {k: thaw_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thaw_json(v) for v in value]
    return value


def infer_type(value: Any) -> FieldType:
    """The field type a bare Python value gets when no type is declared."""
    if isinstance(value, bool):
        return FieldType.BOOLEAN
    if isinstance(value, int | np.integer):
        return FieldType.INTEGER
    if isinstance(value, float | np.floating):
        return FieldType.FLOAT
    if isinstance(value, str):
        return FieldType.STRING
    if isinstance(value, datetime):
        return FieldType.DATETIME
    if isinstance(value, bytes | bytearray | memoryview):
        return FieldType.BINARY
    if isinstance(value, np.ndarray):
        return FieldType.VECTOR
    if isinstance(value, SparseVector):
        return FieldType.SPARSE_VECTOR
    return FieldType.JSON


def _coerce(field: str | None, ftype: FieldType, value: Any) -> Any:
    """Validate ``value`` against ``ftype`` and return its normalised form."""
    if value is None:
        return None
    if ftype is FieldType.BOOLEAN:
        if isinstance(value, bool | np.bool_):
            return bool(value)
    elif ftype is FieldType.INTEGER:
        if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
            ivalue = int(value)
            if not INT64_MIN <= ivalue <= INT64_MAX:
                raise FieldValidationError(field, f"integer {ivalue} does not fit in 64 bits")
            return ivalue
    elif ftype is FieldType.FLOAT:
        if isinstance(value, int | float | np.integer | np.floating) and not isinstance(
            value, bool | np.bool_
        ):
            fvalue = float(value)
            if not math.isfinite(fvalue):
                raise FieldValidationError(field, f"float values must be finite, got {fvalue}")
            return fvalue
    elif ftype in (FieldType.STRING, FieldType.TEXT):
        if isinstance(value, str):
            return check_text(field, value)
    elif ftype is FieldType.DATETIME:
        if isinstance(value, datetime):
            return _normalise_datetime(field, value)
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        if isinstance(value, str):
            try:
                return _normalise_datetime(field, datetime.fromisoformat(value))
            except ValueError:
                raise FieldValidationError(field, f"not an ISO-8601 datetime: {value!r}") from None
    elif ftype is FieldType.BINARY:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
    elif ftype is FieldType.JSON:
        check_json(field, value)
        return thaw_json(value)
    elif ftype is FieldType.SPARSE_VECTOR and isinstance(value, SparseVector):
        return value
    raise FieldValidationError(
        field, f"value of type {type(value).__name__} is not valid for a {ftype.value} field"
    )


class Field:
    """A named, typed, immutable value.

    The constructor validates and normalises; values held by a field are owned by it (JSON is
    copied, vectors are copied), so mutating the object you passed in never changes a record.
    Fields cannot be changed after construction (assign ``record[name] = value`` instead), which
    lets records and stores share them without defensive copies; only JSON values, which are
    mutable dicts and lists, are copied when a field is copied.
    """

    __slots__ = ("metadata", "name", "type", "value")

    name: str
    type: FieldType
    value: Any
    metadata: Mapping[str, Any]

    def __init__(
        self,
        name: str,
        value: Any,
        type: FieldType | str | None = None,
        *,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        validate_field_name(name)
        ftype = infer_type(value) if type is None else _parse_type(name, type)
        if ftype is FieldType.VECTOR and not isinstance(self, VectorField):
            raise FieldValidationError(name, "vector values must be wrapped in VectorField")
        _set(self, "name", name)
        _set(self, "type", ftype)
        _set(self, "value", _coerce(name, ftype, value))
        _set(self, "metadata", _metadata(name, metadata))

    @classmethod
    def trusted_value(
        cls, name: str, ftype: FieldType, value: Any, metadata: Mapping[str, Any]
    ) -> Field:
        """Build without validation: for backends returning a scalar or JSON value they
        validated on the way in (``value`` and ``metadata`` are handed over, not copied).

        Reads decode every field of every record, so skipping the second validation of what
        the store already checked is most of the cost of a read."""
        new = object.__new__(cls)
        _set(new, "name", name)
        _set(new, "type", ftype)
        _set(new, "value", value)
        _set(new, "metadata", metadata)
        return new

    def __setattr__(self, attr: str, value: Any) -> None:
        raise AttributeError(
            f"fields are immutable; assign record[{self.name!r}] = value to change a record"
        )

    def __delattr__(self, attr: str) -> None:
        raise AttributeError("fields are immutable")

    def copy(self) -> Field:
        """A field sharing nothing mutable with this one (only JSON values need copying)."""
        if self.type is not FieldType.JSON:
            return self
        new = object.__new__(Field)
        _set(new, "name", self.name)
        _set(new, "type", self.type)
        _set(new, "value", thaw_json(self.value))
        _set(new, "metadata", self.metadata)
        return new

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict that :meth:`from_dict` turns back into an equal field."""
        value: Any = self.value
        if value is not None:
            if self.type is FieldType.DATETIME:
                value = value.isoformat()
            elif self.type is FieldType.BINARY:
                value = base64.b64encode(value).decode("ascii")
            elif self.type is FieldType.SPARSE_VECTOR:
                value = value.to_dict()
            elif self.type is FieldType.JSON:
                value = thaw_json(value)
        out: dict[str, Any] = {"name": self.name, "type": self.type.value, "value": value}
        if self.metadata:
            out["metadata"] = thaw_json(self.metadata)
        return out

    @staticmethod
    def from_dict(data: Mapping[str, Any]) -> Field:
        """Rebuild a field (or :class:`VectorField`) from :meth:`to_dict` output."""
        if not isinstance(data, Mapping) or "name" not in data or "type" not in data:
            raise FieldValidationError(None, f"a field dict needs 'name' and 'type': {data!r}")
        ftype = _parse_type(data["name"], data["type"])
        value = data.get("value")
        if ftype is FieldType.VECTOR:
            return VectorField.from_dict(data)
        if value is not None:
            if ftype is FieldType.BINARY:
                if not isinstance(value, str):
                    raise FieldValidationError(data["name"], "binary values travel as base64")
                value = base64.b64decode(value.encode("ascii"), validate=True)
            elif ftype is FieldType.SPARSE_VECTOR:
                value = SparseVector.from_dict(value)
        return Field(data["name"], value, ftype, metadata=data.get("metadata"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Field) or type(other) is not type(self):
            return NotImplemented
        return (
            self.name == other.name
            and self.type is other.type
            and self.value == other.value
            and self.metadata == other.metadata
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Field({self.name!r}, {self.value!r}, {self.type.value})"


def _parse_type(name: str, value: FieldType | str) -> FieldType:
    try:
        return FieldType(value)
    except ValueError:
        raise FieldValidationError(
            name, f"unknown field type {value!r}; valid types: {[t.value for t in FieldType]}"
        ) from None


_set = object.__setattr__
_NO_METADATA: Mapping[str, Any] = MappingProxyType({})


def _metadata(name: str | None, metadata: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """Field metadata as a read-only mapping over a private deep copy."""
    if not metadata:
        return _NO_METADATA
    check_json(name, metadata)
    return MappingProxyType(thaw_json(metadata))


def check_magnitude(field: str | None, vectors: npt.NDArray[np.float32], what: str = "") -> None:
    """Refuse (``InvalidVectorError`` naming ``field``) a finite float32 vector, or any row of
    a matrix, whose norm breaks the rule of :data:`MAX_VECTOR_NORM` / :data:`MIN_VECTOR_NORM`.

    Squared norms are taken in float64, where no float32 value can overflow or underflow
    (``3.4e38 ** 2`` and ``1.4e-45 ** 2`` are both ordinary float64 numbers): one copy and one
    product, about as costly as the finiteness test before it.
    """
    if vectors.ndim == 1:  # the common case: one dot product, no einsum set-up
        one = vectors.astype(np.float64)
        sq1 = float(one @ one)
        if sq1 == 0.0 or _MIN_SQ <= sq1 <= _MAX_SQ or not math.isfinite(sq1):
            return  # (NaN or infinity: the caller's finiteness test names it)
        row, norm = 0, math.sqrt(sq1)
    else:
        rows = vectors.astype(np.float64)
        sq = np.einsum("ij,ij->i", rows, rows)
        bad = np.flatnonzero((sq != 0.0) & ((sq < _MIN_SQ) | (sq > _MAX_SQ)) & np.isfinite(sq))
        if not bad.size:
            return
        row = int(bad[0])
        norm = math.sqrt(float(sq[row]))
    where = f"{what}row {row}: " if vectors.ndim == 2 else what
    raise InvalidVectorError(
        field,
        f"{where}vector norm {norm:.3g} is outside [{MIN_VECTOR_NORM:g}, "
        f"{MAX_VECTOR_NORM:g}] (and not 0): float32 distances to it overflow or "
        "underflow, so no backend can rank it reliably; scale the vector",
    )


def as_vector(
    field: str | None, value: Any, dimensions: int | None = None
) -> npt.NDArray[np.float32]:
    """Validate anything array-like as a finite 1-D float32 vector (always a fresh copy)."""
    if isinstance(value, VectorField):
        value = value.value
    if isinstance(value, str | bytes):
        raise InvalidVectorError(
            field, f"expected a sequence of numbers, got {type(value).__name__}"
        )
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InvalidVectorError(field, f"not a numeric vector: {exc}") from None
    if arr.dtype.kind not in "iuf":
        raise InvalidVectorError(
            field, f"expected numbers, got an array of dtype {arr.dtype} ({type(value).__name__})"
        )
    if arr.ndim != 1:
        raise InvalidVectorError(field, f"expected a 1-D vector, got shape {arr.shape}")
    if arr.size == 0:
        raise InvalidVectorError(field, "vector is empty")
    if arr.dtype == np.float32:
        out = np.array(arr, order="C", copy=True)
    else:
        with np.errstate(over="ignore"):  # overflow to inf is reported just below
            out = np.array(arr, dtype=np.float32, order="C", copy=True)
    if not np.isfinite(out).all():
        bad = int(np.flatnonzero(~np.isfinite(out))[0])
        raise InvalidVectorError(
            field, f"vector holds a non-finite value at index {bad} ({arr[bad]!r} as float32)"
        )
    check_magnitude(field, out)
    if dimensions is not None and out.shape[0] != dimensions:
        raise DimensionMismatchError(field, dimensions, out.shape[0])
    out.flags.writeable = False
    return out


class VectorField(Field):
    """A dense embedding with its provenance.

    ``value`` is a read-only float32 array owned by the field. ``source_field`` names the text
    field it was computed from and ``source_hash`` the SHA-256 of that text at embedding time; a
    :class:`~dataknobs_data.records.Record` fills the hash in from its own source field when it
    is missing, so later edits of the text can be detected as stale vectors.
    """

    __slots__ = ("model_name", "model_version", "source_field", "source_hash")

    value: npt.NDArray[np.float32]
    source_field: str | None
    model_name: str | None
    model_version: str | None
    source_hash: str | None

    def __init__(
        self,
        value: Any,
        *,
        name: str | None = None,
        dimensions: int | None = None,
        source_field: str | None = None,
        model_name: str | None = None,
        model_version: str | None = None,
        source_hash: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        # A VectorField may be built before it knows its name (as a value in a Record dict);
        # the record assigns the name, so validation of the name is deferred to it.
        _set(self, "name", validate_field_name(name) if name is not None else "")
        _set(self, "type", FieldType.VECTOR)
        _set(self, "value", as_vector(name, value, dimensions))
        for attr, text in (
            ("source_field", source_field),
            ("model_name", model_name),
            ("model_version", model_version),
            ("source_hash", source_hash),
        ):
            if text is not None:
                if not isinstance(text, str):
                    raise FieldValidationError(name, f"{attr} must be a string, got {text!r}")
                check_text(name, text, attr)
        _set(self, "source_field", source_field)
        _set(self, "model_name", model_name)
        _set(self, "model_version", model_version)
        _set(self, "source_hash", source_hash)
        _set(self, "metadata", _metadata(name, metadata))

    @classmethod
    def trusted(
        cls,
        name: str,
        value: npt.NDArray[np.float32],
        provenance: tuple[str | None, str | None, str | None, str | None],
        metadata: Mapping[str, Any],
    ) -> VectorField:
        """Build without validation: for backends returning data they validated on the way in.

        ``value`` must be a read-only float32 array the caller will not change.
        """
        new = object.__new__(cls)
        _set(new, "name", name)
        _set(new, "type", FieldType.VECTOR)
        _set(new, "value", value)
        _set(new, "metadata", metadata)
        _set(new, "source_field", provenance[0])
        _set(new, "model_name", provenance[1])
        _set(new, "model_version", provenance[2])
        _set(new, "source_hash", provenance[3])
        return new

    @property
    def dimensions(self) -> int:
        """The vector's length."""
        return int(self.value.shape[0])

    @property
    def provenance(self) -> VectorMetadata:
        """Where the vector came from: dimensions, model, version, source field and text hash."""
        return VectorMetadata(
            dimensions=self.dimensions,
            model_name=self.model_name,
            model_version=self.model_version,
            source_field=self.source_field,
            source_hash=self.source_hash,
        )

    @property
    def model_label(self) -> str | None:
        """``name@version`` of the model that made the vector (``None`` if unnamed)."""
        if self.model_name is None:
            return None
        return f"{self.model_name}@{self.model_version}" if self.model_version else self.model_name

    def provenance_tuple(self) -> tuple[str | None, str | None, str | None, str | None]:
        """``(source_field, model_name, model_version, source_hash)``, for comparing provenance."""
        return (self.source_field, self.model_name, self.model_version, self.source_hash)

    def copy(self) -> VectorField:
        # Immutable, with a read-only array: sharing is safe and copying would waste memory.
        return self

    def with_name(self, name: str) -> VectorField:
        """The same vector under another field name."""
        if name == self.name:
            return self
        validate_field_name(name)
        return VectorField.trusted(name, self.value, self.provenance_tuple(), self.metadata)

    def with_source_hash(self, source_hash: str) -> VectorField:
        """The same vector with its source text's hash recorded."""
        source_field, model_name, model_version, _ = self.provenance_tuple()
        return VectorField.trusted(
            self.name,
            self.value,
            (source_field, model_name, model_version, source_hash),
            self.metadata,
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": FieldType.VECTOR.value,
            "value": self.value.tolist(),
            "dimensions": self.dimensions,
        }
        for attr in ("source_field", "model_name", "model_version", "source_hash"):
            if getattr(self, attr) is not None:
                out[attr] = getattr(self, attr)
        if self.metadata:
            out["metadata"] = thaw_json(self.metadata)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VectorField:
        name = data.get("name") or None
        return cls(
            data.get("value"),
            name=name,
            dimensions=data.get("dimensions"),
            source_field=data.get("source_field"),
            model_name=data.get("model_name"),
            model_version=data.get("model_version"),
            source_hash=data.get("source_hash"),
            metadata=data.get("metadata"),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, VectorField):
            return NotImplemented
        return (
            self.name == other.name
            and self.provenance_tuple() == other.provenance_tuple()
            and self.metadata == other.metadata
            and self.value.shape == other.value.shape
            and bool(np.array_equal(self.value, other.value))
        )

    def __repr__(self) -> str:
        model = f", model={self.model_label!r}" if self.model_name else ""
        return f"VectorField({self.name!r}, dims={self.dimensions}{model})"


class SparseVector:
    """A sparse vector: sorted unique non-negative ``indices`` with finite ``values``.

    Kept as two arrays (int64 indices, float32 values) plus the declared dimensionality, which is
    the layout SPLADE/BM25-style encoders produce and sparse engines accept.
    """

    __slots__ = ("dimensions", "indices", "values")

    indices: npt.NDArray[np.int64]
    values: npt.NDArray[np.float32]
    dimensions: int

    def __init__(
        self, indices: Sequence[int] | Any, values: Sequence[float] | Any, dimensions: int
    ):
        if not is_int(dimensions) or dimensions <= 0:
            raise InvalidVectorError(
                None, f"sparse dimensions must be a positive int: {dimensions!r}"
            )
        idx = np.asarray(indices)
        if idx.size and idx.dtype.kind not in "iu":
            raise InvalidVectorError(None, "sparse indices must be integers")
        idx = idx.astype(np.int64).ravel()
        vals = as_vector(None, values) if len(values) else np.zeros(0, np.float32)
        if idx.shape != vals.shape:
            raise InvalidVectorError(
                None, f"{idx.size} indices but {vals.size} values in a sparse vector"
            )
        if idx.size and (idx.min() < 0 or idx.max() >= dimensions):
            raise InvalidVectorError(None, f"sparse indices must lie in [0, {dimensions})")
        if idx.size > 1 and not (np.diff(idx) > 0).all():
            raise InvalidVectorError(None, "sparse indices must be strictly increasing")
        idx.flags.writeable = False
        self.indices, self.values, self.dimensions = idx, vals, dimensions

    def to_dense(self) -> npt.NDArray[np.float32]:
        """The dense float32 vector of ``dimensions`` entries."""
        out = np.zeros(self.dimensions, dtype=np.float32)
        out[self.indices] = self.values
        return out

    def to_dict(self) -> dict[str, Any]:
        """``{'indices', 'values', 'dimensions'}``, JSON-ready."""
        return {
            "indices": self.indices.tolist(),
            "values": self.values.tolist(),
            "dimensions": self.dimensions,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SparseVector:
        """Rebuild from :meth:`to_dict`'s output (validated)."""
        try:
            return cls(data["indices"], data["values"], data["dimensions"])
        except (KeyError, TypeError) as exc:
            raise InvalidVectorError(None, f"malformed sparse vector dict: {exc}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SparseVector):
            return NotImplemented
        return (
            self.dimensions == other.dimensions
            and bool(np.array_equal(self.indices, other.indices))
            and bool(np.array_equal(self.values, other.values))
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SparseVector(nnz={self.indices.size}, dimensions={self.dimensions})"
