"""The ``vector.migrate`` command's moving mode, end to end on real stores (SQLite files, faiss
directories), in-process through ``main(argv)``: copy with verification, dry run, rollback,
``--json``, refusals naming the flag, and passwords never printed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from dataknobs_data import DatabaseFactory, Record
from dataknobs_data.fields import VectorField
from dataknobs_data.testing import requires_extra
from dataknobs_data.vector.migrate import cli

pytestmark = [requires_extra("sqlite"), requires_extra("faiss")]

N = 40


def records() -> list[Record]:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((N, 8)).astype(np.float32)
    return [
        Record(
            {
                "title": f"title {i}",
                "n": i,
                "emb": VectorField(
                    vectors[i], model_name="m", model_version="1", source_field="title"
                ),
            },
            id=f"r{i:03d}",
        )
        for i in range(N)
    ]


@pytest.fixture
def source(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'source.db'}"
    with DatabaseFactory.create(url) as db:
        db.create_batch(records())
    return url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(["--no-progress", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def count(url: str) -> int:
    with DatabaseFactory.create(url) as db:
        return db.count()


def test_copy_sqlite_to_faiss_with_verify(
    capsys: pytest.CaptureFixture[str], source: str, tmp_path: Path
) -> None:
    target = f"faiss:///{tmp_path / 'faiss'}"
    argv = ["--source", source, "--target", target, "--batch-size", "7", "--verify"]
    code, out, err = run(capsys, *argv)
    assert code == 2 and "--target: no faiss store" in err and "--create-target" in err
    code, out, err = run(capsys, *argv, "--create-target")
    assert code == 0, err
    assert re.search(rf"^written +{N}$", out, re.M)
    assert "verify: OK" in out and re.search(r"^different +0$", out, re.M)
    assert count(target) == N
    code, out, _ = run(capsys, *argv)  # again: nothing left to copy, still verified
    assert code == 0 and "verify: OK" in out
    assert count(target) == N


def test_dry_run_writes_nothing(
    capsys: pytest.CaptureFixture[str], source: str, tmp_path: Path
) -> None:
    missing = tmp_path / "new.db"
    code, out, err = run(
        capsys, "--source", source, "--target", f"sqlite:///{missing}", "--dry-run"
    )
    assert code == 0, err
    assert "nothing was written" in out and "planned as a new store" in out
    assert not missing.exists()
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    DatabaseFactory.create(empty).close()
    before = (tmp_path / "empty.db").read_bytes()
    code, out, _ = run(capsys, "--source", source, "--target", empty, "--dry-run", "--json")
    assert code == 0
    plan = json.loads(out)["plan"]
    assert plan["dry_run"] is True and plan["records"] == N and plan["remaining"] == N
    assert count(empty) == 0
    assert (tmp_path / "empty.db").read_bytes() == before


def test_rollback_removes_the_copy_and_keeps_the_source(
    capsys: pytest.CaptureFixture[str], source: str, tmp_path: Path
) -> None:
    target = f"sqlite:///{tmp_path / 'target.db'}"
    with DatabaseFactory.create(target) as db:
        db.create(Record({"title": "mine"}, id="zz-own"))
    assert run(capsys, "--source", source, "--target", target)[0] == 0
    assert count(target) == N + 1
    code, out, err = run(capsys, "--source", source, "--target", target, "--rollback")
    assert code == 0, err
    assert f"{N} of {N} records removed" in out
    with DatabaseFactory.create(target) as db:
        assert [r.id for r in db.search()] == ["zz-own"]
    assert count(source) == N


def test_json_is_one_document(
    capsys: pytest.CaptureFixture[str], source: str, tmp_path: Path
) -> None:
    target = f"faiss:///{tmp_path / 'f'}"
    argv = ["--source", source, "--target", target, "--create-target", "--verify", "--json"]
    code, out, err = run(capsys, *argv, "--probes", "5", "--k", "3")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["ok"] is True and doc["action"] == "copy"
    assert doc["migration"]["written"] == N
    assert doc["verify"]["ok"] is True and doc["verify"]["counts"] == {"source": N, "target": N}
    assert doc["verify"]["probes"]["emb"]["probes"] == 5


def test_verify_only_reports_differences_by_id_and_exits_1(
    capsys: pytest.CaptureFixture[str], source: str, tmp_path: Path
) -> None:
    target = f"sqlite:///{tmp_path / 'target.db'}"
    assert run(capsys, "--source", source, "--target", target, "--create-target")[0] == 0
    with DatabaseFactory.create(target) as db:
        db.delete("r003")
        r = db.read("r010")
        assert r is not None
        r["n"] = 1000
        db.update("r010", r)
    code, out, _ = run(capsys, "--source", source, "--target", target, "--verify-only")
    assert code == 1
    assert "missing: r003" in out and "different: r010" in out and "r010 differs in n" in out
    assert "verify: FAILED" in out
    code, out, _ = run(capsys, "--source", source, "--target", target, "--verify-only", "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["ok"] is False and doc["verify"]["missing"] == {"count": 1, "ids": ["r003"]}


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--verify", "--dry-run"], "--verify"),
        (["--dry-run", "--rollback"], "--dry-run, --rollback"),
        (["--probes", "3"], "--probes"),
        (["--rollback", "--filter", "{}"], "--filter"),
        (["--embedder", "hashing"], "--embedder"),
        (["--verify", "--min-recall", "2"], "--min-recall"),
        (["--verify", "--probes", "-1"], "--probes"),
        (["--batch-size", "0"], "--batch-size"),
        (["--text-fields", "title", "--vector-field", "e"], "--target"),
        (["--filter", "{nope"], "--filter"),
        (["--bogus"], "--bogus"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(
    capsys: pytest.CaptureFixture[str], source: str, tmp_path: Path, extra: list[str], flag: str
) -> None:
    target = f"sqlite:///{tmp_path / 'target.db'}"
    DatabaseFactory.create(target).close()
    code, out, err = run(capsys, "--source", source, "--target", target, *extra)
    assert code == 2 and out == ""
    assert flag in err and err.count("\n") == 1


def test_no_mode_and_a_lone_move_flag_are_usage_errors(
    capsys: pytest.CaptureFixture[str], source: str
) -> None:
    code, _, err = run(capsys, "--source", source)
    assert code == 2 and "nothing to do" in err
    code, _, err = run(capsys, "--source", source, "--verify")
    assert code == 2 and "--verify needs --target" in err


def test_passwords_are_never_printed(capsys: pytest.CaptureFixture[str], source: str) -> None:
    secret = "s3cret-pw"
    target = f"postgresql://someone:{secret}@127.0.0.1:1/nodb"  # nothing listens on port 1
    for extra in ([], ["--json"], ["--verify-only"]):
        code, out, err = run(capsys, "--source", source, "--target", target, *extra)
        assert code == 2
        assert secret not in out + err
        assert "Traceback" not in err


def test_model_upgrade_through_the_command(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Add vectors, upgrade them beside the old field, switch, switch back: one command,
    the mode chosen by the flags; the upgrade flags refuse another mode's flags."""
    url = f"sqlite:///{tmp_path}/texts.db"
    with DatabaseFactory.create(url) as db:
        db.create_batch(
            [Record({"title": f"note {i} on topic {i % 3}"}, id=f"t{i}") for i in range(12)]
        )
    add = ("--source", url, "--text-fields", "title", "--vector-field", "emb")
    assert run(capsys, *add, "--embedder", "hashing:16", "--json")[0] == 0
    status, out, _ = run(
        capsys,
        "--source",
        url,
        "--upgrade",
        "emb",
        "--new-field",
        "emb2",
        "--embedder",
        "hashing:24",
        "--json",
    )
    doc = json.loads(out)
    assert status == 0 and doc["result"]["embedded"] == 12 and doc["default_field"] == "emb"
    status, out, _ = run(capsys, "--source", url, "--switch", "emb2", "--json")
    assert status == 0 and json.loads(out) == {
        "source": url,
        "action": "switch",
        "previous": "emb",
        "default_field": "emb2",
    }
    with DatabaseFactory.create(url) as db:
        hits = db.vector_search(np.ones(24, np.float32), k=3)  # no field=: the default
        assert len(hits) == 3 and hits[0].record["emb2"].shape == (24,)
    status, out, _ = run(capsys, "--source", url, "--switch-back")
    assert status == 0 and "'emb2' -> 'emb'" in out
    status, _, err = run(capsys, "--source", url, "--switch", "emb2", "--target", "memory://")
    assert status == 2 and "--target" in err
