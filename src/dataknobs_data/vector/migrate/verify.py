"""Verifying a migration: counts, a streamed per-record digest compare, and a search check.

:func:`verify_migration` (blocking) and :func:`averify_migration` (awaitable) run the same
steps, written once as a generator (:func:`_steps`) that yields each database call it needs as
an :class:`Op` and receives the result; the two drivers only differ in whether they ``await``
the call. The steps:

1. **Counts** of source and target under ``filter``.
2. **Digests**, streamed: both sides are streamed sorted by ``_id`` (``db.stream``, pages of
   ``batch_size``) and merge-joined by id, so memory holds two pages, not the data; a side that
   hands ids back out of code-point order is refused (:class:`MigrationVerifyError`), since the
   join would otherwise report phantom differences. Each pair is compared by
   :func:`~dataknobs_data.vector.migrate.digest.record_digest` (fields, types, values, float32
   vector bits and provenance; see that module). An id only in
   the source is *missing*, only in the target *extra*, in both with different digests
   *different* (with the names of the fields that differ, for the sampled ids).
3. **Search**, per vector field of the source: ``probes`` query vectors are the field's vectors
   of the source records whose ``sha256(id)`` is smallest (deterministic, spread over the data,
   bounded memory; zero vectors are skipped), searched with ``k`` on both sides under ``filter``.
   A side searches *exactly* when its backend declares
   :attr:`~dataknobs_data.capabilities.Feature.EXACT_VECTOR_SEARCH` and either manages no ANN
   index (memory, SQLite) or reports the field's index type as ``flat`` (PostgreSQL without an
   index, faiss below its HNSW size). Both exact: each probe must return the same ids in the same
   order, positions within float32 rounding of each other's distance (ties, broken by id by
   every backend) excepted. Otherwise the mean recall@k of the target against the source must be
   at least ``min_recall``.

The report (:class:`VerifyReport`) names every mismatch by id, up to ``sample`` of each kind,
with the full counts.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import time
from collections.abc import AsyncIterator, Generator, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as _field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ...capabilities import Feature
from ...errors import DataknobsDataError, UnsupportedError, ValidationError
from ...fields import ID_FIELD, VectorField
from ...ints import checked_int
from ...query import Filter, Query, coerce_filter
from ...records import Record
from ..exceptions import MigrationError
from ..operations import tie_tolerance
from .digest import field_digest, metadata_bytes, record_digest

__all__ = [
    "AsyncVerifyMixin",
    "FieldProbe",
    "MigrationVerifyError",
    "Op",
    "VerifyMixin",
    "VerifyReport",
    "averify_migration",
    "record_digest",
    "verify_migration",
]

Side = Literal["source", "target"]
SIDES: tuple[Side, ...] = ("source", "target")
#: records per streamed page of the digest compare (``batch_size``)
PAGE = 1000


class MigrationVerifyError(MigrationError):
    """Verification could not run (bad arguments, or a backend that does not return ids in
    order); a verification that ran and found differences is a report, not an error."""


@dataclass(frozen=True)
class Op:
    """One database call the steps need: ``method`` of the ``side`` database, with arguments.
    ``awaited`` says whether the async shell's method is a coroutine (``count``, ``search``...)
    or a plain method in both shells (``capabilities``, ``vector_fields``)."""

    side: Side
    method: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = _field(default_factory=dict)
    awaited: bool = True


#: the pseudo-method that takes the next ``n`` records of an open stream (``args``: the
#: iterator and ``n``): ``islice`` in the blocking driver, ``anext`` ``n`` times in the async one
PULL = "_pull"


@dataclass
class FieldProbe:
    """The search check of one vector field."""

    field: str
    probes: int
    k: int
    source_exact: bool
    target_exact: bool
    #: ``"order"`` (both exact: same ids, same order) or ``"recall"`` (mean recall@k >= bound)
    check: str
    recall: float
    min_recall: float
    #: probes whose target answer differs (``order``) or misses source ids (``recall``)
    mismatched: int = 0
    #: the source ids of the first mismatched probes' query vectors (capped at ``sample``)
    mismatched_ids: list[str] = _field(default_factory=list)
    #: why the check could not run (e.g. the target has no such field); then not ok
    problem: str | None = None

    @property
    def ok(self) -> bool:
        if self.problem is not None:
            return False
        if self.check == "order":
            return self.mismatched == 0
        return self.recall >= self.min_recall

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "ok": self.ok,
            "check": self.check,
            "probes": self.probes,
            "k": self.k,
            "source_exact": self.source_exact,
            "target_exact": self.target_exact,
            "recall": self.recall,
            "min_recall": self.min_recall,
            "mismatched": self.mismatched,
            "mismatched_ids": list(self.mismatched_ids),
            "problem": self.problem,
        }


@dataclass
class VerifyReport:
    """What :func:`verify_migration` found. ``ok`` when counts match, no id is missing, extra
    or different, and every vector field's search check passed."""

    source_count: int = 0
    target_count: int = 0
    compared: int = 0
    missing_count: int = 0
    extra_count: int = 0
    different_count: int = 0
    #: ids in the source but not in the target (the first ``sample``, in id order)
    missing: list[str] = _field(default_factory=list)
    #: ids in the target but not in the source
    extra: list[str] = _field(default_factory=list)
    #: ids in both whose digests differ
    different: list[str] = _field(default_factory=list)
    #: for each sampled different id, the names of the fields that differ (``"(metadata)"``
    #: for the record's metadata)
    differences: dict[str, list[str]] = _field(default_factory=dict)
    probes: dict[str, FieldProbe] = _field(default_factory=dict)
    sample: int = 20
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            self.source_count == self.target_count
            and not (self.missing_count or self.extra_count or self.different_count)
            and all(p.ok for p in self.probes.values())
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able."""
        return {
            "ok": self.ok,
            "counts": {"source": self.source_count, "target": self.target_count},
            "compared": self.compared,
            "missing": {"count": self.missing_count, "ids": list(self.missing)},
            "extra": {"count": self.extra_count, "ids": list(self.extra)},
            "different": {
                "count": self.different_count,
                "ids": list(self.different),
                "fields": {k: list(v) for k, v in self.differences.items()},
            },
            "probes": {name: p.to_dict() for name, p in self.probes.items()},
            "sample": self.sample,
            "seconds": self.seconds,
        }

    def _add(self, kind: str, rid: str) -> None:
        setattr(self, f"{kind}_count", getattr(self, f"{kind}_count") + 1)
        ids: list[str] = getattr(self, kind)
        if len(ids) < self.sample:
            ids.append(rid)


# -- pure helpers ---------------------------------------------------------------------------
def _check_args(probes: int, k: int, min_recall: float, sample: int, batch_size: int) -> None:
    checked_int("probes", probes, 0, error=MigrationVerifyError)
    checked_int("k", k, 1, error=MigrationVerifyError)
    checked_int("sample", sample, 0, error=MigrationVerifyError)
    checked_int("batch_size", batch_size, 1, error=MigrationVerifyError)
    if (
        isinstance(min_recall, bool)
        or not isinstance(min_recall, int | float)
        or not 0.0 <= min_recall <= 1.0
    ):
        raise MigrationVerifyError(f"min_recall must be a number in [0, 1], got {min_recall!r}")


def _differing_fields(a: Record, b: Record) -> list[str]:
    names = sorted(set(a.fields) | set(b.fields))
    out = []
    for name in names:
        fa, fb = a.fields.get(name), b.fields.get(name)
        if fa is None or fb is None or field_digest(fa) != field_digest(fb):
            out.append(name)
    if metadata_bytes(a.metadata) != metadata_bytes(b.metadata):
        out.append("(metadata)")
    return out


class _ProbePicker:
    """Keeps, per vector field, the ``n`` non-zero vectors of the records with the smallest
    ``sha256(id)``: deterministic, spread over the id space, memory bounded by ``n``."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.heaps: dict[str, list[tuple[bytes, str, npt.NDArray[np.float32]]]] = {}

    def offer(self, record: Record) -> None:
        if self.n == 0:
            return
        key: bytes | None = None
        for name, f in record.fields.items():
            if not isinstance(f, VectorField) or not np.any(f.value):
                continue
            if key is None:
                key = hashlib.sha256(record.id.encode("utf-8")).digest()
            heap = self.heaps.setdefault(name, [])
            item = (_neg(key), record.id, f.value)
            if len(heap) < self.n:
                heapq.heappush(heap, item)
            elif item[0] > heap[0][0]:
                heapq.heapreplace(heap, item)

    def picked(self, name: str) -> list[tuple[str, npt.NDArray[np.float32]]]:
        """``(source id, vector)`` by ascending ``sha256(id)``."""
        items = sorted(self.heaps.get(name, []), key=lambda t: t[0], reverse=True)
        return [(rid, vec) for _, rid, vec in items]


