"""Moving data between backends (``VectorMigration.migrate_between_backends`` and its rollback).

The matrix copies the conformance dataset between every pair of memory, SQLite, PostgreSQL,
faiss and chroma (same kind included), in the sync and the async shell, and checks that the
target holds the same records (ids, field types, values, metadata), the same provenance,
bit-identical float32 vectors, the source's settings (vectorizing rules) and its vector field
configuration. The other tests run on the embedded engines (and PostgreSQL where configured)
and check the promises one at a time: resume after an interruption, rollback of exactly what
was written, a dry run that writes nothing, catch-up of writes made during the migration,
filters, index rebuild, and the typed refusals.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dataknobs_data import DatabaseFactory, Record
from dataknobs_data.database import AsyncDatabase, SyncDatabase
from dataknobs_data.fields import VectorField
from dataknobs_data.query import Query, SortSpec
from dataknobs_data.testing import (
    CHROMA,
    FAISS,
    MEMORY,
    POSTGRES,
    SQLITE,
    BackendSpec,
    canonical,
    requires_extra,
    server_specs,
    skip_unless_extra,
)
from dataknobs_data.testing.dataset import (
    DIM,
    MODEL_NAME,
    MODEL_VERSION,
    VECTOR_FIELD,
    build_records,
)
from dataknobs_data.vector.exceptions import (
    MigrationError,
    NoSuchMigrationError,
    SameStoreError,
    TargetSchemaConflictError,
)
from dataknobs_data.vector.migrate import (
    AsyncVectorMigration,
    MigrationPlan,
    MigrationResult,
    VectorMigration,
    copying,
)
from dataknobs_data.vector.migrate.digest import record_digest
from dataknobs_data.vector.migrate.ledger import KEY_PREFIX, LedgerEntry
from dataknobs_data.vector.sync.rules import EmbedderInfo, VectorizingRule
from dataknobs_data.vector.types import DistanceMetric, VectorConfig

SPECS: list[BackendSpec] = [MEMORY, SQLITE, FAISS, CHROMA, *server_specs()]
#: the source's field: not the default metric, so copying the declaration is what makes it so
CONFIG = VectorConfig(
    DIM, DistanceMetric.EUCLIDEAN, MODEL_NAME, MODEL_VERSION, source_field="title"
)
RULE = VectorizingRule(
    VECTOR_FIELD, ("title",), EmbedderInfo(MODEL_NAME, MODEL_VERSION, DIM), "manual"
)
#: settings of the source: a rule and a setting of another kind are copied; another
#: migration's bookkeeping is not
SOURCE_SETTINGS = {
    "rule:" + VECTOR_FIELD: RULE.to_json(),
    "custom:owner": "team-a",
    "migration:earlier:state": "{}",
}
COPIED = {k: v for k, v in SOURCE_SETTINGS.items() if not k.startswith(KEY_PREFIX)}
BATCH = 7  # 30 records: 5 batches, the last one short


def _open(spec: BackendSpec, mode: str, tmp: Path) -> Any:
    if spec.extra is not None:
        skip_unless_extra(spec.extra)
    return spec.open_sync(tmp) if mode == "sync" else spec.open_async(tmp)


def _seed_sync(db: SyncDatabase, records: list[Record] | None = None) -> None:
    db.declare_vector_field(VECTOR_FIELD, CONFIG)
    db.create_batch(build_records() if records is None else records)
    for k, v in SOURCE_SETTINGS.items():
        db.backend.write_setting(k, v)


def _all(db: SyncDatabase) -> list[Record]:
    return db.search(Query(sort_by=[SortSpec("_id")]))


def _snapshot(db: SyncDatabase) -> tuple[list[Any], dict[str, Any], dict[str, str]]:
    """Records (canonical), vector fields and settings: everything a write could change."""
    fields = {n: c.to_dict() for n, c in db.vector_fields().items()}
    return [canonical(r) for r in _all(db)], fields, db.backend.settings("")


def assert_same_records(source: list[Record], target: list[Record]) -> None:
    """Same ids, field types, values, metadata, provenance; vectors bit for bit."""
    assert [r.id for r in target] == [r.id for r in source]
    for a, b in zip(source, target, strict=True):
        assert canonical(b) == canonical(a), a.id
        for name, vf in a.vector_fields().items():
            other = b.fields[name]
            assert isinstance(other, VectorField)
            assert other.value.dtype == np.float32
            assert np.array_equal(other.value, vf.value)
            assert other.value.tobytes() == vf.value.tobytes()
            assert other.provenance_tuple() == vf.provenance_tuple()
            assert other.source_hash == vf.source_hash
    hashes = [v.source_hash for r in target for v in r.vector_fields().values()]
    assert not hashes or any(h is not None for h in hashes)  # provenance includes text hashes


def _check_copy(
    source: tuple[list[Record], dict[str, VectorConfig], dict[str, str]],
    target: tuple[list[Record], dict[str, VectorConfig], dict[str, str]],
    result: Any,
) -> None:
    (src_recs, src_fields, _), (tgt_recs, tgt_fields, tgt_settings) = source, target
    assert len(src_recs) == 30
    assert_same_records(src_recs, tgt_recs)
    assert tgt_fields == src_fields == {VECTOR_FIELD: CONFIG}
    own = {k: v for k, v in tgt_settings.items() if not k.startswith(KEY_PREFIX)}
    assert own == COPIED
    assert "migration:earlier:state" not in tgt_settings
    state = json.loads(tgt_settings[f"{KEY_PREFIX}{result.name}:state"])
    assert (state["status"], state["checkpoint"], state["read"]) == ("done", "été", 30)
    assert isinstance(result, MigrationResult)
    assert (result.read, result.written, result.skipped_existing) == (30, 30, 0)
    assert result.batches == 5 and result.resumed_from is None
    assert result.settings_copied == sorted(COPIED) and result.declared == [VECTOR_FIELD]
    json.dumps(result.to_dict())  # JSON-able


def _read_sync(db: SyncDatabase) -> tuple[list[Record], dict[str, VectorConfig], dict[str, str]]:
    return _all(db), db.vector_fields(), db.backend.settings("")


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two pages per source scan, so the 30 records take several scans (as millions would)."""
    monkeypatch.setattr(copying, "CHUNK_PAGES", 2)


