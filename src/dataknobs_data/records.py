"""Records: an id, ordered typed fields, and free-form metadata.

Copy semantics are explicit: a record owns its values. Building a record copies what it is given
(JSON values deeply; vectors are read-only arrays and are shared), databases store a copy of what
you write and hand back a fresh record on every read, so no caller can change stored data by
mutating an object it holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

import numpy as np

from .errors import FieldValidationError, InvalidIdentifierError
from .fields import (
    ID_FIELD,
    Field,
    FieldType,
    VectorField,
    check_json,
    text_hash,
    thaw_json,
    validate_field_name,
)
from .strings import check_text

__all__ = ["MISSING", "Record", "validate_record_id"]

_MAX_ID = 512


class _Missing:
    """Sentinel for "the field is absent", which filters treat differently from ``None``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Final = _Missing()


def validate_record_id(record_id: object) -> str:
    """Ids are non-empty strings without control characters (they travel as SQL parameters)."""
    if not isinstance(record_id, str) or not record_id:
        raise InvalidIdentifierError(f"record id must be a non-empty string, got {record_id!r}")
    if len(record_id) > _MAX_ID or any(ord(c) < 32 for c in record_id):
        raise InvalidIdentifierError(
            f"record id {record_id[:40]!r} is longer than {_MAX_ID} or holds control characters"
        )
    return check_text(None, record_id, "record id")


def _to_field(name: str, value: Any) -> Field:
    if isinstance(value, VectorField):
        if value.name and value.name != name:
            raise FieldValidationError(name, f"VectorField is named {value.name!r}")
        return value.with_name(name)
    if isinstance(value, Field):
        if value.name != name:
            raise FieldValidationError(name, f"Field is named {value.name!r}")
        return value.copy()
    if isinstance(value, np.ndarray):
        return VectorField(value, name=name)
    return Field(name, value)


