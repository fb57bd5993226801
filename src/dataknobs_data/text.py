"""Full-text search over ``TEXT`` fields: the request a backend receives and the hits it returns.

Semantics every backend implementing :attr:`~dataknobs_data.capabilities.Feature.FULL_TEXT`
follows:

* the query is plain words, never a query language: it is split on whitespace and each word
  is matched literally (operators such as ``AND``, ``NEAR(``, ``"``, ``*``, ``-`` or ``:`` are
  just text), so no user input can raise a syntax error or change the query's meaning; a word
  with punctuation inside (``e-mail``) matches the phrase of its parts, as it was indexed;
* words are OR-ed: a record matches when any word occurs in one of its indexed ``TEXT`` fields,
  and BM25 ranks records holding more (and rarer) query words first;
* a record's :attr:`TextSearchResult.score` is higher-is-better (the negated engine BM25, summed
  over the record's matching ``TEXT`` fields); ties are broken by id, ascending;
* a query without words (empty, or whitespace only) is refused with :class:`QueryError`:
  it asks nothing, and answering it with hits or with ``[]`` would both mislead;
* ``fields`` names ``TEXT`` fields: a name no stored record holds is an
  :class:`~dataknobs_data.errors.UnknownFieldError`, and a field stored only with another type
  (``STRING``, numbers...) a :class:`QueryError`, because only ``TEXT`` is indexed for full
  text (``STRING`` is for exact matching: ids, labels, codes; declare ``FieldType.TEXT`` for
  prose).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import QueryError
from .fields import validate_field_name
from .ints import checked_int
from .query import Filter
from .records import Record
from .strings import check_text

__all__ = ["TextSearchRequest", "TextSearchResult", "query_words", "text_search_options"]


@dataclass(frozen=True, slots=True)
class TextSearchResult:
    """One hit of a full-text search: ``rank`` starts at 1, ``score`` is higher-is-better."""

    record: Record
    score: float
    rank: int

    @property
    def id(self) -> str:
        """The hit's record id."""
        return self.record.id


@dataclass(frozen=True, slots=True)
class TextSearchRequest:
    """A validated full-text query: its words, the ``TEXT`` fields to search (``None``: all),
    the number of hits wanted and an optional filter on the records."""

    words: tuple[str, ...]
    fields: tuple[str, ...] | None
    k: int
    filter: Filter | None


def query_words(query: object) -> tuple[str, ...]:
    """The whitespace-separated words of a query string (``QueryError`` if not a string)."""
    if not isinstance(query, str):
        raise QueryError(f"a text query must be a string, got {type(query).__name__}")
    words = tuple(check_text(None, query, "text query").split())
    if not words:
        raise QueryError(f"a text query needs at least one word, got {query!r}")
    return words


def text_search_options(fields: Sequence[str] | None, k: int) -> tuple[tuple[str, ...] | None, int]:
    """Validated ``(fields, k)`` of a text search."""
    k = checked_int("k", k, 1, error=QueryError)
    if fields is None:
        return None, k
    if isinstance(fields, str):
        raise QueryError("fields must be a list of field names, got a single string")
    names = tuple(dict.fromkeys(validate_field_name(f) for f in fields))
    if not names:
        raise QueryError("fields must name at least one TEXT field (or be None for all)")
    return names, k
