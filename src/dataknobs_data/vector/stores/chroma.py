""":class:`ChromaVectorStore`: the :class:`VectorStore` contract over one chroma collection.

* ``path`` is a directory for ``chromadb.PersistentClient``; ``None`` uses the process's
  in-memory chroma (shared by every in-memory client of the process, so an unnamed store gets
  a fresh collection name). ``embedding_function=None`` on every create and get: chroma never
  downloads a model.
* Metrics: cosine, euclidean (chroma's ``l2`` is squared; we report the true distance) and
  dot product (chroma's ``ip`` distance is ``1 - dot``; ours is ``-dot``). L1 has no chroma
  space: :class:`UnsupportedMetricError`. Scores follow the package's convention (higher is
  better); they are chroma's float32 distances converted, not re-ranked.
* Duplicate ids: chroma silently ignores ``add`` of an existing id, so :meth:`add` looks the
  ids up first and raises :class:`DuplicateRecordError` with nothing written; :meth:`upsert`
  replaces vector and metadata (chroma's upsert would *merge* old metadata keys into the new
  ones; keys the new metadata lacks are deleted explicitly).
* Batches are split to ``client.get_max_batch_size()``. Each chroma call is atomic; a write
  larger than that is several calls, logged in the directory before the first and completed on
  the next open after a crash (:mod:`dataknobs_data.engines.chroma.intent`), so it is all or
  nothing. A write chroma fails in the middle of raises :class:`BackendError` and is completed
  before the store's next operation.
* Metadata: any JSON object. The original is kept as text (key ``j``) and the filterable form
  as typed keys (:mod:`dataknobs_data.engines.chroma.encode`), so nested objects, ``None`` and
  mixed lists are stored faithfully and filtered with the package's semantics (paths like
  ``"meta.author"``; ``_id`` is the vector id). Integers beyond 2**53 are refused.
* Filters: chroma ``where`` for what it decides exactly; string ordering, ``like``,
  ``starts_with`` and ``between`` are narrowed in chroma and finished in Python (exact).
  A search returns ``k`` hits whenever ``k`` vectors match: when HNSW comes back short, or the
  filter needs Python, the matching vectors are fetched and scored exactly instead.
* HNSW: ``ef_construction``, ``max_neighbors`` (``m``) and ``ef_search`` fixed at creation.
  Chroma has no per-query knob, and ``collection.modify`` changes the stored ``ef_search`` but
  (measured) not the index a running process has loaded; ``search(..., ef_search=200)`` asks
  chroma for ``max(k, 200)`` results instead, which hnswlib searches with ``ef = max(ef_search,
  n_results)``, and keeps the best ``k``: a per-query ef that can raise, not lower, the
  collection's.
* Cosine collections hold normalised vectors in chroma; the originals are kept in the
  metadata (key ``v``, float32 bytes in base64) so :meth:`get` returns what was added.
* :meth:`persist` has nothing to do: every write is durable when it returns.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt

from ...contract import EngineSeam
from ...engines.chroma.encode import encode_values
from ...engines.chroma.engine import (
    batches,
    chroma_distances,
    chroma_errors,
    collection,
    get_matching,
    hnsw_configuration,
    hnsw_settings,
    open_client,
    release_client,
    space_for,
    validate_collection_name,
)
from ...engines.chroma.intent import IntentLog, deletes, replacing, upserts
from ...engines.chroma.where import WherePlan, plan_where
from ...errors import (
    DuplicateRecordError,
    SchemaError,
    UnsupportedError,
    ValidationError,
)
from ...evaluate import record_predicate
from ...ints import checked_int, hits_cap
from ...query import Filter
from ...records import Record, validate_record_id
from ..operations import rank_exact, score_list
from ..types import DistanceMetric, VectorConfig
from .base import LazyHit, StoredVector, VectorBatch, VectorHit, VectorStore, prepare_queries

__all__ = ["ChromaVectorStore"]

F32 = npt.NDArray[np.float32]
_CONFIG_KEY = "dataknobs"
_BODY = "j"
_ORIGINAL = "v"


def _metadata_record(record_id: str, meta: Mapping[str, Any]) -> Record:
    """The metadata as a record, for the reference predicate (unaddressable keys dropped)."""
    values = {
        k: v for k, v in meta.items() if k and "." not in k and k.isprintable() and k != "_id"
    }
    return Record(values, id=record_id)


class ChromaVectorStore(VectorStore):
    """Vectors and metadata in one chroma collection (see the module docstring)."""

    backend: ClassVar[str] = "chroma"

    def __init__(
        self,
        config: VectorConfig,
        path: Path | None,
        *,
        collection_name: str | None = None,
        ef_construction: int | None = None,
        ef_search: int | None = None,
        max_neighbors: int | None = None,
    ) -> None:
        super().__init__(config, path)
        space_for(config.metric)
        if config.index.kind not in ("auto", "hnsw"):
            raise UnsupportedError(f"chroma builds HNSW indexes only, not {config.index.kind!r}")
        options: dict[str, Any] = {
            "ef_construction": ef_construction,
            "ef_search": ef_search,
            "max_neighbors": max_neighbors,
        }
        for key, value in config.index.params.items():  # explicit options win
            name = "max_neighbors" if key == "m" else key
            if options.get(name) is None:
                options[name] = value
        configuration = hnsw_configuration(config.metric, options)
        if collection_name is None:
            collection_name = "vectors" if path is not None else f"mem-{uuid.uuid4().hex}"
        self.name = validate_collection_name(collection_name)
        self._client = open_client(path)
        try:
            self._col: Any = self._open_collection(config, configuration)
            self._log = IntentLog(self._client, path, self.name, [self._col])
            self._log.recover()
            self._cosine = self.config.metric is DistanceMetric.COSINE
            #: per-search ef floor: ``ef_search`` given when reopening an existing collection
            self._ef = 0 if ef_search is None else checked_int("ef_search", ef_search, 1)
        except BaseException:
            release_client(path)  # this store never came to be: it holds no client
            raise

    def _open_collection(self, config: VectorConfig, configuration: dict[str, Any]) -> Any:
        """This store's collection: created with ``config``, or reopened and checked (the
        stored configuration is adopted)."""
        existing = collection(self._client, self.name, create=False)
        if existing is None:
            return collection(
                self._client,
                self.name,
                create=True,
                configuration=configuration,
                metadata={_CONFIG_KEY: json.dumps(config.to_dict())},
            )
        stored = self._stored_config(existing)
        if (stored.dimensions, stored.metric) != (config.dimensions, config.metric):
            raise SchemaError(
                f"chroma collection {self.name!r} holds {stored.dimensions}-d "
                f"{stored.metric.value} vectors, not {config.dimensions}-d "
                f"{config.metric.value}"
            )
        self.config = stored
        return existing

    @staticmethod
    def _stored_config(col: Any) -> VectorConfig:
        text = (col.metadata or {}).get(_CONFIG_KEY)
        if not text:
            raise SchemaError(f"chroma collection {col.name!r} was not made by dataknobs-data")
        return VectorConfig.from_dict(json.loads(text))

    @classmethod
    def load(cls, path: str | Path, **options: Any) -> Self:
        """Reopen the store in ``path`` (``collection_name=`` if it is not ``"vectors"``)."""
        name = options.get("collection_name") or "vectors"
        client = open_client(Path(path))  # held until the store holds its own (and the lock)
        try:
            found = collection(client, validate_collection_name(name), create=False)
            if found is None:
                raise SchemaError(f"no chroma collection {name!r} in {path}")
            return cls(cls._stored_config(found), Path(path), **options)
        finally:
            release_client(Path(path))

    # -- writes -----------------------------------------------------------------------------
    def _items(self, batch: Any) -> list[dict[str, Any]]:
        metas = []
        for rid, vector, meta in zip(batch.ids, batch.vectors, batch.metadata, strict=True):
            item = encode_values(rid, meta)  # raises for integers beyond 2**53
            item[_BODY] = json.dumps(meta, separators=(",", ":"))
            if self._cosine:
                item[_ORIGINAL] = base64.b64encode(vector.tobytes()).decode("ascii")
            metas.append(item)
        return metas

    def _keys(self, ids: Sequence[str], with_keys: bool) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        include = ["metadatas"] if with_keys else []
        for part in batches(self._client, len(ids)):
            got = self._col.get(ids=list(ids[part]), include=include)
            metas = got["metadatas"] if with_keys else [None] * len(got["ids"])
            for rid, meta in zip(got["ids"], metas, strict=True):
                found[rid] = list(meta or ())
        return found

    def _write(self, batch: VectorBatch, metas: list[dict[str, Any]]) -> None:
        """Upsert the batch (also for :meth:`add`, whose ids are checked new: an upsert is what
        a crash's replay must do, so the live path does the same)."""
        self._log.run(upserts(self._client, self.name, batch.ids, batch.vectors, metas))

    def _add(self, batch: VectorBatch) -> None:
        metas = self._items(batch)
        with chroma_errors("reading before an add"):
            existing = self._keys(batch.ids, with_keys=False)
        if existing:
            first = next(i for i in batch.ids if i in existing)
            raise DuplicateRecordError(first, "already in the store (nothing was added)")
        self._write(batch, metas)

    def _upsert(self, batch: VectorBatch) -> None:
        metas = self._items(batch)
        with chroma_errors("reading before an upsert"):
            old = self._keys(batch.ids, with_keys=True)
        self._write(
            batch, [replacing(m, old.get(i)) for i, m in zip(batch.ids, metas, strict=True)]
        )

    def delete(self, ids: Sequence[str]) -> int:
        self._live()
        if isinstance(ids, str):
            raise ValidationError("expected a list of ids, got a single string")
        checked = list(dict.fromkeys(validate_record_id(i) for i in ids))
        with chroma_errors("reading before a delete"):
            found = [i for i in checked if i in self._keys(checked, with_keys=False)]
        self._log.run(deletes(self._client, self.name, found))
        return len(found)

    # -- reads ------------------------------------------------------------------------------
    def _vector(self, meta: Mapping[str, Any], embedding: Any) -> F32:
        if self._cosine:
            raw = base64.b64decode(meta[_ORIGINAL])
            out = np.frombuffer(raw, dtype=np.float32).copy()
        else:
            out = np.array(embedding, dtype=np.float32)
        return out

    def get(self, ids: Sequence[str]) -> list[StoredVector | None]:
        self._live()
        if isinstance(ids, str):
            raise ValidationError("expected a list of ids, got a single string")
        checked = [validate_record_id(i) for i in ids]
        unique = list(dict.fromkeys(checked))
        found: dict[str, StoredVector] = {}
        for part in batches(self._client, len(unique)):
            got = self._col.get(ids=unique[part], include=["embeddings", "metadatas"])
            for rid, emb, meta in zip(got["ids"], got["embeddings"], got["metadatas"], strict=True):
                found[rid] = StoredVector(rid, self._vector(meta, emb), json.loads(meta[_BODY]))
        return [found.get(i) for i in checked]

    def _matching(
        self, condition: Filter | None, plan: WherePlan, include: list[str]
    ) -> dict[str, Any]:
        """``get`` of every item the filter selects (exact: Python finishes inexact plans)."""
        need = include if plan.exact else sorted({*include, "metadatas"})
        got: dict[str, Any] = get_matching(self._col, self._client, plan.where, need)
        if plan.exact:
            return got
        test = record_predicate(condition)
        keep = [
            i
            for i, (rid, meta) in enumerate(zip(got["ids"], got["metadatas"], strict=True))
            if test(_metadata_record(rid, json.loads(meta[_BODY])))
        ]
        return {
            key: [got[key][i] for i in keep] if key in ("ids", *need) else value
            for key, value in got.items()
        }

    def count(self, filter: Filter | Mapping[str, Any] | None = None) -> int:
        self._live()
        condition = self._filter(filter)
        plan = plan_where(condition)
        if plan.empty:
            return 0
        if plan.exact and plan.where is None:
            return int(self._col.count())
        return len(self._matching(condition, plan, [])["ids"])

    def search_batch(
        self,
        vectors: Any,
        k: int = 10,
        *,
        filter: Filter | Mapping[str, Any] | None = None,
        **params: Any,
    ) -> list[list[VectorHit]]:
        """k nearest neighbours per query row; ``ef_search=`` is the only engine knob."""
        self._live()
        queries = prepare_queries(vectors, self.dimensions, k)
        k = hits_cap(k)
        unknown = set(params) - {"ef_search"}
        if unknown:
            raise ValidationError(
                f"unknown search option(s) {sorted(unknown)} for chroma; valid: ['ef_search']"
            )
        ef_search = (
            checked_int("ef_search", params["ef_search"], 1) if "ef_search" in params else self._ef
        )
        condition = self._filter(filter)
        plan = plan_where(condition)
        out: list[list[VectorHit] | None] = [None] * queries.shape[0]
        if plan.empty:
            return [[] for _ in out]
        metric = self.config.metric
        if plan.exact:
            rows = [i for i in range(len(out)) if not self._cosine or queries[i].any()]
            if rows:
                got = self._col.query(
                    query_embeddings=queries[rows],
                    n_results=max(k, ef_search),
                    where=plan.where,
                    include=["distances", "metadatas"],
                )
                total: int | None = None
                for j, row in enumerate(rows):
                    ids = got["ids"][j][:k]
                    if len(ids) < k:
                        if total is None:
                            total = self.count(condition)
                        if len(ids) < total:
                            continue  # HNSW came back short: exact scoring below
                    converted = chroma_distances(got["distances"][j][:k], metric)
                    out[row] = self._hits(ids, converted, got["metadatas"][j][:k])
        rest = [i for i, hits in enumerate(out) if hits is None]
        if rest:
            got = self._matching(condition, plan, ["embeddings", "metadatas"])
            ids = list(got["ids"])
            if ids:
                matrix = np.stack(
                    [
                        self._vector(m, e)
                        for m, e in zip(got["metadatas"], got["embeddings"], strict=True)
                    ]
                )
            for i in rest:
                if not ids:
                    out[i] = []
                    continue
                order, dist = rank_exact(matrix, queries[i], metric, ids, len(ids))
                top = order[:k]
                out[i] = self._hits(
                    [ids[t] for t in top],
                    dist[:k].tolist(),
                    [got["metadatas"][t] for t in top],
                )
        return [hits or [] for hits in out]

    def _hits(
        self, ids: Sequence[str], distances: list[float], metas: Sequence[Mapping[str, Any]]
    ) -> list[VectorHit]:
        bodies = [meta[_BODY] for meta in metas]  # JSON text, parsed only if read
        return [
            LazyHit(rid, score, d, i + 1, bodies, i)
            for i, (rid, score, d) in enumerate(
                zip(ids, score_list(distances, self.config.metric), distances, strict=True)
            )
        ]

    # -- lifecycle --------------------------------------------------------------------------
    def _live(self) -> None:
        """Open, and with any write chroma failed in the middle of settled first (undone; a
        format-1 intent of an earlier version is completed)."""
        super()._live()
        self._log.settle()

    def persist(self) -> None:
        """Nothing to do: a write is durable when it returns (see the module docstring)."""
        self._live()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            release_client(self.path)

    def engine_seams(self) -> list[EngineSeam]:
        """The collection (chroma's errors; ``InternalError`` is injected) and, with a path,
        the intent file writer (``OSError``)."""
        from chromadb.errors import InternalError

        return [EngineSeam("collection", self, "_col", InternalError), *self._log.seams()]

    def stats(self) -> dict[str, Any]:
        self._live()
        return {**super().stats(), "collection": self.name, "hnsw": hnsw_settings(self._col)}
