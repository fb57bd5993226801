"""Differential test: random stores and queries, each backend against a naive Python oracle.

The oracle below is written from the semantics in the :mod:`dataknobs_data.query` docstring
alone (it does not import ``dataknobs_data.evaluate`` or the memory backend's mask compiler):
plain loops over plain values, no numpy, no indexes. Hypothesis generates small stores with
mixed kinds per field, lists, nested objects, ``None``, missing fields, naive and aware
datetimes and 4-d vectors (with duplicates and zero vectors), then random filter trees (depth
<= 3, every operator), sorts, pages, projections and vector queries (every metric, k,
thresholds, filters). Runs are derandomized so CI sees the same cases every time: 200 stores per
(backend, shell) for the filter test and 170 for the vector test by default;
``DATAKNOBS_DIFFERENTIAL_EXAMPLES=N`` runs N (and 5/6 of N) for a longer search.

A backend joins by adding its spec to ``BACKENDS`` (as in ``test_conformance.py``).
"""

from __future__ import annotations

import functools
import math
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataknobs_data import (
    Record,
    UnknownFieldError,
    UnsupportedMetricError,
    UnsupportedOperatorError,
    VectorField,
)
from dataknobs_data.capabilities import walk_conditions
from dataknobs_data.errors import QueryError
from dataknobs_data.query import And, Condition, Filter, Not, Operator, Or, Query
from dataknobs_data.testing import (
    CHROMA,
    FAISS,
    MEMORY,
    SQLITE,
    BackendSpec,
    DatabaseLike,
    Mode,
    assert_hits,
    canonical,
    database_params,
    open_database,
    param_id,
    server_specs,
)
from dataknobs_data.vector.types import DistanceMetric

BACKENDS: list[BackendSpec] = [
    MEMORY,
    SQLITE,
    FAISS,
    CHROMA,
    *server_specs(),
]
PARAMS = database_params(BACKENDS)

#: stores per (backend, shell), 3 queries each (see the module docstring)
SEARCH_EXAMPLES = int(os.environ.get("DATAKNOBS_DIFFERENTIAL_EXAMPLES", "200"))
VECTOR_EXAMPLES = SEARCH_EXAMPLES * 5 // 6
COMMON = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# == generated data ==
FIELDS = ("a", "b", "m")
KEYS = ("x", "y")
# Top-level fields come up more often, so most filters select some records but not all.
PATHS = ("a", "a", "a", "b", "b", "b", "m", "m.x", "m.y", "a.x", "m.x.y", "_id", "nope", "v")
SORT_PATHS = ("a", "b", "m", "m.x", "m.x.y", "_id", "nope", "v")
ID_POOL = (
    "0", "00", "1", "10", "2", "A", "B", "Z", "_", "a", "a1", "a10", "a2", "aa", "b", "ba",
    "r01", "r1", "r10", "x y", "x%y", "x_y", "zz", "~", "À", "é", "ü", "ß", "Ω", "日", "本", "🙂",
)  # fmt: skip
UTC_DATES = (
    datetime(2020, 1, 1, tzinfo=UTC),
    datetime(2020, 1, 1, 12, 30, tzinfo=UTC),
    datetime(2021, 6, 1, tzinfo=UTC),
    datetime(1999, 12, 31, 23, 59, tzinfo=UTC),
)
PLUS3 = timezone(timedelta(hours=3))


def _spellings(d: datetime) -> list[datetime]:
    """The same instant as aware UTC, naive (read as UTC), and +03:00."""
    return [d, d.replace(tzinfo=None), d.astimezone(PLUS3)]


DATES = [s for d in UTC_DATES for s in _spellings(d)]
INTS = st.integers(-3, 3)
FLOATS = st.sampled_from([-2.5, -1.0, -0.0, 0.0, 0.5, 1.0, 2.0, 3.5])
STRINGS = st.sampled_from(
    ["", "a", "A", "ab", "aB", "b", "ba", "a%", "a_b", "é", "1", "2", "\\", "%"]
)
BOOLS = st.booleans()
JSON_SCALARS = st.one_of(INTS, FLOATS, STRINGS, BOOLS, st.none())
JSON_LISTS: st.SearchStrategy[list[Any]] = st.lists(
    st.one_of(JSON_SCALARS, st.lists(JSON_SCALARS, max_size=2), st.just({})), max_size=3
)
JSON_OBJECTS = st.dictionaries(
    st.sampled_from(KEYS),
    st.one_of(JSON_SCALARS, JSON_LISTS, st.dictionaries(st.sampled_from(KEYS), JSON_SCALARS)),
    max_size=2,
)
AWKWARD = st.sampled_from([[], [None], [None, None], [[None]], [{}], {}, {"x": None}, [""], ""])
TOP_VALUES = st.one_of(
    INTS, FLOATS, STRINGS, BOOLS, st.sampled_from(DATES), st.none(), JSON_LISTS, JSON_OBJECTS,
    AWKWARD,
)  # fmt: skip
COMPONENTS = st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
VECTORS = st.one_of(
    st.just((0.0, 0.0, 0.0, 0.0)), st.tuples(COMPONENTS, COMPONENTS, COMPONENTS, COMPONENTS)
)


