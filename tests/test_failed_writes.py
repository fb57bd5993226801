"""Issue 11, class 2: a write that fails part-way leaves no trace (regressions).

The issue's example (``faiss://``: a batch with a lone surrogate raised a raw error, yet both
records stayed in the process, the retry was refused as a duplicate, ``close()`` raised and the
reopened store held neither), and the journal failures behind it. The general check, a failure
at every engine call of every write on every backend, is the conformance suite's
:class:`~dataknobs_data.testing.conformance.FaultTests`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dataknobs_data import Record, VectorField
from dataknobs_data.durable import Journal
from dataknobs_data.errors import DataknobsDataError
from dataknobs_data.factory import DatabaseFactory
from dataknobs_data.testing import import_or_skip


def _faiss(tmp_path: Path) -> Any:
    import_or_skip("faiss")
    return DatabaseFactory.create(f"faiss://{tmp_path}/db")


@pytest.mark.parametrize("single", [False, True])
def test_faiss_write_the_journal_cannot_hold_leaves_no_trace(tmp_path: Path, single: bool) -> None:
    db = _faiss(tmp_path)
    good = Record({"t": "ok", "v": VectorField([1.0, 0.0])}, id="a")

    def bad() -> Record:  # refused where it is built (InvalidTextError) since strings are checked
        return Record({"t": "bad\ud800", "v": VectorField([0.0, 1.0])}, id="b")

    write = (lambda: db.create(bad())) if single else (lambda: db.create_batch([good, bad()]))
    with pytest.raises(DataknobsDataError):
        write()
    assert db.count() == 0
    assert db.vector_fields() == {}  # the field the batch would have added is gone too
    fixed = Record({"t": "fixed", "v": VectorField([0.0, 1.0])}, id="b")
    assert db.create_batch([good, fixed]) == ["a", "b"]  # the retry is not a duplicate
    db.close()  # does not raise
    again = DatabaseFactory.create(f"faiss://{tmp_path}/db")
    assert [r["t"] for r in again.search()] == ["ok", "fixed"]
    assert [h.id for h in again.vector_search([0.0, 1.0], k=1)] == ["b"]
    again.close()


class _TornFile:
    """A real journal file whose next ``write`` stores half its bytes, then fails (ENOSPC)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.armed = True

    def write(self, data: bytes) -> int:
        if self.armed:
            self.armed = False
            self.real.write(data[: len(data) // 2])
            self.real.flush()
            raise OSError(28, "No space left on device")
        written: int = self.real.write(data)
        return written

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_failed_append_is_cut_back_so_later_frames_recover(tmp_path: Path) -> None:
    path = tmp_path / "j.log"
    journal = Journal(path)
    journal.append(b"one")
    journal._fh = _TornFile(journal._fh)  # type: ignore[assignment]
    with pytest.raises(OSError, match="No space left"):
        journal.append(b"two" * 100)
    assert path.stat().st_size == journal.size  # the torn half is gone
    journal.append(b"three")
    journal.close()
    assert Journal.recover(path) == [b"one", b"three"]


def test_faiss_journal_failure_undoes_the_write_and_the_store_goes_on(tmp_path: Path) -> None:
    db = _faiss(tmp_path)
    db.create(Record({"n": 1, "v": VectorField([1.0, 0.0])}, id="a"))
    journal = db.backend._journal
    journal._fh = _TornFile(journal._fh)
    with pytest.raises(DataknobsDataError):
        db.upsert_batch(
            [Record({"n": 2}, id="a"), Record({"n": 3, "v": VectorField([0.0, 1.0])}, id="c")]
        )
    assert [(r.id, r["n"]) for r in db.search()] == [("a", 1)]
    assert [h.id for h in db.vector_search([0.0, 1.0], k=5)] == ["a"]
    db.create(Record({"n": 4, "v": VectorField([0.0, 1.0])}, id="d"))
    db.close()
    again = DatabaseFactory.create(f"faiss://{tmp_path}/db")
    assert [(r.id, r["n"]) for r in again.search()] == [("a", 1), ("d", 4)]
    again.close()


def test_faiss_snapshot_failure_after_a_durable_write_does_not_fail_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write whose frame is fsynced is confirmed even if the snapshot it triggers fails; the
    snapshot is retried before the next write."""
    from dataknobs_data.backends.faiss import backend as faiss_backend

    db = _faiss(tmp_path)
    monkeypatch.setattr(faiss_backend, "_MIN_JOURNAL", 0)  # every write triggers a snapshot
    real = faiss_backend.write_synced
    calls = {"n": 0}

    def fails_once(path: Path, data: bytes) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(faiss_backend, "write_synced", fails_once)
    db.create(Record({"n": 1}, id="a"))  # confirmed: its frame is in the journal
    assert db.backend._snapshot_due
    db.create(Record({"n": 2}, id="b"))  # the snapshot is taken first, then this write
    assert not db.backend._snapshot_due
    db.close()
    again = DatabaseFactory.create(f"faiss://{tmp_path}/db")
    assert [r.id for r in again.search()] == ["a", "b"]
    again.close()
