"""kill -9 of the vectorizer at random points during a synchronisation, then a restart.

:func:`prepare` stores a deferred rule and loads ``n`` records with text (each carries a
pending mark). :func:`vectorizer_kills` then starts this module as a vectorizer process
(:class:`~dataknobs_data.vector.sync.IncrementalVectorizer`, worker name fixed so a restart
takes its own claims back) and SIGKILLs it after a random delay, ``kills`` times, then lets a
last one finish. Every embedder call of every process is appended to a log file *before* it
runs, so the parent knows exactly how many texts were embedded in total, including by the
calls a kill cut short. Checked at the end:

* every record's vector is current (model, version and text hash) and no mark is left;
* the texts embedded exceed the minimum (one per distinct text) by at most one batch per
  kill (the batch in flight, whose vectors were never written).

Used by ``tests/test_sync_kill9.py`` (a few kills) and by the acceptance run of the
synchronisation benchmark (20 kills during a 50k-record sync).
"""

from __future__ import annotations

import random
import sys
import time
from dataclasses import dataclass, field

from .embedders import CountingEmbedder
from .processes import kill_rounds

__all__ = ["SyncKillReport", "prepare", "vectorizer_kills"]

FIELD = "emb"
WORKER = "kill9-vectorizer"


@dataclass
class SyncKillReport:
    """What the rounds did: kills that landed mid-run, texts embedded in total, the minimum."""

    records: int = 0
    kills: int = 0
    texts: int = 0
    minimum: int = 0
    batch: int = 0
    seconds: float = 0.0
    delays: list[float] = field(default_factory=list)

    @property
    def extra_batches(self) -> float:
        return (self.texts - self.minimum) / self.batch if self.batch else 0.0


def _text(i: int) -> dict[str, object]:
    return {"title": f"Record {i}", "body": f"text {i} on subject {i % 97} and {i % 13}", "n": i}


def prepare(url: str, n: int, dims: int = 16) -> None:
    """Store a deferred rule (built-in embedder, ``dims``) and ``n`` records with text."""
    from ..factory import DatabaseFactory
    from ..records import Record
    from ..vector.embedders import HashingEmbedder
    from ..vector.sync import VectorTextSynchronizer
    from ..vector.sync.rules import EmbedderInfo, VectorizingRule

    with DatabaseFactory.create(url) as db:
        emb = HashingEmbedder(dims)
        sync = VectorTextSynchronizer(db, emb)
        info = EmbedderInfo.of(emb, f"hashing:{dims}")
        sync.set_rule(VectorizingRule(FIELD, ("title", "body"), info, "deferred"), check=False)
        db.load((Record(_text(i), id=f"k{i:07d}") for i in range(n)), batch_size=5000)


def _vectorize(url: str, log: str, batch: int, dims: int) -> None:
    from ..factory import DatabaseFactory
    from ..vector.sync import IncrementalVectorizer, SyncConfig

    db = DatabaseFactory.create(url)
    vec = IncrementalVectorizer(
        db, CountingEmbedder(dims, log=log), SyncConfig(batch_size=batch, worker=WORKER)
    )
    print("started", flush=True)
    vec.run_once()
    print("done", flush=True)
    db.close()


def vectorizer_kills(
    url: str,
    log: str,
    *,
    n: int,
    kills: int,
    batch: int = 100,
    dims: int = 16,
    max_delay: float = 0.5,
    seed: int = 0,
) -> SyncKillReport:
    """Run the rounds (see the module docstring) on a store :func:`prepare` filled; raises
    AssertionError naming what is wrong."""
    from ..factory import DatabaseFactory
    from ..vector.sync import VectorTextSynchronizer

    rng = random.Random(seed)
    report = SyncKillReport(records=n, minimum=n, batch=batch)
    started = time.perf_counter()
    command = [sys.executable, "-m", __name__, url, log, str(batch), str(dims)]
    report.kills, report.delays = kill_rounds(
        command, kills=kills, max_delay=max_delay, rng=rng, what="vectorizer"
    )
    with open(log) as fh:
        report.texts = sum(int(line) for line in fh if line.strip())
    with DatabaseFactory.create(url) as db:
        check = VectorTextSynchronizer(db).check()
    fr = check.fields[FIELD]
    assert (fr.current, fr.needs_work, fr.failed) == (n, 0, 0), f"after the kills: {fr}"
    assert report.texts - report.minimum <= report.kills * batch, (
        f"{report.texts} texts embedded for {n} records: more than one batch ({batch}) "
        f"per kill ({report.kills}) over the minimum"
    )
    report.seconds = time.perf_counter() - started
    return report


if __name__ == "__main__":
    _vectorize(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
