"""Moving records between two stores, resumably and reversibly, written once for both shells.

:func:`migrate` and :func:`rollback` are generators of blocking backend calls
(:mod:`.steps`); ``VectorMigration`` runs them in its thread and ``AsyncVectorMigration`` in
worker threads. The order of the steps is what makes a migration safe:

1. read everything needed to decide (both vector schemas, the source's index stats, both
   stores' settings, the migration's earlier state) and refuse conflicts: nothing written yet;
2. check that source and target are two stores (a probe setting written to the target must
   not appear in the source), record the prior values of the settings about to be copied,
   declare the vector fields, copy the settings;
3. copy in id order, one keyset page (``_id > checkpoint``, sorted by id, ``batch_size``
   records) at a time: the ids of the page not yet in the target are written to the ledger,
   then the page is written in one all-or-nothing ``put``, then the checkpoint advances. A
   kill loses at most the page in flight, which the next run sends again (its ids are found
   in the target and skipped, never duplicated);
4. catch up (optional): compare the source (pages again) with the target by per-record
   digests; re-copy what changed and create what is new, remove what this migration wrote and
   the source no longer has. Records the target held before are never changed;
5. build the ANN indexes the source had, where the target manages indexes.

Writes go to the target's backend directly, not through its change tracker: records are copied
as they are (vectors, provenance, pending marks), never re-embedded.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from ...capabilities import Capabilities
from ...contract import Backend, WriteHook
from ...errors import DataknobsDataError, UnsupportedError
from ...fields import VectorField
from ...ints import checked_int
from ...query import Condition, Filter, Query, SortSpec, all_of, coerce_filter, filter_to_dict
from ...records import Record
from ...redaction import redact_url
from ..exceptions import MigrationError, NoSuchMigrationError, SameStoreError
from ..sync.tracker import open_tracker
from ..types import VectorConfig
from .ledger import (
    KEY_PREFIX,
    MigrationState,
    check_name,
    copied_settings,
    decode_ids,
    default_name,
    encode_ids,
    key,
    ledger_seq,
    migration_names,
    prefix,
    written_key,
)
from .plan import FieldPlan, IndexPlan, MigrationPlan, plan_fields, source_index
from .result import MigrationResult, RollbackResult
from .steps import Step, Steps

__all__ = ["Options", "Store", "migrate", "rollback"]

#: records read (and timed) for a dry run's estimates
SAMPLE = 200
#: ids per ``remove`` call of a rollback or catch-up
REMOVE_CHUNK = 1000


class Store(Protocol):
    """What the migration uses of a database shell (sync or async alike)."""

    @property
    def backend(self) -> Backend: ...
    @property
    def url(self) -> str | None: ...
    def capabilities(self) -> Capabilities: ...
    def set_tracker(self, tracker: WriteHook | None) -> None: ...


class Options:
    """The validated arguments of a migration (checked before any step runs)."""

    def __init__(
        self,
        *,
        filter: Any = None,
        batch_size: int = 1000,
        name: str | None = None,
        dry_run: bool = False,
        catch_up: bool = True,
        progress: bool = False,
        log: Callable[[str], Any] | None = None,
    ) -> None:
        self.condition: Filter | None = coerce_filter(filter)
        self.batch_size = checked_int("batch_size", batch_size, 1, error=MigrationError)
        self.name = None if name is None else check_name(name)
        self.dry_run = bool(dry_run)
        self.catch_up = bool(catch_up)
        self.progress = bool(progress)
        if log is not None and not callable(log):
            raise MigrationError(f"log must be a callable, got {type(log).__name__}")
        self.log = log

    @property
    def filter_json(self) -> str | None:
        """The filter as stored in the state (canonical JSON), ``None`` for everything."""
        if self.condition is None:
            return None
        return json.dumps(filter_to_dict(self.condition), sort_keys=True, ensure_ascii=False)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _after(condition: Filter | None, last: str | None) -> Filter | None:
    if last is None:
        return condition
    after = Condition.make("_id", ">", last)
    return after if condition is None else all_of(condition, after)


def _page_query(condition: Filter | None, last: str | None, size: int) -> Query:
    return Query(_after(condition, last), sort_by=[SortSpec("_id")], limit=size)


def _ephemeral(url: str) -> bool:
    """URLs that open a new store each time (so two equal ones are two stores)."""
    scheme, _, rest = url.partition("://")
    return scheme == "memory" or ":memory:" in rest or rest.split("?", 1)[0] in ("", "/")


def _check_two_stores(source: Store, target: Store) -> None:
    """Refuse one store as both sides, as far as can be told without writing."""
    if source is target or source.backend is target.backend:
        raise SameStoreError("the source and the target are the same database object")
    if source.url is not None and source.url == target.url and not _ephemeral(source.url):
        raise SameStoreError(f"the source and the target are the same store ({source.url})")


def _index_stats(backend: Backend, field: str) -> dict[str, Any] | None:
    """A field's index stats, ``None`` where the backend has none to report."""
    try:
        return backend.get_vector_index_stats(field)
    except UnsupportedError:
        return None


