"""Two processes on one store: refused with a typed error, or both writes kept; never lost.

Unlike the other sections this one needs a store that *other processes* can open, so it is not
part of :class:`~dataknobs_data.testing.ConformanceTests` (whose ``db`` fixture is an open
database): a test class adopts it by providing a ``process_target`` fixture that yields a
:class:`~dataknobs_data.testing.processes.ProcessTarget` (a URL naming a fresh, empty, persistent
store, and whether the backend is ``exclusive``)::

    @pytest.fixture(params=[...])
    def process_target(request, tmp_path):
        yield ProcessTarget(f"mybackend:///{tmp_path}/store", exclusive=True)

    class TestMyBackendProcesses(TwoProcessTests):
        pass

What is checked, with real subprocesses (:class:`~dataknobs_data.testing.processes.WriterProcess`)
in the sync and the async shell:

* an exclusive store open in this process refuses a child with ``StoreLockedError`` naming this
  process's pid, and opens for the next child once closed; a shared store lets the child write
  beside it, each seeing the other's records;
* two children started together: exclusive, one is refused naming the other and the other's
  records all survive; shared, both finish and every record of both is there;
* a child killed with SIGKILL in the middle of its writes leaves no stale lock: the next opener
  succeeds and finds every write the child had confirmed, and of the batch in flight all of it
  or none.
"""

from __future__ import annotations

import os

import pytest

from ...records import Record
from ..adapter import Mode
from ..processes import REFUSED, ProcessTarget, WriterProcess, writer_ids

__all__ = ["TwoProcessTests"]

MODES: tuple[Mode, ...] = ("sync", "async")


def _ids(target: ProcessTarget, mode: Mode, *, by_vector: bool = False) -> list[str]:
    """Every record id in the store, read in this process (and the store closed again); with
    ``by_vector`` also checks that a vector search over every record finds each one once
    (two writers of one chroma directory used to leave duplicates in its HNSW index)."""
    db = target.open(mode)
    try:
        ids = sorted(r.id for r in db.search())
        if by_vector and ids:
            hits = db.vector_search([1.0, 1.0, 1.0, 0.5], field="v", k=len(ids))
            assert sorted(h.id for h in hits) == ids
        return ids
    finally:
        db.close()
        release = getattr(db, "release", None)
        if release is not None:
            release()


class TwoProcessTests:
    """See the module docstring; the test class provides the ``process_target`` fixture."""

    #: records each writer child writes, in batches of :attr:`batch_size`
    records_per_writer = 200
    batch_size = 10

    @pytest.mark.parametrize("mode", MODES)
    def test_a_second_process_is_refused_or_shares(
        self, process_target: ProcessTarget, mode: Mode
    ) -> None:
        """While one process holds the store open, a second process opening it is refused with
        a typed error naming the holder (faiss, chroma) or writes safely beside it (SQLite,
        PostgreSQL); after the holder closes, the next opener succeeds."""
        target = process_target
        db = target.open(mode)
        try:
            with WriterProcess(target, mode, "child-", 3, batch=3) as child:
                db.create_batch([Record({"n": i}, id=f"parent-{i}") for i in range(5)])
                event = child.next_event()
                if target.exclusive:
                    assert event["event"] == "refused", event
                    assert event["error"] == "StoreLockedError"
                    assert event["holder"]["pid"] == os.getpid(), event
                    assert f"pid {os.getpid()}" in event["message"]
                    assert child.finish() == REFUSED
                else:
                    assert event["event"] == "opened", event
                    assert child.until("written")["count"] == 8  # the parent's 5 and its 3
                    assert child.finish() == 0
                    assert db.count() == 8
        finally:
            db.close()
            release = getattr(db, "release", None)
            if release is not None:
                release()
        with WriterProcess(target, mode, "next-", 3, batch=3) as after:  # the lock went with close
            assert after.until("written")["count"] == (11 if not target.exclusive else 8)
            assert after.finish() == 0
        expected = {f"parent-{i}" for i in range(5)} | set(writer_ids("next-", 3))
        if not target.exclusive:
            expected |= set(writer_ids("child-", 3))
        assert _ids(target, mode) == sorted(expected)

    def test_two_writers_at_once(self, process_target: ProcessTarget) -> None:
        """One child in each shell, released together once both have tried to open."""
        target, n = process_target, self.records_per_writer
        with (
            WriterProcess(target, "sync", "a-", n, batch=self.batch_size, wait=True) as a,
            WriterProcess(target, "async", "b-", n, batch=self.batch_size, wait=True) as b,
        ):
            first = {w.prefix: w.next_event() for w in (a, b)}
            opened = [w for w in (a, b) if first[w.prefix]["event"] == "opened"]
            refused = [w for w in (a, b) if first[w.prefix]["event"] == "refused"]
            if target.exclusive:
                assert len(opened) == 1 and len(refused) == 1, first
                holder = first[refused[0].prefix]["holder"]
                assert holder["pid"] == opened[0].pid, first
            else:
                assert len(opened) == 2, first
            for writer in opened:
                writer.send()
            for writer in opened:
                assert writer.finish() == 0, writer.stderr
                assert writer.confirmed == writer_ids(writer.prefix, n)
            for writer in refused:
                assert writer.finish() == REFUSED
        expected = sorted(i for w in opened for i in writer_ids(w.prefix, n))
        assert _ids(target, "sync", by_vector=True) == expected

    def test_killed_writer_leaves_no_stale_lock(self, process_target: ProcessTarget) -> None:
        """SIGKILL after some confirmed batches (written through the async shell's worker
        threads): the next opener is not refused, every confirmed write is there, and the
        batch in flight is there whole or not at all."""
        target, batch = process_target, self.batch_size
        with WriterProcess(target, "async", "k-", 10**6, batch=batch) as child:
            while len(child.confirmed) < 5 * batch:
                child.until("confirmed")
            child.kill()
            confirmed = list(child.confirmed)
        stored = _ids(target, "sync")
        in_flight = writer_ids("k-", len(confirmed) + batch)[len(confirmed) :]
        assert stored in (sorted(confirmed), sorted(confirmed + in_flight)), (
            f"{len(confirmed)} confirmed, {len(stored)} stored"
        )
        with WriterProcess(target, "sync", "after-", 2, batch=2) as after:
            assert after.until("written")["count"] == len(stored) + 2
            assert after.finish() == 0
