"""The faiss:// database on real faiss: ANN indexes behind the Database API, durability."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dataknobs_data import DatabaseFactory, Record, VectorField
from dataknobs_data.capabilities import Feature
from dataknobs_data.errors import (
    BackendError,
    QueryError,
    UnsupportedMetricError,
    ValidationError,
)
from dataknobs_data.query import Condition
from dataknobs_data.testing import import_or_skip
from dataknobs_data.vector.types import VectorConfig, VectorIndexConfig

faiss = import_or_skip("faiss")

N, D = 12_000, 16  # above the 10k where ``auto`` switches from flat to HNSW


@pytest.fixture(autouse=True, scope="module")
def _one_openmp_thread() -> Iterator[None]:
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    rng = np.random.default_rng(3)
    centers = rng.standard_normal((30, D)).astype(np.float32)
    return centers[rng.integers(0, 30, N)] + 0.25 * rng.standard_normal((N, D)).astype(np.float32)


def _crash(db: Any) -> None:
    """What a process death does to an open faiss database: its files close (the journal
    unflushed beyond its last fsync) and the kernel drops its directory lock; nothing else."""
    db.backend._journal.close()
    db.backend._store_lock.release()


def _records(x: np.ndarray, start: int = 0) -> list[Record]:
    return [
        Record({"cat": i % 100, "name": f"n{i}", "v": VectorField(x[i - start])}, id=f"r{i:05d}")
        for i in range(start, start + len(x))
    ]


def _truth(x: np.ndarray, q: np.ndarray, rows: np.ndarray, k: int) -> list[str]:
    sims = (x[rows] @ q) / (np.linalg.norm(x[rows], axis=1) * np.linalg.norm(q))
    return [f"r{i:05d}" for i in rows[np.argsort(-sims, kind="stable")[:k]]]


def test_auto_switches_to_hnsw_and_filters_return_k(vectors: np.ndarray) -> None:
    db = DatabaseFactory.create("faiss://", exact_filter_below=0)
    db.create_batch(_records(vectors))
    flt = Condition.make("cat", "=", 42)  # 1% of the records
    rows = np.flatnonzero(np.arange(N) % 100 == 42)
    all_rows = np.arange(N)
    recall = []
    for q in vectors[:200:10] + 0.02:
        hits = db.vector_search(q, k=10)
        recall.append(len({h.id for h in hits} & set(_truth(vectors, q, all_rows, 10))) / 10)
        filtered = db.vector_search(q, k=10, filter=flt)
        assert len(filtered) == 10 and all(h.record["cat"] == 42 for h in filtered)
        # the filtered search fell back to exact scoring: the exact top 10 of the 120
        assert [h.id for h in filtered] == _truth(vectors, q, rows, 10)
    assert np.mean(recall) >= 0.9
    stats = db.get_vector_index_stats("v")
    assert stats["kind"] == "hnsw" and stats["rows"] == N
    assert db.capabilities().supports(Feature.FILTERED_VECTOR_SEARCH)
    db.close()


@pytest.mark.parametrize("kind", ["hnsw", "ivfflat"])
def test_index_management(kind: str, vectors: np.ndarray) -> None:
    db = DatabaseFactory.create("faiss://")
    db.create_batch(_records(vectors[:3000]))
    q = vectors[5]
    exact = [h.id for h in db.vector_search(q, k=10)]
    stats = db.create_vector_index("v", kind=kind, m=16, lists=20)
    assert stats["kind"] == kind and stats["rows"] == 3000
    params = {"ef_search": 200} if kind == "hnsw" else {"probes": 20}
    assert [h.id for h in db.vector_search(q, k=10, search_params=params)] == exact
    assert [h.id for h in db.vector_search(q, k=10, search_params={"exact": True})] == exact
    with pytest.raises(QueryError):
        db.vector_search(q, search_params={"ef": 10, "ef_search": 10})
    db.delete_batch([f"r{i:05d}" for i in range(0, 3000, 2)])
    hits = db.vector_search(q, k=10)
    assert len(hits) == 10 and all(int(h.id[1:]) % 2 for h in hits)
    assert db.optimize_vector_index("v")["tombstones"] == 0
    assert db.drop_vector_index("v") is True
    assert db.get_vector_index_stats("v")["kind"] is None  # rebuilt flat at the next search
    db.vector_search(q, k=1)
    assert db.get_vector_index_stats("v")["kind"] == "flat"
    assert db.drop_vector_index("v") is False
    db.close()


def test_l1_field_refuses_an_ann_index() -> None:
    config = VectorConfig(4, "l1", index=VectorIndexConfig("auto"))
    db = DatabaseFactory.create("faiss://", vectors={"v": config})
    db.create(Record({"v": VectorField(np.ones(4, dtype=np.float32))}, id="a"))
    with pytest.raises(UnsupportedMetricError):
        db.create_vector_index("v", kind="hnsw")
    assert db.vector_search(np.ones(4), k=1)[0].distance == 0.0
    db.close()


def test_reopen_keeps_records_schema_and_built_index(tmp_path: Path, vectors: np.ndarray) -> None:
    url = f"faiss://{tmp_path / 'db'}"
    db = DatabaseFactory.create(url)
    db.create_batch(_records(vectors[:2000]))
    db.create_vector_index("v", kind="hnsw")
    db.delete("r00001")
    db.update("r00002", Record({"cat": -1, "v": VectorField(vectors[2])}))
    before = [h.id for h in db.vector_search(vectors[7], k=10)]
    db.close()
    again = DatabaseFactory.create(url)
    assert again.count() == 1999 and again.read("r00001") is None
    assert again.read("r00002")["cat"] == -1  # type: ignore[index]
    stats = again.get_vector_index_stats("v")
    assert stats["kind"] == "hnsw" and stats["build_seconds"] == 0.0  # loaded, not rebuilt
    assert [h.id for h in again.vector_search(vectors[7], k=10)] == before
    assert again.capabilities().supports(Feature.PERSISTENT)
    again.close()


_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from dataknobs_data import DatabaseFactory, Record, VectorField

    db = DatabaseFactory.create("faiss://" + sys.argv[1])
    rng = np.random.default_rng(1)
    batch = 0
    while True:
        recs = [
            Record({"batch": batch, "v": VectorField(rng.standard_normal(8).astype("float32"))},
                   id=f"b{batch}-{i}")
            for i in range(200)
        ]
        db.create_batch(recs)
        db.delete(f"b{batch}-0")
        if batch % 7 == 3:
            db.backend.persist()  # a snapshot now and then, so both paths are crossed
        print(batch, flush=True)
        batch += 1
    """
)


