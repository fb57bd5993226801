"""Fault injection: a write that fails at ANY engine call leaves no trace, and is retried fine.

For each kind of write (create, batches, update, upsert, delete, clear, a new vector field,
``load``, index creation), the write is run with a failure injected at its 1st engine call,
then its 2nd, ... until it completes without reaching the failure
(:mod:`dataknobs_data.testing.faults`: a proxy around the backend's REAL engine objects,
listed by :meth:`~dataknobs_data.contract.Backend.engine_seams`). After each failure:

* the write raised a :class:`~dataknobs_data.errors.DataknobsDataError` (the driver's error
  chained as its cause), or the injected error itself where the seam says it passes through;
* count, every record, the vector schema, vector search (ids and scores) and full-text
  search are exactly as before the write;
* on a persistent store (``Feature.PERSISTENT`` and a URL), ``close()`` succeeds and a
  reopened store holds exactly the same (every earlier confirmed write, nothing of the
  failed one): after the 1st failure and every ``DATAKNOBS_FAULT_REOPEN``-th one after it
  (default 4; 1: after every failure);
* the next attempt is the retry: it must not be refused (e.g. as a duplicate), and once it
  completes the store holds what the memory backend holds after the same write.

A backend that lists no seams runs only the last point (the write without a failure).
``DATAKNOBS_FAULT_POINTS`` caps the points per write (default 40; 0: no cap).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import pytest

from ...capabilities import Feature
from ...contract import VectorReplacement, text_value
from ...errors import DataknobsDataError
from ...factory import DatabaseFactory
from ...fields import Field, FieldType, VectorField
from ...query import Query
from ...records import Record
from ...vector.types import DistanceMetric, VectorConfig
from ..adapter import DatabaseLike, SyncView
from ..assertions import canonical
from ..dataset import QUERY_VECTORS, VECTOR_FIELD, build_records
from ..faults import FaultPlan, backend_of, fault_points, injected, reopen_every
from .base import ConformanceBase
from .fulltext import text_records
from .helpers import vector_field

__all__ = ["FaultTests", "WRITES"]


def _text(rid: str, body: str, vector: int | None = None) -> Record:
    fields: dict[str, Any] = {
        "body": Field("body", body, FieldType.TEXT),
        "title": f"title {rid}",
    }
    if vector is not None:
        fields[VECTOR_FIELD] = vector_field(QUERY_VECTORS[vector])
    return Record(fields, id=rid)


def _index(db: DatabaseLike) -> Any:
    return db.create_vector_index(VECTOR_FIELD, kind="hnsw")


def _replace_vectors(db: DatabaseLike) -> Any:
    """The synchroniser's in-place vector write (a backend operation): three records whose
    title is as read, one whose title is not (left alone)."""
    stored = {r.id: r for r in build_records()}
    items = [
        VectorReplacement(rid, vector_field(QUERY_VECTORS[k]), (text_value(stored[rid], "title"),))
        for k, rid in enumerate(("r01", "r02", "r03"))
    ]
    items.append(VectorReplacement("r04", vector_field(QUERY_VECTORS[0]), ("not its title",)))
    return backend_of(db).replace_vectors(VECTOR_FIELD, ["title"], items)


#: name -> the write (on the loaded store: the dataset's 30 records and the 5 text records)
WRITES: dict[str, Callable[[DatabaseLike], Any]] = {
    "create": lambda db: db.create(_text("n1", "quick new fox", 0)),
    "create_batch": lambda db: db.create_batch(
        [_text("n1", "quick fox", 0), _text("n2", "lazy", None), _text("n3", "fox", 2)]
    ),
    "create_batch_new_vector_field": lambda db: db.create_batch(
        [
            Record({"title": "x", "extra": VectorField([1.0, 2.0, 3.0])}, id="n1"),
            _text("n2", "quick", 1),
        ]
    ),
    "update": lambda db: db.update("r03", _text("r03", "quick quick quick", 3)),
    "update_batch": lambda db: db.update_batch(
        [_text("r01", "fox fox", 2), _text("t1", "dog", None), _text("nosuch", "x", 1)]
    ),
    "upsert": lambda db: db.upsert(_text("r04", "replaced, vector dropped", None)),
    "upsert_batch": lambda db: db.upsert_batch(
        [_text("n1", "quick", 1), _text("r02", "fox", 0), _text("t3", "dog", 3)]
    ),
    "delete": lambda db: db.delete("r05"),
    "delete_batch": lambda db: db.delete_batch(["r06", "t2", "nosuch", "r07"]),
    "clear": lambda db: db.clear(),
    "declare_vector_field": lambda db: db.declare_vector_field(
        "other", VectorConfig(dimensions=4, metric=DistanceMetric.EUCLIDEAN)
    ),
    "replace_vectors": _replace_vectors,
    "load": lambda db: db.load(
        [_text(f"n{i}", "quick fox" * i, i % 3) for i in range(1, 6)], batch_size=100
    ),
}


@dataclass(frozen=True)
class State:
    """What a reader can see: count, records, and vector and full-text search results."""

    count: int
    ids: list[str]
    records: list[Any]
    hits: list[tuple[str, float]]
    text: list[str]
    schema: dict[str, Any]

    def same_records(self, other: State) -> bool:
        """Same records, vector schema and vector hits (ids only: another engine's scores
        may differ in the last digits)."""
        return (self.count, self.records, self.schema) == (
            other.count,
            other.records,
            other.schema,
        ) and [h for h, _ in self.hits] == [h for h, _ in other.hits]


def observe(db: DatabaseLike) -> State:
    hits: list[tuple[str, float]] = []
    if VECTOR_FIELD in db.vector_fields():
        for q in QUERY_VECTORS[:1]:
            hits += [
                (h.id, round(h.score, 4)) for h in db.vector_search(q, field=VECTOR_FIELD, k=8)
            ]
    text: list[str] = []
    if db.capabilities().supports(Feature.FULL_TEXT):
        text = [h.id for h in db.text_search("quick fox dog", k=20)]
    records = db.search(Query())
    schema = {name: config.to_dict() for name, config in db.vector_fields().items()}
    return State(
        db.count(), [r.id for r in records], [canonical(r) for r in records], hits, text, schema
    )


#: dataset records the store starts with (the first ones: enough kinds of values and vectors;
#: every injected failure reads the whole store back twice, so it is kept small)
LOADED = 12


def _load(db: DatabaseLike) -> None:
    db.create_batch([*build_records()[:LOADED], *text_records()])


def _reopen(db: DatabaseLike, owned: bool) -> DatabaseLike:
    """Close ``db`` and open its URL again in the same shell (``owned``: release it too; the
    fixture's own database is released by the fixture)."""
    url = db.url
    assert url is not None
    db.close()  # after a failed write, close must succeed and keep every confirmed write
    if isinstance(db, SyncView):
        if owned:
            db.release()
        return SyncView(DatabaseFactory.create_async(url))
    return DatabaseFactory.create(url)


def attempt(
    db: DatabaseLike, plan: FaultPlan, write: Callable[[DatabaseLike], Any]
) -> BaseException | None:
    """Run ``write`` with ``plan``'s fault injected; what it raised, if anything."""
    with injected(backend_of(db), plan):
        try:
            write(db)
        except BaseException as exc:
            return exc
    return None


def check_error(plan: FaultPlan, failure: BaseException) -> None:
    """A failed write raised the package's error, or the injected one where its seam says
    the backend lets it pass."""
    seam = plan.seam
    assert seam is not None
    if seam.wrapped or not isinstance(failure, seam.error):
        assert isinstance(failure, DataknobsDataError), (
            f"a failure at {plan.fired} surfaced as {type(failure).__name__}: {failure}"
        )


class FaultTests(ConformanceBase):
    """A failure at each engine call of each write leaves no trace (module docstring)."""

    _fixture_db: DatabaseLike | None = None

    def survives_close(self, db: DatabaseLike) -> bool:
        """Whether a database opened again at ``db.url`` sees what ``db`` stored (then every
        failure is also checked across close + reopen). Hook: a backend whose URL does not
        name its data overrides this."""
        backend = backend_of(db)
        return (
            db.capabilities().supports(Feature.PERSISTENT)
            and db.url is not None
            and not getattr(backend, "temporary", False)
        )

    @contextmanager
    def _faulty_store(self, db: DatabaseLike) -> Iterator[list[DatabaseLike]]:
        """The loaded store, in a one-item list the test may replace by a reopened one
        (closed here at the end; the fixture closes the original)."""
        _load(db)
        self._fixture_db = db
        holder = [db]
        try:
            yield holder
        finally:
            if holder[0] is not db:
                with suppress(Exception):
                    holder[0].close()
                if isinstance(holder[0], SyncView):
                    holder[0].release()

    @staticmethod
    def _expected(write: Callable[[DatabaseLike], Any]) -> State:
        """The memory backend after the same write: what a completed retry must show."""
        ref = DatabaseFactory.create("memory://")
        try:
            _load(ref)
            write(ref)
            return observe(ref)
        finally:
            ref.close()

    def _inject(self, holder: list[DatabaseLike], write: Callable[[DatabaseLike], Any]) -> int:
        """Run ``write`` failing at call 1, 2, ...; returns the number of failures injected."""
        db = holder[0]
        persistent = self.survives_close(db)
        cap = fault_points()
        every = reopen_every()
        point = 0
        before = observe(db)
        while True:
            point += 1
            db = holder[0]
            plan = FaultPlan(point if cap is None or point <= cap else None)
            failure = attempt(db, plan, write)
            if plan.fired is None:  # completed without reaching the fault: the retry
                if failure is not None:
                    raise failure
                return point - 1
            if failure is None:
                # the backend absorbed the failure (e.g. retried): then the write is confirmed
                return point
            check_error(plan, failure)
            after = observe(db)
            assert after == before, f"a write failing at {plan.fired} left a trace"
            if persistent and (point - 1) % every == 0:
                holder[0] = db = _reopen(db, owned=holder[0] is not self._fixture_db)
                reopened = observe(db)
                assert reopened.same_records(before), (
                    f"after a failure at {plan.fired}, close + reopen changed the store"
                )
                before = reopened  # scores may differ in the last digits after a reopen

    @pytest.mark.parametrize("name", sorted(WRITES))
    def test_write_failing_at_each_engine_call_leaves_no_trace(
        self, db: DatabaseLike, name: str
    ) -> None:
        """The write ``name`` fails at its 1st, 2nd, ... engine call in turn: each failure is
        typed and leaves the store exactly as before (also after reopening), and the retry
        ends as the memory backend does."""
        write = WRITES[name]
        expected = self._expected(write)
        with self._faulty_store(db) as holder:
            failures = self._inject(holder, write)
            final = observe(holder[0])
            assert final.same_records(expected), f"{name} after {failures} failures"
            if self.survives_close(holder[0]):
                holder[0] = _reopen(holder[0], owned=holder[0] is not db)
                assert observe(holder[0]).same_records(expected)
            if name == "create" and backend_of(holder[0]).engine_seams():
                assert failures > 0, "a create made no call to any listed engine object"

    def test_index_creation_failing_at_each_engine_call_leaves_no_trace(
        self, db: DatabaseLike
    ) -> None:
        """Building a vector index fails at each engine call in turn and leaves records and
        answers as they were; a backend without index methods refuses, typed, and writes
        nothing."""
        if not backend_of(db).manages_indexes():
            _load(db)
            before = observe(db)
            with pytest.raises(DataknobsDataError):
                _index(db)
            assert observe(db) == before
            return
        with self._faulty_store(db) as holder:
            before = observe(holder[0])
            self._inject(holder, _index)
            after = observe(holder[0])  # an ANN index may order near ties differently
            assert (after.count, after.records) == (before.count, before.records)

    def test_multi_batch_load_failing_keeps_whole_batches_only(self, db: DatabaseLike) -> None:
        """``load`` commits batch by batch: a failure leaves a prefix of whole batches, and
        ``skip_existing=True`` completes it."""
        batches = [[f"n{b}{i}" for i in range(2)] for b in range(3)]
        records = [_text(rid, "quick", int(rid[-1])) for batch in batches for rid in batch]
        with self._faulty_store(db) as holder:
            base = set(observe(holder[0]).ids)
            cap = fault_points()
            for point in range(1, (cap or 10_000) + 1):
                store = holder[0]
                plan = FaultPlan(point)
                failure = attempt(store, plan, lambda db: db.load(records, batch_size=2))
                if plan.fired is not None and failure is not None:
                    check_error(plan, failure)
                have = set(observe(store).ids) - base
                whole = [set(b) for b in batches]
                prefix = [set().union(*whole[:j]) for j in range(len(whole) + 1)]
                assert have in prefix, f"a failure at {plan.fired} left part of a batch"
                if plan.fired is None:
                    break
                store.load(records, batch_size=2, skip_existing=True)
                assert set(observe(store).ids) - base == prefix[-1]
                store.delete_batch(sorted(prefix[-1]))