class Record:
    """A stored item: ``id``, ordered :class:`~dataknobs_data.fields.Field` s, ``metadata``.

    ``record["title"]`` gives the value, ``record.fields["title"]`` the typed field. An id is
    generated (UUID4 hex) when none is given. A vector field whose ``source_field`` names a
    string field of the same record gets that text's hash recorded when it has none, so later
    edits of the text can be recognised as making the vector stale.

    >>> r = Record({"title": "Parsing dates", "year": 2021}, id="doc-1")
    >>> r["year"], r.fields["year"].type.value
    (2021, 'integer')
    """

    __slots__ = ("_fields", "id", "metadata")

    id: str
    metadata: dict[str, Any]
    _fields: dict[str, Field]

    def __init__(
        self,
        data: Mapping[str, Any] | Iterable[Field] | None = None,
        *,
        id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.id = uuid.uuid4().hex if id is None else validate_record_id(id)
        fields: dict[str, Field] = {}
        if isinstance(data, Mapping):
            for name, value in data.items():
                fields[validate_field_name(name)] = _to_field(name, value)
        elif data is not None:
            for item in data:
                if not isinstance(item, Field):
                    raise FieldValidationError(None, f"expected Field objects, got {item!r}")
                if item.name in fields:
                    raise FieldValidationError(item.name, "appears twice")
                fields[item.name] = _to_field(item.name, item)
        self._fields = fields
        if metadata:
            check_json(None, metadata)
        self.metadata = dict(thaw_json(metadata)) if metadata else {}
        self._fill_source_hashes()

    @classmethod
    def trusted(cls, record_id: str, fields: dict[str, Field], metadata: dict[str, Any]) -> Record:
        """Assemble from already-validated parts that the caller hands over (no copies)."""
        new = object.__new__(cls)
        new.id, new._fields, new.metadata = record_id, fields, metadata
        return new

    def _fill_source_hashes(self) -> None:
        for name, f in self._fields.items():
            if isinstance(f, VectorField) and f.source_field and f.source_hash is None:
                src = self._fields.get(f.source_field)
                if src is not None and isinstance(src.value, str):
                    self._fields[name] = f.with_source_hash(text_hash(src.value))

    # -- mapping-style access -------------------------------------------------------------
    def __getitem__(self, name: str) -> Any:
        return self._fields[name].value

    def __setitem__(self, name: str, value: Any) -> None:
        self._fields[validate_field_name(name)] = _to_field(name, value)
        self._fill_source_hashes()

    def __delitem__(self, name: str) -> None:
        del self._fields[name]

    def __contains__(self, name: object) -> bool:
        return name in self._fields

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def get(self, name: str, default: Any = None) -> Any:
        """The value of field ``name``, or ``default`` when the record has no such field."""
        f = self._fields.get(name)
        return default if f is None else f.value

    def keys(self) -> list[str]:
        """The field names, in insertion order."""
        return list(self._fields)

    def items(self) -> list[tuple[str, Any]]:
        """``(name, value)`` pairs, in insertion order."""
        return [(name, f.value) for name, f in self._fields.items()]

    @property
    def fields(self) -> Mapping[str, Field]:
        """Read-only view of the typed fields, in order."""
        return MappingProxyType(self._fields)

    def get_field(self, name: str) -> Field | None:
        """The typed :class:`Field` named ``name`` (type, value, provenance), or ``None``."""
        return self._fields.get(name)

    def set_field(self, field: Field) -> None:
        """Add or replace a typed field (copied, so the record owns it)."""
        self._fields[field.name] = _to_field(field.name, field)
        self._fill_source_hashes()

    def vector_fields(self) -> dict[str, VectorField]:
        """The record's vector fields by name."""
        return {n: f for n, f in self._fields.items() if isinstance(f, VectorField)}

    def get_path(self, path: str | Sequence[str]) -> Any:
        """Value at a dotted path (``"meta.author"``), or :data:`MISSING`.

        Paths descend only through JSON objects; a list or scalar on the way means the path is
        missing. ``_id`` is the record id.
        """
        parts = path.split(".") if isinstance(path, str) else path
        if parts[0] == ID_FIELD and len(parts) == 1:
            return self.id
        f = self._fields.get(parts[0])
        if f is None:
            return MISSING
        value = f.value
        for part in parts[1:]:
            if f.type is not FieldType.JSON or not isinstance(value, dict) or part not in value:
                return MISSING
            value = value[part]
        return value

    # -- copies, projection, serialisation -------------------------------------------------
    def copy(self) -> Record:
        """A deep copy: changing it never changes this record."""
        return Record.trusted(
            self.id, {n: f.copy() for n, f in self._fields.items()}, thaw_json(self.metadata)
        )

    def project(self, names: Iterable[str]) -> Record:
        """A copy holding only the named top-level fields (in this record's order)."""
        wanted = set(names)
        return Record.trusted(
            self.id,
            {n: f.copy() for n, f in self._fields.items() if n in wanted},
            thaw_json(self.metadata),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; :meth:`from_dict` rebuilds an equal record."""
        out: dict[str, Any] = {
            "id": self.id,
            "fields": [f.to_dict() for f in self._fields.values()],
        }
        if self.metadata:
            out["metadata"] = thaw_json(self.metadata)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Record:
        """Rebuild a record from :meth:`to_dict`'s output (types and provenance included)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("fields", []), list):
            raise FieldValidationError(None, "a record dict needs 'id' and a 'fields' list")
        fields = [Field.from_dict(f) for f in data.get("fields", [])]
        return cls(fields, id=data.get("id"), metadata=data.get("metadata"))

    def to_plain(self) -> dict[str, Any]:
        """``{name: value}`` (values are the record's own; copy before mutating JSON)."""
        return {n: f.value for n, f in self._fields.items()}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Record):
            return NotImplemented
        return (
            self.id == other.id
            and list(self._fields) == list(other._fields)
            and all(f == other._fields[n] for n, f in self._fields.items())
            and self.metadata == other.metadata
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{n}={f!r}" if isinstance(f, VectorField) else f"{n}={f.value!r}"
            for n, f in list(self._fields.items())[:6]
        )
        more = ", ..." if len(self._fields) > 6 else ""
        return f"Record(id={self.id!r}, {shown}{more})"
