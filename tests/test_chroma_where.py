"""The chroma filter compiler and metadata encoding as pure functions, plus the engine facts
they rely on, checked against a real (in-memory) chroma."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from dataknobs_data.engines.chroma.encode import (
    ID_KEY,
    TAGS,
    datetime_key,
    encode_metadata,
    number_key,
)
from dataknobs_data.engines.chroma.where import (
    FALSE_WHERE,
    WherePlan,
    compile_where,
    plan_where,
)
from dataknobs_data.errors import FieldValidationError, UnsupportedOperatorError
from dataknobs_data.query import F, Filter, not_
from dataknobs_data.testing import requires_extra

K1 = number_key(1.0)
K2 = number_key(2.0)
T2020 = datetime(2020, 1, 1, tzinfo=UTC)


def _or(*items: Any) -> dict[str, Any]:
    return {"$or": list(items)}


def _and(*items: Any) -> dict[str, Any]:
    return {"$and": list(items)}


EXACT: list[tuple[str, Filter, dict[str, Any] | None]] = [
    ("eq-int", F("a") == 1, _or({"n:a": {"$eq": K1}}, {"n[]:a": {"$contains": K1}})),
    ("eq-float-same-key", F("a") == 1.0, _or({"n:a": {"$eq": K1}}, {"n[]:a": {"$contains": K1}})),
    ("eq-bool", F("a") == True, _or({"b:a": {"$eq": True}}, {"b[]:a": {"$contains": True}})),  # noqa: E712
    ("eq-str", F("m.x") == "v", _or({"s:m.x": {"$eq": "v"}}, {"s[]:m.x": {"$contains": "v"}})),
    (
        "ne-is-complement",
        F("a") != "x",
        _and({"s:a": {"$ne": "x"}}, {"s[]:a": {"$not_contains": "x"}}),
    ),
    ("gt-number", F("a") > 2, _or({"n:a": {"$gt": K2}}, {"n>:a": {"$gt": K2}})),
    ("lte-number-uses-min", F("a") <= 2, _or({"n:a": {"$lte": K2}}, {"n<:a": {"$lte": K2}})),
    (
        "not-gt-needs-absence",
        not_(F("a") > 2),
        _and(
            _or({"n:a": {"$lte": K2}}, {TAGS: {"$not_contains": "n:a"}}),
            _or({"n>:a": {"$lte": K2}}, {TAGS: {"$not_contains": "n[]:a"}}),
        ),
    ),
    (
        "datetime-as-microseconds",
        F("t") >= T2020,
        _or(
            {"d:t": {"$gte": datetime_key(T2020)}},
            {"d>:t": {"$gte": datetime_key(T2020)}},
        ),
    ),
    ("exists", F("a").exists(), {TAGS: {"$contains": "e:a"}}),
    ("not-exists", F("a").not_exists(), {TAGS: {"$not_contains": "e:a"}}),
    ("id-eq", F("_id") == "r1", {ID_KEY: {"$eq": "r1"}}),
    ("id-in", F("_id").is_in(["r1", "r2", 3]), {ID_KEY: {"$in": ["r1", "r2"]}}),
    ("id-exists-is-everything", F("_id").exists(), None),
    ("id-number-never", F("_id") == 3, FALSE_WHERE),
    ("in-empty", F("a").is_in([]), FALSE_WHERE),
    ("not-in-empty", F("a").not_in([]), None),
    (
        "in-kinds-apart",
        F("a").is_in([1, "1", True]),
        _or(
            {"n:a": {"$eq": K1}},
            {"n[]:a": {"$contains": K1}},
            {"s:a": {"$eq": "1"}},
            {"s[]:a": {"$contains": "1"}},
            {"b:a": {"$eq": True}},
            {"b[]:a": {"$contains": True}},
        ),
    ),
    (
        "in-dedupes-1-and-1.0",
        F("a").is_in([1, 1.0]),
        _or({"n:a": {"$eq": K1}}, {"n[]:a": {"$contains": K1}}),
    ),
    ("eq-int-beyond-float64-never", F("a") == 2**53 + 1, FALSE_WHERE),
    (
        # 2**53 + 1 rounds down to 2**53, so "> 2**53 + 1" is "> 2**53" among float64 values
        "gt-int-beyond-float64",
        F("a") > 2**53 + 1,
        _or({"n:a": {"$gt": number_key(2.0**53)}}, {"n>:a": {"$gt": number_key(2.0**53)}}),
    ),
    (
        "lt-int-beyond-float64",
        F("a") < 2**53 + 1,
        _or({"n:a": {"$lte": number_key(2.0**53)}}, {"n<:a": {"$lte": number_key(2.0**53)}}),
    ),
    ("and-folds-false", (F("a") == 1) & F("a").is_in([]), FALSE_WHERE),
    ("or-folds-true", (F("a") == 1) | F("_id").exists(), None),
]


@pytest.mark.parametrize(("name", "node", "where"), EXACT, ids=[c[0] for c in EXACT])
def test_exact_compilation(name: str, node: Filter, where: dict[str, Any] | None) -> None:
    """Each exact filter compiles to exactly this where, and plan_where agrees."""
    assert compile_where(node) == where
    plan = plan_where(node)
    assert plan.exact
    assert plan.empty == (where == FALSE_WHERE)
    if not plan.empty:
        assert plan.where == where


HAS_STR = _or({TAGS: {"$contains": "s:s"}}, {TAGS: {"$contains": "s[]:s"}})
INEXACT: list[tuple[str, Filter, dict[str, Any] | None]] = [
    ("string-gt", F("s") > "a", HAS_STR),
    ("like", F("s").like("a%"), HAS_STR),
    ("starts-with", F("s").starts_with("a"), HAS_STR),
    ("not-like-is-everything", F("s").not_like("a%"), None),
    (
        "between-numbers",
        F("a").between(1, 2),
        _or(
            _and({"n:a": {"$gte": K1}}, {"n:a": {"$lte": K2}}),
            _and({"n>:a": {"$gte": K1}}, {"n<:a": {"$lte": K2}}),
        ),
    ),
    ("string-lt-on-id", F("_id") < "m", None),
    ("and-keeps-exact-part", (F("a") == 1) & F("s").like("x%"), _and(
        _or({"n:a": {"$eq": K1}}, {"n[]:a": {"$contains": K1}}), HAS_STR
    )),
]  # fmt: skip


@pytest.mark.parametrize(("name", "node", "upper"), INEXACT, ids=[c[0] for c in INEXACT])
def test_inexact_filters_are_bounded_or_refused(
    name: str, node: Filter, upper: dict[str, Any] | None
) -> None:
    """What chroma cannot decide alone: the strict compiler refuses it, the planner narrows."""
    with pytest.raises(UnsupportedOperatorError):
        compile_where(node)
    assert plan_where(node) == WherePlan(upper, exact=False)


def test_no_filter() -> None:
    assert compile_where(None) is None
    assert plan_where(None) == WherePlan(None, True)


def _depth(where: Any) -> int:
    if isinstance(where, dict) and set(where) <= {"$and", "$or"} and where:
        (items,) = where.values()
        return 1 + max(_depth(i) for i in items)
    return 0


def test_large_in_is_nested_in_small_groups() -> None:
    """A 2000-value IN stays within chroma's expression limits (16 children per level)."""
    where = compile_where(F("a").is_in(list(range(2000))))
    assert where is not None

    def widths(node: Any) -> Iterator[int]:
        if isinstance(node, dict) and set(node) <= {"$and", "$or"}:
            (items,) = node.values()
            yield len(items)
            for item in items:
                yield from widths(item)

    assert max(widths(where)) <= 16
    assert _depth(where) <= 4