def record_digest(record: Record) -> bytes:
    """SHA-256 of a record's id, fields (type, value; vectors' float32 bytes and provenance)
    and metadata: equal digests mean the catch-up pass has nothing to re-copy.

    Private to the mover until ``vector/migrate/verify.py`` (helper ``verifier``) provides
    the shared ``record_digest``; then this one goes.
    """
    h = hashlib.sha256(record.id.encode("utf-8"))
    for name in sorted(record.fields):
        f = record.fields[name]
        h.update(b"\x00" + name.encode("utf-8") + b"\x00" + f.type.value.encode("ascii"))
        if isinstance(f, VectorField):
            h.update(f.value.astype("<f4", copy=False).tobytes())
            h.update(_canon([*f.provenance_tuple(), f.metadata]))
        else:
            h.update(_canon([f.value, f.metadata]))
    h.update(_canon(record.metadata))
    return h.digest()


def _canon(value: Any) -> bytes:
    return json.dumps(
        value, sort_keys=True, ensure_ascii=False, default=lambda v: {type(v).__name__: str(v)}
    ).encode("utf-8")


def _bar(total: int | None, what: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="rec", desc=what, smoothing=0.1)


def _settings_of(backend: Backend, prefix_: str) -> Step:
    return partial(backend.settings, prefix_)


