"""Each backend of this repository declares exactly what it declares today.

The conformance suite accepts the typed refusal of anything a backend does not declare, so a
backend could pass it by declaring less. This table closes that door: every operator, metric,
feature, index type and dimension limit is written down per backend and compared for equality,
in both shells. Changing a declaration means changing this table, in the same commit, on purpose.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from dataknobs_data import Record, UnsupportedError, VectorField
from dataknobs_data.capabilities import Feature
from dataknobs_data.query import Operator
from dataknobs_data.testing import (
    CHROMA,
    FAISS,
    MEMORY,
    POSTGRES,
    SQLITE,
    SQLITE_MEMORY,
    BackendSpec,
    Mode,
    database_params,
    open_database,
    param_id,
    server_specs,
)
from dataknobs_data.vector.types import DistanceMetric, VectorConfig

EVERY_OPERATOR = frozenset(
    {
        Operator.EQ, Operator.NEQ, Operator.GT, Operator.GTE, Operator.LT, Operator.LTE,
        Operator.IN, Operator.NOT_IN, Operator.BETWEEN, Operator.LIKE, Operator.NOT_LIKE,
        Operator.STARTS_WITH, Operator.EXISTS, Operator.NOT_EXISTS,
    }
)  # fmt: skip
M = DistanceMetric
EVERY_METRIC = frozenset({M.COSINE, M.EUCLIDEAN, M.DOT_PRODUCT, M.L1})
F = Feature
#: Exact filter-first vector search, atomic batches, nested fields, streams (memory's set).
#: Written out rather than imported from CORE_FEATURES, so that changing that fails here too.
CORE = frozenset(
    {
        F.VECTOR_SEARCH, F.FILTERED_VECTOR_SEARCH, F.EXACT_VECTOR_SEARCH, F.BATCH_VECTOR_SEARCH,
        F.TRANSACTIONS, F.NESTED_FIELDS, F.STREAMING,
    }
)  # fmt: skip


@dataclass(frozen=True)
class Declared:
    """What one backend's ``capabilities()`` must say, field for field."""

    backend: str
    operators: frozenset[Operator]
    metrics: frozenset[DistanceMetric]
    features: frozenset[Feature]
    index_types: frozenset[str]
    max_dimensions: int | None


DECLARED: dict[str, Declared] = {
    "memory": Declared("memory", EVERY_OPERATOR, EVERY_METRIC, CORE, frozenset({"flat"}), None),
    "sqlite": Declared(
        "sqlite",
        EVERY_OPERATOR,
        EVERY_METRIC,
        CORE | {F.FULL_TEXT, F.PERSISTENT},
        frozenset({"flat"}),
        8192,  # sqlite-vec's vec0 column limit
    ),
    # The same engine without a file: everything but PERSISTENT.
    "sqlite-memory": Declared(
        "sqlite",
        EVERY_OPERATOR,
        EVERY_METRIC,
        CORE | {F.FULL_TEXT},
        frozenset({"flat"}),
        8192,
    ),
    "faiss": Declared(
        "faiss",
        EVERY_OPERATOR,
        EVERY_METRIC,
        CORE | {F.PERSISTENT},
        frozenset({"flat", "hnsw", "ivfflat", "ivfpq"}),
        None,
    ),
    # HNSW only, so no EXACT_VECTOR_SEARCH; in memory here (temporary), so not PERSISTENT.
    "chroma": Declared(
        "chroma",
        EVERY_OPERATOR,
        EVERY_METRIC,
        CORE - {F.EXACT_VECTOR_SEARCH},
        frozenset({"hnsw"}),
        None,
    ),
    # L1 needs pgvector >= 0.7 on the server (the backend drops it on older ones; .ci/run and
    # scripts/test start a newer one), so a server too old for it fails here, loudly.
    "postgres": Declared(
        "postgres",
        EVERY_OPERATOR,
        EVERY_METRIC,
        CORE | {F.PERSISTENT},
        frozenset({"flat", "hnsw", "ivfflat"}),
        16000,
    ),
}

SPECS: list[BackendSpec] = [MEMORY, SQLITE, SQLITE_MEMORY, FAISS, CHROMA, *server_specs()]


def test_the_table_names_every_backend_of_this_repository() -> None:
    """A new backend gets a row (the specs it is opened by are the conformance suite's)."""
    every = [MEMORY, SQLITE, SQLITE_MEMORY, FAISS, CHROMA, POSTGRES]
    assert sorted(DECLARED) == sorted(spec.name for spec in every)


@pytest.mark.parametrize("target", database_params(SPECS), ids=param_id)
def test_declared_capabilities_are_pinned(target: tuple[BackendSpec, Mode], tmp_path: Path) -> None:
    """``capabilities()`` equals the row: no operator, metric or feature more or less."""
    spec, mode = target
    expected = DECLARED[spec.name]
    with open_database(spec, mode, tmp_path) as db:
        caps = db.capabilities()
    got = Declared(
        caps.backend,
        caps.operators,
        caps.metrics,
        caps.features,
        caps.index_types,
        caps.max_dimensions,
    )
    assert got == expected


@pytest.mark.parametrize("target", database_params(SPECS, ["sync"]), ids=param_id)
def test_max_dimensions_is_the_engines_real_limit(
    target: tuple[BackendSpec, Mode], tmp_path: Path
) -> None:
    """Issue 11: SQLite declared ``None`` and failed past 8192 with a BackendError. A declared
    limit is stored exactly and one more dimension is refused with a typed error naming the
    field, writing nothing (declare and write); ``None`` means 16001 dimensions store fine."""
    spec, mode = target
    with open_database(spec, mode, tmp_path) as db:
        limit = db.capabilities().max_dimensions
        widest = 16001 if limit is None else limit
        vec = np.linspace(0.5, 1.5, widest, dtype=np.float32)
        db.create(Record({"wide": VectorField(vec)}, id="w"))
        assert db.vector_search(vec, field="wide", k=1)[0].id == "w"
        if limit is None:
            return
        with pytest.raises(UnsupportedError, match=f"'over'.*at most {limit}"):
            db.create(Record({"over": VectorField(np.ones(limit + 1, np.float32))}, id="o"))
        with pytest.raises(UnsupportedError, match=f"'decl'.*at most {limit}"):
            db.declare_vector_field("decl", VectorConfig(dimensions=limit + 1))
        assert db.count() == 1
        assert set(db.vector_fields()) == {"wide"}
