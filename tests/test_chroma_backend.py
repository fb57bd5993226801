"""The chroma database backend beyond the conformance suite: URLs, persistence across
processes, HNSW vs exact paths, 1% filtered search, bad input, the factory entry."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dataknobs_data import Record, VectorField
from dataknobs_data.capabilities import Feature
from dataknobs_data.errors import (
    BackendUnavailableError,
    FieldValidationError,
    UnsupportedMetricError,
    ValidationError,
)
from dataknobs_data.factory import DatabaseFactory
from dataknobs_data.query import F, Operator, Query
from dataknobs_data.testing import import_or_skip
from dataknobs_data.vector.types import DistanceMetric, VectorConfig

import_or_skip("chroma")

from dataknobs_data.backends.chroma import ChromaBackend, chroma_target  # noqa: E402

RNG = np.random.default_rng(11)


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("chroma://", (None, {})),
        ("chroma:///data/dir", ("data/dir", {})),
        ("chroma:////abs/dir", ("/abs/dir", {})),
        ("chroma:///d?collection=notes", ("d", {"collection": "notes"})),
        ("chroma://?collection=notes", (None, {"collection": "notes"})),
    ],
)
def test_urls(url: str, target: tuple[str | None, dict[str, str]]) -> None:
    assert chroma_target(url) == target


@pytest.mark.parametrize(
    "url", ["chroma://host/dir", "chroma:///d?collection=a&collection=b", "chroma:///d?x=1"]
)
def test_bad_urls(url: str) -> None:
    with pytest.raises(ValidationError):
        DatabaseFactory.create(url)


@pytest.mark.parametrize("name", ["ab", "-abc", "a b", "a..b", "x" * 200, "abc_"])
def test_bad_collection_names(name: str) -> None:
    with pytest.raises(ValidationError):
        DatabaseFactory.create("chroma://", collection=name)


def test_capabilities_are_honest() -> None:
    with DatabaseFactory.create("chroma://", temporary=True) as db:
        caps = db.capabilities()
        assert caps.operators == frozenset(Operator)
        assert caps.metrics == frozenset(DistanceMetric)
        assert Feature.EXACT_VECTOR_SEARCH not in caps.features
        assert Feature.TRANSACTIONS in caps.features  # writes are all or nothing (intent log)
        assert Feature.PERSISTENT not in caps.features  # in memory
        with pytest.raises(UnsupportedMetricError):
            db.declare_vector_field("v", VectorConfig(4, DistanceMetric.L1))


def _records(x: np.ndarray, start: int = 0) -> list[Record]:
    return [
        Record(
            {"i": start + i, "bucket": (start + i) % 100, "name": f"n{start + i:05d}",
             "emb": VectorField(x[i])},
            id=f"r{start + i:05d}",
        )
        for i in range(len(x))
    ]  # fmt: skip


def _exact_ids(x: np.ndarray, q: np.ndarray, rows: np.ndarray, k: int) -> list[str]:
    sub = x[rows].astype(np.float64)
    sims = sub @ q / (np.linalg.norm(sub, axis=1) * np.linalg.norm(q))
    return [f"r{rows[i]:05d}" for i in np.argsort(-sims, kind="stable")[:k]]


def test_filtered_vector_search_at_one_percent_returns_k() -> None:
    """5k records, 1% selectivity (numeric, IN, and a string pattern finished in Python)."""
    n, dim = 5000, 16
    x = RNG.normal(size=(n, dim)).astype(np.float32)
    with DatabaseFactory.create("chroma://", temporary=True) as db:
        db.create_batch(_records(x))
        rows = np.flatnonzero(np.arange(n) % 100 == 42)
        names = [f"n{r:05d}" for r in rows]
        for q in RNG.normal(size=(4, dim)).astype(np.float32):
            expected = _exact_ids(x, q, rows, 10)
            for flt in (F("bucket") == 42, F("name").is_in(names), F("name").like("%42")):
                hits = db.vector_search(q, k=10, filter=flt)
                assert [h.id for h in hits] == expected, flt


def test_other_metric_is_scored_exactly() -> None:
    """A query metric other than the field's space (here L1) is exact over every vector."""
    x = RNG.normal(size=(300, 8)).astype(np.float32)
    with DatabaseFactory.create("chroma://", temporary=True) as db:
        db.create_batch(_records(x))
        q = x[0] + 0.1
        l1 = np.abs(x.astype(np.float64) - q).sum(axis=1)
        hits = db.vector_search(q, k=5, metric="l1")
        assert [h.id for h in hits] == [f"r{i:05d}" for i in np.argsort(l1)[:5]]
        assert np.allclose([h.distance for h in hits], np.sort(l1)[:5])


def test_search_params() -> None:
    """ef_search per query raises recall over a low creation-time ef; exact=True is exact."""
    n, dim = 4000, 32
    x = RNG.normal(size=(n, dim)).astype(np.float32)
    with DatabaseFactory.create("chroma://", temporary=True, ef_search=10) as db:
        db.create_batch(_records(x))
        found: dict[str, int] = {"low": 0, "high": 0, "exact": 0}
        for q in x[:40] + 0.5:
            truth = set(_exact_ids(x, q, np.arange(n), 10))
            for name, params in (
                ("low", None),
                ("high", {"ef_search": 300}),
                ("exact", {"exact": True}),
            ):
                hits = db.vector_search(q, k=10, search_params=params)
                found[name] += len(truth & {h.id for h in hits})
        assert found["exact"] == 400
        assert found["high"] >= 380
        assert found["high"] > found["low"]


