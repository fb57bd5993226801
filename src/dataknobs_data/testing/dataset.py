"""The conformance dataset: 30 deliberately awkward records, and oracles written as plain Python.

The records mix kinds inside one field (``num`` holds ints, floats, ``-0.0``, a boolean, the
string ``"5"``, ``None``, and is missing from some records), store aware and naive datetimes
(naive means UTC) and an ISO string that is *not* a datetime, nest JSON objects
(``meta.author``, ``meta.stats.views``) next to JSON values that are lists, strings or ``None``
where an object is expected, and hold lists with ``None``, empty lists, nested lists and mixed
kinds. Ids are not all ``rNN``: ``"Zed"`` sorts before them and ``"été"`` after (code points).
27 records carry an 8-d vector (small multiples of 1/4, exact in float32) with exact duplicates,
a zero vector and a vector that is twice another (a cosine tie); three carry none.

The oracles below read only this module's plain data. They follow the semantics in the
:mod:`dataknobs_data.query` docstring, stated again where they are used, so a failing test
points at one rule.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ..fields import VectorField
from ..records import Record
from ..vector.types import DistanceMetric

__all__ = [
    "DIM",
    "DOCS",
    "IDS",
    "MODEL_LABEL",
    "MODEL_NAME",
    "MODEL_VERSION",
    "QUERY_VECTORS",
    "VECTOR_FIELD",
    "Doc",
    "OracleHit",
    "SortKey",
    "build_records",
    "candidates",
    "doc",
    "expected_ids",
    "expected_knn",
    "expected_order",
    "exists",
    "has",
    "kind",
    "like",
]

DIM: Final = 8
VECTOR_FIELD: Final = "embedding"
MODEL_NAME: Final = "conformance-model"
MODEL_VERSION: Final = "1"
MODEL_LABEL: Final = f"{MODEL_NAME}@{MODEL_VERSION}"

_V: Final[tuple[tuple[float, ...], ...]] = (
    (2.0, 0.5, 0.75, 1.75, 0.25, 1.25, 1.5, -1.25),
    (-2.0, -0.75, -1.0, 1.5, 1.75, -2.0, 0.0, 1.25),
    (-1.5, 1.25, -1.5, -0.25, 1.25, -0.75, -0.75, -1.0),
    (1.0, -1.0, 2.0, -0.25, 0.0, 0.0, 0.25, 0.25),
    (0.0, 2.0, 1.25, 1.25, 0.75, 0.5, -0.75, 2.0),
    (-0.25, -1.25, 1.5, -1.5, 1.5, 0.5, -1.75, -2.0),
    (-0.25, -2.0, -1.5, 0.0, 2.0, -0.25, 1.25, 1.75),
    (1.25, 0.5, -0.25, 0.0, -1.0, 0.0, -0.5, -1.0),
    (2.0, -2.0, -1.75, -1.25, 2.0, 0.75, 1.5, -1.25),
    (1.0, -0.5, 0.0, -2.0, 0.5, 1.5, 0.75, -1.5),
    (0.25, -1.0, 2.0, 1.5, -1.25, 0.0, 1.75, 1.5),
    (1.0, 0.5, -2.0, 1.0, 0.0, -1.75, -1.0, 0.25),
    (1.0, 0.0, 0.5, 1.5, 0.75, -0.5, 0.5, 0.5),
    (-1.75, -1.75, 0.75, -0.5, 0.5, -0.75, -1.25, -1.5),
    (-0.5, 1.25, -0.5, -0.5, 0.25, 2.0, -0.5, 0.5),
    (-0.25, 0.5, -0.25, 0.5, 0.25, 0.75, 2.0, -1.5),
    (0.25, -0.25, -0.5, -1.0, -2.0, -0.5, 1.5, -1.75),
    (-0.5, 2.0, 2.0, -1.25, -2.0, 0.75, -2.0, -0.75),
)
_ZERO: Final = (0.0,) * DIM
_TWICE_V3: Final = tuple(2.0 * x for x in _V[3])

#: Query vectors for the vector tests: a stored vector, three unrelated ones, and all-halves.
QUERY_VECTORS: Final[tuple[tuple[float, ...], ...]] = (
    _V[0],
    (0.25, -1.25, 1.0, 1.75, -1.0, 0.25, -2.0, -1.25),
    (-0.5, 1.75, 2.0, 0.5, 0.25, 0.25, -1.75, -0.5),
    (2.0, -0.5, -1.25, -1.0, 1.0, -2.0, 2.0, 1.5),
    (0.5,) * DIM,
)

_PLUS2 = timezone(timedelta(hours=2))

# (id, fields); an "embedding" entry is a tuple of floats, wrapped in a VectorField on build.
_RAW: Final[tuple[tuple[str, dict[str, Any]], ...]] = (
    ("r01", {"title": "alpha", "num": 1, "group": 1, "flag": True,
             "when": datetime(2021, 1, 1, tzinfo=UTC),
             "meta": {"author": "ann", "stats": {"views": 10}},
             "tags": ["a", "b"], "nums": [1, 10], "embedding": _V[0]}),
    ("r02", {"title": "Alpha", "num": 1.0, "group": 2, "flag": False,
             "when": datetime(2021, 1, 1, 12, 0),
             "meta": {"author": "bob", "stats": {"views": -3}},
             "tags": ["b"], "embedding": _V[0]}),
    ("r03", {"title": "beta", "num": -2, "group": 1, "flag": None,
             "when": datetime(2021, 6, 1, 2, 0, tzinfo=_PLUS2),
             "meta": {"author": None, "stats": {"views": 0}},
             "tags": [], "nums": [3], "embedding": _V[1]}),
    ("r04", {"title": "Ünïcødé", "num": 2.5, "group": 3, "when": None,
             "meta": {"stats": {}}, "tags": [None], "nums": [], "embedding": _V[2]}),
    ("r05", {"title": "日本語", "num": -0.5, "group": 2, "flag": True,
             "meta": {"author": "ann"}, "tags": ["a", None], "nums": [None, 4]}),
    ("r06", {"title": "5", "num": "5", "group": 3, "meta": {"author": ["ann", "cy"]},
             "tags": ["5", 5], "embedding": _ZERO}),
    ("r07", {"title": "50%_off", "num": True, "group": 1, "meta": [1, 2], "tags": "a",
             "embedding": _V[3]}),
    ("r08", {"title": "", "num": 0, "group": 2, "meta": "ann", "tags": [["a"], "x"],
             "embedding": _V[1]}),
    ("r09", {"title": None, "num": None, "group": None, "flag": False, "meta": None,
             "tags": None, "nums": None, "embedding": _V[4]}),
    ("r10", {"embedding": _V[5]}),
    ("r11", {"title": "gamma", "num": 10, "group": 3, "flag": True,
             "when": datetime(2020, 2, 29, tzinfo=UTC),
             "meta": {"author": "dee", "stats": {"views": 10.0}},
             "tags": ["c"], "nums": [2, 5], "embedding": _V[6]}),
    ("r12", {"title": "delta", "num": 2, "group": 1, "flag": False,
             "when": datetime(2022, 3, 4, 5, 6, 7, tzinfo=UTC),
             "meta": {"author": "Ann", "stats": {"views": 7}},
             "tags": ["a", "c"], "embedding": _V[7]}),
    ("r13", {"title": "epsilon", "num": 2.0, "group": 2, "when": "2021-01-01T00:00:00+00:00",
             "meta": {"author": "bob", "stats": {"views": 3}},
             "tags": ["b", "c"], "nums": [0.5], "embedding": _V[8]}),
    ("r14", {"title": "zeta", "num": -7.25, "group": 3, "flag": True,
             "when": datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
             "meta": {"author": "cy", "stats": {"views": None}},
             "tags": ["d"], "embedding": _V[9]}),
    ("r15", {"title": "eta", "num": 1000000, "group": 1,
             "when": datetime(2021, 1, 1, tzinfo=UTC),
             "meta": {"author": "ann", "stats": {"views": 10}},
             "tags": ["a"], "embedding": _V[10]}),
    ("r16", {"title": "theta", "num": 3, "flag": False,
             "meta": {"author": "eve", "stats": {"views": 2}},
             "tags": ["b", "a"], "embedding": _V[11]}),
    ("r17", {"title": "iota", "num": 0.1, "group": 2,
             "meta": {"author": "bob", "stats": 5}, "tags": ["e"]}),
    ("r18", {"title": "kappa", "num": -0.0, "group": 3, "flag": True, "tags": ["f"],
             "embedding": _V[12]}),
    ("r19", {"title": "lambda", "num": 2.5, "group": 1,
             "meta": {"author": "ann", "stats": {"views": 1}}, "embedding": _V[13]}),
    ("r20", {"title": "mu", "num": 7, "group": 2, "flag": False,
             "when": datetime(2023, 7, 1, tzinfo=UTC),
             "tags": ["a", "b", "c"], "embedding": _V[0]}),
    ("r21", {"title": "nu", "num": -3, "group": 3, "tags": ["b"], "embedding": _V[14]}),
    ("r22", {"title": "xi", "num": 4.75, "when": datetime(2020, 2, 29, 0, 0),
             "meta": {"author": "bob"}, "embedding": _V[15]}),
    ("r23", {"title": "omicron", "num": -1, "group": 1, "flag": True, "meta": {},
             "tags": ["c", "a"]}),
    ("r24", {"title": "pi", "num": 3.0, "group": 2, "meta": {"stats": {"views": 100}},
             "tags": ["g"], "embedding": _V[16]}),
    ("r25", {"title": "rho", "num": 8, "flag": False, "tags": [True, 1],
             "embedding": _V[17]}),
    ("r26", {"title": "sigma", "num": 0.5, "group": 3,
             "when": datetime(2021, 12, 31, tzinfo=UTC),
             "meta": {"author": "cy"}, "embedding": _TWICE_V3}),
    ("r27", {"title": "tau", "num": 5, "group": 1, "flag": True, "tags": ["5"],
             "embedding": _V[3]}),
    ("r28", {"title": "upsilon", "num": 6, "group": 2,
             "meta": {"author": "ann", "stats": {"views": 10}},
             "tags": ["a"], "embedding": _V[3]}),
    ("Zed", {"title": "Zulu", "num": 9, "group": 3, "flag": False,
             "when": datetime(2024, 1, 1, tzinfo=UTC), "tags": ["z"], "embedding": _V[5]}),
    ("été", {"title": "été", "num": 4, "group": 1, "when": datetime(2021, 6, 1, 0, 0),
             "meta": {"author": "été"}, "tags": ["é"], "embedding": _V[6]}),
)  # fmt: skip


def build_records() -> list[Record]:
    """Fresh :class:`Record` objects for the dataset (safe to mutate; built anew each call)."""
    out: list[Record] = []
    for rid, fields in _RAW:
        data: dict[str, Any] = {}
        for name, value in fields.items():
            if name == VECTOR_FIELD:
                data[name] = VectorField(
                    np.asarray(value, dtype=np.float32),
                    model_name=MODEL_NAME,
                    model_version=MODEL_VERSION,
                    source_field="title",
                )
            else:
                data[name] = value
        out.append(Record(data, id=rid, metadata={"origin": "conformance", "row": rid}))
    return out


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


#: What :meth:`Doc.get` returns for an absent path (distinct from a stored ``None``).
MISSING: Final = _Missing()


def _utc(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


@dataclass(frozen=True)
class Doc:
    """A dataset record as plain Python values (naive datetimes read as UTC)."""

    id: str
    fields: dict[str, Any]

    def get(self, path: str) -> Any:
        """The value at a dotted path, or :data:`MISSING` (objects only are descended)."""
        if path == "_id":
            return self.id
        head, *rest = path.split(".")
        if head not in self.fields:
            return MISSING
        value = self.fields[head]
        for part in rest:
            if not isinstance(value, dict) or part not in value:
                return MISSING
            value = value[part]
        return value

    @property
    def vector(self) -> tuple[float, ...] | None:
        vec = self.fields.get(VECTOR_FIELD)
        return None if vec is None else tuple(vec)


DOCS: Final[tuple[Doc, ...]] = tuple(
    Doc(rid, {k: _utc(v) for k, v in fields.items()}) for rid, fields in _RAW
)
#: Every id, in code-point order (the order of unsorted results).
IDS: Final[tuple[str, ...]] = tuple(sorted(d.id for d in DOCS))
_BY_ID: Final = {d.id: d for d in DOCS}


def doc(record_id: str) -> Doc:
    return _BY_ID[record_id]


# -- predicate vocabulary ------------------------------------------------------------------
def kind(value: Any) -> str | None:
    """``"bool"``, ``"num"`` (int or float, not bool), ``"str"``, ``"dt"``, or ``None``."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "num"
    if isinstance(value, str):
        return "str"
    if isinstance(value, datetime):
        return "dt"
    return None


