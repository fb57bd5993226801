"""Vectorizers beside writers, and two vectorizers on one PostgreSQL database.

* A writer edits source texts while a background vectorizer runs, on SQLite and PostgreSQL
  (separate database objects: separate connections): at the end every vector is current and
  equals the embedding of its record's text. The compare-and-set write-back never stores a
  vector of a text that changed while it was being embedded.
* Two vectorizers drain one PostgreSQL collection at once (row claims with ``SKIP LOCKED``):
  every text is embedded exactly once in total, and both did part of the work.
"""

from __future__ import annotations

import os
import random
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from dataknobs_data import DatabaseFactory, Record, VectorField
from dataknobs_data.fields import text_hash
from dataknobs_data.testing import POSTGRES_URL_ENV, import_or_skip
from dataknobs_data.testing.embedders import CountingEmbedder
from dataknobs_data.vector.sync import IncrementalVectorizer, SyncConfig, VectorTextSynchronizer
from dataknobs_data.vector.sync.rules import EmbedderInfo, VectorizingRule

N = 600
FIELD = "emb"


def _text(rec: Record) -> str:
    return "\n\n".join(str(rec[s]).strip() for s in ("title", "body") if rec.get(s))


def _postgres_url() -> str:
    import_or_skip("postgres")
    base = os.environ.get(POSTGRES_URL_ENV)
    if not base:
        pytest.skip(f"set {POSTGRES_URL_ENV} to run the postgres backend tests")
    return f"{base}{'&' if '?' in base else '?'}collection=sc_{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/c.db"
        return
    where = _postgres_url()
    yield where
    DatabaseFactory.create(where, temporary=True).close()  # drops the collection


def _prepare(url: str, embedder: CountingEmbedder, n: int = N) -> None:
    with DatabaseFactory.create(url) as db:
        sync = VectorTextSynchronizer(db, embedder)
        rule = VectorizingRule(FIELD, ("title", "body"), EmbedderInfo.of(embedder), "deferred")
        sync.set_rule(rule, check=False)
        db.load(
            Record({"title": f"Title {i}", "body": f"body {i}", "n": i}, id=f"c{i:05d}")
            for i in range(n)
        )


def test_writers_editing_while_the_vectorizer_runs_end_with_every_vector_current(
    url: str,
) -> None:
    emb = CountingEmbedder(16)
    _prepare(url, emb)
    vectorizer = IncrementalVectorizer(
        DatabaseFactory.create(url), emb, SyncConfig(batch_size=50), poll_interval=0.01
    )
    writer = DatabaseFactory.create(url)
    rng = random.Random(4)
    vectorizer.start()
    edits = 0
    try:
        while edits < 1500 or vectorizer.totals.written < 200:
            ids = sorted({f"c{rng.randrange(N):05d}" for _ in range(15)})
            recs = [r for r in writer.read_batch(ids) if r is not None]
            for r in recs:
                r["body"] = f"edit {edits} {rng.random()}"
                if rng.random() < 0.3:
                    r["n"] = -1  # a non-source edit beside it
            writer.update_batch(recs)
            edits += len(recs)
    finally:
        vectorizer.stop()
        writer.close()
    vectorizer.run_once()
    db = vectorizer.synchronizer.database
    records = list(db.stream(batch_size=200))
    assert len(records) == N
    expected = emb.embed([_text(r) for r in records])
    for rec, want in zip(records, expected, strict=True):
        vec = rec.fields.get(FIELD)
        assert isinstance(vec, VectorField), rec.id
        assert vec.source_hash == text_hash(_text(rec)), rec.id
        assert np.array_equal(vec.value, want), rec.id
    report = vectorizer.synchronizer.check()
    assert report.clean and report.fields[FIELD].current == N
    db.close()


def test_two_vectorizers_on_postgres_never_embed_a_text_twice() -> None:
    url = _postgres_url()
    try:
        shared = CountingEmbedder(16)
        _prepare(url, shared, 2000)
        shared.reset()
        workers = [
            IncrementalVectorizer(
                DatabaseFactory.create(url), shared, SyncConfig(batch_size=40, worker=f"w{i}")
            )
            for i in range(2)
        ]
        barrier = threading.Barrier(2)
        results = {}

        def run(i: int) -> None:
            barrier.wait()
            results[i] = workers[i].run_once()

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert shared.texts == 2000 and len(set(shared.seen)) == 2000
        assert results[0].embedded > 0 and results[1].embedded > 0
        assert results[0].embedded + results[1].embedded == 2000
        assert workers[0].synchronizer.check().clean
        for w in workers:
            w.synchronizer.database.close()
    finally:
        DatabaseFactory.create(url, temporary=True).close()
