"""The chroma backend: records in a chroma collection, one HNSW collection per vector field.

Layout (collection ``<name>``, ``records`` by default):

* ``<name>`` holds every record, vectors or not: the record text and the filter keys in its
  metadata (:mod:`.codec`, :mod:`.encode`), and a constant 1-d embedding, since chroma needs
  one per item. Its collection metadata holds the vector schema (``dataknobs`` key) and the
  collection's settings (``dataknobs-settings``: one JSON object of str -> str, at most
  :data:`MAX_SETTINGS_BYTES`; chroma replaces a collection's metadata whole, so every change
  of either key is a read of the current metadata and one ``modify`` carrying both).
* ``<name>-dk-settings`` (made at the first one) holds the settings whose key holds
  :data:`ROW_SETTING` (a migration's ledger entries), one item each (value in its metadata):
  they are many and large, and would outgrow :data:`MAX_SETTINGS_BYTES`.
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
writes nothing. Chroma makes each call atomic but has no transaction across calls, and a write
here is several (the records collection, one collection per vector field, batches split to
chroma's maximum, collections and schema of new vector fields): each write is planned as
idempotent calls and, when it takes more than one, logged in the directory before the first
call and replayed on the next open after a crash (:mod:`.intent`), so it is all or nothing
(declared as :attr:`Feature.TRANSACTIONS`). One lock serialises calls, and completes a write
that chroma failed in the middle of before serving anything else; the async shell runs them in
worker threads. That lock belongs to the collection, not to the object: every database object
of this process on the same directory and collection takes the same one (they share chroma's
client too), so :meth:`ChromaBackend.write_lock` keeps all of them from writing, and one
object's settings or schema change cannot lose another's.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ...capabilities import Capabilities, Feature
from ...contract import Backend, EngineSeam, Leases, VectorSearchRequest, WriteMode
from ...engines.chroma.engine import (
    COSINE_TIE,
    F32,
    batches,
    chroma_distances,
    chroma_errors,
    collection,
    drop_collection,
    get_matching,
    group_ties,
    hnsw_configuration,
    hnsw_settings,
    open_client,
    release_client,
    space_for,
    validate_collection_name,
)
from ...engines.chroma.intent import Call, IntentLog, deletes, replacing, upserts
from ...engines.chroma.where import WherePlan, plan_where
from ...errors import (
    BackendError,
    DuplicateRecordError,
    SchemaError,
    UnsupportedError,
    ValidationError,
)
from ...evaluate import order_records, record_predicate
from ...fields import VectorField
from ...query import Filter, Operator, Query
from ...records import Record
from ...schema import (
    DEFAULT_FIELD_SETTING,
    already_declared,
    needs_default,
    plan_vector_schema,
    resolve_vector_query,
)
from ...vector.operations import kept_scores, rank_exact
from ...vector.types import DeferredResult, DistanceMetric, VectorConfig, VectorSearchResult
from ..deferred import Deferred, DeferredRegistry
from ..paging import pages_by_id
from ..settings import check_setting, with_prefix
from .codec import Item, decode_item, encode_item

__all__ = ["ChromaBackend"]

_SCHEMA_KEY = "dataknobs"
_SETTINGS_KEY = "dataknobs-settings"
#: Bytes of the encoded settings (all of them: one metadata value). Local chroma sets no limit
#: of its own (measured on chromadb 1.5.9: a 20 MB collection metadata value is accepted), but
#: it reads the whole collection metadata back on every collection lookup and open, and we
#: read it on every settings call: a bound keeps those cheap. (Chroma Cloud allows 256 bytes
#: per collection metadata value; this backend opens local clients only.)
MAX_SETTINGS_BYTES = 2**20
#: Settings whose key holds this (a migration's ledger entries, ``migration:<name>:written:<n>``,
#: see :mod:`dataknobs_data.vector.migrate.ledger`) are kept one item each in a side
#: collection (:func:`_settings_collection_name`), not in the metadata blob: a migration of
#: 100,000 records with random UUID ids lists ~3.6 MB of ids, past :data:`MAX_SETTINGS_BYTES`,
#: and every settings write would re-encode them all. One item upsert or delete is one chroma
#: call, atomic like the ``modify`` of the blob.
ROW_SETTING = ":written:"
#: candidates fetched beyond k: the (k+1)-th tells whether the cut falls inside a tie
PAD = 1


def _capabilities(persistent: bool) -> Capabilities:
    features = {
        Feature.VECTOR_SEARCH,
        Feature.FILTERED_VECTOR_SEARCH,
        Feature.BATCH_VECTOR_SEARCH,
        Feature.NESTED_FIELDS,
        Feature.STREAMING,
        Feature.TRANSACTIONS,
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
            "writes": "validated before writing; a write of several chroma calls is logged "
            "first and completed on the next open after a crash (all or nothing)",
        },
    )


class _Shared:
    """What every object of this process open on one collection shares: the lock its calls
    take, the claims on its pending records, and a counter of schema changes (an object
    that sees it moved rereads the schema, so a vector field another object declared is
    known before its next call)."""

    __slots__ = ("__weakref__", "leases", "lock", "schema_version")

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.schema_version = 0
        self.leases = Leases()  # claims on pending records: one book per collection


_shared: weakref.WeakValueDictionary[tuple[str, str], _Shared] = weakref.WeakValueDictionary()
_shared_guard = threading.Lock()


def _shared_state(path: Path | None, name: str) -> _Shared:
    """The shared state of collection ``name`` at ``path`` (``None``: the process's in-memory
    chroma), dropped with the last object open on it."""
    key = ("" if path is None else str(path.resolve()), name)
    with _shared_guard:
        state = _shared.get(key)
        if state is None:
            state = _shared[key] = _Shared()
        return state


def _vector_collection_name(base: str, field: str) -> str:
    name = f"{base}-v-{field}"
    try:
        return validate_collection_name(name)
    except ValueError:
        return f"{base}-v-{hashlib.sha1(field.encode()).hexdigest()[:20]}"


def _settings_collection_name(base: str) -> str:
    name = f"{base}-dk-settings"
    try:
        return validate_collection_name(name)
    except ValueError:
        return f"dk-settings-{hashlib.sha1(base.encode()).hexdigest()[:20]}"


def _hit_record(found: Deferred[dict[str, Record]], ids: list[str], at: int) -> Record:
    """Hit ``at``'s record from its result list's records, read once for the list (see
    :mod:`..deferred`); one deleted by another process before the read comes back empty."""
    record = found.get().get(ids[at])
    return Record.trusted(ids[at], {}, {}) if record is None else record.copy()


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
        self._path = None if path is None else Path(path)
        if collection is None:
            # In-memory chroma is shared by the whole process: a fresh name keeps databases apart.
            collection = "records" if self._path is not None else f"mem-{uuid.uuid4().hex}"
        self._name = validate_collection_name(collection)
        self._shared = _shared_state(self._path, self._name)
        self._lock = self._shared.lock
        self._schema_version = self._shared.schema_version
        #: records behind handed-out hits, read before the next write changes them
        self._hit_records = DeferredRegistry(self._lock)
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
        self._schema: dict[str, VectorConfig] = {}
        self._vectors: dict[str, Any] = {}
        try:
            try:
                self._records = collection_or_fail(self._client, self._name)
            except Exception as exc:
                raise BackendError(f"chroma could not open collection {self._name!r}") from exc
            self._log = IntentLog(self._client, self._path, self._name, [self._records])
            self._log.recover()  # before the schema is read: the write may change it
            self._load_schema()
        except BaseException:
            release_client(self._path)  # this database never came to be: it holds no client
            raise

    @contextmanager
    def _settled(self) -> Iterator[None]:
        """The lock, with any write chroma failed in the middle of settled (undone) first (also one
        another database on this directory left: its new vector fields are read then), and
        the vector fields another object of this process declared since the last call read."""
        with self._lock:
            if self._log.settle() or self._schema_version != self._shared.schema_version:
                self._schema_version = self._shared.schema_version
                self._load_schema()
            yield

    # -- schema ------------------------------------------------------------------------------
    def _stored_metadata(self) -> dict[str, Any]:
        """The records collection's metadata as chroma holds it now. Read again each time:
        a collection object keeps the copy it was opened with, and another object of this
        process on the same collection may have changed it since."""
        col = collection(self._client, self._name, create=False)
        if col is None:
            raise BackendError(f"chroma collection {self._name!r} is gone")
        return dict(col.metadata or {})

    def _load_schema(self) -> None:
        stored = self._stored_metadata().get(_SCHEMA_KEY)
        if not stored:
            return
        for name, entry in json.loads(stored)["vectors"].items():
            self._schema[name] = VectorConfig.from_dict(entry["config"])
            self._vectors[name] = collection(self._client, entry["collection"], create=True)

    def _collection_names(self, new: Mapping[str, VectorConfig]) -> dict[str, str]:
        """Vector field -> its collection's name, for the stored fields and ``new`` ones."""
        names = {n: col.name for n, col in self._vectors.items()}
        return {**names, **{n: _vector_collection_name(self._name, n) for n in new}}

    @property
    def temporary(self) -> bool:
        """Whether :meth:`close` drops the collections (nothing survives a reopen)."""
        return self._temporary

    def capabilities(self) -> Capabilities:
        return self._caps

    def vector_schema(self) -> Mapping[str, VectorConfig]:
        with self._settled():  # a completed write may add fields
            return MappingProxyType(self._schema)

    def _field_calls(self, new: Mapping[str, VectorConfig]) -> list[Call]:
        """The calls that add vector fields: their collections, then the schema naming them."""
        if not new:
            return []
        configurations = {n: self._configuration(c) for n, c in new.items()}  # validates
        names = self._collection_names(new)
        schema = {**self._schema, **new}
        vectors = {n: {"config": c.to_dict(), "collection": names[n]} for n, c in schema.items()}
        text = json.dumps({"version": 1, "vectors": vectors})
        return [
            *(Call("create", names[n], settings=configurations[n]) for n in new),
            # chroma replaces the metadata whole: the settings (and any other key) go along
            Call("modify", self._name, settings={**self._stored_metadata(), _SCHEMA_KEY: text}),
        ]

    def _run(self, new: Mapping[str, VectorConfig], calls: list[Call]) -> None:
        """Apply a planned write (:mod:`.intent`); the new fields are ours once it is applied."""
        names = self._collection_names(new)

        def adopt() -> None:
            for name, config in new.items():
                self._vectors[name] = self._log.collection(names[name])
                self._schema[name] = config
            self._shared.schema_version += 1  # under the shared lock: the others reread
            self._schema_version = self._shared.schema_version

        self._log.run(calls, adopt if new else None)

    def _configuration(self, config: VectorConfig) -> dict[str, Any]:
        options = dict(self._hnsw_options)
        for key in ("m", "max_neighbors", "ef_construction", "ef_search"):
            if key in config.index.params:
                options["max_neighbors" if key == "m" else key] = config.index.params[key]
        if config.index.kind not in ("auto", "hnsw"):
            raise UnsupportedError(f"chroma builds HNSW indexes only, not {config.index.kind!r}")
        return hnsw_configuration(config.metric, options)

    def declare_vector_field(self, name: str, config: VectorConfig) -> None:
        with self._settled(), chroma_errors("declaring a vector field"):
            if already_declared(name, self._schema.get(name), config):
                return
            space_for(config.metric)
            if self._records.count() and self._any_record_has(name):
                raise SchemaError(f"field {name!r} already holds non-vector values")
            new = {name: config}
            self._run(new, self._field_calls(new))

    def _any_record_has(self, name: str) -> bool:
        from ...engines.chroma.encode import TAGS

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
        with self._settled(), chroma_errors("writing records"):
            new_fields = plan_vector_schema(self._schema, records)
            field_calls = self._field_calls(new_fields)  # validates the new fields' options
            existing = self._stored_keys([r.id for r in records], keys=True)
            existed = [r.id in existing for r in records]
            if mode == "create":
                for rec, was in zip(records, existed, strict=True):
                    if was:
                        raise DuplicateRecordError(rec.id)
            todo = [r for r, was in zip(records, existed, strict=True) if was or mode != "update"]
            items = [encode_item(r) for r in todo]  # raises before any write
            calls = self._item_calls(items, existing, self._collection_names(new_fields))
            self._hit_records.freeze_all()
            self._run(new_fields, [*field_calls, *calls])
            return existed

    def _item_calls(
        self, items: list[Item], existing: dict[str, list[str]], vectors: Mapping[str, str]
    ) -> list[Call]:
        """Upserts of ``items`` into the records collection and each vector field's collection
        (``vectors``: field -> collection name), deletes of the vectors they no longer have.
        Each sets the final state (:func:`replacing` drops stale metadata keys), so replaying
        them after a crash is safe."""
        ids = [i.id for i in items]
        dummies = np.zeros((len(items), 1), np.float32)  # chroma needs an embedding per item
        metas = [replacing(i.metadata(), existing.get(i.id)) for i in items]
        calls = upserts(self._client, self._name, ids, dummies, metas)
        for name, cname in vectors.items():
            have = [i for i in items if name in i.vectors]
            gone = [i.id for i in items if name not in i.vectors and i.id in existing]
            if have:
                matrix = np.stack([i.vectors[name] for i in have])
                metas = [replacing(i.filters, existing.get(i.id)) for i in have]
                calls += upserts(self._client, cname, [i.id for i in have], matrix, metas)
            calls += deletes(self._client, cname, gone)
        return calls

    def remove(self, ids: Sequence[str]) -> list[bool]:
        with self._settled(), chroma_errors("deleting records"):
            existing = self._existing(ids)
            doomed = [i for i in dict.fromkeys(ids) if i in existing]
            names = [self._name, *(col.name for col in self._vectors.values())]
            if doomed:
                self._hit_records.freeze_all()
            self._run({}, [c for name in names for c in deletes(self._client, name, doomed)])
            return [i in existing for i in ids]

    def clear(self) -> int:
        with self._settled(), chroma_errors("clearing"):
            ids = self._records.get(include=[])["ids"]
            self.remove(ids)
            return len(ids)

    # -- reads -------------------------------------------------------------------------------
    def get(self, ids: Sequence[str]) -> list[Record | None]:
        with self._settled():
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
        with self._settled():
            existing = self._existing(ids)
            return [i in existing for i in ids]

    def _matching(self, condition: Filter | None) -> list[Record]:
        """Every record the filter selects (decoded), exact."""
        plan = plan_where(condition)
        if plan.empty:
            return []
        got = get_matching(self._records, self._client, plan.where, ["metadatas"])
        records = [decode_item(i, m) for i, m in zip(got["ids"], got["metadatas"], strict=True)]
        if not plan.exact:
            records = list(filter(record_predicate(condition), records))
        return records

    def _ordered(self, query: Query) -> list[Record]:
        ordered = order_records(self._matching(query.condition), query.sort_by)
        end = None if query.take is None else query.skip + query.take
        return ordered[query.skip : end]

    def search(self, query: Query) -> list[Record]:
        with self._settled():
            page = self._ordered(query)
        if query.projection is None:
            return page
        return [r.project(query.projection) for r in page]

    def count(self, condition: Filter | None) -> int:
        with self._settled():
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
        with self._settled():
            ids = [r.id for r in self._ordered(query)]

        def fetch(chunk: list[str]) -> dict[str, Record]:
            with self._settled():
                return self._fetch(chunk, query.projection)

        return pages_by_id(ids, batch_size, fetch)

    # -- vector search -----------------------------------------------------------------------
    def vector_search(self, request: VectorSearchRequest) -> list[list[VectorSearchResult]]:
        with self._settled():
            query = request.single()
            default = None
            if needs_default(self._schema, query):  # read now: a switch is seen at once
                with chroma_errors("reading settings"):
                    metadata = self._stored_metadata()
                default = self._settings_of(metadata).get(DEFAULT_FIELD_SETTING)
            field, config, metric = resolve_vector_query(
                self._schema, query, model=request.model, default=default
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
            got = get_matching(self._vectors[field], self._client, plan.where, ["embeddings"])
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
        scores = kept_scores(dist, metric, request.score_threshold)
        picked, dist = list(picked[: len(scores)]), dist[: len(scores)]
        load = partial(_hit_record, self._hit_records.new(partial(self._fetch, picked)), picked)
        return [
            DeferredResult(rid, score, d, rank, load, rank - 1)
            for rank, (rid, score, d) in enumerate(zip(picked, scores, dist, strict=True), 1)
        ]

    # -- synchronisation support (see :mod:`dataknobs_data.vector.sync`) ---------------------
    def _settings_of(self, metadata: Mapping[str, Any]) -> dict[str, str]:
        text = metadata.get(_SETTINGS_KEY)
        if not text:
            return {}
        try:
            found = json.loads(text)
        except ValueError as exc:
            raise BackendError(
                f"chroma collection {self._name!r}: unreadable settings ({exc})"
            ) from exc
        if not isinstance(found, dict):
            raise BackendError(f"chroma collection {self._name!r}: settings are not an object")
        return {str(k): str(v) for k, v in found.items()}

    def _side(self, create: bool) -> Any | None:
        """The side collection of the row-stored settings (:data:`ROW_SETTING`)."""
        return collection(
            self._client,
            _settings_collection_name(self._name),
            create=create,
            configuration={"hnsw": {"space": "l2"}},
        )

    def _row_settings(self, prefix: str) -> dict[str, str]:
        """The row-stored settings whose key starts with ``prefix``."""
        col = self._side(create=False)
        if col is None:
            return {}
        got = get_matching(col, self._client, None, ["metadatas"])  # any number of entries
        out: dict[str, str] = {}
        for rid, meta in zip(got["ids"], got["metadatas"] or [], strict=True):
            if rid.startswith(prefix) and meta and isinstance(meta.get("v"), str):
                out[rid] = meta["v"]
        return out

    def read_setting(self, key: str) -> str | None:
        """From the records collection's metadata, read now (so a setting another object of
        this process wrote is seen at once); a row-stored one from the side collection."""
        key, _ = check_setting(key, None)
        with self._settled(), chroma_errors("reading settings"):
            if ROW_SETTING in key:
                return self._row_settings(key).get(key)
            return self._settings_of(self._stored_metadata()).get(key)

    def write_setting(self, key: str, value: str | None) -> None:
        """One ``modify`` of the records collection's metadata (atomic in chroma), carrying the
        schema and every other setting as they are now, under the collection's lock; a
        row-stored setting (:data:`ROW_SETTING`) is one upsert or delete of its item."""
        key, value = check_setting(key, value)
        with self._settled(), chroma_errors("writing a setting"):
            if ROW_SETTING in key:
                side = self._side(create=value is not None)
                if value is not None:
                    assert side is not None
                    side.upsert(
                        ids=[key], embeddings=np.zeros((1, 1), np.float32), metadatas=[{"v": value}]
                    )
                elif side is not None:
                    side.delete(ids=[key])
                return
            metadata = self._stored_metadata()
            settings = self._settings_of(metadata)
            if settings.get(key) == value:
                return
            if value is None:
                del settings[key]
            else:
                settings[key] = value
            text = json.dumps(settings, sort_keys=True, ensure_ascii=False)
            size = len(text.encode("utf-8"))
            if size > MAX_SETTINGS_BYTES:
                raise ValidationError(
                    f"setting {key!r}: the collection's settings would take {size} bytes, more "
                    f"than chroma's collection metadata is allowed here ({MAX_SETTINGS_BYTES})"
                )
            self._run({}, [Call("modify", self._name, settings={**metadata, _SETTINGS_KEY: text})])

    def settings(self, prefix: str) -> dict[str, str]:
        with self._settled(), chroma_errors("reading settings"):
            found = with_prefix(self._settings_of(self._stored_metadata()), prefix)
            found.update(self._row_settings(prefix))
            return dict(sorted(found.items()))

    def write_lock(self) -> AbstractContextManager[None]:
        """The collection's lock (:meth:`_settled`): re-entrant for this thread, shared by
        every object of the process on the collection; another process cannot open the
        directory at all (:func:`~dataknobs_data.engines.chroma.engine.open_client`)."""
        return self._settled()

    def lease_book(self) -> Leases:
        """One book of claims per collection in this process, shared like the lock: two
        vectorizers on two objects of one directory never claim the same record."""
        return self._shared.leases

    def no_indexes_error(self) -> UnsupportedError:
        return UnsupportedError(
            "chroma keeps each vector field's HNSW index up to date on every write; its "
            "parameters are set when the field is created (VectorConfig.index.params m / "
            "ef_construction / ef_search, or the backend options), and ef_search per query "
            "with search_params"
        )

    def get_vector_index_stats(self, field: str) -> dict[str, Any]:
        with self._settled():
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

    def engine_seams(self) -> list[EngineSeam]:
        """Every live collection (chroma's errors; ``InternalError`` is injected) and, on
        disk, the intent file writer (``OSError``)."""
        from chromadb.errors import InternalError

        seams = [EngineSeam("records collection", self, "_records", InternalError)]
        seams += [
            EngineSeam(f"collection of {n}", self._vectors, n, InternalError) for n in self._vectors
        ]
        return seams + self._log.seams()

    def close(self) -> None:
        with self._lock:
            if self._released:
                return
            try:
                if self._temporary:  # with those a write that failed midway created
                    cols = [self._records, *self._vectors.values(), *self._log.collections.values()]
                    side = self._side(create=False)
                    cols += [] if side is None else [side]
                    for col in {c.name: c for c in cols}.values():
                        with suppress(Exception):  # already gone: nothing to clean up
                            drop_collection(self._client, col)
                self._vectors = {}
            finally:
                self._released = True
                release_client(self._path)


def collection_or_fail(client: Any, name: str) -> Any:
    """The records collection (created with the constant 1-d embedding space)."""
    col = collection(client, name, create=True, configuration={"hnsw": {"space": "l2"}})
    assert col is not None
    return col
