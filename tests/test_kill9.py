"""kill -9 at random points on every persistent store (:mod:`dataknobs_data.testing.kill9`).

A writer process is SIGKILLed after a random delay, several rounds per store; each next
process reopens the store and checks that every confirmed batch is there whole (in its latest
confirmed version), that no batch or upsert is there in part, and writes on. Rounds:
``DATAKNOBS_KILL9_ROUNDS`` (default 2). Chroma's own crash tests, which kill at chosen chroma
calls inside one large write, are in ``tests/test_chroma_crash.py``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from dataknobs_data.factory import DatabaseFactory
from dataknobs_data.testing import POSTGRES_URL_ENV, import_or_skip
from dataknobs_data.testing.kill9 import kill9_rounds

TARGETS = {
    "sqlite": ("sqlite", lambda tmp: f"db:sqlite:///{tmp}/k.db"),
    "faiss": ("faiss", lambda tmp: f"db:faiss://{tmp}/k"),
    "chroma": ("chroma", lambda tmp: f"db:chroma:///{tmp}/k"),
    "faiss-store": ("faiss", lambda tmp: f"store:faiss:{tmp}/s"),
    "chroma-store": ("chroma", lambda tmp: f"store:chroma:{tmp}/s"),
}


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_kill_9_loses_no_confirmed_write_and_leaves_no_half_batch(
    name: str, tmp_path: Path
) -> None:
    engine, target = TARGETS[name]
    import_or_skip(engine)
    report = kill9_rounds(target(tmp_path), seed=len(name))
    assert report.confirmed > 0
    assert report.found[-1] > 0  # the last reopen found the confirmed batches


def test_kill_9_on_postgres() -> None:
    import_or_skip("postgres")
    base = os.environ.get(POSTGRES_URL_ENV)
    if not base:
        pytest.skip(f"set {POSTGRES_URL_ENV} to run the postgres backend tests")
    joiner = "&" if "?" in base else "?"
    url = f"{base}{joiner}collection=k9_{uuid.uuid4().hex[:12]}"
    try:
        report = kill9_rounds(f"db:{url}", seed=5)
        assert report.confirmed > 0
        assert report.found[-1] > 0
    finally:
        DatabaseFactory.create(url, temporary=True).close()  # drops the collection
