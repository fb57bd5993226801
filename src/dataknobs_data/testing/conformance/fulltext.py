"""Full-text search (``text_search``): run exactly as :mod:`dataknobs_data.text` describes on a
backend that declares :attr:`~dataknobs_data.capabilities.Feature.FULL_TEXT`, refused with
:class:`~dataknobs_data.errors.UnsupportedError` (changing nothing) on one that does not.

The expectations need no ranking oracle: they use word sets whose BM25 order is forced (more
occurrences of the only query word in a shorter text rank first) and otherwise compare sets.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any, cast

import pytest

from ...capabilities import Feature
from ...errors import QueryError, UnsupportedError
from ...fields import Field, FieldType
from ...query import F
from ...records import Record
from ...text import TextSearchResult
from ..adapter import DatabaseLike
from .base import ConformanceBase

__all__ = ["FullTextTests", "TEXT_DOCS"]

#: id -> (TEXT body, a plain STRING field that full text must not search, a number to filter on)
TEXT_DOCS: dict[str, tuple[str | None, str, int]] = {
    "t1": ("the quick brown fox", "python", 1),
    "t2": ("a lazy dog sleeps all day", "fox", 2),
    "t3": ("quick quick fox", "python", 3),
    "t4": ("Python parsers for JSON", "plain", 4),
    "t5": (None, "fox", 5),
}


def text_records() -> list[Record]:
    """The full-text dataset: ``body`` is a TEXT field, ``label`` a plain string."""
    return [
        Record([Field("body", body, FieldType.TEXT), Field("label", label), Field("n", n)], id=rid)
        for rid, (body, label, n) in TEXT_DOCS.items()
    ]


class FullTextTests(ConformanceBase):
    """``text_search`` finds words in TEXT fields only, follows writes, and honours k and filter."""

    @staticmethod
    def text_search(db: DatabaseLike, query: str, **options: Any) -> list[TextSearchResult]:
        """``db.text_search`` (kept in one place: the blocking protocol may not list it yet)."""
        hits: list[TextSearchResult] = cast(Any, db).text_search(query, **options)
        return hits

    def runs_full_text(self, db: DatabaseLike) -> bool:
        """True on a FULL_TEXT backend; otherwise asserts the typed refusal (which changes
        nothing) and returns False, so a test checks one or the other and never skips."""
        if db.capabilities().supports(Feature.FULL_TEXT):
            return True
        before = self.snapshot(db)
        with pytest.raises(UnsupportedError):
            self.text_search(db, "fox")
        with pytest.raises(UnsupportedError):
            self.text_search(db, "fox", k=1, filter=F("n") < 3)
        assert self.snapshot(db) == before
        return False

    @pytest.fixture
    def text_db(self, db: DatabaseLike) -> DatabaseLike:
        """``db`` holding :data:`TEXT_DOCS`."""
        db.create_batch(text_records())
        return db

    def test_text_search_is_run_or_refused(self, text_db: DatabaseLike) -> None:
        """A backend without FULL_TEXT refuses with UnsupportedError; one with it finds the
        records whose TEXT fields hold the word (case-folded), never those with it elsewhere."""
        if not self.runs_full_text(text_db):
            return
        assert sorted(h.id for h in self.text_search(text_db, "fox")) == ["t1", "t3"]
        assert [h.id for h in self.text_search(text_db, "PYTHON")] == ["t4"]
        assert [h.id for h in self.text_search(text_db, "quick")] == ["t3", "t1"]
        assert self.text_search(text_db, "nowhere") == []
        hits = self.text_search(text_db, "quick fox dog")
        assert sorted(h.id for h in hits) == ["t1", "t2", "t3"]
        assert [h.rank for h in hits] == [1, 2, 3]
        assert all(a.score >= b.score for a, b in pairwise(hits))
        full = {r.id: r for r in text_records()}
        self.assert_records_equal([h.record for h in hits], [full[h.id] for h in hits])

    def test_text_search_follows_writes(self, text_db: DatabaseLike) -> None:
        """Updates, deletes and clears reach the text index at once."""
        if not self.runs_full_text(text_db):
            return
        replaced = Record([Field("body", "a sleepy cat", FieldType.TEXT)], id="t3")
        assert text_db.update("t3", replaced) is True
        assert [h.id for h in self.text_search(text_db, "fox")] == ["t1"]
        assert [h.id for h in self.text_search(text_db, "cat")] == ["t3"]
        assert text_db.delete("t1") is True
        assert self.text_search(text_db, "fox") == []
        text_db.clear()
        assert self.text_search(text_db, "cat") == []

    def test_text_search_k_filter_and_bad_arguments(self, text_db: DatabaseLike) -> None:
        """k caps the hits, the filter restricts the records, bad arguments raise QueryError."""
        if not self.runs_full_text(text_db):
            return
        assert [h.id for h in self.text_search(text_db, "quick fox", k=1)] == ["t3"]
        assert [h.id for h in self.text_search(text_db, "fox", filter=F("n") < 3)] == ["t1"]
        for bad in ({"k": 0}, {"k": True}, {"fields": "body"}):
            with pytest.raises(QueryError):
                self.text_search(text_db, "fox", **bad)
