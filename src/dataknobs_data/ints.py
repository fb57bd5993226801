"""Integers that are not booleans: one test and one checker for every integer option.

``bool`` subclasses ``int``, so ``isinstance(True, int)`` holds and ``k=True`` would quietly
mean ``k=1``. Every integer option (``k``, ``limit``, batch sizes, index and search parameters,
dimensions) goes through :func:`is_int` or :func:`checked_int` instead of restating the test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeGuard

from .errors import ValidationError

__all__ = ["checked_int", "is_int"]


def is_int(value: object) -> TypeGuard[int]:
    """True for a Python ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def checked_int(
    name: str,
    value: object,
    low: int | None = None,
    high: int | None = None,
    *,
    error: Callable[[str], Exception] = ValidationError,
) -> int:
    """``value`` if it is an int (not a bool) within ``[low, high]``; else ``error`` naming it.

    ``error`` is the typed error of the caller's boundary (``ValidationError`` for options,
    ``QueryError`` for query parts); the message names the option and the accepted range.
    """
    if is_int(value) and (low is None or value >= low) and (high is None or value <= high):
        return value
    if low is not None and high is not None:
        wanted = f"an int in [{low}, {high}]"
    elif low is not None:
        wanted = f"an int >= {low}"
    elif high is not None:
        wanted = f"an int <= {high}"
    else:
        wanted = "an int"
    raise error(f"{name} must be {wanted}, got {value!r}")
