"""``python -m dataknobs_data.vector.benchmarks``: run the benchmark and print the report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .harness import TARGETS, BenchConfig, run
from .report import format_report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dataknobs_data.vector.benchmarks")
    p.add_argument("--n", type=int, default=100_000, help="base vectors (default 100000)")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--queries", type=int, default=300, help="timed queries per round")
    p.add_argument("--batch", type=int, default=256, help="queries per batched call")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--metric", default="cosine")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best is kept)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--targets", default="memory", help=f"comma list of {sorted(TARGETS)}")
    p.add_argument("--out", type=Path, default=Path(".bench/results.json"))
    p.add_argument("--resume", action="store_true", help="skip sections already in --out")
    p.add_argument("--json", action="store_true", help="print the raw JSON instead of tables")
    args = p.parse_args(argv)
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        p.error(f"unknown targets {unknown}; known: {sorted(TARGETS)}")
    cfg = BenchConfig(
        n=args.n,
        dim=args.dim,
        queries=args.queries,
        batch=args.batch,
        k=args.k,
        metric=args.metric,
        seed=args.seed,
        rounds=args.rounds,
        targets=targets,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data = run(cfg, out=args.out, resume=args.resume)
    print(json.dumps(data, indent=1) if args.json else format_report(data))
    print(f"results: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