def candidates(value: Any) -> list[Any]:
    """The values a comparison may match: a scalar itself, or a list's scalar elements.

    ``None``, objects, vectors and elements that are lists or objects never match.
    """
    items = value if isinstance(value, list) else [value]
    return [v for v in items if kind(v) is not None]


def has(d: Doc, path: str, test: Callable[[Any], bool]) -> bool:
    """True when some candidate value at ``path`` passes ``test`` (the any-element rule)."""
    return any(test(v) for v in candidates(d.get(path)))


def exists(d: Doc, path: str) -> bool:
    """At least one non-null value: an empty list or ``[None]`` does not exist."""
    value = d.get(path)
    if value is MISSING or value is None:
        return False
    if isinstance(value, list):
        return any(v is not None for v in value)
    return True


def like(pattern: str) -> Callable[[str], bool]:
    """Whole-string match: ``%`` any run, ``_`` one character, ``\\`` escapes; case-sensitive."""
    tokens: list[str] = []  # "%" / "_" wildcards, or "=c" for a literal character
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            tokens.append("=" + pattern[i + 1])
            i += 2
            continue
        tokens.append(c if c in "%_" else "=" + c)
        i += 1

    def match(text: str) -> bool:
        @functools.cache
        def at(ti: int, si: int) -> bool:
            if ti == len(tokens):
                return si == len(text)
            tok = tokens[ti]
            if tok == "%":
                return any(at(ti + 1, j) for j in range(si, len(text) + 1))
            if si == len(text):
                return False
            return (tok == "_" or tok[1] == text[si]) and at(ti + 1, si + 1)

        return at(0, 0)

    return match


