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
    DatabaseLike,
    Mode,
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
