"""Records to chroma items and back (pure functions).

A record is one item of the records collection: its metadata holds the filter keys of
:mod:`.encode` plus ``"j"``, the full record as text: a first line mapping each vector field to
its float32 bytes in base64 (exact), then the SQLite backend's ``data`` JSON (typed fields,
provenance, metadata; shared code, see :mod:`..rowcodec`). The text lives in a metadata
value rather than a chroma document because chroma indexes documents for full-text search,
which measured 40% slower ingest and is of no use here.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ...engines.chroma.encode import encode_metadata
from ...fields import Field, FieldType, VectorField
from ...records import Record
from ..rowcodec import F32, decode_record, decode_vector, encode_record

__all__ = ["BODY", "Item", "decode_item", "encode_item"]

#: metadata key of the record text
BODY = "j"
_OPAQUE = (FieldType.VECTOR, FieldType.SPARSE_VECTOR, FieldType.BINARY)
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(frozen=True, slots=True)
class Item:
    """One record ready for chroma: filter metadata (without the body), body, vectors."""

    id: str
    filters: dict[str, Any]
    body: str
    vectors: dict[str, F32]

    def metadata(self) -> dict[str, Any]:
        return {**self.filters, BODY: self.body}


def _filter_value(f: Field) -> Any:
    if f.type in _OPAQUE and f.value is not None:
        return b""  # exists, compares with nothing
    return f.value


def _values(record: Record) -> Iterable[tuple[str, Any]]:
    return ((name, _filter_value(f)) for name, f in record.fields.items())


def encode_item(record: Record) -> Item:
    """Validated already except for chroma's own limit (integers beyond 2**53 raise here)."""
    parts = encode_record(record)
    filters = encode_metadata(record.id, _values(record))
    vectors = {name: f.value for name, f in record.fields.items() if isinstance(f, VectorField)}
    head = (
        _dumps({n: base64.b64encode(b).decode("ascii") for n, b in parts.vectors.items()})
        if parts.vectors
        else ""
    )
    return Item(record.id, filters, f"{head}\n{parts.data}", vectors)


def decode_item(
    record_id: str, metadata: Mapping[str, Any], fields: Iterable[str] | None = None
) -> Record:
    """The record stored as ``metadata`` (``fields`` projects)."""
    head, _, data = metadata[BODY].partition("\n")
    vectors: dict[str, F32] = {}
    if head:
        vectors = {n: decode_vector(base64.b64decode(s)) for n, s in json.loads(head).items()}
    return decode_record(record_id, data, vectors, fields)
