"""The synchronisation acceptance run: ``python -m dataknobs_data.vector.benchmarks.sync_bench``.

Measures, per backend (``--backends sqlite,postgres`` by default; PostgreSQL from
``$DATAKNOBS_BENCH_POSTGRES_URL`` or ``$DATAKNOBS_TEST_POSTGRES_URL``), at ``--n`` records:

* **bulk**: ``bulk_sync`` of ``n`` text-only records with the built-in embedder, against the
  same texts embedded alone plus a ``db.load`` of the resulting records into a fresh store
  (ratio: bulk / (embed + load); target <= 1.25);
* **check with marks**: the source text of 1% of the records edited through the database (its
  tracker leaves pending marks) and only non-source fields of another 10%: ``check`` by marks
  must report exactly the 1% (target <= 1 s);
* **full check**: another 1% edited by "another tool" (a database object without the tracker:
  no marks): the full check must find exactly those as stale and embed nothing (target
  >= 50k records/s);
* **exactness**: ``bulk_sync`` then embeds exactly the 2% edited texts (counted), and a second
  run embeds and writes nothing;
* **one-record check**: p50 / p99 of :meth:`VectorTextSynchronizer.check_record` (target < 5 ms)
  (``--single-backends`` lists where; every backend by default, at ``--single-n`` records);
* **kill -9** (``--kills``, default 20, at ``--kill-n`` records, default 50,000):
  :func:`dataknobs_data.testing.sync_kill9.vectorizer_kills`;
* **writers**: a writer editing texts while a vectorizer runs; at the end every vector is
  current and equals the embedding of its record's text.

Prints a table and, with ``--json PATH``, writes every figure. Heavy: run it on a quiet
machine (about 10 minutes for both backends at the defaults).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...factory import DatabaseFactory
from ...fields import VectorField, text_hash
from ...records import Record
from ...testing.embedders import CountingEmbedder
from ..embedders import HashingEmbedder
from ..sync import IncrementalVectorizer, SyncConfig, VectorTextSynchronizer
from ..sync.rules import EmbedderInfo, VectorizingRule
from .measure import RssGrowth

__all__ = ["main", "measure_backend", "url_maker"]

FIELD = "emb"
SOURCES = ("title", "body")
DIMS = 384
BATCH = 1000


def _record(i: int) -> Record:
    return Record(
        {
            "title": f"Record {i}: notes on subject {i % 211}",
            "body": f"Body {i}. It discusses topic {i % 97}, detail {i % 13} and item {i}.",
            "n": i,
            "tag": f"t{i % 7}",
        },
        id=f"r{i:07d}",
    )


def _text(rec: Record) -> str:
    return "\n\n".join(str(rec[s]).strip() for s in SOURCES if rec.get(s))


def url_maker(backend: str, directory: Path) -> Callable[[str], str]:
    """A function from a store name to a fresh URL of ``backend`` (files under ``directory``;
    PostgreSQL collections suffixed with this run's id, so runs never collide)."""
    if backend == "sqlite":
        return lambda name: f"sqlite:///{directory}/{name}.db"
    if backend == "postgres":
        from .postgres_bench import postgres_url

        base = postgres_url()
        joiner = "&" if "?" in base else "?"
        run = uuid.uuid4().hex[:8]
        return lambda name: f"{base}{joiner}collection=sync_{name}_{run}"
    if backend == "memory":
        return lambda name: "memory://"
    if backend in ("faiss", "chroma"):
        return lambda name: f"{backend}:///{directory}/{name}"
    raise SystemExit(f"unknown backend {backend!r}")


def _rule(embedder: Any, mode: str) -> VectorizingRule:
    return VectorizingRule(FIELD, SOURCES, EmbedderInfo.of(embedder, f"hashing:{DIMS}"), mode)  # type: ignore[arg-type]


def _chunks(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


def measure_bulk(url_for: Callable[[str], str], n: int) -> dict[str, Any]:
    """bulk_sync against (embed alone + load of the results), one run each."""
    out: dict[str, Any] = {}
    # the baseline: the same texts embedded alone, then a plain load of finished records
    records = [_record(i) for i in range(n)]
    texts = [_text(r) for r in records]
    emb = HashingEmbedder(DIMS)
    t = time.perf_counter()
    vectors = np.concatenate([emb.embed(texts[c.start : c.stop]) for c in _chunks(n, BATCH)])
    out["embed_s"] = time.perf_counter() - t
    finished = [
        Record(
            {
                **r.to_plain(),
                FIELD: VectorField(
                    vectors[i],
                    source_field="+".join(SOURCES),
                    model_name=emb.model_name,
                    model_version=emb.model_version,
                    source_hash=text_hash(texts[i]),
                ),
            },
            id=r.id,
        )
        for i, r in enumerate(records)
    ]
    with DatabaseFactory.create(url_for("baseline")) as db:
        t = time.perf_counter()
        db.load(finished, batch_size=BATCH)
        out["load_s"] = time.perf_counter() - t
    del finished, vectors
    # bulk_sync of the same records, stored with text only
    db = DatabaseFactory.create(url_for("bulk"))
    db.load(records, batch_size=BATCH)
    sync = VectorTextSynchronizer(db, HashingEmbedder(DIMS), SyncConfig(batch_size=BATCH))
    sync.set_rule(_rule(sync.embedder, "manual"), check=False)
    with RssGrowth() as rss:
        t = time.perf_counter()
        result = sync.bulk_sync()
        out["bulk_s"] = time.perf_counter() - t
    out["bulk_rss_growth_mb"] = rss.growth / 2**20
    out["bulk_embedded"] = result.embedded
    out["ratio"] = out["bulk_s"] / (out["embed_s"] + out["load_s"])
    db.close()
    return out


def measure_checks(url_for: Callable[[str], str], n: int) -> dict[str, Any]:
    """Marks check, full check, exact re-embedding, on one store."""
    out: dict[str, Any] = {}
    rng = random.Random(7)
    db = DatabaseFactory.create(url_for("checks"))
    counting = CountingEmbedder(DIMS)
    sync = VectorTextSynchronizer(db, counting, SyncConfig(batch_size=BATCH))
    sync.set_rule(_rule(counting, "deferred"), check=False)
    db.load((_record(i) for i in range(n)), batch_size=BATCH)
    sync.bulk_sync()
    ids = list(range(n))
    rng.shuffle(ids)
    one, ten, other = ids[: n // 100], ids[n // 100 : n // 100 + n // 10], ids[-(n // 100) :]
    for part in _chunks(len(one), BATCH):  # source edits through the tracker: marks
        recs = db.read_batch([f"r{one[i]:07d}" for i in part])
        for r in recs:
            assert r is not None
            r["body"] = r["body"] + " Edited."
        db.update_batch([r for r in recs if r is not None])
    for part in _chunks(len(ten), BATCH):  # non-source edits
        recs = db.read_batch([f"r{ten[i]:07d}" for i in part])
        for r in recs:
            assert r is not None
            r["tag"] = "edited"
        db.update_batch([r for r in recs if r is not None])
    counting.reset()
    t = time.perf_counter()
    marks = sync.check(method="marks").fields[FIELD]
    out["marks_check_s"] = time.perf_counter() - t
    out["marks_pending"] = marks.pending
    out["marks_exact"] = marks.pending == len(one) and marks.failed == 0
    # another tool edits 1% more: no tracker, so no marks
    with DatabaseFactory.create(db.url or "") as plain:
        plain.set_tracker(None)
        for part in _chunks(len(other), BATCH):
            recs = plain.read_batch([f"r{other[i]:07d}" for i in part])
            for r in recs:
                assert r is not None
                r["title"] = r["title"] + " (retitled)"
            plain.update_batch([r for r in recs if r is not None])
    t = time.perf_counter()
    full = sync.check().fields[FIELD]
    out["full_check_s"] = time.perf_counter() - t
    out["full_check_rate"] = n / out["full_check_s"]
    out["full_pending"], out["full_stale"] = full.pending, full.stale
    out["full_exact"] = (full.pending, full.stale, full.current) == (
        len(one),
        len(other),
        n - len(one) - len(other),
    )
    out["check_embedder_calls"] = counting.calls
    t = time.perf_counter()
    first = sync.bulk_sync()
    out["resync_s"] = time.perf_counter() - t
    out["resync_embedded"] = first.embedded
    out["resync_exact"] = counting.texts == len(one) + len(other) and sorted(
        counting.seen
    ) == sorted(
        {_text(r) for r in db.read_batch([f"r{i:07d}" for i in one + other]) if r is not None}
    )
    counting.reset()
    second = sync.bulk_sync()
    out["second_run_embedded"], out["second_run_written"] = second.embedded, second.written
    out["second_run_calls"] = counting.calls
    db.close()
    return out


def measure_single(url_for: Callable[[str], str], n: int, probes: int = 1000) -> dict[str, Any]:
    """p50 / p99 of checking one record."""
    db = DatabaseFactory.create(url_for("single"))
    emb = HashingEmbedder(DIMS)
    sync = VectorTextSynchronizer(db, emb, SyncConfig(batch_size=BATCH))
    sync.set_rule(_rule(emb, "on_write"), check=False)
    db.load((_record(i) for i in range(n)), batch_size=BATCH)
    rng = random.Random(3)
    times = []
    for _ in range(probes):
        rid = f"r{rng.randrange(n):07d}"
        t = time.perf_counter()
        state = sync.check_record(rid)
        times.append(time.perf_counter() - t)
        assert state == {FIELD: "current"}, state
    db.close()
    times.sort()
    return {
        "single_p50_ms": statistics.median(times) * 1000,
        "single_p99_ms": times[int(len(times) * 0.99) - 1] * 1000,
    }


def measure_writers(url_for: Callable[[str], str], n: int, seconds: float = 5.0) -> dict[str, Any]:
    """A writer edits texts while a background vectorizer runs; then every vector matches."""
    url = url_for("writers")
    emb = HashingEmbedder(16)
    with DatabaseFactory.create(url) as db:
        sync = VectorTextSynchronizer(db, emb)
        info = EmbedderInfo.of(emb, "hashing:16")
        sync.set_rule(VectorizingRule(FIELD, SOURCES, info, "deferred"), check=False)
        db.load((_record(i) for i in range(n)), batch_size=BATCH)
    writer_db = DatabaseFactory.create(url)
    edits = 0
    stop = threading.Event()

    def write() -> None:
        nonlocal edits
        rng = random.Random(11)
        while not stop.is_set():
            ids = [f"r{rng.randrange(n):07d}" for _ in range(20)]
            recs = [r for r in writer_db.read_batch(list(dict.fromkeys(ids))) if r is not None]
            for r in recs:
                r["body"] = f"Edit {edits} of {r.id}: {rng.random()}"
            writer_db.update_batch(recs)
            edits += len(recs)

    vec_db = DatabaseFactory.create(url)
    vectorizer = IncrementalVectorizer(vec_db, emb, SyncConfig(batch_size=200), poll_interval=0.05)
    thread = threading.Thread(target=write)
    vectorizer.start()
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join()
    writer_db.close()
    vectorizer.stop()
    vectorizer.run_once()
    mismatched = 0
    everything = list(vec_db.stream(batch_size=BATCH))
    for start in range(0, len(everything), BATCH):
        page = everything[start : start + BATCH]
        texts = [_text(r) for r in page]
        expected = emb.embed(texts)
        for r, text, want in zip(page, texts, expected, strict=True):
            vf = r.fields.get(FIELD)
            if not (
                isinstance(vf, VectorField)
                and vf.source_hash == text_hash(text)
                and np.array_equal(vf.value, want)
            ):
                mismatched += 1
    vec_db.close()
    return {"writer_edits": edits, "writer_mismatched": mismatched}


def measure_kills(url_for: Callable[[str], str], n: int, kills: int) -> dict[str, Any]:
    from ...testing.sync_kill9 import prepare, vectorizer_kills

    url = url_for("kill9")
    prepare(url, n)
    with tempfile.TemporaryDirectory() as tmp:
        log = str(Path(tmp) / "calls.log")
        report = vectorizer_kills(url, log, n=n, kills=kills, batch=100, max_delay=0.5)
    return {
        "kill_records": n,
        "kills": report.kills,
        "kill_texts": report.texts,
        "kill_extra_batches": report.extra_batches,
        "kill_seconds": report.seconds,
    }


def measure_backend(backend: str, args: argparse.Namespace, directory: Path) -> dict[str, Any]:
    url_for = url_maker(backend, directory)
    out: dict[str, Any] = {"backend": backend, "n": args.n}
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("bulk", lambda: measure_bulk(url_for, args.n)),
        ("checks", lambda: measure_checks(url_for, args.n)),
        ("writers", lambda: measure_writers(url_for, args.writer_n)),
        ("kill9", lambda: measure_kills(url_for, args.kill_n, args.kills)),
    ]
    for name, step in steps:
        if name in args.skip:
            continue
        print(f"[{backend}] {name} ...", file=sys.stderr, flush=True)
        out.update(step())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dataknobs_data.vector.benchmarks.sync_bench")
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument("--single-backends", default="memory,sqlite,postgres,faiss,chroma")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--single-n", type=int, default=10_000)
    p.add_argument("--kill-n", type=int, default=50_000)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--writer-n", type=int, default=20_000)
    p.add_argument("--skip", default="", help="comma list of bulk,checks,writers,kill9,single")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    args.skip = {s for s in args.skip.split(",") if s}
    results: dict[str, Any] = {"backends": {}, "single": {}}
    with tempfile.TemporaryDirectory(prefix="dk-sync-bench-") as tmp:
        for backend in [b for b in args.backends.split(",") if b]:
            results["backends"][backend] = measure_backend(backend, args, Path(tmp))
            print(json.dumps(results["backends"][backend], indent=1), flush=True)
        if "single" not in args.skip:
            for backend in [b for b in args.single_backends.split(",") if b]:
                print(f"[{backend}] single ...", file=sys.stderr, flush=True)
                single = measure_single(url_maker(backend, Path(tmp)), args.single_n)
                results["single"][backend] = single
                print(backend, json.dumps(single), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