def _neg(key: bytes) -> bytes:
    """Bytes that order opposite to ``key`` (a max-heap of the smallest keys, on heapq)."""
    return bytes(255 - b for b in key)


def same_ranking(source: Sequence[Any], target: Sequence[Any]) -> bool:
    """Whether two exact answers agree: the same ids in the same order, except where ids are
    tied (distances within float32 rounding: ties are broken by id on every backend, but may
    fall either way when two engines round differently), including a tie at the cut ``k``
    with a record neither list shows."""
    if [h.id for h in source] == [h.id for h in target]:
        return True
    if len(source) != len(target):
        return False
    ds = [float(h.distance) for h in source]
    dt = [float(h.distance) for h in target]
    if any(abs(a - b) > tie_tolerance(a) for a, b in zip(ds, dt, strict=True)):
        return False
    last = len(ds) - 1
    for i, (hs, ht) in enumerate(zip(source, target, strict=True)):
        if hs.id == ht.id:
            continue
        tol = tie_tolerance(ds[i])
        tied = (
            (i > 0 and abs(ds[i] - ds[i - 1]) <= tol)
            or (i < last and abs(ds[i + 1] - ds[i]) <= tol)
            or i == last  # same distance, another id: tied with the source's k-th
        )
        if not tied:
            return False
    return True


