"""Two openers of one store (issue 11, class 1): refused with a typed error, or safely shared.

Faiss and chroma directories are exclusive (:mod:`dataknobs_data.engines.storelock`); SQLite
files and PostgreSQL collections are shared through the engines' own transactions. The
two-process section (:class:`~dataknobs_data.testing.TwoProcessTests`) runs here on each
persistent backend; the rest checks the lock itself, the in-process cases, the VectorStore
API, the CLI and SQLite's busy timeout.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dataknobs_data import DatabaseFactory, Record, VectorField
from dataknobs_data.engines.storelock import LOCK_FILE, StoreLock, read_holder
from dataknobs_data.errors import (
    BackendError,
    StoreBusyError,
    StoreLockedError,
    ValidationError,
)
from dataknobs_data.testing import (
    POSTGRES_URL_ENV,
    ProcessTarget,
    TwoProcessTests,
    WriterProcess,
    import_or_skip,
    skip_unless_extra,
)
from dataknobs_data.testing.processes import REFUSED, child_env, writer_ids

# -- the two-process section on every persistent backend -------------------------------------


def _postgres_target(request: pytest.FixtureRequest) -> ProcessTarget:
    base = os.environ.get(POSTGRES_URL_ENV)
    if not base:
        pytest.skip(f"set {POSTGRES_URL_ENV} to run the postgres two-process tests")
    skip_unless_extra("postgres")
    joiner = "&" if "?" in base else "?"
    url = f"{base}{joiner}collection=p_{uuid.uuid4().hex[:16]}"
    # drop the scratch collection afterwards
    request.addfinalizer(lambda: DatabaseFactory.create(url, temporary=True).close())
    return ProcessTarget(url, exclusive=False)


@pytest.fixture(params=["faiss", "chroma", "sqlite", "postgres"])
def process_target(request: pytest.FixtureRequest, tmp_path: Path) -> ProcessTarget:
    name = request.param
    if name == "postgres":
        return _postgres_target(request)
    skip_unless_extra(name)
    url = {
        "faiss": f"faiss://{tmp_path}/store",
        "chroma": f"chroma:///{tmp_path}/store",
        "sqlite": f"sqlite:///{tmp_path}/store.db",
    }[name]
    return ProcessTarget(url, exclusive=name in ("faiss", "chroma"))


class TestTwoProcesses(TwoProcessTests):
    """The shipped section, on faiss, chroma, SQLite and PostgreSQL."""


def test_issue_example_two_faiss_writers_lose_nothing(tmp_path: Path) -> None:
    """The report: two processes writing one faiss:// directory, 2,000 records each. Before
    the lock both were confirmed, 2,000 records were gone after both closed and one died on
    close with FileNotFoundError. Now the second is refused naming the first, the first
    closes cleanly and all 2,000 of its records are there."""
    import_or_skip("faiss", "faiss")
    target = ProcessTarget(f"faiss://{tmp_path}/db", exclusive=True)
    with (
        WriterProcess(target, "sync", "one-", 2000, batch=100, wait=True) as one,
        WriterProcess(target, "sync", "two-", 2000, batch=100, wait=True) as two,
    ):
        first = {w.prefix: w.next_event()["event"] for w in (one, two)}
        assert sorted(first.values()) == ["opened", "refused"], first
        winner, loser = (one, two) if first["one-"] == "opened" else (two, one)
        winner.send()
        assert winner.finish() == 0, winner.stderr  # no FileNotFoundError on close
        assert "FileNotFoundError" not in winner.stderr
        assert loser.finish() == REFUSED
        assert loser.events[0]["holder"]["pid"] == winner.pid
    with DatabaseFactory.create(target.url) as db:
        assert sorted(r.id for r in db.search()) == writer_ids(winner.prefix, 2000)


# -- the lock itself ---------------------------------------------------------------------------


def test_lock_names_the_holder_and_goes_with_release(tmp_path: Path) -> None:
    lock = StoreLock.acquire(tmp_path / "new" / "dir", "faiss database")  # directory created
    holder = read_holder(lock.path)
    assert holder["pid"] == os.getpid() and holder["kind"] == "faiss database"
    with pytest.raises(StoreLockedError) as info:
        StoreLock.acquire(tmp_path / "new" / "dir", "faiss vector store")
    assert info.value.holder == holder
    assert info.value.path == str(lock.path)
    assert f"this process (pid {os.getpid()})" in str(info.value)
    assert isinstance(info.value, BackendError)
    lock.release()
    lock.release()  # idempotent
    assert not lock.held
    assert lock.path.read_text() == ""  # no stale holder after a clean release
    again = StoreLock.acquire(tmp_path / "new" / "dir", "chroma directory")
    assert read_holder(again.path)["kind"] == "chroma directory"
    again.release()


def test_a_lock_dropped_without_release_is_freed_by_collection(tmp_path: Path) -> None:
    lock = StoreLock.acquire(tmp_path, "faiss database")
    del lock
    gc.collect()
    StoreLock.acquire(tmp_path, "faiss database").release()


def test_lock_in_a_directory_that_cannot_hold_one_is_a_typed_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(BackendError, match="cannot create the lock file"):
        StoreLock.acquire(tmp_path / "file", "faiss database")


def test_a_killed_holder_process_leaves_no_stale_lock(tmp_path: Path) -> None:
    """The kernel drops a flock with its process, even on SIGKILL; the holder text it leaves
    is overwritten by the next holder."""
    code = (
        "import sys; from dataknobs_data.engines.storelock import StoreLock\n"
        f"lock = StoreLock.acquire({str(tmp_path)!r}, 'faiss database')\n"
        "print('held', flush=True); sys.stdin.readline()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    assert child.stdout is not None and child.stdout.readline() == "held\n"
    with pytest.raises(StoreLockedError) as info:
        StoreLock.acquire(tmp_path, "faiss database")
    assert info.value.holder["pid"] == child.pid
    assert f"pid {child.pid}" in str(info.value)
    child.kill()
    child.wait()
    assert read_holder(tmp_path / LOCK_FILE)["pid"] == child.pid  # stale text, no lock
    lock = StoreLock.acquire(tmp_path, "faiss database")
    assert read_holder(lock.path)["pid"] == os.getpid()
    lock.release()
    child.stdout.close()
    assert child.stdin is not None
    child.stdin.close()


# -- faiss: a second open in the same process is as unsafe as a second process -----------------


@pytest.mark.parametrize("second", ["sync", "async", "store", "store-load"])
def test_faiss_database_refuses_a_second_open_in_this_process(tmp_path: Path, second: str) -> None:
    import_or_skip("faiss", "faiss")
    url = f"faiss://{tmp_path}/db"
    db = DatabaseFactory.create(url)
    db.create(Record({"v": VectorField([1.0, 0.0])}, id="a"))
    opens = {
        "sync": lambda: DatabaseFactory.create(url),
        "async": lambda: DatabaseFactory.create_async(url),
        "store": lambda: _faiss_store(tmp_path / "db"),
        "store-load": lambda: _faiss_store_class().load(tmp_path / "db"),
    }
    with pytest.raises(StoreLockedError, match="already open in this process"):
        opens[second]()
    db.close()
    with DatabaseFactory.create(url) as again:
        assert again.count() == 1


async def test_async_faiss_database_holds_the_lock_until_closed(tmp_path: Path) -> None:
    import_or_skip("faiss", "faiss")
    url = f"faiss://{tmp_path}/db"
    db = DatabaseFactory.create_async(url)
    await db.create(Record({"n": 1}, id="a"))
    with pytest.raises(StoreLockedError):
        DatabaseFactory.create(url)
    await db.close()
    with DatabaseFactory.create(url) as again:
        assert again.count() == 1


def test_faiss_close_that_fails_still_releases_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() whose snapshot fails raises, and the next opener is not locked out: it
    replays the journal, which holds every confirmed write."""
    import_or_skip("faiss", "faiss")
    from dataknobs_data import durable

    url = f"faiss://{tmp_path}/db"
    db = DatabaseFactory.create(url)
    db.create_batch([Record({"n": i}, id=f"r{i}") for i in range(5)])

    def fail(*args: Any, **kwargs: Any) -> int:
        raise OSError("disk full")

    with monkeypatch.context() as mp:
        mp.setattr(durable.Generations, "commit", fail)
        with pytest.raises(BackendError, match="disk full"):
            db.close()
    with DatabaseFactory.create(url) as again:
        assert again.count() == 5


