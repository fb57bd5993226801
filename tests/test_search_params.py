"""Per-query ``search_params``: validated once, the same way for every backend."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from dataknobs_data import DatabaseFactory, Record
from dataknobs_data.errors import QueryError
from dataknobs_data.testing import database_urls, import_or_skip
from dataknobs_data.vector.params import search_params


def test_aliases_resolve_and_result_is_read_only() -> None:
    out = search_params({"nprobe": 8, "ef": 64, "exact": False})
    assert dict(out) == {"probes": 8, "ef_search": 64, "exact": False}
    with pytest.raises(TypeError):
        out["probes"] = 9  # type: ignore[index]
    assert dict(search_params(None)) == {}


@pytest.mark.parametrize(
    "bad",
    [
        {"ef_serach": 40},  # a typo is an error, never a silent default search
        {"ef_search": 0},
        {"ef_search": 1001},
        {"ef_search": 40.0},
        {"ef_search": True},
        {"probes": -1},
        {"exact": 1},
        {"probes": 4, "nprobe": 4},
        [("ef_search", 40)],
    ],
)
def test_bad_search_params_are_refused(bad: Any) -> None:
    with pytest.raises(QueryError):
        search_params(bad)


def test_the_cache_keeps_equal_values_of_other_types_apart() -> None:
    """Validation is cached by value; ``True == 1 == 1.0`` (and they hash alike), yet only
    the int is a valid knob, before and after the valid one is cached."""
    search_params_type = import_or_skip("faiss", "dataknobs_data.engines.faiss_index")
    SearchParams = search_params_type.SearchParams  # noqa: N806

    for _ in range(2):
        assert dict(search_params({"ef_search": 1, "exact": False})) == {
            "ef_search": 1,
            "exact": False,
        }
        assert SearchParams.parse({"ef_search": 1}).ef_search == 1
        bad: dict[str, Any]
        for bad in ({"ef_search": True, "exact": False}, {"ef_search": 1.0, "exact": 0}):
            with pytest.raises(QueryError):
                search_params(bad)
        for bad in ({"ef_search": True}, {"ef_search": 1.0}, {"exact": 1}):
            with pytest.raises(QueryError):
                SearchParams.parse(bad)


@pytest.mark.parametrize("url", database_urls("memory://", "sqlite:///:memory:"))
def test_exact_backends_accept_and_ignore_knobs(url: str) -> None:
    """An exact engine already returns what the knobs approximate; the shells still validate."""
    rng = np.random.default_rng(0)
    db = DatabaseFactory.create(url)
    db.create_batch(
        Record({"v": rng.standard_normal(8).astype(np.float32)}, id=f"r{i}") for i in range(50)
    )
    q = rng.standard_normal(8).astype(np.float32)
    plain = [h.id for h in db.vector_search(q, k=5)]
    tuned = db.vector_search(q, k=5, search_params={"ef_search": 10, "probes": 1, "exact": False})
    assert [h.id for h in tuned] == plain
    with pytest.raises(QueryError):
        db.vector_search(q, k=5, search_params={"efsearch": 10})
    with pytest.raises(QueryError):
        db.vector_search_batch(q[None, :], k=5, search_params={"ef_search": -3})
    db.close()