@pytest.mark.parametrize("batches", [3, 11])
def test_kill_9_keeps_every_committed_write(batches: int, tmp_path: Path) -> None:
    """A writer is SIGKILLed after reporting ``batches`` committed batches; every reported
    batch is there on reopen (and no half batch: 199 records each, or 200 if the kill fell
    between the create and the delete)."""
    path = tmp_path / "db"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    for _ in range(batches):
        proc.stdout.readline()
    proc.send_signal(signal.SIGKILL)
    reported = len(proc.stdout.read().split()) + batches
    proc.wait()
    db = DatabaseFactory.create(f"faiss://{path}")
    sizes = [db.count(Condition.make("batch", "=", b)) for b in range(reported + 2)]
    assert all(s == 199 for s in sizes[:reported]), sizes
    assert all(s in (0, 199, 200) for s in sizes[reported:]), sizes
    assert len(db.vector_search(np.ones(8), k=5)) == 5
    db.create(Record({"batch": -1}, id="after"))  # the journal accepts writes after recovery
    db.close()
    assert DatabaseFactory.create(f"faiss://{path}").exists("after")


def test_torn_journal_tail_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "db"
    db = DatabaseFactory.create(f"faiss://{path}")
    db.create(Record({"v": VectorField(np.ones(4, dtype=np.float32))}, id="a"))
    db.create(Record({"v": VectorField(np.zeros(4, dtype=np.float32))}, id="b"))
    journal = next(path.glob("journal-*.log"))
    data = journal.read_bytes()
    _crash(db)  # simulate a crash: no close()
    journal.write_bytes(data + data[: len(data) // 3])  # a torn copy of the frames after them
    again = DatabaseFactory.create(f"faiss://{path}")
    assert sorted(r.id for r in again.search()) == ["a", "b"]
    again.create(Record({"v": VectorField(np.ones(4, dtype=np.float32))}, id="c"))
    again.close()
    with DatabaseFactory.create(f"faiss://{path}") as reopened:
        assert reopened.count() == 3
    # a corrupt byte inside the last frame: that frame (and only it) is dropped
    again = DatabaseFactory.create(f"faiss://{path}")
    again.create(Record({"x": 1}, id="d"))
    journal = next(path.glob("journal-*.log"))
    raw = bytearray(journal.read_bytes())
    raw[-3] ^= 0xFF
    _crash(again)
    journal.write_bytes(bytes(raw))
    with DatabaseFactory.create(f"faiss://{path}") as reopened:
        assert sorted(r.id for r in reopened.search()) == ["a", "b", "c"]


def test_urls_and_options(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        DatabaseFactory.create("faiss://x?fsync=0")
    with pytest.raises(ValidationError):
        DatabaseFactory.create("faiss://", recall_target=2.0)
    with pytest.raises(ValidationError, match=r"unknown option.*bogus.*valid:.*recall_target"):
        DatabaseFactory.create("faiss://", bogus=1)
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(BackendError, match="cannot create"):
        DatabaseFactory.create(f"faiss://{tmp_path / 'file'}")
    db = DatabaseFactory.create("faiss://")
    assert not db.capabilities().supports(Feature.PERSISTENT)
    assert {"flat", "hnsw", "ivfflat", "ivfpq"} <= db.capabilities().index_types
    db.close()


async def test_async_shell(tmp_path: Path, vectors: np.ndarray) -> None:
    db = DatabaseFactory.create_async(f"faiss://{tmp_path / 'a'}")
    await db.create_batch(_records(vectors[:500]))
    hits = await db.vector_search(vectors[3], k=3, filter={"field": "cat", "op": "<", "value": 50})
    assert hits[0].id == "r00003"
    stats: dict[str, Any] = await db.create_vector_index("v", kind="hnsw")
    assert stats["kind"] == "hnsw"
    await db.close()


def test_journal_and_snapshot_keep_every_field_type(tmp_path: Path) -> None:
    """Records come back identical after replay from the journal and from a snapshot:
    provenance, field metadata, datetimes, JSON, bytes, record metadata."""
    from datetime import UTC, datetime

    from dataknobs_data.testing import canonical

    rec = Record(
        {
            "text": "hello",
            "when": datetime(2024, 5, 1, 12, tzinfo=UTC),
            "doc": {"a": [1, 2.5, None, {"b": True}]},
            "blob": b"\x00\x01",
            "n": 1.0,
            "v": VectorField(
                np.array([0.1, -2.0, 3.25, 1e-8], dtype=np.float32),
                source_field="text",
                model_name="m",
                model_version="2",
                metadata={"note": "x"},
            ),
        },
        id="only",
        metadata={"origin": {"k": 1}},
    )
    url = f"faiss://{tmp_path / 'db'}"
    db = DatabaseFactory.create(url)
    db.create(rec)
    _crash(db)  # only the journal has it
    with DatabaseFactory.create(url) as db:
        replayed = db.read("only")
    assert replayed is not None and canonical(replayed) == canonical(rec)
    DatabaseFactory.create(url).close()  # snapshot
    assert not any(p.stat().st_size for p in (tmp_path / "db").glob("journal-*.log"))
    with DatabaseFactory.create(url) as db:
        again = db.read("only")
    assert again is not None and canonical(again) == canonical(rec)
