"""The model-upgrade acceptance run: ``python -m dataknobs_data.vector.benchmarks.model_upgrade``.

"Model upgrade of N records: a concurrent reader's searches never fail or mix spaces during the
re-embedding and the switch; rollback restores the old answers." Per backend URL it:

1. loads ``--records`` text records, gives them vectors from the old embedder
   (``add_vectors_to_existing``) and takes the reference answers of ``--queries`` text queries
   on the old field;
2. starts a reader (a second process with ``--reader process``, the default; a thread with
   ``--reader thread``) that opens the store itself and loops
   :meth:`~dataknobs_data.vector.sync.VectorTextSynchronizer.search_text` (no ``field=``: it
   follows the stored default) holding both embedders, logging every answer with the field
   that served it and its start and end times;
3. runs ``upgrade_model`` to the new embedder, takes the new field's reference answers,
   ``switch``-es, lets the reader search, ``rollback_upgrade``-s, and stops the reader;
4. checks every answer: ``failures`` (the search raised), ``mixed`` (its ids differ from the
   reference of the field that served it), ``misrouted`` (served from a field that was not
   the default at any moment of the search; so before the switch every answer came from the
   old field), and that the answers after the rollback equal the old references.

The test suite runs the same code at a few hundred records (``tests/test_migrate_upgrade.py``;
``DATAKNOBS_UPGRADE_RECORDS`` raises it). The reader child is
``python -m dataknobs_data.vector.benchmarks.model_upgrade --read URL ...`` (internal).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ...errors import DataknobsDataError
from ...records import Record
from ..embedders import get_embedder

__all__ = [
    "Answer",
    "Switch",
    "Verdict",
    "check_answers",
    "corpus",
    "query_texts",
    "read_loop",
    "run_upgrade",
]

_MODULE = "dataknobs_data.vector.benchmarks.model_upgrade"
OLD_SPEC = "hashing:64"
NEW_SPEC = "hashing:96"
_WORDS = [
    f"{a}{b}"
    for a in ("ka", "lo", "mi", "nu", "pe", "ra", "si", "tu", "ve", "zo", "ba", "de")
    for b in ("rin", "tol", "mak", "sen", "dor", "pil", "gus", "fen", "lan", "quo")
]


def corpus(n: int, seed: int = 7) -> Iterator[Record]:
    """``n`` records with a title and a body of pseudo-words (deterministic)."""
    rng = random.Random(seed)
    for i in range(n):
        title = " ".join(rng.choices(_WORDS, k=3))
        body = " ".join(rng.choices(_WORDS, k=12))
        yield Record({"title": title, "body": body, "n": i}, id=f"r{i:07d}")


def query_texts(n: int, seed: int = 11) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(_WORDS, k=3)) for _ in range(n)]


@dataclass(slots=True)
class Answer:
    """One search of the reader: when it ran, which field served it, which ids it returned."""

    started: float
    ended: float
    query: int
    field: str | None
    ids: tuple[str, ...]
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Switch:
    """A change of the default field: called at ``before``, returned at ``after``."""

    before: float
    after: float
    field: str


@dataclass(slots=True)
class Verdict:
    served: int = 0
    failures: int = 0
    mixed: int = 0
    misrouted: int = 0
    by_field: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.served > 0 and not (self.failures or self.mixed or self.misrouted)


def read_loop(
    url: str,
    old_spec: str,
    new_spec: str,
    texts: Sequence[str],
    k: int,
    stop: Callable[[], bool],
    emit: Callable[[Answer], None],
    database: Any = None,
) -> None:
    """Search by text until ``stop()``: opens ``url`` (or uses ``database``), holds both
    embedders, and never names a field (it follows the stored default)."""
    from ...factory import DatabaseFactory
    from ..sync.synchronizer import VectorTextSynchronizer

    db = database if database is not None else DatabaseFactory.create(url)
    try:
        old, new = get_embedder(old_spec), get_embedder(new_spec)
        sync = VectorTextSynchronizer(db, None, embedders=[old, new])
        i = 0
        while not stop():
            q = i % len(texts)
            started = time.monotonic()
            try:
                hits = sync.search_text(texts[q], k=k)
                emit(Answer(started, time.monotonic(), q, hits.field, tuple(h.id for h in hits)))
            except Exception as exc:  # a failure is what this run counts
                emit(Answer(started, time.monotonic(), q, None, (), f"{type(exc).__name__}: {exc}"))
            i += 1
    finally:
        if database is None:
            db.close()


def _defaults_during(start: float, end: float, first: str, switches: Sequence[Switch]) -> set[str]:
    """The fields that were (or may have been, while a switch ran) the default in [start, end]."""
    allowed: set[str] = set()
    current = first
    for s in switches:
        if s.before > end:
            break
        if s.after < start:
            current = s.field
            continue
        allowed.add(current)  # the switch overlaps the search: either side
        current = s.field
        allowed.add(current)
    allowed.add(current)
    return allowed


def check_answers(
    answers: Sequence[Answer],
    references: dict[str, list[tuple[str, ...]]],
    first: str,
    switches: Sequence[Switch],
) -> Verdict:
    """Sort every answer into served / failure / mixed / misrouted (see the module docstring)."""
    v = Verdict()
    for a in answers:
        v.served += 1
        if a.error is not None or a.field is None:
            v.failures += 1
            if len(v.samples) < 5:
                v.samples.append(f"failure: {a.error}")
            continue
        v.by_field[a.field] = v.by_field.get(a.field, 0) + 1
        ref = references.get(a.field)
        if ref is None or ref[a.query] != a.ids:
            v.mixed += 1
            if len(v.samples) < 5:
                v.samples.append(f"mixed: query {a.query} from {a.field}: {a.ids[:3]}")
        if a.field not in _defaults_during(a.started, a.ended, first, switches):
            v.misrouted += 1
            if len(v.samples) < 5:
                v.samples.append(f"misrouted: query {a.query} from {a.field} at {a.started}")
    return v


class _Reader:
    """The reader, as a thread of this process or a child process logging JSON lines."""

    def __init__(self, url: str, texts: list[str], k: int, mode: str, database: Any) -> None:
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self.mode = mode
        if mode == "thread":
            self._thread = threading.Thread(
                target=read_loop,
                args=(url, OLD_SPEC, NEW_SPEC, texts, k, self._stop.is_set, self.answers.append),
                kwargs={"database": database},
                daemon=True,
            )
            self._thread.start()
            return
        self._dir = tempfile.mkdtemp(prefix="dk-upgrade-reader-")
        self._out = os.path.join(self._dir, "answers.jsonl")
        self._flag = os.path.join(self._dir, "stop")
        from ...testing.processes import child_env

        self._proc = subprocess.Popen(
            [sys.executable, "-m", _MODULE, "--read", url, "--out", self._out,
             "--stop-file", self._flag, "--queries", str(len(texts)), "--k", str(k)],
            env=child_env(),
        )  # fmt: skip

    def count(self) -> int:
        if self.mode == "thread":
            return len(self.answers)
        try:
            with open(self._out, "rb") as fh:
                return sum(1 for _ in fh)
        except FileNotFoundError:
            return 0

    def wait_for(self, more: int, timeout: float = 120.0) -> None:
        """Until the reader has answered ``more`` more searches (it must keep going)."""
        target = self.count() + more
        deadline = time.monotonic() + timeout
        while self.count() < target:
            if self.mode == "process" and self._proc.poll() is not None:
                raise RuntimeError(f"the reader process exited with {self._proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the reader answered fewer than {more} searches in {timeout}s")
            time.sleep(0.01)

    def stop(self) -> list[Answer]:
        self._stop.set()
        if self.mode == "thread":
            self._thread.join()
            return self.answers
        Path(self._flag).touch()
        self._proc.wait(timeout=120)
        with open(self._out, encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        return [Answer(**{**r, "ids": tuple(r["ids"])}) for r in rows]


def _reference(
    db: Any, field: str, spec: str, texts: Sequence[str], k: int
) -> list[tuple[str, ...]]:
    from ..sync.synchronizer import VectorTextSynchronizer

    sync = VectorTextSynchronizer(db, None, embedders=[get_embedder(spec)])
    return [tuple(h.id for h in sync.search_text(t, k=k, field=field)) for t in texts]


def run_upgrade(
    url: str,
    records: int,
    *,
    reader: str = "process",
    queries: int = 20,
    k: int = 10,
    batch_size: int = 500,
    database: Any = None,
    share: bool = False,
    wait: int = 20,
    drop: bool = False,
) -> dict[str, Any]:
    """The acceptance run on one store (see the module docstring); returns its figures.

    ``database``: an open, empty store on ``url`` to use (and leave open) instead of opening
    ``url``; ``share=True`` makes a thread reader search through that same object (for the
    backends one process holds alone) instead of opening ``url`` itself. ``drop=True``
    opens ``url`` as a temporary collection (PostgreSQL, chroma), dropped at the end."""
    from ...factory import DatabaseFactory
    from ..migrate.migration import VectorMigration

    options = {"temporary": True} if drop else {}
    db = database if database is not None else DatabaseFactory.create(url, **options)
    texts = query_texts(queries)
    migration = VectorMigration()
    figures: dict[str, Any] = {"url": url.split("?")[0], "records": records, "reader": reader}
    try:
        started = time.perf_counter()
        batch: list[Record] = []
        for rec in corpus(records):
            batch.append(rec)
            if len(batch) == 5000:
                db.create_batch(batch)
                batch = []
        if batch:
            db.create_batch(batch)
        migration.add_vectors_to_existing(
            db, "title,body", "emb", get_embedder(OLD_SPEC), batch_size=batch_size
        )
        figures["load_seconds"] = round(time.perf_counter() - started, 2)
        refs = {"emb": _reference(db, "emb", OLD_SPEC, texts, k)}
        r = _Reader(url, texts, k, reader, db if share and reader == "thread" else None)
        switches: list[Switch] = []
        try:
            r.wait_for(wait)
            t0, m0 = time.perf_counter(), time.monotonic()
            done = migration.upgrade_model(
                db, "emb", "emb2", get_embedder(NEW_SPEC), batch_size=batch_size
            )
            figures["upgrade_seconds"] = round(time.perf_counter() - t0, 2)
            upgrading = (m0, time.monotonic())
            figures["embedded"] = done.embedded
            refs["emb2"] = _reference(db, "emb2", NEW_SPEC, texts, k)
            r.wait_for(wait)
            before = time.monotonic()
            migration.switch(db, "emb2")
            switches.append(Switch(before, time.monotonic(), "emb2"))
            r.wait_for(wait)
            before = time.monotonic()
            migration.rollback_upgrade(db)
            switches.append(Switch(before, time.monotonic(), "emb"))
            r.wait_for(wait)
        finally:
            answers = r.stop()
        verdict = check_answers(answers, refs, "emb", switches)
        after = [a for a in answers if a.started > switches[-1].after] if switches else []
        restored = bool(after) and all(
            a.field == "emb" and a.ids == refs["emb"][a.query] for a in after
        )
        figures.update(
            served=verdict.served,
            served_during_upgrade=sum(
                1 for a in answers if a.ended >= upgrading[0] and a.started <= upgrading[1]
            ),
            failures=verdict.failures,
            mixed=verdict.mixed,
            misrouted=verdict.misrouted,
            by_field=verdict.by_field,
            rollback_restores=restored,
            samples=verdict.samples,
            seconds=round(time.perf_counter() - started, 2),
            ok=verdict.ok and restored,
        )
        return figures
    finally:
        if database is None:
            db.close()


def _child(args: argparse.Namespace) -> int:
    texts = query_texts(args.queries)
    with open(args.out, "a", encoding="utf-8", buffering=1) as out:

        def emit(a: Answer) -> None:
            out.write(json.dumps({**asdict(a), "ids": list(a.ids)}) + "\n")

        try:
            read_loop(
                args.read, OLD_SPEC, NEW_SPEC, texts, args.k,
                lambda: os.path.exists(args.stop_file), emit,
            )  # fmt: skip
        except DataknobsDataError as exc:  # opening failed: one failure line says why
            emit(Answer(time.monotonic(), time.monotonic(), 0, None, (), repr(exc)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--urls", default="", help="comma-separated store URLs (fresh, empty)")
    p.add_argument("--records", type=int, default=50_000)
    p.add_argument("--queries", type=int, default=20)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--reader", choices=("process", "thread"), default="process")
    p.add_argument("--wait", type=int, default=50, help="reader searches per phase, at least")
    p.add_argument("--drop", action="store_true", help="drop the collection at the end")
    p.add_argument("--json", help="write the figures to this file")
    p.add_argument("--read", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--stop-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.read:
        return _child(args)
    results = []
    for url in [u for u in args.urls.split(",") if u]:
        fig = run_upgrade(
            url, args.records, reader=args.reader, queries=args.queries, k=args.k,
            batch_size=args.batch_size, wait=args.wait, drop=args.drop,
        )  # fmt: skip
        print(json.dumps(fig))
        results.append(fig)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if results and all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