def test_bad_input_writes_nothing() -> None:
    with DatabaseFactory.create("chroma://", temporary=True) as db:
        db.create_batch([Record({"a": 1}, id="keep")])
        with pytest.raises(FieldValidationError, match="2\\*\\*53"):
            db.create_batch([Record({"a": 2}, id="new"), Record({"m": {"x": 2**60 + 1}}, id="b")])
        with pytest.raises(FieldValidationError):
            db.upsert(Record({"a": 2**55 + 1}, id="keep"))
        assert [r.to_plain() for r in db.search()] == [{"a": 1}]
        assert db.count() == 1


def test_updates_replace_filter_keys() -> None:
    """Chroma's upsert merges metadata; the backend drops the stale keys explicitly."""
    with DatabaseFactory.create("chroma://", temporary=True) as db:
        db.create(Record({"tags": ["a", "b"], "n": 5, "e": VectorField([1.0, 0.0])}, id="x"))
        db.update("x", Record({"title": "t"}))
        for flt in (F("tags") == "a", F("n") > 1, F("tags").exists(), F("e").exists()):
            assert db.count(flt) == 0
        assert db.vector_search([1.0, 0.0], field="e") == []


def test_hits_load_records_lazily_and_once() -> None:
    x = RNG.normal(size=(50, 4)).astype(np.float32)
    with DatabaseFactory.create("chroma://", temporary=True) as db:
        db.create_batch(_records(x))
        hits = db.vector_search(x[3], k=3)
        assert hits[0].id == "r00003"
        db.delete(hits[2].id)  # gone before its record is read: still the record as found
        assert db.read(hits[2].id) is None
        assert hits[0].record["i"] == 3
        assert hits[2].record.id == hits[2].id
        assert hits[2].record["i"] == int(hits[2].id[1:])
        assert hits[2].record is hits[2].record  # built once


def test_index_stats() -> None:
    with DatabaseFactory.create("chroma://", temporary=True, ef_search=77) as db:
        db.create(Record({"emb": VectorField([1.0, 2.0])}, id="a"))
        stats = db.get_vector_index_stats("emb")
        assert (stats["type"], stats["rows"], stats["params"]["ef_search"]) == ("hnsw", 1, 77)


def test_persistence_across_processes(tmp_path: Path) -> None:
    """Reopening the directory in a new process gives the same records and search results."""
    x = RNG.normal(size=(120, 8)).astype(np.float32)
    url = f"chroma:///{tmp_path}/db?collection=docs"
    with DatabaseFactory.create(url) as db:
        assert db.capabilities().supports(Feature.PERSISTENT)
        db.create_batch(_records(x))
        db.delete("r00007")
        query = Query(F("bucket") < 60).sort("name", descending=True).limit(5)
        expected: list[Any] = [
            [r.id for r in db.search(query)],
            [[h.id, h.score] for h in db.vector_search(x[1], k=4, filter=F("i") > 2)],
            db.vector_fields()["emb"].to_dict(),
        ]
    script = textwrap.dedent(
        f"""
        import json, numpy as np
        from dataknobs_data.factory import DatabaseFactory
        from dataknobs_data.query import F, Query
        db = DatabaseFactory.create({url!r})
        q = np.asarray({x[1].tolist()!r}, dtype=np.float32)
        query = Query(F("bucket") < 60).sort("name", descending=True).limit(5)
        print(json.dumps([
            [r.id for r in db.search(query)],
            [[h.id, h.score] for h in db.vector_search(q, k=4, filter=F("i") > 2)],
            db.vector_fields()["emb"].to_dict(),
            db.count(), db.exists("r00007"),
        ]))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got[:3] == expected
    assert got[3:] == [119, False]


def test_backend_class_direct(tmp_path: Path) -> None:
    backend = ChromaBackend(tmp_path, collection="direct")
    assert backend.capabilities().backend == "chroma"
    backend.close()


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "chromadb" else real(name)
    )
    with pytest.raises(BackendUnavailableError, match=r"dataknobs-data\[chroma\]"):
        DatabaseFactory.create("chroma://")


def test_in_memory_client_lives_while_a_database_uses_it() -> None:
    """The process's in-memory chroma client is closed with its last database (chromadb keeps
    memory for every collection an in-memory system ever held), never under an open one."""
    from dataknobs_data.engines.chroma import engine

    before = engine._users.get("", 0)  # in-memory databases other tests still hold
    first = DatabaseFactory.create("chroma://", temporary=True)
    second = DatabaseFactory.create("chroma://", temporary=True)
    first.create(Record({"n": 1}, id="a"))
    second.create(Record({"n": 2}, id="b"))
    first.close()
    assert engine._users.get("", 0) == before + 1 and "" in engine._clients
    assert [r.id for r in second.search()] == ["b"]  # still served after the first closed
    second.close()
    assert engine._users.get("", 0) == before
    assert ("" in engine._clients) == (before > 0)
    third = DatabaseFactory.create("chroma://", temporary=True)  # a fresh client if closed
    third.create(Record({"n": 3}, id="c"))
    assert [r.id for r in third.search()] == ["c"]
    third.close()