def _pairs() -> list[Any]:
    return [pytest.param(a, b, id=f"{a.name}-to-{b.name}") for a in SPECS for b in SPECS]


@pytest.mark.parametrize(("src_spec", "tgt_spec"), _pairs())
def test_matrix_sync(src_spec: BackendSpec, tgt_spec: BackendSpec, tmp_path: Path) -> None:
    src, tgt = _open(src_spec, "sync", tmp_path), _open(tgt_spec, "sync", tmp_path)
    try:
        _seed_sync(src)
        result = VectorMigration().migrate_between_backends(src, tgt, batch_size=BATCH)
        _check_copy(_read_sync(src), _read_sync(tgt), result)
        assert tgt.tracker is not None  # the copied rule is in force on the target object
        verdict = VectorMigration().verify_migration(src, tgt, probes=10, k=5)
        assert verdict.ok, verdict.to_dict()
    finally:
        src.close()
        tgt.close()


@pytest.mark.parametrize(("src_spec", "tgt_spec"), _pairs())
def test_matrix_async(src_spec: BackendSpec, tgt_spec: BackendSpec, tmp_path: Path) -> None:
    async def read(
        db: AsyncDatabase,
    ) -> tuple[list[Record], dict[str, VectorConfig], dict[str, str]]:
        records = await db.search(Query(sort_by=[SortSpec("_id")]))
        settings = await asyncio.to_thread(db.backend.settings, "")
        return records, db.vector_fields(), settings

    async def main() -> None:
        src, tgt = _open(src_spec, "async", tmp_path), _open(tgt_spec, "async", tmp_path)
        try:
            await src.declare_vector_field(VECTOR_FIELD, CONFIG)
            await src.create_batch(build_records())
            for k, v in SOURCE_SETTINGS.items():
                await asyncio.to_thread(src.backend.write_setting, k, v)
            result = await AsyncVectorMigration().migrate_between_backends(
                src, tgt, batch_size=BATCH
            )
            _check_copy(await read(src), await read(tgt), result)
            verdict = await AsyncVectorMigration().verify_migration(src, tgt, probes=10, k=5)
            assert verdict.ok, verdict.to_dict()
        finally:
            await src.close()
            await tgt.close()

    asyncio.run(main())


