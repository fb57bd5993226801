"""kill -9 of a migration between backends, then resume (:mod:`.testing.migrate_kill9`).

SQLite to PostgreSQL and PostgreSQL to faiss: after the kills and a last run, verify passes,
the target holds each source id once, and the batches sent exceed one per source batch by at
most one per kill. Kills: ``DATAKNOBS_MIGRATE_KILLS`` (default 3; the acceptance run of
:mod:`dataknobs_data.vector.benchmarks.migrate_bench` does 10).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from dataknobs_data.factory import DatabaseFactory
from dataknobs_data.testing import POSTGRES_URL_ENV, import_or_skip
from dataknobs_data.testing.migrate_kill9 import migration_kills, prepare_source

KILLS = int(os.environ.get("DATAKNOBS_MIGRATE_KILLS", "3") or 3)
N = 4000
BATCH = 250


def _postgres_url() -> str:
    import_or_skip("postgres")
    base = os.environ.get(POSTGRES_URL_ENV)
    if not base:
        pytest.skip(f"set {POSTGRES_URL_ENV} to run the postgres backend tests")
    return f"{base}{'&' if '?' in base else '?'}collection=mk9_{uuid.uuid4().hex[:12]}"


def _run(source: str, target: str, tmp_path: Path, seed: int) -> None:
    prepare_source(source, N)
    report = migration_kills(
        source,
        target,
        str(tmp_path / "batches.log"),
        n=N,
        kills=KILLS,
        batch=BATCH,
        max_delay=0.6,
        seed=seed,
    )
    assert report.kills >= 1  # at least one kill landed mid-run (the delays are short)
    assert report.batches >= report.minimum
    assert report.extra_batches <= report.kills


def test_sqlite_to_postgres_killed_resumes_exactly(tmp_path: Path) -> None:
    target = _postgres_url()
    try:
        _run(f"sqlite:///{tmp_path}/source.db", target, tmp_path, seed=1)
    finally:
        DatabaseFactory.create(target, temporary=True).close()  # drops the collection


def test_postgres_to_faiss_killed_resumes_exactly(tmp_path: Path) -> None:
    import_or_skip("faiss", "faiss")
    source = _postgres_url()
    try:
        _run(source, f"faiss:///{tmp_path}/target", tmp_path, seed=2)
    finally:
        DatabaseFactory.create(source, temporary=True).close()