@dataclass(frozen=True)
class Row:
    """One generated record as plain data (``vector`` None: the record has no vector)."""

    id: str
    fields: dict[str, Any]
    vector: tuple[float, ...] | None

    def record(self) -> Record:
        data: dict[str, Any] = dict(self.fields)
        if self.vector is not None:
            data["v"] = VectorField(np.asarray(self.vector, dtype=np.float32))
        return Record(data, id=self.id)


@st.composite
def stores(draw: st.DrawFn) -> list[Row]:
    size = draw(st.integers(0, 25))
    ids = draw(st.permutations(ID_POOL))[:size]
    pool = draw(st.lists(VECTORS, min_size=1, max_size=5))  # few vectors: many duplicates
    rows = []
    for rid in ids:
        fields = draw(st.fixed_dictionaries({}, optional=dict.fromkeys(FIELDS, TOP_VALUES)))
        pick = draw(st.none() | st.integers(0, len(pool) - 1))
        rows.append(Row(rid, fields, None if pick is None else pool[pick]))
    return rows


FILTER_SCALARS = st.one_of(INTS, FLOATS, STRINGS, BOOLS, st.sampled_from(DATES))
ORDERED_SCALARS = st.one_of(INTS, FLOATS, STRINGS, st.sampled_from(DATES))
PATTERNS = st.sampled_from(
    ["%", "", "a%", "%a", "_", "a_", "\\%", "a\\_b", "%\\\\", "%b%", "é%", "A%", "a%b", "__"]
)
PREFIXES = st.sampled_from(["", "a", "A", "a%", "a_", "\\", "é", "ab"])


@st.composite
def bounds(draw: st.DrawFn) -> tuple[Any, Any]:
    kind = draw(st.sampled_from(["num", "str", "dt"]))
    if kind == "dt":
        low, high = draw(st.sampled_from(DATES)), draw(st.sampled_from(DATES))
        return (low, high) if _to_utc(low) <= _to_utc(high) else (high, low)
    values: st.SearchStrategy[Any] = st.one_of(INTS, FLOATS) if kind == "num" else STRINGS
    low, high = draw(values), draw(values)
    return (low, high) if low <= high else (high, low)


@st.composite
def conditions(draw: st.DrawFn) -> Condition:
    path = draw(st.sampled_from(PATHS))
    op = draw(st.sampled_from(list(Operator)))
    value: Any = None
    if op in (Operator.EQ, Operator.NEQ):
        value = draw(FILTER_SCALARS)
    elif op in (Operator.GT, Operator.GTE, Operator.LT, Operator.LTE):
        value = draw(ORDERED_SCALARS)
    elif op in (Operator.IN, Operator.NOT_IN):
        value = draw(st.lists(FILTER_SCALARS, max_size=3))
    elif op is Operator.BETWEEN:
        value = draw(bounds())
    elif op in (Operator.LIKE, Operator.NOT_LIKE):
        value = draw(PATTERNS)
    elif op is Operator.STARTS_WITH:
        value = draw(PREFIXES)
    return Condition.make(path, op, value)


def filters(depth: int) -> st.SearchStrategy[Filter]:
    leaf: st.SearchStrategy[Filter] = conditions()
    if depth == 0:
        return leaf
    sub = filters(depth - 1)
    children = st.lists(sub, min_size=1, max_size=3).map(tuple)
    compound = st.one_of(children.map(And), children.map(Or), sub.map(Not))
    return st.one_of(leaf, compound)  # half of the nodes at each level are leaves


FILTERS = filters(3)