def expected_ids(predicate: Callable[[Doc], bool]) -> list[str]:
    """Ids of the records satisfying ``predicate``, in code-point order."""
    return [rid for rid in IDS if predicate(_BY_ID[rid])]


# -- sorting -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SortKey:
    field: str
    descending: bool = False
    nulls: str = "last"


_KIND_RANK: Final = {"bool": 0, "num": 1, "str": 2, "dt": 3}


def _sort_value(d: Doc, path: str) -> tuple[int, Any] | None:
    value = d.get(path)
    k = kind(value)  # missing, None, lists, objects and vectors have no kind: they sort as null
    return None if k is None else (_KIND_RANK[k], value)


def expected_order(predicate: Callable[[Doc], bool], keys: Sequence[SortKey]) -> list[str]:
    """Matching ids sorted by ``keys``: kinds bool < num < str < dt ascending, nulls placed
    per key whatever the direction, remaining ties by id in code-point order."""

    def compare(a: Doc, b: Doc) -> int:
        for key in keys:
            va, vb = _sort_value(a, key.field), _sort_value(b, key.field)
            if va is None and vb is None:
                continue
            if va is None or vb is None:
                a_first = (va is None) == (key.nulls == "first")
                return -1 if a_first else 1
            if va == vb:
                continue
            c = -1 if va < vb else 1
            return -c if key.descending else c
        return -1 if a.id < b.id else (1 if a.id > b.id else 0)

    matching = [d for d in DOCS if predicate(d)]
    return [d.id for d in sorted(matching, key=functools.cmp_to_key(compare))]


