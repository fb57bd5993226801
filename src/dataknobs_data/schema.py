"""Vector schema rules shared by every backend (pure functions, no I/O).

A backend calls these inside its own write transaction, so the check and the write see the same
schema even when two writers race.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .errors import FieldValidationError, QueryError, SchemaError, UnknownFieldError
from .fields import VectorField
from .query import VectorQuery
from .records import Record
from .vector.exceptions import (
    DimensionMismatchError,
    InvalidVectorError,
    MixedEmbeddingModelsError,
)
from .vector.operations import all_finite
from .vector.types import DistanceMetric, VectorConfig

__all__ = [
    "DEFAULT_FIELD_SETTING",
    "check_model",
    "needs_default",
    "plan_vector_schema",
    "resolve_vector_query",
]

#: The backend setting naming the vector field a search without ``field=`` uses when the store
#: has several (written in one step by ``VectorMigration.switch``, read by every backend's
#: search, so a switch made by any process is seen by the next search of every other one).
DEFAULT_FIELD_SETTING = "search:default_field"


def _label(name: str | None, version: str | None) -> str | None:
    if name is None:
        return None
    return f"{name}@{version}" if version else name


def check_model(field: str, config: VectorConfig, name: str | None, version: str | None) -> None:
    """Refuse a vector or query from a different named model than the field's.

    An unnamed side asserts nothing and is accepted; two named models that differ are never
    mixed, because their scores are not comparable.
    """
    given = _label(name, version)
    stored = config.model_label
    if given is not None and stored is not None and given != stored:
        raise MixedEmbeddingModelsError(field, stored, given)


def already_declared(name: str, existing: VectorConfig | None, config: VectorConfig) -> bool:
    """Whether ``name`` is declared already (with exactly ``config``; another configuration
    is a :class:`SchemaError`): declaring a vector field twice the same way is a no-op."""
    if existing is None:
        return False
    if existing != config:
        raise SchemaError(f"vector field {name!r} is already declared as {existing.to_dict()}")
    return True


def config_for(field: VectorField) -> VectorConfig:
    """The schema a new vector field gets from the first vector written to it."""
    return VectorConfig(
        dimensions=field.dimensions,
        model_name=field.model_name,
        model_version=field.model_version,
        source_field=field.source_field,
    )


def plan_vector_schema(
    current: Mapping[str, VectorConfig], records: Sequence[Record]
) -> dict[str, VectorConfig]:
    """Check every vector of ``records`` against the schema; return the fields to add.

    Raises before anything is written: a wrong dimension, a foreign model, or a non-vector value
    stored under a vector field's name.
    """
    new: dict[str, VectorConfig] = {}
    with np.errstate(invalid="ignore"):  # _finite's NaN is the answer, not a warning
        _plan(current, records, new)
    return new


def _plan(
    current: Mapping[str, VectorConfig], records: Sequence[Record], new: dict[str, VectorConfig]
) -> None:
    # One lookup per field (schema and additions together), and each distinct model seen for a
    # field checked once: ingest validates every record, so this loop is on the hot path.
    known: dict[str, VectorConfig] = {**current}
    models_ok: set[tuple[str, str | None, str | None]] = set()
    for record in records:
        for name, f in record.fields.items():
            cfg = known.get(name)
            if not isinstance(f, VectorField):
                if cfg is not None and f.value is not None:
                    raise FieldValidationError(
                        name, f"is a vector field (record {record.id!r} gives {f.type.value})"
                    )
                continue
            value = f.value
            if not all_finite(value):
                # Arrays are read-only, but a caller can unlock one; never store what it made.
                raise InvalidVectorError(name, f"record {record.id!r} holds a non-finite value")
            if cfg is None:
                known[name] = new[name] = config_for(f)
                continue
            if value.shape[0] != cfg.dimensions:
                raise DimensionMismatchError(name, cfg.dimensions, int(value.shape[0]))
            model = (name, f.model_name, f.model_version)
            if model not in models_ok:
                check_model(name, cfg, f.model_name, f.model_version)
                models_ok.add(model)


def needs_default(schema: Mapping[str, VectorConfig], query: VectorQuery) -> bool:
    """Whether resolving ``query`` needs the stored default field: only an unnamed query on a
    store with several vector fields (every other search skips reading the setting)."""
    return query.field is None and len(schema) > 1


def resolve_vector_query(
    schema: Mapping[str, VectorConfig],
    query: VectorQuery,
    *,
    model: str | None = None,
    default: str | None = None,
) -> tuple[str, VectorConfig, DistanceMetric]:
    """Pick the field and metric, and check the query's dimensions (and model, if named).

    An unnamed query uses the store's only vector field or, with several, ``default`` (the
    stored :data:`DEFAULT_FIELD_SETTING`, which the backend reads when :func:`needs_default`).
    """
    if query.field is None:
        if default is not None and len(schema) > 1:
            if default not in schema:
                raise UnknownFieldError(
                    default,
                    f"is the stored default vector field ({DEFAULT_FIELD_SETTING}) but not a "
                    f"vector field; known: {sorted(schema)}",
                )
            field = default
        elif len(schema) != 1:
            raise QueryError(
                "vector_search needs field=... when the store has "
                f"{'no' if not schema else len(schema)} vector fields "
                f"({sorted(schema)}) and no default vector field "
                "(VectorMigration.switch sets one)"
            )
        else:
            field = next(iter(schema))
    else:
        field = query.field
    cfg = schema.get(field)
    if cfg is None:
        raise UnknownFieldError(field, f"is not a vector field; known: {sorted(schema)}")
    if query.vector.shape[0] != cfg.dimensions:
        raise DimensionMismatchError(field, cfg.dimensions, int(query.vector.shape[0]))
    if model is not None:
        name, _, version = model.partition("@")
        check_model(field, cfg, name, version or None)
    return field, cfg, query.metric or cfg.metric
