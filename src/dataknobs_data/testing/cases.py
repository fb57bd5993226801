"""Table-driven cases: a filter (or sort) over the dataset and a plain-Python expectation.

Each :class:`FilterCase` pairs a filter tree with a predicate over :class:`~.dataset.Doc` that
states, in Python, what the filter means on the dataset. Negated operators are written as
``not`` of the positive predicate, which is the rule ("negation is complement") under test.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from ..capabilities import walk_conditions
from ..query import And, Condition, F, Filter, Not, Operator, Or
from .dataset import Doc, SortKey, exists, has, kind, like

__all__ = [
    "COVERED_OPERATORS",
    "FILTER_CASES",
    "SORT_CASES",
    "FilterCase",
    "SortCase",
    "is_not",
]


@dataclass(frozen=True)
class FilterCase:
    name: str
    filter: Filter
    predicate: Callable[[Doc], bool]

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class SortCase:
    name: str
    keys: tuple[SortKey, ...]
    filter: Filter | None = None
    predicate: Callable[[Doc], bool] = lambda d: True

    def __str__(self) -> str:
        return self.name


def _num(test: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: kind(v) == "num" and test(v)


def _str(test: Callable[[str], bool]) -> Callable[[Any], bool]:
    return lambda v: kind(v) == "str" and test(v)


def _dt(test: Callable[[datetime], bool]) -> Callable[[Any], bool]:
    return lambda v: kind(v) == "dt" and test(v)


def _is(path: str, value: bool) -> Condition:
    """``path = True/False`` (``F(path) == True`` reads as a lint error, so spell it out)."""
    return Condition.make(path, Operator.EQ, value)


def is_not(path: str, value: bool) -> Condition:
    """The condition ``path != value`` for a boolean value, spelt out because
    ``F(path) != True`` trips the comparison-to-True lint rule (E712)."""
    return Condition.make(path, Operator.NEQ, value)


def _exists_at(path: str) -> Callable[[Doc], bool]:
    return lambda d: exists(d, path)


def _missing_at(path: str) -> Callable[[Doc], bool]:
    return lambda d: not exists(d, path)


def _same(value: Any) -> Callable[[Any], bool]:
    """Equality within one kind (``1 == 1.0``; ``True`` is not ``1``)."""
    return lambda v: kind(v) == kind(value) and v == value


D2021 = datetime(2021, 1, 1, tzinfo=UTC)
D2021_06 = datetime(2021, 6, 1, tzinfo=UTC)
LEAP_NAIVE = datetime(2020, 2, 29)
PLUS2_0200 = datetime(2021, 6, 1, 2, 0, tzinfo=timezone(timedelta(hours=2)))

_C = FilterCase

FILTER_CASES: tuple[FilterCase, ...] = (
    # -- = -------------------------------------------------------------------------------
    _C(
        "eq int matches int and float",
        F("num") == 1,
        lambda d: has(d, "num", _num(lambda v: v == 1)),
    ),
    _C("eq float matches int", F("num") == 1.0, lambda d: has(d, "num", _num(lambda v: v == 1))),
    _C(
        "eq zero matches negative zero",
        F("num") == 0,
        lambda d: has(d, "num", _num(lambda v: v == 0)),
    ),
    _C(
        "eq numeric-looking string is a string",
        F("num") == "5",
        lambda d: has(d, "num", _str(lambda v: v == "5")),
    ),
    _C(
        "eq true is not the number 1",
        _is("num", True),
        lambda d: has(d, "num", lambda v: v is True),
    ),
    _C(
        "eq string case-sensitive",
        F("title") == "alpha",
        lambda d: has(d, "title", _str(lambda v: v == "alpha")),
    ),
    _C("eq empty string", F("title") == "", lambda d: has(d, "title", _str(lambda v: v == ""))),
    _C(
        "eq unicode",
        F("title") == "Ünïcødé",
        lambda d: has(d, "title", _str(lambda v: v == "Ünïcødé")),
    ),
    _C("eq cjk", F("title") == "日本語", lambda d: has(d, "title", _str(lambda v: v == "日本語"))),
    _C("eq list any element", F("tags") == "a", lambda d: has(d, "tags", _str(lambda v: v == "a"))),
    _C("eq number in mixed list", F("tags") == 5, lambda d: has(d, "tags", _num(lambda v: v == 5))),
    _C("eq 1 skips true in list", F("tags") == 1, lambda d: has(d, "tags", _num(lambda v: v == 1))),
    _C("eq true in list", _is("tags", True), lambda d: has(d, "tags", lambda v: v is True)),
    _C(
        "eq nested path with list value",
        F("meta.author") == "ann",
        lambda d: has(d, "meta.author", _str(lambda v: v == "ann")),
    ),
    _C(
        "eq deep path int and float",
        F("meta.stats.views") == 10,
        lambda d: has(d, "meta.stats.views", _num(lambda v: v == 10)),
    ),
    _C(
        "eq nested scalar where object expected",
        F("meta.stats") == 5,
        lambda d: has(d, "meta.stats", _num(lambda v: v == 5)),
    ),
    _C(
        "eq json string value",
        F("meta") == "ann",
        lambda d: has(d, "meta", _str(lambda v: v == "ann")),
    ),
    _C("eq json list value", F("meta") == 1, lambda d: has(d, "meta", _num(lambda v: v == 1))),
    _C(
        "eq aware datetime", F("when") == D2021, lambda d: has(d, "when", _dt(lambda v: v == D2021))
    ),
    _C(
        "eq naive datetime is utc",
        F("when") == LEAP_NAIVE,
        lambda d: has(d, "when", _dt(lambda v: v == LEAP_NAIVE.replace(tzinfo=UTC))),
    ),
    _C(
        "eq offset datetime same instant",
        F("when") == PLUS2_0200,
        lambda d: has(d, "when", _dt(lambda v: v == D2021_06)),
    ),
    _C(
        "eq iso string is not a datetime",
        F("when") == "2021-01-01T00:00:00+00:00",
        lambda d: has(d, "when", _str(lambda v: v == "2021-01-01T00:00:00+00:00")),
    ),
    _C("eq id", F("_id") == "r05", lambda d: d.id == "r05"),
    _C("eq missing field", F("nope") == 1, lambda d: False),
    _C("eq vector never compares", F("embedding") == 0, lambda d: False),
    _C("eq numeric list", F("nums") == 10, lambda d: has(d, "nums", _num(lambda v: v == 10))),
    # -- != ------------------------------------------------------------------------------
    _C(
        "neq number is complement",
        F("num") != 1,
        lambda d: not has(d, "num", _num(lambda v: v == 1)),
    ),
    _C(
        "neq string",
        F("title") != "alpha",
        lambda d: not has(d, "title", _str(lambda v: v == "alpha")),
    ),
    _C("neq list", F("tags") != "a", lambda d: not has(d, "tags", _str(lambda v: v == "a"))),
    _C(
        "neq nested",
        F("meta.author") != "ann",
        lambda d: not has(d, "meta.author", _str(lambda v: v == "ann")),
    ),
    _C("neq boolean", is_not("flag", True), lambda d: not has(d, "flag", lambda v: v is True)),
    _C("neq id", F("_id") != "r05", lambda d: d.id != "r05"),
    _C(
        "neq kind mismatch matches all",
        F("num") != "1",
        lambda d: not has(d, "num", _str(lambda v: v == "1")),
    ),
    # -- ordering ------------------------------------------------------------------------
    _C("gt number", F("num") > 1, lambda d: has(d, "num", _num(lambda v: v > 1))),
    _C("gte number", F("num") >= 1, lambda d: has(d, "num", _num(lambda v: v >= 1))),
    _C(
        "lt zero excludes negative zero",
        F("num") < 0,
        lambda d: has(d, "num", _num(lambda v: v < 0)),
    ),
    _C("lte zero", F("num") <= 0, lambda d: has(d, "num", _num(lambda v: v <= 0))),
    _C("gt negative zero", F("num") > -0.0, lambda d: has(d, "num", _num(lambda v: v > 0))),
    _C("gt float bound", F("num") > 2.5, lambda d: has(d, "num", _num(lambda v: v > 2.5))),
    _C(
        "gt string compares strings only",
        F("num") > "4",
        lambda d: has(d, "num", _str(lambda v: v > "4")),
    ),
    _C(
        "gt string code points",
        F("title") > "b",
        lambda d: has(d, "title", _str(lambda v: v > "b")),
    ),
    _C(
        "lte string uppercase first",
        F("title") <= "Zulu",
        lambda d: has(d, "title", _str(lambda v: v <= "Zulu")),
    ),
    _C("gt datetime", F("when") > D2021, lambda d: has(d, "when", _dt(lambda v: v > D2021))),
    _C(
        "lt naive datetime",
        F("when") < datetime(2021, 1, 1),
        lambda d: has(d, "when", _dt(lambda v: v < D2021)),
    ),
    _C(
        "gte offset datetime",
        F("when") >= PLUS2_0200,
        lambda d: has(d, "when", _dt(lambda v: v >= D2021_06)),
    ),
    _C(
        "gt deep path",
        F("meta.stats.views") > 0,
        lambda d: has(d, "meta.stats.views", _num(lambda v: v > 0)),
    ),
    _C(
        "lte deep path",
        F("meta.stats.views") <= 0,
        lambda d: has(d, "meta.stats.views", _num(lambda v: v <= 0)),
    ),
    _C("gt list any element", F("tags") > "c", lambda d: has(d, "tags", _str(lambda v: v > "c"))),
    _C("gt numeric list", F("nums") > 4, lambda d: has(d, "nums", _num(lambda v: v > 4))),
    _C("lt numeric list", F("nums") < 1, lambda d: has(d, "nums", _num(lambda v: v < 1))),
    _C("gt id", F("_id") > "r2", lambda d: d.id > "r2"),
    _C("lt missing field", F("nope") < 5, lambda d: False),
    # -- in / not_in -----------------------------------------------------------------------
    _C(
        "in mixed kinds",
        F("num").is_in([1, "5"]),
        lambda d: has(d, "num", lambda v: _same(1)(v) or _same("5")(v)),
    ),
    _C("in true only", F("num").is_in([True]), lambda d: has(d, "num", lambda v: v is True)),
    _C("in zero", F("num").is_in([0]), lambda d: has(d, "num", _num(lambda v: v == 0))),
    _C(
        "in floats",
        F("num").is_in([2.5, -7.25]),
        lambda d: has(d, "num", _num(lambda v: v in (2.5, -7.25))),
    ),
    _C(
        "in strings",
        F("title").is_in(["alpha", "beta", "zzz"]),
        lambda d: has(d, "title", _str(lambda v: v in ("alpha", "beta", "zzz"))),
    ),
    _C(
        "in list any element",
        F("tags").is_in(["c", "z"]),
        lambda d: has(d, "tags", _str(lambda v: v in ("c", "z"))),
    ),
    _C(
        "in nested",
        F("meta.author").is_in(["bob", "cy"]),
        lambda d: has(d, "meta.author", _str(lambda v: v in ("bob", "cy"))),
    ),
    _C(
        "in datetimes",
        F("when").is_in([D2021, LEAP_NAIVE]),
        lambda d: has(d, "when", _dt(lambda v: v in (D2021, LEAP_NAIVE.replace(tzinfo=UTC)))),
    ),
    _C("in empty list", F("num").is_in([]), lambda d: False),
    _C("in ids", F("_id").is_in(["r01", "Zed", "nope"]), lambda d: d.id in ("r01", "Zed")),
    _C(
        "not_in mixed kinds",
        F("num").not_in([1, "5"]),
        lambda d: not has(d, "num", lambda v: _same(1)(v) or _same("5")(v)),
    ),
    _C(
        "not_in list",
        F("tags").not_in(["c", "z"]),
        lambda d: not has(d, "tags", _str(lambda v: v in ("c", "z"))),
    ),
    _C(
        "not_in nested",
        F("meta.author").not_in(["ann"]),
        lambda d: not has(d, "meta.author", _str(lambda v: v == "ann")),
    ),
    _C("not_in empty list", F("num").not_in([]), lambda d: True),
    # -- between ---------------------------------------------------------------------------
    _C(
        "between inclusive",
        F("num").between(1, 2.5),
        lambda d: has(d, "num", _num(lambda v: 1 <= v <= 2.5)),
    ),
    _C(
        "between single point",
        F("num").between(-2, -2),
        lambda d: has(d, "num", _num(lambda v: v == -2)),
    ),
    _C(
        "between around zero",
        F("num").between(-0.5, 0.1),
        lambda d: has(d, "num", _num(lambda v: -0.5 <= v <= 0.1)),
    ),
    _C(
        "between strings",
        F("num").between("0", "9"),
        lambda d: has(d, "num", _str(lambda v: "0" <= v <= "9")),
    ),
    _C(
        "between string titles",
        F("title").between("a", "c"),
        lambda d: has(d, "title", _str(lambda v: "a" <= v <= "c")),
    ),
    _C(
        "between datetimes",
        F("when").between(D2021, D2021_06),
        lambda d: has(d, "when", _dt(lambda v: D2021 <= v <= D2021_06)),
    ),
    _C(
        "between one element inside",
        F("nums").between(4, 6),
        lambda d: has(d, "nums", _num(lambda v: 4 <= v <= 6)),
    ),
    _C(
        "between list straddling bounds",
        F("nums").between(2, 9),
        lambda d: has(d, "nums", _num(lambda v: 2 <= v <= 9)),
    ),
    _C(
        "between deep path",
        F("meta.stats.views").between(0, 10),
        lambda d: has(d, "meta.stats.views", _num(lambda v: 0 <= v <= 10)),
    ),
    _C(
        "between list strings",
        F("tags").between("a", "b"),
        lambda d: has(d, "tags", _str(lambda v: "a" <= v <= "b")),
    ),
    _C("between ids", F("_id").between("r10", "r19"), lambda d: "r10" <= d.id <= "r19"),
    # -- like / not_like / starts_with --------------------------------------------------------
    _C(
        "like prefix case-sensitive",
        F("title").like("a%"),
        lambda d: has(d, "title", _str(like("a%"))),
    ),
    _C(
        "like suffix",
        F("title").like("%a"),
        lambda d: has(d, "title", _str(lambda v: v.endswith("a"))),
    ),
    _C(
        "like single char",
        F("title").like("_eta"),
        lambda d: has(d, "title", _str(lambda v: len(v) == 4 and v.endswith("eta"))),
    ),
    _C(
        "like escaped wildcards",
        F("title").like("50\\%\\_off"),
        lambda d: has(d, "title", _str(lambda v: v == "50%_off")),
    ),
    _C(
        "like escaped percent no match",
        F("title").like("5\\%"),
        lambda d: has(d, "title", _str(lambda v: v == "5%")),
    ),
    _C(
        "like percent matches empty",
        F("title").like("%"),
        lambda d: has(d, "title", _str(lambda v: True)),
    ),
    _C(
        "like empty pattern",
        F("title").like(""),
        lambda d: has(d, "title", _str(lambda v: v == "")),
    ),
    _C(
        "like underscore only",
        F("title").like("_"),
        lambda d: has(d, "title", _str(lambda v: len(v) == 1)),
    ),
    _C("like unicode", F("title").like("%ï%"), lambda d: has(d, "title", _str(lambda v: "ï" in v))),
    _C(
        "like uppercase",
        F("title").like("A%"),
        lambda d: has(d, "title", _str(lambda v: v.startswith("A"))),
    ),
    _C(
        "like nested list",
        F("meta.author").like("a%"),
        lambda d: has(d, "meta.author", _str(lambda v: v.startswith("a"))),
    ),
    _C("like only strings", F("num").like("5"), lambda d: has(d, "num", _str(lambda v: v == "5"))),
    _C(
        "like list elements",
        F("tags").like("_"),
        lambda d: has(d, "tags", _str(lambda v: len(v) == 1)),
    ),
    _C(
        "like datetime is not a string",
        F("when").like("2021%"),
        lambda d: has(d, "when", _str(lambda v: v.startswith("2021"))),
    ),
    _C("like id", F("_id").like("r_5"), lambda d: has(d, "_id", _str(like("r_5")))),
    _C(
        "not_like prefix",
        F("title").not_like("a%"),
        lambda d: not has(d, "title", _str(like("a%"))),
    ),
    _C(
        "not_like only strings",
        F("num").not_like("5"),
        lambda d: not has(d, "num", _str(lambda v: v == "5")),
    ),
    _C(
        "not_like list",
        F("tags").not_like("_"),
        lambda d: not has(d, "tags", _str(lambda v: len(v) == 1)),
    ),
    _C(
        "starts_with",
        F("title").starts_with("al"),
        lambda d: has(d, "title", _str(lambda v: v.startswith("al"))),
    ),
    _C(
        "starts_with literal percent",
        F("title").starts_with("50%"),
        lambda d: has(d, "title", _str(lambda v: v.startswith("50%"))),
    ),
    _C(
        "starts_with literal underscore",
        F("title").starts_with("_"),
        lambda d: has(d, "title", _str(lambda v: v.startswith("_"))),
    ),
    _C(
        "starts_with empty prefix",
        F("title").starts_with(""),
        lambda d: has(d, "title", _str(lambda v: True)),
    ),
    _C(
        "starts_with list",
        F("tags").starts_with("a"),
        lambda d: has(d, "tags", _str(lambda v: v.startswith("a"))),
    ),
    _C(
        "starts_with unicode",
        F("meta.author").starts_with("é"),
        lambda d: has(d, "meta.author", _str(lambda v: v.startswith("é"))),
    ),
    _C(
        "starts_with iso string only",
        F("when").starts_with("2021"),
        lambda d: has(d, "when", _str(lambda v: v.startswith("2021"))),
    ),
    _C(
        "starts_with case",
        F("title").starts_with("A"),
        lambda d: has(d, "title", _str(lambda v: v.startswith("A"))),
    ),
    # -- exists / not_exists -------------------------------------------------------------------
    *(
        _C(f"exists {path}", F(path).exists(), _exists_at(path))
        for path in (
            "title",
            "num",
            "flag",
            "when",
            "meta",
            "meta.author",
            "meta.stats",
            "meta.stats.views",
            "tags",
            "nums",
            "embedding",
            "nope",
            "_id",
        )
    ),
    *(
        _C(f"not_exists {path}", F(path).not_exists(), _missing_at(path))
        for path in (
            "title",
            "flag",
            "meta.author",
            "meta.stats.views",
            "tags",
            "nums",
            "embedding",
        )
    ),
    # -- boolean structure -------------------------------------------------------------------
    _C(
        "and",
        (F("num") >= 1) & (_is("flag", True)),
        lambda d: has(d, "num", _num(lambda v: v >= 1)) and has(d, "flag", lambda v: v is True),
    ),
    _C(
        "or",
        (F("title") == "alpha") | (F("tags") == "c"),
        lambda d: (
            has(d, "title", _str(lambda v: v == "alpha"))
            or has(d, "tags", _str(lambda v: v == "c"))
        ),
    ),
    _C(
        "not eq equals neq", Not(F("num") == 1), lambda d: not has(d, "num", _num(lambda v: v == 1))
    ),
    _C("not over neq", Not(F("num") != 1), lambda d: has(d, "num", _num(lambda v: v == 1))),
    _C(
        "not over not_in",
        Not(F("tags").not_in(["a"])),
        lambda d: has(d, "tags", _str(lambda v: v == "a")),
    ),
    _C(
        "not over not_like",
        Not(F("title").not_like("%a")),
        lambda d: has(d, "title", _str(lambda v: v.endswith("a"))),
    ),
    _C(
        "not over not_exists",
        Not(F("meta.author").not_exists()),
        lambda d: exists(d, "meta.author"),
    ),
    _C(
        "double not",
        Not(Not(F("title").like("a%"))),
        lambda d: has(d, "title", _str(lambda v: v.startswith("a"))),
    ),
    _C("not over exists", Not(F("meta.author").exists()), lambda d: not exists(d, "meta.author")),
    _C(
        "not over range on missing",
        Not(F("meta.stats.views") > 5),
        lambda d: not has(d, "meta.stats.views", _num(lambda v: v > 5)),
    ),
    _C(
        "exists and neq idiom",
        F("title").exists() & (F("title") != "alpha"),
        lambda d: exists(d, "title") and not has(d, "title", _str(lambda v: v == "alpha")),
    ),
    _C(
        "exists and neq on list",
        F("tags").exists() & (F("tags") != "a"),
        lambda d: exists(d, "tags") and not has(d, "tags", _str(lambda v: v == "a")),
    ),
    _C(
        "not of and",
        Not(And(((F("num") > 0), (_is("flag", False))))),
        lambda d: (
            not (has(d, "num", _num(lambda v: v > 0)) and has(d, "flag", lambda v: v is False))
        ),
    ),
    _C(
        "or of negations",
        Or(((F("num") != 1), (F("tags") != "a"))),
        lambda d: (
            not has(d, "num", _num(lambda v: v == 1))
            or not has(d, "tags", _str(lambda v: v == "a"))
        ),
    ),
    _C(
        "single-child and",
        And((F("group") == 1,)),
        lambda d: has(d, "group", _num(lambda v: v == 1)),
    ),
    _C(
        "single-child or", Or((F("group") == 2,)), lambda d: has(d, "group", _num(lambda v: v == 2))
    ),
    _C(
        "nested and/or/not",
        Or(
            (
                And((F("num") > 0, Not(_is("flag", True)))),
                And((F("meta.author").exists(), Not(Or((F("tags") == "a", F("tags") == "b"))))),
            )
        ),
        lambda d: (
            (has(d, "num", _num(lambda v: v > 0)) and not has(d, "flag", lambda v: v is True))
            or (
                exists(d, "meta.author")
                and not (
                    has(d, "tags", _str(lambda v: v == "a"))
                    or has(d, "tags", _str(lambda v: v == "b"))
                )
            )
        ),
    ),
    _C(
        "deep nesting with every negation",
        And(
            (
                Not(Or((F("title").not_like("%a%"), F("num").not_in([1, 2, 3])))),
                Or((F("meta").not_exists(), F("meta.author") != "bob")),
            )
        ),
        lambda d: (
            has(d, "title", _str(lambda v: "a" in v))
            and has(d, "num", _num(lambda v: v in (1, 2, 3)))
            and (not exists(d, "meta") or not has(d, "meta.author", _str(lambda v: v == "bob")))
        ),
    ),
)


def _k(field: str, descending: bool = False, nulls: str = "last") -> SortKey:
    return SortKey(field, descending, nulls)


SORT_CASES: tuple[SortCase, ...] = (
    SortCase("num asc (kinds: bool, num, str)", (_k("num"),)),
    SortCase("num desc", (_k("num", True),)),
    SortCase("num asc nulls first", (_k("num", False, "first"),)),
    SortCase("num desc nulls first", (_k("num", True, "first"),)),
    SortCase("title asc code points", (_k("title"),)),
    SortCase("title desc", (_k("title", True),)),
    SortCase("when asc (string before datetimes)", (_k("when"),)),
    SortCase("when desc nulls first", (_k("when", True, "first"),)),
    SortCase("deep path desc", (_k("meta.stats.views", True),)),
    SortCase("deep path asc nulls first", (_k("meta.stats.views", False, "first"),)),
    SortCase("id asc", (_k("_id"),)),
    SortCase("id desc", (_k("_id", True),)),
    SortCase("flag asc", (_k("flag"),)),
    SortCase("two keys", (_k("group"), _k("num", True))),
    SortCase(
        "three keys mixed nulls", (_k("flag", True, "first"), _k("group", False, "last"), _k("num"))
    ),
    SortCase("lists sort as nulls", (_k("tags"),)),
    SortCase("objects sort as nulls", (_k("meta", True),)),
    SortCase("vectors sort as nulls", (_k("embedding", False, "first"),)),
    SortCase("missing field", (_k("nope", True),)),
    SortCase("key then id desc", (_k("group", True), _k("_id", True))),
    SortCase(
        "filtered",
        (_k("group", True), _k("title")),
        F("num") > 0,
        lambda d: has(d, "num", _num(lambda v: v > 0)),
    ),
    SortCase(
        "filtered nulls first",
        (_k("when", False, "first"),),
        F("tags") == "a",
        lambda d: has(d, "tags", _str(lambda v: v == "a")),
    ),
)

#: Operators covered by FILTER_CASES (checked by the suite, so a new operator needs cases).
COVERED_OPERATORS: frozenset[Operator] = frozenset(
    cond.op for case in FILTER_CASES for cond in walk_conditions(case.filter)
)
