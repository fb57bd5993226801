"""Generated hostile input (hypothesis): ids, field names, values, vectors and query parameters
an adversary would try, each checked against the memory backend fed the same calls.

Per input, on every backend and shell:

* the call succeeds or raises a :class:`~dataknobs_data.errors.DataknobsDataError`, never a raw
  dependency error (``UnicodeEncodeError``, ``OverflowError``, a driver's own class);
* a refused write changes nothing (count and every record read back as before);
* the answer is the memory backend's: the same records in the same order after every write and
  for every search, the same vector hits with scores within the suite's tolerance.

A backend may refuse, with a typed *validation* or *unsupported* error and writing nothing, an
input the memory backend accepts: what an engine cannot store or run exactly is refused up front
(chroma's integers beyond 2**53 and its per-record metadata limit, PostgreSQL's NUL character,
an operator or metric a backend does not declare). The reverse, a backend accepting what the
reference refuses, is a failure.

Each test draws its inputs with ``st.data()`` inside one hypothesis run per fixture instance:
the ``db`` fixture and the memory reference are reset (``clear``) before each example, and keep
their vector schema across examples, in step. The run is derandomized, so a CI failure repeats;
``DATAKNOBS_HYPOTHESIS_EXAMPLES=N`` runs N examples per test and backend (default
:data:`DEFAULT_EXAMPLES`, kept small because chroma and PostgreSQL cost milliseconds per call)
with fresh randomness.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ...database import SyncDatabase
from ...errors import DataknobsDataError, UnsupportedError, ValidationError
from ...factory import DatabaseFactory
from ...fields import Field, FieldType, VectorField
from ...query import Condition, Operator, Query, SortSpec
from ...records import Record
from ...vector.types import DistanceMetric, VectorSearchResult
from ..adapter import DatabaseLike
from ..assertions import assert_hits, canonical
from .base import ConformanceBase

__all__ = ["DEFAULT_EXAMPLES", "EXAMPLES_ENV", "HostileInputTests", "examples"]

T = TypeVar("T")

#: environment variable: examples per generated test and backend (more, and random, when set)
EXAMPLES_ENV = "DATAKNOBS_HYPOTHESIS_EXAMPLES"
#: examples per test and backend by default: the section runs in a few seconds per backend
DEFAULT_EXAMPLES = 6


def examples() -> int:
    """How many examples each generated test draws (``$DATAKNOBS_HYPOTHESIS_EXAMPLES``)."""
    raw = os.environ.get(EXAMPLES_ENV, "")
    return int(raw) if raw.strip().isdigit() and int(raw) > 0 else DEFAULT_EXAMPLES


def _settings() -> settings:
    return settings(
        max_examples=examples(),
        deadline=None,
        database=None,
        derandomize=EXAMPLES_ENV not in os.environ,
        suppress_health_check=list(HealthCheck),
    )


# == strategies ================================================================================
#: characters engines choke on: lone surrogates, NUL and controls, separators, non-characters
NASTY_CHARS = st.sampled_from(
    ["\ud800", "\udfff", "\x00", "\x01", "\x1f", "\x7f", ".", "%", "_", "\\", '"', "'", "\u2028",
     "\ufeff", "\ufffe", "\uffff", "\U0010ffff", "🙂", "é", "\u0301", " ", "$", "#", ":"]
)  # fmt: skip
TEXT = st.text(alphabet=st.one_of(st.characters(), NASTY_CHARS), min_size=1, max_size=12)
EDGE_STRINGS = st.sampled_from(
    ["", " ", "a", "a\ud800", "\udc00", "\x00", "a\x00b", "x" * 513, "y" * 100_000, "🙂" * 300,
     "_id", "a.b", "k", "v"]
)  # fmt: skip
STRINGS = st.one_of(TEXT, EDGE_STRINGS)


def _mostly(ordinary: st.SearchStrategy[T], hostile: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """Ordinary three times in four, so most inputs get past the vocabulary to a database."""
    return st.one_of(ordinary, ordinary, ordinary, hostile)


IDS = _mostly(st.sampled_from(["r1", "r2", "r3", "r4", "é", "🙂", "x y", "x" * 512]), STRINGS)
NAMES = _mostly(st.sampled_from(["a", "b", "t", "j", "l"]), STRINGS)
EDGE_INTS = st.sampled_from(
    [0, 1, -1, 2**31 - 1, 2**31, 2**53, 2**53 + 1, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1,
     2**64, 10**30]
)  # fmt: skip
INTS = st.one_of(EDGE_INTS, st.integers(-5, 5))
FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
                     1e300, math.inf, -math.inf, math.nan, 0.1, 1 / 3]),
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
)  # fmt: skip
SCALARS = st.one_of(INTS, FLOATS, STRINGS, st.booleans(), st.none())
JSON = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(STRINGS, inner, max_size=3)
    ),
    max_leaves=8,
)


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = {"d": value}
    return value


#: values one draw picks as they are: long lists (chroma's metadata rows), deep nesting
BULKY = st.sampled_from(
    [list(range(6000)), [f"s{i}" for i in range(3000)], _deep(64), _deep(66), [[]], {"": 1}]
)
ORDINARY_SCALARS = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.booleans(),
    st.none(),
)
ORDINARY_JSON = st.recursive(
    ORDINARY_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)
VALUES = _mostly(ORDINARY_JSON, st.one_of(SCALARS, JSON, BULKY))
TYPED = st.tuples(st.sampled_from([FieldType.TEXT, FieldType.STRING, FieldType.JSON]), VALUES)
ORDINARY_VECTORS = st.lists(st.floats(-2, 2, width=32), min_size=3, max_size=3)
VECTORS: st.SearchStrategy[Any] = st.one_of(
    ORDINARY_VECTORS,
    ORDINARY_VECTORS,
    st.sampled_from(
        [[0.0, 0.0, 0.0], [3e38, -3e38, 1e-45], [1e18, 0, 0], [2e18, 0, 0], [1e-18, 0, 0],
         [1e-30, 0, 0], [1e-45, 1e-45, 1e-45], [math.nan, 0, 0], [math.inf, 1, 1], [1, 2],
         [1, 2, 3, 4], [], [1e-20, 1e-20, 1e-20], [5e17, 5e17, 5e17]]
    ),
    st.lists(FLOATS, min_size=3, max_size=3),
)  # fmt: skip
PROVENANCE = _mostly(st.one_of(st.none(), st.just("model-1")), STRINGS)
K = _mostly(st.integers(1, 6), st.sampled_from([0, -1, True, 2**31 - 1, 2**31, 2**63 - 1, 2**63]))
PAGING = _mostly(
    st.one_of(st.none(), st.integers(0, 4)),
    st.sampled_from([-1, 2**31, 2**63 - 1, 2**63, False]),
)
FILTER_VALUES = _mostly(
    st.one_of(INTS, st.sampled_from(["a", "r2", "", "é", 0.5, -0.0, True])),
    st.one_of(
        SCALARS, st.lists(SCALARS, max_size=4), st.tuples(SCALARS, SCALARS), st.just(Operator.EQ)
    ),
)
PATHS = _mostly(st.sampled_from(["a", "b", "t", "j", "j.d", "_id", "l", "v"]), STRINGS)


# == building inputs (any refusal must be typed) =============================================
def _attempt(build: Callable[[], T]) -> T | DataknobsDataError:
    """``build()``, or the typed error it raised; anything else propagates (a test failure)."""
    try:
        return build()
    except DataknobsDataError as exc:
        return exc


@st.composite
def records(draw: st.DrawFn) -> list[Any]:
    """One to three records (or the typed error building one raised)."""
    out: list[Any] = []
    for _ in range(draw(st.integers(1, 3))):
        rid = draw(IDS)
        fields = draw(st.dictionaries(NAMES, st.one_of(VALUES, TYPED), max_size=3))
        vector = draw(st.one_of(st.none(), VECTORS))
        vector_name = draw(st.sampled_from(["v", "v", "v", "w"]))
        model = draw(PROVENANCE)
        metadata = draw(
            _mostly(st.none(), st.dictionaries(STRINGS, st.one_of(JSON, ORDINARY_JSON), max_size=2))
        )

        def build(
            rid: str = rid,
            fields: dict[str, Any] = fields,
            vector: Any = vector,
            vector_name: str = vector_name,
            model: str | None = model,
            metadata: dict[str, Any] | None = metadata,
        ) -> Record:
            parts = [
                Field(name, v[1], v[0]) if isinstance(v, tuple) else Field(name, v)
                for name, v in fields.items()
            ]
            if vector is not None and vector_name not in fields:
                vf = VectorField(np.asarray(vector, dtype=np.float64), model_name=model)
                parts.append(vf.with_name(vector_name))
            return Record(parts, id=rid, metadata=metadata)

        out.append(_attempt(build))
    return out


def _operand(op: Operator) -> st.SearchStrategy[Any]:
    """An operand of the right shape for ``op`` (so most conditions reach a database)."""
    plain = st.one_of(st.integers(-3, 3), st.sampled_from(["a", "r2", "", "é", 0.5]))
    if op in (Operator.IN, Operator.NOT_IN):
        return st.lists(plain, max_size=4)
    if op is Operator.BETWEEN:
        return st.tuples(st.integers(-3, 0), st.integers(0, 3))
    if op in (Operator.LIKE, Operator.NOT_LIKE, Operator.STARTS_WITH):
        return st.sampled_from(["a%", "%", "_", "r_", "\\%", "é%", ""])
    return plain


@st.composite
def queries(draw: st.DrawFn) -> Query | DataknobsDataError:
    path, op = draw(PATHS), draw(st.sampled_from(list(Operator)))
    value = draw(_mostly(_operand(op), FILTER_VALUES))
    sort = draw(st.lists(st.tuples(PATHS, st.booleans()), max_size=2))
    limit, offset = draw(PAGING), draw(PAGING)
    fields = draw(st.one_of(st.none(), st.lists(PATHS, max_size=2)))
    with_filter = draw(st.booleans())

    def build() -> Query:
        if op in (Operator.EXISTS, Operator.NOT_EXISTS):
            condition = Condition.make(path, op)
        else:
            condition = Condition.make(path, op, value)
        return Query(
            condition if with_filter else None,
            sort_by=[SortSpec(p, d) for p, d in sort],
            limit=limit,
            offset=0 if offset is None else offset,
            fields=fields,
        )

    return _attempt(build)


# == running one call on both sides ============================================================
Outcome = tuple[bool, Any]  # (succeeded, value or error)


def _run(call: Callable[[], T]) -> tuple[bool, T | DataknobsDataError]:
    try:
        return True, call()
    except DataknobsDataError as exc:
        return False, exc


def _contents(db: DatabaseLike) -> tuple[int, list[Any]]:
    return db.count(), [canonical(r) for r in db.search(Query())]


def _vector(values: Any) -> VectorField:
    return VectorField(np.asarray(values, dtype=np.float64))


def _declines(error: object) -> bool:
    """A backend may decline, up front, what the reference accepts (see the module doc)."""
    return isinstance(error, ValidationError | UnsupportedError)


class HostileInputTests(ConformanceBase):
    """Generated hostile input: typed refusal or the memory backend's answer, nothing written
    by a refused call (module docstring)."""

    @staticmethod
    def _reference(db: DatabaseLike) -> SyncDatabase:
        """A memory database holding what ``db`` holds, with its vector schema."""
        ref = DatabaseFactory.create("memory://", vectors=db.vector_fields())
        ref.create_batch(db.search(Query()))
        return ref

    def _write(
        self, db: DatabaseLike, ref: SyncDatabase, recs: list[Any], mode: str
    ) -> SyncDatabase:
        """Apply one write to both; returns the reference (rebuilt when ``db`` declined)."""
        # What the vocabulary refused (typed) never reaches a database; the rest is written.
        built = [r for r in recs if isinstance(r, Record)]
        if not built:
            return ref
        before = _contents(db)
        method: Callable[[DatabaseLike | SyncDatabase], Any]
        if mode == "create":
            method = lambda d: d.create(built[0])  # noqa: E731
        else:
            method = lambda d: getattr(d, f"{mode}_batch")(built)  # noqa: E731
        ok_ref, got_ref = _run(lambda: method(ref))
        ok_db, got_db = _run(lambda: method(db))
        context = f"{mode} {[r.id for r in built]!r}"
        if not ok_db:
            assert _contents(db) == before, f"a refused write changed the store: {context}"
            if ok_ref:
                assert _declines(got_db), f"{context}: the reference wrote, db raised {got_db!r}"
                fresh = self._reference(db)
                ref.close()
                return fresh
            return ref
        assert ok_ref, f"{context}: db accepted what the reference refused ({got_ref!r})"
        assert got_db == got_ref, context
        assert _contents(db) == _contents(ref), f"stores differ after {context}"
        return ref

    def _generated(
        self, db: DatabaseLike, body: Callable[[SyncDatabase, Any], SyncDatabase]
    ) -> None:
        """Run ``body(ref, data)`` for each example, with ``db`` and ``ref`` emptied first."""
        ref = self._reference(db)

        @_settings()
        @given(st.data())
        def run(data: st.DataObject) -> None:
            nonlocal ref
            db.clear()
            ref.clear()
            ref = body(ref, data)

        try:
            run()
        finally:
            ref.close()

    def test_hostile_writes(self, db: DatabaseLike) -> None:
        """Records built from hostile ids, names, values, vectors and provenance: written alike
        or refused alike (typed, nothing written), on create, create_batch and upsert_batch."""

        def body(ref: SyncDatabase, data: st.DataObject) -> SyncDatabase:
            for _ in range(2):
                mode = data.draw(st.sampled_from(["create", "create", "upsert"]))
                ref = self._write(db, ref, data.draw(records()), mode)
            return ref

        self._generated(db, body)

    def test_hostile_queries(self, db: DatabaseLike) -> None:
        """Filters with odd operands, sorts and projections over odd paths, paging at the int64
        edges: the reference's records in its order, or a typed refusal changing nothing."""

        def body(ref: SyncDatabase, data: st.DataObject) -> SyncDatabase:
            ref = self._write(db, ref, data.draw(records()), "create")
            before = _contents(db)
            for _ in range(3):
                query = data.draw(queries())
                if isinstance(query, DataknobsDataError):
                    continue
                ok_ref, got_ref = _run(lambda: ref.search(query))  # noqa: B023
                ok_db, got_db = _run(lambda: db.search(query))  # noqa: B023
                context = repr(query)
                if ok_db:
                    assert ok_ref, (
                        f"db answered what the reference refused ({got_ref!r}): {context}"
                    )
                    assert isinstance(got_db, list) and isinstance(got_ref, list)
                    assert [canonical(r) for r in got_db] == [canonical(r) for r in got_ref], (
                        context
                    )
                    assert db.count(query) == ref.count(query), context
                else:
                    assert not ok_ref or isinstance(got_db, UnsupportedError), (
                        f"db raised {got_db!r} where the reference answered: {context}"
                    )
            assert _contents(db) == before
            return ref

        self._generated(db, body)

    def test_hostile_vector_searches(self, db: DatabaseLike) -> None:
        """Query vectors (huge, tiny, zero, NaN, wrong length), k at the int64 edges, every
        metric: the reference's hits within tolerance, or a typed refusal changing nothing."""

        def body(ref: SyncDatabase, data: st.DataObject) -> SyncDatabase:
            drawn = data.draw(st.lists(VECTORS, min_size=1, max_size=4))
            fields = [_attempt(partial(_vector, v)) for v in drawn if len(v) == 3]
            base = [
                Record({"v": f, "a": i}, id=f"r{i}")
                for i, f in enumerate(fields)
                if isinstance(f, VectorField)
            ]
            ref = self._write(db, ref, base, "upsert") if base else ref
            before = _contents(db)
            for _ in range(3):
                vector, k = data.draw(VECTORS), data.draw(K)
                metric = data.draw(st.sampled_from(list(DistanceMetric)))
                filt = data.draw(st.sampled_from([None, {"field": "a", "op": ">=", "value": 1}]))

                def search(d: DatabaseLike | SyncDatabase) -> list[VectorSearchResult]:
                    return d.vector_search(vector, field="v", k=k, metric=metric, filter=filt)  # noqa: B023

                ok_ref, got_ref = _run(lambda: search(ref))
                ok_db, got_db = _run(lambda: search(db))
                context = f"vector={vector!r} k={k!r} metric={metric} filter={filt}"
                if not ok_db:
                    assert not ok_ref or isinstance(got_db, UnsupportedError), (
                        f"db raised {got_db!r} where the reference answered: {context}"
                    )
                    continue
                assert ok_ref, f"db answered what the reference refused ({got_ref!r}): {context}"
                ranking = ref.vector_search(vector, field="v", k=2**31, metric=metric, filter=filt)
                assert isinstance(got_db, list)
                assert_hits(got_db, ranking, k=min(int(k), 2**31), context=context)
            assert _contents(db) == before
            return ref

        self._generated(db, body)

    def test_hostile_text_queries(self, db: DatabaseLike) -> None:
        """``text_search`` with hostile words, fields and k: hits or a typed error, never a raw
        one, and nothing changes (the memory backend has no full text to compare with)."""
        db.create(Record([Field("t", "plain words here", FieldType.TEXT)], id="t1"))
        before = _contents(db)

        @_settings()
        @given(
            STRINGS,
            st.one_of(st.none(), st.lists(NAMES, max_size=2)),
            K,
        )
        def run(query: str, fields: Sequence[str] | None, k: int) -> None:
            ok, got = _run(lambda: db.text_search(query, fields=fields, k=k))
            if ok:
                assert isinstance(got, list)
            assert _contents(db) == before

        run()
