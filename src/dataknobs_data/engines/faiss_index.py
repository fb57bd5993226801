"""One faiss index over int64 labels: kind choice, build, incremental writes, deletes, search.

Shared by :class:`~dataknobs_data.vector.stores.faiss.FaissVectorStore` and the ``faiss://``
database backend. The caller owns the vectors and the string-id <-> label table
(:class:`LabelTable`); this class owns only the faiss object, so it can always be rebuilt
from the caller's data (``source()``), which is how training, the ``auto`` upgrade and HNSW
compaction work.

Index kinds and the ``auto`` rule (:func:`resolve_kind`):

* ``flat``: ``IndexIDMap2(IndexFlat)``, exact. Chosen by ``auto`` below 10,000 vectors, for
  the L1 metric (faiss scores L1 exactly only by brute force), or when ``recall_target`` is
  >= 0.999.
* ``hnsw``: ``IndexIDMap2(IndexHNSWFlat)`` (M=32, efConstruction=80). Chosen by ``auto`` from
  10,000 up to 2,000,000 vectors; default efSearch from the recall target (<= 0.9: 32,
  <= 0.97: 64, else 128; measured on 100k x 128 embeddings-like data: recall@10 0.94/0.99/0.999).
  faiss cannot remove from HNSW, so deletes are tombstones (filtered out with an id selector)
  and the graph is rebuilt when they exceed ``compact_ratio`` of it.
* ``ivfflat`` / ``ivfpq``: ``IndexIVFFlat`` / ``IndexIVFPQ`` with nlist = 4*sqrt(n) (at most
  n/39), nprobe = nlist/16, PQ with 8-bit codes (fewer below 10k vectors) over sub-vectors of
  at least 2 dimensions, trained on the data present when first searched. ``auto`` picks
  them from 2,000,000 vectors (``ivfpq`` when ``recall_target`` < 0.9). Deletes use
  ``remove_ids``. IVF-PQ distances are approximate, so callers re-rank candidates exactly.

Cosine is inner product over L2-normalised copies; faiss's ``METRIC_L2`` is squared, which
:func:`distance_list` converts back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from ..errors import BackendError, UnsupportedMetricError, ValidationError
from ..ints import checked_int
from ..vector.params import CacheKey, cache_key, search_params
from ..vector.types import DistanceMetric

__all__ = [
    "AUTO_FLAT_BELOW",
    "AUTO_IVF_FROM",
    "KINDS",
    "FaissIndex",
    "LabelTable",
    "SearchParams",
    "distance_list",
    "faiss_errors",
    "resolve_kind",
]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
KINDS = ("flat", "hnsw", "ivfflat", "ivfpq")
AUTO_FLAT_BELOW = 10_000
AUTO_IVF_FROM = 2_000_000
#: build parameters and the spellings accepted for them (VectorIndexConfig uses lists/probes)
_BUILD_PARAMS = {
    "m": "m",
    "ef_construction": "ef_construction",
    "ef_search": "ef_search",
    "nlist": "nlist",
    "lists": "nlist",
    "nprobe": "nprobe",
    "probes": "nprobe",
    "pq_m": "pq_m",
    "pq_nbits": "pq_nbits",
}
_MIN_TOMBSTONES = 64


def resolve_kind(kind: str, n: int, metric: DistanceMetric, recall_target: float) -> str:
    """The index kind to build for ``n`` vectors (see the module docstring for the rule)."""
    if kind != "auto":
        if kind not in KINDS:
            raise ValidationError(f"faiss index kind must be 'auto' or one of {KINDS}: {kind!r}")
        if metric is DistanceMetric.L1 and kind != "flat":
            raise UnsupportedMetricError(
                f"faiss scores L1 exactly only with a flat index, not {kind!r}; "
                "use kind='flat' (or 'auto') or another metric"
            )
        return kind
    if metric is DistanceMetric.L1 or recall_target >= 0.999 or n < AUTO_FLAT_BELOW:
        return "flat"
    if n < AUTO_IVF_FROM:
        return "hnsw"
    return "ivfflat" if recall_target >= 0.9 else "ivfpq"


def default_ef_search(recall_target: float) -> int:
    if recall_target <= 0.9:
        return 32
    return 64 if recall_target <= 0.97 else 128


def check_build_params(params: Mapping[str, Any]) -> dict[str, int]:
    """Canonical build parameters (``lists`` -> ``nlist``...); a typed error names a bad one."""
    out: dict[str, int] = {}
    for key, value in params.items():
        name = _BUILD_PARAMS.get(key)
        if name is None:
            raise ValidationError(
                f"unknown faiss index parameter {key!r}; known: {sorted(_BUILD_PARAMS)}"
            )
        out[name] = checked_int(f"faiss parameter {key}", value, 1)
    if out.get("pq_nbits", 8) > 16:
        raise ValidationError("pq_nbits must be at most 16")
    return out


@dataclass(frozen=True, slots=True)
class SearchParams:
    """Per-query knobs: ``ef_search`` (HNSW), ``nprobe`` (IVF), ``exact`` (brute force)."""

    ef_search: int | None = None
    nprobe: int | None = None
    exact: bool = False

    @classmethod
    def parse(cls, params: Mapping[str, Any]) -> SearchParams:
        """Validated by the package's one checker (:mod:`dataknobs_data.vector.params`):
        ``ef_search``, ``probes`` (alias ``nprobe``), ``exact``; anything else is refused.
        Cached by value: a search loop passes the same few knobs on every call."""
        if not params:
            return _NO_PARAMS
        try:
            return _parse_cached(cache_key(params))
        except TypeError:  # an unhashable value: let the checker say what is wrong with it
            return cls.of(search_params(params))

    @classmethod
    def of(cls, checked: Mapping[str, Any]) -> SearchParams:
        """From already validated, canonical ``search_params``."""
        return cls(checked.get("ef_search"), checked.get("probes"), bool(checked.get("exact")))


_NO_PARAMS = SearchParams()


@lru_cache(maxsize=256)
def _parse_cached(key: CacheKey) -> SearchParams:
    return SearchParams.of(search_params(dict(key[0])))


def distance_list(values: list[float], metric: DistanceMetric) -> list[float]:
    """faiss's numbers -> the package's distances (1 - cos, -dot, true L2, L1), for the handful
    of values one query returns: plain Python beats numpy's per-call overhead there."""
    if metric is DistanceMetric.EUCLIDEAN:
        return [math.sqrt(v) if v > 0.0 else 0.0 for v in values]
    if metric is DistanceMetric.COSINE:
        return [1.0 - min(1.0, max(-1.0, v)) for v in values]
    if metric is DistanceMetric.DOT_PRODUCT:
        return [-v for v in values]
    return values


