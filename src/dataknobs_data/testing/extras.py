"""Skip, never error, when an optional engine is not installed, and say which extra to install.

With only ``pip install -e ".[dev]"`` the suite must pass: a test that needs faiss is *skipped*
with the reason ``needs the faiss extra: pip install 'dataknobs-data[faiss]'``, so the reader
knows the one command that turns the skip into a run. Three ways in, one table behind them:

* ``@requires_extra("faiss")`` (or ``pytestmark = requires_extra("faiss")``) marks tests whose
  module imports fine without the engine;
* ``import_or_skip("faiss")`` at the top of a test module that cannot even be imported without
  the engine (like :func:`pytest.importorskip`, with the extra in the reason);
* ``@pytest.mark.parametrize("url", database_urls("memory://", "sqlite:///:memory:"))`` marks
  each URL with the extra its scheme needs;
* :class:`~.backends.BackendSpec` knows its extra, so :func:`~.backends.open_database` skips
  the conformance and differential set-ups instead of raising ``BackendUnavailableError``.

Availability is asked with :func:`importlib.util.find_spec`, which never imports the engine.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from types import ModuleType
from typing import Any

import pytest

__all__ = [
    "ENGINE_MODULES",
    "EXTRAS",
    "SCHEME_EXTRAS",
    "database_urls",
    "import_or_skip",
    "install_hint",
    "missing_extra",
    "requires_extra",
    "skip_unless_extra",
]

#: The modules each optional extra of ``pyproject.toml`` brings that the tests need; a test
#: needs the extra when one of them is absent. (``sqlean`` is only sqlite-vec's fallback driver
#: where the standard ``sqlite3`` cannot load extensions, so it is not required here.)
EXTRAS: Mapping[str, tuple[str, ...]] = {
    "sqlite": ("sqlite_vec",),
    "postgres": ("psycopg", "psycopg_pool", "pgvector"),
    "faiss": ("faiss",),
    "chroma": ("chromadb",),
    "elasticsearch": ("elasticsearch",),
    # not an engine: the documentation tools (tests of the docs site and its code blocks)
    "docs": ("sybil", "mkdocs"),
}

#: The extra each database URL scheme (as :class:`~dataknobs_data.DatabaseFactory` reads it)
#: needs; schemes not listed (``memory``) need none.
SCHEME_EXTRAS: Mapping[str, str] = {
    "sqlite": "sqlite",
    "postgresql": "postgres",
    "postgres": "postgres",
    "faiss": "faiss",
    "chroma": "chroma",
    "elasticsearch": "elasticsearch",
}

#: Every top-level module an optional extra installs: what a test module must not import
#: unguarded (``tests/test_optional_imports.py`` blocks these and imports every test module).
ENGINE_MODULES: tuple[str, ...] = (*sorted({m for ms in EXTRAS.values() for m in ms}), "sqlean")


def install_hint(extra: str) -> str:
    """The skip reason for a missing extra: which extra, and the command that installs it."""
    return f"needs the {extra} extra: pip install 'dataknobs-data[{extra}]'"


def _absent(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):  # a parent that fails to import, or a blocked module
        return True


def missing_extra(*extras: str) -> str | None:
    """The skip reason for the first of ``extras`` not installed here, or ``None``."""
    for extra in extras:
        if extra not in EXTRAS:
            raise KeyError(f"unknown extra {extra!r}; known: {sorted(EXTRAS)}")
        if any(_absent(m) for m in EXTRAS[extra]):
            return install_hint(extra)
    return None


def requires_extra(*extras: str) -> pytest.MarkDecorator:
    """A ``skipif`` mark for tests that need ``extras`` (decorator or ``pytestmark``)."""
    reason = missing_extra(*extras)
    return pytest.mark.skipif(reason is not None, reason=reason or "")


def database_urls(*urls: str) -> list[Any]:
    """``pytest.param`` per URL, each marked to skip without the extra its scheme needs."""
    params = []
    for url in urls:
        extra = SCHEME_EXTRAS.get(url.split(":", 1)[0].split("+", 1)[0].lower())
        marks = [requires_extra(extra)] if extra else []
        params.append(pytest.param(url, marks=marks, id=url))
    return params


def skip_unless_extra(*extras: str) -> None:
    """Skip the running test (or, at import time, the whole module) unless ``extras`` are here."""
    reason = missing_extra(*extras)
    if reason is not None:
        pytest.skip(reason, allow_module_level=True)


def import_or_skip(extra: str, module: str | None = None) -> ModuleType:
    """``module`` (default: the extra's first module), or skip the test module naming ``extra``.

    For the top of a test module whose other imports need the engine::

        faiss = import_or_skip("faiss")
        from dataknobs_data.vector.stores.faiss import FaissVectorStore  # noqa: E402
    """
    skip_unless_extra(extra)
    return importlib.import_module(module or EXTRAS[extra][0])
