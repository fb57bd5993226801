"""Vector search: every metric (run or refused), filters applied before ranking, thresholds, ties,
batches, provenance checks, and typed errors for bad query vectors, metrics, fields and k.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from ...capabilities import Feature
from ...errors import (
    QueryError,
    UnknownFieldError,
    UnsupportedError,
    UnsupportedMetricError,
    UnsupportedOperatorError,
    ValidationError,
)
from ...fields import VectorField
from ...query import F, Filter, Query, filter_to_dict
from ...records import Record
from ...vector.exceptions import (
    DimensionMismatchError,
    InvalidVectorError,
    MixedEmbeddingModelsError,
)
from ...vector.types import DistanceMetric, InvalidMetricError, VectorConfig, VectorSearchResult
from ..adapter import DatabaseLike
from ..assertions import assert_hits
from ..cases import is_not
from ..dataset import (
    DIM,
    DOCS,
    IDS,
    MODEL_LABEL,
    MODEL_NAME,
    QUERY_VECTORS,
    VECTOR_FIELD,
    Doc,
    build_records,
    expected_knn,
    has,
    kind,
)
from .base import ConformanceBase
from .helpers import vector_field

__all__ = ["METRICS", "METRIC_PARAMS", "VECTOR_FILTERS", "VectorSearchTests"]

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
    ("flag-not-true", is_not("flag", True), lambda d: not has(d, "flag", lambda v: v is True)),
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


class VectorSearchTests(ConformanceBase):
    """kNN results agree with a float64 numpy oracle: ids, order, scores and distances."""

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

    # == vector search ==

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
            {"title": "changed", "embedding": vector_field(QUERY_VECTORS[3])}, id=first
        )
        assert loaded_db.update(first, changed) is True
        assert loaded_db.delete(second) is True  # in-memory rows move to fill the hole
        loaded_db.create(Record({"embedding": vector_field(QUERY_VECTORS[2])}, id="late"))
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
                Record({"embedding": vector_field(QUERY_VECTORS[1], "other")}, id="r01")
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

    # == bad vector input ==

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
