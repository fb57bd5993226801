"""The SQLite backend beyond the conformance suite: files, processes, crashes and hostile input.

Real processes and a real engine throughout: children are separate Python interpreters that
open the same file, and a crash is a ``SIGKILL`` delivered while a batch is inside its
transaction (the child parks itself in SQLite's trace callback, so the timing is certain).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dataknobs_data import DatabaseFactory, Record, VectorField
from dataknobs_data.backends.sqlite import SQLiteBackend
from dataknobs_data.backends.sqlite.connect import connect, load_driver
from dataknobs_data.errors import (
    BackendUnavailableError,
    InvalidIdentifierError,
    SchemaError,
    ValidationError,
)
from dataknobs_data.factory import sqlite_target
from dataknobs_data.query import F, Query
from dataknobs_data.testing import canonical, requires_extra
from dataknobs_data.testing.dataset import QUERY_VECTORS, VECTOR_FIELD, build_records
from dataknobs_data.vector.types import VectorConfig

CHILD_PRELUDE = """
import json, sys
import numpy as np
from dataknobs_data import DatabaseFactory, Record, VectorField
"""
#: Everything that opens a database needs sqlite-vec; URL parsing and the missing-driver
#: message do not, and run without it.
needs_sqlite = requires_extra("sqlite")


def run_child(body: str, *args: str, timeout: float = 120) -> str:
    """Run ``body`` in a fresh interpreter (argv holds ``args``); return its stdout."""
    code = CHILD_PRELUDE + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def hits_summary(hits: Any) -> list[tuple[str, float, float, int]]:
    return [(h.id, h.score, h.distance, h.rank) for h in hits]


# == URLs and collections ======================================================================
@pytest.mark.parametrize(
    ("given", "path", "params"),
    [
        ("sqlite:///data.db", "data.db", {}),
        ("sqlite:///dir/data.db", "dir/data.db", {}),
        ("sqlite:////abs/data.db", "/abs/data.db", {}),
        ("sqlite:///:memory:", ":memory:", {}),
        ("sqlite:///data.db?collection=docs", "data.db", {"collection": "docs"}),
    ],
)
def test_url_forms(given: str, path: str, params: dict[str, str]) -> None:
    """Relative, absolute and in-memory paths, and the collection parameter."""
    assert sqlite_target(given) == (path, params)


@needs_sqlite
@pytest.mark.parametrize(
    "bad",
    [
        "sqlite://host/data.db",
        "sqlite:///",
        "sqlite:///a.db?x=1",
        "sqlite:///a.db?collection=a&collection=b",
    ],
)
def test_bad_urls(bad: str) -> None:
    """Hosts, missing paths and unknown parameters are refused with a ValidationError."""
    with pytest.raises(ValidationError):
        DatabaseFactory.create(bad)


@needs_sqlite
def test_relative_path_and_collections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative URL resolves against the working directory; collections share one file."""
    monkeypatch.chdir(tmp_path)
    with DatabaseFactory.create("sqlite:///shared.db?collection=a") as a:
        a.create(Record({"n": 1}, id="x"))
    with DatabaseFactory.create("sqlite:///shared.db", collection="b") as b:
        assert b.count() == 0
        b.create(Record({"n": 2}, id="x"))
    with DatabaseFactory.create("sqlite:///shared.db?collection=a") as a:
        rec = a.read("x")
        assert rec is not None
        assert rec["n"] == 1
    assert (tmp_path / "shared.db").exists()


@pytest.mark.parametrize(
    "name", ['x"; DROP TABLE records; --', "sqlite_master", "dk_meta", "1abc", "", "a-b", "é"]
)
def test_unsafe_collection_names(tmp_path: Path, name: str) -> None:
    """Collection names become table names, so anything but a plain identifier is refused."""
    with pytest.raises(InvalidIdentifierError):
        SQLiteBackend(str(tmp_path / "x.db"), collection=name)


@needs_sqlite
# == driver selection ==========================================================================
def test_driver_loads_sqlite_vec() -> None:
    """The chosen driver (stdlib if it can load extensions, else sqlean) runs sqlite-vec."""
    import sqlite3

    module = load_driver()
    if not hasattr(sqlite3.Connection, "enable_load_extension"):
        assert module.__name__ == "sqlean"
    conn, used = connect(":memory:")
    try:
        assert used is module
        (version,) = conn.execute("SELECT vec_version()").fetchone()
        assert version.startswith("v")
    finally:
        conn.close()


