"""Bulk loading (``db.load``): streaming batches, resuming after a crash, index built once."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from dataknobs_data import DatabaseFactory, Record
from dataknobs_data.errors import DuplicateRecordError, UnsupportedError, ValidationError
from dataknobs_data.testing import (
    POSTGRES_URL_ENV,
    database_urls,
    requires_extra,
)


def _records(start: int, stop: int, dims: int = 8) -> Iterator[Record]:
    rng = np.random.default_rng(start)
    for i in range(start, stop):
        yield Record({"n": i, "v": rng.standard_normal(dims).astype(np.float32)}, id=f"r{i:06d}")


class CrashError(RuntimeError):
    pass


def _dies_after(n: int) -> Iterator[Record]:
    for i, rec in enumerate(_records(0, 10_000)):
        if i == n:
            raise CrashError("the producer died")
        yield rec


@pytest.mark.parametrize("url", database_urls("memory://", "sqlite:///{tmp}/load.db"))
def test_streams_batches_and_resumes_after_a_crash(url: str, tmp_path: object) -> None:
    db = DatabaseFactory.create(url.format(tmp=tmp_path))
    with pytest.raises(CrashError):
        db.load(_dies_after(2500), batch_size=1000)
    assert db.count() == 2000  # the whole batches before the crash, nothing of the third
    with pytest.raises(DuplicateRecordError):
        db.load(_records(0, 3000), batch_size=1000)  # a plain re-run refuses stored ids
    report = db.load(_records(0, 3000), batch_size=1000, skip_existing=True)
    assert (report.written, report.skipped, report.batches) == (1000, 2000, 3)
    assert db.count() == 3000 and report.index is None and report.rows_per_second > 0
    db.close()


def test_async_load_and_argument_errors() -> None:
    async def main() -> None:
        db = DatabaseFactory.create_async("memory://")
        report = await db.load(_records(0, 250), batch_size=100)
        assert (report.written, report.batches) == (250, 3)
        assert await db.count() == 250
        await db.close()

    asyncio.run(main())
    db = DatabaseFactory.create("memory://")
    for bad in (
        {"batch_size": 0},
        {"index": "btree"},
        {"index": "hnsw", "index_params": {"M": 16}},
        {"index": "hnsw", "index_params": {"m": "16"}},
        {"index_field": "v"},
    ):
        with pytest.raises(ValidationError):
            db.load(_records(0, 10), **bad)
    with pytest.raises(ValidationError):
        db.load(next(_records(0, 1)))  # type: ignore[arg-type]
    with pytest.raises(UnsupportedError):  # refused before anything is written
        db.load(_records(0, 10), index="hnsw")
    assert db.count() == 0


URL = os.environ.get(POSTGRES_URL_ENV, "")


@pytest.mark.skipif(not URL, reason=f"{POSTGRES_URL_ENV} unset: run scripts/test")
@requires_extra("postgres")  # nearest the function: asked first, so the reason names the extra
def test_postgres_builds_the_index_after_loading() -> None:
    url = f"{URL}{'&' if '?' in URL else '?'}collection=t_{uuid.uuid4().hex[:16]}"
    db = DatabaseFactory.create(url, temporary=True)
    try:
        first = db.load(_records(0, 500), index="ivfflat", index_params={"lists": 4})
        assert first.index is not None
        assert first.index["type"] == "ivfflat" and first.index["rebuilt"] is False
        second = db.load(_records(500, 2000), batch_size=400, index="hnsw")
        assert second.index is not None
        assert second.index["type"] == "hnsw" and second.index["rebuilt"] is True
        stats = db.get_vector_index_stats("v")
        assert stats["type"] == "hnsw" and stats["rows"] == 2000
        stored = db.read("r001234")
        assert stored is not None
        q = stored.fields["v"].value
        assert db.vector_search(q, k=1)[0].id == "r001234"
    finally:
        db.close()


def test_index_refusal_is_the_backends_own(tmp_path: object) -> None:
    """``load(index=...)`` raises the backend's :meth:`Backend.no_indexes_error`, so chroma's
    says how its always-built index is tuned instead of the generic "exact search" text.
    Chroma declares an HNSW index type yet has no index methods: the refusal comes before any
    record is written (it used to come after the load, leaving the records behind)."""
    pytest.importorskip(
        "chromadb", reason="needs the chroma extra: pip install 'dataknobs-data[chroma]'"
    )
    db = DatabaseFactory.create(f"chroma:///{tmp_path}/c")
    try:
        with pytest.raises(UnsupportedError, match="ef_search per query"):
            db.load(_records(0, 3), index="hnsw")
        assert db.count() == 0
    finally:
        db.close()
