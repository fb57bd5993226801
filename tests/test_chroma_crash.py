"""Chroma writes are all or nothing across crashes and engine failures, on a real chroma.

A write of several chroma calls (records collection, vector collections, batches split to
chroma's maximum) logs an undo plan (the old state of everything it touches) before its first
call; a write that fails is undone at once, or by the next operation or open if chroma refuses
the undo too, and a write cut short by a crash is undone when the directory is next opened
(``engines/chroma/intent.py``). Proved two ways: a subprocess is SIGKILLed in the middle of a
write, at chosen chroma calls, and a new process reopens the directory; and, deterministically,
real chroma calls are made to raise mid-write (fault injection around the real collection
method, not a mock of the database).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dataknobs_data import Record, VectorField
from dataknobs_data.errors import BackendError
from dataknobs_data.factory import DatabaseFactory
from dataknobs_data.query import F
from dataknobs_data.testing import import_or_skip
from dataknobs_data.vector.stores import VectorStoreFactory

import_or_skip("chroma")

from chromadb.api.models.Collection import Collection  # noqa: E402

from dataknobs_data.engines.chroma import engine, intent  # noqa: E402

BASE = 40  #: records written and committed before the interrupted write
#: base records the write replaces (dropping their "old" key, and in the db their vector)
REPLACED = 20

# Both scripts run in a fresh interpreter: argv = kind ("db" or "store"), directory, n.
_SETUP = f"""
import json, sys
import numpy as np
from dataknobs_data import Record, VectorField
from dataknobs_data.factory import DatabaseFactory
from dataknobs_data.query import F
from dataknobs_data.vector.stores import VectorStoreFactory

