"""MkDocs hooks of the documentation site (``hooks:`` in ``mkdocs.yml``).

* ``vector_store_guide.md`` (the plan's guide) is the home page: it is written to
  ``index.html``, so the site opens on it from the file system and the logo links to it.
* ``<!-- benchmark-tables: data/FILE.json [target ...] -->`` in a page is replaced by the
  Markdown tables of that benchmark results file (``python -m dataknobs_data.vector.benchmarks
  --out FILE``), rendered by :func:`dataknobs_data.vector.benchmarks.report.format_markdown`:
  the figures on the site come from the committed JSON, never retyped.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))  # render with this checkout's code, installed or not

from dataknobs_data.vector.benchmarks.report import format_markdown  # noqa: E402

HOME = "vector_store_guide.md"
MARKER = re.compile(r"<!--\s*benchmark-tables:\s*(\S+)((?:\s+[\w-]+)*)\s*-->")


def on_files(files: Any, config: Any) -> Any:
    """Serve the guide as the site's index page."""
    for file in files:
        if file.src_uri == HOME:
            file.dest_uri = "index.html"
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Expand benchmark-table markers into tables from the results file they name."""

    def tables(match: re.Match[str]) -> str:
        path = Path(config["docs_dir"]) / match.group(1)
        targets = match.group(2).split() or None
        return format_markdown(json.loads(path.read_text()), targets)

    return MARKER.sub(tables, markdown)