# -- the promises one by one, on the embedded engines -------------------------------------------
@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[SyncDatabase, SyncDatabase]]:
    """A seeded memory source and an empty SQLite target."""
    skip_unless_extra("sqlite")
    src = DatabaseFactory.create("memory://")
    tgt = DatabaseFactory.create(f"sqlite:///{tmp_path}/target.db")
    _seed_sync(src)
    try:
        yield src, tgt
    finally:
        src.close()
        tgt.close()


class KilledError(RuntimeError):
    """Raised from ``log``: the process 'dies' before a batch is written."""


def _dies_at(n: int, seen: list[str]) -> Callable[[str], None]:
    def log(first_id: str) -> None:
        seen.append(first_id)
        if len(seen) == n:
            raise KilledError(first_id)

    return log


def test_resume_continues_from_the_checkpoint(pair: tuple[SyncDatabase, SyncDatabase]) -> None:
    src, tgt = pair
    mig = VectorMigration()
    ids = [r.id for r in _all(src)]
    first: list[str] = []
    with pytest.raises(KilledError):
        mig.migrate_between_backends(src, tgt, batch_size=4, log=_dies_at(4, first))
    assert [r.id for r in _all(tgt)] == ids[:12]  # three whole batches, nothing of the fourth
    second: list[str] = []
    result = mig.migrate_between_backends(src, tgt, batch_size=4, log=second.append)
    assert isinstance(result, MigrationResult)
    assert result.resumed_from == ids[11]
    assert second[0] == ids[12]  # the interrupted batch is the first one sent again
    assert (result.read, result.written, result.skipped_existing) == (18, 18, 0)
    assert_same_records(_all(src), _all(tgt))
    # a third run copies nothing and duplicates nothing
    again = mig.migrate_between_backends(src, tgt, batch_size=4)
    assert isinstance(again, MigrationResult)
    assert (again.read, again.written, again.resumed_from) == (0, 0, "été")
    assert tgt.count() == 30


@pytest.mark.parametrize("written", [False, True], ids=["before-put", "after-put"])
@pytest.mark.parametrize("target", ["memory", "sqlite"])
def test_a_kill_around_the_write_resends_at_most_that_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written: bool, target: str
) -> None:
    """The third batch dies just before (or just after) the engine's write. SQLite writes the
    batch and its ledger entry in one transaction, so both are undone; memory writes the entry
    first. The next run sends the batch again only if it was not written, and duplicates
    nothing either way."""
    skip_unless_extra("sqlite")
    src = DatabaseFactory.create("memory://")
    _seed_sync(src)
    url = "memory://" if target == "memory" else f"sqlite:///{tmp_path}/t.db"
    tgt = DatabaseFactory.create(url)
    real = tgt.backend.put
    calls: list[int] = []

    def put(records: Any, mode: Any) -> list[bool]:
        calls.append(len(records))
        if len(calls) == 3:
            if written:
                real(records, mode)
            raise KilledError("killed around the batch write")
        return real(records, mode)

    monkeypatch.setattr(tgt.backend, "put", put)
    with pytest.raises(KilledError):
        VectorMigration().migrate_between_backends(src, tgt, batch_size=4)
    monkeypatch.setattr(tgt.backend, "put", real)
    done = 12 if written and target == "memory" else 8
    assert tgt.count() == done
    sent: list[str] = []
    result = VectorMigration().migrate_between_backends(src, tgt, batch_size=4, log=sent.append)
    assert isinstance(result, MigrationResult)
    ids = [r.id for r in _all(src)]
    assert result.resumed_from == ids[done - 1] and sent[0] == ids[done]
    assert (result.skipped_existing, result.written) == (0, 30 - done)
    assert_same_records(_all(src), _all(tgt))
    rolled = VectorMigration().rollback_migration(tgt)
    assert (rolled.listed, rolled.removed) == (30, 30) and tgt.count() == 0
    src.close()
    tgt.close()


