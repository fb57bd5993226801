"""Records to SQL row parts and back (pure functions, no I/O), shared by SQLite, PostgreSQL
and the chroma backend.

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
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from ..contract import StoredProvenance, SyncRow
from ..fields import Field, FieldType, VectorField
from ..records import Record

__all__ = [
    "RowParts",
    "decode_record",
    "decode_vector",
    "encode_record",
    "entry_head",
    "entry_in",
    "parse_entry",
    "iso_datetime",
    "sync_rows",
    "vector_entry",
]

F32 = npt.NDArray[np.float32]


def iso_datetime(value: datetime) -> str:
    """Fixed-width UTC ISO-8601 (``YYYY-MM-DDTHH:MM:SS.ffffff+00:00``): text order = time order."""
    d = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return (
        f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:"
        f"{d.second:02d}.{d.microsecond:06d}+00:00"
    )


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


_json_str = json.encoder.encode_basestring  # C-accelerated, no ASCII escaping (as _dumps)


@lru_cache(maxsize=4096)
def _key(name: str) -> str:
    """``"name":`` for a field name (batches repeat the same few names)."""
    return _json_str(name) + ":"


@lru_cache(maxsize=4096)
def _entry_head(name: str, ftype: FieldType) -> str:
    return '{"name":' + _json_str(name) + ',"type":"' + ftype.value + '","value":'


@lru_cache(maxsize=1024)
def _vector_entry_text(name: str, provenance: tuple[str | None, ...], metadata: str | None) -> str:
    """The ``data`` entry of a vector field (cached: a batch shares model and source field;
    only a per-record ``source_hash`` makes entries differ)."""
    out: dict[str, Any] = {"name": name, "type": FieldType.VECTOR.value}
    for key, value in zip(_PROVENANCE_KEYS, provenance, strict=True):
        if value is not None:
            out[key] = value
    text = _dumps(out)
    return text if metadata is None else text[:-1] + ',"metadata":' + metadata + "}"


_PROVENANCE_KEYS = ("source_field", "model_name", "model_version", "source_hash")


def vector_entry(f: VectorField) -> str:
    """The ``data`` entry of a vector field (its provenance and metadata; no values), as
    :func:`encode_record` writes it: what an in-place vector replacement puts in the row."""
    meta = _dumps(dict(f.metadata)) if f.metadata else None
    return _vector_entry_text(f.name, f.provenance_tuple(), meta)


def entry_head(field: str) -> str:
    """The text every vector entry of ``field`` starts with, as the row codec writes it."""
    return '{"name":' + _json_str(field) + ',"type":"vector"'


_decoder = json.JSONDecoder()
_STR = r'"([^"\\]*)"'
#: a provenance-only entry after its head, keys in the codec's order, strings without escapes
_PLAIN_ENTRY = re.compile(
    f'(?:,"source_field":{_STR})?(?:,"model_name":{_STR})?'
    f'(?:,"model_version":{_STR})?(?:,"source_hash":{_STR})?\\}}'
)

#: ``(model name, model version, source hash)`` of a stored vector
Provenance = tuple[str | None, str | None, str | None]


def parse_entry(text: str, head: str) -> Provenance | None:
    """The provenance in the entry at the start of ``text`` (from :func:`_entry_sql`), or
    ``None`` when the text cannot say which entry is the field's own (head not found, or
    found again later: a JSON value elsewhere in the record could hold the same
    characters); the caller then decodes the whole ``data`` (:func:`entry_in`). A
    provenance-only entry without escapes (what the codec writes for a made vector) is read
    by a pattern, several times faster than a JSON decode."""
    if not text or text.find(head, 1) != -1:
        return None
    plain = _PLAIN_ENTRY.match(text, len(head))
    if plain is not None:
        _, name, version, digest = plain.groups()
        return name, version, digest
    entry, _ = _decoder.raw_decode(text)
    return _provenance(entry)


def _provenance(entry: Any) -> Provenance:
    return (entry.get("model_name"), entry.get("model_version"), entry.get("source_hash"))


def entry_in(data: str, field: str) -> Provenance | None:
    """The field's vector provenance found by decoding the whole ``data`` (slow and sure)."""
    for entry in json.loads(data)["fields"]:
        if entry.get("name") == field and entry.get("type") == "vector":
            return _provenance(entry)
    return None


def sync_rows(
    rows: Sequence[Sequence[Any]],
    n_sources: int,
    vectors: Sequence[str],
    dims: Sequence[int],
    data_of: Callable[[Sequence[str]], Mapping[str, str]],
) -> list[SyncRow]:
    """:class:`SyncRow` objects from SQL rows laid out as ``(id, *source values, *entry
    texts, pending, failed)``, where an entry text is ``data`` from the head of the field's
    vector entry on (``''``: head not found; NULL: the record has no vector there). Shared by
    both SQL backends; ``data_of`` fetches the whole ``data`` of the rare records whose entry
    the text cannot place (:func:`parse_entry`)."""
    at = 1 + n_sources
    heads = [entry_head(v) for v in vectors]
    found: list[list[Provenance | None]] = []
    unsure: dict[str, list[tuple[int, int]]] = {}
    for j, row in enumerate(rows):
        provs: list[Provenance | None] = []
        for k, text in enumerate(row[at : at + len(vectors)]):
            prov = None if text is None else parse_entry(text, heads[k])
            if text is not None and prov is None:
                unsure.setdefault(row[0], []).append((j, k))
            provs.append(prov)
        found.append(provs)
    if unsure:
        for rid, data in data_of(list(unsure)).items():
            for j, k in unsure[rid]:
                found[j][k] = entry_in(data, vectors[k])
    return [
        SyncRow(
            row[0],
            tuple(row[1:at]),
            tuple(
                None if p is None else StoredProvenance(*p, d)
                for p, d in zip(provs, dims, strict=True)
            ),
            _json_value(row[-2]),
            _json_value(row[-1]),
        )
        for row, provs in zip(rows, found, strict=True)
    ]


