"""The two shells and their lifecycle: what each method is (a coroutine in the async shell), what
a backend declares, and what a closed database still does (nothing, loudly).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable

import pytest

from ...capabilities import Capabilities, Feature
from ...errors import (
    DatabaseClosedError,
)
from ...query import Operator, Query
from ...records import Record
from ...vector.types import DistanceMetric, VectorConfig
from ..adapter import DatabaseLike, SyncView
from ..dataset import (
    QUERY_VECTORS,
    VECTOR_FIELD,
)
from .base import ConformanceBase

__all__ = ["ShellTests"]


class ShellTests(ConformanceBase):
    """Capabilities are well formed; the async shell is really async; close and ``with`` work."""

    # == capabilities and shells ==

    def test_capabilities_are_declared(self, db: DatabaseLike) -> None:
        """capabilities() names the backend and lists only known operators and metrics."""
        caps = db.capabilities()
        assert isinstance(caps, Capabilities)
        assert caps.backend
        assert isinstance(caps.backend, str)
        assert caps.operators <= frozenset(Operator)
        assert caps.metrics <= frozenset(DistanceMetric)
        assert all(isinstance(f, Feature) for f in caps.features)
        assert json.loads(json.dumps(caps.to_dict()))["backend"] == caps.backend

    def test_shell_method_kinds(self, db: DatabaseLike) -> None:
        """Async shell: coroutines and an async-generator stream; sync shell: plain calls."""
        names = [
            "create", "create_batch", "read", "read_batch", "exists", "update", "update_batch",
            "upsert", "upsert_batch", "delete", "delete_batch", "clear", "search", "count",
            "vector_search", "vector_search_batch", "declare_vector_field", "close",
        ]  # fmt: skip
        if isinstance(db, SyncView):
            inner = db.inner
            for name in names:
                assert inspect.iscoroutinefunction(getattr(inner, name)), name
            assert inspect.isasyncgenfunction(inner.stream)
        else:
            for name in names:
                assert not inspect.iscoroutinefunction(getattr(db, name)), name
            assert inspect.isgeneratorfunction(type(db).stream)

    # == lifecycle ==

    def test_closed_database_refuses_every_call(self, loaded_db: DatabaseLike) -> None:
        """After close(), every data call raises DatabaseClosedError; closing again is fine."""
        loaded_db.close()
        loaded_db.close()
        rec = Record({"title": "late"}, id="late")
        calls: list[Callable[[], object]] = [
            lambda: loaded_db.create(rec),
            lambda: loaded_db.create_batch([rec]),
            lambda: loaded_db.read("r01"),
            lambda: loaded_db.read_batch(["r01"]),
            lambda: loaded_db.exists("r01"),
            lambda: loaded_db.update("r01", rec),
            lambda: loaded_db.update_batch([rec]),
            lambda: loaded_db.upsert(rec),
            lambda: loaded_db.upsert_batch([rec]),
            lambda: loaded_db.delete("r01"),
            lambda: loaded_db.delete_batch(["r01"]),
            lambda: loaded_db.clear(),
            lambda: loaded_db.search(Query()),
            lambda: loaded_db.count(),
            lambda: list(loaded_db.stream()),
            lambda: loaded_db.vector_search(QUERY_VECTORS[0], field=VECTOR_FIELD),
            lambda: loaded_db.vector_search_batch([QUERY_VECTORS[0]], field=VECTOR_FIELD),
            lambda: loaded_db.declare_vector_field("w", VectorConfig(2)),
        ]
        for call in calls:
            with pytest.raises(DatabaseClosedError):
                call()

    def test_closed_database_refuses_empty_batches(self, loaded_db: DatabaseLike) -> None:
        """Even calls with nothing to do refuse once closed (no silent success)."""
        loaded_db.close()
        with pytest.raises(DatabaseClosedError):
            loaded_db.vector_search_batch([], field=VECTOR_FIELD)
        with pytest.raises(DatabaseClosedError):
            loaded_db.create_batch([])

    def test_context_manager_closes(self, db: DatabaseLike) -> None:
        """``with db:`` yields the database and closes it on exit, also on error."""
        with db as same:
            assert same is db
            same.create(Record({"title": "inside"}, id="in"))
            assert same.count() == 1
        with pytest.raises(DatabaseClosedError):
            db.count()

    def test_context_manager_closes_on_error(self, db: DatabaseLike) -> None:
        """An exception inside ``with`` propagates and the database is closed."""
        with pytest.raises(KeyError), db:
            raise KeyError("boom")
        with pytest.raises(DatabaseClosedError):
            db.read("x")
