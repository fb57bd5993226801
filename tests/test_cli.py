"""Tests for the ``dataknobs-data`` CLI and the ingestion pipeline behind it.

Everything runs against the real memory backend and the real stdlib corpus. The corpus order
(sorted file paths) differs between Python versions, so tests that need the ``json`` package
compute the smallest ``--limit`` that includes it instead of hard-coding one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from dataknobs_data import DatabaseFactory, FieldType, SyncDatabase, VectorField
from dataknobs_data.cli import main
from dataknobs_data.corpus import iter_stdlib_docstrings
from dataknobs_data.pipeline import (
    CorpusManifest,
    corpus_records,
    ensure_corpus,
    progress_bar,
    read_manifest,
)
from dataknobs_data.testing import missing_extra, requires_extra
from dataknobs_data.vector.embedders import HashingEmbedder
from dataknobs_data.vector.exceptions import DimensionMismatchError, MixedEmbeddingModelsError

SMALL = 300
JSON_QUERY = "decode a JSON document"
STARTS_JSON = {"field": "module", "op": "starts_with", "value": "json"}


def _is_json_module(module: str) -> bool:
    return module == "json" or module.startswith("json.")


@pytest.fixture(scope="module")
def json_limit() -> int:
    """The smallest corpus prefix that holds every docstring of the ``json`` package."""
    last = None
    for i, doc in enumerate(iter_stdlib_docstrings()):
        if _is_json_module(doc.module):
            last = i
    assert last is not None, "this Python's stdlib has no json package docstrings"
    return last + 1


@pytest.fixture
def db() -> SyncDatabase:
    return DatabaseFactory.create("memory://")


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _search_json(capsys: pytest.CaptureFixture[str], *argv: str) -> list[dict[str, object]]:
    code, out, err = _run(capsys, "search", *argv, "--json", "-q")
    assert code == 0, err
    hits = json.loads(out)["hits"]
    assert isinstance(hits, list)
    return hits


# -- search ----------------------------------------------------------------------------------


def test_search_prints_ranked_hits_with_descending_scores(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = _run(
        capsys, "search", "open a file for reading", "--limit", str(SMALL), "-k", "5"
    )
    assert code == 0, err
    header, *rows = out.strip().splitlines()
    assert header.split()[:3] == ["rank", "score", "id"]
    assert len(rows) == 5
    docs = {d.id: d for d in iter_stdlib_docstrings(limit=SMALL)}
    scores = []
    for expected_rank, row in enumerate(rows, start=1):
        rank, score, doc_id, summary = row.split(maxsplit=3)
        assert int(rank) == expected_rank
        assert doc_id in docs  # only the ingested prefix is searched
        first_line = docs[doc_id].body.splitlines()[0].strip()
        assert first_line.startswith(summary.removesuffix("..."))
        scores.append(float(score))
    assert scores == sorted(scores, reverse=True)
    assert f"{SMALL} stdlib docs ({SMALL} embedded)" in err
    assert "docs/s" in err


def test_json_query_finds_the_json_package(
    capsys: pytest.CaptureFixture[str], json_limit: int
) -> None:
    hits = _search_json(capsys, JSON_QUERY, "--limit", str(json_limit), "-k", "5")
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    scores = [float(h["score"]) for h in hits]  # type: ignore[arg-type]
    assert scores == sorted(scores, reverse=True)
    assert any(_is_json_module(str(h["module"])) for h in hits), hits


def test_filter_restricts_hits_and_is_echoed(
    capsys: pytest.CaptureFixture[str], json_limit: int
) -> None:
    # json among two large unrelated packages: the filter decides which docs compete.
    among = {
        "or": [
            STARTS_JSON,
            {"field": "module", "op": "starts_with", "value": "email"},
            {"field": "module", "op": "starts_with", "value": "asyncio"},
        ]
    }
    code, out, err = _run(
        capsys,
        "search",
        JSON_QUERY,
        "--limit",
        str(json_limit),
        "-k",
        "8",
        "--filter",
        json.dumps(among),
        "--json",
        "-q",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["filter"] == among
    hits = result["hits"]
    assert len(hits) == 8
    assert all(str(h["module"]).split(".")[0] in {"json", "email", "asyncio"} for h in hits)
    assert _is_json_module(hits[0]["module"])

    classes = _search_json(
        capsys,
        JSON_QUERY,
        "--limit",
        str(json_limit),
        "--filter",
        json.dumps({"and": [STARTS_JSON, {"field": "kind", "op": "=", "value": "class"}]}),
    )
    assert classes
    assert all(h["kind"] == "class" and _is_json_module(str(h["module"])) for h in classes)


def test_metric_option_changes_scoring(capsys: pytest.CaptureFixture[str]) -> None:
    hits = _search_json(capsys, "parse a date", "--limit", "200", "-k", "3", "--metric", "l2")
    for h in hits:  # euclidean: score = 1 / (1 + distance)
        assert float(h["score"]) == pytest.approx(1 / (1 + float(h["distance"])))  # type: ignore[arg-type]


# -- user errors: one line on stderr, exit status 2 ------------------------------------------


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["search", "x", "--filter", '{"field": "kind",'], "--filter is not valid JSON"),
        (["search", "x", "--filter", '{"field": "kind", "op": "frob", "value": 1}'], "frob"),
        (["search", "x", "--filter", '{"field": "modul", "op": "=", "value": "a"}'], "'modul'"),
        (["search", "x", "--filter", "[1, 2]"], "expected an object"),
        (["search", "x", "--db", "nosuch://here"], "unknown backend 'nosuch'"),
        (
            ["search", "x", "--db", "postgresql://h/db"],
            # without the driver the one line says what to install instead
            "postgres: cannot connect" if missing_extra("postgres") is None else "[postgres]",
        ),
        (["search", "x", "-k", "0"], "argument -k"),
        (["search", "x", "--metric", "hamming"], "unknown distance metric 'hamming'"),
        (["search", "x", "--embedder", "word2vec"], "unknown embedder spec"),
        (["ingest", "--limit", "-3"], "argument --limit"),
        (["frobnicate"], "invalid choice"),
        ([], "required"),
    ],
)
def test_user_errors_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], argv: list[str], needle: str
) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("dataknobs-data: error: ")
    assert needle in err


def test_help_returns_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "search", "--help")
    assert code == 0
    assert "--filter" in out


# -- other commands -----------------------------------------------------------------------


def test_backends_lists_memory_as_available(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "backends")
    assert code == 0
    rows = {line.split()[0]: line.split(maxsplit=2)[1:] for line in out.splitlines()[1:]}
    assert rows["memory"] == ["yes", "ready"]
    assert {"sqlite", "postgresql", "elasticsearch", "faiss", "chroma"} <= rows.keys()


def test_info_on_an_empty_store(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "info", "--db", "memory://")
    assert code == 0
    assert "records: 0" in out
    assert "vector fields: 0" in out


@requires_extra("sqlite")  # the default store is a SQLite file
def test_ingest_reports_counts_and_rate(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "ingest", "--limit", "120", "--batch-size", "50", "-q")
    assert code == 0
    assert out.startswith("120 stdlib docs in sqlite:///")  # the default store is a file
    assert ": 120 embedded, 120 read in " in out and "docs/s" in out


@requires_extra("sqlite")
def test_default_store_is_a_sqlite_file_reused_without_reembedding(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The second command finds the corpus in the default SQLite file and embeds nothing."""
    code, out, _ = _run(capsys, "ingest", "--limit", "80", "-q")
    assert code == 0 and ": 80 embedded" in out
    stored = tmp_path / "cache" / "dataknobs-data" / "stdlib.db"
    assert stored.exists()
    code, out, _ = _run(capsys, "ingest", "--limit", "80", "-q")
    assert code == 0 and "already holds 80 stdlib docs; nothing to do" in out
    hits = _search_json(capsys, "parse", "--limit", "80", "-k", "3")
    assert len(hits) == 3


