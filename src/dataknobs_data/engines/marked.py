"""The ids of the rows that carry a mark, kept sorted beside a table of rows.

The memory and faiss backends answer :meth:`~dataknobs_data.contract.Backend.pending_ids`
("records holding a pending-embedding mark, in id order, after ``after``") from this set
instead of a filtered search: a search rebuilds the mark's value column after every write
(measured at 100,000 records, 1,000 marked: ~32 ms for a page after a write, and ~33 ms for
any page after the first, as ``_id > after`` on strings has no vectorised form), while the
vectorizer calls it between its writes. Here a page is a bisection and a slice (~1 us).

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

    def update(self, records: Iterable[Record]) -> None:
        """Take in the stored versions of written records (marked or not; of one id written
        twice in a batch, the last, as it is the one stored). Every write pays this, so it is
        one dict pass (measured: ~30 ms per 100,000 records without a mark, against ~390 ms
        for the memory backend's put of them)."""
        field = self.field
        state = {}
        for r in records:
            f = r.get_field(field)
            state[r.id] = f is not None and present(f.value)
        held = self._ids
        add = [rid for rid, marked in state.items() if marked]
        drop = {rid for rid, marked in state.items() if not marked and rid in held}
        self._change(add, drop)

    def discard(self, ids: Iterable[str]) -> None:
        """Forget removed records."""
        self._change([], set(ids))

    def reset(self, records: Iterable[Record]) -> None:
        """Rebuild from every stored record (a clear, or an undone write: O(n))."""
        field = self.field
        self._ids = {r.id for r in records if present(r.get_path([field]))}
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
