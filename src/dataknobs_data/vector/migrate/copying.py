"""Moving records between two stores, resumably and reversibly, written once for both shells.

:func:`migrate` and :func:`rollback` are generators of blocking backend calls
(:mod:`.steps`); ``VectorMigration`` runs them in its thread and ``AsyncVectorMigration`` in
worker threads. The order of the steps is what makes a migration safe:

1. read everything needed to decide (both vector schemas, the source's index stats, both
   stores' settings, the migration's earlier state) and refuse conflicts: nothing written yet;
2. check that source and target are two stores (a probe setting written to the target must
   not appear in the source), record the prior values of the settings about to be copied,
   declare the vector fields, copy the settings;
3. copy in id order, one page of ``batch_size`` records at a time (read ahead in a thread by
   :class:`PageReader`, from ``_id > checkpoint``): under the target's writer lock, the ids
   of the page not yet in the target go to a ledger entry (which is also the checkpoint), then
   the page is written in one all-or-nothing ``put`` (on SQLite and PostgreSQL both in one
   transaction). A kill loses at most the page in flight; the next run checks whether the
   newest ledger entry's ids are in the target and sends that page again only if they are
   not, so ids are never duplicated and at most one batch is sent twice;
4. catch up (optional): compare the source (pages again) with the target by per-record
   digests; re-copy what changed and create what is new, remove what this migration wrote and
   the source no longer has. Records the target held before are never changed;
5. build the ANN indexes the source had, where the target manages indexes.

Writes go to the target's backend directly, not through its change tracker: records are copied
as they are (vectors, provenance, pending marks), never re-embedded.
"""

from __future__ import annotations

