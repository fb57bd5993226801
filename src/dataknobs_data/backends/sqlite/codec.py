"""Records to SQLite row parts and back (pure functions, no I/O).

A record is stored as three JSON texts plus one float32 blob per vector field:

* ``doc``: top-level field -> JSON value, used only by filters and sorts. Datetimes are
  fixed-width UTC ISO strings so text order is time order; vectors, sparse vectors and binary
  values are ``{}`` so they exist but match no comparison (as the query semantics say).
* ``types``: top-level field -> :class:`FieldType` value, which tells a datetime from a string.
* ``data``: the full-fidelity field dicts (``Field.to_dict``) without vector values, plus the
  record metadata; vectors live in their ``vec0`` tables and are joined back on read.

Besides, the non-null top-level ``TEXT`` fields are listed with their position in the record
(``texts``) for the full-text index (see :mod:`.fts`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from ...fields import Field, FieldType, VectorField
from ...records import Record
from .compiler import iso_datetime

__all__ = ["RowParts", "decode_record", "decode_vector", "encode_record"]

F32 = npt.NDArray[np.float32]
_OPAQUE = (FieldType.VECTOR, FieldType.SPARSE_VECTOR, FieldType.BINARY)
_NO_METADATA: Mapping[str, Any] = MappingProxyType({})


# One encoder for every call: json.dumps with options builds a new encoder each time.
_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


@lru_cache(maxsize=1024)
def _types_text(pairs: tuple[tuple[str, str], ...]) -> str:
    """Records of one batch mostly share a field layout, so its JSON is built once."""
    return _dumps(dict(pairs))


@dataclass(frozen=True, slots=True)
class RowParts:
    """One record ready for ``INSERT``: JSON texts and vector blobs by field name."""

    id: str
    doc: str
    types: str
    data: str
    vectors: dict[str, bytes]
    texts: tuple[tuple[int, str, str], ...] = ()  # (position, field name, text) of TEXT fields


_PLAIN = frozenset(
    {FieldType.STRING, FieldType.TEXT, FieldType.INTEGER, FieldType.FLOAT, FieldType.BOOLEAN}
)


def _doc_value(f: Field) -> Any:
    if f.value is None:
        return None
    if f.type in _OPAQUE:
        return {}
    if f.type is FieldType.DATETIME:
        return iso_datetime(f.value)
    return f.value


def _vector_entry(f: VectorField) -> dict[str, Any]:
    out: dict[str, Any] = {"name": f.name, "type": FieldType.VECTOR.value}
    for key, value in zip(
        ("source_field", "model_name", "model_version", "source_hash"),
        f.provenance_tuple(),
        strict=True,
    ):
        if value is not None:
            out[key] = value
    if f.metadata:
        out["metadata"] = dict(f.metadata)
    return out


def encode_record(record: Record) -> RowParts:
    """The row parts of ``record`` (validated already: every value is storable exactly).

    One pass over the fields; plain scalars skip ``Field.to_dict`` because ingest speed is
    dominated by this function and the JSON encoder.
    """
    doc: dict[str, Any] = {}
    pairs: list[tuple[str, str]] = []
    entries: list[dict[str, Any]] = []
    vectors: dict[str, bytes] = {}
    texts: list[tuple[int, str, str]] = []
    for position, (name, f) in enumerate(record.fields.items()):
        ftype = f.type
        if ftype is FieldType.TEXT and f.value is not None:
            texts.append((position, name, f.value))
        pairs.append((name, ftype.value))
        if isinstance(f, VectorField):
            doc[name] = {}
            vectors[name] = f.value.tobytes()
            entries.append(_vector_entry(f))
        elif ftype in _PLAIN and not f.metadata:
            doc[name] = f.value
            entries.append({"name": name, "type": ftype.value, "value": f.value})
        else:
            doc[name] = _doc_value(f)
            entries.append(f.to_dict())
    data: dict[str, Any] = {"fields": entries}
    if record.metadata:
        data["metadata"] = record.metadata
    return RowParts(
        record.id, _dumps(doc), _types_text(tuple(pairs)), _dumps(data), vectors, tuple(texts)
    )


def decode_vector(blob: bytes) -> F32:
    """A read-only float32 array owning a copy of ``blob``."""
    arr = np.frombuffer(blob, dtype=np.float32).copy()
    arr.flags.writeable = False
    return arr


def decode_record(
    record_id: str,
    data: str,
    vectors: Mapping[str, F32],
    fields: Iterable[str] | None = None,
) -> Record:
    """Rebuild a record from its ``data`` text and its vectors; ``fields`` projects."""
    parsed = json.loads(data)
    wanted = None if fields is None else set(fields)
    out: dict[str, Field] = {}
    for entry in parsed["fields"]:
        name = entry["name"]
        if wanted is not None and name not in wanted:
            continue
        if entry["type"] == FieldType.VECTOR.value:
            meta = entry.get("metadata")
            out[name] = VectorField.trusted(
                name,
                vectors[name],
                (
                    entry.get("source_field"),
                    entry.get("model_name"),
                    entry.get("model_version"),
                    entry.get("source_hash"),
                ),
                MappingProxyType(meta) if meta else _NO_METADATA,
            )
        else:
            out[name] = Field.from_dict(entry)
    return Record.trusted(record_id, out, parsed.get("metadata", {}))