def migrate(source: Store, target: Store, options: Options) -> Steps[Any]:
    """The steps of one migration run; returns a :class:`MigrationResult`, or a
    :class:`MigrationPlan` for a dry run (see the module docstring for the order)."""
    started = time.perf_counter()
    _check_two_stores(source, target)
    sb, tb = source.backend, target.backend
    condition = options.condition
    source.capabilities().check_filter(condition)
    src_url, tgt_url = redact_url(source.url), redact_url(target.url)
    name = options.name or default_name(src_url, options.filter_json)
    state_key = key(name, "state")

    # 1. decide, reading only
    src_schema: dict[str, VectorConfig] = dict((yield sb.vector_schema))
    tgt_schema: dict[str, VectorConfig] = dict((yield tb.vector_schema))
    indexes: dict[str, IndexPlan | None] = {}
    for field_name in sorted(src_schema):
        indexes[field_name] = source_index((yield partial(_index_stats, sb, field_name)))
    fields = plan_fields(
        src_schema, tgt_schema, target.capabilities(), indexes, tb.manages_indexes()
    )
    src_settings = copied_settings((yield _settings_of(sb, "")))
    tgt_settings: dict[str, str] = yield _settings_of(tb, "")
    stored = tgt_settings.get(state_key)
    state = None if stored is None else MigrationState.from_json(stored)
    if state is not None and state.filter != options.filter_json:
        raise MigrationError(
            f"migration {name!r} was started with filter {state.filter or 'none'}, not "
            f"{options.filter_json or 'none'}; name this one differently or roll that one back"
        )
    changes = {k: v for k, v in src_settings.items() if tgt_settings.get(k) != v}
    resumed_from = None if state is None else state.checkpoint

    if options.dry_run:
        plan: MigrationPlan = yield from _dry_run(
            sb, options, name, src_url, tgt_url, fields, changes, tgt_settings, resumed_from
        )
        return plan

    # 2. the target's schema and settings
    yield from _probe(sb, tb, name)
    prior: dict[str, str | None] = json.loads(tgt_settings.get(key(name, "prior"), "{}"))
    wanted = {**{k: tgt_settings.get(k) for k in changes}, **prior}  # first values win
    if wanted != prior:
        yield partial(tb.write_setting, key(name, "prior"), json.dumps(wanted, sort_keys=True))
    if state is None:
        state = MigrationState(name, src_url, options.filter_json, options.batch_size)
        state.started = _now()
    state.runs += 1
    state.batch_size = options.batch_size
    state.status = "copying"
    state.updated = _now()
    yield partial(tb.write_setting, state_key, state.to_json())
    result = MigrationResult(name, src_url, tgt_url, resumed_from=resumed_from)
    for fp in fields:
        if fp.declare:
            yield partial(tb.declare_vector_field, fp.name, fp.config)
            result.declared.append(fp.name)
        if fp.note:
            result.notes.append(f"{fp.name}: {fp.note}")
    for setting, value in sorted(changes.items()):
        yield partial(tb.write_setting, setting, value)
    result.settings_copied = sorted(changes)

    # 3. the batches
    seqs = [s for s in (ledger_seq(name, k) for k in tgt_settings) if s is not None]
    seq = max(seqs, default=-1) + 1
    copy_start = time.perf_counter()
    bar = _bar((yield partial(sb.count, condition)), "migrate") if options.progress else None
    try:
        last = state.checkpoint
        while True:
            page: list[Record] = yield partial(
                sb.search, _page_query(condition, last, options.batch_size)
            )
            if not page:
                break
            if options.log is not None:
                options.log(page[0].id)
            present: list[bool] = yield partial(tb.contains, [r.id for r in page])
            fresh = [r for r, seen in zip(page, present, strict=True) if not seen]
            if fresh:
                yield partial(
                    tb.write_setting, written_key(name, seq), encode_ids(r.id for r in fresh)
                )
                seq += 1
                yield partial(tb.put, fresh, "create")
            last = page[-1].id
            result.read += len(page)
            result.written += len(fresh)
            result.skipped_existing += len(page) - len(fresh)
            result.batches += 1
            state.checkpoint = last
            state.read += len(page)
            state.written += len(fresh)
            state.skipped_existing += len(page) - len(fresh)
            state.batches += 1
            state.updated = _now()
            yield partial(tb.write_setting, state_key, state.to_json())
            if bar is not None:
                bar.update(len(page))
    finally:
        if bar is not None:
            bar.close()
    result.copy_seconds = time.perf_counter() - copy_start
    copied_at = _now()
    state.status = "copied"

    # 4. catch up
    if options.catch_up:
        detail = yield from _catch_up(sb, tb, name, condition, options, seq)
        result.caught_up_detail = detail
        result.caught_up = sum(detail.values())
        state.caught_up += result.caught_up
        what = ", ".join(f"{n} {k}" for k, n in detail.items())
        result.snapshot = (
            f"the records of {src_url or 'the source'} matching "
            f"{options.filter_json or 'everything'}, copied in id order until {copied_at}, "
            f"then compared record by record with the target and caught up at {_now()} "
            f"({what}); writes to the source after that are not included"
        )
    else:
        result.snapshot = (
            f"the records of {src_url or 'the source'} matching "
            f"{options.filter_json or 'everything'}, read in id order (pages of "
            f"{options.batch_size}) from {state.started} until {copied_at}; a record written "
            "to the source after its page was read is not included (run again with catch-up "
            "to include it)"
        )
    state.updated = _now()
    yield partial(tb.write_setting, state_key, state.to_json())

    # 5. indexes
    built: list[str] = json.loads(tgt_settings.get(key(name, "indexes"), "[]"))
    for fp in fields:
        if fp.index is not None:
            stats = yield from _build_index(tb, name, fp, built, result)
            if stats is not None:
                result.indexes[fp.name] = stats

    state.status = "done"
    state.snapshot = result.snapshot
    state.notes = result.notes
    state.updated = _now()
    yield partial(tb.write_setting, state_key, state.to_json())
    if changes:
        target.set_tracker((yield partial(open_tracker, tb)))
    result.seconds = time.perf_counter() - started
    return result