@pytest.mark.parametrize("target", ["memory", "sqlite"])
def test_an_id_created_in_the_target_meanwhile_is_kept_and_not_ledgered(
    tmp_path: Path, target: str
) -> None:
    """The target was empty at the start (so batches are written without asking which ids it
    holds); another writer then creates an id of a later batch: that batch falls back to
    skipping it, and a rollback leaves it alone."""
    skip_unless_extra("sqlite")
    src = DatabaseFactory.create("memory://")
    _seed_sync(src)
    tgt = DatabaseFactory.create(
        "memory://" if target == "memory" else f"sqlite:///{tmp_path}/t.db"
    )
    theirs = Record({"title": "written by someone else"}, id="r12")

    def meanwhile(first_id: str) -> None:
        if first_id == "r07":
            tgt.create(theirs)

    result = VectorMigration().migrate_between_backends(
        src, tgt, batch_size=BATCH, log=meanwhile, catch_up=False
    )
    assert isinstance(result, MigrationResult)
    assert (result.written, result.skipped_existing) == (29, 1)
    assert tgt.read("r12") == theirs
    rolled = VectorMigration().rollback_migration(tgt)
    assert rolled.removed == 29 and [r.id for r in _all(tgt)] == ["r12"]
    src.close()
    tgt.close()


