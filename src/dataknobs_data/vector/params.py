"""Per-query knobs for approximate indexes, validated once for every backend.

Portable code passes the same ``search_params`` to any backend: an engine searching exactly
(memory, SQLite, an unindexed field) already returns what the knobs approximate, so it accepts
and ignores them; an unknown name or a bad value is a :class:`QueryError` everywhere, so a typo
never silently runs a default search.

============  ===========================================================================
name          meaning
============  ===========================================================================
ef_search     HNSW candidate list size (pgvector ``hnsw.ef_search``, faiss ``efSearch``,
              chroma ``ef_search``); larger is slower and more exact. 1..1000
probes        IVF lists visited (pgvector ``ivfflat.probes``, faiss ``nprobe``); alias
              ``nprobe``. 1..65536
exact         ``True``: skip the index and scan exactly for this query
============  ===========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from ..errors import QueryError
from ..ints import checked_int

__all__ = ["SEARCH_PARAMS", "CacheKey", "cache_key", "search_params"]

#: name -> (minimum, maximum) for integer knobs; ``exact`` is a bool
SEARCH_PARAMS: dict[str, tuple[int, int]] = {"ef_search": (1, 1000), "probes": (1, 65536)}
_ALIASES = {"nprobe": "probes", "ef": "ef_search"}
_EMPTY: Mapping[str, Any] = MappingProxyType({})


def search_params(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """A read-only, canonical copy of ``value`` (aliases resolved), or a :class:`QueryError`.

    Cached by value (a search loop passes the same few knobs on every call; the result is
    read-only, so one copy can be shared)."""
    if value is None:
        return _EMPTY
    if not isinstance(value, Mapping):
        raise QueryError(f"search_params must be a mapping, got {type(value).__name__}")
    try:
        return _cached(cache_key(value))
    except TypeError:  # an unhashable value: let the checks say what is wrong with it
        return _checked(value)


CacheKey = tuple[tuple[tuple[Any, Any], ...], tuple[type, ...]]


def cache_key(value: Mapping[str, Any]) -> CacheKey:
    """A hashable key for caching by value that keeps ``True``, ``1`` and ``1.0`` apart
    (equal, and equally hashed, as plain values; only one of them is a valid ``ef_search``).
    Built by C-level calls only: it is computed on every search."""
    return tuple(value.items()), tuple(map(type, value.values()))


@lru_cache(maxsize=256)
def _cached(key: CacheKey) -> Mapping[str, Any]:
    return _checked(dict(key[0]))


def _checked(value: Mapping[str, Any]) -> Mapping[str, Any]:
    out: dict[str, Any] = {}
    for raw_name, item in value.items():
        name = _ALIASES.get(raw_name, raw_name)
        if name in out:
            raise QueryError(f"search_params names {name!r} twice (through an alias)")
        if name == "exact":
            if not isinstance(item, bool):
                raise QueryError(f"search_params['exact'] must be True or False, got {item!r}")
        elif name in SEARCH_PARAMS:
            low, high = SEARCH_PARAMS[name]
            checked_int(f"search_params[{raw_name!r}]", item, low, high, error=QueryError)
        else:
            known = sorted([*SEARCH_PARAMS, "exact", *_ALIASES])
            raise QueryError(f"unknown search parameter {raw_name!r}; known: {known}")
        out[name] = item
    return MappingProxyType(out)
