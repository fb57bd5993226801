"""kill -9 of a migration between two backends at random points, then a resume.

:func:`prepare_source` fills a store with ``n`` records, each with a text, a number and a
vector with provenance. :func:`migration_kills` then starts this module as a migration process
(:meth:`VectorMigration.migrate_between_backends`, the same ``name`` every time, so each run
resumes the last one's checkpoint) and SIGKILLs it after a random delay, ``kills`` times, then
lets a last run finish. Every batch a run is about to write is appended to a log file *before*
it is written, so the parent knows how many batches were sent in total, including those a kill
cut short. Checked at the end:

* :meth:`VectorMigration.verify_migration` passes (counts, per-record digests, probe
  searches), and the target holds exactly the source's ids (no duplicate, none missing);
* the batches sent exceed the minimum (one per batch of the source) by at most one per kill.

Used by ``tests/test_migrate_kill9.py`` (a few kills) and by the migration benchmark's
acceptance run (10 kills).
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ..records import Record
from .processes import kill_rounds

__all__ = ["MigrationKillReport", "migration_kills", "prepare_source"]

NAME = "kill9"
FIELD = "emb"


@dataclass
class MigrationKillReport:
    """What the rounds did: kills that landed mid-run, batches sent in total, the minimum."""

    records: int = 0
    kills: int = 0
    batches: int = 0
    minimum: int = 0
    seconds: float = 0.0
    delays: list[float] = field(default_factory=list)

    @property
    def extra_batches(self) -> int:
        return self.batches - self.minimum


def prepare_source(url: str, n: int, dims: int = 16, seed: int = 0) -> None:
    """``n`` records (``k0000000``...) with a title, a number and a unit vector with
    provenance, loaded into the store at ``url``."""
    from ..factory import DatabaseFactory
    from ..fields import VectorField, text_hash

    rng = np.random.default_rng(seed)
    with DatabaseFactory.create(url) as db:

        def records() -> Iterator[Record]:
            for start in range(0, n, 5000):
                block = rng.standard_normal((min(5000, n - start), dims)).astype(np.float32)
                block /= np.linalg.norm(block, axis=1, keepdims=True)
                for j, vec in enumerate(block):
                    i = start + j
                    title = f"Record {i} on subject {i % 97}"
                    yield Record(
                        {
                            "title": title,
                            "n": i,
                            FIELD: VectorField(
                                vec,
                                source_field="title",
                                model_name="kill9-model",
                                model_version="1",
                                source_hash=text_hash(title),
                            ),
                        },
                        id=f"k{i:07d}",
                    )

        db.load(records(), batch_size=5000)


def _migrate(source: str, target: str, log: str, batch: int) -> None:
    from ..factory import DatabaseFactory
    from ..vector.migrate import VectorMigration

    def logged(first_id: str) -> None:
        with open(log, "a") as fh:
            fh.write(f"{first_id}\n")
            fh.flush()

    src = DatabaseFactory.create(source)
    dst = DatabaseFactory.create(target)
    print("started", flush=True)
    VectorMigration().migrate_between_backends(src, dst, batch_size=batch, name=NAME, log=logged)
    print("done", flush=True)
    dst.close()
    src.close()


def migration_kills(
    source: str,
    target: str,
    log: str,
    *,
    n: int,
    kills: int,
    batch: int = 500,
    max_delay: float = 1.0,
    seed: int = 0,
) -> MigrationKillReport:
    """Run the rounds (see the module docstring) from a store :func:`prepare_source` filled
    into ``target``; raises AssertionError naming what is wrong."""
    from ..factory import DatabaseFactory
    from ..query import Query
    from ..vector.migrate import VectorMigration

    rng = random.Random(seed)
    report = MigrationKillReport(records=n, minimum=math.ceil(n / batch))
    started = time.perf_counter()
    command = [sys.executable, "-m", __name__, source, target, log, str(batch)]
    report.kills, report.delays = kill_rounds(
        command, kills=kills, max_delay=max_delay, rng=rng, what="migration"
    )
    with open(log) as fh:
        report.batches = sum(1 for line in fh if line.strip())
    with DatabaseFactory.create(source) as src, DatabaseFactory.create(target) as dst:
        verdict = VectorMigration().verify_migration(src, dst)
        assert verdict.ok, f"verify after the kills: {verdict.to_dict()}"
        ids = [r.id for r in dst.stream(Query(), batch_size=5000)]
    assert len(ids) == len(set(ids)) == n, f"target holds {len(ids)} records for {n}"
    assert report.extra_batches <= report.kills, (
        f"{report.batches} batches sent for {report.minimum}: more than one per kill "
        f"({report.kills})"
    )
    report.seconds = time.perf_counter() - started
    return report


if __name__ == "__main__":
    _migrate(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
