"""Field values to Chroma metadata keys that ``where`` can evaluate exactly (pure functions).

Chroma compares metadata natively, but not with the package's semantics: ``$gt`` ignores
list values, ``$in`` never looks inside a list, and float comparisons are off by one unit in the
last place in the engine (measured: ``$eq`` matches the float next to the stored one). So values
are not stored as they are but as typed keys whose native comparisons *are* exact:

=================  ===============================  ===========================================
key                value                            what it answers
=================  ===============================  ===========================================
``n:<path>``       number as an order-preserving    ``=``, ``<``... on a scalar number (int
                   int64 of its float64             keys are exact in chroma; measured)
``d:<path>``       datetime as int microseconds     the same for datetimes (UTC)
``s:<path>``       string                           ``=`` and ``in`` on a scalar string
``b:<path>``       bool                             ``=`` on a scalar boolean
``n[]:<path>``     list of number keys (also        "any element equals" (``$contains``)
 ``s[]`` ``b[]``   per kind, from a list value)
 ``d[]``
``n<:<path>``      min / max number key of a list   "any element is ``>``/``<``..."
``n>:<path>``      (``d<``, ``d>`` for datetimes)
``k``              list of tags: ``e:<path>`` when  ``exists``, and the *absence* of a key,
                   the path exists, and the name    which a complement needs (chroma's
                   of every key above that is set   ``$ne``/``$nin``/``$not_contains`` match
                                                    records without the key; ``$lt`` does not)
``s:_id``          the record id                    ``_id`` filters; also the constant
                                                    true / false of the compiler
=================  ===============================  ===========================================

A path is every top-level field and every key reachable through JSON objects (keys holding
``.`` or control characters cannot be named by a filter path and get no key). Kinds follow
:mod:`dataknobs_data.query`: ``True`` is not the number 1, ``1 == 1.0``. Vectors, binary and
sparse values only *exist*. ``None`` and missing produce no key. Integers that float64 cannot
hold exactly (beyond 2**53) are refused with :class:`FieldValidationError`: chroma could not
order them exactly among floats.

Chroma writes one item's metadata with one SQL ``INSERT`` for its scalar values and one for the
elements of its list values, six bound parameters per row, and SQLite binds at most 32,766
parameters (chroma's ``rust/sqlite/src/helpers.rs``; measured with chromadb 1.5: a list of
5,459 numbers plus the two tags it adds is stored, one more element makes chroma's compaction
fail, and the collection then refuses every later write). So an item may hold at most
:data:`MAX_METADATA_ROWS` list elements (tags included) and as many scalar keys;
:func:`encode_metadata` refuses more with :class:`FieldValidationError` naming the field that
contributes most, before any engine call.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from ...errors import FieldValidationError
from ...fields import ID_FIELD

__all__ = [
    "ID_KEY",
    "TAGS",
    "datetime_key",
    "encode_metadata",
    "number_key",
    "scalar_key",
]

#: metadata key holding the record id (always present, never empty)
ID_KEY = "s:" + ID_FIELD
#: metadata key holding the tag list
TAGS = "k"
#: rows chroma can write for one item's scalar keys, and for its list elements: SQLite's bound
#: parameter limit (32766) over the six columns of a metadata row
MAX_METADATA_ROWS = 32766 // 6
#: scalar keys the caller may add after encoding (the records collection's body, ``"j"``)
_RESERVED_SCALARS = 2
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_SIGN = 0x7FFF_FFFF_FFFF_FFFF
_pack = struct.Struct("<d").pack
_unpack = struct.Struct("<q").unpack


def number_key(value: float) -> int:
    """The int64 whose order is the order of finite float64 values (``-0.0`` is ``0.0``)."""
    bits: int = _unpack(_pack(value + 0.0))[0]  # + 0.0 turns -0.0 into 0.0
    return bits if bits >= 0 else -(bits & _SIGN)


def datetime_key(value: datetime) -> int:
    """Microseconds since the epoch (values are timezone-aware UTC by then)."""
    return (value - _EPOCH) // _MICROSECOND


def _kind(value: Any) -> str | None:
    """Key kind of a comparable scalar: ``b``, ``n``, ``s``, ``d`` (``None``: not comparable)."""
    kind = type(value)
    if kind is str:
        return "s"
    if kind is bool:
        return "b"
    if kind is int or kind is float:
        return "n"
    if kind is datetime:
        return "d"
    return None


def scalar_key(kind: str, value: Any) -> Any:
    """The stored form of a comparable scalar of ``kind``."""
    if kind == "n":
        return number_key(float(value))
    if kind == "d":
        return datetime_key(value)
    return value


def _check_number(field: str, path: str, value: Any) -> None:
    if type(value) is int and float(value) != value:
        raise FieldValidationError(
            field,
            f"integer {value} at {path!r} is not exactly a float64; the chroma backend cannot "
            "filter it exactly (store it as a string or within +-2**53)",
        )


def _addressable(key: object) -> bool:
    return isinstance(key, str) and bool(key) and "." not in key and key.isprintable()


def _walk(field: str, path: str, value: Any, out: dict[str, Any], tags: list[str]) -> None:
    if value is None:
        return
    kind = _kind(value)
    if kind is not None:
        if kind == "n":
            _check_number(field, path, value)
        name = f"{kind}:{path}"
        out[name] = scalar_key(kind, value)
        tags.append("e:" + path)
        tags.append(name)
        return
    if isinstance(value, list):
        _list(field, path, value, out, tags)
        return
    tags.append("e:" + path)  # objects, vectors, binary: they exist and compare with nothing
    if isinstance(value, dict):
        for key, item in value.items():
            if _addressable(key):
                _walk(field, f"{path}.{key}", item, out, tags)


def _list(field: str, path: str, items: list[Any], out: dict[str, Any], tags: list[str]) -> None:
    by_kind: dict[str, list[Any]] = {}
    exists = False
    for item in items:
        if item is None:
            continue
        exists = True
        kind = _kind(item)
        if kind is None:
            continue  # nested lists and objects inside a list match no comparison
        if kind == "n":
            _check_number(field, path, item)
        by_kind.setdefault(kind, []).append(scalar_key(kind, item))
    if exists:
        tags.append("e:" + path)
    for kind, keys in by_kind.items():
        name = f"{kind}[]:{path}"
        out[name] = keys
        tags.append(name)
        if kind in ("n", "d"):
            out[f"{kind}<:{path}"] = min(keys)
            out[f"{kind}>:{path}"] = max(keys)


def encode_metadata(record_id: str, values: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Chroma metadata for one record: ``values`` are ``(top-level name, value)`` pairs.

    Opaque values (vectors, binary) should be passed as any non-comparable object (e.g. ``{}``
    would also do, but an object's keys are walked; pass ``b""``), so that they *exist*.
    """
    pairs = list(values)
    out = _encode(record_id, pairs)
    _check_rows(record_id, pairs, out)
    return out