def test_missing_driver_names_the_extra() -> None:
    """No driver that can load extensions: BackendUnavailableError says what to install."""
    with pytest.raises(BackendUnavailableError, match=r"dataknobs-data\[sqlite\]"):
        load_driver(("no_such_sqlite_driver",))


@needs_sqlite
# == persistence ===============================================================================
def test_reopen_in_new_process_gives_identical_records_and_hits(tmp_path: Path) -> None:
    """A child writes the dataset; another process reads identical records and search hits."""
    db_url = url(tmp_path / "store.db")
    with DatabaseFactory.create(db_url) as db:
        db.create_batch(build_records())
        expected_records = [canonical(r) for r in db.search(Query())]
        expected_hits = [
            hits_summary(db.vector_search(q, field=VECTOR_FIELD, k=7, metric=m))
            for q in QUERY_VECTORS
            for m in ("cosine", "euclidean", "dot_product", "l1")
        ]
        expected_filtered = hits_summary(
            db.vector_search(QUERY_VECTORS[2], k=4, filter=F("group") == 1)
        )
    out = run_child(
        """
        db = DatabaseFactory.create(sys.argv[1])
        from dataknobs_data.testing.dataset import QUERY_VECTORS
        from dataknobs_data.query import F
        def summary(hits):
            return [(h.id, h.score, h.distance, h.rank) for h in hits]
        hits = [summary(db.vector_search(q, field="embedding", k=7, metric=m))
                for q in QUERY_VECTORS for m in ("cosine", "euclidean", "dot_product", "l1")]
        filtered = summary(db.vector_search(QUERY_VECTORS[2], k=4, filter=F("group") == 1))
        print(json.dumps({"hits": hits, "filtered": filtered,
                          "fields": {k: v.to_dict() for k, v in db.vector_fields().items()}}))
        """,
        db_url,
    )
    child = json.loads(out)
    assert [[tuple(h) for h in hs] for hs in child["hits"]] == expected_hits
    assert [tuple(h) for h in child["filtered"]] == expected_filtered
    assert child["fields"][VECTOR_FIELD]["dimensions"] == 8
    assert child["fields"][VECTOR_FIELD]["model_name"] == "conformance-model"
    with DatabaseFactory.create(db_url) as again:
        assert [canonical(r) for r in again.search(Query())] == expected_records


@needs_sqlite
def test_declared_dimension_mismatch_on_reopen(tmp_path: Path) -> None:
    """The stored schema wins: a different declared dimension or model is a SchemaError."""
    db_url = url(tmp_path / "dims.db")
    config = VectorConfig(8, model_name="m", model_version="1")
    with DatabaseFactory.create(db_url, vectors={"embedding": config}) as db:
        db.create(Record({"embedding": VectorField(np.ones(8, np.float32))}, id="a"))
    with pytest.raises(SchemaError, match="embedding"):
        DatabaseFactory.create(db_url, vectors={"embedding": VectorConfig(16)})
    with pytest.raises(SchemaError):
        DatabaseFactory.create(db_url, vectors={"embedding": VectorConfig(8, model_name="other")})
    with DatabaseFactory.create(db_url, vectors={"embedding": config}) as db:
        assert db.count() == 1
        assert db.vector_fields()["embedding"] == config