def _probe(sb: Backend, tb: Backend, name: str) -> Steps[None]:
    """A setting written to the target must not be visible in the source (two handles on one
    store, e.g. one SQLite file under two spellings); it is removed again either way."""
    token = uuid.uuid4().hex
    probe = key(name, "probe")
    yield partial(tb.write_setting, probe, token)
    try:
        seen = yield partial(sb.read_setting, probe)
    finally:
        yield partial(tb.write_setting, probe, None)
    if seen == token:
        raise SameStoreError(
            "the source and the target are one store (a setting written to "
            "the target appeared in the source)"
        )


def _dry_run(
    sb: Backend,
    options: Options,
    name: str,
    src_url: str | None,
    tgt_url: str | None,
    fields: list[FieldPlan],
    changes: dict[str, str],
    tgt_settings: dict[str, str],
    resumed_from: str | None,
) -> Steps[MigrationPlan]:
    condition = options.condition
    total: int = yield partial(sb.count, condition)
    remaining: int = total
    if resumed_from is not None:
        remaining = yield partial(sb.count, _after(condition, resumed_from))
    clock = time.perf_counter()
    sample: list[Record] = yield partial(
        sb.search, _page_query(condition, resumed_from, min(SAMPLE, max(remaining, 1)))
    )
    read_seconds = time.perf_counter() - clock
    size, seconds = MigrationPlan.estimate(sample, read_seconds, remaining)
    notes = [f"{fp.name}: {fp.note}" for fp in fields if fp.note]
    return MigrationPlan(
        name=name,
        source=src_url,
        target=tgt_url,
        filter=None if condition is None else filter_to_dict(condition),
        records=total,
        remaining=remaining,
        batch_size=options.batch_size,
        batches=-(-remaining // options.batch_size),
        fields=fields,
        settings={k: "replace" if k in tgt_settings else "add" for k in sorted(changes)},
        resumed_from=resumed_from,
        sample=len(sample),
        estimated_bytes=size,
        estimated_seconds=seconds,
        notes=notes,
    )


def _ledger(tb: Backend, name: str) -> Steps[set[str]]:
    entries: dict[str, str] = yield _settings_of(tb, f"{prefix(name)}written:")
    ours: set[str] = set()
    for text in entries.values():
        ours.update(decode_ids(text))
    return ours


def _chunks(ids: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(ids), size):
        yield list(ids[start : start + size])


def _catch_up(
    sb: Backend,
    tb: Backend,
    name: str,
    condition: Filter | None,
    options: Options,
    seq: int,
) -> Steps[dict[str, int]]:
    """Compare the source, page by page, with the target; bring the migration's records up
    to date (only ids this migration wrote are replaced or removed, new ids are created)."""
    ours = yield from _ledger(tb, name)
    seen: set[str] = set()
    detail = {"updated": 0, "created": 0, "removed": 0, "kept_target_own": 0}
    last: str | None = None
    while True:
        page: list[Record] = yield partial(
            sb.search, _page_query(condition, last, options.batch_size)
        )
        if not page:
            break
        last = page[-1].id
        ids = [r.id for r in page]
        seen.update(ids)
        stored: list[Record | None] = yield partial(tb.get, ids)
        missing: list[Record] = []
        changed: list[Record] = []
        for rec, have in zip(page, stored, strict=True):
            if have is None:
                missing.append(rec)
            elif record_digest(rec) != record_digest(have):
                if rec.id in ours:
                    changed.append(rec)
                else:
                    detail["kept_target_own"] += 1
        if missing:
            yield partial(
                tb.write_setting, written_key(name, seq), encode_ids(r.id for r in missing)
            )
            seq += 1
            yield partial(tb.put, missing, "create")
            ours.update(r.id for r in missing)
            detail["created"] += len(missing)
        if changed:
            yield partial(tb.put, changed, "upsert")
            detail["updated"] += len(changed)
    gone = sorted(ours - seen)
    for chunk in _chunks(gone, REMOVE_CHUNK):
        flags: list[bool] = yield partial(tb.remove, chunk)
        detail["removed"] += sum(flags)
    if not detail["kept_target_own"]:
        del detail["kept_target_own"]
    return detail


def _build_index(
    tb: Backend, name: str, fp: FieldPlan, built: list[str], result: MigrationResult
) -> Steps[dict[str, Any] | None]:
    """Build the source's index kind on the target's field (recorded first, so a rollback
    drops it); a field that has an index already keeps it."""
    index = fp.index
    assert index is not None
    current = yield partial(_index_stats, tb, fp.name)
    kind = None if current is None else current.get("type")
    if current is not None and current.get("engine") == "faiss":
        kind = current.get("requested")
    if kind in ("hnsw", "ivfflat", "ivfpq"):
        if kind != index.kind:
            result.notes.append(
                f"{fp.name}: the target already has a {kind} index (the source has "
                f"{index.kind}); kept"
            )
        return current
    if fp.name not in built:
        built.append(fp.name)
        yield partial(tb.write_setting, key(name, "indexes"), json.dumps(built))
    p = index.params
    try:
        stats: dict[str, Any] = yield partial(
            tb.create_vector_index,
            fp.name,
            index.kind,
            p.get("m"),
            p.get("ef_construction"),
            p.get("lists"),
        )
    except DataknobsDataError as exc:  # parameters the target refuses: its defaults
        result.notes.append(f"{fp.name}: {index.kind} index with the target's defaults ({exc})")
        stats = yield partial(tb.create_vector_index, fp.name, index.kind, None, None, None)
    return stats


def rollback(target: Store, name: str | None) -> Steps[RollbackResult]:
    """The steps undoing a migration in ``target`` (see :meth:`VectorMigration.rollback_migration`);
    each part's bookkeeping is removed after the part is undone, so a killed rollback resumes."""
    started = time.perf_counter()
    tb = target.backend
    settings: dict[str, str] = yield _settings_of(tb, KEY_PREFIX)
    names = migration_names(settings)
    if name is None:
        if len(names) != 1:
            raise (
                NoSuchMigrationError("(unnamed)", names)
                if not names
                else MigrationError(
                    f"the target holds several migrations ({', '.join(names)}); name the one to "
                    "roll back"
                )
            )
        name = names[0]
    mine = {k: v for k, v in settings.items() if k.startswith(prefix(name))}
    if not mine:
        raise NoSuchMigrationError(name, names)
    result = RollbackResult(name, redact_url(target.url))
    for setting in sorted(k for k in mine if ledger_seq(name, k) is not None):
        ids = decode_ids(mine[setting])
        result.listed += len(ids)
        for chunk in _chunks(ids, REMOVE_CHUNK):
            flags: list[bool] = yield partial(tb.remove, chunk)
            result.removed += sum(flags)
        yield partial(tb.write_setting, setting, None)
    for field_name in json.loads(mine.get(key(name, "indexes"), "[]")):
        try:
            dropped = yield partial(tb.drop_vector_index, field_name)
        except DataknobsDataError as exc:
            result.notes.append(f"{field_name}: index not dropped ({exc})")
        else:
            if dropped:
                result.indexes_dropped.append(field_name)
    prior: dict[str, str | None] = json.loads(mine.get(key(name, "prior"), "{}"))
    for setting, value in sorted(prior.items()):
        yield partial(tb.write_setting, setting, value)
        result.settings_restored.append(setting)
    state_key = key(name, "state")
    for setting in sorted(mine):
        if ledger_seq(name, setting) is None and setting != state_key:
            yield partial(tb.write_setting, setting, None)
    yield partial(tb.write_setting, state_key, None)
    result.notes.append("vector fields the migration declared stay declared")
    if prior:
        target.set_tracker((yield partial(open_tracker, tb)))
    result.seconds = time.perf_counter() - started
    return result