def _faiss_metric(metric: DistanceMetric) -> int:
    if metric is DistanceMetric.EUCLIDEAN:
        return int(faiss.METRIC_L2)
    if metric is DistanceMetric.L1:
        return int(faiss.METRIC_L1)
    return int(faiss.METRIC_INNER_PRODUCT)


def _pq_m(dims: int) -> int:
    for m in (64, 48, 32, 24, 16, 12, 8, 4, 2, 1):
        if m == 1 or (m <= dims and dims % m == 0 and dims // m >= 2):
            return m
    return 1  # pragma: no cover


class LabelTable:
    """String ids <-> int64 faiss labels; labels are never reused until :meth:`renumber`.

    ``names`` holds the same id objects as ``ids`` in a numpy object array (with spare
    capacity, like ``alive``), so a search maps its label array to ids in one gather instead
    of a Python loop over cold list slots.
    """

    __slots__ = ("alive", "ids", "label_of", "names")

    def __init__(self) -> None:
        self.ids: list[str | None] = []
        self.label_of: dict[str, int] = {}
        self.alive = np.zeros(0, dtype=bool)
        self.names: npt.NDArray[np.object_] = np.empty(0, dtype=object)

    def __len__(self) -> int:
        return len(self.label_of)

    @property
    def span(self) -> int:
        """One past the highest label handed out (the size of a label bitmap)."""
        return len(self.ids)

    def assign(self, ids: Sequence[str]) -> I64:
        """New labels for ids that have none (callers retire the old label first)."""
        start = len(self.ids)
        labels = np.arange(start, start + len(ids), dtype=np.int64)
        self.ids.extend(ids)
        for i, rid in enumerate(ids):
            self.label_of[rid] = start + i
        if len(self.ids) > self.alive.shape[0]:
            capacity = max(len(self.ids), 2 * self.alive.shape[0])
            alive = np.zeros(capacity, dtype=bool)
            alive[:start] = self.alive[:start]
            names = np.empty(capacity, dtype=object)
            names[:start] = self.names[:start]
            self.alive, self.names = alive, names
        self.alive[start : start + len(ids)] = True
        self.names[start : start + len(ids)] = ids
        return labels

    def retire(self, ids: Iterable[str]) -> I64:
        """Forget ids (those absent are skipped); returns their labels."""
        labels = [self.label_of.pop(rid) for rid in ids if rid in self.label_of]
        for label in labels:
            self.ids[label] = None
        out = np.asarray(labels, dtype=np.int64)
        self.alive[out] = False
        self.names[out] = None
        return out

    def revive(self, labels: Mapping[str, int]) -> None:
        """Give ids back the labels :meth:`retire` took from them (undoing a failed write;
        the labels were not handed out again, since labels are never reused)."""
        for rid, label in labels.items():
            self.ids[label] = rid
            self.label_of[rid] = label
            self.alive[label] = True
            self.names[label] = rid

    def renumber(self, ids: Sequence[str]) -> I64:
        """Start over with ``ids`` as labels ``0..n-1`` (after a full rebuild)."""
        self.ids, self.label_of = [], {}
        self.alive = np.zeros(0, dtype=bool)
        self.names = np.empty(0, dtype=object)
        return self.assign(ids)

    def live_mask(self) -> npt.NDArray[np.bool_]:
        return self.alive[: self.span]

    def to_json(self) -> list[str | None]:
        return list(self.ids)

    @classmethod
    def from_json(cls, ids: list[str | None]) -> LabelTable:
        table = cls()
        table.ids = list(ids)
        table.label_of = {rid: i for i, rid in enumerate(ids) if rid is not None}
        table.alive = np.asarray([rid is not None for rid in ids], dtype=bool)
        table.names = np.empty(len(ids), dtype=object)
        table.names[:] = ids
        return table


Source = Callable[[], tuple[I64, F32]]


@contextmanager
def faiss_errors() -> Iterator[None]:
    """faiss reports failures as ``RuntimeError`` (from C++): the package's error instead."""
    try:
        yield
    except RuntimeError as exc:
        raise BackendError(f"faiss: {exc}") from exc


class FaissIndex:
    """A faiss index for one vector space; see the module docstring."""

    def __init__(
        self,
        dims: int,
        metric: DistanceMetric,
        kind: str = "auto",
        params: Mapping[str, Any] | None = None,
        *,
        recall_target: float = 0.95,
        compact_ratio: float = 0.25,
    ) -> None:
        if not 0.0 < recall_target <= 1.0:
            raise ValidationError(f"recall_target must be in (0, 1], got {recall_target!r}")
        if not 0.0 < compact_ratio <= 1.0:
            raise ValidationError(f"compact_ratio must be in (0, 1], got {compact_ratio!r}")
        self.dims = dims
        self.metric = metric
        self.params = check_build_params(params or {})
        resolve_kind(kind, 0, metric, recall_target)  # validates kind and metric now
        self.requested = kind
        self.recall_target = recall_target
        self.compact_ratio = compact_ratio
        self.kind: str | None = None
        self.index: Any = None
        self.stale = True  # the faiss object does not hold every live vector (yet)
        self.tombstones = 0
        self.build_seconds = 0.0
        self.built_rows = 0
        self._param_cache: dict[tuple[Any, ...], Any] = {}

    # -- vectors as faiss wants them ----------------------------------------------------
    def prepare(self, vectors: F32) -> F32:
        """Contiguous float32 (for cosine an L2-normalised copy; zero rows stay zero)."""
        if self.metric is not DistanceMetric.COSINE:
            return np.ascontiguousarray(vectors, dtype=np.float32)  # faiss copies what it keeps
        out = np.array(vectors, dtype=np.float32, order="C", copy=True)
        if out.shape[0]:
            faiss.normalize_L2(out)
        return out

    # -- building -------------------------------------------------------------------------
    def _nlist(self, n: int) -> int:
        given = self.params.get("nlist")
        if given is not None:
            return max(1, min(given, n))
        return max(1, min(int(4 * math.sqrt(n)), n // 39))

    def _create(self, kind: str, vectors: F32) -> Any:
        n, d, metric = vectors.shape[0], self.dims, _faiss_metric(self.metric)
        if kind == "flat":
            return faiss.IndexIDMap2(faiss.IndexFlat(d, metric))
        if kind == "hnsw":
            inner = faiss.IndexHNSWFlat(d, self.params.get("m", 32), metric)
            inner.hnsw.efConstruction = self.params.get("ef_construction", 80)
            inner.hnsw.efSearch = self.params.get(
                "ef_search", default_ef_search(self.recall_target)
            )
            return faiss.IndexIDMap2(inner)
        nlist = self._nlist(n)
        quantizer = faiss.IndexFlat(d, metric)
        index: Any
        if kind == "ivfflat":
            index = faiss.IndexIVFFlat(quantizer, d, nlist, metric)
        else:
            pq_m = self.params.get("pq_m", _pq_m(d))
            if d % pq_m:
                raise ValidationError(f"pq_m={pq_m} must divide the dimensions ({d})")
            # faiss wants ~39 training points per centroid: 2**nbits centroids per sub-space.
            nbits = self.params.get("pq_nbits", min(8, max(4, int(math.log2(max(2, n) / 39)))))
            index = faiss.IndexIVFPQ(quantizer, d, nlist, pq_m, nbits, metric)
        if n:
            sample = vectors
            if n > 256 * nlist:
                rng = np.random.default_rng(0)
                sample = vectors[np.sort(rng.choice(n, 256 * nlist, replace=False))]
            index.train(sample)
        index.nprobe = self.params.get("nprobe", max(1, min(nlist, nlist // 16 or 1)))
        return index

    def build(self, labels: I64, vectors: F32) -> None:
        """Replace the faiss object with one holding exactly these vectors."""
        started = time.perf_counter()
        kind = resolve_kind(self.requested, len(labels), self.metric, self.recall_target)
        prepared = self.prepare(vectors)
        index = self._create(kind, prepared)
        if len(labels):
            index.add_with_ids(prepared, np.ascontiguousarray(labels, dtype=np.int64))
        self.index, self.kind = index, kind
        self.stale, self.tombstones = False, 0
        self._param_cache.clear()
        self.built_rows = len(labels)
        self.build_seconds = time.perf_counter() - started

    def ensure(self, live: int, source: Source) -> bool:
        """Build or rebuild when needed; ``True`` when it did (labels may have been renumbered
        by ``source``). Needed: nothing built yet, an untrained IVF, an ``auto`` index whose
        size now calls for another kind, or HNSW tombstones above ``compact_ratio``."""
        if not self._needs_build(live):
            return False
        labels, vectors = source()
        self.build(labels, vectors)
        return True

    def _needs_build(self, live: int) -> bool:
        if self.index is None or self.stale:
            return True
        if self.requested == "auto" and self.kind == "flat":
            target = resolve_kind("auto", live, self.metric, self.recall_target)
            if target != "flat":
                return True
        total = self.tombstones + live
        return self.tombstones >= _MIN_TOMBSTONES and self.tombstones > self.compact_ratio * total

    def invalidate(self) -> None:
        """Forget the faiss object (the next :meth:`ensure` rebuilds from the caller's data)."""
        self.index, self.kind, self.stale, self.tombstones = None, None, True, 0
        self._param_cache.clear()

    # -- writes ---------------------------------------------------------------------------
    def add(self, labels: I64, vectors: F32) -> None:
        if not len(labels):
            return
        if self.index is None or self.stale:
            self.stale = True  # built later from the caller's data, trained on all of it
            return
        self.index.add_with_ids(self.prepare(vectors), np.ascontiguousarray(labels))

    def remove(self, labels: I64) -> None:
        if not len(labels) or self.index is None or self.stale:
            return
        if self.kind == "hnsw":
            self.tombstones += len(labels)  # faiss cannot remove from HNSW
        else:
            self.index.remove_ids(faiss.IDSelectorBatch(np.ascontiguousarray(labels)))

    # -- search ---------------------------------------------------------------------------
    def search(
        self,
        queries: F32,
        k: int,
        allowed: npt.NDArray[np.bool_] | None,
        params: SearchParams,
    ) -> tuple[npt.NDArray[np.float32], I64]:
        """faiss distances and labels (``-1`` padded), restricted to labels where ``allowed``
        (a bool array indexed by label) is true. ``queries`` are raw; they are prepared here."""
        q = self.prepare(queries)
        selector = None
        if allowed is not None:
            bitmap = np.packbits(allowed, bitorder="little")
            selector = faiss.IDSelectorBitmap(allowed.shape[0], faiss.swig_ptr(bitmap))
        return self.run(q, k, self._search_params(selector, params))

    def run(self, prepared: F32, k: int, sp: Any) -> tuple[npt.NDArray[np.float32], I64]:
        """faiss's ``search_c`` on queries already :meth:`prepare`-d (a 2-D batch, or one 1-D
        query: 1-D results): what faiss's own Python ``search`` does, minus re-checking what
        the caller has checked (a single query spends as much time in that wrapper's numpy
        calls as in a small HNSW search's tail)."""
        n = 1 if prepared.ndim == 1 else prepared.shape[0]
        shape = (k,) if prepared.ndim == 1 else (n, k)
        distances = np.empty(shape, dtype=np.float32)
        labels = np.empty(shape, dtype=np.int64)
        self.index.search_c(
            n, faiss.swig_ptr(prepared), k, faiss.swig_ptr(distances), faiss.swig_ptr(labels), sp
        )
        return distances, labels

    def search_one(
        self, query: F32, k: int, params: SearchParams
    ) -> tuple[npt.NDArray[np.float32], I64]:
        """One raw 1-D float32 query without a selector on a :meth:`ready` index: faiss's
        distances and labels, 1-D (``-1`` padded)."""
        if self.metric is DistanceMetric.COSINE:
            query = self.prepare(query.reshape(1, -1))[0]
        elif not query.flags.c_contiguous:
            query = np.ascontiguousarray(query)
        return self.run(query, k, self.plain_params(params))

    def ready(self, live: int) -> bool:
        """Built, current and without tombstones: a search needs no rebuild and no selector."""
        return not self.tombstones and not self._needs_build(live)

    def _search_params(self, selector: Any, params: SearchParams) -> Any:
        if selector is None:
            return self.plain_params(params)
        return self._new_search_params(selector, params)

    def plain_params(self, params: SearchParams) -> Any:
        """Search parameters without a selector, reused (building a swig parameter object
        costs microseconds)."""
        key = (self.kind, params.ef_search, params.nprobe)
        cached = self._param_cache.get(key)
        if cached is None:
            cached = self._param_cache[key] = self._new_search_params(None, params)
        return cached

    def _new_search_params(self, selector: Any, params: SearchParams) -> Any:
        if self.kind == "hnsw":
            ef = params.ef_search or self.params.get(
                "ef_search", default_ef_search(self.recall_target)
            )
            sp: Any = faiss.SearchParametersHNSW(efSearch=ef)  # type: ignore[attr-defined]
        elif self.kind in ("ivfflat", "ivfpq"):
            nprobe = params.nprobe or int(self.index.nprobe)
            sp = faiss.SearchParametersIVF(nprobe=nprobe)  # type: ignore[call-arg]
        elif selector is None:
            return None
        else:
            sp = faiss.SearchParameters()
        if selector is not None:
            sp.sel = selector
        return sp

    # -- persistence and stats ------------------------------------------------------------
    def to_bytes(self) -> bytes | None:
        """The faiss object serialised by faiss itself (no pickle), or ``None`` if unbuilt."""
        if self.index is None or self.stale:
            return None
        return bytes(faiss.serialize_index(self.index))

    def restore(self, data: bytes, kind: str, tombstones: int) -> None:
        self.index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        self.kind, self.tombstones, self.stale = kind, tombstones, False
        self._param_cache.clear()
        self.built_rows = int(self.index.ntotal)

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "engine": "faiss",
            "requested": self.requested,
            "kind": self.kind,
            "type": self.kind,  # the key other backends use (None: not built yet)
            "metric": self.metric.value,
            "recall_target": self.recall_target,
            "params": dict(self.params),
            "ntotal": 0 if self.index is None else int(self.index.ntotal),
            "tombstones": self.tombstones,
            "stale": self.stale,
            "build_seconds": self.build_seconds,
            "rows_at_build": self.built_rows,
        }
        if self.kind == "hnsw" and self.index is not None:
            out["ef_search"] = self.params.get("ef_search", default_ef_search(self.recall_target))
            out["m"] = self.params.get("m", 32)
        if self.kind in ("ivfflat", "ivfpq") and self.index is not None:
            out["nlist"] = int(self.index.nlist)
            out["nprobe"] = int(self.index.nprobe)
        return out
