"""Every script in ``examples/`` runs as a user would run it (a subprocess, offline, in a scratch
working directory) and prints what it claims to show.

Each example is listed in :data:`EXAMPLES` with the extra it needs and lines its output must
contain; an example without an entry fails :func:`test_every_example_is_checked`, so a new one
cannot land unchecked. Examples needing a missing extra skip, naming it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dataknobs_data.testing import skip_unless_extra

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES_DIR = ROOT / "examples"

#: example -> (the extra it needs or None, lines its output must contain)
EXAMPLES: dict[str, tuple[str | None, list[str]]] = {
    "basic_storage": (
        "sqlite",
        [
            "stored: 3",
            "refused: DuplicateRecordError",
            "read: dune Dune 1965",
            "after upserts: 5",
            "sf by year: ['solaris', 'dune', 'neuromancer']",
            "classics: ['dune', 'emma']",
            "deleted loaded: True | deleted again: False",
            "reopened: 4 records; Solaris",
        ],
    ),
    "vector_search": (
        None,
        [
            "query: 'decode a JSON document'",
            "  1. json ",
            "query: 'parse a date'",
            "  1. dates ",
            "euclidean best: dates",
            "provenance: dataknobs-hashing@1 | source field: text",
        ],
    ),
    "filtered_search": (
        "sqlite",
        [
            "english only    : a1(",
            "german or french: a5(0.34), a3(0.27)",
            "year 2019 only  : a1(0.74)",
        ],
    ),
    "full_text": (
        "sqlite",
        [
            "full text supported: True",
            "python dates         : n1(",
            "python dates, >= 2022: n2(",
            '"csv" OR NOT         : n3(',
            "creme brulee         : n4(",
            "no words: QueryError",
            "memory backend: UnsupportedError",
        ],
    ),
    "multi_backend": (
        None,
        ["memory  guides by year=['p4', 'p1', 'p2']", "identical answers: True"],
    ),
    "faiss_store": (
        "faiss",
        [
            "stored: 5 | english: 3",
            "refused: DuplicateRecordError | still stored: 5",
            "  s1 score=",
            "english only: ['s1', 's4', 's2']",
            "reopened: 5 vectors; best: s1",
        ],
    ),
    "chroma_store": (
        "chroma",
        [
            "  s1 score=",
            "not english: ['s3', 's5']",
            "s3 metadata after upsert: {'lang': 'de'}",
            "reopened: 5 vectors; best: s3",
        ],
    ),
    "bulk_load_resume": (
        "sqlite",
        [
            "first load died: the source went away at record 1234",
            "stored after the crash: 1000",
            "resumed: written=1500 skipped=1000 batches=5",
            "stored now: 2500 | distinct n: 2500",
        ],
    ),
    "migration": (
        "faiss",
        [
            "first run died before batch b2; target holds 2",
            "resumed from b1: read=4 written=4 skipped=0",
            "provenance kept: dataknobs-hashing@1 dims=32",
            "rule copied: ['emb']",
            "verify: ok=True compared=6",
            "verify: OK in",
            "command exit status: 0",
            "after rollback: target 0 | source 6",
            "upgrade: embedded=6 default=emb",
            "served by emb",
            "after switch: served by emb_v2 (48 dims)",
            "rolled back: served by emb; same answers: True",
        ],
    ),
    "synchronization": (
        "sqlite",
        [
            "set_rule: current=0 stale=0 missing=3 pending=0 failed=0 empty=1",
            "bulk_sync: embedded=3 written=3 calls=1",
            "a2 pending: None",
            "a3 pending: ['embedding']",
            "check (marks): current=3 stale=0 missing=0 pending=1 failed=0 empty=0",
            "check (full):  current=2 stale=0 missing=0 pending=1 failed=0 empty=1",
            "vectorizer: records=1 embedded=1",
            "after: current=3 stale=0 missing=0 pending=0 failed=0 empty=1 | clean: True",
            "bulk_sync again: embedded=0 written=0",
            "clean: every vector is current",
            "exit status: 0",
        ],
    ),
}


def test_every_example_is_checked() -> None:
    assert sorted(p.stem for p in EXAMPLES_DIR.glob("*.py")) == sorted(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs_and_shows_what_it_says(name: str, tmp_path: Path) -> None:
    extra, expected = EXAMPLES[name]
    if extra is not None:
        skip_unless_extra(extra)
    script = EXAMPLES_DIR / f"{name}.py"
    if extra is not None:  # the docstring tells the reader what to install
        assert f'pip install "dataknobs-data[{extra}]"' in script.read_text()
    paths = [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for line in expected:
        assert any(out.startswith(line) or line in out for out in lines), (line, done.stdout)
    assert list(tmp_path.iterdir()) == []  # examples clean up after themselves