def test_faiss_open_that_fails_releases_the_lock(tmp_path: Path) -> None:
    import_or_skip("faiss", "faiss")
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "MANIFEST.json").write_text("not json")
    for _ in range(2):  # the second attempt is not refused by the first one's lock
        with pytest.raises(BackendError, match="unreadable manifest"):
            DatabaseFactory.create(f"faiss://{tmp_path}/db")


def _faiss_store_class() -> Any:
    from dataknobs_data.vector.stores.faiss import FaissVectorStore

    return FaissVectorStore


def _faiss_store(path: Path) -> Any:
    from dataknobs_data.vector.stores import VectorStoreFactory

    return VectorStoreFactory.create("faiss", dimensions=2, path=path, metric="l2")


def test_faiss_vector_store_is_exclusive(tmp_path: Path) -> None:
    import_or_skip("faiss", "faiss")
    store = _faiss_store(tmp_path / "s")
    store.add(["a", "b"], np.eye(2))
    for second in (lambda: _faiss_store(tmp_path / "s"), lambda: type(store).load(tmp_path / "s")):
        with pytest.raises(StoreLockedError, match="faiss vector store"):
            second()
    with pytest.raises(StoreLockedError):
        DatabaseFactory.create(f"faiss://{tmp_path}/s")  # the other API on the same directory
    store.close()
    with type(store).load(tmp_path / "s") as again:
        assert again.count() == 2