@st.composite
def queries(draw: st.DrawFn, with_vectors: bool = False) -> Query:
    condition = draw(st.none() | FILTERS)
    query = Query(condition)
    if with_vectors:
        return query
    for _ in range(draw(st.integers(0, 3))):
        query = query.sort(
            draw(st.sampled_from(SORT_PATHS)),
            descending=draw(st.booleans()),
            nulls=draw(st.sampled_from(["first", "last"])),
        )
    if draw(st.booleans()):
        query = query.offset(draw(st.integers(0, 6)))
    if draw(st.booleans()):
        query = query.limit(draw(st.integers(0, 10)))
    if draw(st.integers(0, 3)) == 0:
        query = query.select(*draw(st.lists(st.sampled_from(("a", "b", "m", "v", "nope")))))
    return query


METRICS = st.sampled_from(
    [DistanceMetric.COSINE, DistanceMetric.EUCLIDEAN, DistanceMetric.DOT_PRODUCT,
     DistanceMetric.L1, "l2", "ip", "manhattan", "cosine"]
)  # fmt: skip


@dataclass(frozen=True)
class KnnCase:
    vector: tuple[float, ...]
    metric: DistanceMetric | str
    k: int
    threshold: float | None
    filter: Filter | None


@st.composite
def knn_cases(draw: st.DrawFn, rows: Sequence[Row]) -> KnnCase:
    stored = [r.vector for r in rows if r.vector is not None]
    vector = draw(st.sampled_from(stored) | VECTORS) if stored else draw(VECTORS)
    threshold = draw(st.none() | st.sampled_from([-10.0, -1.0, -0.5, 0.0, 0.2, 0.5, 0.9, 1.0, 2.0]))
    return KnnCase(
        vector,
        draw(METRICS),
        draw(st.integers(1, 30)),
        threshold,
        draw(st.sampled_from([None, None]) | FILTERS),
    )


# == the naive oracle ==
class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


ABSENT = _Absent()


def _to_utc(d: datetime) -> datetime:
    return d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)


def o_value(row: Row, path: str) -> Any:
    """Walk a dotted path through JSON objects; anything else in the way means absent."""
    if path == "_id":
        return row.id
    parts = path.split(".")
    if parts[0] == "v":
        current: Any = ABSENT if row.vector is None else ("VECTOR", row.vector)
        return current if len(parts) == 1 else ABSENT
    if parts[0] not in row.fields:
        return ABSENT
    current = row.fields[parts[0]]
    for part in parts[1:]:
        if type(current) is not dict or part not in current:
            return ABSENT
        current = current[part]
    return _to_utc(current) if isinstance(current, datetime) else current


def o_kind(value: Any) -> str | None:
    if value is True or value is False:
        return "bool"
    if type(value) in (int, float):
        return "num"
    if type(value) is str:
        return "str"
    if type(value) is datetime:
        return "dt"
    return None  # None, ABSENT, lists, dicts, vectors


def o_comparable(value: Any) -> list[Any]:
    if type(value) is list:
        return [item for item in value if o_kind(item) is not None]
    return [value] if o_kind(value) is not None else []


def o_like(pattern: str, text: str) -> bool:
    regex = ""
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            regex += re.escape(pattern[i + 1])
            i += 2
            continue
        regex += ".*" if ch == "%" else "." if ch == "_" else re.escape(ch)
        i += 1
    return re.fullmatch(regex, text, flags=re.DOTALL) is not None


def o_positive(op: Operator, target: Any, value: Any) -> bool:
    """One comparable stored value against a positive operator."""
    same = o_kind(target) == o_kind(value)
    if op is Operator.EQ:
        return same and target == value
    if op is Operator.GT:
        return same and target > value
    if op is Operator.GTE:
        return same and target >= value
    if op is Operator.LT:
        return same and target < value
    if op is Operator.LTE:
        return same and target <= value
    if op is Operator.IN:
        return any(o_kind(target) == o_kind(v) and target == v for v in value)
    if op is Operator.BETWEEN:
        low, high = value
        return o_kind(target) == o_kind(low) and low <= target <= high
    if op is Operator.LIKE:
        return o_kind(target) == "str" and o_like(value, target)
    if op is Operator.STARTS_WITH:
        return o_kind(target) == "str" and target.startswith(value)
    raise AssertionError(op)


NEGATIONS = {
    Operator.NEQ: Operator.EQ,
    Operator.NOT_IN: Operator.IN,
    Operator.NOT_LIKE: Operator.LIKE,
    Operator.NOT_EXISTS: Operator.EXISTS,
}


