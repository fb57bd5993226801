"""Synchronisation support on the embedded backends (memory, faiss, chroma): settings,
``write_lock``, ``pending_ids`` and claims (:mod:`dataknobs_data.contract`, section
"synchronisation support"), on the real engines.

The faiss and chroma cases skip when their extra is not installed; the memory ones always run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dataknobs_data.backends.memory import MemoryBackend
from dataknobs_data.contract import Backend
from dataknobs_data.errors import BackendError, ValidationError
from dataknobs_data.factory import DatabaseFactory
from dataknobs_data.fields import VectorField
from dataknobs_data.marks import PENDING_FIELD
from dataknobs_data.records import Record
from dataknobs_data.testing import import_or_skip
from dataknobs_data.testing.processes import child_env
from dataknobs_data.vector.types import DistanceMetric, VectorConfig

KINDS = ["memory", "faiss", "faiss-dir", "chroma", "chroma-dir"]


def _open(kind: str, tmp: Path) -> Backend:
    """A fresh backend of ``kind`` (``-dir``: persistent, in ``tmp``)."""
    if kind == "memory":
        return MemoryBackend()
    if kind.startswith("faiss"):
        import_or_skip("faiss", "faiss")
        from dataknobs_data.backends.faiss import FaissBackend

        return FaissBackend(tmp / "f" if kind == "faiss-dir" else None, fsync=False)
    import_or_skip("chroma", "chromadb")
    from dataknobs_data.backends.chroma import ChromaBackend

    if kind == "chroma-dir":
        return ChromaBackend(tmp / "c")
    return ChromaBackend(None, temporary=True)


@pytest.fixture(params=KINDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b = _open(request.param, tmp_path)
    yield b
    b.close()


def _faiss(path: Path | None) -> Any:
    import_or_skip("faiss", "faiss")
    from dataknobs_data.backends.faiss import FaissBackend

    return FaissBackend(path)


def _chroma(path: Path | None, **options: Any) -> Any:
    import_or_skip("chroma", "chromadb")
    from dataknobs_data.backends.chroma import ChromaBackend

    return ChromaBackend(path, **options)


def _rec(rid: str, pending: bool, text: str = "t") -> Record:
    fields: dict[str, Any] = {"text": text}
    if pending:
        fields[PENDING_FIELD] = {"emb": f"hash-{text}"}
    return Record(fields, id=rid)


# -- settings ------------------------------------------------------------------------------
def test_settings_round_trip_overwrite_delete_and_prefix(backend: Backend) -> None:
    assert backend.read_setting("rules.a") is None
    assert backend.settings("") == {}
    backend.write_setting("rules.a", "one")
    backend.write_setting("rules.b", '{"json": "é\\n"}')
    backend.write_setting("other", "x")
    assert backend.read_setting("rules.a") == "one"
    backend.write_setting("rules.a", "two")  # overwrite
    assert backend.read_setting("rules.a") == "two"
    assert backend.settings("rules.") == {"rules.a": "two", "rules.b": '{"json": "é\\n"}'}
    assert backend.settings("") == {**backend.settings("rules."), "other": "x"}
    assert backend.settings("nothing") == {}
    backend.write_setting("rules.a", None)  # delete
    backend.write_setting("never-set", None)  # deleting an absent key is a no-op
    assert backend.read_setting("rules.a") is None
    assert backend.settings("") == {"rules.b": '{"json": "é\\n"}', "other": "x"}
    assert backend.read_setting("never-set") is None


@pytest.mark.parametrize(
    ("key", "value"),
    [(1, "v"), ("k", 2), ("", "v"), ("k\x00", "v"), ("k", "v\x00"), (b"k", "v")],
)
def test_bad_settings_are_refused_and_change_nothing(
    backend: Backend, key: Any, value: Any
) -> None:
    backend.write_setting("kept", "yes")
    with pytest.raises(ValidationError, match="setting"):
        backend.write_setting(key, value)
    assert backend.settings("") == {"kept": "yes"}


def test_bad_reads_are_refused(backend: Backend) -> None:
    with pytest.raises(ValidationError):
        backend.read_setting(3)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        backend.settings(None)  # type: ignore[arg-type]


def test_settings_stay_apart_from_records_and_clear(backend: Backend) -> None:
    backend.write_setting("rules.a", "one")
    backend.put([_rec("r1", True)], "upsert")
    assert backend.clear() == 1  # a clear deletes records, not the collection's settings
    assert backend.read_setting("rules.a") == "one"
    assert backend.count(None) == 0


@pytest.mark.parametrize("engine", ["faiss", "chroma"])
def test_settings_survive_close_and_reopen(engine: str, tmp_path: Path) -> None:
    def reopen() -> Any:
        return _faiss(tmp_path / "db") if engine == "faiss" else _chroma(tmp_path / "db")

    b = reopen()
    b.write_setting("rules.a", "one")
    b.write_setting("rules.b", "two")
    b.write_setting("rules.b", None)
    b.declare_vector_field("emb", VectorConfig(dimensions=3))
    b.write_setting("after-schema", "three")
    b.close()
    b = reopen()
    try:
        assert b.settings("") == {"rules.a": "one", "after-schema": "three"}
        assert set(b.vector_schema()) == {"emb"}
    finally:
        b.close()


# -- faiss durability ------------------------------------------------------------------------
_KILLED_WRITER = textwrap.dedent(
    """
    import sys
    from dataknobs_data.backends.faiss import FaissBackend

    db = FaissBackend(sys.argv[1])
    db.write_setting("in-snapshot", "1")
    db.write_setting("deleted-later", "x")
    db.write_setting("only-in-snapshot", "s")
    db.persist()  # the two above are in the snapshot; what follows only in the journal
    db.write_setting("in-journal", "2")
    db.write_setting("deleted-later", None)
    db.write_setting("in-snapshot", "1b")
    print("ok", flush=True)
    sys.stdin.read()  # killed here, never closed: no snapshot at close
    """
)


def test_faiss_setting_survives_kill_9(tmp_path: Path) -> None:
    import_or_skip("faiss", "faiss")
    path = tmp_path / "db"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_WRITER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=child_env(),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert line.strip() == b"ok"
    b = _faiss(path)
    try:
        assert b.settings("") == {
            "in-snapshot": "1b",
            "in-journal": "2",
            "only-in-snapshot": "s",
        }
    finally:
        b.close()


def _ops(path: Path) -> list[str]:
    """The kinds of every operation in the directory's snapshot and journal."""
    from dataknobs_data.durable import read_frames

    kinds = []
    for file in [*path.glob("gen-*/snapshot.log"), *path.glob("journal-*.log")]:
        frames, _ = read_frames(file.read_bytes())
        kinds += [json.loads(f)["op"] for f in frames]
    return kinds


