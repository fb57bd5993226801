"""What the chroma database backend and the chroma vector store share (chromadb calls).

* clients: one per directory (or the process's ephemeral one), telemetry off;
* collections: always ``embedding_function=None``, on create *and* on get, so chroma never
  attaches its default embedding function (which would download an ONNX model on first use);
* writes split to ``client.get_max_batch_size()``;
* metrics: our :class:`DistanceMetric` <-> chroma spaces, and chroma distances converted to the
  package's (``l2`` is squared, ``ip`` is ``1 - dot``), and ties among cosine candidates.

chromadb is imported here only; importing :mod:`dataknobs_data` never loads it.
"""

from __future__ import annotations

import math
import re
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ...errors import BackendError, DataknobsDataError, UnsupportedMetricError, ValidationError
from ...ints import checked_int
from ...vector.types import DistanceMetric
from ..storelock import StoreLock

__all__ = [
    "COSINE_TIE",
    "HNSW_OPTIONS",
    "SPACE",
    "batches",
    "chroma_distances",
    "get_matching",
    "collection",
    "drop_collection",
    "group_ties",
    "hnsw_configuration",
    "hnsw_settings",
    "open_client",
    "release_client",
    "space_for",
    "validate_collection_name",
]

F32 = npt.NDArray[np.float32]

#: our metric -> chroma's HNSW space (chroma has no L1)
SPACE: dict[DistanceMetric, str] = {
    DistanceMetric.COSINE: "cosine",
    DistanceMetric.EUCLIDEAN: "l2",
    DistanceMetric.DOT_PRODUCT: "ip",
}
#: HNSW knobs we expose, by chroma's names (``m`` is accepted as ``max_neighbors``)
HNSW_OPTIONS = ("ef_construction", "ef_search", "max_neighbors")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{1,126}[A-Za-z0-9]")
_clients: dict[str, Any] = {}
_users: dict[str, int] = {}
_locks: dict[str, StoreLock] = {}
_clients_lock = threading.Lock()


def open_client(path: Path | None) -> Any:
    """The process's client for ``path`` (``None``: the in-memory one), shared by its users.

    chromadb shares one system per directory inside a process anyway, so the databases and
    stores of one process on one directory share this client (and take turns on its intent
    log, :mod:`.intent`). Across processes a directory is exclusive: the first user of a
    persistent client takes the directory's lock (:mod:`dataknobs_data.engines.storelock`)
    before chroma opens anything there, and another process gets
    :class:`~dataknobs_data.errors.StoreLockedError` naming the holder.
    """
    import chromadb
    from chromadb.config import Settings

    key = "" if path is None else str(Path(path).resolve())
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            settings = Settings(anonymized_telemetry=False)
            lock = None if path is None else StoreLock.acquire(key, "chroma directory")
            try:
                if path is None:
                    client = chromadb.EphemeralClient(settings=settings)
                else:
                    client = chromadb.PersistentClient(path=key, settings=settings)
            except Exception as exc:  # chromadb raises plain ValueError/RuntimeError here
                if lock is not None:
                    lock.release()
                raise BackendError(f"chroma could not open {key or 'an in-memory client'}") from exc
            _clients[key] = client
            if lock is not None:
                _locks[key] = lock
        _users[key] = _users.get(key, 0) + 1
        return client


def release_client(path: Path | None) -> None:
    """One user of ``path``'s client is done; the client is closed with its last user.

    In memory: chromadb keeps ~2.7 MB per collection ever created in an in-memory system, even
    after the collection is deleted (measured: 300 create/delete cycles grow the process by
    800 MB), so a process opening many temporary in-memory databases would grow without bound.
    Closing the client releases the system (in-memory data goes with it, as with
    ``memory://``). On disk: the directory's lock is released after chroma's system has stopped,
    so another process may open it; a cached client would then hold stale segments, so it is
    closed too and the next open here pays chroma's setup again (0.1-0.2 s).
    """
    key = "" if path is None else str(Path(path).resolve())
    with _clients_lock:
        left = _users.get(key, 0) - 1
        if left > 0:
            _users[key] = left
            return
        _users.pop(key, None)
        client = _clients.pop(key, None)
        lock = _locks.pop(key, None)
        try:
            if client is not None:
                with suppress(Exception):  # best effort: the system may be gone already
                    client.close()
        finally:
            if lock is not None:
                lock.release()


@contextmanager
def chroma_errors(what: str) -> Iterator[None]:
    """chroma's own failures (its error classes, ``ValueError``, sqlite errors from its log)
    as :class:`BackendError`; the package's errors pass as they are."""
    try:
        yield
    except DataknobsDataError:
        raise
    except Exception as exc:
        raise BackendError(f"chroma failed {what}: {exc}") from exc