def o_condition(cond: Condition, row: Row) -> bool:
    if cond.op in NEGATIONS:
        positive = Condition(cond.field, NEGATIONS[cond.op], cond.value)
        return not o_condition(positive, row)
    value = o_value(row, cond.field)
    if cond.op is Operator.EXISTS:
        if value is ABSENT or value is None:
            return False
        if type(value) is list:
            return any(item is not None for item in value)
        return True
    return any(o_positive(cond.op, target, cond.value) for target in o_comparable(value))


def o_matches(node: Filter | None, row: Row) -> bool:
    if node is None:
        return True
    if isinstance(node, Condition):
        return o_condition(node, row)
    if isinstance(node, And):
        return all(o_matches(child, row) for child in node.children)
    if isinstance(node, Or):
        return any(o_matches(child, row) for child in node.children)
    if isinstance(node, Not):
        return not o_matches(node.child, row)
    raise AssertionError(node)


KIND_ORDER = {"bool": 0, "num": 1, "str": 2, "dt": 3}


def o_search(rows: Sequence[Row], query: Query) -> list[str]:
    matching = [r for r in rows if o_matches(query.condition, r)]

    def compare(x: Row, y: Row) -> int:
        for spec in query.sort_by:
            vx, vy = o_value(x, spec.field), o_value(y, spec.field)
            kx, ky = o_kind(vx), o_kind(vy)
            if kx is None and ky is None:
                continue
            if kx is None or ky is None:
                x_first = (kx is None) == (spec.nulls == "first")
                return -1 if x_first else 1
            key_x, key_y = (KIND_ORDER[kx], vx), (KIND_ORDER[ky], vy)
            if key_x == key_y:
                continue
            result = -1 if key_x < key_y else 1
            return -result if spec.descending else result
        return (x.id > y.id) - (x.id < y.id)

    ordered = sorted(matching, key=functools.cmp_to_key(compare))
    end = None if query.take is None else query.skip + query.take
    return [r.id for r in ordered[query.skip : end]]


@dataclass(frozen=True)
class OHit:
    id: str
    score: float
    distance: float


def o_knn(rows: Sequence[Row], case: KnnCase) -> list[OHit]:
    metric = DistanceMetric.parse(case.metric)
    q = [float(np.float32(x)) for x in case.vector]
    hits = []
    for row in rows:
        if row.vector is None or not o_matches(case.filter, row):
            continue
        v = [float(np.float32(x)) for x in row.vector]
        if metric is DistanceMetric.COSINE:
            norms = math.sqrt(sum(a * a for a in v)) * math.sqrt(sum(b * b for b in q))
            score = 0.0 if norms == 0 else sum(a * b for a, b in zip(v, q, strict=True)) / norms
            distance = 1.0 - score
        elif metric is DistanceMetric.DOT_PRODUCT:
            score = sum(a * b for a, b in zip(v, q, strict=True))
            distance = -score
        else:
            if metric is DistanceMetric.EUCLIDEAN:
                distance = math.sqrt(sum((a - b) ** 2 for a, b in zip(v, q, strict=True)))
            else:
                distance = sum(abs(a - b) for a, b in zip(v, q, strict=True))
            score = 1.0 / (1.0 + distance)
        hits.append(OHit(row.id, score, distance))
    return sorted(hits, key=lambda h: (-h.score, h.id))


# == the tests ==
def _load(db: DatabaseLike, rows: Sequence[Row]) -> dict[str, Record]:
    records = [r.record() for r in rows]
    assert db.create_batch(records) == [r.id for r in rows]
    return {r.id: r for r in records}


def _subtrees(node: Filter | None) -> list[Filter]:
    if node is None:
        return []
    if isinstance(node, And | Or):
        return [node, *(s for child in node.children for s in _subtrees(child))]
    if isinstance(node, Not):
        return [node, *_subtrees(node.child)]
    return [node]


def _refused(db: DatabaseLike, node: Filter | None) -> bool:
    return bool({c.op for c in walk_conditions(node)} - db.capabilities().operators)


