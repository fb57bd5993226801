"""The ids of the rows that carry a mark, kept sorted beside a table of rows.

The memory and faiss backends answer :meth:`~dataknobs_data.contract.Backend.pending_ids`
("records holding a pending-embedding mark, in id order, after ``after``") from this set
instead of a filtered search: a search rebuilds the mark's value column after every write
(measured at 100,000 records: ~30 ms per call after a write, and ~30 ms more for the
``_id > after`` comparison, which has no vectorised form), while the vectorizer calls it
between its writes. Here a page is a bisection and a slice.

The set is sorted by plain ``str`` order, the order :func:`~dataknobs_data.evaluate.order_indices`
gives ids, and a row counts as marked exactly when an ``exists`` filter on the field would
match it (:func:`~dataknobs_data.evaluate.present`).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from ..evaluate import present
from ..records import Record

__all__ = ["MarkedIds"]

#: changes in one write above which the sorted list is rebuilt once rather than edited
_REBUILD_ABOVE = 64


class MarkedIds:
    """Ids of the records whose top-level field ``field`` is present, in ``str`` order."""

    __slots__ = ("_ids", "_sorted", "field")

    def __init__(self, field: str) -> None:
        self.field = field
        self._ids: set[str] = set()
        self._sorted: list[str] | None = []

    def marked(self, record: Record) -> bool:
        return present(record.get_path([self.field]))

    def update(self, records: Iterable[Record]) -> None:
        """Take in the stored versions of written records (marked or not)."""
        add = [r.id for r in records if self.marked(r)]
        drop = {r.id for r in records}.difference(add)
        self._change(add, drop)

    def discard(self, ids: Iterable[str]) -> None:
        """Forget removed records."""
        self._change([], set(ids))

    def reset(self, records: Iterable[Record]) -> None:
        """Rebuild from every stored record (a clear, or an undone write: O(n))."""
        self._ids = {r.id for r in records if self.marked(r)}
        self._sorted = None

    def _change(self, add: list[str], drop: set[str]) -> None:
        added = [i for i in dict.fromkeys(add) if i not in self._ids]
        dropped = [i for i in drop if i in self._ids]
        if not added and not dropped:
            return
        self._ids.update(added)
        self._ids.difference_update(dropped)
        if self._sorted is None or len(added) + len(dropped) > _REBUILD_ABOVE:
            self._sorted = None
            return
        for rid in dropped:
            del self._sorted[bisect.bisect_left(self._sorted, rid)]
        for rid in added:
            bisect.insort(self._sorted, rid)

    def page(self, after: str | None, limit: int) -> list[str]:
        """Up to ``limit`` ids greater than ``after``, in order."""
        if self._sorted is None:
            self._sorted = sorted(self._ids)
        start = 0 if after is None else bisect.bisect_right(self._sorted, after)
        return self._sorted[start : start + max(0, limit)]

    def __len__(self) -> int:
        return len(self._ids)
