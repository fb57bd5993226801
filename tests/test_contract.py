"""The sync and async shells expose one contract; the package stays light to import."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

from dataknobs_data import (
    AsyncDatabase,
    BackendUnavailableError,
    DatabaseFactory,
    SyncDatabase,
    ValidationError,
)

_SHELL_ONLY = {"__enter__", "__exit__", "__aenter__", "__aexit__"}


def _public(cls: type) -> dict[str, object]:
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and callable(member)
    }


def test_sync_and_async_expose_the_same_methods() -> None:
    """Every public method exists in both shells."""
    assert set(_public(SyncDatabase)) == set(_public(AsyncDatabase))


@pytest.mark.parametrize("name", sorted(_public(SyncDatabase)))
def test_signatures_match(name: str) -> None:
    """Parameters (names, kinds, defaults, annotations) are identical; async ones are awaitable."""
    sync_sig = inspect.signature(getattr(SyncDatabase, name))
    async_fn = getattr(AsyncDatabase, name)
    async_sig = inspect.signature(async_fn)
    assert list(sync_sig.parameters.values()) == list(async_sig.parameters.values())
    if name in ("capabilities", "vector_fields"):
        assert not inspect.iscoroutinefunction(async_fn)
    elif name == "stream":
        assert inspect.isasyncgenfunction(async_fn)
    else:
        assert inspect.iscoroutinefunction(async_fn), name


def test_vector_search_options_are_keyword_only() -> None:
    """Options after the query vector can only be passed by keyword (API.md)."""
    params = inspect.signature(SyncDatabase.vector_search).parameters
    kinds = {n: p.kind for n, p in params.items() if n not in ("self", "vector")}
    assert set(kinds.values()) == {inspect.Parameter.KEYWORD_ONLY}
    assert {"field", "k", "metric", "filter", "score_threshold"} <= set(kinds)


def test_import_is_light() -> None:
    """`import dataknobs_data` pulls in numpy but no engine, embedder or test tool."""
    code = (
        "import sys, dataknobs_data, dataknobs_data.vector; "
        "heavy = {'sqlite3','psycopg','faiss','chromadb','elasticsearch','torch',"
        "'sentence_transformers','hypothesis','pytest','tqdm'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_factory_reports_and_refuses() -> None:
    """The factory lists backends, builds memory, and names what is missing otherwise."""
    infos = {b.scheme: b for b in DatabaseFactory.backends()}
    assert infos["memory"].available
    assert {"sqlite", "postgresql", "elasticsearch", "faiss", "chroma"} <= set(infos)
    with DatabaseFactory.create("memory://") as db:
        assert db.capabilities().backend == "memory"
    with pytest.raises(ValidationError, match="unknown backend"):
        DatabaseFactory.create("nosuch://x")
    with pytest.raises(ValidationError, match="takes no host"):
        DatabaseFactory.create("memory://host/path")
    for scheme, info in infos.items():
        if not info.available:
            with pytest.raises(BackendUnavailableError, match=scheme):
                DatabaseFactory.create(f"{scheme}://x")