# -- vector search ---------------------------------------------------------------------------
@dataclass(frozen=True)
class OracleHit:
    id: str
    score: float
    distance: float


def _score(
    metric: DistanceMetric, v: npt.NDArray[np.float64], q: npt.NDArray[np.float64]
) -> tuple[float, float]:
    if metric is DistanceMetric.COSINE:
        norms = float(np.linalg.norm(v) * np.linalg.norm(q))
        sim = 0.0 if norms == 0 else float(v @ q) / norms
        return sim, 1.0 - sim
    if metric is DistanceMetric.DOT_PRODUCT:
        dot = float(v @ q)
        return dot, -dot
    if metric is DistanceMetric.EUCLIDEAN:
        dist = float(np.sqrt(((v - q) ** 2).sum()))
    elif metric is DistanceMetric.L1:
        dist = float(np.abs(v - q).sum())
    else:  # pragma: no cover - a new metric needs an oracle first
        raise AssertionError(f"no oracle for {metric}")
    return 1.0 / (1.0 + dist), dist


def expected_knn(
    query: Sequence[float],
    metric: DistanceMetric,
    predicate: Callable[[Doc], bool] | None = None,
) -> list[OracleHit]:
    """Every matching record that has a vector, best first (score desc, then id), in float64.

    No ``k`` and no threshold: the comparison needs the full ranking to judge ties at the cut.
    """
    q = np.asarray(query, dtype=np.float32).astype(np.float64)
    hits = []
    for d in DOCS:
        if d.vector is None or (predicate is not None and not predicate(d)):
            continue
        v = np.asarray(d.vector, dtype=np.float32).astype(np.float64)
        score, dist = _score(metric, v, q)
        if not (math.isfinite(score) and math.isfinite(dist)):  # pragma: no cover
            raise AssertionError(f"oracle produced a non-finite score for {d.id}")
        hits.append(OracleHit(d.id, score, dist))
    hits.sort(key=lambda h: (-h.score, h.id))
    return hits
