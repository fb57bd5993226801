"""Vectors that follow their text (:mod:`dataknobs_data.vector.sync`): rules stored with the
data, exact staleness, pending marks written with the record, the write hook through every
write method, compare-and-set, failures, claims, and the vectorizer, in both shells.

Expected results come from the rule itself (which records' text changed), never from another
backend; the embedder is the built-in one, counted (:class:`~..embedders.CountingEmbedder`).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from ...contract import VectorReplacement, sync_row
from ...errors import DataknobsDataError
from ...fields import Field, FieldType, VectorField, text_hash
from ...marks import FAILED_FIELD, PENDING_FIELD
from ...query import Condition, Query
from ...records import Record
from ...vector.exceptions import DimensionMismatchError, VectorizingRuleError
from ...vector.sync.config import SyncConfig
from ...vector.sync.embedding import RetryPolicy
from ...vector.sync.rules import EmbedderInfo, VectorizingRule
from ...vector.sync.synchronizer import AsyncVectorTextSynchronizer, VectorTextSynchronizer
from ...vector.sync.tracker import ChangeTracker, Work
from ...vector.sync.vectorizer import IncrementalVectorizer
from ...vector.types import VectorConfig
from ..adapter import DatabaseLike, SyncView
from ..assertions import canonical
from ..embedders import CountingEmbedder
from .base import ConformanceBase

__all__ = ["SyncTests"]

DIMS = 16
FIELD = "emb"
SOURCES = ("title", "body")
N = 24
BATCH = 10
CONFIG = SyncConfig(batch_size=BATCH, retry=RetryPolicy(retries=1, backoff=0.0))


class _Blocking:
    """An :class:`AsyncVectorTextSynchronizer` driven on the view's loop (one test body for
    both shells)."""

    def __init__(self, inner: AsyncVectorTextSynchronizer, view: SyncView) -> None:
        self.inner, self.view = inner, view

    @property
    def tracker(self) -> ChangeTracker:
        return self.inner.sync.tracker

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name in ("set_rule", "remove_rule", "check", "check_record", "bulk_sync", "sync_record"):
            return lambda *a, **k: self.view.run(attr(*a, **k))
        return attr


def synchronizer(db: DatabaseLike, embedder: Any, config: SyncConfig = CONFIG) -> Any:
    """The synchroniser of ``db``'s own shell, with blocking methods."""
    if isinstance(db, SyncView):
        return _Blocking(AsyncVectorTextSynchronizer(db.inner, embedder, config), db)
    return VectorTextSynchronizer(db, embedder, config)


def drain(db: DatabaseLike, embedder: Any, config: SyncConfig = CONFIG) -> Any:
    """Run a vectorizer on ``db`` until nothing is pending (the asyncio task in the async
    shell, :meth:`IncrementalVectorizer.run_once` in the sync one)."""
    if isinstance(db, SyncView):
        vec = IncrementalVectorizer(db.inner, embedder, config)
        return db.run(vec.run(until_idle=True))
    return IncrementalVectorizer(db, embedder, config).run_once()


def texts(i: int) -> dict[str, Any]:
    return {"title": f"Title {i}", "body": f"body text number {i} about topic {i % 5}", "n": i}


def records(n: int = N) -> list[Record]:
    return [Record(texts(i), id=f"s{i:03d}") for i in range(n)]


