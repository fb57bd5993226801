"""The conformance suite on every backend this repository ships, in both shells.

A new backend joins by adding its :class:`BackendSpec` to ``BACKENDS``.
"""

from __future__ import annotations

import tempfile
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
    FaultTests,
    FullTextTests,
    HostileInputTests,
    LargeFilterTests,
    Mode,
    QueryTests,
    ShellTests,
    SyncTests,
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
    HostileInputTests,
    FaultTests,
    SyncTests,
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


#: chroma on disk: the conformance run above uses chroma in memory (a client per directory
#: costs 0.1-0.2 s); the fault section also runs here, where writes log their undo plan to a
#: file and every failure is also checked across close + reopen.
CHROMA_DISK = BackendSpec.from_url(
    "chroma-disk", lambda tmp: f"chroma:///{tempfile.mkdtemp(dir=tmp)}", extra="chroma"
)


class TestFaultsOnDisk(FaultTests):
    """:class:`FaultTests`' per-write check on chroma with a directory, in the sync shell (the
    async shell runs the same backend calls in a thread; both shells run it in memory above).
    """

    #: load's batch-by-batch check runs in memory above (on disk it takes ~6 s here)
    test_multi_batch_load_failing_keeps_whole_batches_only = None  # type: ignore[assignment]

    @pytest.fixture(params=database_params([CHROMA_DISK], modes=("sync",)), ids=param_id)
    def db(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DatabaseLike]:
        spec, mode = request.param
        with open_database(spec, mode, tmp_path) as database:
            yield database
