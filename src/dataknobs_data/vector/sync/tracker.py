"""The change tracker: the database's write hook that keeps vectors and marks in step.

A database opened on data that has vectorizing rules installs a :class:`ChangeTracker` itself
(:func:`open_tracker`), so plain ``db.create`` / ``update`` / ``upsert`` / batches / ``load``,
sync or async, on every backend, go through :meth:`ChangeTracker.put`. For each record and
rule it works out, from the record alone (:func:`~.rules.vector_state`), whether the vector
is current; if not, it carries the stored vector forward when that one is current for the new
text (an edit of other fields), embeds inside the write (``on_write`` rules, when a
synchroniser attached an embedder), or leaves a pending mark in the record (written in the
same all-or-nothing step). A record whose sources are all empty loses its vector: no text,
no vector.

:meth:`ChangeTracker.write_back` is the compare-and-set the synchroniser and the vectorizer
write through: under the store's writer lock it re-reads each record and sets a vector only
if the record's text still hashes to the text that was embedded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ...contract import Backend, WriteHook, WriteMode
from ...errors import UnsupportedError
from ...fields import Field, VectorField
from ...records import Record
from .config import SyncConfig
from .embedding import EmbedOutcome, embed_texts
from .marking import Marks, read_marks, with_marks
from .rules import RULE_PREFIX, VectorizingRule, VectorState, vector_state

if TYPE_CHECKING:  # the cache imports sqlite3: not on `import dataknobs_data`
    from .cache import EmbeddingCache

__all__ = ["ChangeTracker", "Work", "load_rules", "open_tracker"]

F32 = npt.NDArray[np.float32]


def load_rules(backend: Backend) -> dict[str, VectorizingRule]:
    """The rules stored with the data (vector field -> rule); none where the backend keeps
    no settings."""
    try:
        stored = backend.settings(RULE_PREFIX)
    except UnsupportedError:
        return {}
    rules = [VectorizingRule.from_json(text) for text in stored.values()]
    return {r.field: r for r in sorted(rules, key=lambda r: r.field)}


def open_tracker(backend: Backend) -> ChangeTracker | None:
    """The tracker a database opened on ``backend`` installs: one without an embedder (it
    leaves pending marks) when rules are stored, else ``None`` (writes cost nothing extra)."""
    rules = load_rules(backend)
    return ChangeTracker(rules) if rules else None


@dataclass(slots=True)
class Work:
    """Texts to embed for some records: ``items[(record id, field)] = (text hash, text)``."""

    items: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    #: record id -> its source values as read (only for work put in place by ``bulk_sync``)
    texts: dict[str, dict[str, str | None]] = field(default_factory=dict)

    def add(self, rid: str, name: str, digest: str, text: str) -> None:
        self.items[(rid, name)] = (digest, text)

    def by_field(self) -> dict[str, dict[str, str]]:
        """field -> {text hash: text} (each distinct text once)."""
        out: dict[str, dict[str, str]] = {}
        for (_, name), (digest, text) in self.items.items():
            out.setdefault(name, {})[digest] = text
        return out

    def __len__(self) -> int:
        return len(self.items)


@dataclass(slots=True)
class TrackerStats:
    """What the hook did since the tracker was made (for reports and tests)."""

    embedded: int = 0
    marked: int = 0
    carried: int = 0
    emptied: int = 0
    calls: int = 0


class ChangeTracker(WriteHook):
    """Field-dependency mapping from the rules, and the write hook built on it."""

    def __init__(
        self,
        rules: Mapping[str, VectorizingRule],
        *,
        embedder: Any | None = None,
        config: SyncConfig | None = None,
        cache: EmbeddingCache | None = None,
    ) -> None:
        self.rules: dict[str, VectorizingRule] = dict(rules)
        self.embedder = embedder
        self.config = config or SyncConfig()
        self.cache = cache
        self.stats = TrackerStats()

    # -- dependencies ------------------------------------------------------------------------
    def dependencies(self) -> dict[str, list[str]]:
        """source field -> the vector fields made from it."""
        out: dict[str, list[str]] = {}
        for rule in self.rules.values():
            for src in rule.sources:
                out.setdefault(src, []).append(rule.field)
        return out

    def affected(self, changed: Sequence[str]) -> list[str]:
        """The vector fields whose text a change to the ``changed`` fields can change."""
        return [r.field for r in self.rules.values() if r.sources_changed(changed)]

    def active(self) -> list[VectorizingRule]:
        """The rules the write hook applies (``manual`` rules wait for ``bulk_sync``)."""
        return [r for r in self.rules.values() if r.mode != "manual"]

    def embeds(self, rule: VectorizingRule) -> bool:
        """Whether this tracker can embed for ``rule`` (it has the rule's embedder)."""
        e = self.embedder
        return (
            e is not None
            and str(e.model_name) == rule.embedder.name
            and str(e.model_version) == rule.embedder.version
            and int(e.dimensions) == rule.embedder.dimensions
        )

    # -- the write hook ----------------------------------------------------------------------
    def put(self, backend: Backend, records: Sequence[Record], mode: WriteMode) -> list[bool]:
        rules = self.active()
        if not rules or not records:
            return backend.put(records, mode)
        created = self._created(backend, records, mode)
        states: list[dict[str, tuple[VectorState, str | None, str | None]]] = []
        doubtful: list[str] = []
        for rec in records:
            st = {r.field: vector_state(rec, r, self.config.track_model_version) for r in rules}
            states.append(st)
            if mode != "create" and any(s[0] in _NOT_CURRENT for s in st.values()):
                doubtful.append(rec.id)
        stored = dict(zip(doubtful, backend.get(doubtful), strict=True)) if doubtful else {}
        work = Work()
        plans: list[tuple[Record, Marks, dict[str, Field | None]]] = []
        for rec, st, new in zip(records, states, created, strict=True):
            marks = read_marks(rec)
            replace: dict[str, Field | None] = {}
            old = stored.get(rec.id)
            for rule in rules:
                state, text, digest = st[rule.field]
                if state is VectorState.EMPTY:
                    marks.clear(rule.field)
                    if rule.field in rec:
                        replace[rule.field] = None
                        self.stats.emptied += 1
                    continue
                assert text is not None and digest is not None
                if state is VectorState.CURRENT:
                    marks.clear(rule.field)
                    continue
                kept = None if old is None else old.fields.get(rule.field)
                if isinstance(kept, VectorField) and rule.is_current(
                    kept, digest, self.config.track_model_version
                ):
                    replace[rule.field] = kept
                    marks.clear(rule.field)
                    self.stats.carried += 1
                    continue
                if self._embed_now(rule, new):
                    work.add(rec.id, rule.field, digest, text)
                marks.set_pending(rule.field, digest)
            plans.append((rec, marks, replace))
        if work:
            self._embed_into(work, plans)
        self.stats.marked += sum(len(m.pending) for _, m, _ in plans)
        out = [with_marks(rec, marks, replace) for rec, marks, replace in plans]
        return backend.put(out, mode)

    def removed(self, backend: Backend, ids: Sequence[str]) -> None:
        """A deleted record's pending mark went with it; its claim, if any, is released."""
        if ids and any(r.mode != "manual" for r in self.rules.values()):
            backend.release_claims(self.config.worker_name, ids)

    def _created(self, backend: Backend, records: Sequence[Record], mode: WriteMode) -> list[bool]:
        """Per record, whether the write creates it (only asked of the store when the two
        ``auto_*`` flags differ and the write is an upsert)."""
        cfg = self.config
        if mode != "upsert" or cfg.auto_embed_on_create == cfg.auto_update_on_text_change:
            return [mode != "update"] * len(records)
        return [not found for found in backend.contains([r.id for r in records])]

    def _embed_now(self, rule: VectorizingRule, created: bool) -> bool:
        flag = (
            self.config.auto_embed_on_create if created else self.config.auto_update_on_text_change
        )
        return rule.mode == "on_write" and flag and self.embeds(rule)

    def _embed_into(
        self, work: Work, plans: list[tuple[Record, Marks, dict[str, Field | None]]]
    ) -> None:
        """Embed ``work`` (one call per batch) and put the vectors into ``plans``; a text the
        embedder fails on keeps its pending mark, for the vectorizer to retry."""
        outcomes = self.embed(work)
        for rec, marks, replace in plans:
            for name in list(marks.pending):
                item = work.items.get((rec.id, name))
                if item is None:
                    continue
                vec = outcomes[name].vectors.get(item[0])
                if vec is not None:
                    replace[name] = self.rules[name].make_vector(vec, item[0])
                    marks.clear(name)
                    self.stats.embedded += 1

    def embed(self, work: Work) -> dict[str, EmbedOutcome]:
        """Embed every text of ``work`` that the cache lacks; field -> outcome."""
        out: dict[str, EmbedOutcome] = {}
        for name, texts in work.by_field().items():
            rule = self.rules[name]
            out[name] = embed_texts(
                self.embedder,
                rule.embedder,
                texts,
                self.cache,
                self.config.retry,
                self.config.batch_size,
            )
            self.stats.calls += out[name].calls
        return out

    # -- compare-and-set ---------------------------------------------------------------------
    def write_back(
        self, backend: Backend, work: Work, outcomes: Mapping[str, EmbedOutcome]
    ) -> WriteBack:
        """Write the vectors of ``outcomes`` (and failures) into the records of ``work``, each
        only if the record's text still hashes to the text embedded; see the module docstring."""
        result = WriteBack()
        ids = list(dict.fromkeys(rid for rid, _ in work.items))
        if not ids:
            return result
        with backend.write_lock():
            current = backend.get(ids)
            changed: list[Record] = []
            for rec in current:
                if rec is None:
                    result.gone += 1
                    continue
                updated = self._apply(rec, work, outcomes, result)
                if updated is not None:
                    changed.append(updated)
            if changed:
                backend.put(changed, "update")
            result.written = len(changed)
        return result

    def _apply(
        self,
        rec: Record,
        work: Work,
        outcomes: Mapping[str, EmbedOutcome],
        result: WriteBack,
    ) -> Record | None:
        marks = read_marks(rec)
        before = Marks(dict(marks.pending), {k: dict(v) for k, v in marks.failed.items()})
        replace: dict[str, Field | None] = {}
        for name, rule in self.rules.items():
            item = work.items.get((rec.id, name))
            if item is None:
                continue
            digest = item[0]
            state, _, now = vector_state(rec, rule, self.config.track_model_version)
            if state is VectorState.EMPTY:
                marks.clear(name)
                if name in rec:
                    replace[name] = None
                continue
            if now != digest:  # the text changed since it was read: the writer marked it
                result.moved += 1
                continue
            if state is VectorState.CURRENT:
                marks.clear(name)
                continue
            outcome = outcomes[name]
            vec = outcome.vectors.get(digest)
            if vec is not None:
                replace[name] = rule.make_vector(vec, digest)
                marks.clear(name)
                result.vectors += 1
            else:
                error = outcome.errors.get(digest, "embedder returned nothing")
                marks.set_failed(name, digest, error, outcome.attempts)
                result.failed += 1
        for name in list(marks.pending):  # marks of fields that have no rule any more
            if name not in self.rules:
                marks.pending.pop(name)
        if not replace and marks == before:
            return None
        return with_marks(rec, marks, replace)


_NOT_CURRENT = (VectorState.STALE, VectorState.MISSING)


@dataclass(slots=True)
class WriteBack:
    """What one compare-and-set write did."""

    vectors: int = 0
    failed: int = 0
    moved: int = 0
    gone: int = 0
    written: int = 0