def _odd_records() -> list[Record]:
    """Records whose sources are strings, text, a datetime, a number, JSON or missing, with
    and without a vector of ``FIELD`` (3 dimensions, model ``m``), with and without marks."""
    vec = VectorField([1.0, 0.0, 0.0], model_name="m", model_version="1", source_hash="h1")
    return [
        Record(
            {"title": "plain", "body": Field("body", "long text", FieldType.TEXT), "n": 0}, id="o1"
        ),
        Record({"title": "has a vector", "body": "b", FIELD: vec, "n": 1}, id="o2"),
        Record(
            {"title": "t3", "body": "b3", "n": 2, "when": datetime(2024, 1, 2, tzinfo=UTC)}, id="o3"
        ),
        Record({"title": "t4", "body": "b4", PENDING_FIELD: {FIELD: "x"}, "n": 3}, id="o4"),
        Record(
            {
                "title": 5,
                "when": "a string",
                "body": Field("body", "j", FieldType.JSON),
                FAILED_FIELD: None,
                "n": 4,
            },
            id="o5",
            metadata={"k": "v"},
        ),
        Record({"n": 5, "other": "not a vector"}, id="o6"),
        Record(  # a JSON value holding what looks like the vector's entry, before the vector
            {
                "cfg": {"name": FIELD, "type": "vector", "model_name": "fake"},
                "title": "t7",
                FIELD: vec,
            },
            id="o7",
        ),
    ]


def rule(embedder: Any, mode: str = "deferred", **options: Any) -> VectorizingRule:
    return VectorizingRule(FIELD, SOURCES, EmbedderInfo.of(embedder), mode, **options)  # type: ignore[arg-type]


def assembled(rec: Record) -> str:
    return "\n\n".join(str(rec[s]).strip() for s in SOURCES if rec.get(s))


def pending_ids(db: DatabaseLike) -> list[str]:
    return db.backend.pending_ids(None, 10_000)