def test_faiss_vector_store_close_that_fails_still_releases_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import_or_skip("faiss", "faiss")
    from dataknobs_data import durable

    store = _faiss_store(tmp_path / "s")
    store.add(["a"], np.ones((1, 2)))
    store.persist()
    store.add(["b"], np.zeros((1, 2)))

    def fail(*args: Any, **kwargs: Any) -> int:
        raise OSError("disk full")

    with monkeypatch.context() as mp:
        mp.setattr(durable.Generations, "commit", fail)
        with pytest.raises(BackendError, match="disk full"):
            store.close()
    with type(store).load(tmp_path / "s") as again:  # not refused; as of the last persist()
        assert again.count() == 1


def test_faiss_vector_store_refuses_another_process_until_closed(tmp_path: Path) -> None:
    """Another process is refused while this one holds the store; after close it reads it."""
    import_or_skip("faiss", "faiss")
    store = _faiss_store(tmp_path / "s")
    store.add(["a"], np.ones((1, 2)))
    code = (
        "import json, sys\n"
        "from dataknobs_data.errors import StoreLockedError\n"
        "from dataknobs_data.vector.stores import VectorStoreFactory\n"
        "try:\n"
        f"    s = VectorStoreFactory.load('faiss', {str(tmp_path / 's')!r})\n"
        "except StoreLockedError as e:\n"
        "    print(json.dumps(e.holder)); sys.exit(3)\n"
        "print(s.count()); s.close()\n"
    )

    def child() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, env=child_env()
        )

    refused = child()
    assert refused.returncode == REFUSED, refused.stderr
    assert json.loads(refused.stdout)["pid"] == os.getpid()
    store.close()
    done = child()
    assert (done.returncode, done.stdout.strip()) == (0, "1"), done.stderr


# -- chroma: shared inside a process (one client), exclusive across processes ------------------


def test_chroma_directory_is_shared_in_process_and_released_with_its_last_user(
    tmp_path: Path,
) -> None:
    import_or_skip("chroma", "chromadb")
    from dataknobs_data.vector.stores import VectorStoreFactory

    url = f"chroma:///{tmp_path}/c"
    first = DatabaseFactory.create(url)
    second = DatabaseFactory.create(f"{url}?collection=other")
    store = VectorStoreFactory.create("chroma", dimensions=2, path=tmp_path / "c")
    lock = tmp_path / "c" / LOCK_FILE
    assert read_holder(lock)["pid"] == os.getpid()
    first.close()
    second.close()
    assert read_holder(lock)["pid"] == os.getpid()  # the store still uses the directory
    store.close()
    assert read_holder(lock) == {}  # released with the last user
    StoreLock.acquire(tmp_path / "c", "test").release()
    with DatabaseFactory.create(url) as again:  # a fresh client after the close
        assert again.count() == 0


def test_chroma_store_load_holds_the_directory(tmp_path: Path) -> None:
    import_or_skip("chroma", "chromadb")
    from dataknobs_data.vector.stores import VectorStoreFactory

    VectorStoreFactory.create("chroma", dimensions=2, path=tmp_path).close()
    with VectorStoreFactory.load("chroma", tmp_path) as store:
        assert read_holder(tmp_path / LOCK_FILE)["kind"] == "chroma directory"
        assert store.count() == 0
    assert read_holder(tmp_path / LOCK_FILE) == {}


# -- the CLI names the holder in one line --------------------------------------------------


def test_cli_on_a_locked_store_says_who_holds_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import_or_skip("faiss", "faiss")
    from dataknobs_data.cli import main

    url = f"faiss://{tmp_path}/db"
    with DatabaseFactory.create(url):
        assert main(["info", "--db", url]) == 2
    err = capsys.readouterr().err
    assert "already open in this process" in err and "Traceback" not in err
    assert main(["info", "--db", url]) == 0


