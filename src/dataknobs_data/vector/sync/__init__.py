"""Vectors that follow their text: rules, change tracking, synchronisation, the vectorizer.

* :class:`VectorizingRule`: how a vector field is made (sources, template, embedder, mode),
  stored with the data so every process and the ``vector.sync`` command apply it;
* :class:`ChangeTracker`: the write hook a database installs itself when rules exist: embeds
  inside the write or leaves a durable pending mark in the record;
* :class:`VectorTextSynchronizer` (and :class:`AsyncVectorTextSynchronizer`): rules, exact
  checks, ``bulk_sync``, ``sync_record``;
* :class:`IncrementalVectorizer`: drains pending marks in the background, resumable;
* :class:`EmbeddingCache`: never embed the same text with the same model twice.

``python -m dataknobs_data.vector.sync --database URL --check-updates [--auto-fix]`` runs a
check (and a fix) from the command line. Names are imported lazily: the database shells import
the tracker from this package, and the synchroniser imports the shells.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cache import EmbeddingCache
    from .config import SyncConfig
    from .embedding import RetryPolicy
    from .report import FieldReport, SyncReport, SyncResult
    from .rules import EmbedderInfo, VectorizingRule, VectorState
    from .search import Embedders, TextHits
    from .synchronizer import AsyncVectorTextSynchronizer, VectorTextSynchronizer
    from .tracker import ChangeTracker
    from .vectorizer import IncrementalVectorizer

__all__ = [
    "AsyncVectorTextSynchronizer",
    "ChangeTracker",
    "EmbedderInfo",
    "Embedders",
    "EmbeddingCache",
    "FieldReport",
    "IncrementalVectorizer",
    "RetryPolicy",
    "SyncConfig",
    "SyncReport",
    "SyncResult",
    "TextHits",
    "VectorState",
    "VectorTextSynchronizer",
    "VectorizingRule",
]

_WHERE = {
    "AsyncVectorTextSynchronizer": "synchronizer",
    "ChangeTracker": "tracker",
    "EmbedderInfo": "rules",
    "Embedders": "search",
    "EmbeddingCache": "cache",
    "FieldReport": "report",
    "IncrementalVectorizer": "vectorizer",
    "RetryPolicy": "embedding",
    "SyncConfig": "config",
    "SyncReport": "report",
    "SyncResult": "report",
    "TextHits": "search",
    "VectorState": "rules",
    "VectorTextSynchronizer": "synchronizer",
    "VectorizingRule": "rules",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{module}"), name)
