"""``python -m dataknobs_data.vector.benchmarks``: run the benchmark and print the report."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ...redaction import redact_text
from .harness import TARGETS, BenchConfig, register_engines, run
from .report import format_report


def main(argv: list[str] | None = None) -> int:
    register_engines()
    p = argparse.ArgumentParser(prog="python -m dataknobs_data.vector.benchmarks")
    p.add_argument(
        "--n", type=int, default=None, help="base vectors (synthetic: 100000; fashion-mnist: all)"
    )
    p.add_argument("--dim", type=int, default=384)
    p.add_argument(
        "--queries",
        type=int,
        default=None,
        help="timed queries (synthetic 300, fashion-mnist 1000)",
    )
    p.add_argument("--batch", type=int, default=256, help="queries per batched call")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--metric", default="cosine")
    p.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="interleaved rounds, best kept (synthetic 3, fashion-mnist 2)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--targets", default="memory", help=f"comma list of {sorted(TARGETS)}")
    p.add_argument("--out", type=Path, default=Path(".bench/results.json"))
    p.add_argument("--resume", action="store_true", help="skip sections already in --out")
    p.add_argument("--json", action="store_true", help="print the raw JSON instead of tables")
    p.add_argument(
        "--dataset",
        choices=("synthetic", "fashion-mnist"),
        default="synthetic",
        help="synthetic: every section vs the raw engine; fashion-mnist: recall@k vs QPS sweeps "
        "of ANN indexes (--n limits the base set, --queries the query set)",
    )
    args = p.parse_args(argv)
    if args.dataset != "synthetic":
        return _ann(args)
    targets = tuple(t.strip() for t in args.targets.split(",") if t.strip())
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        p.error(f"unknown targets {unknown}; known: {sorted(TARGETS)}")
    cfg = BenchConfig(
        n=args.n or 100_000,
        dim=args.dim,
        queries=args.queries or 300,
        batch=args.batch,
        k=args.k,
        metric=args.metric,
        seed=args.seed,
        rounds=args.rounds or 3,
        targets=targets,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data = run(cfg, out=args.out, resume=args.resume)
    print(json.dumps(data, indent=1) if args.json else format_report(data))
    print(f"results: {args.out}", file=sys.stderr)
    return 0


def _ann(args: argparse.Namespace) -> int:
    from .ann import AnnConfig, format_ann, run_ann

    cfg = AnnConfig(
        dataset=args.dataset,
        n_base=args.n,
        queries=args.queries or 1000,
        k=args.k,
        rounds=args.rounds or 2,
    )
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    out = (
        args.out.with_name(f"ann-{args.dataset}.json")
        if args.out.name == "results.json"
        else args.out
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = run_ann(cfg, targets, out=out, resume=args.resume)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return 2
    print(json.dumps(data, indent=1) if args.json else format_ann(data))
    print(f"results: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