def test_resume_after_the_copy_ended_starts_at_its_checkpoint(
    pair: tuple[SyncDatabase, SyncDatabase], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed in the catch-up pass: the copy is complete, so the next run reads nothing
    before the checkpoint again."""
    src, tgt = pair
    real = tgt.backend.get

    def get(ids: Any) -> Any:
        raise KilledError("killed in the catch-up pass")

    monkeypatch.setattr(tgt.backend, "get", get)
    with pytest.raises(KilledError):
        VectorMigration().migrate_between_backends(src, tgt, batch_size=4)
    monkeypatch.setattr(tgt.backend, "get", real)
    result = VectorMigration().migrate_between_backends(src, tgt, batch_size=4)
    assert isinstance(result, MigrationResult)
    assert (result.resumed_from, result.read, result.caught_up) == ("été", 0, 0)
    assert_same_records(_all(src), _all(tgt))


def test_rollback_removes_exactly_what_was_written(
    pair: tuple[SyncDatabase, SyncDatabase],
) -> None:
    src, tgt = pair
    own = [
        Record({"title": "the target's own r01"}, id="r01"),  # also in the source
        Record({"title": "between source ids"}, id="r05a"),
        Record({"title": "after them all"}, id="zzz"),
    ]
    tgt.create_batch(own)
    tgt.backend.write_setting("custom:owner", "team-b")  # overwritten, then restored
    tgt.backend.write_setting("custom:kept", "yes")
    before = _snapshot(tgt)
    src_before = _snapshot(src)
    mig = VectorMigration()
    result = mig.migrate_between_backends(src, tgt, batch_size=BATCH, name="to-target")
    assert isinstance(result, MigrationResult)
    assert (result.written, result.skipped_existing) == (29, 1)
    assert tgt.read("r01") == own[0]  # the target's own record is never overwritten
    assert tgt.backend.read_setting("custom:owner") == "team-a"
    rolled = mig.rollback_migration(tgt, name="to-target")
    assert (rolled.listed, rolled.removed) == (29, 29)
    assert sorted(rolled.settings_restored) == sorted(COPIED)
    after = _snapshot(tgt)
    assert after[0] == before[0]  # exactly the target's own records, as they were
    assert after[2] == before[2]  # settings as they were, no bookkeeping left
    assert _snapshot(src) == src_before  # the source is never touched
    with pytest.raises(NoSuchMigrationError, match="to-target"):
        mig.rollback_migration(tgt, name="to-target")


def test_dry_run_writes_nothing(pair: tuple[SyncDatabase, SyncDatabase]) -> None:
    src, tgt = pair
    tgt.create(Record({"title": "own"}, id="own"))
    before = _snapshot(tgt)
    plan = VectorMigration().migrate_between_backends(src, tgt, batch_size=BATCH, dry_run=True)
    assert isinstance(plan, MigrationPlan)
    assert _snapshot(tgt) == before
    assert (plan.records, plan.remaining, plan.batches, plan.sample) == (30, 30, 5, 30)
    assert [f.to_dict()["action"] for f in plan.fields] == ["declare"]
    assert plan.fields[0].config == CONFIG
    assert plan.settings == dict.fromkeys(COPIED, "add")
    assert plan.estimated_bytes > 30 * DIM * 4 and plan.estimated_seconds >= 0
    assert json.loads(json.dumps(plan.to_dict()))["records"] == 30


def test_dry_run_of_a_resumed_migration_counts_what_remains(
    pair: tuple[SyncDatabase, SyncDatabase],
) -> None:
    src, tgt = pair
    with pytest.raises(KilledError):
        VectorMigration().migrate_between_backends(src, tgt, batch_size=10, log=_dies_at(2, []))
    plan = VectorMigration().migrate_between_backends(src, tgt, batch_size=10, dry_run=True)
    assert isinstance(plan, MigrationPlan)
    assert (plan.records, plan.remaining, plan.resumed_from) == (30, 20, _all(src)[9].id)


def test_catch_up_copies_writes_made_during_the_migration(
    pair: tuple[SyncDatabase, SyncDatabase],
) -> None:
    src, tgt = pair

    def meddle(first_id: str) -> None:
        if first_id == "r07":  # the second batch: Zed, r01..r06 are copied already
            changed = src.read("r01")
            assert changed is not None
            changed["title"] = "changed during the migration"
            src.update("r01", changed)
            src.delete("r02")
            src.create(Record({"title": "new, behind the checkpoint"}, id="a00"))
            src.create(Record({"title": "new, ahead of it"}, id="zzz"))

    result = VectorMigration().migrate_between_backends(src, tgt, batch_size=BATCH, log=meddle)
    assert isinstance(result, MigrationResult)
    assert result.caught_up_detail == {"updated": 1, "created": 1, "removed": 1}
    assert result.caught_up == 3 and "caught up" in result.snapshot
    assert_same_records(_all(src), _all(tgt))


def test_without_catch_up_the_snapshot_says_what_is_missing(
    pair: tuple[SyncDatabase, SyncDatabase],
) -> None:
    src, tgt = pair

    def meddle(first_id: str) -> None:
        if first_id == "r07":
            src.delete("r02")

    result = VectorMigration().migrate_between_backends(
        src, tgt, batch_size=BATCH, log=meddle, catch_up=False
    )
    assert isinstance(result, MigrationResult)
    assert result.caught_up == 0 and "not included" in result.snapshot
    assert tgt.exists("r02") and not src.exists("r02")


def test_a_filter_copies_only_matching_records(pair: tuple[SyncDatabase, SyncDatabase]) -> None:
    src, tgt = pair
    condition = {"field": "group", "op": "=", "value": 1}
    mig = VectorMigration()
    result = mig.migrate_between_backends(src, tgt, filter=condition, batch_size=3)
    assert isinstance(result, MigrationResult)
    expected = src.search(Query(condition, sort_by=[SortSpec("_id")]))
    assert 0 < len(expected) < 30 and result.read == len(expected)
    assert_same_records(expected, _all(tgt))
    # the same name with another filter is refused before anything is written
    with pytest.raises(MigrationError, match="filter"):
        mig.migrate_between_backends(
            src, tgt, filter={"field": "group", "op": "=", "value": 2}, name=result.name
        )
    assert tgt.count() == len(expected)


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (VectorConfig(DIM + 1, DistanceMetric.EUCLIDEAN, MODEL_NAME, MODEL_VERSION), "dimensions"),
        (VectorConfig(DIM, DistanceMetric.COSINE, MODEL_NAME, MODEL_VERSION), "metric"),
        (VectorConfig(DIM, DistanceMetric.EUCLIDEAN, "other-model", "2"), "model"),
    ],
)
def test_a_conflicting_target_field_is_refused_before_any_write(
    pair: tuple[SyncDatabase, SyncDatabase], config: VectorConfig, problem: str
) -> None:
    src, tgt = pair
    tgt.declare_vector_field(VECTOR_FIELD, config)
    before = _snapshot(tgt)
    with pytest.raises(TargetSchemaConflictError, match=f"'{VECTOR_FIELD}'.*{problem}") as err:
        VectorMigration().migrate_between_backends(src, tgt)
    assert err.value.field == VECTOR_FIELD
    assert _snapshot(tgt) == before


@requires_extra("sqlite")
def test_one_store_as_both_sides_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "one.db"
    db = DatabaseFactory.create(f"sqlite:///{path}")
    _seed_sync(db)
    same_url = DatabaseFactory.create(f"sqlite:///{path}")
    other_spelling = DatabaseFactory.create(f"sqlite:///{tmp_path}/./one.db")
    before = _snapshot(db)
    try:
        mig = VectorMigration()
        with pytest.raises(SameStoreError):
            mig.migrate_between_backends(db, db)
        with pytest.raises(SameStoreError):
            mig.migrate_between_backends(db, same_url, dry_run=True)
        with pytest.raises(SameStoreError, match="one store"):  # found by the probe setting
            mig.migrate_between_backends(db, other_spelling)
        assert _snapshot(db) == before  # the probe is gone again
    finally:
        for handle in (db, same_url, other_spelling):
            handle.close()


def test_rollback_refusals(pair: tuple[SyncDatabase, SyncDatabase]) -> None:
    src, tgt = pair
    mig = VectorMigration()
    with pytest.raises(NoSuchMigrationError):
        mig.rollback_migration(tgt)
    mig.migrate_between_backends(src, tgt, name="one")
    mig.migrate_between_backends(src, tgt, name="two")  # copies nothing new
    with pytest.raises(MigrationError, match="several"):
        mig.rollback_migration(tgt)
    with pytest.raises(NoSuchMigrationError, match=r"'three'.*'one', 'two'"):
        mig.rollback_migration(tgt, name="three")
    assert mig.rollback_migration(tgt, name="two").removed == 0  # it wrote nothing
    assert mig.rollback_migration(tgt).removed == 30  # "one" is the only one left


def test_bad_arguments_are_refused_before_reading(pair: tuple[SyncDatabase, SyncDatabase]) -> None:
    src, tgt = pair
    mig = VectorMigration()
    with pytest.raises(MigrationError, match="batch_size"):
        mig.migrate_between_backends(src, tgt, batch_size=0)
    with pytest.raises(MigrationError, match="name"):
        mig.migrate_between_backends(src, tgt, name="no spaces: or colons")
    assert tgt.count() == 0 and tgt.backend.settings("") == {}


def test_async_resume_and_rollback(tmp_path: Path) -> None:
    skip_unless_extra("sqlite")

    async def main() -> None:
        src = DatabaseFactory.create_async("memory://")
        tgt = DatabaseFactory.create_async(f"sqlite:///{tmp_path}/t.db")
        await src.declare_vector_field(VECTOR_FIELD, CONFIG)
        await src.create_batch(build_records())
        mig = AsyncVectorMigration()
        with pytest.raises(KilledError):
            await mig.migrate_between_backends(src, tgt, batch_size=4, log=_dies_at(3, []))
        assert await tgt.count() == 8
        result = await mig.migrate_between_backends(src, tgt, batch_size=4)
        assert isinstance(result, MigrationResult) and result.written == 22
        assert await tgt.count() == 30
        rolled = await mig.rollback_migration(tgt)
        assert rolled.removed == 30 and await tgt.count() == 0
        await src.close()
        await tgt.close()

    asyncio.run(main())


def test_progress_bar(pair: tuple[SyncDatabase, SyncDatabase], capsys: Any) -> None:
    pytest.importorskip(
        "tqdm", reason="needs the progress extra: pip install 'dataknobs-data[progress]'"
    )
    src, tgt = pair
    VectorMigration().migrate_between_backends(src, tgt, progress=True)
    assert "30/30" in capsys.readouterr().err


# -- indexes ------------------------------------------------------------------------------------
@requires_extra("faiss")
def test_the_source_index_kind_is_built_on_the_target(tmp_path: Path) -> None:
    src = DatabaseFactory.create(f"faiss://{tmp_path}/src")
    _seed_sync(src)
    src.create_vector_index(VECTOR_FIELD, kind="hnsw", m=8)
    targets = [
        DatabaseFactory.create(f"faiss://{tmp_path}/dst"),
        DatabaseFactory.create("memory://"),
    ]
    try:
        built = VectorMigration().migrate_between_backends(src, targets[0])
        assert isinstance(built, MigrationResult)
        stats = targets[0].get_vector_index_stats(VECTOR_FIELD)
        assert (stats["requested"], stats["m"]) == ("hnsw", 8)
        assert built.indexes[VECTOR_FIELD]["requested"] == "hnsw"
        rolled = VectorMigration().rollback_migration(targets[0])
        assert rolled.indexes_dropped == [VECTOR_FIELD]
        exact = VectorMigration().migrate_between_backends(src, targets[1])
        assert isinstance(exact, MigrationResult)
        assert exact.indexes == {} and "searches exactly" in " ".join(exact.notes)
    finally:
        src.close()
        for t in targets:
            t.close()


@pytest.mark.skipif(not server_specs(), reason="needs DATAKNOBS_TEST_POSTGRES_URL")
def test_postgres_index_is_rebuilt_on_faiss_and_back(tmp_path: Path) -> None:
    skip_unless_extra("postgres", "faiss")
    src = POSTGRES.open_sync(tmp_path)
    mid = DatabaseFactory.create(f"faiss://{tmp_path}/mid")
    back = POSTGRES.open_sync(tmp_path)
    try:
        _seed_sync(src)
        src.create_vector_index(VECTOR_FIELD, kind="ivfflat", lists=2)
        VectorMigration().migrate_between_backends(src, mid)
        assert mid.get_vector_index_stats(VECTOR_FIELD)["requested"] == "ivfflat"
        VectorMigration().migrate_between_backends(mid, back)
        stats = back.get_vector_index_stats(VECTOR_FIELD)
        assert (stats["type"], stats["params"]) == ("ivfflat", {"lists": 2})
        assert_same_records(_all(src), _all(back))
    finally:
        for db in (src, mid, back):
            db.close()


# -- pure parts ---------------------------------------------------------------------------------
def test_ledger_entries_round_trip() -> None:
    ids = [f"doc-{i:06d}" for i in range(1000)] + ["été", "Zed", "a\nb"]
    entry = LedgerEntry(ids, "doc-", "doc-000999")
    text = entry.encode()
    assert LedgerEntry.decode(text) == entry
    assert len(text) < 4 * len(ids)  # sorted ids compress to a few bytes each
    for bad in ("[1, 2]", "z:bm90IHpsaWI=", LedgerEntry([]).encode()[:-4]):
        with pytest.raises(MigrationError, match="ledger"):
            LedgerEntry.decode(bad)


def test_record_digest_sees_every_difference() -> None:
    base = build_records()[0]
    variants = []
    for change in (
        lambda r: r.__setitem__("num", 1.0),  # int -> float
        lambda r: r.__setitem__("title", "ALPHA"),
        lambda r: r.metadata.__setitem__("row", "x"),
        lambda r: r.set_field(
            VectorField(
                np.asarray(r[VECTOR_FIELD], dtype=np.float32) * 2,
                name=VECTOR_FIELD,
                model_name=MODEL_NAME,
                model_version=MODEL_VERSION,
                source_field="title",
            )
        ),
    ):
        rec = base.copy()
        change(rec)
        variants.append(record_digest(rec))
    assert record_digest(base.copy()) == record_digest(base)
    assert len({record_digest(base), *variants}) == 5


def test_chroma_target_ledger_past_the_settings_cap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chroma target keeps a migration's ledger entries out of its settings blob (capped at
    ``MAX_SETTINGS_BYTES``): with random UUID ids the ledger outgrows the cap (here lowered to
    4 KiB, so 2,000 records suffice; at the real 1 MiB about 50,000 did), and the migration,
    verify, a re-run and the rollback still work."""
    skip_unless_extra("chroma")
    import uuid

    from dataknobs_data.backends.chroma import backend as chroma_backend

    monkeypatch.setattr(chroma_backend, "MAX_SETTINGS_BYTES", 4096)
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((2000, DIM)).astype(np.float32)
    records = [
        Record({"title": f"t{i}", VECTOR_FIELD: VectorField(vectors[i])}, id=str(uuid.uuid4()))
        for i in range(2000)
    ]
    with DatabaseFactory.create("memory://") as src, CHROMA.open_sync(tmp_path) as tgt:
        src.declare_vector_field(VECTOR_FIELD, CONFIG)
        src.create_batch(records)
        result = VectorMigration().migrate_between_backends(src, tgt, batch_size=100)
        assert result.written == 2000
        ledger = tgt.backend.settings(KEY_PREFIX)
        entries = [v for k, v in ledger.items() if ":written:" in k]
        listed = sum(len(LedgerEntry.decode(v).ids) for v in entries)
        assert listed == 2000
        assert sum(len(v) for v in entries) > 4096  # would not have fit in the blob
        assert VectorMigration().verify_migration(src, tgt, probes=5, k=3).ok
        again = VectorMigration().migrate_between_backends(src, tgt, batch_size=100)
        assert again.written == 0
        assert tgt.count() == 2000
        rolled = VectorMigration().rollback_migration(tgt)
        assert rolled.removed == 2000
        assert tgt.count() == 0
        assert tgt.backend.settings(KEY_PREFIX) == {}
        assert src.count() == 2000
