"""One int-not-bool test for every integer option: ``True`` is never taken for ``1``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from dataknobs_data.errors import QueryError, ValidationError
from dataknobs_data.ints import checked_int, is_int
from dataknobs_data.query import Query
from dataknobs_data.text import text_search_options
from dataknobs_data.vector.embedders import HashingEmbedder
from dataknobs_data.vector.params import search_params
from dataknobs_data.vector.stores.base import prepare_queries
from dataknobs_data.vector.types import VectorConfig


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, True), (-3, True), (2**70, True), (True, False), (False, False), (1.0, False),
     ("1", False), (None, False), (np.int64(1), False)],
)  # fmt: skip
def test_is_int(value: object, expected: bool) -> None:
    assert is_int(value) is expected


@pytest.mark.parametrize(
    ("low", "high", "value", "message"),
    [
        (None, None, True, "n must be an int, got True"),
        (1, None, 0, "n must be an int >= 1, got 0"),
        (1, None, 2**63, r"must be an int in \[1, 9223372036854775807\], got 9223372036854775808"),
        (None, None, 2**63, r"n must be an int <= 9223372036854775807, got 9223372036854775808"),
        (None, 5, 6, "n must be an int <= 5, got 6"),
        (1, 5, 9, r"n must be an int in \[1, 5\], got 9"),
        (1, 5, 2.0, r"n must be an int in \[1, 5\], got 2.0"),
    ],
)
def test_checked_int_names_the_option_and_range(
    low: int | None, high: int | None, value: object, message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        checked_int("n", value, low, high)


def test_checked_int_returns_the_value_and_raises_the_callers_error() -> None:
    assert checked_int("n", 3, 1, 3) == 3
    assert checked_int("n", 2**63 - 1, 0) == 2**63 - 1  # the default bound is int64's maximum
    with pytest.raises(QueryError, match="k must be an int >= 1"):
        checked_int("k", False, 1, error=QueryError)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: Query().limit(True), QueryError),
        (lambda: Query().offset(False), QueryError),
        (lambda: text_search_options(None, True), QueryError),
        (lambda: search_params({"ef_search": True}), QueryError),
        (lambda: VectorConfig(dimensions=True), QueryError),
        (lambda: prepare_queries(np.zeros(2, np.float32), 2, True), ValidationError),
        (lambda: HashingEmbedder(True), ValueError),
    ],
    ids=["limit", "offset", "text-k", "search-params", "dimensions", "store-k", "embedder"],
)
def test_bools_are_refused_where_ints_are_expected(
    call: Callable[[], Any], error: type[Exception]
) -> None:
    with pytest.raises(error, match="must be an int"):
        call()
