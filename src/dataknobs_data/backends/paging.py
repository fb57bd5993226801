"""Streaming by pages of ids fixed when a scan starts (shared by every backend's ``scan``).

Fixing the ids first gives each backend the same documented behaviour: records deleted during the
scan are skipped, updated ones appear in their latest state, and nothing is seen twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from ..records import Record

__all__ = ["pages_by_id"]


def pages_by_id(
    ids: list[str], batch_size: int, fetch: Callable[[list[str]], Mapping[str, Record]]
) -> Iterator[list[Record]]:
    """Pages of the records ``fetch`` still finds, in ``ids`` order; empty pages are skipped."""
    for start in range(0, len(ids), batch_size):
        chunk = ids[start : start + batch_size]
        found = fetch(chunk)
        page = [found[i] for i in chunk if i in found]
        if page:
            yield page
