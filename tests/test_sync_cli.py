"""The ``vector.sync`` and ``vector.migrate`` commands, end to end on SQLite files.

Most tests call ``main(argv)`` in-process (fast, same code path as the command); a few run
``python -m ...`` as a user would, to check the module entry points, the one-line errors and
the closed-pipe exit. The embedder is always the real built-in hashing embedder; the
interruption test wraps it to raise ``KeyboardInterrupt`` at a chosen call, as Ctrl-C would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dataknobs_data import DatabaseFactory, Record
from dataknobs_data.testing import POSTGRES_URL_ENV, requires_extra
from dataknobs_data.vector.embedders import HashingEmbedder, get_embedder
from dataknobs_data.vector.migrate import VectorMigration
from dataknobs_data.vector.migrate import cli as migrate_cli
from dataknobs_data.vector.sync import VectorTextSynchronizer
from dataknobs_data.vector.sync import cli as sync_cli

pytestmark = requires_extra("sqlite")

SPEC = "hashing:32"


def make_db(path: Path, n: int = 20, scheme: str = "sqlite") -> str:
    """A store of ``n`` text-only records (``r000``... with title/body/views) and one record
    with no text (``blank``), by default a SQLite file; returns its URL."""
    # three slashes and an absolute path: the store is where the test put it, not in the cwd
    url = f"{scheme}:///{path / ('data.db' if scheme == 'sqlite' else 'store')}"
    with DatabaseFactory.create(url) as db:
        db.create_batch(
            [
                Record({"title": f"title {i}", "body": f"body {i}", "views": i}, id=f"r{i:03d}")
                for i in range(n)
            ]
        )
        db.create(Record({"views": 0}, id="blank"))
    return url


def sync(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = sync_cli.main(["--no-progress", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def sync_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code, out, err = sync(capsys, *argv, "--json")
    assert err == ""
    return code, json.loads(out)


def migrate(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = migrate_cli.main(["--no-progress", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def set_rule(capsys: pytest.CaptureFixture[str], url: str, *extra: str) -> dict[str, Any]:
    code, doc = sync_json(
        capsys,
        "--database",
        url,
        "--set-rule",
        "embedding",
        "--sources",
        "title,body",
        "--embedder",
        SPEC,
        *extra,
    )
    assert code == 0
    return doc


def edit(url: str, rid: str, **changes: Any) -> None:
    """A write through the library by another "process" (a fresh database object)."""
    with DatabaseFactory.create(url) as db:
        rec = db.read(rid)
        assert rec is not None
        for name, value in changes.items():
            rec[name] = value
        assert db.update(rid, rec)


# -- rules --------------------------------------------------------------------------------------


def test_no_rules_is_clean_and_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = make_db(tmp_path)
    code, out, _ = sync(capsys, "--database", url, "--check-updates")
    assert code == 0
    assert "no vectorizing rules" in out


def test_set_list_and_remove_a_rule(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = make_db(tmp_path)
    doc = set_rule(capsys, url, "--mode", "manual", "--template", "{title}: {body}")
    assert doc["rule"]["sources"] == ["title", "body"]
    assert doc["rule"]["embedder"]["spec"] == SPEC
    assert doc["rule"]["embedder"]["dimensions"] == 32
    assert (doc["rule"]["mode"], doc["rule"]["template"]) == ("manual", "{title}: {body}")
    # what became stale: every record with text lacks a vector; the blank one has no text
    fields = doc["check"]["fields"]["embedding"]
    assert (fields["missing"], fields["empty"], fields["current"]) == (20, 1, 0)

    code, out, _ = sync(capsys, "--database", url, "--list-rules")
    assert code == 0
    assert "embedding  title+body  manual" in out
    assert SPEC in out
    code, listed = sync_json(capsys, "--database", url, "--list-rules")
    assert listed["rules"]["embedding"] == doc["rule"]

    code, out, _ = sync(capsys, "--database", url, "--remove-rule", "embedding")
    assert code == 0 and "removed the rule for 'embedding'" in out
    code, listed = sync_json(capsys, "--database", url, "--list-rules")
    assert listed["rules"] == {}
    code, out, err = sync(capsys, "--database", url, "--remove-rule", "embedding")
    assert (code, out) == (2, "")
    assert "has no vectorizing rule" in err


def test_set_rule_text_output_reports_what_became_stale(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = make_db(tmp_path, n=5)
    code, out, _ = sync(
        capsys, "--database", url, "--set-rule", "embedding", "--sources", "title",
        "--embedder", SPEC,
    )  # fmt: skip
    assert code == 0
    assert "stored: title -> dataknobs-hashing@1 (32 dims), mode deferred" in out
    assert "5 of 6 records now need a vector for 'embedding'" in out


# -- check and fix ------------------------------------------------------------------------------


def test_check_fix_and_a_second_fix_embeds_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = make_db(tmp_path)
    set_rule(capsys, url)
    code, doc = sync_json(capsys, "--database", url, "--check-updates")
    assert code == sync_cli.EXIT_WORK
    assert set(doc) == {"database", "method", "check", "fix", "fixed_by", "after", "clean"}
    assert (doc["fix"], doc["fixed_by"], doc["after"], doc["clean"]) == (None, None, None, False)
    assert doc["check"]["records"] == 21
    assert doc["check"]["fields"]["embedding"]["missing"] == 20

    code, doc = sync_json(capsys, "--database", url, "--check-updates", "--auto-fix")
    assert code == 0 and doc["clean"] is True
    assert doc["fixed_by"] == "bulk_sync"
    fix = doc["fix"]["embedding"]
    assert (fix["embedded"], fix["written"], fix["failed"]) == (20, 20, 0)
    after = doc["after"]["fields"]["embedding"]
    assert (after["current"], after["empty"], after["missing"]) == (20, 1, 0)

    code, doc = sync_json(capsys, "--database", url, "--check-updates", "--auto-fix")
    assert code == 0
    assert (doc["fix"]["embedding"]["embedded"], doc["fix"]["embedding"]["written"]) == (0, 0)
    code, out, _ = sync(capsys, "--database", url, "--check-updates")
    assert code == 0 and "clean: every vector is current" in out

    # the vectors are the rule's embedder's, made from the rule's text
    with DatabaseFactory.create(url) as db:
        rec = db.read("r007")
        assert rec is not None
        want = get_embedder(SPEC).embed_one("title 7\n\nbody 7")
        assert np.allclose(rec.fields["embedding"].value, want)


def test_only_source_edits_need_work_and_marks_find_them(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = make_db(tmp_path)
    set_rule(capsys, url)  # deferred: writes through the library leave marks
    assert sync(capsys, "--database", url, "--check-updates", "--auto-fix")[0] == 0
    edit(url, "r003", views=99)  # not a source
    edit(url, "r004", body="a new body")  # a source
    for method in ("marks", "full"):
        code, doc = sync_json(capsys, "--database", url, "--check-updates", "--method", method)
        assert code == sync_cli.EXIT_WORK, method
        field = doc["check"]["fields"]["embedding"]
        assert (field["pending"], field["stale"], field["missing"]) == (1, 0, 0), method
        assert field["ids"]["pending"] == ["r004"]
    code, out, _ = sync(capsys, "--database", url, "--check-updates", "--method", "marks")
    assert "work remaining: 1 vector(s) to (re)make; run with --auto-fix" in out
    code, doc = sync_json(
        capsys, "--database", url, "--check-updates", "--auto-fix", "--method", "marks"
    )
    assert code == 0
    # trusting the marks, the vectorizer drains them: it reads the one marked record only
    assert doc["fixed_by"] == "vectorizer"
    assert (doc["fix"]["embedding"]["records"], doc["fix"]["embedding"]["embedded"]) == (1, 1)
    assert doc["after"]["fields"]["embedding"]["pending"] == 0


def test_field_and_filter_narrow_the_check(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = make_db(tmp_path)
    set_rule(capsys, url)
    where = json.dumps({"field": "views", "op": "<", "value": 5})
    code, doc = sync_json(
        capsys, "--database", url, "--check-updates", "--field", "embedding", "--filter", where
    )
    assert code == sync_cli.EXIT_WORK
    # r000..r004 and the blank record (views 0)
    assert doc["check"]["records"] == 6
    code, doc = sync_json(
        capsys, "--database", url, "--check-updates", "--auto-fix", "--filter", where
    )
    assert code == 0 and doc["fix"]["embedding"]["embedded"] == 5
    code, doc = sync_json(capsys, "--database", url, "--check-updates")
    assert doc["check"]["fields"]["embedding"]["missing"] == 15  # the rest is untouched
    code, _, err = sync(capsys, "--database", url, "--check-updates", "--field", "nope")
    assert code == 2 and "'nope'" in err and "has no vectorizing rule" in err


def test_a_rule_without_a_spec_needs_an_embedder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = make_db(tmp_path, n=3)
    embedder = HashingEmbedder(32)
    with DatabaseFactory.create(url) as db:  # made in code, without a spec
        synchronizer = VectorTextSynchronizer(db, embedder)
        synchronizer.set_rule(synchronizer.rule_for("embedding", ["title"]), check=False)
    code, out, err = sync(capsys, "--database", url, "--check-updates", "--auto-fix")
    assert (code, out) == (2, "")
    assert err.count("\n") == 1
    assert "the rule for 'embedding' stores no embedder spec" in err
    assert "pass --embedder SPEC" in err

    code, out, err = sync(
        capsys, "--database", url, "--check-updates", "--auto-fix", "--embedder", "hashing:16"
    )
    assert code == 2 and "(16 dims), but the rule for 'embedding' needs" in err

    code, doc = sync_json(
        capsys, "--database", url, "--check-updates", "--auto-fix", "--embedder", SPEC
    )
    assert code == 0 and doc["fix"]["embedding"]["embedded"] == 3


@pytest.mark.parametrize(
    "scheme",
    [
        pytest.param("faiss", marks=requires_extra("faiss")),
        pytest.param("chroma", marks=requires_extra("chroma")),
    ],
)
def test_the_embedded_stores_keep_rules_and_marks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, scheme: str
) -> None:
    """faiss and chroma directories: the rule survives the process, a source edit leaves a
    mark the marks check finds, and the fix drains it."""
    url = make_db(tmp_path, n=6, scheme=scheme)
    set_rule(capsys, url)
    code, doc = sync_json(capsys, "--database", url, "--check-updates", "--auto-fix")
    assert code == 0 and doc["fix"]["embedding"]["embedded"] == 6
    edit(url, "r002", title="renamed")
    code, doc = sync_json(capsys, "--database", url, "--check-updates", "--method", "marks")
    assert code == sync_cli.EXIT_WORK
    assert doc["check"]["fields"]["embedding"]["ids"] == {"pending": ["r002"]}
    code, doc = sync_json(capsys, "--database", url, "--check-updates", "--auto-fix")
    assert code == 0 and doc["fix"]["embedding"]["embedded"] == 1


# -- usage errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "nothing to do"),
        (["--list-rules", "--sources", "a"], "--sources: not used with this action"),
        (["--check-updates", "--retry-failed"], "--retry-failed: not used with --auto-fix"),
        (["--set-rule", "e", "--sources", "title"], "--set-rule needs --embedder"),
        (["--set-rule", "e", "--embedder", SPEC], "--set-rule needs --sources"),
        (["--check-updates", "--filter", "{nope"], "--filter is not valid JSON"),
        (["--check-updates", "--batch-size", "0"], "expected an integer >= 1"),
        (["--check-updates", "--auto-fix", "--embedder", "bogus"], "--embedder: unknown"),
        (["--check-updates", "--list-rules"], "not allowed with argument"),
    ],
)
def test_usage_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    url = make_db(tmp_path, n=1)
    code, out, err = sync(capsys, "--database", url, *argv)
    assert (code, out) == (2, "")
    assert err.startswith("python -m dataknobs_data.vector.sync: error: ")
    assert err.count("\n") == 1
    assert message in err


def test_a_missing_sqlite_file_is_refused_not_created(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "typo.db"
    code, _, err = sync(capsys, "--database", f"sqlite:///{target}", "--check-updates")
    assert code == 2 and "no SQLite database at" in err
    assert not target.exists()


def test_a_password_never_shows(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = sync(
        capsys, "--database", "postgresql://u:s3cr3t@127.0.0.1:1/db", "--check-updates"
    )
    assert (code, out) == (2, "")
    assert "s3cr3t" not in err and "***" in err
    assert err.count("\n") == 1  # the driver's multi-line message on one line


# -- migrate ------------------------------------------------------------------------------------


def test_migrate_adds_vectors_and_a_rerun_embeds_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = make_db(tmp_path, n=30)
    argv = ["--source", url, "--text-fields", "title,body", "--vector-field", "embedding"]
    code, out, err = migrate(capsys, *argv, "--batch-size", "7", "--embedder", SPEC)
    assert code == 0, err
    assert "31 records read, 'embedding' from title + body with dataknobs-hashing@1" in out
    assert "embedding        30       0       30       0" in out
    code, out, _ = migrate(capsys, *argv, "--embedder", SPEC, "--json")
    doc = json.loads(out)
    assert code == 0
    assert (doc["result"]["embedded"], doc["result"]["written"]) == (0, 0)
    # the rule (with its spec) is stored: the sync command checks and fixes without code
    code, out, _ = sync(capsys, "--database", url, "--check-updates")
    assert code == 0 and "clean: every vector is current" in out
    code, listed = sync_json(capsys, "--database", url, "--list-rules")
    assert listed["rules"]["embedding"]["mode"] == "manual"
    assert listed["rules"]["embedding"]["embedder"]["spec"] == SPEC


def test_migrate_refuses_another_embedder_for_the_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    url = make_db(tmp_path, n=3)
    argv = ["--source", url, "--text-fields", "title", "--vector-field", "embedding"]
    assert migrate(capsys, *argv, "--embedder", SPEC)[0] == 0
    code, out, err = migrate(capsys, *argv, "--embedder", "hashing:16")
    assert (code, out) == (2, "")
    assert "'embedding'" in err and "32" in err and "16" in err


def test_ctrl_c_leaves_a_resumable_state(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C during the third embedder call: the two finished pages are stored, the
    command exits 130 saying how to continue, and the re-run embeds exactly the rest."""
    url = make_db(tmp_path, n=50)

    class Interrupted(HashingEmbedder):
        calls = 0

        def embed(self, texts: Any) -> Any:
            Interrupted.calls += 1
            if Interrupted.calls == 3:
                raise KeyboardInterrupt
            return super().embed(texts)

    monkeypatch.setattr(sync_cli, "get_embedder", lambda spec: Interrupted(32))
    argv = ["--source", url, "--text-fields", "title,body", "--vector-field", "embedding"]
    code, _, err = migrate(capsys, *argv, "--batch-size", "10", "--embedder", SPEC)
    assert code == sync_cli.EXIT_INTERRUPTED
    assert "re-run to continue" in err and "Traceback" not in err
    with DatabaseFactory.create(url) as db:
        # pages of 10 in id order: blank (no text) + r000..r008, then r009..r018
        assert sum("embedding" in r for r in db.search()) == 19
    monkeypatch.undo()
    code, out, _ = migrate(capsys, *argv, "--batch-size", "10", "--embedder", SPEC, "--json")
    assert code == 0
    assert json.loads(out)["result"]["embedded"] == 31


