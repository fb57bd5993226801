"""Tests for the offline stdlib docstring corpus."""

from __future__ import annotations

import inspect
import json.decoder
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dataknobs_data.corpus import CorpusDoc, CorpusStats, iter_stdlib_docstrings

EXCLUDED_PARTS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "ensurepip", "pydoc_data"}


@pytest.fixture(scope="module")
def stdlib_docs() -> list[CorpusDoc]:
    return list(iter_stdlib_docstrings())


def test_yields_many_well_formed_docs(stdlib_docs: list[CorpusDoc]) -> None:
    assert len(stdlib_docs) > 1000
    for doc in stdlib_docs:
        assert doc.kind in {"module", "class", "function"}
        assert len(doc.body) >= 20
        assert doc.body == doc.body.strip()
        assert doc.id.split("#")[0] == doc.title
        assert doc.title == doc.module or doc.title.startswith(doc.module + ".")
        assert not EXCLUDED_PARTS & set(doc.module.split("."))


def test_ids_are_unique(stdlib_docs: list[CorpusDoc]) -> None:
    ids = [doc.id for doc in stdlib_docs]
    assert len(ids) == len(set(ids))


def test_known_docstrings_are_present(stdlib_docs: list[CorpusDoc]) -> None:
    by_id = {doc.id: doc for doc in stdlib_docs}
    decode = by_id["json.decoder.JSONDecoder.decode"]
    assert decode.kind == "function"
    assert decode.module == "json.decoder"
    assert "JSON document" in decode.body
    # Importing json (unlike arbitrary stdlib modules) is side-effect free.
    assert decode.body == inspect.cleandoc(json.decoder.JSONDecoder.decode.__doc__ or "")
    assert by_id["json"].kind == "module"
    assert by_id["json.decoder.JSONDecoder"].kind == "class"


def test_order_is_deterministic(stdlib_docs: list[CorpusDoc]) -> None:
    again = list(iter_stdlib_docstrings())
    assert again == stdlib_docs


def test_limit_takes_a_prefix(stdlib_docs: list[CorpusDoc]) -> None:
    assert list(iter_stdlib_docstrings(limit=7)) == stdlib_docs[:7]
    assert list(iter_stdlib_docstrings(limit=0)) == []
    with pytest.raises(ValueError, match="limit"):
        list(iter_stdlib_docstrings(limit=-1))


def test_min_length_filters(stdlib_docs: list[CorpusDoc]) -> None:
    long_docs = list(iter_stdlib_docstrings(min_length=500, limit=200))
    assert long_docs
    assert all(len(doc.body) >= 500 for doc in long_docs)


def test_no_stdlib_module_is_imported() -> None:
    # A fresh interpreter, so modules imported by other tests cannot mask a leak.
    script = textwrap.dedent(
        """
        import sys
        from dataknobs_data.corpus import iter_stdlib_docstrings
        before = set(sys.modules)
        modules = {doc.module for doc in iter_stdlib_docstrings(min_length=0)}
        assert "antigravity" in modules, sorted(modules)[:20]
        print(" ".join(sorted(set(sys.modules) - before)))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    gained = set(proc.stdout.split())
    assert not gained & {"antigravity", "this", "turtle", "tkinter", "webbrowser", "idlelib"}
    # sysconfig may lazily load its platform data module; nothing else is allowed.
    assert {name for name in gained if not name.startswith("_sysconfigdata")} == set()


def _write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text), encoding="utf-8")


def test_walk_rules_on_a_synthetic_tree(tmp_path: Path) -> None:
    _write(
        tmp_path / "pkg" / "__init__.py",
        '''
        """Package docstring that is long enough."""
        import sys

        if sys.platform == "win32":
            def helper():
                """Windows flavour of the helper function."""
        else:
            def helper():
                """POSIX flavour of the helper function."""

        class Outer:
            """Outer class docstring, long enough."""

            class Inner:
                """Inner class docstring, long enough."""

            async def method(self):
                """An async method with a docstring."""

                def local():
                    """Local helper inside a function body: skipped."""

        def short():
            """Too short."""
        ''',
    )
    _write(tmp_path / "alpha.py", '"""Alpha module docstring, long enough."""\n')
    _write(tmp_path / "broken.py", "def oops(:\n")
    _write(tmp_path / "latin.py", b"# -*- coding: utf-8 -*-\n'''caf\xe9 docstring here!!!'''\n")
    _write(tmp_path / "tests" / "test_x.py", '"""Test module docstring, long enough."""\n')
    _write(tmp_path / "__pycache__" / "x.py", '"""Cache module docstring, long enough."""\n')
    _write(tmp_path / "not-a-module.py", '"""Dashed name docstring, long enough."""\n')
    _write(tmp_path / "notes.txt", "not python")

    stats = CorpusStats()
    docs = list(iter_stdlib_docstrings(root=tmp_path, stats=stats))

    assert [(d.id, d.kind) for d in docs] == [
        ("alpha", "module"),
        ("pkg", "module"),
        ("pkg.helper", "function"),
        ("pkg.helper#2", "function"),
        ("pkg.Outer", "class"),
        ("pkg.Outer.Inner", "class"),
        ("pkg.Outer.method", "function"),
    ]
    assert docs[3].title == "pkg.helper"
    assert docs[3].body == "POSIX flavour of the helper function."
    assert all(d.module in {"alpha", "pkg"} for d in docs)
    assert stats == CorpusStats(files_parsed=2, files_skipped=2, docs_yielded=7)