def _encode(record_id: str, pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {ID_KEY: record_id}
    tags: list[str] = []
    for name, value in pairs:
        _walk(name, name, value, out, tags)
    if tags:
        out[TAGS] = tags
    return out


def _rows(out: Mapping[str, Any]) -> tuple[int, int]:
    """(scalar rows, list-element rows) chroma writes for one item's metadata."""
    elements = sum(len(v) for v in out.values() if type(v) is list)
    return len(out) - sum(1 for v in out.values() if type(v) is list), elements


def _check_rows(record_id: str, pairs: list[tuple[str, Any]], out: Mapping[str, Any]) -> None:
    scalars, elements = _rows(out)
    if scalars + _RESERVED_SCALARS <= MAX_METADATA_ROWS and elements <= MAX_METADATA_ROWS:
        return
    # The error path only: find the field that contributes most.
    share = {name: sum(_rows(_encode(record_id, [(name, v)]))) - 1 for name, v in pairs}
    worst = max(share, key=share.__getitem__)
    raise FieldValidationError(
        worst,
        f"record {record_id!r} needs {scalars} scalar keys and {elements} list elements "
        f"(tags included) in chroma metadata, {share[worst]} of them for this field; chroma "
        f"writes at most {MAX_METADATA_ROWS} of each per record (SQLite's 32766 bound "
        "parameters, 6 per row): store long lists or large objects as a string or BINARY",
    )


def encode_values(record_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """:func:`encode_metadata` of a plain mapping (the vector store's metadata)."""
    return encode_metadata(record_id, values.items())
