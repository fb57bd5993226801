"""Write operations as JSON journal payloads and back (pure functions, no I/O).

A record is :meth:`Record.to_dict` with each vector's values as base64 float32 bytes
(``{"f32": "..."}``) instead of a JSON list: exact, a third of the size, and much faster to
encode and parse. The same payloads serve as the journal's frames and as the snapshot's
contents, so recovery has one code path.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...fields import FieldType, VectorField, thaw_json
from ...records import Record
from ...vector.types import VectorConfig

__all__ = [
    "decode_op",
    "encode_op",
    "op_clear",
    "op_declare",
    "op_index",
    "op_put",
    "op_remove",
    "op_setting",
]

_VECTOR = FieldType.VECTOR.value
#: the order of VectorField.provenance_tuple()
_PROVENANCE = ("source_field", "model_name", "model_version", "source_hash")
_dumps = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def _record_dict(record: Record) -> dict[str, Any]:
    fields = []
    for f in record.fields.values():
        if isinstance(f, VectorField):
            # VectorField.to_dict's keys, without its list of floats (built only to be dropped)
            d = {"name": f.name, "type": _VECTOR, "dimensions": f.dimensions}
            d["value"] = {"f32": base64.b64encode(f.value.tobytes()).decode("ascii")}
            for key, value in zip(_PROVENANCE, f.provenance_tuple(), strict=True):
                if value is not None:
                    d[key] = value
            if f.metadata:
                d["metadata"] = thaw_json(f.metadata)
        else:
            d = f.to_dict()
        fields.append(d)
    out: dict[str, Any] = {"id": record.id, "fields": fields}
    if record.metadata:
        out["metadata"] = thaw_json(record.metadata)
    return out


def _record_from(data: dict[str, Any]) -> Record:
    for f in data["fields"]:
        value = f.get("value")
        if f.get("type") == FieldType.VECTOR.value and isinstance(value, dict):
            f["value"] = np.frombuffer(base64.b64decode(value["f32"]), dtype=np.float32)
    return Record.from_dict(data)


def op_put(records: Sequence[Record], mode: str) -> dict[str, Any]:
    return {"op": "put", "mode": mode, "records": [_record_dict(r) for r in records]}


def op_remove(ids: Sequence[str]) -> dict[str, Any]:
    return {"op": "remove", "ids": list(ids)}


def op_clear() -> dict[str, Any]:
    return {"op": "clear"}


def op_declare(name: str, config: VectorConfig) -> dict[str, Any]:
    return {"op": "declare", "name": name, "config": config.to_dict()}


def op_index(name: str, kind: str, params: dict[str, int]) -> dict[str, Any]:
    """A field's index choice (``create_vector_index`` / ``drop_vector_index``)."""
    return {"op": "index", "name": name, "kind": kind, "params": params}


def op_setting(key: str, value: str | None) -> dict[str, Any]:
    """A collection setting set (or, with ``None``, deleted). Journals and snapshots written
    before settings existed simply hold none of these, so they open unchanged."""
    return {"op": "setting", "key": key, "value": value}


def encode_op(op: dict[str, Any]) -> bytes:
    return _dumps(op).encode("utf-8")


def decode_op(payload: bytes) -> dict[str, Any]:
    """The operation, with records rebuilt as :class:`Record` objects and configs parsed."""
    op: dict[str, Any] = json.loads(payload)
    if op["op"] == "put":
        op["records"] = [_record_from(r) for r in op["records"]]
    elif op["op"] == "declare":
        op["config"] = VectorConfig.from_dict(op["config"])
    return op
