"""The migration acceptance run: ``python -m dataknobs_data.vector.benchmarks.migrate_bench``.

For each ``--pairs`` entry (``sqlite:postgres,postgres:faiss`` by default; PostgreSQL from
``$DATAKNOBS_BENCH_POSTGRES_URL`` or ``$DATAKNOBS_TEST_POSTGRES_URL``), at ``--n`` records of
``--dims`` float32 dimensions with provenance, measured in one run:

* **source stream**: ``db.stream`` of every record of the source (records/s);
* **target load**: ``db.load`` of those same records, held in memory, into a fresh target
  (records/s);
* **migration**: :meth:`VectorMigration.migrate_between_backends` into another fresh target,
  in a child process of its own (first, so nothing the other measurements freed hides its
  memory), with its peak resident-memory growth; the ratio to ``min(stream, load)`` has the
  target ``>= 0.7`` and the memory growth ``<= 300 MB``; the copy phase alone (without the
  catch-up pass, which reads both stores once more) is reported beside it;
* **target's own memory**: the resident growth of ``load(stream())`` into a fresh target in a
  child process: an in-memory engine (faiss) keeps every vector and its index resident, which
  is the target's data, not the migration's; the difference is the migration's overhead;
* **verify**: :meth:`VectorMigration.verify_migration` of the result (must pass), timed;
* **kill -9** (``--kills``, default 10, at ``--kill-n`` records, first pair only):
  :func:`dataknobs_data.testing.migrate_kill9.migration_kills` - verify passes, no duplicates,
  at most one batch re-sent per kill.

Prints a table and, with ``--json PATH``, writes every figure. Heavy: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from ...factory import DatabaseFactory
from ...query import Query
from ...testing.migrate_kill9 import migration_kills, prepare_source
from ..migrate import VectorMigration
from .measure import RssGrowth, machine_info
from .sync_bench import url_maker

__all__ = ["main", "measure_pair"]

#: the issue's targets
MIN_RATIO = 0.7
MAX_RSS_MB = 300.0


def _migrate_in_child(src_url: str, tgt_url: str, batch: int) -> dict[str, Any]:
    """The migration, timed, with its resident-memory growth, in a fresh process (run by
    :func:`_in_child`): nothing freed earlier in the benchmark (the records the load held)
    can be reused by it or hide its growth."""
    out: dict[str, Any] = {}
    with DatabaseFactory.create(src_url) as src, DatabaseFactory.create(tgt_url) as tgt:
        with RssGrowth() as rss:
            t = time.perf_counter()
            result = VectorMigration().migrate_between_backends(src, tgt, batch_size=batch)
            out["migrate_s"] = time.perf_counter() - t
        out["migrate_rss_growth_mb"] = rss.mb
        out["migrated"] = result.to_dict()
    return out


def _streamed_load_in_child(src_url: str, tgt_url: str, batch: int) -> dict[str, Any]:
    """``tgt.load(src.stream())`` (records not held) with its resident-memory growth, in a
    fresh process: what the target itself keeps resident (faiss holds every vector and its
    index in memory), the part of the migration's growth that is not the migration's."""
    with (
        DatabaseFactory.create(src_url) as src,
        DatabaseFactory.create(tgt_url) as tgt,
        RssGrowth() as rss,
    ):
        tgt.load(src.stream(Query(), batch_size=batch), batch_size=batch)
    return {"streamed_load_rss_growth_mb": rss.mb}


def _in_child(fn: Any, *args: Any) -> dict[str, Any]:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        result: dict[str, Any] = pool.submit(fn, *args).result()
    return result


def measure_pair(
    source_kind: str, target_kind: str, directory: Path, *, n: int, dims: int, batch: int
) -> dict[str, Any]:
    """Stream rate, load rate, migration rate and memory, and verify, for one pair. The
    migration runs in a child process (:func:`_migrate_in_child`), so its memory growth is its
    own; the target's own resident growth is measured likewise (:func:`_streamed_load_in_child`)
    and the difference is the migration's overhead."""
    src_url = url_maker(source_kind, directory)("source")
    tgt_url = url_maker(target_kind, directory)
    out: dict[str, Any] = {"source": source_kind, "target": target_kind, "n": n, "dims": dims}
    t = time.perf_counter()
    prepare_source(src_url, n, dims)
    out["prepare_s"] = time.perf_counter() - t
    migrated_url = tgt_url("migrated")
    out.update(_in_child(_migrate_in_child, src_url, migrated_url, batch))
    out.update(_in_child(_streamed_load_in_child, src_url, tgt_url("streamed"), batch))
    out["migrate_rss_overhead_mb"] = max(
        0.0, out["migrate_rss_growth_mb"] - out["streamed_load_rss_growth_mb"]
    )
    with DatabaseFactory.create(src_url) as src:
        with DatabaseFactory.create(migrated_url) as tgt:
            t = time.perf_counter()
            verdict = VectorMigration().verify_migration(src, tgt)
            out["verify_s"] = time.perf_counter() - t
            out["verify_ok"] = verdict.ok
            if not verdict.ok:
                out["verify"] = verdict.to_dict()
        t = time.perf_counter()
        records = list(src.stream(Query(), batch_size=batch))
        out["stream_s"] = time.perf_counter() - t
        with DatabaseFactory.create(tgt_url("load")) as tgt:
            t = time.perf_counter()
            tgt.load(records, batch_size=batch)
            out["load_s"] = time.perf_counter() - t
        del records
    out["stream_rps"] = n / out["stream_s"]
    out["load_rps"] = n / out["load_s"]
    out["migrate_rps"] = n / out["migrate_s"]
    floor = min(out["stream_rps"], out["load_rps"])
    out["ratio"] = out["migrate_rps"] / floor
    # the copy phase alone (the catch-up pass reads both stores once more)
    out["copy_rps"] = n / out["migrated"]["copy_seconds"]
    out["copy_ratio"] = out["copy_rps"] / floor
    return out