@needs_sqlite
# == crash safety ==============================================================================
def test_kill_9_inside_a_batch_leaves_the_file_consistent(tmp_path: Path) -> None:
    """SIGKILL while a 20k-record batch is inside its transaction: the batch is absent, the
    earlier data intact, the file passes integrity_check and takes new writes."""
    path = tmp_path / "crash.db"
    with DatabaseFactory.create(url(path)) as db:
        db.create_batch(
            [
                Record({"n": i, "v": VectorField(np.full(16, i, np.float32))}, id=f"a{i:03d}")
                for i in range(100)
            ]
        )
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD_PRELUDE
            + textwrap.dedent(
                """
                import time
                db = DatabaseFactory.create(sys.argv[1])
                records = [Record({"n": i, "v": VectorField(np.full(16, i, np.float32))},
                                  id=f"b{i:05d}") for i in range(20_000)]
                def park(sql):
                    # Inside the batch's transaction, after its rows went in: stop here.
                    if sql.startswith('INSERT INTO "records__vec0"'):
                        print("inside", flush=True)
                        time.sleep(600)
                db.backend._conn.set_trace_callback(park)
                db.create_batch(records)
                print("committed", flush=True)
                """
            ),
            str(url(path)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "inside"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    conn, _ = connect(str(path))
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()
    with DatabaseFactory.create(url(path)) as db:
        assert db.count() == 100
        assert db.count(F("_id").starts_with("b")) == 0
        hits = db.vector_search(np.full(16, 3, np.float32), k=3, metric="euclidean")
        assert [h.id for h in hits] == ["a003", "a002", "a004"]
        db.create(Record({"n": -1}, id="after"))
        assert db.count() == 101


# == concurrency ===============================================================================
WRITER = """
db = DatabaseFactory.create(sys.argv[1])
tag = sys.argv[2]
for batch in range(20):
    db.upsert_batch([Record({"writer": tag, "i": batch * 10 + j,
                             "v": VectorField(np.full(4, batch * 10 + j, np.float32))},
                            id=f"{tag}-{batch * 10 + j:03d}") for j in range(10)])
    db.update("shared", Record({"last": tag, "batch": batch}, id="shared"))
print("done")
"""


@needs_sqlite
def test_two_processes_writing_one_file_lose_nothing(tmp_path: Path) -> None:
    """Two interpreters upsert 200 records each, interleaved: all 400 arrive intact."""
    db_url = url(tmp_path / "shared.db")
    with DatabaseFactory.create(db_url) as db:
        db.create(Record({"last": "none"}, id="shared"))
    code = CHILD_PRELUDE + textwrap.dedent(WRITER)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, db_url, tag], stdout=subprocess.PIPE, text=True
        )
        for tag in ("p", "q")
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0
        assert out.strip() == "done"
    with DatabaseFactory.create(db_url) as db:
        assert db.count() == 401
        for tag in ("p", "q"):
            recs = db.search(Query(F("writer") == tag).sort("i"))
            assert [r["i"] for r in recs] == list(range(200))
            assert all(float(r["v"][0]) == r["i"] for r in recs)
        shared = db.read("shared")
        assert shared is not None
        assert shared["batch"] == 19
        assert len(db.vector_search([5.0] * 4, field="v", k=400, metric="l1")) == 400


@needs_sqlite
def test_threads_share_one_database(tmp_path: Path) -> None:
    """Worker threads (as the async shell uses) write and read through one connection."""
    errors: list[BaseException] = []
    with DatabaseFactory.create(url(tmp_path / "threads.db")) as db:

        def work(t: int) -> None:
            try:
                for i in range(25):
                    db.create(Record({"t": t, "i": i}, id=f"{t}-{i:02d}"))
                    assert db.count(F("t") == t) == i + 1
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert not errors
        assert db.count() == 100


# == hostile input =============================================================================
HOSTILE = [
    'x"); DROP TABLE records; --',
    "a'b",
    'q"uote',
    "back\\slash",
    "$[0]",
    "semi;colon",
    "* / --",
    "ünï ✓",
]


