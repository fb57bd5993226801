"""The conformance suite on every backend this repository ships, in both shells.

A new backend joins by adding its :class:`BackendSpec` to ``BACKENDS``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dataknobs_data.testing import (
    CHROMA,
    FAISS,
    MEMORY,
    SQLITE,
    SQLITE_MEMORY,
    BackendSpec,
    ConformanceTests,
    CrudTests,
    DatabaseLike,
    DurabilityTests,
    FullTextTests,
    LargeFilterTests,
    Mode,
    QueryTests,
    ShellTests,
    VectorSearchTests,
    database_params,
    open_database,
    param_id,
    server_specs,
)

BACKENDS: list[BackendSpec] = [
    MEMORY,
    SQLITE,
    SQLITE_MEMORY,
    FAISS,
    CHROMA,
    *server_specs(),
]


@pytest.fixture(params=database_params(BACKENDS), ids=param_id)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DatabaseLike]:
    spec, mode = request.param
    with open_database(spec, mode, tmp_path) as database:
        yield database


class TestConformance(ConformanceTests):
    """Everything in :class:`ConformanceTests`, on each backend x {sync, async}."""


def test_every_backend_runs_in_both_shells(request: pytest.FixtureRequest) -> None:
    """The fixture really covers each backend in the sync and the async shell."""
    modes: list[Mode] = ["sync", "async"]
    assert [param_id(p) for p in database_params(BACKENDS)] == [
        f"{spec.name}-{mode}" for spec in BACKENDS for mode in modes
    ]


SECTIONS = (
    ShellTests,
    CrudTests,
    DurabilityTests,
    QueryTests,
    LargeFilterTests,
    VectorSearchTests,
    FullTextTests,
)


def test_sections_partition_the_suite() -> None:
    """Every test of the union lives in exactly one section mixin, and the union is all of them."""
    per_section = [{n for n in vars(s) if n.startswith("test_")} for s in SECTIONS]
    union = set().union(*per_section)
    assert sum(len(names) for names in per_section) == len(union)  # no test in two sections
    assert union == {n for n in dir(ConformanceTests) if n.startswith("test_")}
    assert set(ConformanceTests.__bases__) == set(SECTIONS)


class TestOneSectionAlone(CrudTests):
    """A backend may adopt one section: CRUD alone, on the memory backend's sync shell."""

    @pytest.fixture
    def db(self, tmp_path: Path) -> Iterator[DatabaseLike]:
        with open_database(MEMORY, "sync", tmp_path) as database:
            yield database
