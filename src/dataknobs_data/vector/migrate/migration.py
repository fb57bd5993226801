"""The :class:`VectorMigration` tools (built on :mod:`dataknobs_data.vector.sync`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...query import Filter, Query
from ..embedders import HashingEmbedder
from ..sync.cache import EmbeddingCache
from ..sync.config import SyncConfig
from ..sync.report import SyncResult
from ..sync.rules import Mode
from ..sync.synchronizer import VectorTextSynchronizer
from .verify import VerifyReport, verify_migration

__all__ = ["VectorMigration"]


def spec_of(embedder: Any) -> str | None:
    """The :func:`~dataknobs_data.vector.embedders.get_embedder` spec that rebuilds
    ``embedder``, where it can be told from the object (the built-in hashing embedder)."""
    if isinstance(embedder, HashingEmbedder):
        return f"hashing:{embedder.dimensions}"
    return None


class VectorMigration:
    """Brings existing data to vectors, resumably.

    Each method stores what it does as data (a vectorizing rule), so an interrupted run is
    resumed by running it again: records whose vector is already current are skipped, and
    every process that opens the data afterwards applies the same rule.
    """

    def add_vectors_to_existing(
        self,
        database: Any,
        text_fields: str | Sequence[str],
        vector_field: str,
        embedder: Any,
        *,
        batch_size: int = 100,
        template: str | None = None,
        mode: Mode = "manual",
        filter: Query | Filter | Mapping[str, Any] | None = None,
        progress: bool = False,
        cache: EmbeddingCache | None = None,
        spec: str | None = None,
    ) -> SyncResult:
        """Give every record of ``database`` (matching ``filter``) a vector in
        ``vector_field`` made by ``embedder`` from ``text_fields`` (a list, or
        ``"title,content"``); returns what was done.

        The rule (``text_fields`` in order, joined or ``template``-d, ``mode``) is stored with
        the data first, replacing any rule the field had; ``spec`` (derived for the built-in
        hashing embedder) is stored with it so the ``vector.sync`` command can rebuild the
        embedder. Then :meth:`~dataknobs_data.vector.sync.VectorTextSynchronizer.bulk_sync`
        embeds the stale and missing vectors page by page (``batch_size`` texts per embedder
        call), so an interrupted run keeps every finished page and a second run embeds
        nothing. ``mode="manual"`` (the default) leaves later writes alone; ``"deferred"`` or
        ``"on_write"`` keep the vectors following their text from now on.
        """
        if isinstance(text_fields, str):  # "title,content", as the command takes it
            sources = [name.strip() for name in text_fields.split(",")]
        else:
            sources = list(text_fields)
        config = SyncConfig(batch_size=batch_size)
        sync = VectorTextSynchronizer(database, embedder, config, cache=cache)
        rule = sync.rule_for(
            vector_field,
            sources,
            mode=mode,
            template=template,
            spec=spec if spec is not None else spec_of(embedder),
        )
        sync.set_rule(rule, check=False)
        return sync.bulk_sync(filter, fields=[vector_field], progress=progress)

    def verify_migration(
        self,
        source: Any,
        target: Any,
        *,
        filter: Query | Filter | Mapping[str, Any] | None = None,
        probes: int = 20,
        k: int = 10,
        min_recall: float = 0.95,
        sample: int = 20,
        progress: bool = False,
    ) -> VerifyReport:
        """Check that ``target`` holds what ``source`` holds under ``filter``: counts, every
        record's digest (values, types, float32 vector bits, provenance), and ``probes``
        searches of ``k`` per vector field (same ids in the same order when both search
        exactly, else recall@k >= ``min_recall``); see :mod:`.verify`."""
        return verify_migration(
            source,
            target,
            filter=filter,
            probes=probes,
            k=k,
            min_recall=min_recall,
            sample=sample,
            progress=progress,
        )