def test_vector_migration_api(tmp_path: Path) -> None:
    url = make_db(tmp_path, n=4)
    with DatabaseFactory.create(url) as db:
        result = VectorMigration().add_vectors_to_existing(
            db, "title, body", "embedding", HashingEmbedder(32), batch_size=2, mode="deferred"
        )
        # pages of 2 in id order: [blank, r000], [r001, r002], [r003]: one call per page
        assert (result.records, result.embedded, result.written, result.calls) == (5, 4, 4, 3)
        rule = VectorTextSynchronizer(db).rules["embedding"]
        assert rule.sources == ("title", "body") and rule.mode == "deferred"
        assert rule.embedder.spec == "hashing:32"  # derived for the built-in embedder
        again = VectorMigration().add_vectors_to_existing(
            db, ["title", "body"], "embedding", HashingEmbedder(32), mode="deferred"
        )
        assert (again.embedded, again.written) == (0, 0)


# -- real processes -----------------------------------------------------------------------------


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONIOENCODING": "utf-8"}


def _python_m(module: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *argv],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=_env(),
        check=False,
        timeout=300,
    )


def test_python_dash_m_commands(tmp_path: Path) -> None:
    url = make_db(tmp_path, n=5)
    proc = _python_m(
        "dataknobs_data.vector.migrate",
        "--source", url, "--text-fields", "title,body", "--vector-field", "embedding",
        "--embedder", SPEC, "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["result"]["embedded"] == 5
    edit(url, "r001", title="renamed")  # manual rule: no mark, but the full check sees it
    proc = _python_m("dataknobs_data.vector.sync", "--database", url, "--check-updates")
    assert proc.returncode == 1, proc.stderr
    assert "embedding        4      1        0        0       0      1" in proc.stdout
    proc = _python_m("dataknobs_data.vector.sync", "--database", "nosuch://x", "--list-rules")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "unknown backend 'nosuch'" in proc.stderr


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    url = make_db(tmp_path, n=2)
    proc = subprocess.Popen(
        [sys.executable, "-m", "dataknobs_data.vector.sync", "--database", url, "--list-rules"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader goes away at once
    err = proc.stderr.read().decode()
    assert proc.wait() == 141, err
    assert err == ""


def test_postgres_end_to_end_with_the_url_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    """On a server: a URL with a password works and every output shows it masked; the rule
    is stored in the collection, the marks check finds a source edit, the fix drains it."""
    base = os.environ.get(POSTGRES_URL_ENV)
    if not base:
        pytest.skip(f"needs a PostgreSQL server: set {POSTGRES_URL_ENV}")
    scheme, rest = base.split("://", 1)
    userinfo, host = rest.split("@", 1)
    if ":" in userinfo:
        pytest.skip("the server URL already carries a password")
    joiner = "&" if "?" in host else "?"
    url = f"{scheme}://{userinfo}:pw-s3cr3t@{host}{joiner}collection=t_{uuid.uuid4().hex[:16]}"
    try:
        with DatabaseFactory.create(url) as db:
            db.create_batch([Record({"title": f"t{i}"}, id=f"r{i}") for i in range(5)])
        doc = set_rule(capsys, url)
        assert doc["check"]["fields"]["embedding"]["missing"] == 5
        code, doc = sync_json(capsys, "--database", url, "--check-updates", "--auto-fix")
        assert code == 0 and doc["fix"]["embedding"]["embedded"] == 5
        assert "pw-s3cr3t" not in json.dumps(doc)
        assert doc["database"].startswith(f"{scheme}://{userinfo}:***@")
        edit(url, "r3", title="renamed")
        code, out, err = sync(capsys, "--database", url, "--check-updates", "--method", "marks")
        assert code == sync_cli.EXIT_WORK
        assert "pw-s3cr3t" not in out + err and ":***@" in out
        code, doc = sync_json(
            capsys, "--database", url, "--check-updates", "--auto-fix", "--method", "marks"
        )
        assert (code, doc["fixed_by"], doc["fix"]["embedding"]["embedded"]) == (0, "vectorizer", 1)
    finally:
        DatabaseFactory.create(url, temporary=True).close()  # drops the collection
