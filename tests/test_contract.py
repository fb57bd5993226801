"""The sync and async shells expose one contract; the package stays light to import."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import typing
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dataknobs_data
from dataknobs_data import (
    AsyncDatabase,
    BackendUnavailableError,
    DatabaseFactory,
    Record,
    SyncDatabase,
    ValidationError,
    VectorSearchResult,
)
from dataknobs_data.backends.memory import MemoryBackend
from dataknobs_data.contract import AsyncOps, Call, VectorSearchRequest
from dataknobs_data.plans import Blocking, Plan
from dataknobs_data.query import F, Filter, Query
from dataknobs_data.testing import DatabaseLike, SyncView

_EITHER_SHELL = {"capabilities", "set_tracker", "vector_fields"}  # plain methods in both shells


def _public(cls: type) -> dict[str, object]:
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and callable(member)
    }


def test_sync_and_async_expose_the_same_methods() -> None:
    """Every public method exists in both shells."""
    assert set(_public(SyncDatabase)) == set(_public(AsyncDatabase))
    assert {"create", "load", "text_search", "create_vector_index", "stream"} <= set(
        _public(SyncDatabase)
    )


@pytest.mark.parametrize("name", sorted(_public(SyncDatabase)))
def test_signatures_and_docstrings_match(name: str) -> None:
    """Parameters (names, kinds, defaults, annotations), the result type and the docstring are
    the same in both shells; every public method says what it does; async ones are awaitable."""
    sync_fn = getattr(SyncDatabase, name)
    async_fn = getattr(AsyncDatabase, name)
    sync_sig, async_sig = inspect.signature(sync_fn), inspect.signature(async_fn)
    assert list(sync_sig.parameters.values()) == list(async_sig.parameters.values())
    assert sync_fn.__doc__ and sync_fn.__doc__.strip(), f"{name} has no docstring"
    assert sync_fn.__doc__ == async_fn.__doc__
    if name in _EITHER_SHELL:
        assert not inspect.iscoroutinefunction(async_fn)
        assert sync_fn is async_fn
    elif name == "stream":
        assert inspect.isgeneratorfunction(sync_fn)
        assert inspect.isasyncgenfunction(async_fn)
        assert sync_sig.return_annotation == Iterator[Record]
        assert async_sig.return_annotation == AsyncIterator[Record]
    else:
        assert not inspect.iscoroutinefunction(sync_fn), name
        assert inspect.iscoroutinefunction(async_fn), name
        assert sync_sig.return_annotation == async_sig.return_annotation


@pytest.mark.parametrize("name", sorted(set(_public(SyncDatabase)) - _EITHER_SHELL - {"close"}))
def test_derived_methods_look_written_by_hand(name: str) -> None:
    """``help()``, tracebacks and ``typing.get_type_hints`` see each shell's own method: its
    name, qualified name and module, and the user's result type (``str``, not ``Call[str]``)."""
    for shell in (SyncDatabase, AsyncDatabase):
        fn = getattr(shell, name)
        assert (fn.__name__, fn.__qualname__) == (name, f"{shell.__name__}.{name}")
        assert fn.__module__ == "dataknobs_data.database"
        hints = typing.get_type_hints(fn)
        assert hints["return"] == inspect.signature(fn).return_annotation
        assert "Call" not in repr(hints["return"])
    assert inspect.signature(SyncDatabase.create).return_annotation is str
    assert typing.get_type_hints(AsyncDatabase.vector_search)["return"] == list[VectorSearchResult]


