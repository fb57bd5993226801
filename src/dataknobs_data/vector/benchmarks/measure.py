"""Timing, memory, thread control and machine description for the benchmark harness.

The machine these benchmarks run on is a shared 2-vCPU VM, so the numbers are only worth
something with their context: per-call latencies (not one total, so tail latency is
visible), the thread count BLAS used, the load average at the time, and the CPU and BLAS
build. This module gathers exactly that and nothing database-specific.

``limit_threads`` exists because BLAS, OpenMP and a database server on the same two cores
oversubscribe them: a 2-thread faiss scan measured 3x slower than 1 thread under load. The
protocol runs single queries with 1 thread and batches with 2. Environment variables such as
``OMP_NUM_THREADS`` only act before a library is loaded, so the limit is applied at run time
through ``threadpoolctl`` when it is installed.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import resource
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "LatencySummary",
    "RssGrowth",
    "Timer",
    "blas_threads",
    "current_rss_bytes",
    "limit_threads",
    "machine_info",
    "peak_rss_bytes",
    "percentiles",
    "qps",
    "summarize",
    "time_calls",
]

T = TypeVar("T")


class Timer:
    """Wall-clock timer for a block: ``with Timer() as t: ...`` then ``t.seconds``.

    Uses ``perf_counter_ns`` (monotonic, highest resolution) so sub-millisecond calls are
    timed without float rounding.
    """

    __slots__ = ("_start", "_stop")

    def __init__(self) -> None:
        self._start = 0
        self._stop: int | None = None

    def __enter__(self) -> Timer:
        self._stop = None
        self._start = time.perf_counter_ns()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = time.perf_counter_ns()

    @property
    def seconds(self) -> float:
        """Elapsed seconds; while the block is still running, the time so far."""
        stop = time.perf_counter_ns() if self._stop is None else self._stop
        return (stop - self._start) / 1e9


def time_calls(
    fn: Callable[[T], object],
    items: Iterable[T],
    *,
    warmup: int = 0,
) -> NDArray[np.float64]:
    """Call ``fn(item)`` for each item and return the per-call latencies in seconds.

    The first ``warmup`` items are called but not timed (caches, lazy imports, JIT of query
    plans, the first page faults of a buffer). Per-call timing costs ~100 ns per call, which
    is negligible against the >= 10 us calls measured here; the throughput of the loop is
    ``qps(len(lat), lat.sum())``.
    """
    latencies: list[int] = []
    clock = time.perf_counter_ns
    for i, item in enumerate(items):
        if i < warmup:
            fn(item)
            continue
        t0 = clock()
        fn(item)
        latencies.append(clock() - t0)
    return np.asarray(latencies, dtype=np.float64) / 1e9


def percentiles(
    latencies: Iterable[float] | NDArray[np.floating], qs: Iterable[float] = (50, 95, 99)
) -> dict[str, float]:
    """``{"p50": ..., "p95": ..., "p99": ...}`` of the latencies, in their own units.

    Linear interpolation between order statistics (numpy's default), so with fewer than 100
    samples p99 is an interpolation, not an observed value; the protocol asks for >= 1000.
    """
    arr = np.asarray(list(latencies) if not isinstance(latencies, np.ndarray) else latencies)
    qs = tuple(qs)
    if arr.size == 0:
        return {_pkey(q): float("nan") for q in qs}
    values = np.percentile(arr, qs)
    return {_pkey(q): float(v) for q, v in zip(qs, values, strict=True)}


def _pkey(q: float) -> str:
    return f"p{q:g}".replace(".", "_")


def qps(count: int, seconds: float) -> float:
    """Queries per second for ``count`` queries answered in ``seconds`` of wall time."""
    return count / seconds if seconds > 0 else float("inf")


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Summary of per-call latencies, in seconds, plus the throughput of the timed loop."""

    count: int
    mean: float
    min: float
    p50: float
    p95: float
    p99: float
    max: float
    qps: float

    def as_dict(self, unit: str = "ms") -> dict[str, float]:
        """The summary with latencies scaled to ``unit`` ("s", "ms" or "us"), for reports."""
        scale = {"s": 1.0, "ms": 1e3, "us": 1e6}[unit]
        return {
            "count": float(self.count),
            f"mean_{unit}": self.mean * scale,
            f"min_{unit}": self.min * scale,
            f"p50_{unit}": self.p50 * scale,
            f"p95_{unit}": self.p95 * scale,
            f"p99_{unit}": self.p99 * scale,
            f"max_{unit}": self.max * scale,
            "qps": self.qps,
        }


def summarize(latencies: NDArray[np.floating], queries_per_call: int = 1) -> LatencySummary:
    """Summarise per-call latencies; ``queries_per_call`` > 1 for batched calls.

    QPS is computed from the summed call time (sequential single-client throughput), so a
    batched run reports queries, not calls, per second.
    """
    arr = np.asarray(latencies, dtype=np.float64)
    if arr.size == 0:
        nan = float("nan")
        return LatencySummary(0, nan, nan, nan, nan, nan, nan, nan)
    p = percentiles(arr)
    return LatencySummary(
        count=int(arr.size),
        mean=float(arr.mean()),
        min=float(arr.min()),
        p50=p["p50"],
        p95=p["p95"],
        p99=p["p99"],
        max=float(arr.max()),
        qps=qps(int(arr.size) * queries_per_call, float(arr.sum())),
    )


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------


def current_rss_bytes() -> int:
    """Resident set size of this process now, in bytes.

    psutil when installed (the dev extra); else ``/proc/self/statm`` on Linux; else the peak
    from ``getrusage``, which is the best the standard library offers elsewhere (and is an
    upper bound, so deltas taken with it under-report).
    """
    try:
        import psutil
    except ImportError:
        pass
    else:
        return int(psutil.Process().memory_info().rss)
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            resident_pages = int(fh.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return peak_rss_bytes()


class RssGrowth:
    """Peak growth of this process's resident memory while a block runs (sampled every
    20 ms): streamed work (bulk sync, migration) should not grow with the number of records."""

    def __init__(self) -> None:
        self.growth = 0
        self._stop = threading.Event()

    @property
    def mb(self) -> float:
        return self.growth / 2**20

    def __enter__(self) -> RssGrowth:
        self._base = current_rss_bytes()

        def sample() -> None:
            while not self._stop.wait(0.02):
                self.growth = max(self.growth, current_rss_bytes() - self._base)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.growth = max(self.growth, current_rss_bytes() - self._base)


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far, in bytes (``getrusage``).

    ``ru_maxrss`` is in kilobytes on Linux and in bytes on macOS.
    """
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


# ---------------------------------------------------------------------------------------------
# Threads
# ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def limit_threads(n: int) -> Iterator[bool]:
    """Limit BLAS and OpenMP thread pools to ``n`` threads inside the block.

    Yields True when the limit is in force. Without ``threadpoolctl`` it warns and yields
    False, and the run should record that its thread count was not controlled.
    """
    if n < 1:
        raise ValueError(f"thread limit must be >= 1, got {n}")
    tpc = _threadpoolctl()
    if tpc is None:
        warnings.warn(
            "threadpoolctl is not installed: BLAS/OpenMP thread counts are not limited; "
            "install it or set OMP_NUM_THREADS/OPENBLAS_NUM_THREADS before starting Python",
            RuntimeWarning,
            stacklevel=3,
        )
        yield False
        return
    with tpc.threadpool_limits(limits=n):
        yield True


def blas_threads() -> dict[str, int]:
    """Current thread count of each loaded BLAS/OpenMP pool (empty without threadpoolctl)."""
    tpc = _threadpoolctl()
    if tpc is None:
        return {}
    return {
        str(info.get("internal_api", info.get("user_api", "?"))): int(info["num_threads"])
        for info in tpc.threadpool_info()
    }


def _threadpoolctl() -> Any:
    """The ``threadpoolctl`` module, or None. Imported dynamically because it is optional
    and ships no type information; callers treat it as untyped."""
    try:
        return importlib.import_module("threadpoolctl")
    except ImportError:
        return None


# ---------------------------------------------------------------------------------------------
# Machine description
# ---------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """Everything needed to interpret a benchmark number later, as a JSON-serialisable dict.

    CPU model and flags that matter for SIMD kernels, logical and usable cores, load average
    (the VM shares its cores, so a run at load 3 is not comparable to one at load 0), memory,
    Python and numpy versions, and the BLAS numpy was built against and is running with.
    """
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "cpu_model": _cpu_model(),
        "cpu_flags": _cpu_flags(("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16")),
        "logical_cores": os.cpu_count(),
        "usable_cores": _usable_cores(),
        "loadavg": _loadavg(),
        "mem_total_bytes": _mem_total(),
        "blas": _numpy_blas(),
        "threadpools": _threadpools(),
    }
    return info


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return None


def _cpu_model() -> str:
    text = _read_text("/proc/cpuinfo")
    if text:
        for line in text.splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _cpu_flags(wanted: tuple[str, ...]) -> list[str]:
    text = _read_text("/proc/cpuinfo")
    if not text:
        return []
    for line in text.splitlines():
        if line.startswith("flags"):
            have = set(line.split(":", 1)[1].split())
            return [flag for flag in wanted if flag in have]
    return []


def _usable_cores() -> int | None:
    sched = getattr(os, "sched_getaffinity", None)
    return len(sched(0)) if sched is not None else os.cpu_count()


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _mem_total() -> int | None:
    text = _read_text("/proc/meminfo")
    if text:
        for line in text.splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return None


def _numpy_blas() -> dict[str, Any]:
    """BLAS name, version and build configuration from ``numpy.show_config(mode="dicts")``."""
    try:
        config: Any = np.show_config(mode="dicts")  # numpy >= 1.26 returns, not prints
    except TypeError:
        return {}
    if not isinstance(config, dict):
        return {}
    blas = config.get("Build Dependencies", {}).get("blas", {})
    keys = ("name", "version", "openblas configuration")
    out = {key: blas[key] for key in keys if key in blas}
    simd = config.get("SIMD Extensions", {})
    if simd:
        out["numpy_simd_found"] = list(simd.get("found", []))
    return out


def _threadpools() -> list[dict[str, Any]]:
    tpc = _threadpoolctl()
    if tpc is None:
        return []
    keys = ("user_api", "internal_api", "num_threads", "version", "architecture")
    return [{key: pool[key] for key in keys if key in pool} for pool in tpc.threadpool_info()]
