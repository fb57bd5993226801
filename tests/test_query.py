"""The query language as pure data: building, validation, lossless dict/JSON form."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from dataknobs_data import (
    And,
    Condition,
    F,
    Not,
    Operator,
    Or,
    Query,
    QueryError,
    SortSpec,
    UnknownOperatorError,
    VectorQuery,
    all_of,
    any_of,
    not_,
)
from dataknobs_data.query import parse_filter
from dataknobs_data.vector import DistanceMetric, InvalidMetricError
from dataknobs_data.vector.exceptions import InvalidVectorError


def test_every_operator_string_parses() -> None:
    """The operator strings of API.md map onto the Operator enum, plus common aliases."""
    names = ["=", "!=", ">", ">=", "<", "<=", "in", "not_in", "between", "like", "not_like"]
    names += ["starts_with", "exists", "not_exists"]
    assert [Operator.parse(n).value for n in names] == names
    assert Operator.parse("==") is Operator.EQ and Operator.parse("NOT IN") is Operator.NOT_IN
    with pytest.raises(UnknownOperatorError, match="valid operators"):
        Operator.parse("~=")


def test_filter_builder_and_nesting() -> None:
    """filter() ANDs; F, any_of and not_ build exactly the tree written."""
    q = Query().filter("year", ">=", 2020).filter("tags", "in", ["time"])
    assert q.condition == And(
        (Condition("year", Operator.GTE, 2020), Condition("tags", Operator.IN, ("time",)))
    )
    tree = (F("a") == 1) | ~(F("b") > 2) & F("c").exists()
    assert tree == Or(
        (
            Condition("a", Operator.EQ, 1),
            And((Not(Condition("b", Operator.GT, 2)), Condition("c", Operator.EXISTS))),
        )
    )
    assert not_(not_(Condition.make("a", "=", 1))) == Condition("a", Operator.EQ, 1)
    assert all_of(F("a") == 1) == Condition("a", Operator.EQ, 1)
    flat = any_of(any_of(F("a") == 1, F("b") == 2), F("c") == 3)
    assert isinstance(flat, Or) and len(flat.children) == 3


def test_query_is_immutable() -> None:
    """Builder methods return new queries, so a shared base is never changed."""
    base = Query().filter("a", "=", 1)
    refined = base.sort("b").limit(5)
    assert base.sort_by == () and base.take is None
    assert refined.take == 5 and refined.sort_by == (SortSpec("b"),)


@pytest.mark.parametrize(
    ("field", "op", "value", "problem"),
    [
        ("a", "=", None, "exists"),
        ("a", ">", True, "no order"),
        ("a", "=", float("nan"), "finite"),
        ("a", "=", 2**64, "64 bits"),
        ("a", "=", {"x": 1}, "not a filter value"),
        ("a", "in", "abc", "list"),
        ("a", "between", [1], "low, high"),
        ("a", "between", [2, 1], "> high"),
        ("a", "between", [1, "z"], "differ in type"),
        ("a", "like", 5, "string pattern"),
        ("a", "like", "ab\\", "lone"),
        ("a", "exists", 1, "takes no value"),
        ("", "=", 1, "non-empty"),
        ("a..b", "=", 1, "malformed"),
        ("a._id", "=", 1, "record id"),
    ],
)
def test_bad_conditions_raise_query_error(field: str, op: str, value: object, problem: str) -> None:
    """Malformed conditions are refused at the API boundary with a specific message."""
    with pytest.raises(QueryError, match=problem):
        Query().filter(field, op, value)


def test_values_are_normalised() -> None:
    """numpy scalars become Python values and datetimes aware UTC."""
    c = Condition.make("a", "=", np.int32(3))
    assert c.value == 3 and type(c.value) is int
    d = Condition.make("t", ">", datetime(2020, 1, 1))
    assert d.value == datetime(2020, 1, 1, tzinfo=UTC)


def _sample_query() -> Query:
    tree = any_of(
        all_of(F("year").between(2000, 2010), F("meta.author").starts_with("A")),
        not_(F("tags").is_in(["x", "y"])),
        F("t") >= datetime(2020, 1, 1, tzinfo=UTC),
        F("title").like("%date\\_%"),
        F("gone").not_exists(),
    )
    return Query(tree).sort("year", descending=True, nulls="first").sort("_id").limit(7).offset(3)


def test_query_dict_round_trip_through_json() -> None:
    """to_dict -> JSON -> from_dict gives an equal query (datetimes and tuples included)."""
    q = _sample_query().select("title", "year")
    back = Query.from_dict(json.loads(json.dumps(q.to_dict())))
    assert back == q
    assert back.condition == q.condition


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ({"field": "a", "op": "~", "value": 1}, "unknown operator"),
        ({"field": "a"}, "expected"),
        ({"and": []}, "non-empty list"),
        ({"and": [{"field": "a", "op": "=", "value": 1}], "or": []}, "expected"),
        ({"not": {"field": "a", "op": "=", "value": {"$x": 1}}}, "not filter values"),
        ({"field": "a", "op": "=", "value": {"$datetime": "nope"}}, "bad ISO"),
        ([1, 2], "expected an object"),
    ],
)
def test_malformed_filter_dicts(doc: object, problem: str) -> None:
    """Malformed filter documents raise QueryError naming where the problem is."""
    with pytest.raises(QueryError, match=problem):
        parse_filter(doc)


@pytest.mark.parametrize(
    "doc",
    [
        {"filter": None, "bogus": 1},
        {"sort": "year"},
        {"sort": [{"field": "a", "order": "up"}]},
        {"limit": -1},
        {"offset": 1.5},
        {"fields": "title"},
        {"sort": [{"field": "a", "nulls": "middle"}]},
    ],
)
def test_malformed_query_dicts(doc: dict[str, object]) -> None:
    """Malformed query documents raise QueryError."""
    with pytest.raises(QueryError):
        Query.from_dict(doc)


def test_metric_parsing_and_l2_alias() -> None:
    """L2 is the same member as EUCLIDEAN; common spellings parse; unknown ones fail."""
    assert DistanceMetric.L2 is DistanceMetric.EUCLIDEAN
    assert DistanceMetric.parse("l2") is DistanceMetric.EUCLIDEAN
    assert DistanceMetric.parse("IP") is DistanceMetric.DOT_PRODUCT
    assert DistanceMetric.parse("manhattan") is DistanceMetric.L1
    with pytest.raises(InvalidMetricError, match="valid metrics"):
        DistanceMetric.parse("hamming")


def test_vector_query_validation_and_round_trip() -> None:
    """VectorQuery validates every option and round-trips through JSON."""
    vq = Query().filter("year", ">", 2000).similar_to([0.5, 1.0], field="emb", k=3, metric="l1")
    back = VectorQuery.from_dict(json.loads(json.dumps(vq.to_dict())))
    assert back == vq and back.metric is DistanceMetric.L1
    with pytest.raises(QueryError, match="k must"):
        VectorQuery.make([1.0], k=0)
    with pytest.raises(QueryError, match="score_threshold"):
        VectorQuery.make([1.0], score_threshold=float("nan"))
    with pytest.raises(InvalidVectorError):
        VectorQuery.make([float("nan")])
    with pytest.raises(QueryError, match="keeps only the filter"):
        Query().limit(3).similar_to([1.0])
    with pytest.raises(QueryError, match="top-level"):
        VectorQuery.make([1.0], field="a.b")
