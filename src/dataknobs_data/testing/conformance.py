"""The conformance suite every backend runs, in both shells.

Subclass :class:`ConformanceTests` in a test module and provide a ``db`` fixture that yields a
fresh, empty database behind the blocking interface (:func:`~.backends.database_params` and
:func:`~.backends.open_database` do the work)::

    BACKENDS = [MEMORY, SQLITE]

    @pytest.fixture(params=database_params(BACKENDS), ids=param_id)
    def db(request, tmp_path):
        with open_database(*request.param, tmp_path) as database:
            yield database

    class TestConformance(ConformanceTests):
        pass

A file-based engine gets a fresh directory per database:
``BackendSpec.from_url("sqlite", lambda tmp: f"sqlite:///{tmp}/suite.db")``; a server engine
builds its own ``open_sync`` / ``open_async`` that create a uniquely named collection.
Behaviour that legitimately differs is handled by overriding one test (or the
:meth:`ConformanceTests.assert_records_equal` hook) in the subclass, with a comment saying why.

Expected results come from plain-Python oracles over the fixed dataset
(:mod:`.dataset`, :mod:`.cases`), never from another backend. Anything a backend does not
declare in :meth:`capabilities` (an operator, a metric, vector search) is not skipped: the suite
asserts that the backend refuses it with the typed ``Unsupported*`` error instead.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest

from ..capabilities import Capabilities, Feature, walk_conditions
from ..errors import (
    DatabaseClosedError,
    DuplicateRecordError,
    FieldValidationError,
    InvalidIdentifierError,
    QueryError,
    UnknownFieldError,
    UnknownOperatorError,
    UnsupportedError,
    UnsupportedMetricError,
    UnsupportedOperatorError,
    ValidationError,
)
from ..fields import FieldType, VectorField
from ..query import F, Filter, Operator, Query, filter_to_dict
from ..records import Record
from ..vector.exceptions import (
    DimensionMismatchError,
    InvalidVectorError,
    MixedEmbeddingModelsError,
)
from ..vector.types import DistanceMetric, InvalidMetricError, VectorConfig, VectorSearchResult
from .adapter import DatabaseLike, SyncView
from .assertions import assert_hits, canonical, record_ids
from .cases import COVERED_OPERATORS, FILTER_CASES, SORT_CASES, FilterCase, SortCase
from .cases import is_not as _is_not  # the lead drops the alias at merge
from .dataset import (
    DIM,
    DOCS,
    IDS,
    MODEL_LABEL,
    MODEL_NAME,
    MODEL_VERSION,
    QUERY_VECTORS,
    VECTOR_FIELD,
    Doc,
    SortKey,
    build_records,
    expected_ids,
    expected_knn,
    expected_order,
    has,
    kind,
)

__all__ = ["ConformanceTests"]

#: Every metric, with L2 spelled out: it is the same member as EUCLIDEAN, and the suite says so.
METRICS: tuple[tuple[str, DistanceMetric], ...] = (
    ("cosine", DistanceMetric.COSINE),
    ("euclidean", DistanceMetric.EUCLIDEAN),
    ("l2", DistanceMetric.L2),
    ("dot_product", DistanceMetric.DOT_PRODUCT),
    ("l1", DistanceMetric.L1),
)
METRIC_PARAMS = [pytest.param(m, id=name) for name, m in METRICS]

VECTOR_FILTERS: tuple[tuple[str, Filter, Callable[[Doc], bool]], ...] = (
    ("group-1", F("group") == 1, lambda d: has(d, "group", lambda v: kind(v) == "num" and v == 1)),
    ("tags-a-incl-no-vector", F("tags") == "a", lambda d: has(d, "tags", lambda v: v == "a")),
    ("flag-not-true", _is_not("flag", True), lambda d: not has(d, "flag", lambda v: v is True)),
    (
        "num-gt-100-or-author-cy",
        (F("num") > 100) | (F("meta.author") == "cy"),
        lambda d: (
            has(d, "num", lambda v: kind(v) == "num" and v > 100)
            or has(d, "meta.author", lambda v: v == "cy")
        ),
    ),
    ("matches-nothing", F("title") == "no such title", lambda d: False),
)

PAGES: tuple[tuple[int, int | None], ...] = (
    (0, None), (0, 5), (5, 5), (28, 5), (29, 10), (30, 1), (100, None), (3, 0), (0, 0),
)  # fmt: skip

BAD_FILTER_DICTS: tuple[tuple[str, Any], ...] = (
    ("no-op", {"field": "num"}),
    ("empty-and", {"and": []}),
    ("and-not-a-list", {"and": {"field": "num", "op": "=", "value": 1}}),
    ("two-logic-keys", {"or": [{"field": "num", "op": "exists"}], "and": []}),
    ("not-a-list-child", {"not": [{"field": "num", "op": "exists"}]}),
    ("none-value", {"field": "num", "op": "=", "value": None}),
    ("object-value", {"field": "num", "op": "=", "value": {"a": 1}}),
    ("nan-value", {"field": "num", "op": "=", "value": float("nan")}),
    ("between-reversed", {"field": "num", "op": "between", "value": [3, 1]}),
    ("between-mixed-kinds", {"field": "num", "op": "between", "value": [1, "z"]}),
    ("between-three", {"field": "num", "op": "between", "value": [1, 2, 3]}),
    ("in-string", {"field": "num", "op": "in", "value": "abc"}),
    ("ordering-boolean", {"field": "flag", "op": ">", "value": True}),
    ("empty-field", {"field": "", "op": "=", "value": 1}),
    ("empty-segment", {"field": "meta..author", "op": "=", "value": 1}),
    ("id-inside-path", {"field": "meta._id", "op": "=", "value": 1}),
    ("like-number", {"field": "title", "op": "like", "value": 5}),
    ("like-lone-escape", {"field": "title", "op": "like", "value": "ab\\"}),
    ("exists-with-value", {"field": "num", "op": "exists", "value": 1}),
    ("extra-key", {"field": "num", "op": "=", "value": 1, "boost": 2}),
    ("bad-datetime", {"field": "when", "op": "=", "value": {"$datetime": "yesterday"}}),
    ("not-an-object", ["num", "=", 1]),
    ("query-bad-order", {"filter": None, "sort": [{"field": "num", "order": "up"}]}),
    ("query-bad-nulls", {"filter": None, "sort": [{"field": "num", "nulls": "middle"}]}),
    ("query-negative-limit", {"filter": None, "limit": -1}),
    ("query-string-offset", {"filter": None, "offset": "3"}),
    ("query-unknown-key", {"filter": None, "limit": 1, "bogus": 1}),
    ("query-fields-string", {"filter": None, "fields": "title"}),
    ("query-path-projection", {"filter": None, "fields": ["meta.author"]}),
)


def _vec(values: Sequence[float]) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.asarray(values, dtype=np.float32)


def _vector_field(values: Sequence[float], model: str = MODEL_NAME) -> VectorField:
    return VectorField(_vec(values), model_name=model, model_version=MODEL_VERSION)


def _unlock(arr: np.ndarray[Any, Any]) -> bool:
    """Make a read-only array writeable the way a careless caller could (base first).

    Returns False when numpy refuses (e.g. memory owned by an immutable buffer): then the
    array cannot be used to reach anything.
    """
    chain = [arr]
    while isinstance(chain[-1].base, np.ndarray):
        chain.append(chain[-1].base)
    try:
        for a in reversed(chain):
            a.flags.writeable = True
    except ValueError:
        return False
    return True


def _json_round_trip(data: Any) -> Any:
    return json.loads(json.dumps(data))


class ConformanceTests:
    """Contract tests for a backend; the subclass provides the ``db`` fixture (fresh, empty)."""

    # -- hooks a backend may override ------------------------------------------------------------
    def assert_records_equal(self, actual: Sequence[Record], expected: Sequence[Record]) -> None:
        """Same ids in the same order, same typed values, vectors, provenance and metadata."""
        assert record_ids(actual) == record_ids(expected)
        for a, e in zip(actual, expected, strict=True):
            assert canonical(a) == canonical(e), f"record {e.id!r} differs"

    @pytest.fixture
    def loaded_db(self, db: DatabaseLike) -> DatabaseLike:
        """``db`` holding the 30 dataset records."""
        assert db.create_batch(build_records()) == [d.id for d in DOCS]
        return db

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def snapshot(db: DatabaseLike) -> tuple[int, list[Any]]:
        """Count and full content, to show that a refused call changed nothing."""
        return db.count(), [canonical(r) for r in db.search(Query())]

    @staticmethod
    def _refused_operators(caps: Capabilities, node: Filter | None) -> set[Operator]:
        return {c.op for c in walk_conditions(node)} - caps.operators

    def check_search(self, db: DatabaseLike, query: Query, expected: list[str]) -> None:
        """``search`` gives ``expected`` ids in order and ``count`` agrees, in three forms
        (the builder, the JSON dict form, and ``Query.from_dict``), or the backend refuses
        an undeclared operator with :class:`UnsupportedOperatorError`."""
        forms: list[Any] = [
            query,
            _json_round_trip(query.to_dict()),
            Query.from_dict(_json_round_trip(query.to_dict())),
        ]
        if self._refused_operators(db.capabilities(), query.condition):
            for form in forms:
                with pytest.raises(UnsupportedOperatorError):
                    db.search(form)
                with pytest.raises(UnsupportedOperatorError):
                    db.count(form)
            return
        for form in forms:
            assert record_ids(db.search(form)) == expected, f"search({form!r})"
            assert db.count(form) == len(expected), f"count({form!r})"

    def knn(
        self,
        db: DatabaseLike,
        vector: Any,
        *,
        metric: DistanceMetric | str | None,
        k: int = 5,
        filter: Filter | None = None,
        score_threshold: float | None = None,
        field: str | None = VECTOR_FIELD,
    ) -> list[VectorSearchResult] | None:
        """Run a vector search, or assert the declared refusal and return ``None``."""

        def call() -> list[VectorSearchResult]:
            return db.vector_search(
                vector,
                field=field,
                k=k,
                metric=metric,
                filter=filter,
                score_threshold=score_threshold,
            )

        caps = db.capabilities()
        refusal: type[Exception] | None = None
        if not caps.supports(Feature.VECTOR_SEARCH):
            refusal = UnsupportedError
        elif metric is not None and DistanceMetric.parse(metric) not in caps.metrics:
            refusal = UnsupportedMetricError
        elif self._refused_operators(caps, filter):
            refusal = UnsupportedOperatorError
        elif filter is not None and not caps.supports(Feature.FILTERED_VECTOR_SEARCH):
            refusal = UnsupportedError
        if refusal is not None:
            with pytest.raises(refusal):
                call()
            return None
        return call()

    # == capabilities and shells ==================================================================
    def test_capabilities_are_declared(self, db: DatabaseLike) -> None:
        """capabilities() names the backend and lists only known operators and metrics."""
        caps = db.capabilities()
        assert isinstance(caps, Capabilities)
        assert caps.backend
        assert isinstance(caps.backend, str)
        assert caps.operators <= frozenset(Operator)
        assert caps.metrics <= frozenset(DistanceMetric)
        assert all(isinstance(f, Feature) for f in caps.features)
        assert json.loads(json.dumps(caps.to_dict()))["backend"] == caps.backend

    def test_filter_cases_cover_every_operator(self) -> None:
        """The case table exercises every member of Operator (a new one needs cases)."""
        assert frozenset(Operator) == COVERED_OPERATORS

    @pytest.mark.parametrize("op", list(Operator), ids=lambda o: o.name)
    def test_operator_is_run_or_refused(self, loaded_db: DatabaseLike, op: Operator) -> None:
        """A declared operator gives the oracle's answer; an undeclared one is refused."""
        case = next(c for c in FILTER_CASES if {x.op for x in walk_conditions(c.filter)} == {op})
        query = Query(case.filter)
        if op in loaded_db.capabilities().operators:
            self.check_search(loaded_db, query, expected_ids(case.predicate))
        else:
            with pytest.raises(UnsupportedOperatorError):
                loaded_db.search(query)
            with pytest.raises(UnsupportedOperatorError):
                loaded_db.vector_search(QUERY_VECTORS[0], field=VECTOR_FIELD, filter=case.filter)

    @pytest.mark.parametrize("metric", METRIC_PARAMS)
    def test_metric_is_run_or_refused(
        self, loaded_db: DatabaseLike, metric: DistanceMetric
    ) -> None:
        """A declared metric gives the oracle's ranking; an undeclared one is refused."""
        hits = self.knn(loaded_db, QUERY_VECTORS[1], metric=metric)
        if hits is not None:
            assert_hits(hits, expected_knn(QUERY_VECTORS[1], metric), k=5)
        else:
            assert metric not in loaded_db.capabilities().metrics or not (
                loaded_db.capabilities().supports(Feature.VECTOR_SEARCH)
            )

    def test_shell_method_kinds(self, db: DatabaseLike) -> None:
        """Async shell: coroutines and an async-generator stream; sync shell: plain calls."""
        names = [
            "create", "create_batch", "read", "read_batch", "exists", "update", "update_batch",
            "upsert", "upsert_batch", "delete", "delete_batch", "clear", "search", "count",
            "vector_search", "vector_search_batch", "declare_vector_field", "close",
        ]  # fmt: skip
        if isinstance(db, SyncView):
            inner = db.inner
            for name in names:
                assert inspect.iscoroutinefunction(getattr(inner, name)), name
            assert inspect.isasyncgenfunction(inner.stream)
        else:
            for name in names:
                assert not inspect.iscoroutinefunction(getattr(db, name)), name
            assert inspect.isgeneratorfunction(type(db).stream)

    # == CRUD =====================================================================================
    def test_create_and_read_round_trip(self, db: DatabaseLike) -> None:
        """Every dataset record comes back from read() with the same typed content."""
        records = build_records()
        for rec in records:
            assert db.create(rec) == rec.id
        got = [db.read(r.id) for r in records]
        assert all(g is not None for g in got)
        self.assert_records_equal([g for g in got if g is not None], records)
        assert db.count() == len(records)

    def test_create_batch_returns_ids_in_order(self, db: DatabaseLike) -> None:
        """create_batch returns the ids in input order; search() returns them in id order."""
        records = build_records()
        assert db.create_batch(records) == [r.id for r in records]
        by_id = {r.id: r for r in records}
        self.assert_records_equal(db.search(Query()), [by_id[i] for i in IDS])

    def test_create_without_id_generates_one(self, db: DatabaseLike) -> None:
        """A record built without an id gets one, and is stored under it."""
        rec = Record({"title": "anonymous"})
        rid = db.create(rec)
        assert rid == rec.id
        assert rid
        stored = db.read(rid)
        assert stored is not None
        assert stored["title"] == "anonymous"

    def test_read_missing_returns_none(self, loaded_db: DatabaseLike) -> None:
        """read() of an unknown id is None; read_batch keeps order and gaps."""
        assert loaded_db.read("nope") is None
        got = loaded_db.read_batch(["r02", "nope", "Zed", "r02"])
        assert [None if g is None else g.id for g in got] == ["r02", None, "Zed", "r02"]

    def test_exists(self, loaded_db: DatabaseLike) -> None:
        """exists() is True exactly for stored ids."""
        assert loaded_db.exists("été")
        assert loaded_db.exists("r10")
        assert not loaded_db.exists("nope")
        assert not loaded_db.exists("R10")

    def test_invalid_ids_are_refused(self, loaded_db: DatabaseLike) -> None:
        """Empty or control-character ids raise InvalidIdentifierError and change nothing."""
        before = self.snapshot(loaded_db)
        with pytest.raises(InvalidIdentifierError):
            loaded_db.read("")
        with pytest.raises(InvalidIdentifierError):
            loaded_db.delete("a\nb")
        with pytest.raises(InvalidIdentifierError):
            loaded_db.update("", Record({"title": "x"}))
        with pytest.raises(ValidationError):
            loaded_db.delete_batch(["r01", "r01"])
        assert self.snapshot(loaded_db) == before

    def test_create_duplicate_id_raises_and_keeps_original(self, loaded_db: DatabaseLike) -> None:
        """create() of an existing id raises DuplicateRecordError; the original stays."""
        before = self.snapshot(loaded_db)
        with pytest.raises(DuplicateRecordError):
            loaded_db.create(Record({"title": "impostor"}, id="r01"))
        assert self.snapshot(loaded_db) == before

    def test_update_replaces_fields(self, loaded_db: DatabaseLike) -> None:
        """update() replaces the whole record: dropped fields (even the vector) are gone."""
        assert loaded_db.update("r01", Record({"title": "new", "num": 99}, id="r01")) is True
        stored = loaded_db.read("r01")
        assert stored is not None
        assert stored.to_plain() == {"title": "new", "num": 99}
        assert record_ids(loaded_db.search(Query(F("title") == "alpha"))) == []
        assert record_ids(loaded_db.search(Query(F("num") == 99))) == ["r01"]
        hits = loaded_db.vector_search(QUERY_VECTORS[0], field=VECTOR_FIELD, k=100)
        assert "r01" not in [h.record.id for h in hits]
        assert len(hits) == sum(1 for d in DOCS if d.vector is not None) - 1

    def test_update_missing_returns_false_and_writes_nothing(self, loaded_db: DatabaseLike) -> None:
        """update() of an unknown id returns False and creates nothing."""
        before = self.snapshot(loaded_db)
        assert loaded_db.update("nope", Record({"title": "x"}, id="nope")) is False
        assert loaded_db.update_batch([Record({"title": "x"}, id="nope2")]) == [False]
        assert not loaded_db.exists("nope")
        assert not loaded_db.exists("nope2")
        assert self.snapshot(loaded_db) == before

    def test_update_uses_the_given_id(self, loaded_db: DatabaseLike) -> None:
        """update(rid, record) stores under rid even when the record carries another id."""
        assert loaded_db.update("r02", Record({"title": "moved"}, id="elsewhere")) is True
        stored = loaded_db.read("r02")
        assert stored is not None
        assert stored.to_plain() == {"title": "moved"}
        assert not loaded_db.exists("elsewhere")
        assert loaded_db.count() == len(DOCS)

    def test_update_batch_reports_per_record(self, loaded_db: DatabaseLike) -> None:
        """update_batch writes the existing records only and says which existed."""
        flags = loaded_db.update_batch(
            [Record({"num": -1}, id="r03"), Record({"num": -1}, id="ghost"), Record({}, id="Zed")]
        )
        assert flags == [True, False, True]
        assert not loaded_db.exists("ghost")
        r03, zed = loaded_db.read("r03"), loaded_db.read("Zed")
        assert r03 is not None
        assert r03.to_plain() == {"num": -1}
        assert zed is not None
        assert zed.to_plain() == {}

    def test_upsert_creates_then_replaces(self, db: DatabaseLike) -> None:
        """upsert() creates a missing record and replaces an existing one entirely."""
        first = Record({"title": "one", "embedding": _vector_field(QUERY_VECTORS[1])}, id="u")
        assert db.upsert(first) == "u"
        self.assert_records_equal([db.read("u")], [first])  # type: ignore[list-item]
        second = Record({"num": 2}, id="u")
        assert db.upsert(second) == "u"
        self.assert_records_equal([db.read("u")], [second])  # type: ignore[list-item]
        assert db.count() == 1
        assert db.vector_search(QUERY_VECTORS[1], field=VECTOR_FIELD) == []

    def test_upsert_batch(self, loaded_db: DatabaseLike) -> None:
        """upsert_batch mixes creates and replacements, all applied."""
        batch = [Record({"title": "fresh"}, id="new1"), Record({"title": "again"}, id="r04")]
        assert loaded_db.upsert_batch(batch) == ["new1", "r04"]
        assert loaded_db.count() == len(DOCS) + 1
        got = loaded_db.read_batch(["new1", "r04"])
        self.assert_records_equal([g for g in got if g is not None], batch)

    def test_delete(self, loaded_db: DatabaseLike) -> None:
        """delete() removes a record from reads, searches, counts and vector searches."""
        assert loaded_db.delete("r01") is True
        assert loaded_db.delete("r01") is False
        assert loaded_db.read("r01") is None
        assert not loaded_db.exists("r01")
        assert loaded_db.count() == len(DOCS) - 1
        assert "r01" not in record_ids(loaded_db.search(Query()))
        hits = loaded_db.vector_search(QUERY_VECTORS[0], field=VECTOR_FIELD, k=3)
        assert [h.record.id for h in hits] == ["r02", "r20", hits[2].record.id]
        assert hits[2].record.id not in ("r01", "r02", "r20")

    def test_delete_batch_and_recreate(self, loaded_db: DatabaseLike) -> None:
        """delete_batch reports per id; a deleted id can be created again."""
        assert loaded_db.delete_batch(["r05", "nope", "Zed"]) == [True, False, True]
        assert loaded_db.count() == len(DOCS) - 2
        again = Record({"title": "back", "embedding": _vector_field(QUERY_VECTORS[2])}, id="Zed")
        assert loaded_db.create(again) == "Zed"
        self.assert_records_equal([loaded_db.read("Zed")], [again])  # type: ignore[list-item]
        hits = loaded_db.vector_search(QUERY_VECTORS[2], field=VECTOR_FIELD, k=1)
        assert [h.record.id for h in hits] == ["Zed"]

    def test_clear_keeps_vector_schema(self, loaded_db: DatabaseLike) -> None:
        """clear() returns how many records it removed; the vector schema stays."""
        assert loaded_db.clear() == len(DOCS)
        assert loaded_db.count() == 0
        assert loaded_db.search(Query()) == []
        assert loaded_db.vector_fields()[VECTOR_FIELD].dimensions == DIM
        with pytest.raises(DimensionMismatchError):
            loaded_db.create(Record({"embedding": _vector_field([1.0, 2.0])}))
        assert loaded_db.vector_search(QUERY_VECTORS[0], field=VECTOR_FIELD) == []

    def test_vector_schema_and_provenance(self, loaded_db: DatabaseLike) -> None:
        """The vector field learns dimensions and model; stored vectors keep provenance."""
        config = loaded_db.vector_fields()[VECTOR_FIELD]
        assert (config.dimensions, config.model_name, config.model_version) == (
            DIM,
            MODEL_NAME,
            MODEL_VERSION,
        )
        stored = loaded_db.read("r03")
        assert stored is not None
        vec = stored.fields[VECTOR_FIELD]
        assert isinstance(vec, VectorField)
        assert vec.value.dtype == np.float32
        assert vec.value.tolist() == list(DOCS[2].vector or ())
        assert vec.model_label == MODEL_LABEL
        assert vec.source_field == "title"
        assert vec.source_hash is not None
        assert stored.fields["num"].type is FieldType.INTEGER
        r02 = loaded_db.read("r02")
        assert r02 is not None
        assert r02.fields["num"].type is FieldType.FLOAT

    # == copies ===================================================================================
    def test_mutating_read_results_does_not_change_store(self, loaded_db: DatabaseLike) -> None:
        """Records handed out are copies: changing them (JSON, fields, metadata) changes nothing."""
        before = self.snapshot(loaded_db)
        for rec in [loaded_db.read("r01"), *loaded_db.search(Query(F("_id") == "r11"))]:
            assert rec is not None
            rec["meta"]["author"] = "mallory"
            rec["meta"]["stats"]["views"] = -1
            rec["tags"].append("zzz")
            rec["title"] = "changed"
            del rec["num"]
            rec.metadata["origin"] = "changed"
        streamed = next(iter(loaded_db.stream(Query(F("_id") == "r15"))))
        streamed["tags"].clear()
        assert self.snapshot(loaded_db) == before

    def test_mutating_vector_hits_does_not_change_store(self, loaded_db: DatabaseLike) -> None:
        """Vectors handed out cannot reach the stored ones, even after unlocking the array."""
        before = self.snapshot(loaded_db)
        hits = loaded_db.vector_search(QUERY_VECTORS[0], field=VECTOR_FIELD, k=3)
        read = loaded_db.read("r01")
        assert read is not None
        arrays = [h.record[VECTOR_FIELD] for h in hits] + [read[VECTOR_FIELD]]
        for arr in arrays:
            with pytest.raises(ValueError, match="read-only"):
                arr[0] = 42.0
        for arr in arrays:
            if _unlock(arr):
                arr[:] = 42.0
        for hit in hits:
            hit.record["meta"] = {"author": "mallory"}
        assert self.snapshot(loaded_db) == before
        again = loaded_db.vector_search(QUERY_VECTORS[0], field=VECTOR_FIELD, k=3)
        assert [(h.id, h.score) for h in again] == [(h.id, h.score) for h in hits]

    @pytest.mark.parametrize("write", ["create", "upsert", "create_batch", "update"])
    def test_mutating_input_after_write_does_not_change_store(
        self, loaded_db: DatabaseLike, write: str
    ) -> None:
        """The store keeps its own copy of what it was given."""
        source = {"author": "ann", "stats": {"views": 1}}

        def make(meta: dict[str, Any]) -> Record:
            return Record(
                {"title": "mine", "meta": meta, "tags": ["a"],
                 "embedding": _vector_field(QUERY_VECTORS[3])},
                id="r01" if write == "update" else "mine",
                metadata={"k": "v"},
            )  # fmt: skip

        rec, expected = make(source), make({"author": "ann", "stats": {"views": 1}})
        if write == "create":
            loaded_db.create(rec)
        elif write == "upsert":
            loaded_db.upsert(rec)
        elif write == "create_batch":
            loaded_db.create_batch([rec])
        else:
            assert loaded_db.update("r01", rec)
        source["author"] = "mallory"
        rec["meta"]["author"] = "mallory"
        rec["tags"].append("b")
        rec["title"] = "changed"
        rec.metadata["k"] = "changed"
        vec = rec[VECTOR_FIELD]
        if _unlock(vec):
            vec[:] = 7.0
        self.assert_records_equal([loaded_db.read(rec.id)], [expected])  # type: ignore[list-item]
        hits = loaded_db.vector_search(QUERY_VECTORS[3], field=VECTOR_FIELD, k=1)
        assert [h.record.id for h in hits] == [rec.id]

    # == all-or-nothing writes ====================================================================
    @staticmethod
    def _bad_batch(bad: str, write: str = "create") -> tuple[list[Record], type[Exception]]:
        """A batch whose last record is wrong in one way, and the error it must raise.

        The good records before it would create new records and (except for a create)
        replace an existing one, so a partial write would show.
        """
        good = [
            Record({"title": "ok1", "embedding": _vector_field(QUERY_VECTORS[1])}, id="ok1"),
            Record({"title": "ok2"}, id="ok2"),
        ]
        if write != "create_batch":
            good.append(Record({"title": "replaced", "num": -100}, id="r05"))
        if bad == "wrong-dimension":
            last = Record({"embedding": _vector_field([1.0] * (DIM + 1))}, id="bad")
            return [*good, last], DimensionMismatchError
        if bad == "duplicate-in-batch":
            return [*good, Record({"title": "twice"}, id="ok1")], DuplicateRecordError
        if bad == "existing-id":
            return [*good, Record({"title": "dup"}, id="r10")], DuplicateRecordError
        if bad == "other-model":
            last = Record({"embedding": _vector_field(QUERY_VECTORS[2], "other")}, id="bad")
            return [*good, last], MixedEmbeddingModelsError
        if bad == "scalar-in-vector-field":
            return [*good, Record({"embedding": 3.5}, id="bad")], FieldValidationError
        if bad == "nan-vector":
            last = Record({"embedding": _vector_field(QUERY_VECTORS[2])}, id="bad")
            arr = last[VECTOR_FIELD]
            assert _unlock(arr)  # a caller can unlock an array it was handed...
            arr[3] = math.nan  # ...so the store must not trust it blindly
            return [*good, last], InvalidVectorError
        raise AssertionError(bad)

    @pytest.mark.parametrize(
        ("write", "bad"),
        [
            *[("create_batch", b) for b in ("wrong-dimension", "duplicate-in-batch",
                                             "existing-id", "other-model",
                                             "scalar-in-vector-field", "nan-vector")],
            *[("upsert_batch", b) for b in ("wrong-dimension", "duplicate-in-batch",
                                             "other-model", "scalar-in-vector-field",
                                             "nan-vector")],
            *[("update_batch", b) for b in ("wrong-dimension", "duplicate-in-batch",
                                             "other-model", "nan-vector")],
        ],
    )  # fmt: skip
    def test_failed_batch_writes_nothing(
        self, loaded_db: DatabaseLike, write: str, bad: str
    ) -> None:
        """A batch with one bad record raises the typed error and changes nothing at all."""
        batch, error = self._bad_batch(bad, write)
        if write == "update_batch":  # point every record at an existing id
            existing = {"ok1": "r20", "ok2": "r21", "bad": "r22"}
            batch = [Record(dict(r.fields), id=existing.get(r.id, r.id)) for r in batch]
        before = self.snapshot(loaded_db)
        schema_before = loaded_db.vector_fields()
        with pytest.raises(error):
            getattr(loaded_db, write)(batch)
        assert self.snapshot(loaded_db) == before
        assert loaded_db.vector_fields() == schema_before

    @pytest.mark.parametrize("bad", ["wrong-dimension", "other-model", "nan-vector"])
    def test_failed_single_write_writes_nothing(self, loaded_db: DatabaseLike, bad: str) -> None:
        """create/upsert/update of one bad record raise and leave the store as it was."""
        batch, error = self._bad_batch(bad)
        rec = batch[-1]
        before = self.snapshot(loaded_db)
        with pytest.raises(error):
            loaded_db.create(rec)
        with pytest.raises(error):
            loaded_db.upsert(rec)
        with pytest.raises(error):
            loaded_db.update("r01", rec)
        assert self.snapshot(loaded_db) == before

    def test_non_finite_vectors_are_refused_when_built(self, db: DatabaseLike) -> None:
        """NaN and infinite vectors never become records, so they never reach a store."""
        for bad in (math.nan, math.inf, -math.inf):
            values = [0.5] * DIM
            values[2] = bad
            with pytest.raises(InvalidVectorError):
                db.create(Record({"embedding": VectorField(values)}, id="x"))
            with pytest.raises(InvalidVectorError):
                db.create_batch([Record({"embedding": np.asarray(values)}, id="x")])
        assert db.count() == 0

    def test_batch_of_new_vector_field_is_atomic(self, db: DatabaseLike) -> None:
        """A batch that would create a vector field but fails leaves no schema behind."""
        batch = [
            Record({"v": VectorField([1.0, 2.0])}, id="a"),
            Record({"v": VectorField([1.0, 2.0, 3.0])}, id="b"),
        ]
        with pytest.raises(DimensionMismatchError):
            db.create_batch(batch)
        assert db.count() == 0
        assert "v" not in db.vector_fields()
        db.create(Record({"v": VectorField([1.0, 2.0, 3.0])}, id="c"))
        assert db.vector_fields()["v"].dimensions == 3

    # == filters ==================================================================================
    @pytest.mark.parametrize("case", FILTER_CASES, ids=str)
    def test_filter(self, loaded_db: DatabaseLike, case: FilterCase) -> None:
        """search/count give the records the plain-Python predicate selects, in id order."""
        self.check_search(loaded_db, Query(case.filter), expected_ids(case.predicate))

    def test_queries_do_not_interfere(self, loaded_db: DatabaseLike) -> None:
        """Every filter case on one store, repeatedly: no state leaks between queries
        (a cache, mask or column index reused and mutated by a previous query)."""
        declared = loaded_db.capabilities().operators
        cases = [c for c in FILTER_CASES if {x.op for x in walk_conditions(c.filter)} <= declared]
        for rewrite in (False, False, True):
            if rewrite:  # rewriting a record (unchanged) invalidates whatever is cached
                loaded_db.upsert(build_records()[0])
            for case in cases if rewrite else reversed(cases):
                expected = expected_ids(case.predicate)
                assert record_ids(loaded_db.search(Query(case.filter))) == expected, case.name
                assert loaded_db.count(Query(case.filter)) == len(expected), case.name

    @pytest.mark.parametrize("case", FILTER_CASES[::7], ids=str)
    def test_filter_as_plain_dict(self, loaded_db: DatabaseLike, case: FilterCase) -> None:
        """A filter given as its bare dict form (no Query wrapper) means the same."""
        as_dict = _json_round_trip(filter_to_dict(case.filter))
        expected = expected_ids(case.predicate)
        if self._refused_operators(loaded_db.capabilities(), case.filter):
            with pytest.raises(UnsupportedOperatorError):
                loaded_db.search(as_dict)
            return
        assert record_ids(loaded_db.search(as_dict)) == expected
        assert loaded_db.count(as_dict) == len(expected)
        assert record_ids(loaded_db.search(case.filter)) == expected

    def test_query_dict_with_only_a_filter(self, loaded_db: DatabaseLike) -> None:
        """{"filter": {...}} is the query dict form with defaults for the other keys."""
        query = {"filter": {"field": "num", "op": "=", "value": 1}}
        assert record_ids(loaded_db.search(query)) == ["r01", "r02"]
        assert loaded_db.count(query) == 2

    def test_filters_built_every_way_agree(self, loaded_db: DatabaseLike) -> None:
        """Query.filter chaining, F expressions, where() and dicts build the same filter."""
        chained = Query().filter("num", ">=", 1).filter("tags", "in", ["a", "c"])
        built = Query((F("num") >= 1) & F("tags").is_in(["a", "c"]))
        where = (
            Query()
            .where({"field": "num", "op": "gte", "value": 1})
            .where({"field": "tags", "op": "in", "value": ["a", "c"]})
        )
        expected = expected_ids(
            lambda d: (
                has(d, "num", lambda v: kind(v) == "num" and v >= 1)
                and has(d, "tags", lambda v: v in ("a", "c"))
            )
        )
        assert expected
        for q in (chained, built, where):
            assert record_ids(loaded_db.search(q)) == expected

    # == sorting, paging, projection, streaming ===================================================
    @staticmethod
    def _sorted_query(case: SortCase) -> Query:
        query = Query(case.filter)
        for key in case.keys:
            query = query.sort(key.field, descending=key.descending, nulls=key.nulls)  # type: ignore[arg-type]
        return query

    @pytest.mark.parametrize("case", SORT_CASES, ids=str)
    def test_sort(self, loaded_db: DatabaseLike, case: SortCase) -> None:
        """Sorted results follow the oracle order (kinds, nulls placement, id tie-break)."""
        query = self._sorted_query(case)
        expected = expected_order(case.predicate, case.keys)
        self.check_search(loaded_db, query, expected)
        assert record_ids(list(loaded_db.stream(query, batch_size=4))) == expected

    @pytest.mark.parametrize(("offset", "limit"), PAGES)
    def test_paging(self, loaded_db: DatabaseLike, offset: int, limit: int | None) -> None:
        """offset then limit apply after sorting; count() counts the page."""
        case = SORT_CASES[14]
        full = expected_order(case.predicate, case.keys)
        end = None if limit is None else offset + limit
        query = self._sorted_query(case).offset(offset).limit(limit)
        self.check_search(loaded_db, query, full[offset:end])
        unsorted = Query().offset(offset).limit(limit)
        self.check_search(loaded_db, unsorted, list(IDS)[offset:end])

    def test_pages_concatenate_to_the_whole(self, loaded_db: DatabaseLike) -> None:
        """Walking pages of 7 over a sort with many ties visits every record once, in order."""
        base = Query().sort("group", nulls="first").sort("flag", descending=True)
        whole = record_ids(loaded_db.search(base))
        pages: list[str] = []
        for start in range(0, len(DOCS) + 7, 7):
            pages += record_ids(loaded_db.search(base.offset(start).limit(7)))
        assert pages == whole
        assert sorted(pages) == sorted(IDS)

    def test_projection(self, loaded_db: DatabaseLike) -> None:
        """select() keeps the named top-level fields (and the id), with their values."""
        query = Query(F("num") > 0).sort("num", descending=True).select("title", "meta", "nope")
        got = loaded_db.search(query)
        expected = expected_order(
            lambda d: has(d, "num", lambda v: kind(v) == "num" and v > 0), [SortKey("num", True)]
        )
        assert record_ids(got) == expected
        full = {r.id: r for r in build_records()}
        for rec in got:
            wanted = {n for n in ("title", "meta") if n in full[rec.id]}
            assert set(rec.keys()) == wanted
            for name in wanted:
                assert canonical(rec)[1][name] == canonical(full[rec.id])[1][name]
        vectors = loaded_db.search(Query(F("_id") == "r03").select(VECTOR_FIELD))
        assert len(vectors) == 1
        assert vectors[0].keys() == [VECTOR_FIELD]
        assert vectors[0][VECTOR_FIELD].tolist() == list(DOCS[2].vector or ())
        assert [r.keys() for r in loaded_db.search(Query().select("nope"))] == [[]] * len(DOCS)

    @pytest.mark.parametrize("batch_size", [1, 2, 7, 30, 1000])
    def test_stream_equals_search(self, loaded_db: DatabaseLike, batch_size: int) -> None:
        """stream() yields exactly what search() returns, whatever the batch size."""
        for query in (
            Query(),
            Query(F("tags").exists()).sort("num", descending=True, nulls="first"),
            Query(F("num") != 1).sort("title").offset(3).limit(11).select("title", "num"),
            Query(F("title") == "no such title"),
        ):
            streamed = list(loaded_db.stream(query, batch_size=batch_size))
            self.assert_records_equal(streamed, loaded_db.search(query))
        as_dict = {"field": "group", "op": "=", "value": 2}
        got = record_ids(list(loaded_db.stream(as_dict, batch_size=batch_size)))
        assert got == record_ids(loaded_db.search(as_dict))

    def test_stream_rejects_bad_batch_size(self, loaded_db: DatabaseLike) -> None:
        """batch_size must be a positive int."""
        for bad in (0, -1, True):
            with pytest.raises(QueryError):
                list(loaded_db.stream(Query(), batch_size=bad))

    def test_unsorted_results_are_in_id_order(self, loaded_db: DatabaseLike) -> None:
        """Without sort keys, results come in id (code-point) order, whatever the insert order."""
        assert record_ids(loaded_db.search(Query())) == list(IDS)
        assert IDS[0] == "Zed"
        assert IDS[-1] == "été"

    # == vector search ============================================================================
    @pytest.mark.parametrize("metric", METRIC_PARAMS)
    @pytest.mark.parametrize("qi", range(len(QUERY_VECTORS)))
    def test_vector_search_matches_oracle(
        self, loaded_db: DatabaseLike, metric: DistanceMetric, qi: int
    ) -> None:
        """Top-5 ids, scores and distances agree with a float64 numpy oracle."""
        query = QUERY_VECTORS[qi]
        hits = self.knn(loaded_db, query, metric=metric, k=5)
        if hits is None:
            return
        assert_hits(hits, expected_knn(query, metric), k=5, context=f"{metric} q{qi}")

    @pytest.mark.parametrize("metric", METRIC_PARAMS)
    @pytest.mark.parametrize(
        ("name", "flt", "predicate"), VECTOR_FILTERS, ids=[f[0] for f in VECTOR_FILTERS]
    )
    def test_filtered_vector_search(
        self,
        loaded_db: DatabaseLike,
        metric: DistanceMetric,
        name: str,
        flt: Filter,
        predicate: Callable[[Doc], bool],
    ) -> None:
        """The filter applies before ranking: up to k matching records with vectors."""
        for query in (QUERY_VECTORS[2], QUERY_VECTORS[4]):
            hits = self.knn(loaded_db, query, metric=metric, k=4, filter=flt)
            if hits is None:
                return
            assert_hits(hits, expected_knn(query, metric, predicate), k=4, context=name)
            as_dict = loaded_db.vector_search(
                query, field=VECTOR_FIELD, k=4, metric=metric, filter=filter_to_dict(flt)
            )
            assert [h.record.id for h in as_dict] == [h.record.id for h in hits]

    @pytest.mark.parametrize("metric", METRIC_PARAMS)
    def test_k_larger_than_matches_returns_all(
        self, loaded_db: DatabaseLike, metric: DistanceMetric
    ) -> None:
        """k beyond the candidates returns every candidate; records without vectors never."""
        hits = self.knn(loaded_db, QUERY_VECTORS[3], metric=metric, k=1000)
        if hits is None:
            return
        with_vectors = {d.id for d in DOCS if d.vector is not None}
        assert {h.record.id for h in hits} == with_vectors
        assert len(hits) == len(with_vectors)
        assert_hits(hits, expected_knn(QUERY_VECTORS[3], metric), k=1000)
        no_vectors = F("_id").is_in(["r05", "r17", "r23"])
        assert self.knn(loaded_db, QUERY_VECTORS[3], metric=metric, filter=no_vectors) == []

    @pytest.mark.parametrize("metric", METRIC_PARAMS)
    def test_score_threshold(self, loaded_db: DatabaseLike, metric: DistanceMetric) -> None:
        """score_threshold drops hits scoring below it (higher is better for every metric)."""
        ranking = expected_knn(QUERY_VECTORS[1], metric)
        scores = sorted({h.score for h in ranking}, reverse=True)
        for threshold in (scores[3], (scores[5] + scores[6]) / 2, scores[0] + 1.0, scores[-1] - 1):
            hits = self.knn(
                loaded_db, QUERY_VECTORS[1], metric=metric, k=10, score_threshold=threshold
            )
            if hits is None:
                return
            assert_hits(hits, ranking, k=10, score_threshold=threshold, context=str(threshold))
            assert all(h.score >= threshold - 1e-5 * max(1.0, abs(threshold)) for h in hits)
        threshold = scores[len(scores) // 2]
        filtered = self.knn(
            loaded_db, QUERY_VECTORS[1], metric=metric, k=3, score_threshold=threshold,
            filter=F("group") == 2,
        )  # fmt: skip
        if filtered is not None:
            in_group_2 = expected_knn(
                QUERY_VECTORS[1], metric, lambda d: has(d, "group", lambda v: v == 2)
            )
            assert_hits(filtered, in_group_2, k=3, score_threshold=threshold)

    def test_exact_duplicates_rank_in_id_order(self, loaded_db: DatabaseLike) -> None:
        """Records with the same vector tie exactly and come back in id order."""
        for metric in (m for _, m in METRICS):
            hits = self.knn(loaded_db, QUERY_VECTORS[0], metric=metric, k=3)
            if hits is None:
                continue
            assert [h.record.id for h in hits] == ["r01", "r02", "r20"], metric
            assert hits[0].score == hits[1].score == hits[2].score
        cos = self.knn(loaded_db, QUERY_VECTORS[0], metric=DistanceMetric.COSINE, k=1)
        if cos is not None:
            assert math.isclose(cos[0].score, 1.0, abs_tol=1e-6)
            assert math.isclose(cos[0].distance, 0.0, abs_tol=1e-6)

    @pytest.mark.parametrize("metric", METRIC_PARAMS)
    def test_exact_duplicates_tie_wherever_stored(
        self, db: DatabaseLike, metric: DistanceMetric
    ) -> None:
        """Identical vectors score identically whatever their position in storage, so a cut
        through a group of duplicates keeps the smallest ids (realistic, inexact floats)."""
        base = [0.1, -0.7, 0.3, 0.9, -0.2, 0.55, 0.05, -0.4]
        fillers = [
            Record({"e": VectorField([0.01 * ((i * j) % 7 - 3) + 0.003 for j in range(DIM)]),
                    "g": i % 2}, id=f"f{i:02d}")
            for i in range(18)
        ]  # fmt: skip
        dupes = [
            Record({"e": VectorField(base), "g": 2}, id=i) for i in ("d3", "d1", "d4", "d0", "d2")
        ]
        db.create_batch([*fillers[:9], dupes[0], *fillers[9:], *dupes[1:]])
        if self.knn(db, base, metric=metric, field="e") is None:
            return
        everyone = ["d0", "d1", "d2", "d3", "d4"]
        for flt, expected in (
            (None, everyone),
            (F("g") == 2, everyone),  # a selective filter: only the duplicates are scored
            (F("g") >= 1, everyone),
            (F("_id") != "d2", ["d0", "d1", "d3", "d4"]),
        ):
            for k in range(1, len(expected) + 1):
                hits = db.vector_search(base, field="e", k=k, metric=metric, filter=flt)
                assert [h.id for h in hits] == expected[:k], (flt, k, hits)
                assert len({h.score for h in hits}) == 1, f"duplicates scored apart: {hits}"

    def test_cosine_ignores_scale(self, loaded_db: DatabaseLike) -> None:
        """A vector and its double tie under cosine (id order) but not under euclidean."""
        v3 = DOCS[6].vector
        assert v3 is not None
        cos = self.knn(loaded_db, v3, metric=DistanceMetric.COSINE, k=4)
        if cos is not None:
            assert [h.record.id for h in cos] == ["r07", "r26", "r27", "r28"]
        l2 = self.knn(loaded_db, v3, metric=DistanceMetric.EUCLIDEAN, k=3)
        if l2 is not None:
            assert [h.record.id for h in l2] == ["r07", "r27", "r28"]
            assert all(h.distance == 0.0 and h.score == 1.0 for h in l2)

    def test_zero_vectors_have_cosine_zero(self, loaded_db: DatabaseLike) -> None:
        """Cosine with a zero vector is 0 (not NaN): a zero query ties everything, by id."""
        hits = self.knn(loaded_db, [0.0] * DIM, metric=DistanceMetric.COSINE, k=100)
        if hits is None:
            return
        assert [h.record.id for h in hits] == [i for i in IDS if i not in ("r05", "r17", "r23")]
        assert all(h.score == 0.0 and h.distance == 1.0 for h in hits)
        stored_zero = self.knn(
            loaded_db, QUERY_VECTORS[1], metric="cosine", filter=F("_id") == "r06"
        )
        assert stored_zero is not None
        assert [(h.score, h.distance) for h in stored_zero] == [(0.0, 1.0)]

    def test_field_and_metric_defaults(self, loaded_db: DatabaseLike) -> None:
        """field may be omitted with one vector field; metric defaults to the field's."""
        config = loaded_db.vector_fields()[VECTOR_FIELD]
        explicit = loaded_db.vector_search(
            QUERY_VECTORS[2], field=VECTOR_FIELD, metric=config.metric, k=6
        )
        implicit = loaded_db.vector_search(QUERY_VECTORS[2], k=6)
        assert [(h.record.id, h.score) for h in implicit] == [
            (h.record.id, h.score) for h in explicit
        ]
        assert_hits(implicit, expected_knn(QUERY_VECTORS[2], config.metric), k=6)

    def test_metric_spellings(self, loaded_db: DatabaseLike) -> None:
        """Common spellings name the same metric ("l2", "ip", "manhattan", ...)."""
        spellings = {
            "COSINE": DistanceMetric.COSINE, "cos": DistanceMetric.COSINE,
            "l2": DistanceMetric.EUCLIDEAN, "L2": DistanceMetric.EUCLIDEAN,
            "ip": DistanceMetric.DOT_PRODUCT, "dot": DistanceMetric.DOT_PRODUCT,
            "manhattan": DistanceMetric.L1, "L1": DistanceMetric.L1,
        }  # fmt: skip
        assert DistanceMetric["L2"] is DistanceMetric["EUCLIDEAN"]
        for spelling, metric in spellings.items():
            a = self.knn(loaded_db, QUERY_VECTORS[1], metric=spelling, k=4)
            b = self.knn(loaded_db, QUERY_VECTORS[1], metric=metric, k=4)
            if a is None or b is None:
                continue
            assert [(h.record.id, h.score) for h in a] == [(h.record.id, h.score) for h in b]

    @pytest.mark.parametrize("metric", METRIC_PARAMS)
    def test_vector_search_batch_equals_single(
        self, loaded_db: DatabaseLike, metric: DistanceMetric
    ) -> None:
        """vector_search_batch gives, per query, what vector_search gives."""
        if self.knn(loaded_db, QUERY_VECTORS[0], metric=metric) is None:
            return
        for flt in (None, F("group") != 3):
            batch = loaded_db.vector_search_batch(
                list(QUERY_VECTORS), field=VECTOR_FIELD, k=6, metric=metric, filter=flt
            )
            assert len(batch) == len(QUERY_VECTORS)
            for query, hits in zip(QUERY_VECTORS, batch, strict=True):
                single = loaded_db.vector_search(
                    query, field=VECTOR_FIELD, k=6, metric=metric, filter=flt
                )
                assert [h.record.id for h in hits] == [h.record.id for h in single]
                for a, b in zip(hits, single, strict=True):
                    assert math.isclose(a.score, b.score, rel_tol=1e-5, abs_tol=1e-6)
                    assert a.rank == b.rank
        assert loaded_db.vector_search_batch([], field=VECTOR_FIELD) == []
        as_matrix = loaded_db.vector_search_batch(
            np.asarray(QUERY_VECTORS[:2], dtype=np.float32), field=VECTOR_FIELD, metric=metric
        )
        assert [[h.record.id for h in hs] for hs in as_matrix] == [
            [h.record.id for h in hs]
            for hs in loaded_db.vector_search_batch(
                list(QUERY_VECTORS[:2]), field=VECTOR_FIELD, metric=metric
            )
        ]

    def test_vector_query_object(self, loaded_db: DatabaseLike) -> None:
        """Query.similar_to() carries the filter; it runs like the keyword form."""
        vq = Query(F("group") == 1).similar_to(
            QUERY_VECTORS[3], field=VECTOR_FIELD, k=3, metric="l1"
        )
        hits = self.knn(loaded_db, vq, metric=None, field=None, k=10)
        if hits is None:
            return
        keywords = loaded_db.vector_search(
            QUERY_VECTORS[3], field=VECTOR_FIELD, k=3, metric="l1", filter=F("group") == 1
        )
        assert [(h.record.id, h.score) for h in hits] == [(h.record.id, h.score) for h in keywords]

    def test_hits_carry_full_records(self, loaded_db: DatabaseLike) -> None:
        """Each hit's record is the whole stored record, vector included."""
        hits = loaded_db.vector_search(QUERY_VECTORS[1], field=VECTOR_FIELD, k=8)
        full = {r.id: r for r in build_records()}
        assert len(hits) == 8
        self.assert_records_equal([h.record for h in hits], [full[h.record.id] for h in hits])

    def test_hit_records_are_as_found(self, loaded_db: DatabaseLike) -> None:
        """A hit's record is the record as it was when found, however late it is read: later
        updates, moves, deletes and clears do not reach into results already handed out
        (backends may copy records lazily, but then they must copy them before changing)."""
        hits = loaded_db.vector_search(QUERY_VECTORS[0], field=VECTOR_FIELD, k=4)
        batch = loaded_db.vector_search_batch(QUERY_VECTORS[:2], field=VECTOR_FIELD, k=3)
        full = {r.id: r for r in build_records()}
        first, second = hits[0].id, hits[1].id
        changed = Record(
            {"title": "changed", "embedding": _vector_field(QUERY_VECTORS[3])}, id=first
        )
        assert loaded_db.update(first, changed) is True
        assert loaded_db.delete(second) is True  # in-memory rows move to fill the hole
        loaded_db.create(Record({"embedding": _vector_field(QUERY_VECTORS[2])}, id="late"))
        self.assert_records_equal([h.record for h in hits], [full[h.id] for h in hits])
        loaded_db.clear()
        for found in batch:
            self.assert_records_equal([h.record for h in found], [full[h.id] for h in found])

    def test_model_names_must_match(self, loaded_db: DatabaseLike) -> None:
        """model= accepts the field's model and refuses another one."""
        ok = loaded_db.vector_search(QUERY_VECTORS[1], field=VECTOR_FIELD, k=3, model=MODEL_LABEL)
        plain = loaded_db.vector_search(QUERY_VECTORS[1], field=VECTOR_FIELD, k=3)
        assert [h.record.id for h in ok] == [h.record.id for h in plain]
        before = self.snapshot(loaded_db)
        with pytest.raises(MixedEmbeddingModelsError):
            loaded_db.vector_search(QUERY_VECTORS[1], field=VECTOR_FIELD, model="other@1")
        with pytest.raises(MixedEmbeddingModelsError):
            loaded_db.vector_search_batch(
                [QUERY_VECTORS[1]], field=VECTOR_FIELD, model=f"{MODEL_NAME}@2"
            )
        with pytest.raises(MixedEmbeddingModelsError):
            loaded_db.upsert(
                Record({"embedding": _vector_field(QUERY_VECTORS[1], "other")}, id="r01")
            )
        assert self.snapshot(loaded_db) == before

    def test_two_vector_fields_need_a_field_name(self, db: DatabaseLike) -> None:
        """With two vector fields, field= is required; each field has its own dimensions."""
        db.create_batch(
            [
                Record({"a": VectorField([1.0, 0.0]), "b": VectorField([0.0, 1.0, 0.0])}, id="x"),
                Record({"a": VectorField([0.0, 1.0])}, id="y"),
            ]
        )
        with pytest.raises(QueryError):
            db.vector_search([1.0, 0.0])
        hits_a = db.vector_search([1.0, 0.0], field="a", metric="euclidean")
        assert [h.record.id for h in hits_a] == ["x", "y"]
        hits_b = db.vector_search([0.0, 1.0, 0.0], field="b", metric="euclidean")
        assert [h.record.id for h in hits_b] == ["x"]
        with pytest.raises(DimensionMismatchError):
            db.vector_search([1.0, 0.0], field="b")
        with pytest.raises(UnknownFieldError):
            db.vector_search([1.0, 0.0], field="c")

    def test_declared_vector_field(self, db: DatabaseLike) -> None:
        """A declared field fixes dimensions and metric before any data arrives."""
        db.declare_vector_field("v", VectorConfig(3, DistanceMetric.DOT_PRODUCT))
        assert db.vector_fields()["v"].dimensions == 3
        assert db.vector_search([1.0, 2.0, 3.0], field="v") == []
        with pytest.raises(DimensionMismatchError):
            db.create(Record({"v": VectorField([1.0, 2.0])}, id="a"))
        db.create_batch(
            [Record({"v": VectorField([1.0, 0.0, 0.0])}, id="a"),
             Record({"v": VectorField([3.0, 0.0, 0.0])}, id="b")]
        )  # fmt: skip
        hits = db.vector_search([1.0, 1.0, 1.0], field="v")
        assert [(h.record.id, h.score, h.distance) for h in hits] == [
            ("b", 3.0, -3.0),
            ("a", 1.0, -1.0),
        ]

    # == bad input ================================================================================
    @pytest.mark.parametrize("dims", [1, DIM - 1, DIM + 1])
    def test_wrong_query_dimension(self, loaded_db: DatabaseLike, dims: int) -> None:
        """A query vector of the wrong length raises DimensionMismatchError."""
        before = self.snapshot(loaded_db)
        with pytest.raises(DimensionMismatchError):
            loaded_db.vector_search([0.5] * dims, field=VECTOR_FIELD)
        with pytest.raises(DimensionMismatchError):
            loaded_db.vector_search([0.5] * dims)
        with pytest.raises(DimensionMismatchError):
            loaded_db.vector_search_batch([[0.5] * dims], field=VECTOR_FIELD)
        assert self.snapshot(loaded_db) == before

    @pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e39])
    def test_non_finite_query(self, loaded_db: DatabaseLike, bad: float) -> None:
        """NaN, infinite (or float32-overflowing) query values raise InvalidVectorError."""
        before = self.snapshot(loaded_db)
        query = [0.5] * DIM
        query[-1] = bad
        with pytest.raises(InvalidVectorError):
            loaded_db.vector_search(query, field=VECTOR_FIELD)
        with pytest.raises(InvalidVectorError):
            loaded_db.vector_search_batch([QUERY_VECTORS[0], query], field=VECTOR_FIELD)
        assert self.snapshot(loaded_db) == before

    def test_malformed_query_vectors(self, loaded_db: DatabaseLike) -> None:
        """Empty, nested, textual and ragged query vectors are refused with typed errors."""
        before = self.snapshot(loaded_db)
        for bad in ([], [[0.5] * DIM], "abc", [0.5] * (DIM - 1) + ["x"]):
            with pytest.raises(InvalidVectorError):
                loaded_db.vector_search(bad, field=VECTOR_FIELD)
        with pytest.raises(ValidationError):
            loaded_db.vector_search_batch([[0.5] * DIM, [0.5] * 3], field=VECTOR_FIELD)
        assert self.snapshot(loaded_db) == before

    @pytest.mark.parametrize("metric", ["cosinus", "hamming", "", 3])
    def test_unknown_metric(self, loaded_db: DatabaseLike, metric: Any) -> None:
        """An unknown metric name raises InvalidMetricError (a QueryError)."""
        before = self.snapshot(loaded_db)
        with pytest.raises(InvalidMetricError):
            loaded_db.vector_search(QUERY_VECTORS[0], field=VECTOR_FIELD, metric=metric)
        with pytest.raises(InvalidMetricError):
            loaded_db.vector_search_batch([QUERY_VECTORS[0]], field=VECTOR_FIELD, metric=metric)
        assert self.snapshot(loaded_db) == before

    @pytest.mark.parametrize("op", ["~=", "regex", "contains", "", "EQUALS"])
    def test_unknown_operator(self, loaded_db: DatabaseLike, op: str) -> None:
        """An unknown operator raises UnknownOperatorError from the builder and from dicts."""
        before = self.snapshot(loaded_db)
        with pytest.raises(UnknownOperatorError):
            Query().filter("num", op, 1)
        as_dict = {"and": [{"field": "num", "op": ">", "value": 0},
                           {"field": "num", "op": op, "value": 1}]}  # fmt: skip
        with pytest.raises(UnknownOperatorError):
            loaded_db.search(as_dict)
        with pytest.raises(UnknownOperatorError):
            loaded_db.count(as_dict)
        with pytest.raises(UnknownOperatorError):
            list(loaded_db.stream(as_dict))
        with pytest.raises(UnknownOperatorError):
            loaded_db.vector_search(QUERY_VECTORS[0], field=VECTOR_FIELD, filter=as_dict)
        assert self.snapshot(loaded_db) == before

    @pytest.mark.parametrize(
        ("name", "data"), BAD_FILTER_DICTS, ids=[b[0] for b in BAD_FILTER_DICTS]
    )
    def test_malformed_query_dict(self, loaded_db: DatabaseLike, name: str, data: Any) -> None:
        """Malformed filter and query dicts raise QueryError and change nothing."""
        before = self.snapshot(loaded_db)
        with pytest.raises(QueryError):
            loaded_db.search(data)
        with pytest.raises(QueryError):
            loaded_db.count(data)
        if not name.startswith("query-"):
            with pytest.raises(QueryError):
                loaded_db.vector_search(QUERY_VECTORS[0], field=VECTOR_FIELD, filter=data)
        assert self.snapshot(loaded_db) == before

    def test_malformed_builder_calls(self) -> None:
        """The builders validate too: None values, unordered booleans, bad paging."""
        with pytest.raises(QueryError):
            Query().filter("num", "=", None)
        with pytest.raises(QueryError):
            F("flag") > True  # noqa: B015
        with pytest.raises(QueryError):
            Query().limit(-1)
        with pytest.raises(QueryError):
            Query().sort("num", nulls="middle")  # type: ignore[arg-type]
        with pytest.raises(QueryError):
            Query().select("meta.author")

    def test_unknown_vector_field(self, loaded_db: DatabaseLike) -> None:
        """Naming a field that holds no vectors raises UnknownFieldError."""
        before = self.snapshot(loaded_db)
        for name in ("nope", "title"):
            with pytest.raises(UnknownFieldError):
                loaded_db.vector_search(QUERY_VECTORS[0], field=name)
            with pytest.raises(UnknownFieldError):
                loaded_db.vector_search_batch([QUERY_VECTORS[0]], field=name)
        assert self.snapshot(loaded_db) == before

    @pytest.mark.parametrize("k", [0, -1, True, 2.5, "3"])
    def test_bad_k(self, loaded_db: DatabaseLike, k: Any) -> None:
        """k must be an int >= 1."""
        with pytest.raises(QueryError):
            loaded_db.vector_search(QUERY_VECTORS[0], field=VECTOR_FIELD, k=k)

    def test_vector_filter_must_be_filter_only(self, loaded_db: DatabaseLike) -> None:
        """A filter query with sort/limit would be silently ignored by kNN, so it is refused."""
        with pytest.raises(QueryError):
            loaded_db.vector_search(
                QUERY_VECTORS[0], field=VECTOR_FIELD, filter=Query(F("num") > 0).limit(3)
            )
        with pytest.raises(QueryError):
            loaded_db.vector_search(QUERY_VECTORS[0], field=VECTOR_FIELD, score_threshold=math.nan)

    # == lifecycle ================================================================================
    def test_closed_database_refuses_every_call(self, loaded_db: DatabaseLike) -> None:
        """After close(), every data call raises DatabaseClosedError; closing again is fine."""
        loaded_db.close()
        loaded_db.close()
        rec = Record({"title": "late"}, id="late")
        calls: list[Callable[[], object]] = [
            lambda: loaded_db.create(rec),
            lambda: loaded_db.create_batch([rec]),
            lambda: loaded_db.read("r01"),
            lambda: loaded_db.read_batch(["r01"]),
            lambda: loaded_db.exists("r01"),
            lambda: loaded_db.update("r01", rec),
            lambda: loaded_db.update_batch([rec]),
            lambda: loaded_db.upsert(rec),
            lambda: loaded_db.upsert_batch([rec]),
            lambda: loaded_db.delete("r01"),
            lambda: loaded_db.delete_batch(["r01"]),
            lambda: loaded_db.clear(),
            lambda: loaded_db.search(Query()),
            lambda: loaded_db.count(),
            lambda: list(loaded_db.stream()),
            lambda: loaded_db.vector_search(QUERY_VECTORS[0], field=VECTOR_FIELD),
            lambda: loaded_db.vector_search_batch([QUERY_VECTORS[0]], field=VECTOR_FIELD),
            lambda: loaded_db.declare_vector_field("w", VectorConfig(2)),
        ]
        for call in calls:
            with pytest.raises(DatabaseClosedError):
                call()

    def test_closed_database_refuses_empty_batches(self, loaded_db: DatabaseLike) -> None:
        """Even calls with nothing to do refuse once closed (no silent success)."""
        loaded_db.close()
        with pytest.raises(DatabaseClosedError):
            loaded_db.vector_search_batch([], field=VECTOR_FIELD)
        with pytest.raises(DatabaseClosedError):
            loaded_db.create_batch([])

    def test_context_manager_closes(self, db: DatabaseLike) -> None:
        """``with db:`` yields the database and closes it on exit, also on error."""
        with db as same:
            assert same is db
            same.create(Record({"title": "inside"}, id="in"))
            assert same.count() == 1
        with pytest.raises(DatabaseClosedError):
            db.count()

    def test_context_manager_closes_on_error(self, db: DatabaseLike) -> None:
        """An exception inside ``with`` propagates and the database is closed."""
        with pytest.raises(KeyError), db:
            raise KeyError("boom")
        with pytest.raises(DatabaseClosedError):
            db.read("x")