kind, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
url = "chroma:///" + path
BASE, REPLACED = {BASE}, {REPLACED}
"""

_WRITER = _SETUP + textwrap.dedent(
    """
    from chromadb.api.models.Collection import Collection

    rng = np.random.default_rng(3)
    base, fresh = rng.normal(size=(BASE, 8)), rng.normal(size=(n, 8))
    old = [f"b{i:03d}" for i in range(BASE)]
    new = [f"n{i:05d}" for i in range(n)]
    if kind == "db":
        target = DatabaseFactory.create(url)
        target.create_batch([
            Record({"i": i, "bucket": i % 50, "old": 1, "emb": VectorField(base[i])}, id=rid)
            for i, rid in enumerate(old)
        ])
        batch = [Record({"i": i, "bucket": i % 50}, id=old[i]) for i in range(REPLACED)]
        batch += [
            Record({"i": i, "bucket": i % 50, "emb": VectorField(fresh[i])}, id=rid)
            for i, rid in enumerate(new)
        ]
        write = lambda: target.upsert_batch(batch)
    else:
        target = VectorStoreFactory.create("chroma", dimensions=8, path=path, metric="l2")
        target.add(old, base, [{"bucket": i % 50, "old": 1} for i in range(BASE)])
        ids = old[:REPLACED] + new
        vectors = np.concatenate([base[:REPLACED] + 1, fresh])
        metas = [{"bucket": i % 50} for i in range(REPLACED)]
        metas += [{"bucket": i % 50} for i in range(n)]
        write = lambda: target.upsert(ids, vectors, metas)
    calls = 0

    def traced(real):
        def call(self, *args, **kwargs):
            global calls
            calls += 1
            print("call", calls, flush=True)  # the parent kills on a chosen call
            return real(self, *args, **kwargs)
        return call

    Collection.upsert = traced(Collection.upsert)
    Collection.delete = traced(Collection.delete)
    print("start", flush=True)
    write()
    print("done", flush=True)
    """
)

_CHECKER = _SETUP + textwrap.dedent(
    """
    q = np.full(8, 0.1, np.float32)
    if kind == "db":
        db = DatabaseFactory.create(url)  # completes an interrupted write
        facts = {
            "ids": [r.id for r in db.search()],
            "vectors": db.backend.raw_collection("emb").get(include=[])["ids"],
            "with_vector": [r.id for r in db.search(F("emb").exists())],
            "old": db.count(F("old").exists()),
            "hits": [h.id for h in db.vector_search(q, k=1000, filter=F("bucket") == 7)],
            "matching": db.count((F("bucket") == 7) & F("emb").exists()),
        }
    else:
        store = VectorStoreFactory.load("chroma", path)
        every = [f"b{i:03d}" for i in range(BASE)] + [f"n{i:05d}" for i in range(n)]
        ids = [s.id for s in store.get(every) if s is not None]
        facts = {
            "ids": ids,
            "vectors": ids,
            "with_vector": ids,
            "count": store.count(),
            "old": store.count(F("old").exists()),
            "hits": [h.id for h in store.search(q, 1000, filter=F("bucket") == 7)],
            "matching": store.count(F("bucket") == 7),
        }
    print(json.dumps(facts))
    """
)


def _kill_during_write(kind: str, path: Path, n: int, marker: str, delay: float) -> bool:
    """Run the writer until it prints ``marker``, wait ``delay`` s, SIGKILL it; True if the
    write had finished by then."""
    with open(path.parent / "writer.err", "w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, kind, str(path), str(n)],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:
            seen.append(line.strip())
            if seen[-1] == marker:
                break
        time.sleep(delay)
        proc.kill()
        seen += proc.stdout.read().splitlines()
        proc.wait(timeout=60)
        err.seek(0)
        assert marker in seen, err.read()
    return "done" in seen


def _reopen(kind: str, path: Path, n: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _CHECKER, kind, str(path), str(n)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    facts: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return facts


def _intent_files(path: Path) -> list[str]:
    return [p.name for p in path.iterdir() if intent.INTENT_PREFIX in p.name]


def _outcome(kind: str, facts: dict[str, Any], n: int) -> str:
    """Whether none or all of the write is there, checking that every view of the data agrees;
    fails on anything in between."""
    base = {f"b{i:03d}" for i in range(BASE)}
    replaced = {f"b{i:03d}" for i in range(REPLACED)}
    new = {f"n{i:05d}" for i in range(n)}
    ids = set(facts["ids"])
    assert ids in (base, base | new), f"{len(ids)} ids: part of the write"
    done = ids == base | new
    if kind == "store":
        vectors = ids  # one collection: the count must agree with it
        assert facts["count"] == len(ids)
    else:  # the replaced records lost their vectors
        vectors = (base - replaced) | new if done else base
    assert set(facts["vectors"]) == set(facts["with_vector"]) == vectors
    assert facts["old"] == (BASE - REPLACED if done else BASE)
    bucket = {f"b{i:03d}" for i in range(BASE) if i % 50 == 7}
    bucket |= {f"n{i:05d}" for i in range(n) if i % 50 == 7} if done else set()
    assert set(facts["hits"]) == bucket & vectors
    assert len(facts["hits"]) == facts["matching"]
    return "all" if done else "none"


@pytest.mark.parametrize(
    ("kind", "n", "marker", "delay"),
    [
        ("db", 6000, "start", 0.0),  # while the write is planned: none of it (or all)
        ("db", 6000, "call 1", 0.0),  # first of 2 records batches, then 2 vector batches
        ("db", 6000, "call 3", 0.3),  # inside the vector collection's first batch
        ("db", 1500, "call 2", 0.0),  # one batch per collection: records in, vectors not
        ("store", 12000, "start", 0.0),
        ("store", 12000, "call 2", 0.0),  # second of three batches
        ("store", 12000, "call 3", 0.1),
    ],
)
def test_kill_9_during_a_write_leaves_none_or_all_of_it(
    kind: str, n: int, marker: str, delay: float, tmp_path: Path
) -> None:
    """SIGKILL in the middle of a write larger than chroma's maximum batch (or spread over two
    collections); a new process reopens the directory and finds none or all of the write, with
    the records and vector collections (or the store's count, filter and search) agreeing. A
    write killed before it returned was never confirmed: once a chroma call has started, its
    undo plan is on disk and the reopen rolls it back."""
    path = tmp_path / "chroma"
    finished = _kill_during_write(kind, path, n, marker, delay)
    if marker != "start" and not finished:  # killed mid-write: its intent is there
        name = "records" if kind == "db" else "vectors"
        assert _intent_files(path) == [f"{intent.INTENT_PREFIX}{name}"]
    outcome = _outcome(kind, _reopen(kind, path, n), n)
    if marker != "start":
        assert outcome == ("all" if finished else "none")
    assert _intent_files(path) == []  # replayed and removed, temp files of a torn write too


# -- chroma calls that fail mid-write (deterministic) ------------------------------------------
def _fail_on(mp: pytest.MonkeyPatch, method: str, calls: set[int]) -> None:
    """Chroma's own ``Collection.<method>`` raises on those of its calls from now, else runs."""
    real: Callable[..., Any] = getattr(Collection, method)
    seen = 0

    def flaky(self: Collection, *args: Any, **kwargs: Any) -> Any:
        nonlocal seen
        seen += 1
        if seen in calls:
            raise RuntimeError("injected chroma failure")
        return real(self, *args, **kwargs)

    mp.setattr(Collection, method, flaky)


def _fail_once(mp: pytest.MonkeyPatch, method: str, nth: int) -> None:
    _fail_on(mp, method, {nth})


def _db_records(n: int, start: int = 0, **extra: Any) -> list[Record]:
    rng = np.random.default_rng(start)
    return [
        Record({"i": i, "emb": VectorField(rng.normal(size=4)), **extra}, id=f"r{i:03d}")
        for i in range(start, start + n)
    ]


def _db_write() -> list[Record]:
    """Replaces r000-r004 (no vector, no ``old``), adds r010-r029 with a new field ``tag``."""
    replaced = [Record({"i": i}, id=f"r{i:03d}") for i in range(5)]
    added = [
        Record({**r.fields, "tag": VectorField(np.ones(3) * r["i"])}, id=r.id)
        for r in _db_records(20, 10)
    ]
    return replaced + added


def _assert_db_before_write(db: Any) -> None:
    """The 10 records of :func:`_fail_db_write`, exactly as before the failed write."""
    assert db.count() == 10
    assert db.count(F("old").exists()) == 10
    assert "tag" not in db.vector_fields()
    assert [r.id for r in db.search(F("emb").exists())] == [f"r{i:03d}" for i in range(10)]
    assert db.backend.raw_collection("emb").count() == 10
    assert [r["i"] for r in db.read_batch([f"r{i:03d}" for i in range(5)])] == list(range(5))


def _assert_db_write_applied(db: Any) -> None:
    assert db.count() == 30
    assert db.count(F("old").exists()) == 5  # r005-r009 kept theirs; the replaced lost it
    assert db.vector_fields()["tag"].dimensions == 3
    with_emb = {r.id for r in db.search(F("emb").exists())}
    assert with_emb == {f"r{i:03d}" for i in (*range(5, 10), *range(10, 30))}
    assert set(db.backend.raw_collection("emb").get(include=[])["ids"]) == with_emb
    assert db.backend.raw_collection("tag").count() == 20
    hits = db.vector_search(np.ones(3), field="tag", k=50, filter=F("i") >= 20)
    assert sorted(h.id for h in hits) == [f"r{i:03d}" for i in range(20, 30)]


def _fail_db_write(db: Any, mp: pytest.MonkeyPatch, undo_fails: bool = False) -> None:
    """The write's second upsert (the first vector collection's) fails after the records
    collection took its part; with ``undo_fails`` the undo's first upsert fails too."""
    db.create_batch(_db_records(10, old=1))
    _fail_on(mp, "upsert", {2, 3} if undo_fails else {2})
    with pytest.raises(BackendError, match="refused to undo" if undo_fails else "was undone"):
        db.upsert_batch(_db_write())
    records = db.backend._records  # chroma's collections directly: nothing settles on the way
    assert records.count() == (30 if undo_fails else 10)


def test_failed_db_write_is_undone_at_once(tmp_path: Path) -> None:
    url = f"chroma:///{tmp_path}/db"
    db = DatabaseFactory.create(url)
    with pytest.MonkeyPatch.context() as mp:
        _fail_db_write(db, mp)
    assert _intent_files(tmp_path / "db") == []
    _assert_db_before_write(db)
    db.upsert_batch(_db_write())  # the retry is not refused
    _assert_db_write_applied(db)
    db.close()
    with DatabaseFactory.create(url) as again:
        _assert_db_write_applied(again)


def test_failed_undo_is_applied_on_reopen(tmp_path: Path) -> None:
    url = f"chroma:///{tmp_path}/db"
    db = DatabaseFactory.create(url)
    with pytest.MonkeyPatch.context() as mp:
        _fail_db_write(db, mp, undo_fails=True)
    db.close()
    assert _intent_files(tmp_path / "db") == [f"{intent.INTENT_PREFIX}records"]
    with DatabaseFactory.create(url) as again:
        assert _intent_files(tmp_path / "db") == []
        _assert_db_before_write(again)
        again.upsert_batch(_db_write())
        _assert_db_write_applied(again)


def test_failed_undo_is_applied_by_the_next_operation() -> None:
    """In memory (no intent file) too: the next call applies the undo before it reads, so no
    reader sees half of the write."""
    with DatabaseFactory.create("chroma://", temporary=True) as db:
        with pytest.MonkeyPatch.context() as mp:
            _fail_db_write(db, mp, undo_fails=True)
            assert "tag" not in db.backend._schema
        _assert_db_before_write(db)


def test_another_database_on_the_directory_undoes_it(tmp_path: Path) -> None:
    """Two databases opened on one directory share its intent: the other one applies the
    undo before serving."""
    url = f"chroma:///{tmp_path}/db"
    with DatabaseFactory.create(url) as first, DatabaseFactory.create(url) as second:
        with pytest.MonkeyPatch.context() as mp:
            _fail_db_write(first, mp, undo_fails=True)
        _assert_db_before_write(second)
        assert _intent_files(tmp_path / "db") == []
        _assert_db_before_write(first)


def test_a_write_chroma_always_refuses_never_locks_the_store(tmp_path: Path) -> None:
    """Issue 11, class 3's shape: chroma refuses part of a write every time it is tried (here
    any upsert of ``poison`` into a vector collection). The write is undone, nothing waits to
    be replayed, and the store stays writable, also after a reopen."""
    url = f"chroma:///{tmp_path}/db"
    real = Collection.upsert

    def refuses(self: Collection, *args: Any, **kwargs: Any) -> Any:
        if "poison" in kwargs.get("ids", ()) and self.name != "records":
            raise RuntimeError("chroma cannot store this")
        return real(self, *args, **kwargs)

    with DatabaseFactory.create(url) as db, pytest.MonkeyPatch.context() as mp:
        db.create_batch(_db_records(3))
        mp.setattr(Collection, "upsert", refuses)
        bad = Record({"i": 99, "emb": VectorField(np.ones(4))}, id="poison")
        for _ in range(2):
            with pytest.raises(BackendError, match="was undone"):
                db.create_batch([bad, *_db_records(2, 50)])
            assert db.count() == 3
        db.create_batch(_db_records(2, 50))
        assert db.count() == 5
    assert _intent_files(tmp_path / "db") == []
    with DatabaseFactory.create(url) as again:
        assert again.count() == 5


@pytest.mark.parametrize(("on_disk", "reopen"), [(True, True), (True, False), (False, False)])
def test_failed_store_write_is_undone(on_disk: bool, reopen: bool, tmp_path: Path) -> None:
    """A small batch made several chroma calls (the client's batch limit lowered), the third
    of five failing and the undo's first call too; reopening, or the store's next call, puts
    every replaced vector and metadata key back and removes the added ones."""
    path = tmp_path if on_disk else None
    store = VectorStoreFactory.create("chroma", dimensions=4, path=path, metric="l2")
    x = np.random.default_rng(1).normal(size=(210, 4)).astype(np.float32)
    store.add([f"v{i}" for i in range(10)], x[:10], [{"old": 1, "i": i} for i in range(10)])
    ids = [f"v{i}" for i in range(5, 210)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(store._client, "get_max_batch_size", lambda: 50)  # type: ignore[attr-defined]
        _fail_on(mp, "upsert", {3, 4})
        with pytest.raises(BackendError, match="refused to undo"):
            store.upsert(ids, x[5:] + 1, [{"i": i} for i in range(5, 210)])
        assert store._col.count() == 105  # type: ignore[attr-defined]  # 2 of 5 calls in
    if reopen:
        store.close()
        assert _intent_files(tmp_path) == [f"{intent.INTENT_PREFIX}vectors"]
        store = VectorStoreFactory.load("chroma", tmp_path)
    with store:
        assert store.count() == 10
        assert store.count(F("old").exists()) == 10
        got = store.get(["v7", "v209"])
        assert got[1] is None
        assert got[0] is not None and got[0].metadata == {"old": 1, "i": 7}
        assert np.array_equal(got[0].vector, x[7])
        assert [h.id for h in store.search(x[7], 1)] == ["v7"]
        store.upsert(ids, x[5:] + 1, [{"i": i} for i in range(5, 210)])
        assert store.count() == 210
    assert _intent_files(tmp_path) == []


def test_only_writes_of_several_calls_are_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One chroma call is atomic in chroma (one INSERT into its log table): no intent file.
    A record with a vector is two calls at least, a new vector field two more."""
    logged: list[str] = []
    real = intent.write_atomic

    def write_atomic(path: Path, data: bytes) -> None:
        logged.append(path.name)
        real(path, data)

    monkeypatch.setattr(intent, "write_atomic", write_atomic)
    with VectorStoreFactory.create("chroma", dimensions=4, path=tmp_path / "s") as store:
        store.add(["a", "b"], np.ones((2, 4)))
        store.delete(["a"])
    with DatabaseFactory.create(f"chroma:///{tmp_path}/db") as db:
        db.create(Record({"n": 1}, id="plain"))
        assert logged == []
        db.create(Record({"emb": VectorField([1.0, 0.0])}, id="x"))
        db.delete("x")
    assert logged == [f"{intent.INTENT_PREFIX}records"] * 2


def test_failed_single_call_is_a_plain_failure() -> None:
    """A write of one chroma call that fails leaves nothing pending (chroma applied all of it
    or none): the error says so, and the store goes on as it was."""
    store = VectorStoreFactory.create("chroma", dimensions=4)
    with store, pytest.MonkeyPatch.context() as mp:
        store.add(["a"], np.ones((1, 4)))
        _fail_once(mp, "upsert", 1)
        with pytest.raises(BackendError, match="refused"):
            store.add(["b", "c"], np.ones((2, 4)))
        assert store.count() == 1
        store.add(["b"], np.ones((1, 4)))
        assert store.count() == 2


def test_unreadable_intent_refuses_to_open(tmp_path: Path) -> None:
    """A damaged intent (only a damaged disk makes one) is not guessed at: the open fails and
    says which file, and the client is released."""
    url = f"chroma:///{tmp_path}/db"
    DatabaseFactory.create(url).close()
    (tmp_path / "db" / f"{intent.INTENT_PREFIX}records").write_bytes(b"\x00 not an intent")
    with pytest.raises(BackendError, match="unreadable chroma intent"):
        DatabaseFactory.create(url)
    assert str((tmp_path / "db").resolve()) not in engine._users


def test_intent_of_an_earlier_version_is_still_completed(tmp_path: Path) -> None:
    """Format 1 intents (a redo plan, written before undo plans existed) are completed
    forward on open, as those versions promised."""
    url = f"chroma:///{tmp_path}/db"
    with DatabaseFactory.create(url) as db:
        db.create(Record({"n": 1}, id="a"))
    from dataknobs_data.backends.chroma.codec import encode_item

    meta = encode_item(Record({"n": 2}, id="b")).metadata()
    calls = [
        intent.Call("upsert", "records", ["b"], [meta], np.zeros((1, 1), np.float32)),
        intent.Call("delete", "records", ["a"]),
    ]
    arrays: list[bytes] = []
    head = json.dumps({"format": 1, "calls": intent._entries(calls, arrays)}).encode()
    data = b"".join(intent.frame(p) for p in (head, *arrays))
    (tmp_path / "db" / f"{intent.INTENT_PREFIX}records").write_bytes(data)
    with DatabaseFactory.create(url) as again:
        assert [r.id for r in again.search()] == ["b"]
    assert _intent_files(tmp_path / "db") == []
