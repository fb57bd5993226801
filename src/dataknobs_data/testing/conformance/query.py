"""Query semantics: filters (every operator, run or refused), sorting, paging, projection and
streaming, checked against the plain-Python oracle; malformed queries raise QueryError.
"""

from __future__ import annotations

from typing import Any

import pytest

from ...capabilities import walk_conditions
from ...errors import (
    QueryError,
    UnknownOperatorError,
    UnsupportedOperatorError,
)
from ...query import F, Operator, Query, filter_to_dict
from ..adapter import DatabaseLike
from ..assertions import canonical, record_ids
from ..cases import COVERED_OPERATORS, FILTER_CASES, SORT_CASES, FilterCase, SortCase
from ..dataset import (
    DOCS,
    IDS,
    QUERY_VECTORS,
    VECTOR_FIELD,
    SortKey,
    build_records,
    expected_ids,
    expected_order,
    has,
    kind,
)
from .base import ConformanceBase
from .helpers import json_round_trip

__all__ = ["BAD_FILTER_DICTS", "PAGES", "QueryTests"]

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


class QueryTests(ConformanceBase):
    """search/count/stream give the oracle's ids in the oracle's order, in every query form."""

    def check_search(self, db: DatabaseLike, query: Query, expected: list[str]) -> None:
        """``search`` gives ``expected`` ids in order and ``count`` agrees, in three forms
        (the builder, the JSON dict form, and ``Query.from_dict``), or the backend refuses
        an undeclared operator with :class:`UnsupportedOperatorError`."""
        forms: list[Any] = [
            query,
            json_round_trip(query.to_dict()),
            Query.from_dict(json_round_trip(query.to_dict())),
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

    # == filters ==

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
        as_dict = json_round_trip(filter_to_dict(case.filter))
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

    # == sorting, paging, projection, streaming ==

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

    # == bad queries ==

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