# -- SQLite: writers queue on the file's lock; one locked out past the timeout gets a typed error


def _hold_write_lock(path: Path) -> Any:
    """A plain connection holding the file's write lock (another writer, mid-transaction)."""
    from dataknobs_data.backends.sqlite.connect import load_driver

    conn = load_driver().connect(str(path), isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_sqlite_writer_locked_out_past_the_busy_timeout_gets_a_typed_error(
    tmp_path: Path,
) -> None:
    import_or_skip("sqlite", "sqlite_vec")
    path = tmp_path / "s.db"
    db = DatabaseFactory.create(f"sqlite:///{path}", busy_timeout=0.05)
    db.create(Record({"n": 0}, id="before"))
    holder = _hold_write_lock(path)
    try:
        with pytest.raises(StoreBusyError, match=r"busy timeout \(0.05 s\)") as info:
            db.create_batch([Record({"n": i}, id=f"r{i}") for i in range(3)])
        assert isinstance(info.value.__cause__, Exception)
        assert "locked" in str(info.value.__cause__)
        with pytest.raises(StoreBusyError):  # opening needs a write too (schema tables)
            DatabaseFactory.create(f"sqlite:///{path}", busy_timeout=0)
        assert db.count() == 1  # readers are not blocked (WAL), and nothing was written
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    db.create_batch([Record({"n": i}, id=f"r{i}") for i in range(3)])  # the retry goes in
    assert db.count() == 4
    db.close()


@pytest.mark.parametrize("bad", [-1, "5", True, 10**6, float("nan")])
def test_sqlite_busy_timeout_is_checked(tmp_path: Path, bad: Any) -> None:
    import_or_skip("sqlite", "sqlite_vec")
    with pytest.raises(ValidationError, match="busy_timeout"):
        DatabaseFactory.create(f"sqlite:///{tmp_path}/s.db", busy_timeout=bad)


# -- PostgreSQL: writers of one collection queue on its advisory lock; lock_timeout is typed ----


def test_postgres_writer_past_the_lock_timeout_gets_a_typed_error() -> None:
    base = os.environ.get(POSTGRES_URL_ENV)
    if not base:
        pytest.skip(f"set {POSTGRES_URL_ENV} to run the postgres lock test")
    psycopg = import_or_skip("postgres", "psycopg")
    from dataknobs_data.backends.postgres.backend import _lock_key

    collection = f"p_{uuid.uuid4().hex[:16]}"
    joiner = "&" if "?" in base else "?"
    url = f"{base}{joiner}collection={collection}&options=-c%20lock_timeout%3D50"
    db = DatabaseFactory.create(url, temporary=True)
    try:
        db.create(Record({"n": 0}, id="a"))
        with psycopg.connect(base) as other:  # another writer, mid-transaction
            other.execute(
                "SELECT pg_advisory_xact_lock(hashtext(%s))", (_lock_key("public", collection),)
            )
            with pytest.raises(StoreBusyError, match="lock_timeout") as info:
                db.create_batch([Record({"n": i}, id=f"r{i}") for i in range(3)])
            assert isinstance(info.value.__cause__, psycopg.errors.LockNotAvailable)
            assert db.count() == 1  # readers do not wait, and nothing was written
            other.rollback()
        db.create_batch([Record({"n": i}, id=f"r{i}") for i in range(3)])
        assert db.count() == 4
    finally:
        db.close()


def test_a_fork_child_closing_its_copy_keeps_the_parents_lock(tmp_path: Path) -> None:
    """A forked child inherits the lock's descriptor; releasing its copy must not unlock the
    store for the parent, which still has it open."""
    lock = StoreLock.acquire(tmp_path, "faiss database")
    pid = os.fork()
    if pid == 0:  # the child: release its copy and leave without running the parent's cleanup
        lock.release()
        os._exit(0)
    os.waitpid(pid, 0)
    with pytest.raises(StoreLockedError):
        StoreLock.acquire(tmp_path, "faiss database")
    assert read_holder(lock.path)["pid"] == os.getpid()
    lock.release()
    StoreLock.acquire(tmp_path, "faiss database").release()


def test_store_locked_error_pickles_with_its_holder(tmp_path: Path) -> None:
    import pickle

    error = StoreLockedError("held", path=str(tmp_path / LOCK_FILE), holder={"pid": 7})
    again = pickle.loads(pickle.dumps(error))
    assert (str(again), again.path, again.holder) == ("held", error.path, {"pid": 7})
