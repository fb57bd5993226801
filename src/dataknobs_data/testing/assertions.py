"""Comparisons the suite makes: records by content, vector hits against an oracle ranking."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Protocol

from ..fields import VectorField
from ..records import Record
from ..vector.types import VectorSearchResult

__all__ = [
    "REL_TOL",
    "TIE_TOL",
    "Candidate",
    "assert_hits",
    "canonical",
    "close",
    "record_ids",
]

#: Scores and distances must agree with a float64 oracle within this relative tolerance.
REL_TOL = 1e-4
#: Hits whose true scores are this close (relative, floor 1) may come in either order.
TIE_TOL = 1e-5


def record_ids(records: Sequence[Record]) -> list[str]:
    """The ids of ``records``, in order."""
    return [r.id for r in records]


def canonical(record: Record) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(id, {name: (type, value, provenance)}, metadata)``: what a store must give back.

    Field order is not part of it (stores that keep fields in a JSON document may reorder
    them); field types are, so ``1.0`` stored as a float must not come back as the int ``1``.
    """
    fields: dict[str, Any] = {}
    for name, f in record.fields.items():
        if isinstance(f, VectorField):
            value: Any = tuple(float(x) for x in f.value.tolist())
            fields[name] = (f.type.value, value, f.provenance_tuple(), f.metadata)
        else:
            fields[name] = (f.type.value, _freeze(f.value), f.metadata)
    return record.id, fields, dict(record.metadata)


def _freeze(value: Any) -> Any:
    # Tag every scalar with its Python type so True/1/1.0 and -0.0/0.0 stay distinguishable.
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, _freeze(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("list", tuple(_freeze(v) for v in value))
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


def close(actual: float, expected: float, rel: float = REL_TOL) -> bool:
    """Relative closeness with a tiny absolute floor (for values that should be ~0)."""
    return abs(actual - expected) <= rel * max(abs(actual), abs(expected)) + 1e-6


def _tie(score: float) -> float:
    return TIE_TOL * max(1.0, abs(score))


class Candidate(Protocol):
    """An oracle hit: anything with ``id``, ``score`` and ``distance``."""

    @property
    def id(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def distance(self) -> float: ...


def assert_hits(
    hits: Sequence[VectorSearchResult],
    ranking: Sequence[Candidate],
    *,
    k: int,
    score_threshold: float | None = None,
    context: str = "",
) -> None:
    """Check a vector search result against the full oracle ranking (best first).

    ``ranking`` holds every candidate (matching the filter and having a vector), each with
    ``id``, ``score`` and ``distance``. The hits must be a top-``k`` of it: each hit a
    candidate, its score and distance within :data:`REL_TOL` of the oracle's, the j-th hit's
    true score tied (within :data:`TIE_TOL`) with the j-th best true score, exact ties in id
    order, ranks 1..n, and (with a threshold) exactly the top-``k`` hits scoring at least the
    threshold, give or take hits within tolerance of it.
    """
    where = f" [{context}]" if context else ""
    by_id = {c.id: c for c in ranking}
    best = [c.score for c in ranking]
    m = min(k, len(ranking))
    if score_threshold is None:
        low = high = m
    else:
        low = sum(1 for s in best[:m] if s >= score_threshold + _tie(s))
        high = sum(1 for s in best[:m] if s >= score_threshold - _tie(s))
    got = [(h.record.id, h.score) for h in hits]
    assert low <= len(hits) <= high, (
        f"expected {low}..{high} hits, got {len(hits)}{where}: {got}; "
        f"oracle top: {[(c.id, c.score) for c in ranking[: m + 2]]}"
    )
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1)), f"ranks{where}: {hits}"
    ids = [h.record.id for h in hits]
    assert [h.id for h in hits] == ids, f"hit ids differ from their records' ids{where}"
    assert len(set(ids)) == len(ids), f"a record came back twice{where}: {ids}"
    for j, h in enumerate(hits):
        cand = by_id.get(h.record.id)
        assert cand is not None, f"{h.record.id!r} is not a candidate{where} (filtered/no vector)"
        assert close(h.score, cand.score), (
            f"score of {h.record.id!r}: {h.score!r} != oracle {cand.score!r}{where}"
        )
        assert close(h.distance, cand.distance), (
            f"distance of {h.record.id!r}: {h.distance!r} != oracle {cand.distance!r}{where}"
        )
        assert abs(cand.score - best[j]) <= _tie(best[j]), (
            f"rank {j + 1} holds {h.record.id!r} (true score {cand.score!r}) but the "
            f"{j + 1}-th best true score is {best[j]!r}{where}: {got}"
        )
        if score_threshold is not None:
            assert cand.score >= score_threshold - _tie(score_threshold), (
                f"{h.record.id!r} scores {cand.score!r} < threshold {score_threshold}{where}"
            )

    def exact_tie(a: str, b: str) -> bool:
        # Scores alone can collapse (1 / (1 + 1e-18) == 1 / (1 + 0)); distances tell them apart.
        x, y = by_id[a], by_id[b]
        return x.score == y.score and x.distance == y.distance

    for a, b in itertools.pairwise(ids):
        if exact_tie(a, b):
            assert a < b, f"exact tie between {a!r} and {b!r} not in id order{where}"
    returned = set(ids)
    for c in ranking:  # an exact tie at the cut keeps the smaller ids
        if c.id not in returned:
            for rid in ids:
                assert not (exact_tie(rid, c.id) and rid > c.id), (
                    f"{rid!r} returned but {c.id!r}, tied with it exactly, was left out{where}"
                )