def test_faiss_directory_without_settings_still_opens(tmp_path: Path) -> None:
    """A directory as the code before settings wrote it (no ``setting`` operation, no
    ``settings`` count in the manifest) opens, keeps its records, and takes settings."""
    path = tmp_path / "db"
    b = _faiss(path)
    b.put([_rec("r1", True), _rec("r2", False)], "upsert")
    b.persist()
    b.put([_rec("r3", True)], "upsert")  # in the journal only
    b._journal.close()  # a process death: no snapshot at close
    b._store_lock.release()
    manifest = json.loads((path / "MANIFEST.json").read_text())
    manifest.pop("settings")
    (path / "MANIFEST.json").write_text(json.dumps(manifest))
    assert "setting" not in _ops(path) and "put" in _ops(path)
    b = _faiss(path)
    try:
        assert b.settings("") == {}
        assert b.pending_ids(None, 10) == ["r1", "r3"]
        b.write_setting("new", "v")
    finally:
        b.close()
    assert "setting" in _ops(path)
    b = _faiss(path)
    try:
        assert b.settings("") == {"new": "v"}
    finally:
        b.close()


def test_faiss_failed_journal_append_keeps_the_old_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "db"
    b = _faiss(path)
    b.write_setting("k", "old")
    journal = b._journal

    def failing(payload: bytes) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(journal, "append", failing)
    with pytest.raises(BackendError, match="journal"):
        b.write_setting("k", "new")
    with pytest.raises(BackendError, match="journal"):
        b.write_setting("k", None)
    assert b.read_setting("k") == "old"
    monkeypatch.undo()
    b.write_setting("other", "v")  # the journal takes writes again
    journal.close()  # a process death: the reopen replays the journal
    b._store_lock.release()
    b = _faiss(path)
    try:
        assert b.settings("") == {"k": "old", "other": "v"}
    finally:
        b.close()