@needs_sqlite
def test_injection_attempts_are_inert(tmp_path: Path) -> None:
    """Field names, nested keys, sort keys and filter values that look like SQL or JSON-path
    syntax are stored, filtered and sorted as plain data; the table survives."""
    with DatabaseFactory.create(url(tmp_path / "inj.db")) as db:
        records = [
            Record({name: i, "meta": {name: f"v{i}"}, "s": "' OR 1=1 --"}, id=f"r{i}")
            for i, name in enumerate(HOSTILE)
        ]
        db.create_batch(records)
        for i, name in enumerate(HOSTILE):
            assert [r.id for r in db.search(Query(F(name) == i))] == [f"r{i}"]
            assert [r.id for r in db.search(Query(F(f"meta.{name}") == f"v{i}"))] == [f"r{i}"]
            first = db.search(Query().sort(name, descending=True).limit(1))
            assert [r.id for r in first] == [f"r{i}"]
            got = db.read(f"r{i}")
            assert got is not None
            assert canonical(got) == canonical(records[i])
        for value in ["' OR 1=1 --", "x'; DELETE FROM records; --", '"', "%", "\\"]:
            assert db.count(F("s") == value) == (len(HOSTILE) if value == "' OR 1=1 --" else 0)
            like_all = value in ("' OR 1=1 --", "%")
            pattern = value.replace("\\", "\\\\")
            assert db.count(F("s").like(pattern)) == (len(HOSTILE) if like_all else 0)
            assert db.count(F("s").starts_with(value)) == (len(HOSTILE) if value[0] == "'" else 0)
        assert db.count(F("_id") == "r0' OR '1'='1") == 0
        assert db.read("r0'; DROP TABLE records; --") is None
        assert db.count() == len(HOSTILE)
        hostile_vector = 'emb"); DROP TABLE records; --'
        db.create(Record({hostile_vector: VectorField(np.ones(4, np.float32))}, id="vec"))
        hits = db.vector_search([1, 1, 1, 1], field=hostile_vector, k=1)
        assert [h.id for h in hits] == ["vec"]
        assert db.count() == len(HOSTILE) + 1


@needs_sqlite
def test_deletes_remove_index_rows(tmp_path: Path) -> None:
    """Deleting or replacing records leaves no stale rows in the vec0 index."""
    path = tmp_path / "del.db"
    with DatabaseFactory.create(url(path)) as db:
        db.create_batch(build_records())
        db.delete_batch(["r01", "r02"])
        db.update("r03", Record({"title": "no vector now"}, id="r03"))
        db.upsert(Record({"embedding": VectorField(np.ones(8, np.float32))}, id="r04"))
        expected = sum(1 for r in db.search(Query()) if VECTOR_FIELD in r)
    conn, _ = connect(str(path))
    try:
        ((n,),) = conn.execute('SELECT count(*) FROM "records__vec0"').fetchall()
    finally:
        conn.close()
    assert n == expected


@needs_sqlite
def test_schema_added_by_another_process_is_seen(tmp_path: Path) -> None:
    """An open database notices a vector field another process added (schema re-read)."""
    db_url = url(tmp_path / "schema.db")
    with DatabaseFactory.create(db_url) as db:
        db.create(Record({"n": 1}, id="a"))
        assert db.vector_fields() == {}
        run_child(
            """
            db = DatabaseFactory.create(sys.argv[1])
            db.create(Record({"w": VectorField(np.ones(3, np.float32))}, id="b"))
            """,
            db_url,
        )
        assert db.vector_fields()["w"].dimensions == 3
        assert [h.id for h in db.vector_search([1.0, 1.0, 1.0], field="w")] == ["b"]
        with pytest.raises(SchemaError):
            db.declare_vector_field("w", VectorConfig(4))


@pytest.mark.parametrize("k", [3, 40, 150])
def test_stored_zero_vectors_rank_at_cosine_distance_one(tmp_path: Path, k: int) -> None:
    """vec0 returns zero vectors (NULL cosine distance) at arbitrary places of its answer; a
    search whose k-th distance reaches 1 must still rank them (at 1, ties by id) as memory
    does. Ids are shuffled so rowid order is not id order."""
    rng = np.random.default_rng(11)
    ids = [f"z{i:04d}" for i in rng.permutation(200)]
    vectors = rng.standard_normal((200, 3)).astype(np.float32)
    vectors[::9] = 0.0  # 23 zero vectors spread over the rowids
    records = [Record({"n": i, "v": VectorField(vectors[i])}, id=ids[i]) for i in range(len(ids))]
    with (
        DatabaseFactory.create(f"sqlite:///{tmp_path}/z.db") as db,
        DatabaseFactory.create("memory://") as ref,
    ):
        db.create_batch(records)
        ref.create_batch(records)
        for query in rng.standard_normal((12, 3)).astype(np.float32):
            for flt in (None, Query().filter("n", "<", 120)):
                got = [h.record.id for h in db.vector_search(query, k=k, filter=flt)]
                want = [h.record.id for h in ref.vector_search(query, k=k, filter=flt)]
                assert got == want
