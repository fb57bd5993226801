"""The :class:`VectorMigration` tools (built on :mod:`dataknobs_data.vector.sync`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ...query import Filter, Query
from ..embedders import HashingEmbedder
from ..sync.cache import EmbeddingCache
from ..sync.config import SyncConfig
from ..sync.report import SyncResult
from ..sync.rules import Mode
from ..sync.synchronizer import VectorTextSynchronizer
from . import upgrade as _upgrade
from .copying import Options, migrate, rollback
from .plan import MigrationPlan
from .result import MigrationResult, RollbackResult
from .steps import run_awaiting, run_blocking
from .verify import AsyncVerifyMixin, VerifyReport, verify_migration

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

    def migrate_between_backends(
        self,
        source: Any,
        target: Any,
        *,
        filter: Query | Filter | Mapping[str, Any] | None = None,
        batch_size: int = 1000,
        name: str | None = None,
        dry_run: bool = False,
        catch_up: bool = True,
        progress: bool = False,
        log: Callable[[str], Any] | None = None,
    ) -> MigrationResult | MigrationPlan:
        """Copy the records of ``source`` (matching ``filter``) into ``target``, two open
        databases of any backends; returns what was done.

        Records keep their ids, field types, vectors (float32, bit for bit) and provenance;
        nothing is re-embedded. The target first gets the source's vector fields (dimensions,
        metric, model), its settings (the vectorizing rules of
        :mod:`dataknobs_data.vector.sync`) and, after loading, the kind of ANN index the source
        had. Records are streamed in id order, ``batch_size`` at a time, each batch written in
        one all-or-nothing step and checkpointed in the target (bookkeeping under the settings
        ``migration:<name>:``; ``name`` defaults to a digest of the source URL and filter):
        running the same call again after a crash continues from the checkpoint, and ids
        already in the target are skipped, never duplicated or overwritten. ``catch_up`` ends
        with a comparison that copies what changed in the source meanwhile
        (:attr:`MigrationResult.snapshot` says what was copied). ``dry_run=True`` returns a
        :class:`~dataknobs_data.vector.migrate.plan.MigrationPlan` and writes nothing.
        ``log`` is called with each batch's first id before it is written; ``progress=True``
        shows a tqdm bar. Refused before any write (typed errors of
        :mod:`dataknobs_data.vector.exceptions`): one store as both sides
        (:class:`SameStoreError`), a target field with other dimensions, metric or model
        (:class:`TargetSchemaConflictError`), a known ``name`` with another filter
        (:class:`MigrationError`).
        """
        options = Options(
            filter=filter,
            batch_size=batch_size,
            name=name,
            dry_run=dry_run,
            catch_up=catch_up,
            progress=progress,
            log=log,
        )
        result: MigrationResult | MigrationPlan = run_blocking(migrate(source, target, options))
        return result

    def rollback_migration(self, target: Any, *, name: str | None = None) -> RollbackResult:
        """Undo a migration in ``target``: remove exactly the records it created (its ledger),
        drop the indexes it built, put back the settings it overwrote or added, and remove its
        bookkeeping; the source is never touched. ``name=None`` picks the target's only
        migration. :class:`NoSuchMigrationError` when the target holds none of that name.
        Records the target held before the migration stay as they were; a killed rollback is
        resumed by running it again."""
        result: RollbackResult = run_blocking(rollback(target, name))
        return result

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


class AsyncVectorMigration(AsyncVerifyMixin):
    """:class:`VectorMigration`'s moving methods for :class:`~dataknobs_data.database.AsyncDatabase`
    objects: the same steps (:mod:`dataknobs_data.vector.migrate.copying`), each engine call
    run in a worker thread so the event loop never blocks."""

    async def migrate_between_backends(
        self,
        source: Any,
        target: Any,
        *,
        filter: Query | Filter | Mapping[str, Any] | None = None,
        batch_size: int = 1000,
        name: str | None = None,
        dry_run: bool = False,
        catch_up: bool = True,
        progress: bool = False,
        log: Callable[[str], Any] | None = None,
    ) -> MigrationResult | MigrationPlan:
        options = Options(
            filter=filter,
            batch_size=batch_size,
            name=name,
            dry_run=dry_run,
            catch_up=catch_up,
            progress=progress,
            log=log,
        )
        result: MigrationResult | MigrationPlan = await run_awaiting(
            migrate(source, target, options)
        )
        return result

    async def rollback_migration(self, target: Any, *, name: str | None = None) -> RollbackResult:
        result: RollbackResult = await run_awaiting(rollback(target, name))
        return result

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


for _name in (
    "migrate_between_backends",
    "rollback_migration",
    "upgrade_model",
    "switch",
    "default_field",
    "rollback_upgrade",
    "finish",
):
    getattr(AsyncVectorMigration, _name).__doc__ = getattr(VectorMigration, _name).__doc__