# -- chroma ----------------------------------------------------------------------------------
def test_chroma_settings_and_vector_fields_keep_each_other(tmp_path: Path) -> None:
    """Both live in the records collection's metadata, which chroma replaces whole: a field
    declaration keeps the settings, a setting keeps the schema, also across two objects."""
    a = _chroma(tmp_path / "db")
    b = _chroma(tmp_path / "db")  # same directory, same process: chroma's shared client
    try:
        a.write_setting("rules.a", "one")
        assert b.read_setting("rules.a") == "one"  # seen at once by the other object
        b.declare_vector_field("emb", VectorConfig(dimensions=3))
        assert a.settings("") == {"rules.a": "one"}
        assert set(a.vector_schema()) == {"emb"}  # the other object's field is known here
        a.write_setting("rules.b", "two")
        a.declare_vector_field("emb2", VectorConfig(dimensions=2))
        b.put([Record({"emb": VectorField(np.ones(3, np.float32))}, id="r")], "upsert")
        b.write_setting("rules.a", None)
        assert set(a.vector_schema()) == set(b.vector_schema()) == {"emb", "emb2"}
    finally:
        a.close()
        b.close()
    c = _chroma(tmp_path / "db")
    try:
        assert c.settings("") == {"rules.b": "two"}
        assert set(c.vector_schema()) == {"emb", "emb2"}
        assert c.get(["r"])[0] is not None
    finally:
        c.close()