def recall_at_k(source: Sequence[Any], target: Sequence[Any]) -> float:
    """The share of the source's hits the target found (1.0 when the source found nothing).
    A target hit tied with the source's last hit (distance within float32 rounding) counts as
    found: at the cut ``k`` either of two tied records is a right answer."""
    want = {h.id for h in source}
    if not want:
        return 1.0
    kth = float(source[-1].distance)
    tol = tie_tolerance(kth)
    found = {h.id for h in target if h.id in want or abs(float(h.distance) - kth) <= tol}
    return min(1.0, len(found) / len(want))


# -- the steps, written once ----------------------------------------------------------------
Steps = Generator[Op, Any, VerifyReport]


class _Cursor:
    """One side of the merge join: its open id-sorted stream and the page being consumed."""

    def __init__(self, side: Side, stream: Any) -> None:
        self.side, self.stream = side, stream
        self.page: list[Record] = []
        self.pos = 0
        self.last: str | None = None
        self.done = False

    @property
    def head(self) -> Record | None:
        return self.page[self.pos] if self.pos < len(self.page) else None

    def refill(self, page: list[Record], batch_size: int) -> None:
        _check_order(self.side, page, self.last)
        self.page, self.pos = page, 0
        if page:
            self.last = page[-1].id
        if len(page) < batch_size:
            self.done = True


def _compare(
    report: VerifyReport,
    picker: _ProbePicker,
    condition: Filter | None,
    batch_size: int,
    bar: Any,
) -> Generator[Op, Any, None]:
    """The merge join of the two id-sorted streams, counting into ``report`` and offering
    each source record to ``picker``."""
    ordered = Query(condition).sort(ID_FIELD)
    cursors: dict[Side, _Cursor] = {}
    for side in SIDES:
        stream = yield Op(side, "stream", (ordered,), {"batch_size": batch_size}, False)
        cursors[side] = _Cursor(side, stream)
    source, target = cursors["source"], cursors["target"]
    while True:
        for cursor in (source, target):
            if cursor.head is None and not cursor.done:
                page = yield Op(cursor.side, PULL, (cursor.stream, batch_size))
                cursor.refill(page, batch_size)
        s, t = source.head, target.head
        if s is None and t is None:
            return
        if t is None or (s is not None and s.id < t.id):
            assert s is not None
            report._add("missing", s.id)
        elif s is None or t.id < s.id:
            report._add("extra", t.id)
            target.pos += 1
            continue
        else:
            report.compared += 1
            if record_digest(s) != record_digest(t):
                report._add("different", s.id)
                if s.id in report.different:
                    report.differences[s.id] = _differing_fields(s, t)
            target.pos += 1
        picker.offer(s)
        source.pos += 1
        _tick(bar)


