"""Recall@k vs QPS sweeps of approximate indexes on real data (fashion-mnist-784).

Each engine registers a sweep in :data:`ANN_SWEEPS`. A sweep loads the base set through our API,
builds its ANN index, and then, for each search setting (``ef_search``, ``nprobe``...), times
single-client queries through our API and the same engine driven raw, in alternating rounds,
reporting both recalls against exact float64 ground truth and the QPS ratio. Results are
checkpointed per target (``--resume`` skips finished ones).

``python -m dataknobs_data.vector.benchmarks --dataset fashion-mnist --targets postgres,faiss``
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .harness import Checkpoint, compare_sides, register_engines
from .measure import Timer, machine_info
from .raw import recall_at_k
from .realdata import RealDataset, exact_neighbours, load_fashion_mnist

__all__ = ["ANN_SWEEPS", "AnnConfig", "AnnSweep", "SweepPoint", "format_ann", "run_ann"]


@dataclass(frozen=True, slots=True)
class AnnConfig:
    """What to sweep; also the key deciding whether a checkpoint can be resumed."""

    dataset: str = "fashion-mnist"
    n_base: int | None = None  # None: the whole base set (60,000)
    queries: int = 1000
    k: int = 10
    rounds: int = 2

    def key(self) -> dict[str, Any]:
        key: dict[str, Any] = json.loads(json.dumps({s: getattr(self, s) for s in self.__slots__}))
        return key


@dataclass(frozen=True, slots=True)
class SweepPoint:
    """One search setting: our API and the raw engine at that setting."""

    setting: str
    recall: float
    qps: float
    raw_recall: float
    raw_qps: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "setting": self.setting,
            "recall": self.recall,
            "qps": self.qps,
            "raw_recall": self.raw_recall,
            "raw_qps": self.raw_qps,
            "ratio_qps": self.qps / self.raw_qps,
        }


Searcher = Callable[[npt.NDArray[np.float32]], Sequence[int]]


def measure_point(
    setting: str,
    ours: Searcher,
    raw: Searcher,
    queries: npt.NDArray[np.float32],
    truth: npt.NDArray[np.int64],
    k: int,
    rounds: int,
) -> SweepPoint:
    """Recall of both sides (base row indices returned per query) and their QPS, interleaved."""
    found: dict[str, list[list[int]]] = {"ours": [], "raw": []}

    def timed(name: str, fn: Searcher) -> Callable[[], npt.NDArray[np.float64]]:
        def run() -> npt.NDArray[np.float64]:
            rows: list[list[int]] = []
            lat = np.empty(len(queries), dtype=np.float64)
            for i, q in enumerate(queries):
                with Timer() as t:
                    got = fn(q)
                lat[i] = t.seconds
                rows.append(list(got))
            found[name] = rows
            return lat

        return run

    cmp = compare_sides(rounds, {"raw": timed("raw", raw), "ours": timed("ours", ours)})
    return SweepPoint(
        setting,
        recall_at_k(found["ours"], truth, k),
        cmp["ours_qps"],
        recall_at_k(found["raw"], truth, k),
        cmp["raw_qps"],
    )


#: ``sweep(dataset, queries, truth, cfg) -> {"index": str, "load_s": float, "build_s": float,
#: "points": [SweepPoint.as_dict(), ...], optional "note": str}``
AnnSweep = Callable[
    [RealDataset, npt.NDArray[np.float32], npt.NDArray[np.int64], AnnConfig], dict[str, Any]
]
#: One entry per engine, added by the engine's bench module.
ANN_SWEEPS: dict[str, AnnSweep] = {}


def _load(cfg: AnnConfig) -> RealDataset:
    if cfg.dataset != "fashion-mnist":
        raise ValueError(f"unknown real dataset {cfg.dataset!r}; known: ['fashion-mnist']")
    return load_fashion_mnist(n_base=cfg.n_base, n_queries=cfg.queries)


def run_ann(
    cfg: AnnConfig, targets: Sequence[str], *, out: Path | None = None, resume: bool = False
) -> dict[str, Any]:
    """Every target's sweep; returns (and checkpoints) the results."""
    register_engines()
    unknown = [t for t in targets if t not in ANN_SWEEPS]
    if unknown:
        raise ValueError(f"no ANN sweep for {unknown}; known: {sorted(ANN_SWEEPS)}")
    ckpt = Checkpoint(out, cfg, resume)
    ckpt.data["machine"] = machine_info()
    print(f"  .. loading {cfg.dataset}", file=sys.stderr, flush=True)
    data = _load(cfg)
    print("  .. exact ground truth (float64)", file=sys.stderr, flush=True)
    truth = exact_neighbours(data.base, data.queries, cfg.k)
    for name in targets:
        if ckpt.get(f"{name}/ann") is None:
            print(f"  .. {name}: load, build, sweep", file=sys.stderr, flush=True)
            ckpt.put(f"{name}/ann", ANN_SWEEPS[name](data, data.queries, truth, cfg))
    return ckpt.data


def format_ann(data: dict[str, Any]) -> str:
    """One table per target: setting, recall (ours/raw), QPS (ours/raw), ratio."""
    cfg = data["config"]
    lines = [
        f"dataset: {cfg['dataset']} (base {cfg['n_base'] or 'all'}), {cfg['queries']} queries, "
        f"k={cfg['k']}, single client, best of {cfg['rounds']} interleaved rounds",
        "",
    ]
    for key, sec in sorted(data["sections"].items()):
        lines.append(
            f"[{key.split('/')[0]}] {sec['index']}: load {sec['load_s']:.1f} s, "
            f"index build {sec['build_s']:.1f} s" + (f"; {sec['note']}" if sec.get("note") else "")
        )
        header = (
            f"{'setting':<22} {'recall':>7} {'raw rec.':>8} {'QPS':>9} {'raw QPS':>9} {'ratio':>6}"
        )
        lines += [header, "-" * len(header)]
        for p in sec["points"]:
            lines.append(
                f"{p['setting']:<22} {p['recall']:>7.3f} {p['raw_recall']:>8.3f} "
                f"{p['qps']:>9,.0f} {p['raw_qps']:>9,.0f} {p['ratio_qps']:>6.3f}"
            )
        lines.append("")
    return "\n".join(lines)
