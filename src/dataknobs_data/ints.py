"""Integers that are not booleans: one test and one checker for every integer option.

``bool`` subclasses ``int``, so ``isinstance(True, int)`` holds and ``k=True`` would quietly
mean ``k=1``. Every integer option (``k``, ``limit``, batch sizes, index and search parameters,
dimensions) goes through :func:`is_int` or :func:`checked_int` instead of restating the test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeGuard

from .errors import ValidationError

__all__ = ["INT64_MAX", "INT64_MIN", "MAX_HITS", "checked_int", "hits_cap", "is_int"]

#: The largest int any parameter may take: what SQLite, PostgreSQL (``bigint``), chroma (a C
#: ``long``) and numpy index with. A larger ``k``, ``limit``, ``offset``, batch size or index
#: option is refused with the caller's typed error on every backend; any value up to it is
#: accepted, and a ``k`` or ``limit`` beyond the store's size simply means "all of them".
INT64_MAX = 2**63 - 1
#: The smallest int a stored value may take (int64, as every engine stores integers).
INT64_MIN = -(2**63)


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

    ``high`` defaults to :data:`INT64_MAX`: no engine takes a larger integer, so no integer
    option of this package accepts one (the raw ``OverflowError`` of a driver never surfaces).
    ``error`` is the typed error of the caller's boundary (``ValidationError`` for options,
    ``QueryError`` for query parts); the message names the option and the accepted range.
    """
    top = INT64_MAX if high is None else high
    if is_int(value) and (low is None or value >= low) and value <= top:
        return value
    if high is None and not (is_int(value) and value > top):
        # the int64 bound is mentioned only to a caller who went beyond it
        wanted = "an int" if low is None else f"an int >= {low}"
    elif low is not None:
        wanted = f"an int in [{low}, {top}]"
    else:
        wanted = f"an int <= {top}"
    raise error(f"{name} must be {wanted}, got {value!r}")


#: The most hits one search call can return. A ``k`` beyond it (and beyond the store's size,
#: which it always is in practice) asks for every matching record; engines receive at most
#: this, because they size buffers by ``k`` or add to it (``LIMIT k + 8`` in SQL, chroma's
#: C ``long``), so ``k=2**63 - 1`` must never reach them as it is.
MAX_HITS = 2**31 - 1


def hits_cap(k: int) -> int:
    """A validated ``k`` as engines receive it: at most :data:`MAX_HITS`."""
    return k if k <= MAX_HITS else MAX_HITS