# -- the pipeline --------------------------------------------------------------------------


def test_corpus_records_batches_and_provenance() -> None:
    docs = list(iter_stdlib_docstrings(limit=150))
    embedder = HashingEmbedder(64)
    batches = list(corpus_records(docs, embedder, batch_size=64))
    assert [len(b) for b in batches] == [64, 64, 22]
    records = [r for b in batches for r in b]
    assert [r.id for r in records] == [d.id for d in docs]
    for rec, doc in zip(records, docs, strict=True):
        vec = rec.get_field("embedding")
        assert isinstance(vec, VectorField)
        assert (vec.model_name, vec.model_version) == ("dataknobs-hashing", "1")
        assert vec.source_field == "body"
        assert vec.source_hash is not None
        assert rec.fields["body"].type is FieldType.TEXT
        assert (rec["module"], rec["kind"], rec["corpus"]) == (doc.module, doc.kind, "stdlib")
        np.testing.assert_array_equal(vec.value, embedder.embed_one(doc.body))


def test_ensure_corpus_twice_embeds_nothing_the_second_time(db: SyncDatabase) -> None:
    embedder = HashingEmbedder()
    first = ensure_corpus(db, embedder, limit=SMALL)
    assert (first.skipped, first.embedded, first.docs) == (False, SMALL, SMALL)
    second = ensure_corpus(db, embedder, limit=SMALL)
    assert (second.skipped, second.embedded, second.docs) == (True, 0, SMALL)
    smaller = ensure_corpus(db, embedder, limit=SMALL // 2)  # a prefix of what is there
    assert smaller.skipped
    assert db.count() == SMALL + 1  # the documents plus the manifest


def test_ensure_corpus_extends_and_resumes_without_duplicates(db: SyncDatabase) -> None:
    embedder = HashingEmbedder()
    ensure_corpus(db, embedder, limit=100)
    grown = ensure_corpus(db, embedder, limit=250, batch_size=64)
    assert (grown.skipped, grown.processed, grown.embedded, grown.docs) == (False, 250, 150, 250)

    # Simulate a crash part-way through a later run: some records and the manifest are gone.
    ids = [d.id for d in iter_stdlib_docstrings(limit=250)]
    db.delete_batch([*ids[200:207], CorpusManifest.record_id("stdlib")])
    resumed = ensure_corpus(db, embedder, limit=250)
    assert (resumed.skipped, resumed.embedded, resumed.docs) == (False, 7, 250)
    assert db.count({"field": "corpus", "op": "=", "value": "stdlib"}) == 250
    manifest = read_manifest(db, "stdlib")
    assert manifest is not None
    assert (manifest.docs, manifest.complete, manifest.model_name) == (
        250,
        False,
        embedder.model_name,
    )
    assert ensure_corpus(db, embedder, limit=250).skipped


def test_missing_records_are_noticed_even_with_a_manifest(db: SyncDatabase) -> None:
    embedder = HashingEmbedder()
    ensure_corpus(db, embedder, limit=80)
    victim = next(iter_stdlib_docstrings(limit=1)).id
    db.delete(victim)
    again = ensure_corpus(db, embedder, limit=80)
    assert (again.skipped, again.embedded) == (False, 1)
    assert db.exists(victim)


def test_ensure_corpus_force_re_embeds(db: SyncDatabase) -> None:
    embedder = HashingEmbedder()
    ensure_corpus(db, embedder, limit=50)
    forced = ensure_corpus(db, embedder, limit=50, force=True)
    assert (forced.skipped, forced.embedded, forced.docs) == (False, 50, 50)


class _OtherModel:
    """A different embedding model with the same dimensions as the default hashing one."""

    model_name = "other-model"
    model_version = "7"
    dimensions = 384

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return HashingEmbedder().embed([t[::-1] for t in texts])

    def embed_one(self, text: str) -> np.ndarray:
        return self.embed([text])[0]


def test_a_store_never_mixes_models(db: SyncDatabase) -> None:
    ensure_corpus(db, HashingEmbedder(), limit=20)
    with pytest.raises(MixedEmbeddingModelsError, match="other-model@7"):
        ensure_corpus(db, _OtherModel(), limit=20)
    with pytest.raises(DimensionMismatchError, match="expected 384 dimensions, got 128"):
        ensure_corpus(db, HashingEmbedder(128), limit=20)
    assert db.count() == 21  # nothing was written by the refused calls


def test_progress_works_without_tqdm(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("dataknobs_data.pipeline._tqdm", lambda: None)
    with progress_bar(30, "loading") as tick:
        for _ in range(3):
            tick(10)
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("loading: 30/30 docs (")


# -- a real process ---------------------------------------------------------------------------


def _subprocess(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    env.pop("DATAKNOBS_DB", None)
    return subprocess.run(
        [sys.executable, "-m", "dataknobs_data", *argv],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        check=False,
        timeout=300,
    )


def test_python_dash_m_search(json_limit: int) -> None:
    proc = _subprocess("search", JSON_QUERY, "--limit", str(json_limit), "-k", "5", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)  # progress and timing went to stderr, not stdout
    assert result["model"] == "dataknobs-hashing@1"
    assert any(_is_json_module(h["module"]) for h in result["hits"])
    assert f"{json_limit} stdlib docs ({json_limit} embedded)" in proc.stderr


def test_python_dash_m_user_error_has_no_traceback() -> None:
    proc = _subprocess("search", "x", "--db", "nosuch://")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("dataknobs-data: error: unknown backend 'nosuch'")


@pytest.mark.parametrize(
    "argv",
    [
        ["search", JSON_QUERY, "--db", "memory://", "--limit", "40", "-q", "--json"],
        ["search", JSON_QUERY, "--db", "memory://", "--limit", "40", "-q"],
        ["ingest", "--db", "memory://", "--limit", "20", "-q"],
        ["backends"],
        ["info", "--db", "memory://"],
    ],
    ids=["search-json", "search", "ingest", "backends", "info"],
)
def test_a_closed_pipe_ends_quietly(argv: list[str]) -> None:
    """Issue 11: ``dataknobs-data search ... --json | head -1`` ended in a BrokenPipeError
    traceback. The reader here closes the pipe before the command prints anything, so every
    write fails: the command must exit 141 (128 + SIGPIPE, what a shell reports for a writer
    whose reader left) with nothing on stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dataknobs_data", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader goes away at once
    err = proc.stderr.read().decode()
    assert proc.wait() == 141, err
    assert err == ""


def test_an_empty_query_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 11: an empty or whitespace query gave confident-looking hits."""
    for query in ("", "   "):
        code, out, err = _run(capsys, "search", query, "--db", "memory://", "-q")
        assert (code, out) == (2, "")
        assert "at least one word" in err
