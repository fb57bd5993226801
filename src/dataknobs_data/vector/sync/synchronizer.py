"""The synchroniser: rules, checks and bulk synchronisation over a database.

:class:`VectorTextSynchronizer` works on a :class:`~dataknobs_data.database.SyncDatabase`;
:class:`AsyncVectorTextSynchronizer` offers the same methods as coroutines over an
:class:`~dataknobs_data.database.AsyncDatabase`, each running the blocking version in a worker
thread (embedding is CPU or network work, and the per-batch writes are the database's own).

Memory is bounded everywhere: checks and ``bulk_sync`` stream the records in pages of
``batch_size`` (projected to the fields the rules read) and write back each page before the
next is read; nothing keeps a list of the whole database.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ...contract import Backend, SyncRow, VectorReplacement
from ...errors import QueryError, UnknownFieldError, ValidationError
from ...fields import VectorField
from ...marks import FAILED_FIELD, PENDING_FIELD
from ...query import Condition, Filter, Query, all_of, coerce_filter
from ...records import Record, validate_record_id
from ...schema import DEFAULT_FIELD_SETTING
from ..exceptions import (
    DimensionMismatchError,
    EmbeddingFailedError,
    MixedEmbeddingModelsError,
    VectorizingRuleError,
)
from .cache import EmbeddingCache
from .config import SyncConfig
from .marking import marks_of, read_marks
from .report import FieldReport, SyncReport, SyncResult
from .rules import (
    RULE_PREFIX,
    EmbedderInfo,
    Mode,
    VectorizingRule,
    VectorState,
    row_state,
    vector_state,
)
from .search import Embedders, TextHits, TextQuery, text_query
from .tracker import ChangeTracker, Work, load_rules

__all__ = ["AsyncVectorTextSynchronizer", "VectorTextSynchronizer"]

_SAMPLE = 10
#: records per page of a check (nothing is embedded or written: larger pages, fewer queries)
_CHECK_PAGE = 2000


def _progress(total: int | None, enabled: bool, what: str) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="rec", desc=what)


def _sources(rules: Sequence[VectorizingRule]) -> list[str]:
    """Every source field of ``rules``, each once, in rule order."""
    return list(dict.fromkeys(src for rule in rules for src in rule.sources))


def _category(
    state: tuple[VectorState, str | None, str | None], rule: VectorizingRule, marks: Any
) -> tuple[str, str | None]:
    """A vector's category in a :class:`SyncReport`: its state, unless a mark says pending
    or failed (for the text it now has)."""
    kind, _, digest = state
    if kind is VectorState.EMPTY or kind is VectorState.CURRENT:
        return kind.value, None
    failed = marks.failed.get(rule.field)
    if failed is not None and failed.get("hash") == digest:
        return "failed", str(failed.get("error"))
    if rule.field in marks.pending:
        return "pending", None
    return kind.value, None


class VectorTextSynchronizer:
    """Keeps a database's vectors in step with their text (see :mod:`dataknobs_data.vector.sync`).

    Creating one installs its :class:`ChangeTracker` on ``database``, so from then on writes
    through that database object embed inside the write (``on_write`` rules) with ``embedder``.
    ``embedder`` may be ``None`` for checks and rule management only. ``embedders`` are more
    embedders for :meth:`search_text` only (during a model upgrade: the old and the new one;
    each query is embedded by the embedder of the rule of the field it searches).
    """

    def __init__(
        self,
        database: Any,
        embedder: Any | None = None,
        config: SyncConfig | None = None,
        *,
        cache: EmbeddingCache | None = None,
        embedders: Sequence[Any] = (),
    ) -> None:
        if not hasattr(database, "backend") or not hasattr(database, "set_tracker"):
            raise ValidationError(
                f"expected a SyncDatabase or AsyncDatabase, got {type(database).__name__}"
            )
        self.database = database
        self.embedder = embedder
        self.embedders = Embedders([*embedders, embedder])
        self.config = config or SyncConfig()
        self.cache = cache if cache is not None else EmbeddingCache()
        self.tracker = self._install()

    @property
    def backend(self) -> Backend:
        backend: Backend = self.database._live()
        return backend

    def _install(self) -> ChangeTracker:
        tracker = ChangeTracker(
            load_rules(self.backend), embedder=self.embedder, config=self.config, cache=self.cache
        )
        self.database.set_tracker(tracker if tracker.rules else None)
        return tracker

    # -- rules -------------------------------------------------------------------------------
    @property
    def rules(self) -> dict[str, VectorizingRule]:
        """The rules in force (vector field -> rule), as stored with the data."""
        return dict(self.tracker.rules)

    def rule_for(
        self,
        field: str,
        sources: Sequence[str],
        *,
        mode: Mode = "deferred",
        template: str | None = None,
        spec: str | None = None,
    ) -> VectorizingRule:
        """A rule for ``field`` made by this synchroniser's embedder."""
        if self.embedder is None:
            raise VectorizingRuleError(field, "the synchroniser has no embedder to make a rule for")
        info = EmbedderInfo.of(self.embedder, spec)
        return VectorizingRule(field, tuple(sources), info, mode, template)

    def set_rule(self, rule: VectorizingRule, *, check: bool = True) -> SyncReport | None:
        """Store ``rule`` (adding it, or replacing the field's rule) and return what is now
        stale under it (a full :meth:`check` of that field; ``check=False`` skips it).

        Refused before anything is stored: dimensions different from the declared vector
        field's, or a model other than the one the field is declared with.
        """
        if not isinstance(rule, VectorizingRule):
            raise ValidationError(f"expected a VectorizingRule, got {type(rule).__name__}")
        backend = self.backend
        declared = backend.vector_schema().get(rule.field)
        if declared is not None:
            if declared.dimensions != rule.embedder.dimensions:
                raise DimensionMismatchError(
                    rule.field, declared.dimensions, rule.embedder.dimensions
                )
            if declared.model_name is not None and (
                declared.model_name != rule.embedder.name
                or (declared.model_version or rule.embedder.version) != rule.embedder.version
            ):
                raise MixedEmbeddingModelsError(
                    rule.field, str(declared.model_label), rule.embedder.label()
                )
        if rule.mode != "manual":
            backend.prepare_marks()
        backend.write_setting(RULE_PREFIX + rule.field, rule.to_json())
        self.tracker = self._install()
        return self.check(fields=[rule.field]) if check else None

    def remove_rule(self, field: str) -> bool:
        """Forget ``field``'s rule (its vectors stay); ``False`` if it had none."""
        if field not in self.tracker.rules:
            return False
        self.backend.write_setting(RULE_PREFIX + field, None)
        self.tracker = self._install()
        return True

    def _selected(self, fields: Sequence[str] | None) -> list[VectorizingRule]:
        if isinstance(fields, str):
            fields = [fields]
        if fields is None:
            return list(self.tracker.rules.values())
        out = []
        for name in fields:
            rule = self.tracker.rules.get(name)
            if rule is None:
                raise UnknownFieldError(
                    name, f"has no vectorizing rule; rules: {sorted(self.tracker.rules)}"
                )
            out.append(rule)
        return out

    # -- checks ------------------------------------------------------------------------------
    def check(
        self,
        filter: Query | Filter | Mapping[str, Any] | None = None,
        *,
        fields: Sequence[str] | None = None,
        method: str = "full",
        sample: int = _SAMPLE,
        progress: bool = False,
    ) -> SyncReport:
        """Where every vector stands, per field, without embedding anything.

        ``method="full"`` reads every record (in pages, projected to the fields the rules
        read), hashes its text and compares: exact whoever wrote the data. ``method="marks"``
        reads only the pending and failed marks (an indexed query): exact, and fast, for data
        written through this library with the rules in force.
        """
        if method not in ("full", "marks"):
            raise ValidationError(f"method must be 'full' or 'marks', got {method!r}")
        rules = self._selected(fields)
        condition = coerce_filter(filter)
        started = time.perf_counter()
        report = SyncReport(method, fields={r.field: FieldReport(r.field) for r in rules})
        if method == "marks":
            self._check_marks(report, rules, condition, sample)
        else:
            bar = _progress(self.backend.count(condition), progress, "check")
            size = max(self.config.batch_size, _CHECK_PAGE)
            sources = _sources(rules)
            for page in self.backend.scan_sync_rows(
                condition, sources, [r.field for r in rules], size
            ):
                report.records += len(page)
                for row in page:
                    texts = dict(zip(sources, row.texts, strict=True))
                    marks = marks_of(row.pending, row.failed)
                    for rule, stored in zip(rules, row.vectors, strict=True):
                        state = row_state(texts, stored, rule, self.config.track_model_version)
                        category, error = _category(state, rule, marks)
                        report.fields[rule.field].add(category, row.id, sample, error)
                if bar is not None:
                    bar.update(len(page))
            if bar is not None:
                bar.close()
        report.seconds = time.perf_counter() - started
        return report

    def check_record(
        self, record_id: str, *, fields: Sequence[str] | None = None
    ) -> dict[str, str] | None:
        """Where one record's vectors stand (field -> category of :class:`SyncReport`), without
        embedding; ``None`` if the record does not exist. One read of one record."""
        rid = validate_record_id(record_id)
        rules = self._selected(fields)
        (rec,) = self.backend.get([rid])
        if rec is None:
            return None
        marks = read_marks(rec)
        return {rule.field: self._category(rec, rule, marks)[0] for rule in rules}

    def _category(self, rec: Record, rule: VectorizingRule, marks: Any) -> tuple[str, str | None]:
        return _category(vector_state(rec, rule, self.config.track_model_version), rule, marks)

    def _check_marks(
        self,
        report: SyncReport,
        rules: list[VectorizingRule],
        condition: Filter | None,
        sample: int,
    ) -> None:
        backend = self.backend
        report.records = backend.count(condition)
        for rec in self._marked(condition):  # each marked record once (see _marked)
            marks = read_marks(rec)
            for rule in rules:
                fr = report.fields[rule.field]
                failed = marks.failed.get(rule.field)
                if failed is not None:
                    fr.add("failed", rec.id, sample, str(failed.get("error")))
                elif rule.field in marks.pending:
                    fr.add("pending", rec.id, sample)
        for fr in report.fields.values():
            fr.current = report.records - fr.pending - fr.failed

    def _marked(self, condition: Filter | None) -> Iterator[Record]:
        """The records holding a mark, each once, streamed: through the pending index when
        unfiltered (then the failed ones without a pending mark)."""
        backend = self.backend
        failed = Condition.make(FAILED_FIELD, "exists")
        if condition is None:
            after: str | None = None
            while True:
                ids = backend.pending_ids(after, 1000)
                yield from (r for r in backend.get(ids) if r is not None)
                if len(ids) < 1000:
                    break
                after = ids[-1]
            query = Query(all_of(failed, Condition.make(PENDING_FIELD, "not_exists")))
        else:
            pending = Condition.make(PENDING_FIELD, "exists")
            query = Query(all_of(condition, pending | failed))
        for page in backend.scan(query, 1000):
            yield from page

    # -- synchronising -----------------------------------------------------------------------
    def _need_embedder(self, rules: Sequence[VectorizingRule]) -> None:
        for rule in rules:
            if not self.tracker.embeds(rule):
                have = "none" if self.embedder is None else EmbedderInfo.of(self.embedder).label()
                raise MixedEmbeddingModelsError(rule.field, rule.embedder.label(), have)

    def _work(
        self,
        page: Sequence[Record],
        rules: Sequence[VectorizingRule],
        retry_failed: bool,
        pending_only: bool = False,
    ) -> tuple[Work, Work]:
        """(texts to embed, records whose marks only need tidying) for one page.

        ``pending_only`` (the vectorizer) looks only at the fields a record's pending mark
        names, and tidies away marks of fields that have no rule any more."""
        work, tidy = Work(), Work()
        for rec in page:
            marks = read_marks(rec)
            chosen = rules
            if pending_only:
                for name in marks.pending:
                    if name not in self.tracker.rules:
                        tidy.add(rec.id, name, "", "")
                chosen = [r for r in rules if r.field in marks.pending]
            for rule in chosen:
                state, text, digest = vector_state(rec, rule, self.config.track_model_version)
                if state is VectorState.EMPTY:
                    if rule.field in marks.pending or rule.field in rec:
                        tidy.add(rec.id, rule.field, "", "")
                    continue
                assert text is not None and digest is not None
                if state is VectorState.CURRENT:
                    if rule.field in marks.pending or rule.field in marks.failed:
                        tidy.add(rec.id, rule.field, digest, text)
                    continue
                failed = marks.failed.get(rule.field)
                if failed is not None and failed.get("hash") == digest and not retry_failed:
                    continue
                work.add(rec.id, rule.field, digest, text)
        return work, tidy

    def _sync_work(self, work: Work, tidy: Work) -> SyncResult:
        result = SyncResult()
        outcomes = self.tracker.embed(work)
        for outcome in outcomes.values():
            result.embedded += outcome.embedded
            result.cached += outcome.cached
            result.calls += outcome.calls
        both = Work({**tidy.items, **work.items})
        done = self.tracker.write_back(self.backend, both, outcomes)
        result.written += done.written
        result.failed += done.failed
        result.moved += done.moved
        for (rid, name), (digest, _) in work.items.items():
            err = outcomes[name].errors.get(digest)
            if err is not None and len(result.errors) < 20:
                result.errors[rid] = err
        return result

    def bulk_sync(
        self,
        filter: Query | Filter | Mapping[str, Any] | None = None,
        *,
        fields: Sequence[str] | None = None,
        retry_failed: bool = False,
        progress: bool = False,
    ) -> SyncResult:
        """Embed exactly the stale and missing vectors (and pending ones) of the records
        matching ``filter``, one page at a time; returns what it did.

        Texts the cache holds are not embedded again; a second run finds nothing to do and
        writes nothing. A text that keeps failing is recorded on its record and skipped by
        later runs until it changes (``retry_failed=True`` tries those again).
        """
        rules = self._selected(fields)
        self._need_embedder(rules)
        condition = coerce_filter(filter)
        started = time.perf_counter()
        total = SyncResult()
        bar = _progress(self.backend.count(condition), progress, "sync")
        sources = _sources(rules)
        backend = self.backend
        pages = backend.scan_sync_rows(
            condition, sources, [r.field for r in rules], self.config.batch_size
        )
        for page in pages:
            total.records += len(page)
            fast, slow = self._sort_rows(page, rules, sources)
            if fast:
                total.merge(self._sync_fast(fast, rules))
            if slow:
                records = [r for r in backend.get(slow) if r is not None]
                work, tidy = self._work(records, rules, retry_failed)
                if work or tidy:
                    total.merge(self._sync_work(work, tidy))
            if bar is not None:
                bar.update(len(page))
        if bar is not None:
            bar.close()
        total.seconds = time.perf_counter() - started
        return total

    def _sort_rows(
        self, page: Sequence[SyncRow], rules: Sequence[VectorizingRule], sources: Sequence[str]
    ) -> tuple[Work, list[str]]:
        """(texts to embed and put in place, ids to sync the ordinary way) for one page.

        A record without marks whose vectors are only missing or stale (the bulk of any
        re-sync) takes the fast way: its new vectors are put in place by
        :meth:`~dataknobs_data.contract.Backend.replace_vectors`, guarded by its source
        values. A record with marks, or with a vector to remove (its sources emptied), is
        read whole and synced as before."""
        fast, slow = Work(), []
        track = self.config.track_model_version
        for row in page:
            if row.pending is not None or row.failed is not None:
                slow.append(row.id)
                continue
            texts = dict(zip(sources, row.texts, strict=True))
            todo: list[tuple[str, str, str]] = []
            for rule, stored in zip(rules, row.vectors, strict=True):
                state, text, digest = row_state(texts, stored, rule, track)
                if state is VectorState.CURRENT:
                    continue
                if state is VectorState.EMPTY:
                    if stored is not None:
                        break
                    continue
                assert text is not None and digest is not None
                todo.append((rule.field, digest, text))
            else:
                for name, digest, text in todo:
                    fast.add(row.id, name, digest, text)
                fast.texts[row.id] = texts
                continue
            slow.append(row.id)
        return fast, slow

    def _sync_fast(
        self,
        fast: Work,
        rules: Sequence[VectorizingRule],
    ) -> SyncResult:
        """Embed ``fast`` and put the vectors in place; what the guard turned away (or the
        embedder failed on) goes through the ordinary compare-and-set (:meth:`_sync_work`
        with the vectors already made: nothing is embedded twice)."""
        result = SyncResult()
        outcomes = self.tracker.embed(fast)
        for outcome in outcomes.values():
            result.embedded += outcome.embedded
            result.cached += outcome.cached
            result.calls += outcome.calls
        written: set[str] = set()
        rest = Work()
        backend = self.backend
        for rule in rules:
            items: list[VectorReplacement] = []
            for (rid, name), (digest, text) in fast.items.items():
                if name != rule.field:
                    continue
                vec = outcomes[name].vectors.get(digest)
                if vec is None:
                    rest.add(rid, name, digest, text)
                    continue
                texts = fast.texts[rid]
                guard = tuple(texts.get(src) for src in rule.sources)
                items.append(VectorReplacement(rid, rule.make_vector(vec, digest), guard))
            done = backend.replace_vectors(rule.field, rule.sources, items)
            for item, ok in zip(items, done, strict=True):
                if ok:
                    written.add(item.id)
                else:
                    digest, text = fast.items[(item.id, rule.field)]
                    rest.add(item.id, rule.field, digest, text)
        result.written += len(written)
        if rest:
            back = self.tracker.write_back(backend, rest, outcomes)
            result.written += back.written
            result.failed += back.failed
            result.moved += back.moved
            for (rid, name), (digest, _) in rest.items.items():
                err = outcomes[name].errors.get(digest)
                if err is not None and len(result.errors) < 20:
                    result.errors[rid] = err
        return result

    def sync_record(self, record_id: str, *, fields: Sequence[str] | None = None) -> bool:
        """Bring one record's vectors up to date now; ``True`` if anything was written.

        :class:`EmbeddingFailedError` if the embedder fails on its text (the failure is also
        recorded on the record); ``False`` for a record that does not exist.
        """
        rid = validate_record_id(record_id)
        rules = self._selected(fields)
        self._need_embedder(rules)
        (rec,) = self.backend.get([rid])
        if rec is None:
            return False
        work, tidy = self._work([rec], rules, retry_failed=True)
        if not work and not tidy:
            return False
        result = self._sync_work(work, tidy)
        if result.failed:
            name = next(n for (_, n) in work.items)
            raise EmbeddingFailedError(name, rid, result.errors.get(rid, "embedder failed"))
        return result.written > 0

    # -- text search -------------------------------------------------------------------------
    def text_query(self, text: str, *, field: str | None = None) -> TextQuery:
        """``text`` embedded for ``field`` (the store's default vector field when ``None``) by
        the embedder of that field's rule, with the model label to search with."""
        backend = self.backend
        if field is None:
            field = backend.read_setting(DEFAULT_FIELD_SETTING)
            if field is None:
                schema = backend.vector_schema()
                if len(schema) > 1:  # an upgrade stores the default before its new field
                    field = backend.read_setting(DEFAULT_FIELD_SETTING)
                if field is None:
                    if len(schema) != 1:
                        raise QueryError(
                            f"search_text needs field=... when the store has {len(schema)} "
                            f"vector fields ({sorted(schema)}) and no default vector field"
                        )
                    field = next(iter(schema))
        rules: Mapping[str, VectorizingRule] = self.tracker.rules
        if field not in rules:  # a rule stored since (by another object or process)
            if field not in self._later_rules:
                self._later_rules = load_rules(backend)
            rules = self._later_rules
        return text_query(text, field, rules, self.embedders)

    #: rules read by :meth:`text_query` for fields the tracker did not know (searching must
    #: not reinstall the database's write hook)
    _later_rules: Mapping[str, VectorizingRule] = {}

    def search_text(
        self,
        text: str,
        *,
        k: int = 10,
        filter: Query | Filter | Mapping[str, Any] | None = None,
        field: str | None = None,
    ) -> TextHits:
        """The ``k`` records nearest to ``text`` in ``field`` (default: the store's default
        vector field, so a model upgrade's switch is followed at the next call).

        The text is embedded by the embedder of the field's rule (among ``embedder`` and
        ``embedders``) and searched with ``model=`` that embedder's label, so a query can
        never be ranked against vectors of another embedding space: the store refuses it
        (``MixedEmbeddingModelsError``), as it refuses a field whose rule's embedder this
        synchroniser lacks. The hits are a :class:`TextHits` list: ``.field`` and ``.model``
        say which field and model served them.
        """
        query = self.text_query(text, field=field)
        hits = self.database.vector_search(
            query.vector, field=query.field, k=k, filter=filter, model=query.model
        )
        return TextHits(hits, query.field, query.model)

    def vector_of(self, record: Record, field: str) -> VectorField | None:
        """``record``'s vector for ``field`` if it is current under the field's rule."""
        rule = self._selected([field])[0]
        state, _, _ = vector_state(record, rule, self.config.track_model_version)
        f = record.fields.get(field)
        return f if state is VectorState.CURRENT and isinstance(f, VectorField) else None


