"""What every section of the suite stands on: the hooks a backend may override, the
``loaded_db`` fixture, and the before/after snapshot that shows a refused call changed nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from ...capabilities import Capabilities, walk_conditions
from ...query import Filter, Operator, Query
from ...records import Record
from ..adapter import DatabaseLike
from ..assertions import canonical, record_ids
from ..dataset import (
    DOCS,
    build_records,
)

__all__ = ["ConformanceBase"]


class ConformanceBase:
    """The shared part of every mixin; the test class provides the ``db`` fixture (fresh, empty)."""

    # -- hooks a backend may override --

    def assert_records_equal(self, actual: Sequence[Record], expected: Sequence[Record]) -> None:
        """Same ids in the same order, same typed values, vectors, provenance and metadata."""
        assert record_ids(actual) == record_ids(expected)
        for a, e in zip(actual, expected, strict=True):
            assert canonical(a) == canonical(e), f"record {e.id!r} differs"

    @pytest.fixture
    def loaded_db(self, db: DatabaseLike) -> DatabaseLike:
        """``db`` holding the 30 dataset records."""
        assert db.create_batch(build_records()) == [d.id for d in DOCS]
        return db

    # -- helpers --

    @staticmethod
    def snapshot(db: DatabaseLike) -> tuple[int, list[Any]]:
        """Count and full content, to show that a refused call changed nothing."""
        return db.count(), [canonical(r) for r in db.search(Query())]

    @staticmethod
    def _refused_operators(caps: Capabilities, node: Filter | None) -> set[Operator]:
        return {c.op for c in walk_conditions(node)} - caps.operators