def test_derived_methods_take_arguments_as_the_plan_does() -> None:
    """Positional parameters by name too, defaults applied, keyword-only ones only by keyword,
    and Python's own errors for a wrong call (the methods have the plan's parameter list)."""
    db = DatabaseFactory.create("memory://")
    vec = np.ones(3, dtype=np.float32)
    assert db.create(record=Record({"v": vec}, id="a")) == "a"
    assert db.update(record_id="a", record=Record({"v": vec, "n": 1})) is True
    assert db.vector_search(vector=vec, k=1)[0].record.id == "a"
    assert [r.id for r in db.stream(None, batch_size=1)] == ["a"]
    with pytest.raises(TypeError, match="positional"):
        db.vector_search(vec, None, 1)  # type: ignore[misc]
    with pytest.raises(TypeError, match="unexpected keyword argument 'kk'"):
        db.vector_search(vec, kk=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'record'"):
        db.update("a")  # type: ignore[call-arg]


@pytest.mark.parametrize("params", ["self, page: int", "self, *records: Record", "self, _x: int"])
def test_plans_the_shells_cannot_derive_are_refused(params: str) -> None:
    """A plan parameter that the generated method could not pass on faithfully (a name its body
    uses, ``*args``) fails when the shell class is created, not at the first call."""
    namespace: dict[str, Any] = {"Plan": Plan, "Call": Call, "Record": Record}
    exec(f"class Api:\n    @Plan\n    def m({params}) -> Call[int]: ...", namespace)
    with pytest.raises(TypeError, match="plan"):
        type("Shell", (namespace["Api"], Blocking), {})


def test_documented_behaviour_is_in_both_shells() -> None:
    """The async docstrings are the sync ones (they used to drift shorter)."""
    assert AsyncDatabase.vector_search.__doc__ is not None
    assert "search_params" in AsyncDatabase.vector_search.__doc__
    assert "FULL_TEXT" in (AsyncDatabase.text_search.__doc__ or "")


_USER_CODE = """
from typing import assert_type

import numpy as np
import numpy.typing as npt

from dataknobs_data import AsyncDatabase, Record, SyncDatabase, VectorSearchResult
from dataknobs_data.testing import DatabaseLike, as_blocking


def blocking(db: SyncDatabase, q: npt.NDArray[np.float32]) -> None:
    assert_type(db.create(Record({"a": 1})), str)
    assert_type(db.read("a"), Record | None)
    assert_type(db.vector_search(q, k=3), list[VectorSearchResult])
    for r in db.stream(batch_size=10):
        assert_type(r, Record)
    view: DatabaseLike = as_blocking(db)
    assert_type(view.count(), int)
    db.create(Record({}), wrong=1)  # error


async def awaiting(db: AsyncDatabase, q: npt.NDArray[np.float32]) -> None:
    assert_type(await db.create(Record({"a": 1})), str)
    assert_type(await db.vector_search(q, k=3), list[VectorSearchResult])
    async for r in db.stream():
        assert_type(r, Record)
    await db.vector_search(q, kk=3)  # error
    db.create(Record({})).upper()  # error: a coroutine, not a str
"""


def test_mypy_types_user_code(tmp_path: Path) -> None:
    """mypy sees each shell's real signatures and result types (not ``Call[...]``, not ``Any``):
    the ``assert_type`` lines pass and exactly the three misuses are errors."""
    mypy_api = pytest.importorskip("mypy.api", reason="mypy is in the dev extra")
    (tmp_path / "user_code.py").write_text(_USER_CODE)
    src = Path(dataknobs_data.__file__).parents[1]
    (tmp_path / "mypy.ini").write_text(
        f"[mypy]\nstrict = True\nfollow_imports = silent\nmypy_path = {src}\n"
        "[mypy-tqdm.*,psutil.*]\nignore_missing_imports = True\n"
    )
    report, errors, _ = mypy_api.run(
        [
            "--config-file",
            str(tmp_path / "mypy.ini"),
            "--cache-dir",
            str(tmp_path / "cache"),
            str(tmp_path / "user_code.py"),
        ]
    )
    assert not errors
    lines = sorted(int(line.split(":")[1]) for line in report.splitlines() if ": error:" in line)
    marked = [n for n, line in enumerate(_USER_CODE.splitlines(), 1) if "# error" in line]
    assert lines == marked, report
    assert 'Unexpected keyword argument "wrong"' in report
    assert 'Unexpected keyword argument "kk"' in report
    assert '"Coroutine[Any, Any, str]" has no attribute "upper"' in report


class _DirectOps(AsyncOps):
    """Native coroutines over a memory backend, recording which ones ran."""

    def __init__(self, backend: MemoryBackend) -> None:
        self.backend = backend
        self.ran: list[str] = []

    async def get(self, ids: Sequence[str]) -> list[Record | None]:
        self.ran.append("get")
        return self.backend.get(ids)

    async def contains(self, ids: Sequence[str]) -> list[bool]:
        self.ran.append("contains")
        return self.backend.contains(ids)

    async def search(self, query: Query) -> list[Record]:
        self.ran.append("search")
        return self.backend.search(query)

    async def count(self, condition: Filter | None) -> int:
        self.ran.append("count")
        return self.backend.count(condition)

    async def vector_search(self, request: VectorSearchRequest) -> list[list[VectorSearchResult]]:
        self.ran.append("vector_search")
        return self.backend.vector_search(request)

    async def aclose(self) -> None:
        self.ran.append("aclose")


def test_native_coroutines_are_awaited_instead_of_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """A backend's AsyncOps serve the reads they declare (no worker thread), with the same
    results as the blocking path; writes still go to a thread."""
    backend = MemoryBackend()
    ops = backend.async_ops = _DirectOps(backend)
    threaded: list[str] = []
    real = asyncio.to_thread

    async def counting(fn: Any, *args: Any, **kwargs: Any) -> Any:
        threaded.append(getattr(fn, "__name__", type(fn).__name__))
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counting)
    vec = np.arange(4, dtype=np.float32)

    async def session() -> tuple[Any, ...]:
        db = AsyncDatabase(backend)
        await db.create_batch([Record({"n": i, "v": vec + i}, id=f"r{i}") for i in range(5)])
        assert threaded == ["Call"]
        got = (
            await db.read("r1"),
            await db.read_batch(["r2", "nope"]),
            await db.exists("r3"),
            await db.search(F("n") >= 3),
            await db.count(F("n") < 2),
            await db.vector_search(vec, k=2),
            await db.vector_search_batch([vec, vec + 4], k=1),
        )
        assert threaded == ["Call"]  # none of the reads above took a thread
        await db.close()
        return got

    read, batch, exists, found, count, hits, batch_hits = asyncio.run(session())
    assert ops.ran == [
        "get", "get", "contains", "search", "count", "vector_search", "vector_search", "aclose"
    ]  # fmt: skip
    assert read is not None and read.id == "r1"
    assert [r and r.id for r in batch] == ["r2", None]
    assert exists is True and count == 2
    assert [r.id for r in found] == ["r3", "r4"]
    assert [h.record.id for h in hits] == ["r0", "r1"]
    assert [[h.record.id for h in hs] for hs in batch_hits] == [["r0"], ["r4"]]


