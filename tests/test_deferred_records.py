"""Hit records copied late (``backends/deferred.py``) under concurrent writers.

The conformance suite checks that a hit's record is the record as found after later writes,
one call at a time. Here writers and readers run at once on the in-memory engines whose
records are copied lazily: every record a reader builds must be one version of that record,
never a stored record of one write paired with the vector of another, and never a deadlock.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from dataknobs_data import DatabaseFactory, Record
from dataknobs_data.fields import VectorField
from dataknobs_data.testing import database_urls

D = 4
N = 300


def _version(i: int, gen: int) -> Record:
    """Record ``i`` at generation ``gen``: the field and every vector component agree."""
    value = float(gen * 1000 + i)
    return Record({"gen": gen, "emb": VectorField(np.full(D, value, np.float32))}, id=f"r{i:04d}")


@pytest.mark.parametrize("url", database_urls("memory://", "faiss://"))
def test_concurrent_writes_never_tear_a_hit_record(url: str) -> None:
    db = DatabaseFactory.create(url)
    db.create_batch([_version(i, 0) for i in range(N)])
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0]

    def writer() -> None:
        rng = np.random.default_rng(1)
        gen = 0
        while not stop.is_set():
            gen += 1
            picked = rng.choice(N, 25, replace=False).tolist()
            db.upsert_batch([_version(i, gen) for i in picked])
            if gen % 7 == 0:  # deletes move the last row into the hole
                victim = f"r{int(rng.integers(N)):04d}"
                db.delete(victim)
                db.upsert(_version(int(victim[1:]), gen))

    def reader(seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not stop.is_set():
            q = rng.normal(size=D).astype(np.float32)
            hits = db.vector_search(q, k=8)
            time.sleep(0)  # let a writer in between the search and the reads
            for hit in hits:
                rec = hit.record
                gen = rec["gen"]
                vec = rec["emb"]
                assert rec.id == hit.id
                assert np.all(vec == float(gen * 1000 + int(hit.id[1:]))), (hit.id, gen, vec)
                reads[0] += 1

    def guarded(fn: object, *args: object) -> threading.Thread:
        def run() -> None:
            try:
                fn(*args)  # type: ignore[operator]
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
                stop.set()

        return threading.Thread(target=run, daemon=True)

    threads = [guarded(writer), guarded(reader, 2), guarded(reader, 3)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive(), "a thread is stuck (deadlock?)"
    db.close()
    if errors:
        raise errors[0]
    assert reads[0] > 100