def _check_search(
    db: DatabaseLike, rows: Sequence[Row], given: dict[str, Record], q: Query
) -> None:
    if _refused(db, q.condition):
        with pytest.raises(UnsupportedOperatorError):
            db.search(q)
        return
    expected = o_search(rows, q)
    got = db.search(q)
    assert [r.id for r in got] == expected, f"{q!r}"
    assert db.count(q) == len(expected), f"count {q!r}"
    for rec in got:
        want = given[rec.id]
        if q.projection is not None:
            want = want.project(q.projection)
        assert canonical(rec) == canonical(want)
    for node in _subtrees(q.condition):  # every inner node and leaf on its own, too
        sub = Query(node)
        assert [r.id for r in db.search(sub)] == o_search(rows, sub), f"{sub!r}"


@pytest.mark.parametrize("target", PARAMS, ids=param_id)
@settings(COMMON, max_examples=SEARCH_EXAMPLES)
@given(rows=stores(), qs=st.lists(queries(), min_size=3, max_size=3))
def test_search_and_count_match_oracle(
    target: tuple[BackendSpec, Mode], tmp_path: Path, rows: list[Row], qs: list[Query]
) -> None:
    """search() ids in order, count(), contents and projection agree with the oracle."""
    with open_database(*target, Path(tempfile.mkdtemp(dir=tmp_path))) as db:
        given_records = _load(db, rows)
        for q in qs:
            _check_search(db, rows, given_records, q)


@st.composite
def knn_scenarios(draw: st.DrawFn) -> tuple[list[Row], list[KnnCase]]:
    rows = draw(stores())
    return rows, draw(st.lists(knn_cases(rows), min_size=3, max_size=3))


def _check_knn(db: DatabaseLike, rows: Sequence[Row], case: KnnCase, batch: bool) -> None:
    def call() -> Any:
        options: dict[str, Any] = {
            "field": "v",
            "k": case.k,
            "metric": case.metric,
            "score_threshold": case.threshold,
            "filter": case.filter,
        }
        if batch:
            return db.vector_search_batch([case.vector, case.vector], **options)
        return db.vector_search(case.vector, **options)

    caps = db.capabilities()
    if all(r.vector is None for r in rows):
        with pytest.raises(UnknownFieldError):
            call()
        return
    if DistanceMetric.parse(case.metric) not in caps.metrics:
        with pytest.raises(UnsupportedMetricError):
            call()
        return
    if _refused(db, case.filter):
        with pytest.raises(UnsupportedOperatorError):
            call()
        return
    ranking = o_knn(rows, case)
    results = call() if batch else [call()]
    for hits in results:
        assert_hits(hits, ranking, k=case.k, score_threshold=case.threshold, context=repr(case))


@pytest.mark.parametrize("target", PARAMS, ids=param_id)
@settings(COMMON, max_examples=VECTOR_EXAMPLES)
@given(scenario=knn_scenarios(), batch=st.booleans())
def test_vector_search_matches_oracle(
    target: tuple[BackendSpec, Mode],
    tmp_path: Path,
    scenario: tuple[list[Row], list[KnnCase]],
    batch: bool,
) -> None:
    """vector_search (and the batch form) ids, scores, distances agree with the oracle."""
    rows, cases = scenario
    with open_database(*target, Path(tempfile.mkdtemp(dir=tmp_path))) as db:
        _load(db, rows)
        for case in cases:
            _check_knn(db, rows, case, batch)
        if all(r.vector is None for r in rows):
            with pytest.raises(QueryError):
                db.vector_search((0.5, 0.5, 0.5, 0.5))


def test_oracle_knows_the_documented_examples() -> None:
    """The oracle itself follows the docstring's worked examples (guards the guard)."""
    row = Row("x", {"tags": ["time", "date"], "year": 2020, "status": None}, None)

    def check(field: str, op: str, value: Any) -> bool:
        return o_matches(Condition.make(field, op, value), row)

    assert check("tags", "=", "time")
    assert check("tags", "in", ["a", "time"])
    assert not check("year", "=", "2020")
    assert not check("year", "=", True)
    assert check("status", "!=", "done")
    assert check("missing", "!=", "done")
    assert not check("status", "exists", None)
    assert not o_like("a%", "A")
    assert o_like("50\\%", "50%")
    assert not o_like("50\\%", "500")
    rows = [Row("b", {"n": 1}, None), Row("a", {"n": 1.0}, None), Row("c", {}, None)]
    assert o_search(rows, Query().sort("n", nulls="first")) == ["c", "a", "b"]
    assert o_search(rows, Query().sort("n", descending=True)) == ["a", "b", "c"]
