"""The chroma backend: records in a chroma collection, one HNSW collection per vector field.

Layout (collection ``<name>``, ``records`` by default):

* ``<name>`` holds every record, vectors or not: the record text and the filter keys in its
  metadata (:mod:`.codec`, :mod:`.encode`), and a constant 1-d embedding, since chroma needs
  one per item. Its collection metadata holds the vector schema (``dataknobs`` key).
* ``<name>-v-<field>`` holds the vectors of one field in chroma's HNSW index (the field's
  metric as its space), with the same filter keys, so a filtered k-NN is one chroma query.

Reads, filters, sorts and pages: filters run in chroma as a compiled ``where``
(:mod:`.where`); the few operators chroma cannot decide alone (string ordering, patterns,
``between``) are narrowed there and finished by the reference predicate, so results are exact.
Sorting, paging and projection are done in Python with :mod:`dataknobs_data.evaluate`.

Vector search goes through HNSW with the ``where`` inside the query, fetches a few candidates
more than ``k``, keeps chroma's order where the candidates are clearly apart and re-ranks
them in float64 where they are not (ties by id; the fetch grows while the cut falls
inside a tie). It is approximate like any HNSW (recall depends on ``ef_search``: set at field
creation, raised per query with ``search_params={"ef_search": n}``, which asks chroma for ``n``
candidates since hnswlib searches with ``max(ef_search, n_results)``; ``{"exact": True}`` scores
exactly; ``probes`` means nothing here and is ignored, as on other HNSW-only engines), so the
backend does not declare :attr:`Feature.EXACT_VECTOR_SEARCH`. Exact scoring of the matching
records replaces HNSW when HNSW cannot answer: a query metric other than the field's space, a
filter chroma cannot decide alone, a zero query under cosine, or an HNSW answer shorter than the
number of matching records (so a filtered search returns ``k`` whenever ``k`` match).

Writes are validated completely first (schema, duplicates, encodability), so bad input
writes nothing. Chroma has no transactions across collections or across its maximum batch
size: a crash in the middle of a large write can leave part of it applied (not declared as
:attr:`Feature.TRANSACTIONS`). One lock serialises calls; the async shell runs them in worker
threads.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import suppress
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ...capabilities import Capabilities, Feature
from ...database import Backend, VectorSearchRequest, WriteMode
from ...errors import BackendError, DuplicateRecordError, SchemaError, UnsupportedError
from ...evaluate import matches, order_records
from ...fields import VectorField
from ...query import Filter, Operator, Query
from ...records import Record
from ...schema import already_declared, plan_vector_schema, resolve_vector_query
from ...vector.operations import rank_exact, scores_from_distances
from ...vector.types import DistanceMetric, VectorConfig, VectorSearchResult
from ..paging import pages_by_id
from .codec import decode_item, encode_item
from .engine import (
    COSINE_TIE,
    F32,
    batches,
    chroma_distances,
    collection,
    drop_collection,
    group_ties,
    hnsw_configuration,
    hnsw_settings,
    open_client,
    release_client,
    space_for,
    validate_collection_name,
)
from .where import WherePlan, plan_where

__all__ = ["ChromaBackend"]

_SCHEMA_KEY = "dataknobs"
_DUMMY = [0.0]
#: candidates fetched beyond k: the (k+1)-th tells whether the cut falls inside a tie
PAD = 1


def _capabilities(persistent: bool) -> Capabilities:
    features = {
        Feature.VECTOR_SEARCH,
        Feature.FILTERED_VECTOR_SEARCH,
        Feature.BATCH_VECTOR_SEARCH,
        Feature.NESTED_FIELDS,
        Feature.STREAMING,
    }
    if persistent:
        features.add(Feature.PERSISTENT)
    return Capabilities(
        backend="chroma",
        operators=frozenset(Operator),
        metrics=frozenset(DistanceMetric),  # L1 has no chroma space: scored exactly
        features=frozenset(features),
        index_types=frozenset({"hnsw"}),
        notes={
            "vector_search": "chroma HNSW with the filter inside, re-ranked in float64; exact "
            "scoring when the query metric differs from the field's (always for l1, which "
            "chroma lacks) or HNSW comes back short",
            "filters": "=, !=, in, not_in, exists, not_exists, and ordering of numbers and "
            "datetimes run in chroma; string ordering, like, starts_with and between are "
            "narrowed in chroma and finished exactly in Python",
            "writes": "validated before writing; not atomic across chroma calls on a crash",
        },
    )


def _vector_collection_name(base: str, field: str) -> str:
    name = f"{base}-v-{field}"
    try:
        return validate_collection_name(name)
    except ValueError:
        return f"{base}-v-{hashlib.sha1(field.encode()).hexdigest()[:20]}"


class _LazyRecords:
    """The records of one result list, read in one call when the first hit's is asked for.

    A record deleted between the search and that access comes back empty (no fields), with
    the id, score and rank of the search.
    """

    def __init__(self, fetch: Callable[[list[str]], list[Record | None]], ids: list[str]) -> None:
        self._fetch, self._ids = fetch, ids
        self._found: dict[str, Record] | None = None

    def load(self, record_id: str) -> Record:
        if self._found is None:
            got = self._fetch(self._ids)
            self._found = {r.id: r for r in got if r is not None}
        found = self._found.get(record_id)
        if found is None:
            return Record.trusted(record_id, {}, {})
        return found.copy()


class ChromaBackend(Backend):
    """Records and vectors in chroma (``path=None``: the process's in-memory chroma)."""

    def __init__(
        self,
        path: str | Path | None,
        *,
        collection: str | None = None,
        temporary: bool = False,
        ef_construction: int | None = None,
        ef_search: int | None = None,
        max_neighbors: int | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._path = None if path is None else Path(path)
        if collection is None:
            # In-memory chroma is shared by the whole process: a fresh name keeps databases apart.
            collection = "records" if self._path is not None else f"mem-{uuid.uuid4().hex}"
        self._name = validate_collection_name(collection)
        self._temporary = temporary
        self._hnsw_options = {
            "ef_construction": ef_construction,
            "ef_search": ef_search,
            "max_neighbors": max_neighbors,
        }
        hnsw_configuration(DistanceMetric.COSINE, self._hnsw_options)  # validate the options now
        self._caps = _capabilities(self._path is not None)
        self._client = open_client(self._path)
        self._released = False
        try:
            self._records = collection_or_fail(self._client, self._name)
        except Exception as exc:
            raise BackendError(f"chroma could not open collection {self._name!r}") from exc
        self._schema: dict[str, VectorConfig] = {}
        self._vectors: dict[str, Any] = {}
        self._load_schema()

    # -- schema ------------------------------------------------------------------------------
    def _load_schema(self) -> None:
        stored = (self._records.metadata or {}).get(_SCHEMA_KEY)
        if not stored:
            return
        for name, entry in json.loads(stored)["vectors"].items():
            self._schema[name] = VectorConfig.from_dict(entry["config"])
            self._vectors[name] = collection(self._client, entry["collection"], create=True)

    def _save_schema(self, names: dict[str, str]) -> None:
        vectors = {
            n: {"config": c.to_dict(), "collection": names.get(n) or self._vectors[n].name}
            for n, c in self._schema.items()
        }
        text = json.dumps({"version": 1, "vectors": vectors})
        self._records.modify(metadata={_SCHEMA_KEY: text})

    def capabilities(self) -> Capabilities:
        return self._caps

    def vector_schema(self) -> Mapping[str, VectorConfig]:
        return MappingProxyType(self._schema)

    def _add_fields(self, new: Mapping[str, VectorConfig]) -> None:
        if not new:
            return
        configurations = {n: self._configuration(c) for n, c in new.items()}  # validates
        names: dict[str, str] = {}
        for name, config in new.items():
            cname = _vector_collection_name(self._name, name)
            self._vectors[name] = collection(
                self._client, cname, create=True, configuration=configurations[name]
            )
            self._schema[name] = config
            names[name] = cname
        self._save_schema(names)

    def _configuration(self, config: VectorConfig) -> dict[str, Any]:
        options = dict(self._hnsw_options)
        for key in ("m", "max_neighbors", "ef_construction", "ef_search"):
            if key in config.index.params:
                options["max_neighbors" if key == "m" else key] = config.index.params[key]
        if config.index.kind not in ("auto", "hnsw"):
            raise UnsupportedError(f"chroma builds HNSW indexes only, not {config.index.kind!r}")
        return hnsw_configuration(config.metric, options)

    def declare_vector_field(self, name: str, config: VectorConfig) -> None:
        with self._lock:
            if already_declared(name, self._schema.get(name), config):
                return
            space_for(config.metric)
            if self._records.count() and self._any_record_has(name):
                raise SchemaError(f"field {name!r} already holds non-vector values")
            self._add_fields({name: config})

    def _any_record_has(self, name: str) -> bool:
        from .encode import TAGS

        found = self._records.get(where={TAGS: {"$contains": "e:" + name}}, limit=1, include=[])
        return bool(found["ids"])

    # -- writes ------------------------------------------------------------------------------
    def _existing(self, ids: Sequence[str]) -> set[str]:
        return set(self._stored_keys(ids))

    def _stored_keys(self, ids: Sequence[str], keys: bool = False) -> dict[str, list[str]]:
        """The stored ids among ``ids``, with their metadata keys when ``keys`` is set."""
        unique = list(dict.fromkeys(ids))
        found: dict[str, list[str]] = {}
        include = ["metadatas"] if keys else []
        for part in batches(self._client, len(unique)):
            got = self._records.get(ids=unique[part], include=include)
            metas = got["metadatas"] if keys else [None] * len(got["ids"])
            for rid, meta in zip(got["ids"], metas, strict=True):
                found[rid] = list(meta or ())
        return found

    def put(self, records: Sequence[Record], mode: WriteMode) -> list[bool]:
        with self._lock:
            new_fields = plan_vector_schema(self._schema, records)
            for config in new_fields.values():
                self._configuration(config)
            existing = self._stored_keys([r.id for r in records], keys=True)
            existed = [r.id in existing for r in records]
            if mode == "create":
                for rec, was in zip(records, existed, strict=True):
                    if was:
                        raise DuplicateRecordError(rec.id)
            todo = [r for r, was in zip(records, existed, strict=True) if was or mode != "update"]
            items = [encode_item(r) for r in todo]  # raises before any write
            self._add_fields(new_fields)
            self._write(items, existing)
            return existed

    def _write(self, items: list[Any], existing: dict[str, list[str]]) -> None:
        """Upsert ``items``. Chroma's upsert *merges* metadata into a stored item's, so keys
        the new version lacks are sent as ``None`` (which deletes them)."""
        for part in batches(self._client, len(items)):
            chunk = items[part]
            self._records.upsert(
                ids=[i.id for i in chunk],
                embeddings=[_DUMMY] * len(chunk),
                metadatas=[_replacing(i.metadata(), existing.get(i.id)) for i in chunk],
            )
        for name, col in self._vectors.items():
            have = [i for i in items if name in i.vectors]
            gone = [i.id for i in items if name not in i.vectors and i.id in existing]
            for part in batches(self._client, len(have)):
                chunk = have[part]
                col.upsert(
                    ids=[i.id for i in chunk],
                    embeddings=np.stack([i.vectors[name] for i in chunk]),
                    metadatas=[_replacing(i.filters, existing.get(i.id)) for i in chunk],
                )
            for part in batches(self._client, len(gone)):
                col.delete(ids=gone[part])

    def remove(self, ids: Sequence[str]) -> list[bool]:
        with self._lock:
            existing = self._existing(ids)
            doomed = [i for i in dict.fromkeys(ids) if i in existing]
            for part in batches(self._client, len(doomed)):
                self._records.delete(ids=doomed[part])
                for col in self._vectors.values():
                    col.delete(ids=doomed[part])
            return [i in existing for i in ids]

    def clear(self) -> int:
        with self._lock:
            ids = self._records.get(include=[])["ids"]
            self.remove(ids)
            return len(ids)

    # -- reads -------------------------------------------------------------------------------
    def get(self, ids: Sequence[str]) -> list[Record | None]:
        with self._lock:
            found = self._fetch(list(dict.fromkeys(ids)))
            return [found.get(i) for i in ids]

    def _fetch(self, ids: list[str], fields: tuple[str, ...] | None = None) -> dict[str, Record]:
        out: dict[str, Record] = {}
        for part in batches(self._client, len(ids)):
            got = self._records.get(ids=ids[part], include=["metadatas"])
            for rid, meta in zip(got["ids"], got["metadatas"], strict=True):
                out[rid] = decode_item(rid, meta, fields)
        return out

    def contains(self, ids: Sequence[str]) -> list[bool]:
        with self._lock:
            existing = self._existing(ids)
            return [i in existing for i in ids]

    def _matching(self, condition: Filter | None) -> list[Record]:
        """Every record the filter selects (decoded), exact."""
        plan = plan_where(condition)
        if plan.empty:
            return []
        got = self._records.get(where=plan.where, include=["metadatas"])
        records = [decode_item(i, m) for i, m in zip(got["ids"], got["metadatas"], strict=True)]
        if not plan.exact:
            records = [r for r in records if matches(condition, r)]
        return records

    def _ordered(self, query: Query) -> list[Record]:
        ordered = order_records(self._matching(query.condition), query.sort_by)
        end = None if query.take is None else query.skip + query.take
        return ordered[query.skip : end]

    def search(self, query: Query) -> list[Record]:
        with self._lock:
            page = self._ordered(query)
        if query.projection is None:
            return page
        return [r.project(query.projection) for r in page]

    def count(self, condition: Filter | None) -> int:
        with self._lock:
            plan = plan_where(condition)
            if plan.empty:
                return 0
            if not plan.exact:
                return len(self._matching(condition))
            if plan.where is None:
                return int(self._records.count())
            return len(self._records.get(where=plan.where, include=[])["ids"])

    def scan(self, query: Query, batch_size: int) -> Iterator[list[Record]]:
        """Pages of the query's results; the matching ids are fixed when the scan starts."""
        with self._lock:
            ids = [r.id for r in self._ordered(query)]

        def fetch(chunk: list[str]) -> dict[str, Record]:
            with self._lock:
                return self._fetch(chunk, query.projection)

        return pages_by_id(ids, batch_size, fetch)

    # -- vector search -----------------------------------------------------------------------
    def vector_search(self, request: VectorSearchRequest) -> list[list[VectorSearchResult]]:
        with self._lock:
            field, config, metric = resolve_vector_query(
                self._schema, request.single(), model=request.model
            )
            plan = plan_where(request.filter)
            queries = request.vectors
            if plan.empty:
                return [[] for _ in range(queries.shape[0])]
            native = metric is config.metric and plan.exact and not request.params.get("exact")
            out: list[list[VectorSearchResult] | None] = [None] * queries.shape[0]
            if native:
                rows = range(queries.shape[0])
                hnsw = (
                    [i for i in rows if queries[i].any()]  # a zero query has no cosine order
                    if metric is DistanceMetric.COSINE
                    else list(rows)
                )
                if hnsw:
                    batch = queries if len(hnsw) == len(rows) else queries[hnsw]
                    ef_search = request.params.get("ef_search")
                    found = self._hnsw(field, batch, request.k, metric, plan, ef_search)
                    for i, hits in zip(hnsw, found, strict=True):
                        out[i] = hits
            rest = [i for i, hits in enumerate(out) if hits is None]
            if rest:
                ids, matrix = self._candidates(field, request.filter, plan)
                for i in rest:
                    order, dist = rank_exact(matrix, queries[i], metric, ids, len(ids))
                    out[i] = ([ids[j] for j in order[: request.k]], dist[: request.k])  # type: ignore[call-overload]
            return [self._results(field, metric, hits, request) for hits in out]  # type: ignore[arg-type]

    def _hnsw(
        self,
        field: str,
        queries: F32,
        k: int,
        metric: DistanceMetric,
        plan: WherePlan,
        ef_search: int | None,
    ) -> list[Any]:
        """Candidates from HNSW, ranked by :meth:`_rank`; ``None`` for a query HNSW answered
        short (exact scoring takes over).

        ``k + PAD`` candidates are asked for, or ``ef_search`` when larger: hnswlib searches
        with ``ef = max(ef_search, n_results)``, so this is how a per-query ``ef_search`` reaches
        chroma (``collection.modify`` changes the stored setting, but measured: not the index a
        running process has loaded). More are fetched while the cut falls inside a tie.
        """
        col = self._vectors[field]
        out: list[Any] = []
        fetch = max(k + PAD, ef_search or 0)
        got = col.query(
            query_embeddings=queries, n_results=fetch, where=plan.where, include=["distances"]
        )
        total: int | None = None
        for qi in range(queries.shape[0]):
            ids, values, n = got["ids"][qi], got["distances"][qi], fetch
            while True:
                order, dist = self._rank(field, metric, ids, values, queries[qi], k)
                if len(ids) < n:
                    if total is None:
                        total = self._count_vectors(field, plan)
                    if len(ids) < min(total, k):
                        out.append(None)  # HNSW came back short: exact scoring instead
                        break
                elif len(ids) > k and dist[k - 1] >= dist[-1] - 1e-5 * max(1.0, abs(dist[-1])):
                    n *= 4  # the cut may fall inside a tie: fetch until it is inside
                    more = col.query(
                        query_embeddings=queries[qi : qi + 1],
                        n_results=n,
                        where=plan.where,
                        include=["distances"],
                    )
                    ids, values = more["ids"][0], more["distances"][0]
                    continue
                out.append(([ids[j] for j in order[:k]], dist[:k]))
                break
        return out

    def _rank(
        self,
        field: str,
        metric: DistanceMetric,
        ids: list[str],
        raw: list[float],
        query: F32,
        k: int,
    ) -> tuple[list[int], Any]:
        """Every candidate in order, with distances in our units.

        Chroma's float32 distances (converted: ``l2`` is squared, ``ip`` is ``1 - dot``) are
        kept when the best ``k + 1`` are clearly apart (1e-5 relative, far above float32
        error), as :func:`~dataknobs_data.vector.operations.rank_candidates` does for the
        memory backend; otherwise the candidates' stored vectors are fetched and scored in
        float64 (:func:`rank_exact`, ties by id). A cosine collection stores vectors normalised
        in float32, so scaled copies of one vector can differ in the 8th digit there: within
        :data:`COSINE_TIE` they tie.
        """
        if not ids:
            return [], []
        dist = chroma_distances(raw, metric)
        order = sorted(range(len(ids)), key=dist.__getitem__)
        head = [dist[i] for i in order[: k + 1]]
        tolerance = 1e-5 * max(1.0, abs(head[0]), abs(head[-1]))
        if all(b - a > tolerance for a, b in itertools.pairwise(head)):
            return order, [dist[i] for i in order]
        got = self._vectors[field].get(ids=list(ids), include=["embeddings"])
        row = {rid: i for i, rid in enumerate(got["ids"])}
        vectors = np.asarray(got["embeddings"], dtype=np.float32)[[row[i] for i in ids]]
        exact_order, exact = rank_exact(vectors, query, metric, ids, len(ids))
        if metric is DistanceMetric.COSINE:
            return group_ties(exact_order, exact, ids, COSINE_TIE)
        return exact_order, exact

    def raw_collection(self, field: str) -> Any:
        """The chromadb collection holding ``field``'s vectors (benchmarks drive it raw)."""
        return self._vectors[field]

    def _count_vectors(self, field: str, plan: WherePlan) -> int:
        col = self._vectors[field]
        if plan.where is None:
            return int(col.count())
        return len(col.get(where=plan.where, include=[])["ids"])

    def _candidates(
        self, field: str, condition: Filter | None, plan: WherePlan
    ) -> tuple[list[str], F32]:
        """Ids and vectors of every record matching the filter that has ``field`` (exact)."""
        if plan.exact:
            got = self._vectors[field].get(where=plan.where, include=["embeddings"])
            ids = list(got["ids"])
            if not ids:
                return [], np.zeros((0, self._schema[field].dimensions), np.float32)
            matrix = np.asarray(got["embeddings"], dtype=np.float32)
            if self._schema[field].metric is DistanceMetric.COSINE:
                # chroma keeps cosine vectors normalised; score the originals instead
                originals = self._fetch(ids)
                matrix = np.stack([originals[i][field] for i in ids])
            return ids, matrix
        records = [
            r for r in self._matching(condition) if isinstance(r.get_field(field), VectorField)
        ]
        if not records:
            return [], np.zeros((0, self._schema[field].dimensions), np.float32)
        return [r.id for r in records], np.stack([r[field] for r in records])

    def _results(
        self,
        field: str,
        metric: DistanceMetric,
        hits: tuple[list[str], Any],
        request: VectorSearchRequest,
    ) -> list[VectorSearchResult]:
        picked, distances = hits
        dist = (distances.tolist() if isinstance(distances, np.ndarray) else distances)[
            : len(picked)
        ]
        scores = scores_from_distances(np.asarray(dist), metric).tolist()
        if request.score_threshold is not None:
            keep = sum(1 for s in scores if s >= request.score_threshold)
            picked, scores, dist = picked[:keep], scores[:keep], dist[:keep]
        lazy = _LazyRecords(self.get, picked)
        return [
            VectorSearchResult(
                None,
                score,
                d,
                rank,
                record_id=rid,
                load=partial(lazy.load, rid),
            )
            for rank, (rid, score, d) in enumerate(zip(picked, scores, dist, strict=True), 1)
        ]

    def _no_indexes(self) -> UnsupportedError:
        return UnsupportedError(
            "chroma keeps each vector field's HNSW index up to date on every write; its "
            "parameters are set when the field is created (VectorConfig.index.params m / "
            "ef_construction / ef_search, or the backend options), and ef_search per query "
            "with search_params"
        )

    def get_vector_index_stats(self, field: str) -> dict[str, Any]:
        with self._lock:
            col = self._vectors.get(field)
            if col is None:
                raise UnsupportedError(f"{field!r} is not a vector field of this store")
            return {
                "type": "hnsw",
                "field": field,
                "metric": self._schema[field].metric.value,
                "rows": int(col.count()),
                "params": hnsw_settings(col),
                "collection": col.name,
            }

    def close(self) -> None:
        with self._lock:
            if self._released:
                return
            try:
                if self._temporary:
                    for col in [self._records, *self._vectors.values()]:
                        with suppress(Exception):  # already gone: nothing to clean up
                            drop_collection(self._client, col)
                self._vectors = {}
            finally:
                self._released = True
                release_client(self._path)


def _replacing(metadata: dict[str, Any], old_keys: list[str] | None) -> dict[str, Any]:
    """``metadata`` plus ``None`` for every stored key it drops (chroma deletes those)."""
    if not old_keys:
        return metadata
    return {**dict.fromkeys((k for k in old_keys if k not in metadata), None), **metadata}


def collection_or_fail(client: Any, name: str) -> Any:
    """The records collection (created with the constant 1-d embedding space)."""
    col = collection(client, name, create=True, configuration={"hnsw": {"space": "l2"}})
    assert col is not None
    return col
