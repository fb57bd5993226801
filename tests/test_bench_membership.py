"""The membership benchmark targets (``--targets sqlite-in,postgres-in``) run end to end at a
tiny size: they build their store, check that ours and the raw SQL agree, and report ratios."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dataknobs_data.testing import POSTGRES_URL_ENV, requires_extra
from dataknobs_data.vector.benchmarks.harness import BenchConfig, register_engines, run
from dataknobs_data.vector.benchmarks.report import format_report

LABELS = (
    "n in 300 values (count)",
    "n in 300 values (search)",
    "_id in 120 ids (search)",
    "_id in 120 ids vs read_batch",
)


def _tiny(target: str) -> BenchConfig:
    return BenchConfig(n=300, dim=4, queries=4, batch=2, rounds=1, overhead_n=20, targets=(target,))


def _check(target: str, tmp_path: Path) -> None:
    register_engines()
    data = run(_tiny(target), out=tmp_path / "bench.json")
    sections = data["sections"]
    assert set(sections) == {f"{target}/vs_raw"}  # no vector ingest, no numpy sections
    part = sections[f"{target}/vs_raw"]
    assert tuple(part) == LABELS
    for entry in part.values():
        assert entry["ours_qps"] > 0 and entry["raw_qps"] > 0
        assert entry["ratio_qps"] == pytest.approx(entry["ours_qps"] / entry["raw_qps"])
    report = format_report(data)
    assert f"[{target}]" in report and "n in 300 values (count)" in report


@requires_extra("sqlite")
def test_sqlite_membership_target(tmp_path: Path) -> None:
    _check("sqlite-in", tmp_path)


@requires_extra("postgres")
@pytest.mark.skipif(not os.environ.get(POSTGRES_URL_ENV), reason=f"set {POSTGRES_URL_ENV}")
def test_postgres_membership_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATAKNOBS_BENCH_POSTGRES_URL", os.environ[POSTGRES_URL_ENV])
    _check("postgres-in", tmp_path)