import importlib.util
import json
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from ...capabilities import Capabilities
from ...contract import Backend, WriteHook
from ...errors import (
    BackendUnavailableError,
    DataknobsDataError,
    DuplicateRecordError,
    UnsupportedError,
)
from ...ints import checked_int
from ...query import Condition, Filter, Query, SortSpec, all_of, coerce_filter, filter_to_dict
from ...records import Record
from ...redaction import redact_url
from ..exceptions import MigrationError, NoSuchMigrationError, SameStoreError
from ..sync.tracker import open_tracker
from ..types import VectorConfig
from .digest import same_record
from .ledger import (
    KEY_PREFIX,
    LedgerEntry,
    MigrationState,
    check_name,
    copied_settings,
    default_name,
    key,
    later,
    ledger_seq,
    migration_names,
    prefix,
    resume_candidates,
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
#: pages per ``scan`` of the source (see :class:`PageReader`)
CHUNK_PAGES = 100


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
        if self.progress and importlib.util.find_spec("tqdm") is None:
            raise BackendUnavailableError(
                'progress=True needs tqdm: pip install "dataknobs-data[progress]"'
            )
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


class PageReader:
    """The source's records after ``last`` in id order, page by page, each next page read in
    a background thread while the current one is written: reading and writing overlap, so a
    migration runs near the speed of the slower side instead of the sum of both.

    Pages come from ``scan`` over chunks of :data:`CHUNK_PAGES` pages (``_id > last``,
    sorted by id, limited): a scan fixes a chunk's ids and fetches them page by page, so
    memory holds one chunk's ids and two pages of records, and the engines where a sorted
    ``_id >`` query is a full pass (chroma, the numpy stores) make one such pass per chunk
    instead of one per page (chroma, 20,000 records: 44 s by keyset pages, 4 s by scan).
    """

    def __init__(
        self, backend: Backend, condition: Filter | None, last: str | None, size: int
    ) -> None:
        self.backend, self.condition, self.last, self.size = backend, condition, last, size
        self._pages = self._all(last)
        self._pool: ThreadPoolExecutor | None = None
        self._next: Future[list[Record] | None] | None = None

    def _all(self, last: str | None) -> Generator[list[Record], None, None]:
        while True:
            query = _page_query(self.condition, last, self.size * CHUNK_PAGES)
            empty = True
            for page in self.backend.scan(query, self.size):
                empty = False
                last = page[-1].id
                yield page
            if empty:  # a chunk may come back short (records deleted meanwhile): ask again
                return

    def _read(self) -> list[Record] | None:
        return next(self._pages, None)

    def take(self) -> list[Record]:
        """The next page (empty at the end); starts reading the one after it."""
        page = self._read() if self._next is None else self._next.result()
        self._next = None
        if not page:
            return []
        self.last = page[-1].id
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="dk-migrate-read")
        self._next = self._pool.submit(self._read)
        return page

    def close(self) -> None:
        """Wait for a page being read ahead, and release the thread."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._next = None
        self._pages.close()


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
    resumed_from, newest = resume_candidates(name, state, tgt_settings)
    if newest is not None:
        present_ids: list[bool] = yield partial(tb.contains, newest.ids)
        resumed_from = later(resumed_from, newest.last if all(present_ids) else newest.after)

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
    state.checkpoint = resumed_from
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
    reader = PageReader(sb, condition, resumed_from, options.batch_size)
    ahead: int = yield partial(tb.count, _after(None, resumed_from))
    try:
        while True:
            after = reader.last
            page: list[Record] = yield reader.take
            if not page:
                break
            if options.log is not None:
                options.log(page[0].id)
            setting = written_key(name, seq)
            created: int = yield partial(_write_batch, tb, setting, page, after, "copy", ahead > 0)
            seq += 1
            result.read += len(page)
            result.written += created
            result.skipped_existing += len(page) - created
            result.batches += 1
            if bar is not None:
                bar.update(len(page))
    finally:
        reader.close()
        if bar is not None:
            bar.close()
    if reader.last is not None:
        state.checkpoint = reader.last
    state.read += result.read
    state.written += result.written
    state.skipped_existing += result.skipped_existing
    state.batches += result.batches
    result.copy_seconds = time.perf_counter() - copy_start
    copied_at = _now()
    state.status = "copied"
    state.updated = copied_at
    yield partial(tb.write_setting, state_key, state.to_json())

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


@contextmanager
def _locked(backend: Backend) -> Iterator[None]:
    """The backend's writer lock where it has one: on SQLite and PostgreSQL one transaction,
    so a batch and its ledger entry commit together (one commit instead of two)."""
    try:
        lock = backend.write_lock()
    except UnsupportedError:
        lock = nullcontext()
    with lock:
        yield


def _write_batch(
    tb: Backend,
    setting: str,
    records: list[Record],
    after: str | None,
    kind: str,
    check: bool = True,
) -> int:
    """One batch: its ids not yet in the target go to the ledger entry ``setting``, then
    those records are written in one all-or-nothing ``put``; returns how many. Under the
    target's writer lock, so nobody creates one of the ids in between; where that lock is a
    transaction the entry and the batch commit together, elsewhere the entry comes first (a
    kill between the two leaves an entry naming ids that do not exist, which is harmless).

    ``check=False`` (the target held nothing beyond the checkpoint when the run started)
    skips asking the target which ids it has, unless the write finds one after all."""
    ids = [r.id for r in records]
    last = ids[-1] if kind == "copy" else None
    with _locked(tb):
        if not check:
            tb.write_setting(setting, LedgerEntry(ids, after, last, kind).encode())
            try:
                tb.put(records, "create")
                return len(records)
            except DuplicateRecordError:  # written meanwhile by someone else: nothing of ours
                pass
        present = tb.contains(ids)
        fresh = [r for r, seen in zip(records, present, strict=True) if not seen]
        tb.write_setting(setting, LedgerEntry([r.id for r in fresh], after, last, kind).encode())
        if fresh:
            tb.put(fresh, "create")
    return len(fresh)


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
        ours.update(LedgerEntry.decode(text).ids)
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
    reader = PageReader(sb, condition, None, options.batch_size)
    try:
        while page := (yield reader.take):
            seq = yield from _catch_up_page(tb, name, page, ours, seen, detail, seq)
    finally:
        reader.close()
    gone = sorted(ours - seen)
    for chunk in _chunks(gone, REMOVE_CHUNK):
        flags: list[bool] = yield partial(tb.remove, chunk)
        detail["removed"] += sum(flags)
    if not detail["kept_target_own"]:
        del detail["kept_target_own"]
    return detail


def _catch_up_page(
    tb: Backend,
    name: str,
    page: list[Record],
    ours: set[str],
    seen: set[str],
    detail: dict[str, int],
    seq: int,
) -> Steps[int]:
    """One source page of the catch-up pass: create what the target lacks, re-copy what
    differs where this migration wrote it (the target's own records stay); returns the next
    ledger sequence number."""
    ids = [r.id for r in page]
    seen.update(ids)
    stored: list[Record | None] = yield partial(tb.get, ids)
    missing: list[Record] = []
    changed: list[Record] = []
    for rec, have in zip(page, stored, strict=True):
        if have is None:
            missing.append(rec)
        elif not same_record(rec, have):
            if rec.id in ours:
                changed.append(rec)
            else:
                detail["kept_target_own"] += 1
    if missing:
        setting = written_key(name, seq)
        created: int = yield partial(_write_batch, tb, setting, missing, None, "catch_up")
        seq += 1
        ours.update(r.id for r in missing)
        detail["created"] += created
    if changed:
        yield partial(tb.put, changed, "upsert")
        detail["updated"] += len(changed)
    return seq


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
    listed: set[str] = set()  # a batch sent again after a kill is listed twice
    for setting in sorted(k for k in mine if ledger_seq(name, k) is not None):
        ids = [i for i in LedgerEntry.decode(mine[setting]).ids if i not in listed]
        listed.update(ids)
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
