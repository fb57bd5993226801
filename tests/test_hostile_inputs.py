"""Issue 11, classes 3, 4 and 6: every example of the report is a regression test, on every
backend in both shells (and on the VectorStore API where it applies).

* lone surrogates (and any string UTF-8 cannot encode) are refused everywhere, the memory
  backend included, with one typed error naming the field, before anything is written;
* ``k``, ``limit``, ``offset`` and every integer option accept any int up to ``2**63 - 1``
  (a ``k`` or ``limit`` beyond the store means "all") and refuse more with a typed error;
* what chroma cannot store (a record needing more than 5461 metadata rows) is refused before
  the first engine call, and the store stays writable;
* vectors whose norm breaks the magnitude rule (0, or within [1e-18, 1e18]) are refused when
  stored and when searched with, so the report's ``[3e38, -3e38, 1e-45, 0]`` can no longer drop
  out of results; vectors at the bound rank the same on every backend.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dataknobs_data import (
    DataknobsDataError,
    F,
    Field,
    FieldType,
    FieldValidationError,
    InvalidIdentifierError,
    Query,
    QueryError,
    Record,
    ValidationError,
    VectorField,
)
from dataknobs_data.errors import InvalidTextError
from dataknobs_data.fields import MAX_VECTOR_NORM, MIN_VECTOR_NORM
from dataknobs_data.ints import INT64_MAX
from dataknobs_data.query import SortSpec
from dataknobs_data.testing import (
    CHROMA,
    FAISS,
    MEMORY,
    SQLITE,
    SQLITE_MEMORY,
    BackendSpec,
    DatabaseLike,
    canonical,
    database_params,
    open_database,
    param_id,
    server_specs,
    skip_unless_extra,
)
from dataknobs_data.vector.exceptions import InvalidVectorError

BACKENDS: list[BackendSpec] = [MEMORY, SQLITE, SQLITE_MEMORY, FAISS, CHROMA, *server_specs()]
BAD = "bad\ud800"


@pytest.fixture(params=database_params(BACKENDS), ids=param_id)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DatabaseLike]:
    spec, mode = request.param
    with open_database(spec, mode, tmp_path) as database:
        database.create_batch(
            [Record({"v": vec(1.0, i, 0.0, 0.0), "n": i}, id=f"r{i}") for i in range(3)]
        )
        yield database


def contents(db: DatabaseLike) -> tuple[int, list[Any]]:
    return db.count(), [canonical(r) for r in db.search(Query())]


def vec(*values: float) -> VectorField:
    return VectorField(np.array(values, dtype=np.float32))


# -- lone surrogates --------------------------------------------------------------------------
#: (what, builds a record or runs a call) -> the field the error must name (None: the id/name)
SURROGATE_INPUTS: dict[str, tuple[Callable[[], Any], str | None]] = {
    "record id": (lambda: Record({"a": 1}, id=f"x{BAD}"), None),
    "field name": (lambda: Record({f"a{BAD}": 1}, id="x"), None),
    "string value": (lambda: Record({"s": BAD}, id="x"), "s"),
    "text value": (lambda: Record([Field("t", BAD, FieldType.TEXT)], id="x"), "t"),
    "JSON key, deep": (lambda: Record({"j": {"a": [{"b": {f"k{BAD}": 1}}]}}, id="x"), "j"),
    "JSON value, deep": (lambda: Record({"j": {"a": [1, {"b": [BAD]}]}}, id="x"), "j"),
    "list element": (lambda: Record({"l": ["ok", BAD]}, id="x"), "l"),
    "record metadata": (lambda: Record({"a": 1}, id="x", metadata={"m": {"k": BAD}}), None),
    "field metadata": (lambda: Field("a", 1, metadata={"m": BAD}), "a"),
    "vector provenance": (lambda: VectorField([1.0, 0, 0, 0], name="v", model_name=BAD), "v"),
    "filter value": (lambda: Query().filter("s", "=", BAD), "s"),
    "filter list value": (lambda: Query().filter("s", "in", ["a", BAD]), "s"),
    "like pattern": (lambda: Query().filter("s", "like", f"{BAD}%"), "s"),
    "filter path": (lambda: Query().filter(f"j.{BAD}", "exists"), None),
    "sort field": (lambda: Query().sort(f"s{BAD}"), None),
    "sort spec": (lambda: SortSpec(BAD), None),
    "projection": (lambda: Query().select(f"s{BAD}"), None),
    "filter dict": (
        lambda: Query.from_dict({"filter": {"field": "s", "op": "=", "value": BAD}}),
        "s",
    ),
}


@pytest.mark.parametrize("what", list(SURROGATE_INPUTS))
def test_surrogates_are_refused_where_the_value_is_built(what: str) -> None:
    """One typed error (also an InvalidIdentifierError and a QueryError, for code catching the
    error of its context) naming the field, from the vocabulary: every backend agrees."""
    build, field = SURROGATE_INPUTS[what]
    with pytest.raises(InvalidTextError) as info:
        build()
    assert isinstance(info.value, FieldValidationError | InvalidIdentifierError | QueryError)
    assert info.value.field == field
    assert "lone surrogate" in str(info.value)
    if field is not None:
        assert repr(field) in str(info.value)


def test_surrogates_are_refused_by_every_call(db: DatabaseLike) -> None:
    """The calls of the report: each refused (typed), nothing written, a corrected retry works."""
    before = contents(db)
    calls: list[Callable[[], Any]] = [
        lambda: db.read(f"x{BAD}"),
        lambda: db.exists(f"x{BAD}"),
        lambda: db.delete(f"x{BAD}"),
        lambda: db.read_batch(["r1", f"x{BAD}"]),
        lambda: db.delete_batch(["r1", f"x{BAD}"]),
        lambda: db.search({"field": "s", "op": "=", "value": BAD}),
        lambda: db.count(F("s").starts_with(BAD)),
        lambda: db.vector_search([1, 0, 0, 0], field="v", filter=F("s") == BAD),
    ]
    if db.capabilities().supports("full_text"):
        calls.append(lambda: db.text_search(f"word {BAD}"))
    for call in calls:
        with pytest.raises(InvalidTextError):
            call()
    assert contents(db) == before


def test_a_batch_with_one_surrogate_writes_nothing_and_the_retry_works(db: DatabaseLike) -> None:
    """Faiss kept both records of such a batch in memory and chroma left an intent log no call
    could replay: the batch (with a vector field, as in the report) is now refused before any
    engine call, and the corrected batch is written."""
    before = contents(db)
    with pytest.raises(InvalidTextError):
        db.create_batch(
            [
                Record({"v": vec(1, 2, 3, 4), "s": "ok"}, id="b1"),
                Record({"v": vec(1, 2, 3, 4), "s": BAD}, id="b2"),
            ]
        )
    assert contents(db) == before
    ids = db.create_batch(
        [
            Record({"v": vec(1, 2, 3, 4), "s": "ok"}, id="b1"),
            Record({"v": vec(1, 2, 3, 4), "s": "fixed"}, id="b2"),
        ]
    )
    assert ids == ["b1", "b2"] and db.count() == before[0] + 2
    assert db.read("b2") is not None and db.read("b2")["s"] == "fixed"  # type: ignore[index]


# -- integers at and beyond int64 ---------------------------------------------------------------
def test_k_limit_and_offset_beyond_int64_are_query_errors(db: DatabaseLike) -> None:
    """``OverflowError`` on SQLite and chroma, a BackendError on PostgreSQL: now a QueryError
    naming the option, everywhere; nothing changes."""
    before = contents(db)
    for call in (
        lambda: db.vector_search([1, 0, 0, 0], field="v", k=2**63),
        lambda: db.vector_search_batch([[1, 0, 0, 0]], field="v", k=2**64),
        lambda: db.search(Query(limit=2**63)),
        lambda: db.search(Query(offset=2**63)),
        lambda: db.count(Query().limit(10**30)),
        lambda: list(db.stream(None, batch_size=2**63)),
        lambda: db.vector_search([1, 0, 0, 0], field="v", search_params={"ef_search": 2**63}),
    ):
        with pytest.raises(QueryError, match=r"must be an int"):
            call()
    assert contents(db) == before


def test_the_largest_int64_means_all(db: DatabaseLike) -> None:
    """``k``, ``limit`` and ``offset`` of ``2**63 - 1`` are accepted: "all of them" / "none"."""
    big = INT64_MAX
    assert [h.id for h in db.vector_search([1, 0, 0, 0], field="v", k=big)] == ["r0", "r1", "r2"]
    assert len(db.vector_search([1, 0, 0, 0], field="v", k=big, filter=F("n") >= 1)) == 2
    assert [len(h) for h in db.vector_search_batch([[1, 0, 0, 0]] * 2, field="v", k=big)] == [3, 3]
    assert [r.id for r in db.search(Query(limit=big).sort("n", descending=True))] == [
        "r2",
        "r1",
        "r0",
    ]
    assert db.search(Query(offset=big, limit=big)) == []
    assert db.count(Query(offset=1, limit=big)) == 2
    assert [r.id for r in db.stream(None, batch_size=big)] == ["r0", "r1", "r2"]


def test_integer_values_at_the_int64_edges(db: DatabaseLike) -> None:
    """Values beyond int64 are refused by the vocabulary on every backend; the edges themselves
    round-trip and filter exactly, except on chroma, which refuses (typed, writing nothing)
    integers float64 cannot hold, as docs/chroma.md says."""
    with pytest.raises(FieldValidationError, match="64 bits"):
        Record({"n": 2**63}, id="x")
    with pytest.raises(FieldValidationError, match="64 bits"):
        Record({"j": {"deep": [-(2**63) - 1]}}, id="x")
    with pytest.raises(QueryError, match="64 bits"):
        Query().filter("n", "<", 2**63)
    edge = Record({"n": INT64_MAX, "m": -(2**63)}, id="edge")
    before = contents(db)
    if db.capabilities().backend == "chroma":
        with pytest.raises(ValidationError, match="float64"):
            db.create(edge)
        assert contents(db) == before
        return
    db.create(edge)
    assert canonical(db.read("edge")) == canonical(edge)  # type: ignore[arg-type]
    assert [r.id for r in db.search(Query().filter("n", "=", INT64_MAX))] == ["edge"]
    assert [r.id for r in db.search(Query().filter("m", "<", -(2**62)))] == ["edge"]


# -- what chroma cannot store ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"l": list(range(7000))}, "l"),  # the report's example (7,000 integers)
        ({"l": [f"s{i}" for i in range(5460)]}, "l"),  # the first length chroma fails on
        ({"a": list(range(3000)), "b": list(range(2000)), "c": list(range(1000))}, "a"),
        ({"j": {f"k{i}": i for i in range(2731)}}, "j"),  # keys make two tags each
    ],
    ids=["7000-ints", "5460-strings", "three-lists", "2731-keys"],
)
def test_records_chroma_cannot_store_are_refused_up_front(
    db: DatabaseLike, value: dict[str, Any], field: str
) -> None:
    """Chroma's compaction failed and the store refused every later write; now the record is
    refused (typed, naming the field contributing most) before any engine call. The other
    backends store it."""
    rec = Record(value, id="big")
    before = contents(db)
    if db.capabilities().backend != "chroma":
        db.create(rec)
        assert canonical(db.read("big")) == canonical(rec)  # type: ignore[arg-type]
        return
    with pytest.raises(FieldValidationError, match="at most 5461") as info:
        db.create(rec)
    assert info.value.field == field
    assert contents(db) == before
    db.create(Record({"l": list(range(5459))}, id="fits"))  # the largest list that fits
    assert db.count() == before[0] + 1


# -- the magnitude rule for vectors ----------------------------------------------------------------
HUGE = (3e38, -3e38, 1e-45, 0.0)


@pytest.mark.parametrize(
    "values",
    [HUGE, (2e18, 0.0, 0.0, 0.0), (1e-30, 0.0, 0.0, 0.0), (1e-45, 1e-45, 0.0, 0.0)],
    ids=["report", "just-over", "tiny", "subnormal"],
)
def test_vectors_breaking_the_magnitude_rule_are_refused(
    db: DatabaseLike, values: tuple[float, ...]
) -> None:
    """Memory and faiss dropped the report's vector from Euclidean/L1 results (inf) and scored
    its cosine 0.0: such vectors are refused when written and when searched with."""
    before = contents(db)
    with pytest.raises(InvalidVectorError, match="norm"):
        db.create(Record({"v": VectorField(np.array(values))}, id="huge"))
    with pytest.raises(InvalidVectorError, match="norm"):
        db.vector_search(np.array(values), field="v")
    with pytest.raises(InvalidVectorError, match="norm"):
        db.vector_search_batch([[1, 0, 0, 0], list(values)], field="v")
    assert contents(db) == before


def test_vectors_at_the_bound_rank_alike_on_every_backend(db: DatabaseLike) -> None:
    """The report's search, scaled into the rule: k=4 over 4 records returns 4 hits, the
    large vector last for Euclidean and L1 and at cosine 0.7071 (not 0.0)."""
    big = MAX_VECTOR_NORM / 2
    db.create_batch(
        [
            Record({"v": vec(big, -big, 1e-45, 0.0), "n": 9}, id="big"),
            Record({"v": vec(MIN_VECTOR_NORM, 0, 0, 0), "n": 10}, id="tiny"),
        ]
    )
    for metric in ("euclidean", "l1"):
        hits = db.vector_search([1, 0, 0, 0], field="v", k=5, metric=metric)
        assert [h.id for h in hits][-1] == "big" and len(hits) == 5
        assert np.isfinite([h.distance for h in hits]).all()
    cosine = {
        h.id: h.score for h in db.vector_search([1, 0, 0, 0], field="v", k=5, metric="cosine")
    }
    assert cosine["big"] == pytest.approx(0.70710678, rel=1e-5)
    assert cosine["tiny"] == pytest.approx(1.0, rel=1e-5)
    dot = {
        h.id: h.score for h in db.vector_search([1, 0, 0, 0], field="v", k=5, metric="dot_product")
    }
    assert dot["big"] == pytest.approx(big, rel=1e-5)


@pytest.mark.parametrize("store_name", ["faiss", "chroma"])
def test_the_vector_store_api_applies_the_same_rules(store_name: str, tmp_path: Path) -> None:
    """The VectorStore API: magnitude rule on stored and query vectors, surrogates in ids and
    metadata, k beyond int64; a refused add writes nothing; k=2**63-1 means all."""
    skip_unless_extra(store_name)
    from dataknobs_data.vector.stores import VectorStoreFactory

    store = VectorStoreFactory.create(store_name, dimensions=4)
    try:
        store.add(["a", "b"], np.array([[1, 0, 0, 0], [0, 1, 0, 0]], np.float32))
        refused: list[Callable[[], Any]] = [
            lambda: store.add(["h"], np.array([HUGE], np.float32)),
            lambda: store.upsert(["t"], np.array([[1e-30, 0, 0, 0]], np.float32)),
            lambda: store.add([f"s{BAD}"], np.array([[1, 1, 0, 0]], np.float32)),
            lambda: store.add(["m"], np.array([[1, 1, 0, 0]], np.float32), [{"k": [BAD]}]),
            lambda: store.add(["m"], np.array([[1, 1, 0, 0]], np.float32), [{f"k{BAD}": 1}]),
            lambda: store.add(["m"], np.array([[1, 1, 0, 0]], np.float32), [{"n": 2**64}]),
            lambda: store.search(np.array(HUGE, np.float32), k=1),
            lambda: store.search([1e-30, 0, 0, 0], k=1),
            lambda: store.search([1, 0, 0, 0], k=2**63),
        ]
        for call in refused:
            with pytest.raises(DataknobsDataError):
                call()
        assert store.count() == 2
        assert [h.id for h in store.search(np.array([1, 0, 0, 0], np.float32), k=INT64_MAX)] == [
            "a",
            "b",
        ]
    finally:
        store.close()