def test_async_ops_missing_a_coroutine_cannot_be_built() -> None:
    """Renaming or forgetting one native coroutine fails when the backend is built, not by a
    silent fallback to worker threads; an async_ops that is no AsyncOps is refused too."""

    class Partial(AsyncOps):
        async def get(self, ids: Sequence[str]) -> list[Record | None]:
            return []

        async def contains(self, ids: Sequence[str]) -> list[bool]:
            return []

        async def search(self, query: Query) -> list[Record]:
            return []

        async def fetch_count(self, condition: Filter | None) -> int:  # renamed: count missing
            return 0

        async def vector_search(
            self, request: VectorSearchRequest
        ) -> list[list[VectorSearchResult]]:
            return []

        async def aclose(self) -> None:
            return None

    with pytest.raises(TypeError, match=r"abstract method '?count"):
        Partial()  # type: ignore[abstract]
    backend = MemoryBackend()
    backend.async_ops = object()  # type: ignore[assignment]
    with pytest.raises(TypeError, match="must be an AsyncOps"):
        AsyncDatabase(backend)


def test_sync_view_forwards_every_method() -> None:
    """The testing view needs no restated API: every public method of the async shell is
    reachable as a blocking call, ``stream`` as a lazy iterator."""
    db = DatabaseFactory.create_async("memory://")
    view = SyncView(db)
    try:
        assert DatabaseLike is SyncDatabase
        for name in _public(SyncDatabase):
            assert callable(getattr(view, name)), name
        assert view.create_batch([Record({"n": i}, id=f"r{i}") for i in range(5)]) == [
            f"r{i}" for i in range(5)
        ]
        stream = view.stream(batch_size=2)
        assert inspect.isgenerator(stream)
        assert [r.id for r in stream] == [f"r{i}" for i in range(5)]
        assert view.count() == 5
        view.close()
    finally:
        view.release()


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