def measure_kills(
    source_kind: str, target_kind: str, directory: Path, *, n: int, kills: int, batch: int
) -> dict[str, Any]:
    """kill -9 at ``kills`` random points of a migration, then resume and verify."""
    src_url = url_maker(source_kind, directory)("kill_source")
    tgt_url = url_maker(target_kind, directory)("kill_target")
    prepare_source(src_url, n, 16)
    report = migration_kills(
        src_url, tgt_url, str(directory / "kill9.log"), n=n, kills=kills, batch=batch
    )
    return {
        "kill_pair": f"{source_kind}->{target_kind}",
        "kill_records": n,
        "kills": report.kills,
        "kill_batches": report.batches,
        "kill_minimum_batches": report.minimum,
        "kill_extra_batches": report.extra_batches,
        "kill_seconds": report.seconds,
    }


def _table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'pair':<20} {'stream/s':>10} {'load/s':>10} {'migrate/s':>10} {'ratio':>6} "
        f"{'copy/s':>8} {'ratio':>6} {'RSS MB':>7} {'target':>7} {'verify':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        pair = f"{r['source']}->{r['target']}"
        lines.append(
            f"{pair:<20} {r['stream_rps']:>10,.0f} {r['load_rps']:>10,.0f} "
            f"{r['migrate_rps']:>10,.0f} {r['ratio']:>6.2f} {r['copy_rps']:>8,.0f} "
            f"{r['copy_ratio']:>6.2f} {r['migrate_rss_growth_mb']:>7.0f} "
            f"{r['streamed_load_rss_growth_mb']:>7.0f} "
            f"{'ok' if r['verify_ok'] else 'FAILED':>7}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dataknobs_data.vector.benchmarks.migrate_bench")
    p.add_argument("--pairs", default="sqlite:postgres,postgres:faiss")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dims", type=int, default=384)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--kills", type=int, default=10)
    p.add_argument("--kill-n", type=int, default=20_000)
    p.add_argument("--kill-batch", type=int, default=500)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    pairs = [tuple(pair.split(":", 1)) for pair in args.pairs.split(",") if pair]
    results: dict[str, Any] = {"machine": machine_info(), "pairs": []}
    with tempfile.TemporaryDirectory(prefix="dk-migrate-bench-") as tmp:
        for source_kind, target_kind in pairs:
            print(f"[{source_kind}->{target_kind}] ...", file=sys.stderr, flush=True)
            row = measure_pair(
                source_kind, target_kind, Path(tmp), n=args.n, dims=args.dims, batch=args.batch
            )
            results["pairs"].append(row)
            print(
                json.dumps({k: v for k, v in row.items() if k != "migrated"}, default=str),
                flush=True,
            )
        if args.kills and pairs:
            source_kind, target_kind = pairs[0]
            print(f"[{source_kind}->{target_kind}] kill -9 ...", file=sys.stderr, flush=True)
            results["kill9"] = measure_kills(
                source_kind,
                target_kind,
                Path(tmp),
                n=args.kill_n,
                kills=args.kills,
                batch=args.kill_batch,
            )
            print(json.dumps(results["kill9"]), flush=True)
    print(_table(results["pairs"]))
    for r in results["pairs"]:
        verdict = "met" if r["ratio"] >= MIN_RATIO else "NOT met"
        memory = "met" if r["migrate_rss_growth_mb"] <= MAX_RSS_MB else "NOT met"
        overhead = "met" if r["migrate_rss_overhead_mb"] <= MAX_RSS_MB else "NOT met"
        print(
            f"{r['source']}->{r['target']}: ratio {r['ratio']:.2f} (target >= {MIN_RATIO}: "
            f"{verdict}; copy phase alone {r['copy_ratio']:.2f}); RSS growth "
            f"{r['migrate_rss_growth_mb']:.0f} MB (<= {MAX_RSS_MB:.0f}: {memory}), of which the "
            f"target's own data {r['streamed_load_rss_growth_mb']:.0f} MB, the migration's "
            f"overhead {r['migrate_rss_overhead_mb']:.0f} MB ({overhead})"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
