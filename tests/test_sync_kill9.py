"""kill -9 of the vectorizer mid-sync, on SQLite and PostgreSQL (:mod:`.testing.sync_kill9`).

After the kills and a restart every vector is current and no mark is left, and the texts
embedded in total exceed one per record by at most one batch per kill. Kills:
``DATAKNOBS_SYNC_KILLS`` (default 3; the acceptance run of
:mod:`dataknobs_data.vector.benchmarks.sync_bench` does 20 during a 50,000-record sync).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from dataknobs_data.factory import DatabaseFactory
from dataknobs_data.testing import POSTGRES_URL_ENV, import_or_skip
from dataknobs_data.testing.sync_kill9 import prepare, vectorizer_kills

KILLS = int(os.environ.get("DATAKNOBS_SYNC_KILLS", "3") or 3)
N = 3000


def _run(url: str, tmp_path: Path, seed: int) -> None:
    prepare(url, N)
    report = vectorizer_kills(
        url, str(tmp_path / "calls.log"), n=N, kills=KILLS, batch=100, max_delay=0.4, seed=seed
    )
    assert report.kills >= 1  # at least one kill landed mid-run (the delays are short)
    assert report.texts >= N  # every text was embedded at least once
    assert report.texts - N <= report.kills * 100


def test_vectorizer_killed_on_sqlite_resumes_without_loss(tmp_path: Path) -> None:
    _run(f"sqlite:///{tmp_path}/k.db", tmp_path, seed=1)


def test_vectorizer_killed_on_postgres_resumes_without_loss(tmp_path: Path) -> None:
    import_or_skip("postgres")
    base = os.environ.get(POSTGRES_URL_ENV)
    if not base:
        pytest.skip(f"set {POSTGRES_URL_ENV} to run the postgres backend tests")
    url = f"{base}{'&' if '?' in base else '?'}collection=sk9_{uuid.uuid4().hex[:12]}"
    try:
        _run(url, tmp_path, seed=2)
    finally:
        DatabaseFactory.create(url, temporary=True).close()  # drops the collection