def test_number_key_orders_every_float() -> None:
    """number_key is strictly monotonic (with -0.0 == 0.0) across signs, subnormals, extremes."""
    values = sorted(
        {-math.inf, math.inf} ^ {-math.inf, math.inf}
        | {0.0, 5e-324, -5e-324, 1e-300, -1e-300, 0.1, -0.1, 1.0, 2.0**53, -(2.0**53)}
        | {1e308, -1e308, 1.7976931348623157e308, -1.7976931348623157e308}
        | {float(x) for x in np.random.default_rng(0).normal(size=200) * 1e6}
    )
    keys = [number_key(v) for v in values]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    assert number_key(-0.0) == number_key(0.0) == 0
    assert all(-(2**63) <= k < 2**63 for k in keys)


def test_encode_metadata() -> None:
    """Typed keys per kind, list keys with min/max, tags for existence and presence."""
    when = datetime(2021, 6, 1, tzinfo=UTC)
    meta = encode_metadata(
        "r1",
        [
            ("n", 3),
            ("flag", True),
            ("s", "x"),
            ("t", when),
            ("tags", ["a", 2, 1.5, None, [1], {"x": 1}, True]),
            ("empty", []),
            ("nulls", [None]),
            ("m", {"x": {"y": 1}, "a.b": 2, "": 3, "z": None}),
            ("vec", b""),
            ("none", None),
        ],
    )
    assert meta[ID_KEY] == "r1"
    assert meta["n:n"] == number_key(3.0)
    assert meta["b:flag"] is True
    assert meta["s:s"] == "x"
    assert meta["d:t"] == datetime_key(when)
    assert meta["s[]:tags"] == ["a"]
    assert meta["n[]:tags"] == [number_key(2.0), number_key(1.5)]
    assert (meta["n<:tags"], meta["n>:tags"]) == (number_key(1.5), number_key(2.0))
    assert meta["b[]:tags"] == [True]
    assert meta["n:m.x.y"] == number_key(1.0)
    assert not any(k.endswith(("a.b", "m.", "none", "empty", "nulls", "m.z")) for k in meta)
    tags = set(meta[TAGS])
    assert {"e:n", "e:tags", "e:m", "e:m.x", "e:m.x.y", "e:vec", "n:n", "n[]:tags"} <= tags
    assert not {"e:empty", "e:nulls", "e:none", "e:m.z"} & tags