class SyncTests(ConformanceBase):
    """The synchronisation layer on this backend, in this shell."""

    # == rules ==

    def test_rule_is_stored_with_the_data_and_reports_missing(self, db: DatabaseLike) -> None:
        """set_rule stores the rule as a setting and reports every record with text as missing;
        a database object opened on the store afterwards installs the tracker itself."""
        db.create_batch(records())
        emb = CountingEmbedder(DIMS)
        sync = synchronizer(db, emb)
        report = sync.set_rule(rule(emb))
        assert report.fields[FIELD].missing == N and report.fields[FIELD].current == 0
        stored = db.backend.read_setting("rule:" + FIELD)
        assert stored is not None and VectorizingRule.from_json(stored) == rule(emb)
        assert db.tracker is not None
        assert emb.calls == 0  # a check embeds nothing

    def test_rule_that_does_not_fit_the_field_is_refused(self, db: DatabaseLike) -> None:
        """A rule whose dimensions differ from the declared field's is refused, storing nothing."""
        db.declare_vector_field(FIELD, VectorConfig(dimensions=DIMS + 1))
        emb = CountingEmbedder(DIMS)
        sync = synchronizer(db, emb)
        with pytest.raises(DimensionMismatchError):
            sync.set_rule(rule(emb))
        assert db.backend.read_setting("rule:" + FIELD) is None
        with pytest.raises(VectorizingRuleError):
            VectorizingRule(FIELD, ("title",), EmbedderInfo.of(emb), "sometimes")  # type: ignore[arg-type]
        with pytest.raises(VectorizingRuleError):
            VectorizingRule(FIELD, (FIELD,), EmbedderInfo.of(emb))

    # == deferred: marks written with the record, drained by the vectorizer ==

    def test_deferred_writes_leave_marks_that_the_vectorizer_drains(self, db: DatabaseLike) -> None:
        """Every write of a deferred rule's field leaves a pending mark in the record (found by
        pending_ids); the vectorizer embeds them in one call per batch and clears the marks."""
        emb = CountingEmbedder(DIMS)
        synchronizer(db, emb).set_rule(rule(emb))
        recs = records()
        db.create_batch(recs[:10])
        for rec in recs[10:15]:
            db.create(rec)
        db.upsert_batch(recs[15:20])
        db.load(recs[20:])
        assert pending_ids(db) == [r.id for r in recs]
        stored = db.read(recs[0].id)
        assert stored is not None and stored[PENDING_FIELD] == {
            FIELD: text_hash(assembled(recs[0]))
        }
        sync = synchronizer(db, emb)
        marks = sync.check(method="marks").fields[FIELD]
        assert (marks.pending, marks.current) == (N, 0)
        done = drain(db, emb)
        assert done.embedded == N and emb.texts == N
        assert emb.calls == math.ceil(N / BATCH)
        assert pending_ids(db) == []
        full = sync.check().fields[FIELD]
        assert (full.current, full.needs_work) == (N, 0)
        for got in db.read_batch([r.id for r in recs]):
            assert got is not None and PENDING_FIELD not in got
            vec = got.fields[FIELD]
            assert isinstance(vec, VectorField)
            assert vec.source_hash == text_hash(assembled(got))
            assert (vec.model_name, vec.model_version) == (emb.model_name, emb.model_version)

    def test_only_source_edits_make_a_vector_stale(self, db: DatabaseLike) -> None:
        """After a sync, editing a source text marks exactly that record; editing other fields
        (also by writing the record without its vector) keeps the vector current."""
        emb = CountingEmbedder(DIMS)
        sync = synchronizer(db, emb)
        sync.set_rule(rule(emb))
        db.create_batch(records())
        sync.bulk_sync()
        edited, other, bare = db.read("s003"), db.read("s004"), db.read("s005")
        assert edited is not None and other is not None and bare is not None
        edited["body"] = "a completely different body"
        other["n"] = 1000
        db.update("s003", edited)
        db.update("s004", other)
        db.upsert(Record(texts(5) | {"n": -5}, id="s005"))  # no vector given: carried forward
        assert pending_ids(db) == ["s003"]
        for method in ("marks", "full"):
            fr = sync.check(method=method).fields[FIELD]
            assert (fr.pending, fr.current, fr.ids.get("pending")) == (1, N - 1, ["s003"])
        assert sync.check_record("s003") == {FIELD: "pending"}
        assert sync.check_record("s004") == {FIELD: "current"}
        assert sync.check_record("nope") is None
        carried = db.read("s005")
        assert carried is not None and isinstance(carried.fields[FIELD], VectorField)

    def test_delete_removes_pending_work(self, db: DatabaseLike) -> None:
        """A deleted record's pending mark goes with it."""
        emb = CountingEmbedder(DIMS)
        synchronizer(db, emb).set_rule(rule(emb))
        db.create_batch(records(6))
        assert db.delete("s001")
        assert db.delete_batch(["s002", "s004"]) == [True, True]
        assert pending_ids(db) == ["s000", "s003", "s005"]

    # == on_write: embedded inside the write ==

    def test_on_write_embeds_inside_every_write_method(self, db: DatabaseLike) -> None:
        """With an on_write rule and a synchroniser attached, every write method stores current
        vectors at once, one embedder call per batch, and leaves no mark."""
        emb = CountingEmbedder(DIMS)
        sync = synchronizer(db, emb)
        sync.set_rule(rule(emb, "on_write"))
        recs = records()
        db.create_batch(recs[:10])
        assert emb.calls == 1
        db.create(recs[10])
        db.upsert(recs[11])
        db.upsert_batch(recs[12:16])
        db.load(recs[16:])
        changed = db.read("s000")
        assert changed is not None
        changed["title"] = "A new title"
        db.update("s000", changed)
        db.update_batch([Record(texts(1) | {"title": "Another"}, id="s001")])
        assert pending_ids(db) == []
        report = sync.check()
        assert report.fields[FIELD].current == N and report.clean
        assert emb.texts == N + 2

    def test_empty_sources_get_no_vector(self, db: DatabaseLike) -> None:
        """A record whose sources are all empty gets no vector (reported as empty), and one
        whose text is emptied loses its vector; an empty text is never embedded."""
        emb = CountingEmbedder(DIMS)
        sync = synchronizer(db, emb)
        sync.set_rule(rule(emb, "on_write"))
        db.create(Record({"title": "  ", "n": 1}, id="blank"))
        db.create(Record(texts(2), id="full"))
        full = db.read("full")
        assert full is not None and FIELD in full
        db.update("full", Record({"title": "", "body": "", "n": 2, FIELD: full[FIELD]}))
        for rid in ("blank", "full"):
            got = db.read(rid)
            assert got is not None and FIELD not in got and PENDING_FIELD not in got
        fr = sync.check().fields[FIELD]
        assert (fr.empty, fr.current) == (2, 0)
        assert "" not in emb.seen and all(t.strip() for t in emb.seen)

    # == staleness ==

    def test_a_vector_without_provenance_or_of_another_model_is_stale(
        self, db: DatabaseLike
    ) -> None:
        """A vector with no model, or another model version, is stale; with version tracking
        off the version does not matter."""
        emb = CountingEmbedder(DIMS)
        old = CountingEmbedder(DIMS, version="0")
        bare = CountingEmbedder(DIMS).embed_one("Title 0\n\nx")
        db.create(Record(texts(0) | {FIELD: VectorField(bare)}, id="s000"))
        vec = old.embed_one(assembled(Record(texts(1))))
        digest = text_hash(assembled(Record(texts(1))))
        db.create(
            Record(
                texts(1)
                | {
                    FIELD: VectorField(
                        vec,
                        model_name=old.model_name,
                        model_version="0",
                        source_hash=digest,
                    )
                },
                id="s001",
            )
        )
        sync = synchronizer(db, emb)
        report = sync.set_rule(rule(emb, "manual"))
        assert report.fields[FIELD].stale == 2
        loose = synchronizer(db, emb, SyncConfig(track_model_version=False))
        fr = loose.check().fields[FIELD]
        assert (fr.stale, fr.current, fr.ids["stale"]) == (1, 1, ["s000"])

    def test_changing_a_rule_reports_what_becomes_stale(self, db: DatabaseLike) -> None:
        """Replacing a rule with other sources reports every synced vector stale; nothing is
        embedded until asked."""
        emb = CountingEmbedder(DIMS)
        sync = synchronizer(db, emb)
        sync.set_rule(rule(emb, "manual"))
        db.create_batch(records(8))
        assert sync.bulk_sync().embedded == 8
        emb.reset()
        report = sync.set_rule(VectorizingRule(FIELD, ("title",), EmbedderInfo.of(emb), "manual"))
        assert report.fields[FIELD].stale == 8 and emb.calls == 0
        assert sync.rules[FIELD].sources == ("title",)

    # == bulk_sync ==

    def test_bulk_sync_embeds_exactly_the_stale_texts_once(self, db: DatabaseLike) -> None:
        """bulk_sync embeds each stale distinct text once (shared texts and cached texts are
        not embedded again); a second run embeds and writes nothing."""
        emb = CountingEmbedder(DIMS)
        sync = synchronizer(db, emb)
        sync.set_rule(rule(emb, "manual"))
        recs = records()
        recs.append(Record(texts(0), id="twin"))  # the same text as s000
        db.create_batch(recs)
        first = sync.bulk_sync()
        assert (first.embedded, first.written) == (N, N + 1)
        assert emb.texts == N
        edited = db.read("s007")
        assert edited is not None
        edited["title"] = "Edited"
        db.update("s007", edited)
        emb.reset()
        second = sync.bulk_sync()
        assert (second.embedded, second.written, emb.seen) == (1, 1, [assembled(edited)])
        emb.reset()
        third = sync.bulk_sync()
        assert (third.embedded, third.written, emb.calls) == (0, 0, 0)
        assert sync.check().clean

    def test_bulk_sync_takes_a_filter(self, db: DatabaseLike) -> None:
        """Only the records matching the filter are synchronised."""
        emb = CountingEmbedder(DIMS)
        sync = synchronizer(db, emb)
        sync.set_rule(rule(emb, "manual"))
        db.create_batch(records())
        done = sync.bulk_sync({"field": "n", "op": "<", "value": 5})
        assert done.embedded == 5
        fr = sync.check().fields[FIELD]
        assert (fr.current, fr.missing) == (5, N - 5)

    # == failures ==

    def test_embedder_failures_are_recorded_per_record_and_not_retried(
        self, db: DatabaseLike
    ) -> None:
        """A text the embedder keeps failing on is recorded on its record with the error; the
        rest of its batch is embedded; later runs skip it until its text changes."""
        emb = CountingEmbedder(DIMS, fail_on=["number 3 "])
        sync = synchronizer(db, emb)
        sync.set_rule(rule(emb))
        db.create_batch(records(8))
        done = drain(db, emb)
        assert (done.embedded, done.failed) == (7, 1)
        bad = db.read("s003")
        assert bad is not None and PENDING_FIELD not in bad
        assert "number 3" in bad[FAILED_FIELD][FIELD]["error"]
        fr = sync.check().fields[FIELD]
        assert (fr.failed, fr.current, fr.ids["failed"]) == (1, 7, ["s003"])
        emb.reset()
        assert drain(db, emb).embedded == 0 and sync.bulk_sync().embedded == 0
        assert emb.calls == 0
        bad["body"] = "now a text that embeds"
        db.update("s003", bad)
        assert pending_ids(db) == ["s003"]
        assert drain(db, emb).embedded == 1 and sync.check().clean

    # == compare-and-set ==

    def test_a_vector_of_an_old_text_is_never_written(self, db: DatabaseLike) -> None:
        """If the text changes between reading and writing back, the vector embedded from the
        old text is not written and the record stays pending for its new text."""
        emb = CountingEmbedder(DIMS)
        sync = synchronizer(db, emb)
        sync.set_rule(rule(emb))
        db.create_batch(records(3))
        tracker: ChangeTracker = sync.tracker
        old = db.read("s001")
        assert old is not None
        work = Work()
        work.add("s001", FIELD, text_hash(assembled(old)), assembled(old))
        outcomes = tracker.embed(work)
        old["title"] = "Changed meanwhile"
        db.update("s001", old)  # the concurrent edit
        done = tracker.write_back(db.backend, work, outcomes)
        assert (done.moved, done.vectors) == (1, 0)
        now = db.read("s001")
        assert now is not None and FIELD not in now
        assert now[PENDING_FIELD] == {FIELD: text_hash(assembled(now))}

    # == the provenance scan and in-place vectors (backend operations) ==

    def test_provenance_scan_reads_what_the_records_hold(self, db: DatabaseLike) -> None:
        """scan_sync_rows gives, in id order and pages, each source's value when it is a
        string (not a datetime, a number or a missing field), each vector's provenance and
        the raw marks, exactly as the records read back say (:func:`contract.sync_row`);
        a filter selects the records."""
        db.create_batch(_odd_records())
        backend = db.backend
        sources, vectors = ["title", "body", "when"], [FIELD, "other"]
        stored = sorted((r for r in db.search(Query()) if r is not None), key=lambda r: r.id)
        want = [sync_row(r, sources, vectors) for r in stored]
        pages = list(backend.scan_sync_rows(None, sources, vectors, 2))
        assert [len(p) for p in pages][:-1] == [2] * (len(pages) - 1)
        assert [row for page in pages for row in page] == want
        cond = Condition.make("n", ">=", 2)
        got = [row for page in backend.scan_sync_rows(cond, sources, vectors, 10) for row in page]
        assert got == [w for w, r in zip(want, stored, strict=True) if r.get("n", -1) >= 2]

    def test_replace_vectors_is_a_compare_and_set(self, db: DatabaseLike) -> None:
        """replace_vectors writes a vector (and nothing else) where the record's sources still
        hold the values read and it has no mark; a changed text, a mark or a missing record
        is left alone (False). The vector is searchable at once."""
        db.create_batch(_odd_records())
        backend = db.backend
        before = {r.id: r for r in db.search(Query())}
        sources = ["title", "body"]
        rows = {
            row.id: row
            for page in backend.scan_sync_rows(None, sources, [FIELD], 50)
            for row in page
        }
        new = VectorField([0.0, 0.0, 1.0], model_name="m", model_version="1", source_hash="h2")
        items = [
            VectorReplacement("o1", new, rows["o1"].texts),  # no vector yet
            VectorReplacement("o2", new, rows["o2"].texts),  # replaces its vector
            VectorReplacement("o3", new, ("changed", rows["o3"].texts[1])),  # text moved on
            VectorReplacement("o4", new, rows["o4"].texts),  # holds a mark
            VectorReplacement("nosuch", new, (None, None)),
        ]
        assert backend.replace_vectors(FIELD, sources, items) == [True, True, False, False, False]
        after = {r.id: r for r in db.search(Query())}
        assert sorted(after) == sorted(before)
        for rid in ("o1", "o2"):
            rec = after[rid]
            assert canonical(rec)[1][FIELD] == canonical(Record({FIELD: new}))[1][FIELD]
            rest = Record.trusted(rid, {n: f for n, f in rec.fields.items() if n != FIELD}, {})
            old = before[rid]
            kept = Record.trusted(rid, {n: f for n, f in old.fields.items() if n != FIELD}, {})
            assert canonical(rest) == canonical(kept) and rec.metadata == old.metadata
        for rid in ("o3", "o4", "o5"):
            assert canonical(after[rid]) == canonical(before[rid])
        hits = db.vector_search(np.array([0.0, 0.0, 1.0], dtype=np.float32), field=FIELD, k=2)
        assert sorted(h.id for h in hits) == ["o1", "o2"]

    def test_replace_vectors_refuses_a_vector_that_does_not_fit(self, db: DatabaseLike) -> None:
        """A vector of other dimensions or another model is refused, typed, writing none of
        the batch."""
        db.create_batch(_odd_records())
        backend = db.backend
        before = [canonical(r) for r in db.search(Query())]
        rows = {
            row.id: row for page in backend.scan_sync_rows(None, ["title"], [], 50) for row in page
        }
        good = VectorField([1.0, 0.0, 0.0], model_name="m", model_version="1")
        for bad in (
            VectorField([1.0, 0.0], model_name="m", model_version="1"),
            VectorField([1.0, 0.0, 0.0], model_name="other", model_version="1"),
        ):
            items = [
                VectorReplacement("o1", good, rows["o1"].texts),
                VectorReplacement("o5", bad, rows["o5"].texts),
            ]
            with pytest.raises(DataknobsDataError):
                backend.replace_vectors(FIELD, ["title"], items)
            assert [canonical(r) for r in db.search(Query())] == before

    # == claims ==

    def test_claims_are_disjoint_between_workers(self, db: DatabaseLike) -> None:
        """Two workers claim disjoint pending records; a worker takes its own claims back at
        once; released claims are claimable by another."""
        emb = CountingEmbedder(DIMS)
        synchronizer(db, emb).set_rule(rule(emb))
        db.create_batch(records(10))
        backend = db.backend
        a = backend.claim_pending("a", 4, 60.0)
        b = backend.claim_pending("b", 10, 60.0)
        assert len(a) == 4 and len(b) == 6 and not set(a) & set(b)
        assert backend.claim_pending("b", 10, 60.0) == b  # its own, again
        assert backend.claim_pending("c", 10, 60.0) == []
        backend.release_claims("a", a)
        assert backend.claim_pending("c", 10, 60.0) == a

    # == the tracker's dependency map ==

    def test_dependencies_come_from_the_rules(self, db: DatabaseLike) -> None:
        """The tracker maps each source field to the vector fields made from it."""
        emb = CountingEmbedder(DIMS)
        sync = synchronizer(db, emb)
        sync.set_rule(rule(emb, "manual"))
        sync.set_rule(VectorizingRule("emb_title", ("title",), EmbedderInfo.of(emb), "manual"))
        deps = sync.tracker.dependencies()
        assert deps == {"title": [FIELD, "emb_title"], "body": [FIELD]}
        assert sync.tracker.affected(["n"]) == [] and sync.tracker.affected(["body"]) == [FIELD]
        assert sync.remove_rule("emb_title") and not sync.remove_rule("emb_title")