def _json_value(value: Any) -> Any:
    """A mark as the driver returns it: JSON text (SQLite) or already decoded (psycopg)."""
    return json.loads(value) if isinstance(value, str) else value


def _scalar_json(value: Any) -> str:
    """JSON of a plain scalar, as ``_dumps`` writes it, without building an encoder call.

    ``int.__repr__``/``float.__repr__`` are exactly what the json module emits; non-finite
    floats (refused earlier by validation) go through ``_dumps`` so they still raise.
    """
    kind = type(value)
    if kind is str:
        return _json_str(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float and value - value == 0.0:
        return float.__repr__(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    return _dumps(value)


def encode_record(record: Record) -> RowParts:
    """The row parts of ``record`` (validated already: every value is storable exactly).

    Ingest speed is dominated by this function, so the JSON texts are assembled from cached
    fragments (field-name keys, entry heads, vector entries) and per-value scalar encodings
    instead of building two dicts per record for the encoder; only fields that are not plain
    scalars (datetimes, lists, objects, fields with metadata) go through ``Field.to_dict``.
    """
    doc: list[str] = []
    entries: list[str] = []
    pairs: list[tuple[str, str]] = []
    vectors: dict[str, bytes] = {}
    texts: list[tuple[int, str, str]] = []
    for position, (name, f) in enumerate(record.fields.items()):
        ftype = f.type
        value = f.value
        pairs.append((name, ftype))
        if isinstance(f, VectorField):
            doc.append(_key(name) + "{}")
            vectors[name] = value.tobytes()
            meta = _dumps(dict(f.metadata)) if f.metadata else None
            entries.append(_vector_entry_text(name, f.provenance_tuple(), meta))
            continue
        if ftype is FieldType.TEXT and value is not None:
            texts.append((position, name, value))
        if ftype in _PLAIN and not f.metadata:
            encoded = _scalar_json(value)
            doc.append(_key(name) + encoded)
            entries.append(_entry_head(name, ftype) + encoded + "}")
        else:
            doc.append(_key(name) + _dumps(_doc_value(f)))
            entries.append(_dumps(f.to_dict()))
    data = '{"fields":[' + ",".join(entries) + "]"
    if record.metadata:
        data += ',"metadata":' + _dumps(record.metadata)
    return RowParts(
        record.id,
        "{" + ",".join(doc) + "}",
        _types_text(tuple(pairs)),
        data + "}",
        vectors,
        tuple(texts),
    )


def decode_vector(blob: bytes) -> F32:
    """A read-only float32 array owning a copy of ``blob``."""
    arr = np.frombuffer(blob, dtype=np.float32).copy()
    arr.flags.writeable = False
    return arr


def decode_rows(
    rows: Iterable[Sequence[Any]],
    start: int,
    names: Sequence[str],
    to_vector: Callable[[Any], F32],
    fields: Iterable[str] | None = None,
) -> list[Record]:
    """Records from SQL rows laid out as ``(..., id, data, *vector columns)``.

    The id is at ``row[start]``, the ``data`` text after it, then one column per name of
    ``names`` (``None`` where the record has no such vector); ``to_vector`` turns a stored value
    into the engine-independent array. Both SQL backends select rows in this layout, so the
    loop lives here once.
    """
    wanted = None if fields is None else set(fields)
    out = []
    for row in rows:
        vectors = {
            name: to_vector(value)
            for name, value in zip(names, row[start + 2 :], strict=True)
            if value is not None and (wanted is None or name in wanted)
        }
        out.append(decode_record(row[start], row[start + 1], vectors, wanted))
    return out


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
            out[name] = _decode_field(name, entry)
    return Record.trusted(record_id, out, parsed.get("metadata", {}))


#: types whose JSON form is the value itself (a FLOAT only when it comes back as a float)
_PLAIN_TYPES = (FieldType.STRING, FieldType.TEXT, FieldType.INTEGER, FieldType.BOOLEAN)
_AS_STORED = {t.value: t for t in (*_PLAIN_TYPES, FieldType.JSON)}


def _decode_field(name: str, entry: Mapping[str, Any]) -> Field:
    """A stored field: plain values as they were validated on the way in, the rest (datetimes,
    binary, sparse vectors, floats that came back as integers) through :meth:`Field.from_dict`."""
    ftype = _AS_STORED.get(entry["type"])
    value = entry.get("value")
    if ftype is None and entry["type"] == "float" and isinstance(value, float):
        ftype = FieldType.FLOAT
    if ftype is None:
        return Field.from_dict(entry)
    meta = entry.get("metadata")
    return Field.trusted_value(name, ftype, value, MappingProxyType(meta) if meta else _NO_METADATA)
