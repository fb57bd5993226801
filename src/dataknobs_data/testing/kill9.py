"""kill -9 at random points: a writer process is SIGKILLed mid-stream, the next one checks.

:func:`kill9_rounds` runs this module as a writer process against a store (a database URL, or
a VectorStore ``faiss``/``chroma`` directory): it writes batches in a loop (a ``create_batch``
of new records, and every third batch an ``upsert_batch`` rewriting the previous batch whole)
and prints ``ok <batch> <op>`` after each write returns (``flush``: then the write is
confirmed). The parent SIGKILLs it after a random delay, at whatever instruction it is in, and
starts the next round's process, which first reopens the store and reports what it finds
before writing on. Checked every round:

* every confirmed batch is there, whole, in its latest confirmed version (an upsert that
  returned is there for every record of its batch);
* no batch is half-present and no upsert half-applied (a write cut short is all there or
  none of it);
* the store opens and takes writes (the next round writes on).

A third-party backend runs it with its URL (see ``tests/test_kill9.py``). The number of rounds
comes from ``DATAKNOBS_KILL9_ROUNDS`` (default :data:`DEFAULT_ROUNDS`).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from .processes import child_env

__all__ = ["DEFAULT_ROUNDS", "KILL9_ROUNDS_ENV", "Kill9Report", "kill9_rounds", "rounds"]

KILL9_ROUNDS_ENV = "DATAKNOBS_KILL9_ROUNDS"
DEFAULT_ROUNDS = 2
BATCH = 25  #: records per batch
DIM = 4


def rounds() -> int:
    raw = os.environ.get(KILL9_ROUNDS_ENV, "")
    return max(1, int(raw)) if raw.strip() else DEFAULT_ROUNDS


@dataclass
class Kill9Report:
    """What the rounds saw: writes confirmed, batches found on each reopen, kills mid-write."""

    confirmed: int = 0
    rounds: int = 0
    found: list[int] = field(default_factory=list)


# -- the writer process ----------------------------------------------------------------------
def _ids(batch: int) -> list[str]:
    return [f"b{batch:05d}-{i:02d}" for i in range(BATCH)]


def _vectors(batch: int, version: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(batch * 10 + version)
    return rng.normal(size=(BATCH, DIM)).astype(np.float32)


class _Target:
    """The store behind one uniform write/scan interface (database URL or VectorStore)."""

    def __init__(self, target: str) -> None:
        self.kind, _, where = target.partition(":")
        self.store: Any
        if self.kind == "db":
            from ..factory import DatabaseFactory

            self.store = DatabaseFactory.create(where)
        else:
            from ..vector.stores import VectorStoreFactory

            engine, _, path = where.partition(":")
            self.engine = engine
            try:
                self.store = VectorStoreFactory.load(engine, path)
            except Exception:  # nothing persisted here yet: a new store
                self.store = VectorStoreFactory.create(engine, dimensions=DIM, path=path)

    def write(self, batch: int, version: int, create: bool) -> None:
        from ..records import Record

        vecs = _vectors(batch, version)
        ids = _ids(batch)
        if self.kind == "db":
            from ..fields import VectorField

            records = [
                Record({"batch": batch, "v": version, "emb": VectorField(vecs[i])}, id=rid)
                for i, rid in enumerate(ids)
            ]
            if create:
                self.store.create_batch(records)
            else:
                self.store.upsert_batch(records)
            return
        metas = [{"batch": batch, "v": version} for _ in ids]
        if create:
            self.store.add(ids, vecs, metas)
        else:
            self.store.upsert(ids, vecs, metas)
        if self.engine == "faiss":
            self.store.persist()  # a faiss store is durable at persist()

    def scan(self, top: int) -> dict[str, Any]:
        """id -> version of every record of batches ``0..top``, and whether the vectors agree."""
        out: dict[str, int] = {}
        wanted = [rid for b in range(top + 1) for rid in _ids(b)]
        if self.kind == "db":
            got = self.store.read_batch(wanted)
            for rec in got:
                if rec is not None:
                    out[rec.id] = int(rec["v"])
                    assert list(rec["emb"]) == list(
                        _vectors(int(rec["batch"]), int(rec["v"]))[int(rec.id[-2:])]
                    ), f"{rec.id}: vector of another version"
        else:
            for rec in self.store.get(wanted):
                if rec is not None:
                    out[rec.id] = int(rec.metadata["v"])
                    meta = rec.metadata
                    expected = _vectors(int(meta["batch"]), int(meta["v"]))[int(rec.id[-2:])]
                    assert rec.vector.tolist() == expected.tolist(), f"{rec.id}: other vector"
        return out


def _writer(target: str, start: int, seed: int) -> None:
    store = _Target(target)
    found = store.scan(start + 2)
    print("found " + json.dumps(found), flush=True)
    rng = random.Random(seed)
    batch = start
    while True:
        batch += 1
        store.write(batch, 1, create=True)
        print(f"ok {batch} 1", flush=True)
        if batch % 3 == 0:
            store.write(batch - 1, 2, create=False)
            print(f"ok {batch - 1} 2", flush=True)
        time.sleep(rng.random() * 0.002)


# -- the parent --------------------------------------------------------------------------------
def _check(found: dict[str, int], versions: dict[int, int], top: int) -> list[int]:
    """Every confirmed batch whole at (at least) its confirmed version; no batch in part.
    Returns the batches present."""
    present = []
    for b in range(1, top + 1):
        ids = _ids(b)
        have = {found[rid] for rid in ids if rid in found}
        count = sum(rid in found for rid in ids)
        assert count in (0, len(ids)), f"batch {b}: {count} of {len(ids)} records"
        assert len(have) <= 1, f"batch {b}: versions {sorted(have)} mixed (half an upsert)"
        if b in versions:
            assert count == len(ids), f"confirmed batch {b} is missing"
            assert have.pop() >= versions[b], f"batch {b}: a confirmed upsert is lost"
        if count:
            present.append(b)
    return present


def kill9_rounds(target: str, n_rounds: int | None = None, seed: int = 0) -> Kill9Report:
    """Run the rounds against ``target`` (``db:<url>`` or ``store:<engine>:<path>``); raises
    AssertionError naming what was lost or half-written."""
    rng = random.Random(seed)
    versions: dict[int, int] = {}  # batch -> highest confirmed version
    top = 0  # highest batch number a writer may have started
    report = Kill9Report()
    total = rounds() if n_rounds is None else n_rounds
    for r in range(total + 1):
        proc = subprocess.Popen(
            [sys.executable, "-m", __name__, target, str(top), str(rng.randrange(2**31))],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),  # the child imports this copy of the package, as the parent did
        )
        assert proc.stdout is not None
        head = proc.stdout.readline()
        if not head.startswith("found "):
            proc.kill()
            raise AssertionError(f"round {r}: the store did not reopen: {proc.communicate()[1]}")
        found = json.loads(head[len("found ") :])
        report.found.append(len(_check(found, versions, top + 2)) if found else 0)
        if r == total:  # the last process only checks
            proc.kill()
            proc.wait()
            break
        first = proc.stdout.readline()  # one write confirmed: the store is writable
        assert first.startswith("ok "), f"round {r}: no write went through: {first!r}"
        lines = [first]
        time.sleep(rng.uniform(0.0, 0.4))
        proc.kill()  # SIGKILL, wherever the writer is
        out, _err = proc.communicate()
        lines += out.splitlines()
        for line in lines:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "ok":
                b, v = int(parts[1]), int(parts[2])
                versions[b] = max(versions.get(b, 0), v)
                report.confirmed += 1
                top = max(top, b)
        top += 1  # the batch in flight when killed, if any
        report.rounds += 1
    return report


if __name__ == "__main__":
    _writer(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
