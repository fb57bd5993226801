"""The benchmark harness runs end to end on a tiny dataset and resumes from its checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from dataknobs_data.vector.benchmarks.__main__ import main
from dataknobs_data.vector.benchmarks.harness import BenchConfig, run
from dataknobs_data.vector.benchmarks.report import format_report

TINY = BenchConfig(
    n=600, dim=16, queries=12, batch=4, rounds=1, overhead_n=50, selectivities=(0.1,)
)


def test_run_measures_every_section_exactly(tmp_path: Path) -> None:
    """Exact search: recall 1, every filtered query complete, ratios and latencies present."""
    out = tmp_path / "bench.json"
    data = run(TINY, out=out)
    sec = data["sections"]
    assert set(sec) == {
        "memory/ingest",
        "memory/single",
        "memory/batched",
        "memory/filtered_0.1",
        "memory/overhead",
    }
    assert sec["memory/ingest"]["rows"] == 600
    assert sec["memory/single"]["recall_at_k"] == 1.0
    assert sec["memory/batched"]["recall_at_k"] == 1.0
    assert sec["memory/filtered_0.1"]["complete"] == 1.0
    assert sec["memory/filtered_0.1"]["recall_at_k"] == 1.0
    assert sec["memory/single"]["ratio_qps"] > 0
    assert json.loads(out.read_text())["sections"] == sec
    report = format_report(data)
    assert "single query, 1 thread" in report and "recall@k 1.000" in report


def test_resume_skips_finished_sections(tmp_path: Path) -> None:
    """A resumed run keeps the checkpointed numbers instead of measuring again."""
    out = tmp_path / "bench.json"
    first = run(TINY, out=out)["sections"]["memory/single"]
    saved = json.loads(out.read_text())
    saved["sections"]["memory/single"]["marker"] = "kept"
    out.write_text(json.dumps(saved))
    again = run(TINY, out=out, resume=True)["sections"]["memory/single"]
    assert again["marker"] == "kept"
    assert again["recall_at_k"] == first["recall_at_k"]
    other = run(
        BenchConfig(
            n=500, dim=16, queries=12, batch=4, rounds=1, overhead_n=50, selectivities=(0.1,)
        ),
        out=out,
        resume=True,
    )
    assert "marker" not in other["sections"]["memory/single"]


def test_command_line(tmp_path: Path, capsys: object) -> None:
    """`python -m dataknobs_data.vector.benchmarks` prints the report and writes the JSON."""
    out = tmp_path / "r.json"
    code = main(
        [
            "--n",
            "400",
            "--dim",
            "8",
            "--queries",
            "8",
            "--batch",
            "4",
            "--rounds",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert "[memory]" in capsys.readouterr().out  # type: ignore[attr-defined]
    assert out.exists()