def test_integers_beyond_float64_are_refused() -> None:
    with pytest.raises(FieldValidationError, match="2\\*\\*53"):
        encode_metadata("r", [("big", 2**53 + 1)])
    with pytest.raises(FieldValidationError):
        encode_metadata("r", [("m", {"x": [1, 2**60 + 1]})])
    assert encode_metadata("r", [("big", 2**60)])["n:big"] == number_key(2.0**60)


# -- the engine facts the compiler relies on (real chroma, in memory) ---------------------------
needs_chroma = requires_extra("chroma")


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    from dataknobs_data.engines.chroma.engine import drop_collection, open_client, release_client

    client = open_client(None)
    col = client.create_collection(f"facts-{uuid.uuid4().hex}", embedding_function=None)
    col.add(
        ids=["int", "float", "bool", "missing", "list", "ulp"],
        embeddings=np.ones((6, 2), dtype=np.float32),
        metadatas=[
            {"k": 1, "s:_id": "int"},
            {"k": 1.0, "s:_id": "float"},
            {"k": True, "s:_id": "bool"},
            {"other": 1, "s:_id": "missing"},
            {"k": [1, 2], "s:_id": "list"},
            {"k": 0.1, "s:_id": "ulp"},
        ],
    )
    yield col
    drop_collection(client, col)
    release_client(None)


def _ids(col: Any, where: dict[str, Any]) -> list[str]:
    return sorted(col.get(where=where, include=[])["ids"])


@needs_chroma
def test_engine_negations_match_missing_keys(engine: Any) -> None:
    """$ne, $nin and $not_contains match records without the key: complements."""
    assert "missing" in _ids(engine, {"k": {"$ne": 1}})
    assert "missing" in _ids(engine, {"k": {"$nin": [1]}})
    assert "missing" in _ids(engine, {"k": {"$not_contains": 1}})
    assert "missing" not in _ids(engine, {"k": {"$lt": 100}})  # ordering does not: needs a tag


@needs_chroma
def test_engine_kinds_and_lists(engine: Any) -> None:
    """bool is not int; $in and ordering ignore list values; $contains looks inside lists."""
    assert _ids(engine, {"k": {"$eq": True}}) == ["bool"]
    assert _ids(engine, {"k": {"$eq": 1}}) == ["float", "int"]
    assert "list" not in _ids(engine, {"k": {"$in": [1]}})
    assert "list" not in _ids(engine, {"k": {"$gt": 0}})
    assert _ids(engine, {"k": {"$contains": 2}}) == ["list"]


@needs_chroma
def test_encoded_floats_compare_exactly_in_engine() -> None:
    """Neighbouring floats stay apart through the int keys (raw float metadata may not)."""
    from dataknobs_data.engines.chroma.engine import drop_collection, open_client, release_client

    client = open_client(None)
    col = client.create_collection(f"ulp-{uuid.uuid4().hex}", embedding_function=None)
    values = [9470809.631292421, 10.425133694426776, 1e15 + 0.5, 0.1, -0.1]
    neighbours = [float(np.nextafter(v, np.inf)) for v in values]
    everything = values + neighbours
    try:
        col.add(
            ids=[f"v{i}" for i in range(len(everything))],
            embeddings=np.ones((len(everything), 2), dtype=np.float32),
            metadatas=[encode_metadata(f"v{i}", [("x", v)]) for i, v in enumerate(everything)],
        )
        for i, v in enumerate(everything):
            where = compile_where(F("x") == v)
            assert where is not None
            assert _ids(col, where) == [f"v{i}"]
            greater = compile_where(F("x") > v)
            assert greater is not None
            expected = sorted(f"v{j}" for j, w in enumerate(everything) if w > v)
            assert _ids(col, greater) == expected
    finally:
        drop_collection(client, col)
        release_client(None)
