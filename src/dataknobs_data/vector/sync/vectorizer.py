"""The incremental vectorizer: drains pending marks in batches, in the background or once.

Each step claims up to ``batch_size`` records that carry a pending mark
(:meth:`~dataknobs_data.contract.Backend.claim_pending`: leases, ``SKIP LOCKED`` on
PostgreSQL, so two vectorizers share the work without embedding a record twice), reads them,
embeds their texts in one embedder call (texts the cache holds are not embedded), and writes
the vectors back with the tracker's compare-and-set (a record edited meanwhile keeps its new
pending mark), then releases the claims.

Nothing is kept in memory that a crash would lose: the marks are in the records, written with
them, so after ``kill -9`` a restarted vectorizer finds exactly the work left (at most the
batch in flight is embedded again; with a file :class:`EmbeddingCache` not even that).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from ...contract import Backend
from ...errors import ValidationError
from .cache import EmbeddingCache
from .config import SyncConfig
from .report import SyncResult
from .synchronizer import VectorTextSynchronizer

__all__ = ["IncrementalVectorizer"]


class IncrementalVectorizer:
    """Embeds pending records of ``database`` with ``embedder``; see the module docstring.

    * :meth:`run_once` drains what is pending now and returns (the CLI's ``--auto-fix``);
    * :meth:`start` / :meth:`stop` run it in a background thread, polling every
      ``poll_interval`` seconds when idle (also as a context manager);
    * :meth:`run` is the asyncio task version (each step in a worker thread).
    """

    def __init__(
        self,
        database: Any,
        embedder: Any,
        config: SyncConfig | None = None,
        *,
        cache: EmbeddingCache | None = None,
        poll_interval: float = 1.0,
    ) -> None:
        if not (isinstance(poll_interval, int | float) and 0 < poll_interval <= 3600):
            raise ValidationError(f"poll_interval must be 0 < seconds <= 3600, got {poll_interval}")
        self.synchronizer = VectorTextSynchronizer(database, embedder, config, cache=cache)
        self.config = self.synchronizer.config
        self.worker = self.config.worker_name
        self.poll_interval = float(poll_interval)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.totals = SyncResult()
        self.error: BaseException | None = None

    @property
    def backend(self) -> Backend:
        return self.synchronizer.backend

    # -- one step ----------------------------------------------------------------------------
    def step(self) -> SyncResult | None:
        """Claim, embed and write back one batch; ``None`` when nothing was claimable."""
        tracker = self.synchronizer.tracker
        backend = self.backend
        ids = backend.claim_pending(self.worker, self.config.batch_size, self.config.lease)
        if not ids:
            return None
        try:
            records = [r for r in backend.get(ids) if r is not None]
            rules = list(tracker.rules.values())
            work, tidy = self.synchronizer._work(records, rules, True, pending_only=True)
            self.synchronizer._need_embedder([tracker.rules[n] for (_, n) in work.items])
            result = self.synchronizer._sync_work(work, tidy)
            result.records = len(ids)
            return result
        finally:
            backend.release_claims(self.worker, ids)

    def run_once(self, *, max_records: int | None = None, progress: bool = False) -> SyncResult:
        """Drain the pending work present now (or ``max_records`` of it); returns totals.

        Runs in the caller's thread to the end (Ctrl-C interrupts it; what it had written
        stays written and the rest stays marked); :meth:`stop` stops the background loops."""
        return self._drain(lambda: False, max_records, progress)

    def _drain(
        self, stopped: Callable[[], bool], max_records: int | None, progress: bool
    ) -> SyncResult:
        started = time.perf_counter()
        total = SyncResult()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(unit="rec", desc="vectorize")
        try:
            while not stopped():
                if max_records is not None and total.records >= max_records:
                    break
                result = self.step()
                if result is None:
                    break
                total.merge(result)
                if bar is not None:
                    bar.update(result.records)
                if result.written == 0 and result.moved == 0 and result.failed == 0:
                    break  # nothing this batch could change: stop instead of spinning
        finally:
            if bar is not None:
                bar.close()
            total.seconds = time.perf_counter() - started
            self.totals.merge(total)
        return total

    # -- in the background -------------------------------------------------------------------
    def start(self) -> IncrementalVectorizer:
        """Run in a daemon thread until :meth:`stop`."""
        if self._thread is not None and self._thread.is_alive():
            raise ValidationError("this vectorizer is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="dataknobs-vectorizer", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                if self._drain(self._stop.is_set, None, False).records == 0:
                    self._stop.wait(self.poll_interval)
        except BaseException as exc:  # kept for stop() to re-raise in the caller's thread
            self.error = exc

    def stop(self, timeout: float | None = None) -> None:
        """Ask the loop to stop after its current batch and wait for it; re-raises an error
        the background loop died of."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    async def run(self, *, until_idle: bool = False) -> SyncResult:
        """The asyncio version of the background loop: each batch runs in a worker thread, so
        the event loop stays free. ``until_idle=True`` returns once nothing is pending;
        otherwise it runs until :meth:`stop` or cancellation."""
        self._stop.clear()
        total = SyncResult()
        while not self._stop.is_set():
            done = await asyncio.to_thread(self._drain, self._stop.is_set, None, False)
            total.merge(done)
            if done.records == 0:
                if until_idle:
                    break
                await asyncio.sleep(self.poll_interval)
        return total

    def __enter__(self) -> IncrementalVectorizer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
