"""The pure parts of :mod:`dataknobs_data.vector.sync`: rules, staleness, marks, the cache,
embedding with retries, configuration, and the vectorizer's loops (on the memory backend)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from dataknobs_data import DatabaseFactory, Record, VectorField
from dataknobs_data.errors import ValidationError
from dataknobs_data.fields import text_hash
from dataknobs_data.marks import FAILED_FIELD, PENDING_FIELD
from dataknobs_data.testing.embedders import CountingEmbedder
from dataknobs_data.vector.exceptions import (
    EmbeddingFailedError,
    MixedEmbeddingModelsError,
    VectorizingRuleError,
)
from dataknobs_data.vector.sync import (
    AsyncVectorTextSynchronizer,
    EmbeddingCache,
    IncrementalVectorizer,
    RetryPolicy,
    SyncConfig,
    VectorizingRule,
    VectorState,
    VectorTextSynchronizer,
)
from dataknobs_data.vector.sync.embedding import embed_texts
from dataknobs_data.vector.sync.marking import Marks, read_marks, with_marks
from dataknobs_data.vector.sync.rules import EmbedderInfo, vector_state

INFO = EmbedderInfo("m", "1", 4)
FAST = SyncConfig(batch_size=4, retry=RetryPolicy(retries=2, backoff=0.0))


# -- rules -------------------------------------------------------------------------------------
def test_assembly_joins_nonempty_sources_in_order_or_formats_the_template() -> None:
    rec = Record({"a": " first ", "b": "", "c": "third", "n": 3})
    assert VectorizingRule("v", ("c", "a", "b"), INFO).assemble(rec) == "third\n\nfirst"
    rule = VectorizingRule("v", ("a", "c"), INFO, template="A: {a} | C: {c} | {a}")
    assert rule.assemble(rec) == "A:  first  | C: third |  first"
    assert VectorizingRule("v", ("b", "missing"), INFO).assemble(rec) is None
    assert VectorizingRule("v", ("n",), INFO).assemble(rec) is None  # not text: no text


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sources": ()},
        {"sources": "title"},
        {"sources": ("a", "a")},
        {"sources": ("v",)},
        {"sources": ("a.b",)},
        {"mode": "often"},
        {"template": "{other}"},
        {"template": "{a!r}"},
        {"template": "{a:>10}"},
        {"template": "{a"},
        {"embedder": EmbedderInfo("m", "1", 0)},
    ],
)
def test_malformed_rules_are_refused_naming_the_field(kwargs: dict[str, object]) -> None:
    args: dict[str, object] = {"field": "v", "sources": ("a",), "embedder": INFO, **kwargs}
    with pytest.raises(VectorizingRuleError, match="'v'"):
        VectorizingRule(**args)  # type: ignore[arg-type]


def test_rules_round_trip_through_json_and_refuse_garbage() -> None:
    rule = VectorizingRule("v", ("a", "b"), EmbedderInfo("m", "2", 8, "hashing:8"), "on_write")
    assert VectorizingRule.from_json(rule.to_json()) == rule
    for bad in ("not json", '{"field": "v"}', '{"field": "v", "sources": ["a"], "embedder": 1}'):
        with pytest.raises(VectorizingRuleError):
            VectorizingRule.from_json(bad)


def test_staleness_is_exact() -> None:
    rule = VectorizingRule("v", ("a",), INFO)
    digest = text_hash("hello")
    good = VectorField(np.ones(4), model_name="m", model_version="1", source_hash=digest)
    cases = {
        "current": good,
        "other text": VectorField(
            np.ones(4), model_name="m", model_version="1", source_hash=text_hash("x")
        ),
        "other version": VectorField(
            np.ones(4), model_name="m", model_version="2", source_hash=digest
        ),
        "no provenance": VectorField(np.ones(4)),
        "other dims": VectorField(
            np.ones(3), model_name="m", model_version="1", source_hash=digest
        ),
    }
    states = {k: vector_state(Record({"a": "hello", "v": v}), rule)[0] for k, v in cases.items()}
    assert states == {
        "current": VectorState.CURRENT,
        "other text": VectorState.STALE,
        "other version": VectorState.STALE,
        "no provenance": VectorState.STALE,
        "other dims": VectorState.STALE,
    }
    assert vector_state(Record({"a": "hello", "v": cases["other version"]}), rule, False)[0] == (
        VectorState.CURRENT
    )
    assert vector_state(Record({"a": "hello"}), rule)[0] is VectorState.MISSING
    assert vector_state(Record({"a": ""}), rule)[0] is VectorState.EMPTY


def test_marks_round_trip_and_a_failed_text_is_not_marked_again() -> None:
    marks = Marks()
    marks.set_pending("v", "h1")
    rec = with_marks(Record({"a": "x"}, id="r"), marks)
    assert rec[PENDING_FIELD] == {"v": "h1"}
    marks.set_failed("v", "h1", "boom", 3)
    rec = with_marks(rec, marks)
    assert PENDING_FIELD not in rec and rec[FAILED_FIELD]["v"]["error"] == "boom"
    again = read_marks(rec)
    again.set_pending("v", "h1")  # the same text: stays failed
    assert again.pending == {} and "v" in again.failed
    again.set_pending("v", "h2")  # a new text: pending again
    assert again.pending == {"v": "h2"} and again.failed == {}
    assert with_marks(rec, Marks()).keys() == ["a"]


# -- cache and embedding -------------------------------------------------------------------------
def test_the_cache_keeps_vectors_by_model_version_and_text_in_memory_and_in_a_file(
    tmp_path: Path,
) -> None:
    vec = np.arange(4, dtype=np.float32)
    memory = EmbeddingCache(max_items=2)
    memory.put_many("m", "1", {"a": vec, "b": vec, "c": vec})
    assert set(memory.get_many("m", "1", ["a", "b", "c"])) == {"b", "c"}  # LRU: "a" dropped
    assert memory.get_many("m", "2", ["b"]) == {}
    path = tmp_path / "cache.db"
    first = EmbeddingCache(path)
    first.put_many("m", "1", {"a": vec})
    first.close()
    second = EmbeddingCache(path)
    got = second.get_many("m", "1", ["a", "z"])
    assert list(got) == ["a"] and np.array_equal(got["a"], vec)
    assert not got["a"].flags.writeable
    assert (second.hits, second.misses, len(second)) == (1, 1, 1)


def test_embedding_retries_with_backoff_then_isolates_the_failing_text() -> None:
    emb = CountingEmbedder(8, fail_on=["bad"])
    waits: list[float] = []
    texts = {text_hash(t): t for t in ("good one", "bad one", "good two")}
    out = embed_texts(
        emb, EmbedderInfo.of(emb), texts, None, RetryPolicy(2, 0.5, 0.75), 10, waits.append
    )
    assert waits == [0.5, 0.75]  # doubled, capped
    assert emb.calls == 3 + 3  # the batch three times, then one call per text
    assert set(out.vectors) == {text_hash("good one"), text_hash("good two")}
    assert "bad" in out.errors[text_hash("bad one")] and out.embedded == 2


def test_embedder_output_of_the_wrong_shape_or_not_finite_is_a_failure() -> None:
    class Broken(CountingEmbedder):
        def embed(self, texts):  # type: ignore[no-untyped-def]
            return np.full((len(texts), 8), np.nan, dtype=np.float32)

    emb = Broken(8)
    out = embed_texts(emb, EmbedderInfo.of(emb), {"h": "t"}, None, RetryPolicy(0), 10)
    assert out.vectors == {} and "non-finite" in out.errors["h"]


def test_config_is_validated() -> None:
    for bad in ({"batch_size": 0}, {"lease": 0}, {"worker": ""}, {"retry": 3}):
        with pytest.raises(ValidationError):
            SyncConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="retries"):
        RetryPolicy(retries=-1)


# -- the synchroniser and the vectorizer on the memory backend -----------------------------------
def _db_with_rule(emb: CountingEmbedder, mode: str = "deferred"):  # type: ignore[no-untyped-def]
    db = DatabaseFactory.create("memory://")
    sync = VectorTextSynchronizer(db, emb, FAST)
    sync.set_rule(sync.rule_for("v", ["a"], mode=mode), check=False)  # type: ignore[arg-type]
    return db, sync


def test_sync_record_embeds_one_record_and_raises_on_failure() -> None:
    emb = CountingEmbedder(8, fail_on=["bad"])
    db, sync = _db_with_rule(emb, "manual")
    db.create_batch([Record({"a": "fine"}, id="ok"), Record({"a": "bad"}, id="ko")])
    assert sync.sync_record("ok") and not sync.sync_record("ok") and not sync.sync_record("zz")
    with pytest.raises(EmbeddingFailedError, match="'ko'"):
        sync.sync_record("ko")
    stored = db.read("ko")
    assert stored is not None and "bad" in stored[FAILED_FIELD]["v"]["error"]


def test_a_synchroniser_with_another_embedder_refuses_to_embed() -> None:
    emb = CountingEmbedder(8)
    db, _ = _db_with_rule(emb, "manual")
    other = VectorTextSynchronizer(db, CountingEmbedder(8, version="9"), FAST)
    with pytest.raises(MixedEmbeddingModelsError):
        other.bulk_sync()
    assert VectorTextSynchronizer(db).check().fields["v"].current == 0  # checks need none


def test_the_background_vectorizer_thread_and_the_asyncio_task() -> None:
    emb = CountingEmbedder(8)
    db, sync = _db_with_rule(emb)
    with IncrementalVectorizer(db, emb, FAST, poll_interval=0.01) as vec:
        db.create_batch([Record({"a": f"t{i}"}, id=f"r{i}") for i in range(10)])
        while vec.totals.written < 10:
            vec._stop.wait(0.01)
    assert sync.check().clean

    async def main() -> None:
        adb = DatabaseFactory.create_async("memory://")
        asyn = AsyncVectorTextSynchronizer(adb, emb, FAST)
        await asyn.set_rule(asyn.rule_for("v", ["a"]), check=False)
        await adb.create_batch([Record({"a": f"u{i}"}, id=f"u{i}") for i in range(6)])
        task = IncrementalVectorizer(adb, emb, FAST)
        done = await task.run(until_idle=True)
        assert done.embedded == 6
        assert (await asyn.check()).clean
        await adb.close()

    asyncio.run(main())


def test_the_auto_flags_choose_between_embedding_in_the_write_and_a_mark() -> None:
    """on_write rules: auto_embed_on_create=False leaves new records marked; an update that
    changes the text still embeds in the write (and the reverse with the flags swapped)."""
    emb = CountingEmbedder(8)
    for create_flag, update_flag in ((False, True), (True, False)):
        db = DatabaseFactory.create("memory://")
        config = SyncConfig(
            auto_embed_on_create=create_flag, auto_update_on_text_change=update_flag
        )
        sync = VectorTextSynchronizer(db, emb, config)
        sync.set_rule(sync.rule_for("v", ["a"], mode="on_write"), check=False)
        db.upsert(Record({"a": "new text"}, id="r1"))
        created = db.read("r1")
        assert created is not None
        assert ("v" in created) is create_flag and (PENDING_FIELD in created) is not create_flag
        db.upsert(Record({"a": "changed text"}, id="r1"))
        updated = db.read("r1")
        assert updated is not None
        assert (PENDING_FIELD in updated) is not update_flag
        assert sync.check_record("r1") == {"v": "current" if update_flag else "pending"}