def _steps(
    condition: Filter | None,
    probes: int,
    k: int,
    min_recall: float,
    sample: int,
    batch_size: int,
    progress: bool,
) -> Steps:
    started = time.perf_counter()
    report = VerifyReport(sample=sample)
    report.source_count = yield Op("source", "count", (condition,))
    report.target_count = yield Op("target", "count", (condition,))
    picker = _ProbePicker(probes)
    bar = _bar(report.source_count, progress)
    try:
        yield from _compare(report, picker, condition, batch_size, bar)
    finally:
        if bar is not None:
            bar.close()
    source_fields = yield Op("source", "vector_fields", awaited=False)
    target_fields = yield Op("target", "vector_fields", awaited=False)
    for name in sorted(source_fields):
        picked = picker.picked(name)
        if picked:
            report.probes[name] = yield from _probe_field(
                name, picked, name in target_fields, condition, k, min_recall, sample
            )
    report.seconds = time.perf_counter() - started
    return report


def _probe_field(
    name: str,
    picked: list[tuple[str, npt.NDArray[np.float32]]],
    target_has: bool,
    condition: Filter | None,
    k: int,
    min_recall: float,
    sample: int,
) -> Generator[Op, Any, FieldProbe]:
    probe = FieldProbe(name, len(picked), k, False, False, "recall", 0.0, min_recall)
    if not target_has:
        probe.problem = f"the target has no vector field {name!r}"
        return probe
    matrix = np.stack([vec for _, vec in picked]).astype(np.float32)
    options = {"field": name, "k": k, "filter": condition}
    source_hits = yield Op("source", "vector_search_batch", (matrix,), options)
    try:
        target_hits = yield Op("target", "vector_search_batch", (matrix,), options)
    except DataknobsDataError as exc:
        probe.problem = f"the target refused the search: {exc}"
        return probe
    # read after searching: a lazily built index (faiss) has its kind by now
    probe.source_exact = yield from _searches_exactly("source", name)
    probe.target_exact = yield from _searches_exactly("target", name)
    exact = probe.source_exact and probe.target_exact
    probe.check = "order" if exact else "recall"
    recalls = []
    for (rid, _), hs, ht in zip(picked, source_hits, target_hits, strict=True):
        recalls.append(recall_at_k(hs, ht))
        bad = not same_ranking(hs, ht) if exact else recalls[-1] < 1.0
        if bad:
            probe.mismatched += 1
            if len(probe.mismatched_ids) < sample:
                probe.mismatched_ids.append(rid)
    probe.recall = float(np.mean(recalls)) if recalls else 1.0
    return probe


def _searches_exactly(side: Side, name: str) -> Generator[Op, Any, bool]:
    caps = yield Op(side, "capabilities", awaited=False)
    if not caps.supports(Feature.EXACT_VECTOR_SEARCH):
        return False
    backend = yield Op(side, "backend", awaited=False)
    if not backend.manages_indexes():
        return True
    try:
        stats = yield Op(side, "get_vector_index_stats", (name,))
    except UnsupportedError:
        return True
    return bool(stats.get("type") == "flat")


def _check_order(side: Side, page: list[Record], after: str | None) -> None:
    last = after
    for record in page:
        if last is not None and not record.id > last:
            raise MigrationVerifyError(
                f"the {side} returned id {record.id!r} after {last!r} in an id-sorted read; "
                "verification needs ids in code-point order"
            )
        last = record.id


def _bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="rec", desc="verify")


def _tick(bar: Any) -> None:
    if bar is not None:
        bar.update(1)


# -- the two drivers ------------------------------------------------------------------------
def _call(db: Any, op: Op) -> Any:
    """Make ``op``'s call (its coroutine, for an awaited method of an async shell)."""
    if op.method == PULL:
        iterator, n = op.args
        return list(itertools.islice(iterator, n))
    target = getattr(db, op.method)
    if op.method == "backend":
        return target
    return target(*op.args, **op.kwargs)