class AsyncVectorTextSynchronizer:
    """:class:`VectorTextSynchronizer` for an :class:`~dataknobs_data.database.AsyncDatabase`:
    the same methods as coroutines, each run in a worker thread (``asyncio.to_thread``)."""

    def __init__(
        self,
        database: Any,
        embedder: Any | None = None,
        config: SyncConfig | None = None,
        *,
        cache: EmbeddingCache | None = None,
        embedders: Sequence[Any] = (),
    ) -> None:
        self.sync = VectorTextSynchronizer(
            database, embedder, config, cache=cache, embedders=embedders
        )

    @property
    def rules(self) -> dict[str, VectorizingRule]:
        return self.sync.rules

    def rule_for(self, field: str, sources: Sequence[str], **options: Any) -> VectorizingRule:
        return self.sync.rule_for(field, sources, **options)

    async def set_rule(self, rule: VectorizingRule, *, check: bool = True) -> SyncReport | None:
        return await asyncio.to_thread(self.sync.set_rule, rule, check=check)

    async def remove_rule(self, field: str) -> bool:
        return await asyncio.to_thread(self.sync.remove_rule, field)

    async def check(self, filter: Any = None, **options: Any) -> SyncReport:
        return await asyncio.to_thread(self.sync.check, filter, **options)

    async def bulk_sync(self, filter: Any = None, **options: Any) -> SyncResult:
        return await asyncio.to_thread(self.sync.bulk_sync, filter, **options)

    async def sync_record(self, record_id: str, **options: Any) -> bool:
        return await asyncio.to_thread(self.sync.sync_record, record_id, **options)

    async def check_record(self, record_id: str, **options: Any) -> dict[str, str] | None:
        return await asyncio.to_thread(self.sync.check_record, record_id, **options)

    async def text_query(self, text: str, *, field: str | None = None) -> TextQuery:
        return await asyncio.to_thread(self.sync.text_query, text, field=field)

    async def search_text(
        self,
        text: str,
        *,
        k: int = 10,
        filter: Query | Filter | Mapping[str, Any] | None = None,
        field: str | None = None,
    ) -> TextHits:
        query = await self.text_query(text, field=field)
        hits = await self.sync.database.vector_search(
            query.vector, field=query.field, k=k, filter=filter, model=query.model
        )
        return TextHits(hits, query.field, query.model)


for _name in (
    "set_rule",
    "remove_rule",
    "check",
    "check_record",
    "bulk_sync",
    "sync_record",
    "rule_for",
    "text_query",
    "search_text",
):
    getattr(AsyncVectorTextSynchronizer, _name).__doc__ = getattr(
        VectorTextSynchronizer, _name
    ).__doc__
