"""Every ```python block of the README and of ``docs/`` runs, in order, one namespace per page
(sybil), in a scratch working directory, so the documentation cannot show code that fails.

Blocks that need a PostgreSQL server sit between
``<!-- skip: start if(not POSTGRES_URL, reason="...") -->`` and ``<!-- skip: end -->``: the
embedded run skips them, and :func:`test_server_blocks_run` runs each such page whole when
``DATAKNOBS_TEST_POSTGRES_URL`` names a server (as ``scripts/test`` and CI do). Set-up a reader
need not see goes in ``<!-- invisible-code-block: python -->`` comments, which run too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from unittest import SkipTest

import pytest

from dataknobs_data.testing import import_or_skip
from dataknobs_data.testing.backends import POSTGRES_URL_ENV

sybil = import_or_skip("docs", "sybil")
from sybil.example import NotEvaluated  # noqa: E402
from sybil.parsers.markdown import PythonCodeBlockParser, SkipParser  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
SERVER_MARK = re.compile(r"^<!-- skip: start if\(not POSTGRES_URL", re.M)
FENCE = re.compile(r"^```python$", re.M)


def run_page(page: Path, postgres_url: str | None) -> tuple[int, list[str]]:
    """Evaluate the page's examples in order: (```python blocks run, why others were skipped)."""
    document = sybil.Sybil(parsers=[PythonCodeBlockParser(), SkipParser()]).parse(page)
    document.namespace["POSTGRES_URL"] = postgres_url
    ran, skipped = 0, []
    for example in document.examples():
        fenced = document.text[example.start : example.end].startswith("```")
        try:
            example.evaluate()
        except SkipTest as exc:
            skipped += [str(exc)] if fenced else []
        except NotEvaluated:
            pass
        else:
            ran += fenced
    return ran, skipped


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_code_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ran, skipped = run_page(page, None)
    # Every block ran, except server blocks, which the server run takes.
    assert all(POSTGRES_URL_ENV in reason for reason in skipped)
    assert ran + len(skipped) == len(FENCE.findall(page.read_text()))


SERVER_PAGES = [p for p in PAGES if SERVER_MARK.search(p.read_text())]


@pytest.mark.parametrize("page", SERVER_PAGES, ids=page_id)
def test_server_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        pytest.skip(f"needs a PostgreSQL server: set {POSTGRES_URL_ENV}")
    monkeypatch.chdir(tmp_path)
    ran, skipped = run_page(page, url)
    assert skipped == []
    assert ran == len(FENCE.findall(page.read_text()))


def test_pages_are_found_and_hold_code() -> None:
    assert ROOT / "README.md" in PAGES and len(PAGES) > 20
    assert SERVER_PAGES  # the server marking is in use, so the server run checks something