async def _pull(iterator: AsyncIterator[Record], n: int) -> list[Record]:
    out = []
    async for record in iterator:
        out.append(record)
        if len(out) == n:
            break
    return out


def _prepare(
    filter: Any, probes: int, k: int, min_recall: float, sample: int, batch_size: int
) -> Filter | None:
    _check_args(probes, k, min_recall, sample, batch_size)
    return coerce_filter(filter)


def _check_dbs(source: Any, target: Any) -> None:
    for side, db in (("source", source), ("target", target)):
        if not hasattr(db, "vector_search_batch") or not hasattr(db, "backend"):
            raise ValidationError(
                f"{side}: expected a SyncDatabase or AsyncDatabase, got {type(db).__name__}"
            )
    if source is target:
        raise MigrationVerifyError("source and target are the same database object")


def verify_migration(
    source: Any,
    target: Any,
    *,
    filter: Any = None,
    probes: int = 20,
    k: int = 10,
    min_recall: float = 0.95,
    sample: int = 20,
    progress: bool = False,
    batch_size: int = PAGE,
) -> VerifyReport:
    """Compare ``target`` with ``source`` (open :class:`~dataknobs_data.database.SyncDatabase`
    objects) under ``filter``: counts, per-record digests, and ``probes`` searches of ``k`` per
    vector field (see the module docstring). Returns the report; differences are not errors."""
    condition = _prepare(filter, probes, k, min_recall, sample, batch_size)
    _check_dbs(source, target)
    dbs = {"source": source, "target": target}
    return _drive(_steps(condition, probes, k, min_recall, sample, batch_size, progress), dbs)


class _Runner:
    """Advances the steps: hands each result (or the library error it raised) back in, and
    keeps the report when they finish; the drivers below only make the calls."""

    def __init__(self, steps: Steps) -> None:
        self.steps = steps
        self.report: VerifyReport | None = None

    def next(self, reply: Any, error: DataknobsDataError | None) -> Op | None:
        try:
            return self.steps.send(reply) if error is None else self.steps.throw(error)
        except StopIteration as stop:
            self.report = stop.value
            return None


def _drive(steps: Steps, dbs: Mapping[str, Any]) -> VerifyReport:
    runner = _Runner(steps)
    op = runner.next(None, None)
    while op is not None:
        try:
            reply, error = _call(dbs[op.side], op), None
        except DataknobsDataError as exc:
            reply, error = None, exc
        op = runner.next(reply, error)
    assert runner.report is not None
    return runner.report


async def averify_migration(
    source: Any,
    target: Any,
    *,
    filter: Any = None,
    probes: int = 20,
    k: int = 10,
    min_recall: float = 0.95,
    sample: int = 20,
    progress: bool = False,
    batch_size: int = PAGE,
) -> VerifyReport:
    """:func:`verify_migration` over :class:`~dataknobs_data.database.AsyncDatabase` objects
    (each call awaited; the same steps)."""
    condition = _prepare(filter, probes, k, min_recall, sample, batch_size)
    _check_dbs(source, target)
    dbs = {"source": source, "target": target}
    runner = _Runner(_steps(condition, probes, k, min_recall, sample, batch_size, progress))
    op = runner.next(None, None)
    while op is not None:
        try:
            if op.method == PULL:
                reply, error = await _pull(*op.args), None
            else:
                reply, error = _call(dbs[op.side], op), None
                if op.awaited:
                    reply = await reply
        except DataknobsDataError as exc:
            reply, error = None, exc
        op = runner.next(reply, error)
    assert runner.report is not None
    return runner.report


class VerifyMixin:
    """``verify_migration`` as a method (for ``VectorMigration``)."""

    def verify_migration(self, source: Any, target: Any, **options: Any) -> VerifyReport:
        return verify_migration(source, target, **options)


class AsyncVerifyMixin:
    """``verify_migration`` as a coroutine method, for ``AsyncVectorMigration``."""

    async def verify_migration(self, source: Any, target: Any, **options: Any) -> VerifyReport:
        return await averify_migration(source, target, **options)


VerifyMixin.verify_migration.__doc__ = verify_migration.__doc__
AsyncVerifyMixin.verify_migration.__doc__ = averify_migration.__doc__