def validate_collection_name(name: object) -> str:
    """Chroma's rules, checked before a call: 3-128 of ``[A-Za-z0-9_-]``, alphanumeric ends."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValidationError(
            f"collection name must be 3-128 characters of letters, digits, '_' or '-', starting "
            f"and ending with a letter or digit; got {name!r}"
        )
    return name


def space_for(metric: DistanceMetric) -> str:
    space = SPACE.get(metric)
    if space is None:
        raise UnsupportedMetricError(
            f"chroma has no {metric.value!r} space; supported: {sorted(m.value for m in SPACE)}"
        )
    return space


def hnsw_configuration(metric: DistanceMetric, options: Mapping[str, Any]) -> dict[str, Any]:
    """``configuration={"hnsw": ...}`` for a new collection (options validated here)."""
    hnsw: dict[str, Any] = {"space": space_for(metric)}
    for name, value in options.items():
        key = "max_neighbors" if name == "m" else name
        if key not in HNSW_OPTIONS:
            raise ValidationError(f"unknown HNSW option {name!r}; valid: {list(HNSW_OPTIONS)}")
        if value is None:
            continue
        hnsw[key] = checked_int(f"HNSW option {name!r}", value, 1)
    return {"hnsw": hnsw}


def collection(
    client: Any,
    name: str,
    *,
    create: bool,
    configuration: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Any | None:
    """Get (or, with ``create``, get-or-create) a collection, never with an embedding function.

    Returns ``None`` when it does not exist and ``create`` is false.
    """
    from chromadb.errors import NotFoundError

    try:
        return client.get_collection(name, embedding_function=None)
    except NotFoundError:
        if not create:
            return None
    except ValueError:  # older chromadb raised ValueError for a missing collection
        if not create:
            return None
    return client.create_collection(
        name, configuration=configuration, metadata=metadata, embedding_function=None
    )


def drop_collection(client: Any, col: Any) -> None:
    """Delete a collection's items, then the collection.

    chromadb 1.5.9 leaves list-valued metadata of a dropped collection's items behind, and a
    later item (in any collection of the client) can inherit it; deleting the items first
    removes those rows (measured).
    """
    ids = col.get(include=[])["ids"]
    for part in batches(client, len(ids)):
        col.delete(ids=ids[part])
    client.delete_collection(col.name)


def hnsw_settings(col: Any) -> dict[str, Any]:
    """A collection's current HNSW settings (chromadb warns about a legacy field on access)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return dict((col.configuration or {}).get("hnsw") or {})


def batches(client: Any, n: int) -> Iterator[slice]:
    """Slices of at most the client's maximum batch size covering ``range(n)``."""
    size = int(client.get_max_batch_size())
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def get_matching(col: Any, client: Any, where: Any, include: list[str]) -> dict[str, list[Any]]:
    """``col.get(where=where, include=include)`` for any number of matching items.

    Chroma's own ``get`` fails with a raw ``InternalError`` ("too many SQL variables") once it
    must fetch metadata or embeddings for more than ~32,000 items (measured on chromadb 1.5.9:
    40,000 ids alone come back, their metadata does not), so the ids come first and the rest is
    fetched by id in batches of the client's maximum batch size."""
    ids = list(col.get(where=where, include=[])["ids"])
    out: dict[str, list[Any]] = {"ids": [], **{key: [] for key in include}}
    if not include:
        out["ids"] = ids
        return out
    for part in batches(client, len(ids)):
        got = col.get(ids=ids[part], include=include)
        out["ids"].extend(got["ids"])
        for key in include:
            out[key].extend(got[key])
    return out


def chroma_distances(raw: Sequence[float], metric: DistanceMetric) -> list[float]:
    """Chroma's distances in our units: ``l2`` is squared, ``ip`` is ``1 - dot``."""
    if metric is DistanceMetric.EUCLIDEAN:
        return [math.sqrt(max(0.0, d)) for d in raw]
    if metric is DistanceMetric.DOT_PRODUCT:
        return [d - 1.0 for d in raw]  # ours is -dot
    return [float(d) for d in raw]


#: Cosine collections hold vectors normalised in float32, so similarities computed from them
#: can differ from the originals' in the 7th digit: distances this close count as a tie.
COSINE_TIE = 1e-6


def group_ties(
    order: list[int], distances: npt.NDArray[np.float64], ids: Sequence[str], tie: float
) -> tuple[list[int], npt.NDArray[np.float64]]:
    """``order`` (by distance) with every run of distances within ``tie`` of its first one
    re-ordered by id, as exact ties are."""
    out: list[int] = []
    where: list[int] = []
    start = 0
    while start < len(order):
        head = distances[start]
        end = start + 1
        while end < len(order) and distances[end] - head <= tie * max(1.0, abs(head)):
            end += 1
        run = sorted(range(start, end), key=lambda j: ids[order[j]])
        out.extend(order[j] for j in run)
        where.extend(run)
        start = end
    return out, distances[where]