def test_chroma_refuses_settings_too_large_for_its_metadata() -> None:
    from dataknobs_data.backends.chroma.backend import MAX_SETTINGS_BYTES

    b = _chroma(None, temporary=True)
    try:
        b.write_setting("small", "x")
        b.write_setting("big", "y" * (MAX_SETTINGS_BYTES // 2))
        with pytest.raises(ValidationError, match=r"'bigger'.*bytes"):
            b.write_setting("bigger", "é" * (MAX_SETTINGS_BYTES // 3))  # 2 bytes each in UTF-8
        assert set(b.settings("")) == {"small", "big"}
        b.write_setting("big", None)  # room again
        b.write_setting("bigger", "é" * (MAX_SETTINGS_BYTES // 3))
        assert len(b.read_setting("bigger") or "") == MAX_SETTINGS_BYTES // 3
    finally:
        b.close()


def test_chroma_setting_refused_by_chroma_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real ``modify`` wrapped to raise chroma's own error: a ``BackendError``, and the
    stored settings and schema are as before."""
    from chromadb.errors import InternalError

    b = _chroma(None, temporary=True)
    try:
        b.declare_vector_field("emb", VectorConfig(dimensions=2))
        b.write_setting("k", "old")
        real = b._records.modify

        def failing(**kwargs: Any) -> None:
            raise InternalError("injected")

        monkeypatch.setattr(b._records, "modify", failing)
        with pytest.raises(BackendError, match="injected"):
            b.write_setting("k", "new")
        monkeypatch.setattr(b._records, "modify", real)
        assert b.settings("") == {"k": "old"}
        assert set(b.vector_schema()) == {"emb"}
    finally:
        b.close()


def test_chroma_objects_on_one_collection_share_the_writer_lock(tmp_path: Path) -> None:
    a = _chroma(tmp_path / "db")
    b = _chroma(tmp_path / "db")
    try:
        _check_write_lock(a, writer=b)
    finally:
        a.close()
        b.close()


# -- write_lock ------------------------------------------------------------------------------
def _check_write_lock(backend: Backend, writer: Backend) -> None:
    """Inside ``backend.write_lock()`` this thread reads and writes (re-entrant); a writer
    thread (on ``writer``) that started meanwhile writes only after the block ends."""
    backend.put([_rec("r", False, "v0")], "upsert")
    started, done = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        started.set()
        try:
            writer.put([_rec("r", False, "theirs")], "upsert")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=write)
    with backend.write_lock():
        with backend.write_lock():  # re-entrant
            current = backend.get(["r"])[0]
        assert current is not None and current["text"] == "v0"
        thread.start()
        started.wait()
        # the writer is blocked on the lock: waiting for it can only time out (a broken lock
        # would let it finish, and the checks below would see its value)
        assert not done.wait(0.2)
        assert backend.get(["r"])[0]["text"] == "v0"  # type: ignore[index]
        backend.put([_rec("r", False, "mine")], "upsert")  # compare-and-set, uninterrupted
        assert backend.get(["r"])[0]["text"] == "mine"  # type: ignore[index]
    thread.join()
    assert not errors
    assert backend.get(["r"])[0]["text"] == "theirs"  # type: ignore[index]  # it wrote after


def test_write_lock_is_reentrant_and_excludes_other_writers(backend: Backend) -> None:
    _check_write_lock(backend, writer=backend)


# -- pending_ids -----------------------------------------------------------------------------
def _reference(backend: Backend) -> Callable[[str | None, int], list[str]]:
    """The contract's default (an ``exists`` search sorted by id) on the same backend."""
    return lambda after, limit: Backend.pending_ids(backend, after, limit)


def _check_pending(backend: Backend, expected: set[str]) -> None:
    reference = _reference(backend)
    want = sorted(expected)
    assert backend.pending_ids(None, len(want) + 5) == want
    assert reference(None, len(want) + 5) == want
    # pages: by 3, each after the last id of the previous one
    pages: list[str] = []
    after: str | None = None
    while True:
        page = backend.pending_ids(after, 3)
        assert page == reference(after, 3)
        pages += page
        if len(page) < 3:
            break
        after = page[-1]
    assert pages == want
    for after in ["", "m", "zzz", "Z", "é", *want[:3]]:
        assert backend.pending_ids(after, 100) == reference(after, 100)
    assert backend.pending_ids(None, 0) == []


def test_pending_ids_follow_every_write(backend: Backend) -> None:
    ids = ["a", "B", "b10", "b9", "é1", "Z", "a-1", "a_1", "日本", "m"]
    backend.put([_rec(i, n % 2 == 0) for n, i in enumerate(ids)], "upsert")
    marked = {i for n, i in enumerate(ids) if n % 2 == 0}
    _check_pending(backend, marked)
    backend.put([_rec("B", True), _rec("a", False)], "upsert")  # marked and unmarked
    marked = (marked | {"B"}) - {"a"}
    _check_pending(backend, marked)
    backend.put([_rec("new", True)], "create")
    backend.put([_rec("ghost", True)], "update")  # absent: not written
    marked |= {"new"}
    _check_pending(backend, marked)
    backend.remove(["new", "b10", "nothing"])
    marked -= {"new", "b10"}
    _check_pending(backend, marked)
    # a null mark or one of nulls is no mark (as for an ``exists`` filter)
    backend.put([Record({PENDING_FIELD: None}, id="null")], "upsert")
    backend.put([Record({PENDING_FIELD: [None]}, id="nulls")], "upsert")
    backend.put([Record({PENDING_FIELD: {}}, id="empty")], "upsert")
    marked |= {"empty"}
    _check_pending(backend, marked)
    backend.clear()
    _check_pending(backend, set())
    backend.put([_rec("again", True)], "upsert")
    _check_pending(backend, {"again"})


def test_pending_ids_many_changes_in_one_write() -> None:
    """Above the size where the sorted list is rebuilt rather than edited (memory/faiss)."""
    b = MemoryBackend()
    b.put([_rec(f"r{i:04d}", i % 3 == 0) for i in range(1000)], "upsert")
    _check_pending(b, {f"r{i:04d}" for i in range(0, 1000, 3)})
    b.put([_rec(f"r{i:04d}", i % 3 == 1) for i in range(0, 1000, 2)], "upsert")
    marked = {f"r{i:04d}" for i in range(1000) if (i % 3 == 1 if i % 2 == 0 else i % 3 == 0)}
    _check_pending(b, marked)
    # one id twice in a batch: the last version is stored, and its mark (or none) counts
    b.put(
        [_rec("dup", True), _rec("dup", False), _rec("dup2", False), _rec("dup2", True)], "upsert"
    )
    _check_pending(b, marked | {"dup2"})


def test_pending_ids_after_an_undone_write_and_a_reopen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "db"
    b = _faiss(path)
    b.put([_rec("a", True), _rec("b", False)], "upsert")
    journal = b._journal

    def failing(payload: bytes) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(journal, "append", failing)
    with pytest.raises(BackendError):
        b.put([_rec("a", False), _rec("b", True), _rec("c", True)], "upsert")
    assert b.pending_ids(None, 10) == ["a"]  # the write was undone, its marks too
    monkeypatch.undo()
    b.put([_rec("c", True)], "upsert")
    b._journal.close()  # a process death: reopen replays snapshot + journal
    b._store_lock.release()
    b = _faiss(path)
    try:
        assert b.pending_ids(None, 10) == ["a", "c"]
    finally:
        b.close()


# -- claims ----------------------------------------------------------------------------------
def test_two_workers_claim_disjoint_sets_covering_everything(backend: Backend) -> None:
    n = 500
    backend.put([_rec(f"r{i:04d}", True) for i in range(n)], "upsert")
    barrier = threading.Barrier(2)
    done: dict[str, list[str]] = {"w1": [], "w2": []}
    errors: list[BaseException] = []

    def work(worker: str) -> None:
        try:
            barrier.wait()
            while True:
                ids = backend.claim_pending(worker, 25, lease=3600.0)
                if not ids:
                    return
                # the vectorizer's step: write the records without their mark, then release
                backend.put([_rec(i, False, worker) for i in ids], "upsert")
                backend.release_claims(worker, ids)
                done[worker] += ids
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in done]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert not set(done["w1"]) & set(done["w2"])
    assert sorted(done["w1"] + done["w2"]) == [f"r{i:04d}" for i in range(n)]
    assert backend.pending_ids(None, 10) == []


def test_concurrent_one_shot_claims_split_the_pending_records() -> None:
    b = MemoryBackend()
    b.put([_rec(f"r{i:04d}", True) for i in range(500)], "upsert")
    barrier = threading.Barrier(2)
    got: dict[str, list[str]] = {}

    def claim(worker: str) -> None:
        barrier.wait()
        got[worker] = b.claim_pending(worker, 300, lease=3600.0)

    threads = [threading.Thread(target=claim, args=(w,)) for w in ("w1", "w2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(map(len, got.values())) == [200, 300]
    assert not set(got["w1"]) & set(got["w2"])
    assert len(set(got["w1"]) | set(got["w2"])) == 500
    # a worker's own claims are claimable again at once; another's are not until released
    assert b.claim_pending("w1", 500, lease=3600.0) == sorted(got["w1"])
    b.release_claims("w1", got["w1"][:10])
    assert b.claim_pending("w2", 500, lease=3600.0) == sorted(got["w2"] + got["w1"][:10])
    # an expired lease frees the record
    b.claim_pending("w3", 500, lease=3600.0)
    b.claim_pending("w2", 500, lease=0.0)
    assert sorted(b.claim_pending("w3", 500, lease=3600.0)) == sorted(got["w2"] + got["w1"][:10])


def test_claims_follow_the_mark(backend: Backend) -> None:
    """A record whose mark is gone (vectorized, or deleted) is not claimed again."""
    backend.put([_rec(f"r{i}", True) for i in range(6)], "upsert")
    first = backend.claim_pending("w", 3, lease=3600.0)
    assert first == ["r0", "r1", "r2"]
    backend.put([_rec("r0", False)], "upsert")
    backend.remove(["r1"])
    backend.release_claims("w", first)
    assert backend.claim_pending("other", 10, lease=3600.0) == ["r2", "r3", "r4", "r5"]


def test_vector_fields_and_marks_together(backend: Backend) -> None:
    """A record with a vector and a mark: both kept, and the mark indexes only the mark."""
    backend.declare_vector_field("emb", VectorConfig(dimensions=2, metric=DistanceMetric.COSINE))
    vec = VectorField(np.asarray([1.0, 0.0], np.float32))
    backend.put([Record({"emb": vec, PENDING_FIELD: {"emb": "h"}}, id="v")], "upsert")
    assert backend.pending_ids(None, 5) == ["v"]
    got = backend.get(["v"])[0]
    assert got is not None and got[PENDING_FIELD] == {"emb": "h"}


def test_chroma_objects_on_one_directory_share_their_claims(tmp_path: Path) -> None:
    """Two chroma objects of one process on one directory draw from one book of claims."""
    import_or_skip("chroma", "chromadb")
    url = f"chroma:///{tmp_path}/shared"
    first, second = DatabaseFactory.create(url), DatabaseFactory.create(url)
    first.create_batch([Record({"a": i, PENDING_FIELD: {"v": "h"}}, id=f"p{i}") for i in range(6)])
    a = first.backend.claim_pending("a", 4, 60.0)
    b = second.backend.claim_pending("b", 10, 60.0)
    assert len(a) == 4 and len(b) == 2 and not set(a) & set(b)
    first.close()
    second.close()
