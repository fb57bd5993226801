"""The :class:`VectorMigration` tools (built on :mod:`dataknobs_data.vector.sync`)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from ...query import Filter, Query
from ..embedders import HashingEmbedder
from ..sync.cache import EmbeddingCache
from ..sync.config import SyncConfig
from ..sync.report import SyncResult
from ..sync.rules import Mode
from ..sync.synchronizer import VectorTextSynchronizer
from . import upgrade as _upgrade

__all__ = ["AsyncVectorMigration", "VectorMigration"]


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

    # -- model upgrade, blue/green (see :mod:`.upgrade`) ----------------------------------------
    def upgrade_model(
        self,
        db: Any,
        field: str,
        new_field: str,
        embedder: Any,
        *,
        batch_size: int = 100,
        spec: str | None = None,
        progress: bool = False,
    ) -> SyncResult:
        """Re-embed ``field``'s text with ``embedder`` into ``new_field`` while searches stay
        on ``field``; resumable (:func:`.upgrade.upgrade_model`)."""
        return _upgrade.upgrade_model(
            db,
            field,
            new_field,
            embedder,
            batch_size=batch_size,
            spec=spec if spec is not None else spec_of(embedder),
            progress=progress,
        )

    def switch(self, db: Any, field: str) -> str | None:
        """Make ``field`` the default vector field in one atomic step; returns the previous."""
        return _upgrade.switch(db, field)

    def default_field(self, db: Any) -> str | None:
        """The store's default vector field (``None`` when unset)."""
        return _upgrade.default_field(db)

    def rollback_upgrade(self, db: Any) -> str:
        """Switch back to the field the current default was upgraded from; returns it."""
        return _upgrade.rollback_upgrade(db)

    def finish(self, db: Any, old_field: str) -> bool:
        """Retire ``old_field``'s rule after an upgrade is kept (:func:`.upgrade.finish`)."""
        return _upgrade.finish(db, old_field)


class AsyncVectorMigration:
    """:class:`VectorMigration` for :class:`~dataknobs_data.database.AsyncDatabase` objects:
    the same methods, awaitable (each runs the blocking version in a worker thread)."""

    async def upgrade_model(self, db: Any, *args: Any, **options: Any) -> SyncResult:
        return await asyncio.to_thread(VectorMigration().upgrade_model, db, *args, **options)

    async def switch(self, db: Any, field: str) -> str | None:
        return await asyncio.to_thread(_upgrade.switch, db, field)

    async def default_field(self, db: Any) -> str | None:
        return await asyncio.to_thread(_upgrade.default_field, db)

    async def rollback_upgrade(self, db: Any) -> str:
        return await asyncio.to_thread(_upgrade.rollback_upgrade, db)

    async def finish(self, db: Any, old_field: str) -> bool:
        return await asyncio.to_thread(_upgrade.finish, db, old_field)


for _name in ("upgrade_model", "switch", "default_field", "rollback_upgrade", "finish"):
    getattr(AsyncVectorMigration, _name).__doc__ = getattr(VectorMigration, _name).__doc__
