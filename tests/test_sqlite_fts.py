"""Full-text search (FTS5, BM25) on the SQLite backend: the index follows every write."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dataknobs_data import (
    DatabaseFactory,
    F,
    Feature,
    Field,
    FieldType,
    QueryError,
    Record,
    SyncDatabase,
    TextSearchResult,
    UnknownFieldError,
    UnsupportedError,
    ValidationError,
)
from dataknobs_data.backends.memory import MemoryBackend
from dataknobs_data.backends.sqlite.connect import connect
from dataknobs_data.testing import requires_extra, skip_unless_extra
from dataknobs_data.text import TextSearchRequest

needs_sqlite = requires_extra("sqlite")

FILLER = [
    "the quick brown fox jumps over the lazy dog",
    "a stitch in time saves nine",
    "all that glitters is not gold",
    "an apple a day keeps the doctor away",
    "rome was not built in a day",
    "every cloud has a silver lining",
]


def text(name: str, value: str | None) -> Field:
    return Field(name, value, FieldType.TEXT)


def doc(rid: str, body: str | None, **extra: Any) -> Record:
    fields = [
        text("body", body),
        *(v if isinstance(v, Field) else Field(k, v) for k, v in extra.items()),
    ]
    return Record(fields, id=rid)


def corpus() -> list[Record]:
    return [doc(f"filler{i}", s, n=100 + i) for i, s in enumerate(FILLER)]


def ids(hits: list[TextSearchResult]) -> list[str]:
    return [h.id for h in hits]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SyncDatabase]:
    skip_unless_extra("sqlite")
    with DatabaseFactory.create(f"sqlite:///{tmp_path / 'fts.db'}") as database:
        assert isinstance(database, SyncDatabase)
        database.create_batch(corpus())
        yield database


def test_capability_declared(db: SyncDatabase) -> None:
    assert db.capabilities().supports(Feature.FULL_TEXT)
    assert "unicode61" in db.capabilities().notes["full_text"]


def test_create_is_indexed_and_results_are_complete(db: SyncDatabase) -> None:
    db.create(doc("p1", "Parsing JSON documents in Python", n=1, tag="x"))
    (hit,) = db.text_search("python")
    assert hit.id == "p1" and hit.rank == 1 and hit.score > 0
    assert hit.record == db.read("p1")
    assert db.text_search("PYTHON") == db.text_search("python")  # case-folded
    assert ids(db.text_search("documents")) == ["p1"]  # no stemming: "document" misses
    assert db.text_search("document") == []


def test_update_and_upsert_replace_the_indexed_text(db: SyncDatabase) -> None:
    db.create(doc("p1", "python parser"))
    assert db.update("p1", doc("p1", "rust compiler"))
    assert db.text_search("python") == []
    assert ids(db.text_search("compiler")) == ["p1"]
    db.upsert(doc("p1", "golang runtime"))
    assert db.text_search("compiler") == [] and ids(db.text_search("golang")) == ["p1"]
    # The TEXT field becomes null, then a plain string: nothing is indexed any more.
    db.upsert(doc("p1", None))
    assert db.text_search("golang") == []
    db.upsert(Record({"body": "golang as a STRING field"}, id="p1"))
    assert db.text_search("golang") == []
    db.update_batch([doc("p1", "erlang beam"), doc("missing", "erlang")])
    assert ids(db.text_search("erlang")) == ["p1"]


def test_delete_and_clear_remove_from_the_index(db: SyncDatabase) -> None:
    db.create_batch([doc("p1", "python one"), doc("p2", "python two"), doc("p3", "python 3")])
    assert db.delete("p2")
    assert ids(db.text_search("python")) == ["p1", "p3"]
    db.delete_batch(["p1", "nope"])
    assert ids(db.text_search("python")) == ["p3"]
    db.clear()
    assert db.text_search("python") == [] and db.text_search("gold") == []
    db.create(doc("p4", "python again"))  # rowids restart; no stale index rows show up
    assert ids(db.text_search("python")) == ["p4"]
    assert db.text_search("one two") == []


def test_failed_batches_leave_the_index_unchanged(db: SyncDatabase) -> None:
    db.create(doc("p1", "python parser"))
    before = [(h.id, h.score) for h in db.text_search("python parser rust gold")]
    with pytest.raises(Exception, match="p1"):
        db.create_batch([doc("p2", "rust"), doc("p1", "rust")])
    backend: Any = db.backend
    original = backend._write_rows

    def write_then_fail(*args: Any) -> None:
        original(*args)  # records and index rows are written, then the batch fails
        raise RuntimeError("boom")

    backend._write_rows = write_then_fail
    try:
        with pytest.raises(RuntimeError, match="boom"):
            db.upsert_batch([doc("p1", "rust"), doc("p3", "rust parser")])
        with pytest.raises(RuntimeError, match="boom"):
            db.upsert(doc("filler5", "rust"))
    finally:
        del backend._write_rows
    assert [(h.id, h.score) for h in db.text_search("python parser rust gold")] == before
    assert db.text_search("rust") == []


def test_bm25_ranks_more_matching_words_first(db: SyncDatabase) -> None:
    db.create_batch(
        [
            doc("one", "python tutorial for beginners"),
            doc("three", "python json parser tutorial"),
            doc("two", "a python json guide"),
        ]
    )
    hits = db.text_search("python json parser")
    assert ids(hits) == ["three", "two", "one"]
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].score > hits[1].score > hits[2].score > 0
    assert ids(db.text_search("python json parser", k=2)) == ["three", "two"]


def test_ties_come_back_in_id_order(db: SyncDatabase) -> None:
    db.create_batch([doc("b", "same words"), doc("a", "same words"), doc("c", "same words")])
    hits = db.text_search("same")
    assert ids(hits) == ["a", "b", "c"]
    assert len({h.score for h in hits}) == 1


def test_fields_restrict_the_search(db: SyncDatabase) -> None:
    db.create_batch(
        [
            Record([text("title", "python"), text("body", "about snakes")], id="t"),
            Record([text("title", "snakes"), text("body", "python code")], id="b"),
            Record([text("title", "python"), text("body", "python")], id="both"),
        ]
    )
    assert ids(db.text_search("python", fields=["title"])) == ["both", "t"]
    # BM25 normalises by length: the one-word body outranks the two-word one.
    assert ids(db.text_search("python", fields=["body"])) == ["both", "b"]
    assert set(ids(db.text_search("python"))) == {"t", "b", "both"}
    assert db.text_search("python")[0].id == "both"  # matches in two fields add up
    with pytest.raises(UnknownFieldError, match="nosuch"):
        db.text_search("python", fields=["nosuch"])
    assert ids(db.text_search("python", fields=["title", "body"])) == ids(db.text_search("python"))
    # Field names are values, never SQL or FTS5 syntax.
    for name in ['title") OR 1=1 --', "body:", "*"]:
        with pytest.raises(UnknownFieldError):
            db.text_search("python", fields=[name])
    assert db.count() == len(FILLER) + 3


def test_filter_runs_with_the_match(db: SyncDatabase) -> None:
    db.create_batch([doc(f"p{i}", "python " * (i + 1), n=i) for i in range(10)])
    hits = db.text_search("python", filter=F("n") < 3, k=10)
    assert sorted(ids(hits)) == ["p0", "p1", "p2"]
    # k rows come back whenever k rows match, even if better ones are filtered out.
    assert len(db.text_search("python", filter=F("n") >= 5, k=5)) == 5
    assert db.text_search("python", filter={"field": "n", "op": "gt", "value": 100}) == []
    assert ids(db.text_search("python", filter=F("_id") == "p4")) == ["p4"]


@pytest.mark.parametrize(
    "query",
    [
        '"',
        '"python',
        "python*",
        "*",
        "NEAR(python json",
        "NEAR(",
        "-python",
        "-",
        "body:python",
        ":",
        "AND",
        "python AND",
        "OR NOT",
        "(python",
        "^python",
        "python + json",
        "{body}: x",
        "'; DROP TABLE records; --",
        "\x00",
    ],
)
def test_query_syntax_characters_are_plain_text(db: SyncDatabase, query: str) -> None:
    db.create(doc("p1", "python json and near"))
    hits = db.text_search(query)
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    if query.lower().lstrip('"(^-*').startswith("python"):
        assert hits[0].id == "p1"
    assert db.count() == len(FILLER) + 1


def test_words_match_literally(db: SyncDatabase) -> None:
    db.create_batch([doc("p1", "python json"), doc("p2", "pythonic"), doc("p3", "and or not")])
    assert ids(db.text_search("python*")) == ["p1"]  # no prefix query
    assert ids(db.text_search("AND")) == ["p3"]  # an operator word is just a word
    assert ids(db.text_search('"json"')) == ["p1"]
    assert set(ids(db.text_search("python pythonic"))) == {"p1", "p2"}  # words are OR-ed
    assert db.text_search("NOT") == db.text_search("not")
    # A word with punctuation inside matches the phrase of its parts, as it was indexed.
    db.create(doc("p5", "see e-mail body: python"))
    assert ids(db.text_search("e-mail")) == ids(db.text_search("e:mail")) == ["p5"]
    assert ids(db.text_search("body:python")) == ["p5"]
    assert db.text_search("mail-e") == []
    db.create(doc("p4", "nul\x00separated"))
    assert ids(db.text_search("separated")) == ["p4"]
    assert ids(db.text_search("nul\x00separated")) == ["p4"]


def test_bad_arguments_are_refused(db: SyncDatabase) -> None:
    with pytest.raises(QueryError):
        db.text_search(None)  # type: ignore[arg-type]
    with pytest.raises(QueryError):
        db.text_search("x", k=0)
    with pytest.raises(QueryError):
        db.text_search("x", k=True)
    with pytest.raises(QueryError):
        db.text_search("x", fields="body")
    with pytest.raises(QueryError):
        db.text_search("x", fields=[])
    with pytest.raises(ValidationError):
        db.text_search("x", fields=["a.b"])
    with pytest.raises(QueryError):
        db.text_search("x", filter={"field": "n", "op": "nosuch", "value": 1})


@needs_sqlite
def test_reopening_keeps_the_index(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keep.db'}"
    with DatabaseFactory.create(url) as db:
        db.create_batch([*corpus(), doc("p1", "python json"), doc("p2", "python")])
        first = [(h.id, h.score) for h in db.text_search("python json")]
    with DatabaseFactory.create(url) as db:
        assert [(h.id, h.score) for h in db.text_search("python json")] == first
        db.delete("p1")
        assert ids(db.text_search("python json")) == ["p2"]


@needs_sqlite
def test_a_file_without_the_index_gets_it_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with DatabaseFactory.create(f"sqlite:///{path}") as db:
        db.create_batch(
            [
                *corpus(),
                Record([text("title", "python"), Field("n", 1), text("body", "json")], id="p1"),
                doc("p2", None),
            ]
        )
        expected = [(h.id, h.score) for h in db.text_search("python json gold")]
    conn, _ = connect(str(path))
    conn.execute('DROP TABLE "records__fts"')
    conn.close()
    with DatabaseFactory.create(f"sqlite:///{path}") as db:
        assert [(h.id, h.score) for h in db.text_search("python json gold")] == expected
        assert ids(db.text_search("python", fields=["title"])) == ["p1"]
        db.delete("p1")  # the rebuilt rows follow the same rowid scheme
        assert ids(db.text_search("python json")) == []


@needs_sqlite
def test_collections_have_separate_indexes(tmp_path: Path) -> None:
    path = tmp_path / "two.db"
    with (
        DatabaseFactory.create(f"sqlite:///{path}?collection=a") as a,
        DatabaseFactory.create(f"sqlite:///{path}?collection=b") as b,
    ):
        a.create(doc("x", "python"))
        b.create(doc("y", "python"))
        assert ids(a.text_search("python")) == ["x"]
        assert ids(b.text_search("python")) == ["y"]


def test_memory_backend_refuses_with_a_typed_error() -> None:
    with DatabaseFactory.create("memory://") as db:
        assert not db.capabilities().supports(Feature.FULL_TEXT)
        db.create(doc("p1", "python"))
        with pytest.raises(UnsupportedError, match="full_text"):
            db.text_search("python")
    with pytest.raises(UnsupportedError, match="full-text"):
        MemoryBackend().text_search(TextSearchRequest(("python",), None, 10, None))


async def test_memory_backend_refuses_async() -> None:
    db = DatabaseFactory.create_async("memory://")
    try:
        with pytest.raises(UnsupportedError):
            await db.text_search("python")
    finally:
        await db.close()


@needs_sqlite
async def test_async_matches_sync(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'both.db'}"
    records = [
        *corpus(),
        doc("p1", "python json parser", n=1),
        doc("p2", "python json", n=2),
        doc("p3", "python", n=3),
    ]
    with DatabaseFactory.create(url) as sync_db:
        sync_db.create_batch(records)
        sync_hits = sync_db.text_search("python json parser", k=5, filter=F("n") <= 3)
        sync_fields = sync_db.text_search("python", fields=["body"], k=2)
    adb = DatabaseFactory.create_async(url)
    try:
        async_hits = await adb.text_search("python json parser", k=5, filter=F("n") <= 3)
        async_fields = await adb.text_search("python", fields=["body"], k=2)
    finally:
        await adb.close()
    assert ids(sync_hits) == ["p1", "p2", "p3"]
    assert async_hits == sync_hits
    assert async_fields == sync_fields


def test_fields_must_be_stored_text_fields(db: SyncDatabase) -> None:
    """Issue 11: ``fields=["nosuch"]`` and a STRING field used to return ``[]`` silently."""
    db.create_batch(
        [doc("s1", "python", label="python", n=1), doc("s2", None, note=text("note", "python"))]
    )
    with pytest.raises(UnknownFieldError, match="'nosuch'"):
        db.text_search("python", fields=["nosuch"])
    for name, kind in (("label", "string"), ("n", "integer")):
        with pytest.raises(QueryError, match=f"{name!r} holds {kind} values, not text"):
            db.text_search("python", fields=[name])
    with pytest.raises(QueryError):  # one bad name spoils the request
        db.text_search("python", fields=["body", "label"])
    assert ids(db.text_search("python", fields=["note"])) == ["s2"]
    assert ids(db.text_search("python", fields=["body", "note"])) == ["s1", "s2"]


@pytest.mark.parametrize("query", ["", "   ", "\t\n"])
def test_a_query_without_words_is_refused(db: SyncDatabase, query: str) -> None:
    """Issue 11: an empty or whitespace query is a QueryError, not an answer."""
    with pytest.raises(QueryError, match="at least one word"):
        db.text_search(query)
